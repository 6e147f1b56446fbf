"""A tiny run of the drift benchmark: structure, JSON-serialisable, finite numbers in valid ranges."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from driftline.bench.drift import TRACK_A, format_tables, run_drift_bench
from driftline.bench.drift_streams import CONDITIONS


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    stages: list[tuple[str, int, int]] = []
    out = run_drift_bench(
        quick=True,
        seeds=1,
        progress=lambda stage, done, total: stages.append((stage, done, total)),
        track_a_seeds=2,
        stationary_events=20_000,
        kswin=False,  # River's KSWIN costs 0.25 ms an event: ~15 s here
        workers=1,
    )
    assert stages
    assert stages[-1][1] == stages[-1][2]
    return out


def _check_rate(value: float | None, upper: float = math.inf) -> None:
    assert value is None or (math.isfinite(value) and 0.0 <= value <= upper)


def test_results_are_json_serialisable(results: dict[str, Any]) -> None:
    assert json.loads(json.dumps(results)) == results


def test_track_a_and_b_metrics_are_valid(results: dict[str, Any]) -> None:
    detectors = results["label_based_detectors"]
    assert detectors[0] == "GLR (ours)"
    assert {"ADWIN", "PageHinkley", "HDDM_A"} <= set(detectors)
    assert list(results["track_a"]["conditions"]) == [c[0] for c in TRACK_A]
    streams = results["track_b"]["streams"]
    assert list(streams) == [c.name for c in CONDITIONS if c.track_b]
    for per_condition in [*results["track_a"]["conditions"].values(), *streams.values()]:
        for det in detectors:
            stats = per_condition[det]
            _check_rate(stats["delay"], 4000)
            _check_rate(stats["mdr_pct"], 100)
            _check_rate(stats["fa_per_1e5"])
    for det in detectors:
        average = results["track_b"]["average"][det]
        for key in ("delay", "mdr_pct", "fa_pre", "fa_stationary", "fa_all"):
            _check_rate(average[key])
    for runs in (results["track_a"]["stationary"], results["track_b"]["stationary"]):
        for run in runs.values():
            assert run["events"] == 20_000
            assert 0 <= run["rate"] <= 1
            for det in detectors:
                _check_rate(run[det])


def test_track_c_metrics_are_valid(results: dict[str, Any]) -> None:
    c = results["track_c"]
    assert c["episodes"] == len(CONDITIONS)
    assert 0 <= c["harmful_with_input_change"] <= c["harmful"] <= c["episodes"]
    _check_rate(c["recall_ceiling"], 1)
    assert {"expected error (ours)", "feature impact (ours)", "ADWIN on score", "ADWIN per feature"} <= set(
        c["detectors"]
    )
    for stats in c["detectors"].values():
        for key in ("precision", "strict_precision", "recall", "recall_input_change"):
            _check_rate(stats[key], 1)
        _check_rate(stats["fa_per_1e5"])
        assert stats["true_alerts"] <= c["harmful"]
    for name, cond in c["conditions"].items():
        assert name in {k.name for k in CONDITIONS}
        for pct in cond["alert_pct"].values():
            _check_rate(pct, 100)


def test_tables_name_every_detector(results: dict[str, Any]) -> None:
    text = format_tables(results)
    for det in [*results["label_based_detectors"], *results["track_c"]["detectors"]]:
        assert det in text
    assert "recall ceiling" in text
