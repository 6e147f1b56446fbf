"""`driftline monitor` on a real broker: an alert after a known drift and none before, kept across a
kill and a hand-over to a second monitor, with exactly one retraining request."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftline.config import Settings
from driftline.models import TorchPredictor, control
from driftline.monitoring.profile import ReferenceProfile
from driftline.schemas import AvroEncoder
from driftline.services import MONITOR_READY, SERVE_READY, Service, service
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import LabelledData, generate
from tests.helpers import DECODER, MODEL, STORE, read_topic, versioned

pytestmark = pytest.mark.kafka

EVENTS = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
LABELS = AvroEncoder.single_object(STORE.latest("io.driftline.Label"))


def profile_of(model_dir: Path) -> str:
    """The reference profile of the test model, from held-out rows of its training concept."""
    data = generate("agrawal", 4000, seed=99)
    scores = TorchPredictor.from_artifact(model_dir, "cpu").predict_batch(data.x)
    return ReferenceProfile.from_training(data.x, scores, data.features, data.y).to_json()


def part(data: LabelledData, start: int, stop: int) -> LabelledData:
    return LabelledData(data.features, data.classes, data.x[start:stop], data.y[start:stop])


def alerts(settings: Settings, expected: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    return [
        DECODER.decode(m.value())
        for m in read_topic(settings, settings.topics.drift_alerts, expected, timeout)
    ]


def wait_for_log(running: Service, text: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while running.output().count(text) < count:
        assert time.monotonic() < deadline, running.output()[-3000:]
        assert running.proc.poll() is None, running.output()[-3000:]
        time.sleep(0.2)


def test_drift_is_alerted_once_across_a_kill_and_a_hand_over(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path
) -> None:
    private = (keys / "signing.key").read_bytes()
    control.publish_version(
        registry, versioned(model_dir, tmp_path, "1"), private, reference_profile=profile_of(model_dir)
    )
    control.promote(registry, private, MODEL, "1")
    data = generate("agrawal", 16000, seed=21, drift_at=8000)
    args = ["monitor", "--cooldown-s", "3600", "--update-interval-s", "1"]
    with service(registry, tmp_path / "serve.log", "serve", "--group", "g-mon", ready=SERVE_READY):
        with service(registry, tmp_path / "monitor-1.log", *args, ready=MONITOR_READY) as monitor:
            produce_stream(registry, part(data, 0, 4000), EVENTS, LABELS, run_id="a", rate=4000)
            time.sleep(3)  # a few checkpoints past the first 4000
            monitor.proc.kill()  # SIGKILL: no goodbye, the last checkpoint is all that is left
            monitor.proc.wait(10)
        with service(registry, tmp_path / "monitor-2.log", *args, ready=MONITOR_READY) as monitor:
            assert "restored the checkpoint" in monitor.output()
            produce_stream(registry, part(data, 4000, 8000), EVENTS, LABELS, run_id="b", rate=4000)
            time.sleep(3)
            before = (tmp_path / "monitor-1.log").read_text() + monitor.output()
            assert "ALERT" not in before  # nothing before the drift
            produce_stream(registry, part(data, 8000, 12000), EVENTS, LABELS, run_id="c", rate=4000)
            wait_for_log(monitor, "ALERT OPEN", 1)
            with service(registry, tmp_path / "monitor-3.log", *args, ready=MONITOR_READY) as third:
                wait_for_log(monitor, "another monitor", 1)  # the hand-over fences the old one
                assert monitor.proc.wait(30) == 0
                produce_stream(registry, part(data, 12000, 16000), EVENTS, LABELS, run_id="d", rate=4000)
                wait_for_log(third, "read to events 16000, predictions 16000, labels 16000", 1)
                assert "ALERT" not in third.output()  # the open alert was restored: no second OPEN
    published = alerts(registry, expected=1)
    opened = [a for a in published if a["status"] == "OPEN"]
    assert [(a["kind"], a["model_version"]) for a in opened] == [("CONCEPT", "1")]
    assert {a["alert_id"] for a in published} == {opened[0]["alert_id"]}
    requests = [DECODER.decode(m.value()) for m in read_topic(registry, registry.topics.retrain_requests, 1)]
    assert [r["alert_id"] for r in requests] == [opened[0]["alert_id"]]
    start = {
        w["partition"]: w["start_offset"] for w in opened[0]["window"] if w["topic"] == registry.topics.events
    }
    assert sum(start.values()) == 0  # the evidence window starts where the version started
    assert np.isfinite(opened[0]["statistic"])


def test_a_partition_stride_samples_events_and_predictions_and_reads_every_label(
    registry: Settings, keys: Path
) -> None:
    from driftline.errors import ConfigError
    from driftline.models.control import load_trusted_keys
    from driftline.options import MonitorOptions
    from driftline.streams import kafka
    from driftline.streams.monitor_service import MonitorService

    t = registry.topics
    service = MonitorService(registry, MODEL, load_trusted_keys(registry), MonitorOptions(partition_stride=2))
    try:
        chosen = {(tp.topic, tp.partition) for tp in service.assignment([t.events, t.predictions, t.labels])}
        # 2 partitions each: partition 0 of events and predictions, and a label on either partition
        assert chosen == {(t.events, 0), (t.predictions, 0), (t.labels, 0), (t.labels, 1)}
        odd = registry.topics.model_copy(update={"predictions": f"{t.predictions}-3", "partitions": 3})
        kafka.create_topics(registry.model_copy(update={"topics": odd}), [odd.predictions])
        with pytest.raises(ConfigError, match="co-partitioned"):
            service.assignment([t.events, odd.predictions, t.labels])
    finally:
        service.close()
