"""``driftline bench loop`` end to end on one small bundled stream (figures not judged, only present)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from driftline.bench.loop import (
    RECIPE,
    LoopOptions,
    Stream,
    inject_drift,
    load_stream,
    loop_commands,
    method_figures,
    rows_to_recover,
)
from driftline.cli import main
from driftline.config import Settings


def test_streams_are_bundled_and_drift_is_injected_where_stated() -> None:
    phishing = load_stream("phishing", max_rows=100)
    assert phishing.x.shape == (100, 9)
    assert phishing.classes == ["False", "True"]
    drifted = inject_drift(phishing, 60)
    assert (drifted.y[:60] == phishing.y[:60]).all()
    assert (drifted.y[60:] == 1 - phishing.y[60:]).all()
    trump = inject_drift(load_stream("trumpapproval", max_rows=50), 25)
    assert trump.regression
    assert "target +" in trump.drift


def test_recovery_is_counted_on_windows_after_the_drift() -> None:
    never = np.array([1.0] * 10 + [0.0] * 10)
    assert rows_to_recover(never, drift=10, window=4, higher_is_better=True) is None
    mae = np.array([1.0] * 4 + [5.0] * 2 + [1.05] * 6)
    assert rows_to_recover(mae, drift=4, window=2, higher_is_better=False) == 4
    figures = method_figures(np.array([1.0, 0.0, 0.0, 1.0]), 2, regression=False)
    assert figures["before_drift"] == 0.5
    assert figures["after_drift"] == 0.5


def test_a_toy_stream_needs_its_features_named() -> None:
    stream = Stream("toy", ["a"], ["x", "y"], np.zeros((2, 1), np.float32), np.array([0, 1]))
    assert inject_drift(stream, 1).y.tolist() == [0, 0]


def test_a_regression_stream_is_retrained_with_the_recipe_and_options_pass_through() -> None:
    opts = LoopOptions(train_args=("--margin", "0.5"), monitor_args=("--retrain-on", "CONCEPT"))
    commands = {name: args for name, args, _ in loop_commands(opts, regression=True)}
    assert commands["train"][-6:] == ["--recipe", RECIPE, "--metric", "mae", "--margin", "0.5"]
    assert commands["monitor"][-2:] == ["--retrain-on", "CONCEPT"]
    classifier = {name: args for name, args, _ in loop_commands(opts)}
    assert "--recipe" not in classifier["train"]


def run_bench(settings: Settings, tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    """``driftline bench loop ARGS --json`` on the test cluster: (its one stream's figures, the logs)."""
    args += ("--logs", str(tmp_path / "logs"), "--json")
    result = CliRunner().invoke(main, ["-b", str(settings.bootstrap_servers), "bench", "loop", *args])
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((tmp_path / "logs").glob("*.log"))
    )
    assert result.exit_code == 0, result.output + logs
    (stream,) = json.loads(result.output[result.output.index("{") :])["streams"]
    return stream, logs


@pytest.mark.kafka
def test_bench_loop_runs_every_method_on_the_same_rows(settings: Settings, tmp_path: Path) -> None:
    stream, logs = run_bench(
        settings,
        tmp_path,
        *("--stream", "phishing", "--max-rows", "600", "--rate", "100", "--retrain-events", "120"),
        *("--min-rows", "60", "--epochs", "30", "--timeout-s", "100"),
    )
    assert (stream["rows"], stream["warmup_rows"], stream["drift_row"]) == (600, 120, 300)
    methods = stream["methods"]
    assert set(methods) == {"driftline", "never_retrained", "arf", "hat"}
    for figures in methods.values():
        assert figures["rows"] == stream["evaluated_rows"] == 480
        for key in ("overall", "before_drift", "after_drift"):
            assert 0.0 <= figures[key] <= 1.0
        assert "rows_to_recover" in figures
    loop = methods["driftline"]
    assert loop["answered"] == 480, logs  # every row predicted by serve, read back from Kafka
    assert loop["versions_serving"][0] == "1"
    assert stream["gap_overall"] == pytest.approx(loop["overall"] - methods["arf"]["overall"])
    # the labels flip at row 300: the frozen first version must get worse (the drift is real)
    assert methods["never_retrained"]["after_drift"] < methods["never_retrained"]["before_drift"] - 0.3


@pytest.mark.kafka
def test_bench_loop_serves_a_regression_stream_in_its_contract(settings: Settings, tmp_path: Path) -> None:
    stream, logs = run_bench(
        settings,
        tmp_path,
        *("--stream", "trumpapproval", "--max-rows", "600", "--rate", "100", "--retrain-events", "120"),
        *("--min-rows", "60", "--timeout-s", "100"),
    )
    assert (stream["task"], stream["warmup_rows"], stream["drift_row"]) == ("regression", 120, 300)
    methods = stream["methods"]
    assert set(methods) == {"driftline", "never_retrained", "arf", "hat"}
    for figures in methods.values():
        assert figures["metric"] == "mae"
        assert figures["rows"] == stream["evaluated_rows"] == 480
        for key in ("overall", "before_drift", "after_drift"):
            assert figures[key] >= 0.0
    loop, first = methods["driftline"], methods["never_retrained"]
    assert loop["answered"] == 480, logs  # every row's value predicted by serve, read back from Kafka
    assert loop["versions_serving"][0] == "1"
    # before the drift serve ran the very graph the never-retrained method runs in process
    assert loop["before_drift"] == pytest.approx(first["before_drift"], abs=1e-3)
    assert first["after_drift"] > first["before_drift"] + 1.0  # targets moved up by 2 sd
