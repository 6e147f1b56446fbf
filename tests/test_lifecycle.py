"""Signals from the first instant: SIGTERM while `serve` starts ends it cleanly, never by the signal."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftline.health import Health


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port  # nothing listens once the socket is closed: serve waits for a cluster


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has installed a SIGTERM handler (``SigCgt`` in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _serve(tmp_path: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "driftline", "-b", f"127.0.0.1:{_closed_port()}", "serve"]
    with (tmp_path / "serve.log").open("wb") as log:
        return subprocess.Popen([*command, "--model", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen[bytes], tmp_path: Path) -> str:
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    return (tmp_path / "serve.log").read_text()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_sigterm_at_the_first_instant_stops_serve_cleanly(tmp_path: Path) -> None:
    proc = _serve(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not _catches_sigterm(proc.pid):  # the earliest moment Python code can see a signal
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve never installed its SIGTERM handler"
            time.sleep(0.001)
        proc.send_signal(signal.SIGTERM)
    finally:
        output = _finish(proc, tmp_path)
    assert proc.returncode == 128 + signal.SIGTERM, output  # not -15: the process ended itself
    assert "stopped by SIGTERM before the work was done" in output


def test_sigterm_while_serve_waits_for_the_cluster_stops_it_cleanly(tmp_path: Path) -> None:
    proc = _serve(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while "Connection refused" not in (tmp_path / "serve.log").read_text():  # librdkafka's log
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve never tried to reach the cluster"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
    finally:
        output = _finish(proc, tmp_path)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM" in output
    assert "Traceback" not in output


def test_a_stalled_loop_is_not_live_and_a_long_job_is() -> None:
    from driftline.testing import ManualClock

    clock = ManualClock()
    health = Health(stall_after_s=10, clock=clock)
    clock.advance(11)
    assert health.live()[0] is False
    with health.working("training v2"):
        assert health.live() == (True, "working: training v2")
    assert health.live()[0] is True  # the job's end counts as a turn of the loop


def test_the_watchdog_ends_a_process_stuck_after_a_stop_and_leaves_a_turning_loop_alone() -> None:
    import threading

    from driftline.health import Watchdog
    from driftline.testing import ManualClock

    clock, stop = ManualClock(), threading.Event()
    exits: list[int] = []
    health = Health(stall_after_s=600, clock=clock)
    dog = Watchdog(health, stop, grace_s=30, exit=exits.append, clock=clock)
    for _ in range(100):  # an hour of a loop that turns every 36 s: fine
        clock.advance(36)
        health.beat()
        dog.check()
    assert exits == []
    stop.set()
    dog.check()  # the stop is seen
    clock.advance(31)
    health.beat()  # still turning (a stuck close, say), but not done 30 s after the stop
    dog.check()
    assert exits == [Watchdog.EXIT_CODE]


def test_the_endpoints_listen_on_loopback_unless_told_otherwise() -> None:
    import json
    import urllib.request

    from driftline.config import Settings
    from driftline.health import serve_endpoints
    from driftline.metrics import ServeMetrics

    assert Settings().http.host == "127.0.0.1"
    health = Health()
    server = serve_endpoints(0, Settings().http.host, ServeMetrics().registry, health)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=10) as answer:
            assert json.loads(answer.read()) == {"live": "ok"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            assert b"driftline_ready" in answer.read()
    finally:
        server.shutdown()
        server.server_close()
