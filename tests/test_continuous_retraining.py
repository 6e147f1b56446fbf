"""Continuous retraining on a real broker: with no drift at all, the monitor asks for a new version every
so many labelled events, on a sliding window of the latest data, and the trainer answers each request
once (the request's id is in the version it published)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from driftline.config import Settings
from driftline.demo import TRAIN_READY
from driftline.models import control
from driftline.schemas import AvroEncoder
from driftline.services import MONITOR_READY, SERVE_READY, service
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import generate
from tests.helpers import DECODER, MODEL, STORE, read_topic, versioned

pytestmark = pytest.mark.kafka

EVENTS = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
LABELS = AvroEncoder.single_object(STORE.latest("io.driftline.Label"))


def answered(settings: Settings, private: bytes, request_id: str, timeout: float) -> dict[str, Any]:
    """The version record that answers ``request_id`` (published by the trainer, promoted or not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        versions = control.signer_ledger(settings, private).state(MODEL).versions
        found = [r for r in versions.values() if r.get("request_id") == request_id]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no version answered {request_id} within {timeout:.0f} s")


def test_a_stream_without_drift_is_retrained_every_so_many_labels_on_its_latest_events(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path
) -> None:
    private = (keys / "signing.key").read_bytes()
    control.publish_version(registry, versioned(model_dir, tmp_path, "1"), private)
    control.promote(registry, private, MODEL, "1")
    monitor = ["monitor", "--retrain-on", "", "--retrain-every-labels", "1500", "--retrain-events", "2000"]
    train = ["train", "--epochs", "3", "--min-rows", "500", "--data-timeout-s", "30", "--margin", "1"]
    with (
        service(registry, tmp_path / "serve.log", "serve", ready=SERVE_READY),
        service(registry, tmp_path / "monitor.log", *monitor, ready=MONITOR_READY) as watching,
        service(registry, tmp_path / "train.log", *train, ready=TRAIN_READY),
    ):
        assert "continuous: every 1,500 labelled events on the latest 2,000" in watching.output()
        data = generate("agrawal", 4000, seed=5)  # one concept throughout: nothing to alert on
        produce_stream(registry, data, EVENTS, LABELS, run_id="c", rate=2000)
        first = answered(registry, private, f"retrain-{MODEL}-v1-scheduled-1", timeout=120)
        second = answered(registry, private, f"retrain-{MODEL}-v1-scheduled-2", timeout=120)

    requests = [DECODER.decode(m.value()) for m in read_topic(registry, registry.topics.retrain_requests, 2)]
    assert [r["request_id"] for r in requests][:2] == [f"retrain-{MODEL}-v1-scheduled-{k}" for k in (1, 2)]
    assert all(r["reason"].startswith("scheduled: ") and r["alert_id"] == "" for r in requests)
    for request in requests[:2]:  # the latest 2,000 events and labels, all written already
        events = [w for w in request["training_data"] if w["topic"] == registry.topics.events]
        assert 1000 <= sum(w["end_offset"] - w["start_offset"] for w in events) <= 2000 + len(events)
        assert all(w["end_time"] is not None for w in events)
    assert requests[1]["training_data"] != requests[0]["training_data"]  # the window slid on
    for record in (first, second):  # --margin 1: judged and not promoted, v1 stays live
        assert (record["status"], record["parent_version"]) == ("CANDIDATE", "1")
        assert record["metrics"]["train_rows"] + record["metrics"]["eval_rows"] >= 1000
    live = control.signer_ledger(registry, private).live(MODEL)
    assert live is not None
    assert live["version"] == "1"
