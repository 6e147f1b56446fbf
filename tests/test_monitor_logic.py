"""The monitor's Kafka bookkeeping on fake clients, in milliseconds: a second monitor restores the
first one's checkpoint (positions, detectors, the open alert), and a checkpoint transaction that fails
is written once more with nothing lost or doubled. The broker test (test_monitor_service.py) proves the
same on the real thing."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
import torch
from confluent_kafka import Consumer, Message, Producer

from driftline.config import Settings, Topics
from driftline.models import ModelConfig, TorchPredictor, build_module
from driftline.models.follower import RegistryFollower, encode_record
from driftline.models.signing import example_version, generate_keys, key_id, sign_version
from driftline.monitoring.profile import ReferenceProfile
from driftline.options import MonitorOptions
from driftline.schemas import AvroDecoder, AvroEncoder, builtin_store
from driftline.streams.monitor_service import MonitorService
from driftline.testing import FakeCluster, FakeConsumer, FakeGroupConsumer, FakeProducer

STORE = builtin_store()
DECODER = AvroDecoder(STORE)
EVENTS = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
PREDICTIONS = AvroEncoder.single_object(STORE.latest("io.driftline.Prediction"))
LABELS = AvroEncoder.single_object(STORE.latest("io.driftline.Label"))
TOPICS = Topics()
INPUTS = [TOPICS.events, TOPICS.predictions, TOPICS.labels]
PRIVATE, PUBLIC = generate_keys()
TRUSTED = {key_id(PUBLIC): PUBLIC}
CONFIG = ModelConfig(name="m", version="1", architecture="logistic", features=["a", "b"], classes=["n", "y"])


def recent_ms() -> int:
    """A first event's time a minute ago: recent, so that the label join's time-to-live keeps every
    event. Taken when a test builds its stream, not when the module is imported (a long suite runs
    this module many minutes after collecting it)."""
    return int(time.time() * 1000) - 60_000


COUNT, DRIFT_AT = 6000, 4000
"""Events (each with its prediction and label); from ``DRIFT_AT`` on, half the labels disagree."""


def flipped(predicted: npt.NDArray[np.int64], rate: float, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Labels that disagree with ``predicted`` at ``rate``."""
    return np.where(rng.random(len(predicted)) < rate, 1 - predicted, predicted)


Record = tuple[str, bytes, bytes]
"""(topic, key, value)"""


def stream(count: int = COUNT) -> tuple[bytes, list[Record]]:
    """The live version's signed registry record, with a reference profile, and ``count`` events with
    their predictions and labels, in that order (a concept drift at ``DRIFT_AT``)."""
    t0 = recent_ms()
    rng = np.random.default_rng(7)
    torch.manual_seed(0)
    predictor = TorchPredictor(CONFIG, build_module(CONFIG), "cpu")
    reference = rng.uniform(-3, 3, (2000, 2)).astype(np.float32)
    scores = predictor.predict_batch(reference)
    labels = flipped(scores.argmax(axis=1), 0.1, rng)
    profile = ReferenceProfile.from_training(reference, scores, CONFIG.features, labels)
    live = example_version(
        model_name="m", version="1", status="LIVE", created_at=t0, reference_profile=profile.to_json()
    )
    x = rng.uniform(-3, 3, (count, 2)).astype(np.float32)
    scores = predictor.predict_batch(x)
    predicted = scores.argmax(axis=1)
    labels = np.concatenate(
        [flipped(predicted[:DRIFT_AT], 0.1, rng), flipped(predicted[DRIFT_AT:], 0.5, rng)]
    )
    records: list[Record] = []
    for i in range(count):
        event_id, event_time, key = f"e{i}", t0 + i, f"e{i}".encode()
        event = {"event_id": event_id, "event_time": event_time, "features": x[i].tolist(), "source": None}
        prediction = {
            "event_id": event_id,
            "event_time": event_time,
            "model_name": "m",
            "model_version": "1",
            "scores": scores[i].tolist(),
            "predicted_class": int(predicted[i]),
            "processing_ms": 1.0,
        }
        label = {"event_id": event_id, "event_time": event_time, "label": int(labels[i])}
        records += [
            (TOPICS.events, key, EVENTS.encode(event)),
            (TOPICS.predictions, key, PREDICTIONS.encode(prediction)),
            (TOPICS.labels, key, LABELS.encode(label)),
        ]
    return encode_record(sign_version(live, PRIVATE)), records


def cluster_with(live: bytes, records: Sequence[Record]) -> FakeCluster:
    cluster = FakeCluster(dict.fromkeys(INPUTS, 2))
    cluster.append(TOPICS.model_versions, live)
    append(cluster, records)
    return cluster


def append(cluster: FakeCluster, records: Sequence[Record]) -> None:
    for topic, key, value in records:
        cluster.append(topic, value, key)


