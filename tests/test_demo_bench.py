"""The demo and the benchmark run end to end (small sizes; figures are not asserted here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    assert summary["labelled"] == 2990  # every prediction joined with its label from the labels topic
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
        "swap_p99_ms",
        "steady_p99_ms",
        "swaps",
        "monitor_eps",
    ):
        assert figures[key] > 0, key
    assert figures["serve_vs_faust"] == pytest.approx(figures["serve_eps"] / figures["faust_eps"])


def test_interrupting_the_demo_stops_what_it_started(settings: Settings, tmp_path: Path) -> None:
    """SIGTERM while events flow (Ctrl-C takes the same path): the demo stops its `serve` child and
    exits. Without the demo's handler, SIGTERM would end it at once and orphan the child."""
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "driftline",
                "-b",
                str(settings.bootstrap_servers),
                "demo",
                "--events",
                "200000",
                "--rate",
                "2000",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while b"serve is up" not in log.read_bytes():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        children = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(demo.pid)], capture_output=True, text=True, check=False
            ).stdout.split()
        ]
        assert children, "the demo runs serve as a child process"
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) != 0
    finally:
        if demo.poll() is None:
            demo.kill()
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
