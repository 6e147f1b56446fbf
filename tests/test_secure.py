"""Least privilege on a real broker: the secure local broker (SASL/SCRAM, StandardAuthorizer) refuses
the unauthenticated and the unauthorized, and the services still work under their own principals
once `driftline acl apply` has granted their rights."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient

from driftline.broker import LocalBroker
from driftline.broker.security import Credentials
from driftline.cli import main
from driftline.config import Settings, Topics, load_settings
from driftline.models import control
from driftline.schemas import AvroEncoder
from driftline.services import MONITOR_READY, SERVE_READY, service
from driftline.streams import kafka
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import generate
from tests.helpers import DECODER, MODEL, STORE, prediction_ids, read_topic, versioned

pytestmark = pytest.mark.kafka

PREFIX = "sec"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalBroker, Credentials]]:
    """A secure local broker of this module, Driftline's topics named sec.<role>, the ACLs applied."""
    home = tmp_path_factory.mktemp("secure-home")
    broker = LocalBroker(home, load_settings().cache_dir, heap_mb=384, secure=True)
    broker.start(timeout=120)
    try:
        credentials = broker.credentials()
        assert credentials is not None
        runner = CliRunner()
        for args in (
            ["topics", "create"],
            ["acl", "apply", "--prefix", PREFIX, "--model-name", MODEL],
        ):  # as the broker's admin: no -X sasl.* given
            done = runner.invoke(main, ["--home", str(home), *args], env=topic_env())
            assert done.exit_code == 0, done.output
        yield broker, credentials
    finally:
        broker.stop()


def topic_env() -> dict[str, str]:
    return Topics().scoped(PREFIX, partitions=2).environment()


def as_principal(broker: LocalBroker, credentials: Credentials, user: str) -> Settings:
    info = broker.status()
    assert info is not None
    settings = load_settings(bootstrap_servers=info.bootstrap_servers)
    return settings.model_copy(
        update={
            "topics": Topics().scoped(PREFIX, partitions=2),
            "kafka": credentials.client_config(user),
            "model_name": MODEL,
        }
    )


def delivery_errors(settings: Settings, topics: list[str], timeout_ms: int = 10000) -> dict[str, str | None]:
    """Produce one record to each topic; the error name each delivery report gave (None: written)."""
    producer = kafka.producer(settings, **{"message.timeout.ms": timeout_ms})
    errors: dict[str, str | None] = {}

    def delivered(err: KafkaError | None, msg: Message) -> None:
        errors[str(msg.topic())] = None if err is None else err.name()

    for topic in topics:
        producer.produce(topic, b"forged", b"agrawal:666", on_delivery=delivered)
    assert producer.flush(60) == 0
    return errors


def test_the_credentials_are_the_owners_only_and_status_says_secure(
    secure: tuple[LocalBroker, Credentials],
) -> None:
    broker, _ = secure
    assert stat.S_IMODE(broker.credentials_file.stat().st_mode) == 0o600
    info = broker.status()
    assert info is not None
    assert info.security == "SASL_PLAINTEXT/SCRAM-SHA-512"
    assert info.credentials == str(broker.credentials_file)


@pytest.mark.parametrize("who", ["plaintext", "wrong password"])
def test_an_unauthenticated_client_is_refused(secure: tuple[LocalBroker, Credentials], who: str) -> None:
    broker, credentials = secure
    settings = as_principal(broker, credentials, "serve")
    config = settings.client_config()
    if who == "plaintext":
        config = {"bootstrap.servers": config["bootstrap.servers"]}
    else:
        config["sasl.password"] = "not-" + config["sasl.password"]
    with pytest.raises(KafkaException):
        AdminClient(config).list_topics(timeout=3)
    refused = settings.model_copy(
        update={"kafka": {k: v for k, v in config.items() if k != "bootstrap.servers"}}
    )
    errors = delivery_errors(refused, [settings.topics.events], timeout_ms=3000)
    assert errors[settings.topics.events] is not None  # never written


def test_serve_and_monitor_are_refused_a_write_to_the_registry(
    secure: tuple[LocalBroker, Credentials],
) -> None:
    broker, credentials = secure
    for user in ("serve", "monitor"):
        settings = as_principal(broker, credentials, user)
        t = settings.topics
        assert delivery_errors(settings, [t.model_versions, t.artifacts]) == {
            t.model_versions: "TOPIC_AUTHORIZATION_FAILED",
            t.artifacts: "TOPIC_AUTHORIZATION_FAILED",
        }


def test_the_services_work_under_their_own_principals(
    secure: tuple[LocalBroker, Credentials], model_dir: Path, keys: Path, tmp_path: Path
) -> None:
    """The trainer's principal publishes and promotes; serve and monitor run as theirs; the events
    come from an operator (admin)."""
    broker, credentials = secure
    admin, serve, monitor, train = (
        as_principal(broker, credentials, user).signed_with([keys / "signing.pub"], keys / "signing.key")
        for user in ("admin", "serve", "monitor", "train")
    )
    private = (keys / "signing.key").read_bytes()
    control.publish_version(train, versioned(model_dir, tmp_path, "1"), private)
    control.promote(train, private, MODEL, "1")
    data = generate("agrawal", 1000, seed=5)
    events = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
    labels = AvroEncoder.single_object(STORE.latest("io.driftline.Label"))
    with (
        service(serve, tmp_path / "serve.log", "serve", ready=SERVE_READY) as serving,
        service(
            monitor, tmp_path / "monitor.log", "monitor", "--update-interval-s", "1", ready=MONITOR_READY
        ) as monitoring,
    ):
        produce_stream(admin, data, events, labels, run_id="sec")
        predictions = read_topic(admin, admin.topics.predictions, expected=1000)
        monitoring.wait_for("read to events 1000, predictions 1000, labels 1000", 90)
        assert "loaded agrawal v1 from the registry" in serving.output()
        assert monitoring.stop() == 0, monitoring.output()[-3000:]
        assert serving.stop() == 0, serving.output()[-3000:]
    assert sorted(prediction_ids(predictions)) == [f"sec-{i:09d}" for i in range(1000)]
    checkpoints = kafka.read_to_end(admin, admin.topics.monitor_state)
    assert any(m.key() == MODEL.encode() for m in checkpoints)
    assert {DECODER.decode(m.value())["model_version"] for m in predictions} == {"1"}


def test_a_secure_broker_resumes_secure_with_its_acls(secure: tuple[LocalBroker, Credentials]) -> None:
    """Last in this module: a stop and a plain start (no ``secure``) resume the secure broker."""
    broker, credentials = secure
    broker.stop()
    info = LocalBroker(broker.home, broker.cache_dir, heap_mb=384).start(timeout=120)
    assert info.security == "SASL_PLAINTEXT/SCRAM-SHA-512"
    settings = as_principal(broker, credentials, "serve")
    t = settings.topics
    assert delivery_errors(settings, [t.predictions, t.model_versions]) == {
        t.predictions: None,
        t.model_versions: "TOPIC_AUTHORIZATION_FAILED",
    }
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": info.bootstrap_servers}).list_topics(timeout=3)