def monitor(cluster: FakeCluster, producer: FakeProducer | None = None, **options: Any) -> MonitorService:
    registry = FakeConsumer([m.value() for m in cluster.messages(TOPICS.model_versions)])
    return MonitorService(
        Settings(bootstrap_servers="fake:9092"),
        "m",
        TRUSTED,
        MonitorOptions(**options),
        consumer=cast(Consumer, FakeGroupConsumer(cluster, "driftline-monitor-m")),
        producer=cast(Producer, producer or FakeProducer(cluster=cluster)),
        registry=RegistryFollower(registry, TOPICS.model_versions, TRUSTED, model_name="m"),
        read_to_end=cast(Callable[[str], Sequence[Message]], cluster.messages),
        partition_counts=cluster.partition_counts,
    )


def run_until_read(service: MonitorService, count: int, on_ready: Callable[[], None] | None = None) -> None:
    """Run the monitor until it has read ``count`` records of each input; ``stop`` is called on the
    loop's own thread, so this needs no thread of its own."""
    expected = {"events": count, "predictions": count, "labels": count}
    deadline = time.monotonic() + 30  # generous for a busy machine
    service.run(lambda: service.records_read() == expected or time.monotonic() > deadline, on_ready)
    assert service.records_read() == expected


def published(cluster: FakeCluster, topic: str) -> list[dict[str, Any]]:
    return [DECODER.decode(m.value()) for m in cluster.messages(topic)]


def plain(state: dict[str, Any]) -> Any:
    """A state as its checkpoint holds it (JSON: tuples become lists)."""
    return json.loads(json.dumps(state))


def test_a_second_monitor_restores_the_first_ones_checkpoint(caplog: pytest.LogCaptureFixture) -> None:
    live, records = stream(COUNT + 1000)
    cluster = cluster_with(live, records[: 3 * COUNT])
    first = monitor(cluster, batch=1000, checkpoint_interval_s=0.001)
    run_until_read(first, COUNT)
    assert first.monitor.open_alerts() == ["CONCEPT"]
    assert len(cluster.messages(TOPICS.monitor_state)) > 2  # one per batch, and the last
    ends = {(t, p, end) for t in INPUTS for p, end in cluster.end_offsets(t).items()}
    append(cluster, records[3 * COUNT :])  # more of the drifted stream, for the second monitor
    second = monitor(cluster, batch=1000, checkpoint_interval_s=0.001)
    at_restore: list[tuple[Any, set[tuple[str, int, int]]]] = []

    def restored() -> None:
        positions = {(tp.topic, tp.partition, tp.offset) for tp in second.assignment(INPUTS)}
        at_restore.append((plain(second.monitor.state()), positions))

    with caplog.at_level(logging.INFO, logger="driftline.streams.monitor_service"):
        run_until_read(second, COUNT + 1000, on_ready=restored)
    [(state, positions)] = at_restore
    assert state == plain(first.monitor.state())
    assert positions == ends  # where the first one stopped
    assert "restored the checkpoint of m v1" in caplog.text
    opened = [a for a in published(cluster, TOPICS.drift_alerts) if a["status"] == "OPEN"]
    assert [a["kind"] for a in opened] == ["CONCEPT"]  # the open alert came back: no second OPEN


def test_a_failed_checkpoint_transaction_is_written_once_more_and_nothing_is_lost_or_doubled() -> None:
    """One batch of everything: its checkpoint transaction (which carries the alert) fails once."""
    runs = []
    live, records = stream()
    for fail_commits in (0, 1):
        cluster = cluster_with(live, records)
        producer = FakeProducer(cluster=cluster)
        producer.fail_commits = fail_commits
        run_until_read(monitor(cluster, producer, batch=10 * COUNT, checkpoint_interval_s=3600), COUNT)
        assert producer.aborted == fail_commits
        runs.append(cluster)
    clean, failed = runs
    alerts = published(failed, TOPICS.drift_alerts)
    requests = published(failed, TOPICS.retrain_requests)
    assert [a["kind"] for a in alerts if a["status"] == "OPEN"] == ["CONCEPT"]
    assert [(a["alert_id"], a["status"]) for a in alerts] == [
        (a["alert_id"], a["status"]) for a in published(clean, TOPICS.drift_alerts)
    ]
    assert [r["request_id"] for r in requests] == [f"retrain-{alerts[0]['alert_id']}"]
    checkpoints = [json.loads(m.value() or b"") for m in failed.messages(TOPICS.monitor_state)]
    assert len(checkpoints) == 2  # the batch's, written once, and the last
    ends = {t: {str(p): end for p, end in failed.end_offsets(t).items()} for t in INPUTS}
    assert checkpoints[-1]["positions"] == ends
    expected = [json.loads(m.value() or b"") for m in clean.messages(TOPICS.monitor_state)]
    assert [c["monitor"]["detectors"] for c in checkpoints] == [c["monitor"]["detectors"] for c in expected]
