"""The demo and the benchmark run end to end (small sizes; figures are not asserted here)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from driftline.cli import main
from driftline.config import Settings

pytestmark = pytest.mark.kafka


def test_demo_accounts_for_every_event(settings: Settings) -> None:
    result = CliRunner().invoke(
        main,
        [
            "-b",
            str(settings.bootstrap_servers),
            "demo",
            "--events",
            "3000",
            "--rate",
            "3000",
            "--malformed-every",
            "300",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["events"] == 3000
    assert summary["dead_letters"] == 10
    assert summary["predictions"] == 2990
    assert summary["unaccounted"] == 0
    assert summary["accuracy"] > 0.8  # the bootstrap model on the same concept
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"]


def test_bench_reports_every_figure(settings: Settings) -> None:
    result = CliRunner().invoke(
        main,
        [
            "-b",
            str(settings.bootstrap_servers),
            "bench",
            "--events",
            "4000",
            "--faust-events",
            "1000",
            "--latency-seconds",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.index("{") :])
    for key in (
        "passthrough_eps",
        "serve_eps",
        "faust_eps",
        "serve_vs_passthrough",
        "serve_vs_faust",
        "p50_ms",
        "p99_ms",
    ):
        assert figures[key] > 0, key
    assert figures["serve_vs_faust"] == pytest.approx(figures["serve_eps"] / figures["faust_eps"])
