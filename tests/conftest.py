"""Fixtures: a real Kafka cluster for the session, unique topics per test, a small model.

Cluster, in order of preference:
1. the one named by ``DRIFTLINE_TEST_BOOTSTRAP_SERVERS`` (plus ``DRIFTLINE_KAFKA__*`` client settings);
2. a testcontainers Kafka when a Docker engine answers and can start it;
3. Driftline's own local broker (Maven Central jars + Java 17), which is what CI uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline.broker import LocalBroker
from driftline.config import Settings, Topics, load_settings
from driftline.models import save_artifact
from driftline.models.signing import write_key_pair
from driftline.streams.kafka import create_topics
from driftline.streams.synthetic import generate
from driftline.trainers import fit_classifier
from tests.helpers import MODEL


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=10, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _testcontainers_kafka() -> Iterator[str] | None:
    try:
        from testcontainers.community.kafka import KafkaContainer

        container = KafkaContainer().with_kraft()
        container.with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        container.with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        container.start(timeout=120)
    except Exception:  # Docker answered but could not start Kafka: use the local broker
        return None

    def run() -> Iterator[str]:
        try:
            yield container.get_bootstrap_server()
        finally:
            container.stop()

    return run()


@pytest.fixture(scope="session")
def bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    named = os.environ.get("DRIFTLINE_TEST_BOOTSTRAP_SERVERS")
    if named:
        yield named
        return
    if _docker_answers():
        started = _testcontainers_kafka()
        if started is not None:
            yield from started
            return
    broker = LocalBroker(
        home=tmp_path_factory.mktemp("kafka"), cache_dir=load_settings().cache_dir, heap_mb=384
    )
    info = broker.start(timeout=120)
    try:
        yield info.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def settings(bootstrap_servers: str) -> Settings:
    """Settings on the test cluster with topics unique to this test (created, 2 partitions each)."""
    topics = Topics().scoped(f"t{uuid.uuid4().hex[:10]}", partitions=2)
    s = load_settings(bootstrap_servers=bootstrap_servers).model_copy(update={"topics": topics})
    create_topics(s)
    return s


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Agrawal classifier artifact."""
    data = generate("agrawal", 4000, seed=3)
    fit = fit_classifier(
        data.x,
        data.y,
        features=data.features,
        classes=data.classes,
        name="agrawal",
        version="1",
        architecture="mlp",
        params={"hidden": [16]},
        epochs=3,
        device="cpu",
    )
    return save_artifact(tmp_path_factory.mktemp("model"), fit.config, fit.module)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    write_key_pair(directory)
    return directory


@pytest.fixture
def registry(settings: Settings, keys: Path) -> Settings:
    """Test settings whose processors trust the session's key and serve the test model."""
    named = settings.model_copy(update={"model_name": MODEL})
    return named.signed_with([keys / "signing.pub"], keys / "signing.key")
