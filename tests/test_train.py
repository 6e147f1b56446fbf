"""Trainers on a real broker: the first version from Kafka, a retraining request answered once and
promoted when the candidate is better, and a worse candidate published but not promoted."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import TopicPartition

from driftline.config import Settings
from driftline.models import control
from driftline.options import TrainOptions
from driftline.schemas import AvroEncoder
from driftline.streams import kafka
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import GENERATORS, generate
from driftline.trainers.dataset import first_windows, labelled_rows
from driftline.trainers.service import answer_request, serve_requests, train_once
from tests.helpers import MODEL, STORE, versioned

pytestmark = pytest.mark.kafka

EVENTS = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
LABELS = AvroEncoder.single_object(STORE.latest("io.driftline.Label"))
REQUESTS = AvroEncoder.single_object(STORE.latest("io.driftline.RetrainRequest"))
OPTS = TrainOptions(epochs=4, device="cpu", min_rows=500)
AGRAWAL = GENERATORS["agrawal"]


def positions(settings: Settings, topic: str) -> dict[int, int]:
    consumer = kafka.consumer(settings, "positions")
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
    finally:
        consumer.close()


def request_after(
    settings: Settings, before: dict[str, dict[int, int]], rows: int, request_id: str
) -> dict[str, object]:
    """A retraining request for the ``rows`` events (and labels) written after ``before``."""
    windows = [
        {
            "topic": topic,
            "partition": p,
            "start_offset": start,
            "end_offset": start + rows // len(parts),
            "start_time": None,
            "end_time": None,
        }
        for topic, parts in before.items()
        for p, start in parts.items()
    ]
    return {
        "request_id": request_id,
        "time": 0,
        "model_name": MODEL,
        "model_version": "1",
        "alert_id": "a",
        "reason": "test",
        "training_data": windows,
    }


@pytest.fixture
def first_version(registry: Settings, keys: Path) -> bytes:
    private = (keys / "signing.key").read_bytes()
    produce_stream(registry, generate("agrawal", 6000, seed=31), EVENTS, LABELS, run_id="pre")
    outcome = train_once(registry, private, MODEL, 6000, AGRAWAL.features, AGRAWAL.classes, OPTS)
    assert outcome.promoted
    record = outcome.record
    assert (record["version"], record["parent_version"], record["request_id"]) == ("1", None, None)
    assert record["reference_profile"]
    assert record["code_version"].startswith("driftline")
    assert {w["topic"] for w in record["training_data"]} == {registry.topics.events, registry.topics.labels}
    assert outcome.candidate_accuracy > 0.85
    return private


def test_a_request_after_drift_trains_once_and_the_better_candidate_goes_live(
    registry: Settings, first_version: bytes
) -> None:
    private, t = first_version, registry.topics
    before = {t.events: positions(registry, t.events), t.labels: positions(registry, t.labels)}
    drifted = generate("agrawal", 12000, seed=32, drift_at=0)  # the new concept from the first row
    produce_stream(registry, drifted, EVENTS, LABELS, run_id="post")
    request = request_after(registry, before, 6000, "req-1")
    outcome = answer_request(registry, private, MODEL, request, OPTS)
    assert outcome is not None
    assert outcome.promoted, outcome.record["reason"]
    assert outcome.live_accuracy is not None
    assert outcome.candidate_accuracy > outcome.live_accuracy + OPTS.margin
    ledger = control.signer_ledger(registry, private)
    live = ledger.live(MODEL)
    assert live is not None
    assert (live["version"], live["parent_version"], live["request_id"]) == ("2", "1", "req-1")
    assert answer_request(registry, private, MODEL, request, OPTS) is None  # the same request: no retraining
    assert sorted(ledger.state(MODEL).versions) == ["1", "2"]


def test_a_worse_candidate_is_published_but_not_promoted(registry: Settings, first_version: bytes) -> None:
    private, t = first_version, registry.topics
    before = {t.events: positions(registry, t.events), t.labels: positions(registry, t.labels)}
    produce_stream(registry, generate("agrawal", 3000, seed=33), EVENTS, LABELS, run_id="same")
    strict = TrainOptions(epochs=1, device="cpu", min_rows=500, margin=0.2)  # nothing beats v1 by 0.2 here
    outcome = answer_request(registry, private, MODEL, request_after(registry, before, 3000, "req-2"), strict)
    assert outcome is not None
    assert not outcome.promoted
    assert outcome.record["reason"].startswith("not promoted")
    live = control.signer_ledger(registry, private).live(MODEL)
    assert live is not None
    assert live["version"] == "1"


def test_the_service_answers_requests_from_the_topic(registry: Settings, first_version: bytes) -> None:
    private, t = first_version, registry.topics
    before = {t.events: positions(registry, t.events), t.labels: positions(registry, t.labels)}
    produce_stream(registry, generate("agrawal", 6000, seed=34, drift_at=0), EVENTS, LABELS, run_id="svc")
    producer = kafka.producer(registry)
    for _ in range(2):  # a request delivered twice is answered once
        producer.produce(
            t.retrain_requests, REQUESTS.encode(request_after(registry, before, 6000, "req-svc"))
        )
    assert producer.flush(10) == 0
    stop = threading.Event()
    thread = threading.Thread(target=serve_requests, args=(registry, private, MODEL, OPTS, stop.is_set))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while control.signer_ledger(registry, private).live(MODEL)["version"] != "2":  # type: ignore[index]
            assert time.monotonic() < deadline
            assert thread.is_alive()
            time.sleep(0.5)
        time.sleep(3)  # time for the duplicate to be (not) answered
    finally:
        stop.set()
        thread.join(30)
    assert sorted(control.signer_ledger(registry, private).state(MODEL).versions) == ["1", "2"]


def test_labelled_rows_join_events_and_labels_by_id(registry: Settings) -> None:
    data = generate("agrawal", 2000, seed=35)
    produce_stream(registry, data, EVENTS, LABELS, run_id="join")
    t = registry.topics
    rows = labelled_rows(
        registry,
        first_windows(registry, t.events, 2000),
        first_windows(registry, t.labels, 2000),
        data.features,
    )
    assert len(rows) == 2000
    assert np.isclose(np.sort(rows.x[:, 0]), np.sort(data.x[:, 0])).all()
    assert rows.y.sum() == data.y.sum()


def test_stopping_while_waiting_for_data_leaves_the_request_for_the_next_trainer(
    registry: Settings, first_version: bytes
) -> None:
    private, t = first_version, registry.topics
    now = {t.events: positions(registry, t.events), t.labels: positions(registry, t.labels)}
    producer = kafka.producer(registry)
    producer.produce(t.retrain_requests, REQUESTS.encode(request_after(registry, now, 4000, "req-future")))
    assert producer.flush(10) == 0
    stop = threading.Event()
    slow = TrainOptions(epochs=1, device="cpu", min_rows=500, data_timeout_s=120)
    thread = threading.Thread(target=serve_requests, args=(registry, private, MODEL, slow, stop.is_set))
    thread.start()
    time.sleep(5)  # the window lies in the future: the trainer waits for its data
    stopped = time.monotonic()
    stop.set()
    thread.join(60)
    assert not thread.is_alive()
    assert time.monotonic() - stopped < 60  # well before the 120 s data timeout (a busy machine is slow)
    assert sorted(control.signer_ledger(registry, private).state(MODEL).versions) == ["1"]
    group = kafka.consumer(registry, f"driftline-train-{MODEL}")
    try:
        parts = [TopicPartition(t.retrain_requests, p) for p in range(t.partitions)]
        committed = group.committed(parts, timeout=10)
    finally:
        group.close()
    assert all(tp.offset < 0 for tp in committed)  # nothing committed: the next trainer answers it


def test_a_crash_between_publish_and_promote_is_finished_on_the_retry(
    registry: Settings, first_version: bytes, model_dir: Path, tmp_path: Path
) -> None:
    """The trainer published a candidate that it had decided to promote, then died: the request was not
    committed, so it comes again; the retry promotes that candidate instead of training another."""
    private = first_version
    candidate = versioned(model_dir, tmp_path, "2")
    control.publish_version(
        registry,
        candidate,
        private,
        reason="promoting: held-out accuracy 0.99 beats live",
        request_id="req-crash",
    )
    assert control.signer_ledger(registry, private).live(MODEL)["version"] == "1"  # type: ignore[index]
    request = request_after(registry, {}, 0, "req-crash")
    assert answer_request(registry, private, MODEL, request, OPTS) is None  # nothing trained again
    ledger = control.signer_ledger(registry, private)
    assert ledger.live(MODEL)["version"] == "2"  # type: ignore[index]
    assert sorted(ledger.state(MODEL).versions) == ["1", "2"]
