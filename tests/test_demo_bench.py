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


def test_the_demo_closes_the_loop(settings: Settings, tmp_path: Path) -> None:
    """Drift injected, alert published, retraining requested, a new version promoted and served, and
    accuracy back within 0.05 of where it was before the drift."""
    chart = tmp_path / "demo.png"
    events, warmup, malformed_every = 30_000, 6_000, 1000
    args = ["demo", "--events", str(events), "--warmup", str(warmup), "--rate", "2000", "--drift-at", "0.3"]
    args += ["--retrain-events", "4000", "--malformed-every", str(malformed_every)]
    args += ["--chart", str(chart), "--json"]
    args += ["--logs", str(tmp_path / "logs")]
    result = CliRunner().invoke(main, ["-b", str(settings.bootstrap_servers), *args])
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted((tmp_path / "logs").glob("*.log"))
    )
    assert result.exit_code == 0, result.output + logs
    summary = json.loads(result.output[result.output.index("{") :])
    print(json.dumps(summary, indent=1), logs)  # shown when an assertion below fails
    # The demo sends the requested events and goes on (up to twice as many) until the new version has
    # served a tenth of them (driftline.demo.send_stream): a busy machine sends more.
    assert warmup + events <= summary["events"] <= warmup + 2 * events
    sent = summary["events"] - warmup
    assert summary["dead_letters"] == sent // malformed_every  # the main stream's every Nth event
    assert summary["unaccounted"] == 0  # every other event was predicted, warm-up included
    assert summary["predictions"] == summary["events"] - summary["dead_letters"]
    assert summary["alerts"] >= 1
    assert summary["retrain_requests"] >= 1
    assert summary["versions"][:2] == ["1", "2"]
    assert summary["accuracy_after_drift"] < summary["accuracy_before_drift"] - 0.2  # the drift hurt
    assert summary["accuracy_after_swap"] >= summary["accuracy_before_drift"] - 0.05
    assert (
        0
        < summary["seconds_drift_to_alert"]
        < summary["seconds_drift_to_alert"] + summary["seconds_alert_to_swap"]
    )
    assert chart.stat().st_size > 10_000
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
            "--quix-events",
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
        "quix_eps",
        "serve_vs_passthrough",
        "serve_vs_faust",
        "serve_vs_quix",
        "p50_ms",
        "p99_ms",
        "swap_p99_ms",
        "steady_p99_ms",
        "swaps",
        "monitor_eps",
        "monitor_half_sample_stream_eps",
    ):
        assert figures[key] > 0, key
    assert figures["serve_vs_faust"] == pytest.approx(figures["serve_eps"] / figures["faust_eps"])
    # A 50% sample can at most double what the monitor gets through (it read a fresh checkpoint topic);
    # the two rates are timed one after the other, so a busy machine skews them: a wide margin.
    assert figures["monitor_half_sample_stream_eps"] < 10 * figures["monitor_eps"]


def test_interrupting_the_demo_stops_what_it_started(settings: Settings, tmp_path: Path) -> None:
    """SIGTERM while events flow (Ctrl-C takes the same path): the demo stops its children (serve,
    monitor, train) and exits. Without the demo's handler, SIGTERM would end it at once and orphan them."""
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
        # Generous bounds: a busy 2-core machine once took over 90 s to warm up, train v1 and start
        # the three services; the demo stops each child within 30 s, then kills it (10 s more).
        deadline = time.monotonic() + 300
        while b"all up" not in log.read_bytes():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        children = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(demo.pid)], capture_output=True, text=True, check=False
            ).stdout.split()
        ]
        assert len(children) == 3, "the demo runs serve, monitor and train as child processes"
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(150) != 0
    finally:
        if demo.poll() is None:
            demo.kill()
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
