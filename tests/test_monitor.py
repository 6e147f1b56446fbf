"""The monitor's logic without Kafka: one alert per drift, then updates; one retraining request per
drift and cooldown; a new version resolves and starts afresh; checkpoints restore everything; continuous
requests on sliding windows; windows that reach back and fit the stream's rate."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from driftline.monitoring.monitor import DriftMonitor, MonitorPolicy
from driftline.monitoring.profile import ReferenceProfile
from driftline.monitoring.retraining import RetrainPolicy

RNG = np.random.default_rng(5)
POS = {"events": {0: (100, 1)}, "labels": {0: (50, 1)}}


def errors(rate: float, n: int) -> np.ndarray:
    return RNG.random(n) < rate


def feed(monitor: DriftMonitor, rate: float, n: int, now_ms: int, version: str = "1") -> None:
    for chunk in np.array_split(errors(rate, n), max(1, n // 500)):
        monitor.observe_errors(chunk, [version] * len(chunk), now_ms)


def test_stationary_errors_raise_nothing_and_a_rise_opens_one_alert_then_updates() -> None:
    m = DriftMonitor("m", MonitorPolicy(update_interval_ms=1000, retrain=RetrainPolicy(cooldown_ms=10**9)))
    m.set_version("1", None, now_ms=0)
    m.advance(POS, POS)
    feed(m, 0.1, 20000, now_ms=1)
    assert m.take_outputs() == []
    feed(m, 0.4, 3000, now_ms=2)
    out = m.take_outputs()
    assert [(w, r.get("status")) for w, r in out] == [("alert", "OPEN"), ("request", None)]
    alert, request = out[0][1], out[1][1]
    assert (alert["kind"], alert["severity"], alert["detector"]) == ("CONCEPT", "CRITICAL", "BernoulliGLR")
    assert alert["statistic"] > alert["threshold"]
    assert request["request_id"] == "retrain-" + alert["alert_id"]
    assert {w["topic"] for w in request["training_data"]} == {"events", "labels"}
    feed(m, 0.4, 3000, now_ms=3)  # more evidence within the update interval: quiet
    feed(m, 0.7, 6000, now_ms=2000)  # after it: one update, no second request
    later = m.take_outputs()
    assert [r["status"] for _, r in later] == ["UPDATE"]
    assert later[0][1]["alert_id"] == alert["alert_id"]


def test_a_new_version_resolves_open_alerts_and_the_cooldown_holds_across_versions() -> None:
    m = DriftMonitor("m", MonitorPolicy(retrain=RetrainPolicy(cooldown_ms=10_000)))
    m.set_version("1", None, now_ms=0)
    m.advance(POS, POS)
    feed(m, 0.1, 5000, now_ms=0)
    feed(m, 0.5, 2000, now_ms=100)
    assert [w for w, _ in m.take_outputs()] == ["alert", "request"]
    m.set_version("2", None, now_ms=200)
    resolved = m.take_outputs()
    assert [(r["status"], r["model_version"]) for _, r in resolved] == [("RESOLVED", "1")]
    feed(m, 0.1, 5000, now_ms=300, version="2")
    feed(m, 0.5, 2000, now_ms=400, version="2")
    assert [w for w, _ in m.take_outputs()] == ["alert"]  # within the cooldown: no second request
    feed(m, 0.1, 100, now_ms=500, version="1")  # late errors of the old version are not v2's


def test_a_checkpoint_restores_detectors_and_alert_state() -> None:
    x = RNG.uniform(0, 10, size=(4000, 2))
    p = 1 / (1 + np.exp(-(x[:, 0] - 5)))
    profile = ReferenceProfile.from_training(x, p, ["a", "b"], RNG.random(4000) < p)
    a = DriftMonitor("m")
    a.set_version("1", profile, now_ms=0)
    a.advance(POS, POS)
    a.observe_inputs(x[:1000].astype(np.float32), now_ms=1)
    feed(a, 0.1, 5000, now_ms=1)
    feed(a, 0.5, 2000, now_ms=2)
    a.take_outputs()
    b = DriftMonitor("m")
    b.restore(json.loads(json.dumps(a.state())), profile)
    assert b.state() == a.state()
    assert b.open_alerts() == ["CONCEPT"]
    feed(b, 0.6, 3000, now_ms=3)
    assert b.take_outputs() == []  # the alert was open already and the request made


def test_a_checkpoint_holds_no_detector_parameters_and_an_old_one_loads() -> None:
    """Checkpoints written before parameters were left out carry each detector's ``_threshold``: the
    restored monitor keeps its own thresholds and the evidence."""
    x = RNG.uniform(0, 10, size=(4000, 2))
    p = 1 / (1 + np.exp(-(x[:, 0] - 5)))
    profile = ReferenceProfile.from_training(x, p, ["a", "b"], RNG.random(4000) < p)
    a = DriftMonitor("m")
    a.set_version("1", profile, now_ms=0)
    a.observe_inputs(x[:1500].astype(np.float32), now_ms=1)
    feed(a, 0.1, 3000, now_ms=1)
    state = json.loads(json.dumps(a.state()))
    assert all("_threshold" not in d for d in state["detectors"].values())
    for detector in state["detectors"].values():
        detector["_threshold"] = 1.0
    b = DriftMonitor("m")
    b.restore(state, profile)
    assert b.gauges() == a.gauges()
    assert b.state() == a.state()


def test_a_drift_that_goes_on_asks_again_after_the_cooldown_only() -> None:
    m = DriftMonitor("m", MonitorPolicy(retrain=RetrainPolicy(cooldown_ms=1000), update_interval_ms=10**9))
    m.set_version("1", None, now_ms=0)
    m.advance(POS, POS)
    feed(m, 0.02, 5000, now_ms=0)
    feed(m, 0.3, 2000, now_ms=10)
    first = m.take_outputs()
    assert [w for w, _ in first] == ["alert", "request"]
    feed(m, 0.6, 2000, now_ms=500)  # worse again, within the cooldown: nothing
    assert m.take_outputs() == []
    feed(m, 0.95, 2000, now_ms=2000)  # worse again, after it: a second request for the same alert
    again = m.take_outputs()
    assert [w for w, _ in again] == ["request"]
    assert again[0][1]["request_id"] == first[1][1]["request_id"] + "-3"
    assert again[0][1]["alert_id"] == first[0][1]["alert_id"]


def positions(second: int, per_second: int = 10) -> dict[str, dict[int, tuple[int, int]]]:
    """Two partitions of events and of labels, ``per_second`` records a second on each."""
    at = (per_second * second, 1000 * second)
    return {"events": {0: at, 1: at}, "labels": {0: at, 1: at}}


def spans(request: dict[str, Any]) -> dict[tuple[str, int], tuple[int, int]]:
    return {
        (w["topic"], w["partition"]): (w["start_offset"], w["end_offset"]) for w in request["training_data"]
    }


def test_continuous_requests_go_out_every_so_many_labels_on_the_latest_events() -> None:
    policy = RetrainPolicy(retrain_on=(), events=400, every_labels=1000)
    m = DriftMonitor("m", MonitorPolicy(retrain=policy))
    m.set_version("1", None, now_ms=0)
    m.advance(positions(0), positions(100))
    feed(m, 0.1, 999, now_ms=1)
    assert m.take_outputs() == []
    feed(m, 0.1, 1, now_ms=2)
    [(what, request)] = m.take_outputs()
    assert what == "request"
    assert request["request_id"] == "retrain-m-v1-scheduled-1"
    assert request["alert_id"] == ""
    assert request["reason"] == "scheduled: 1,000 labelled events since the last request"
    window = spans(request)
    assert window == {(t, p): (800, 1000) for t in ("events", "labels") for p in (0, 1)}  # the latest 400
    feed(m, 0.1, 1000, now_ms=3)
    assert m.take_outputs()[0][1]["request_id"] == "retrain-m-v1-scheduled-2"
    m.set_version("2", None, now_ms=4)
    feed(m, 0.1, 1000, now_ms=5, version="2")
    assert m.take_outputs()[0][1]["request_id"] == "retrain-m-v2-scheduled-1"


def test_continuous_requests_by_time_need_labels_since_the_last() -> None:
    m = DriftMonitor("m", MonitorPolicy(retrain=RetrainPolicy(retrain_on=(), every_ms=60_000)))
    m.set_version("1", None, now_ms=0)
    m.advance(positions(0), positions(10))
    feed(m, 0.1, 10, now_ms=59_000)
    assert m.take_outputs() == []
    feed(m, 0.1, 10, now_ms=61_000)
    [(_, request)] = m.take_outputs()
    assert request["reason"] == "scheduled: 61 s since the last request"
    feed(m, 0.1, 0, now_ms=200_000)  # no labels since: nothing to learn from
    assert m.take_outputs() == []


def test_a_drift_request_reaches_back_and_says_when_the_rest_takes_longer_than_the_stream_allows() -> None:
    policy = RetrainPolicy(events=2000, lookback=0.5, wait_ms=20_000, cooldown_ms=0)
    m = DriftMonitor("m", MonitorPolicy(retrain=policy))
    m.set_version("1", None, now_ms=0)
    for second in range(0, 61, 5):  # 10 records a second on each partition: 20 a second a topic
        m.advance(positions(second), positions(second))
    feed(m, 0.05, 5000, now_ms=1)
    feed(m, 0.6, 2000, now_ms=2)
    [(_, _), (_, request)] = m.take_outputs()
    # 1,000 before the alert and 1,000 after it, 500 a partition each way
    assert spans(request) == {(t, p): (100, 1100) for t in ("events", "labels") for p in (0, 1)}
    assert request["reason"].startswith("concept drift detected by BernoulliGLR; at the stream's recent 20 ")
    assert "its 1,000 records after now take ~50 s, over --retrain-wait-s 20 s" in request["reason"]


def test_a_checkpoint_from_before_continuous_retraining_keeps_its_cooldown() -> None:
    m = DriftMonitor("m", MonitorPolicy(retrain=RetrainPolicy(cooldown_ms=10_000)))
    m.set_version("1", None, now_ms=0)
    state = m.state()
    del state["retraining"]
    state["last_request_ms"] = 5_000
    restored = DriftMonitor("m", MonitorPolicy(retrain=RetrainPolicy(cooldown_ms=10_000)))
    restored.restore(state, None)
    restored.advance(POS, POS)
    feed(restored, 0.1, 5000, now_ms=6_000)
    feed(restored, 0.6, 2000, now_ms=7_000)
    assert [w for w, _ in restored.take_outputs()] == ["alert"]  # within the restored cooldown


def test_a_drift_asks_at_once_even_right_after_a_continuous_request() -> None:
    policy = RetrainPolicy(cooldown_ms=600_000, every_labels=1000)
    m = DriftMonitor("m", MonitorPolicy(retrain=policy))
    m.set_version("1", None, now_ms=0)
    m.advance(positions(0), positions(100))
    feed(m, 0.05, 5000, now_ms=1)
    assert [r["request_id"] for _, r in m.take_outputs()][-1] == "retrain-m-v1-scheduled-5"
    feed(m, 0.6, 600, now_ms=2)  # the drift: its own request, the cooldown counts drift requests only
    out = m.take_outputs()
    assert [(w, r.get("kind")) for w, r in out] == [("alert", "CONCEPT"), ("request", None)]
    assert out[1][1]["alert_id"] == out[0][1]["alert_id"]
