"""Driftline services as child processes (demo, bench, tests): started, awaited, always stopped.

>>> cmd = driftline_command(Settings(bootstrap_servers="127.0.0.1:9092"), "serve", "--help")
>>> cmd[1:5]
['-m', 'driftline', '-b', '127.0.0.1:9092']
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from driftline.config import Settings
from driftline.errors import DriftlineError


def driftline_command(settings: Settings, *args: str) -> list[str]:
    return [sys.executable, "-m", "driftline", "-b", str(settings.bootstrap_servers), *args]


def topic_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process the same topics, model, keys and client settings."""
    env = {**os.environ, **settings.topics.environment(), "DRIFTLINE_MODEL_NAME": settings.model_name}
    signing = settings.signing
    if signing.private_key is not None:
        env["DRIFTLINE_SIGNING__PRIVATE_KEY"] = str(signing.private_key)
    if signing.public_keys:
        env["DRIFTLINE_SIGNING__PUBLIC_KEYS"] = json.dumps([str(k) for k in signing.public_keys])
    for key, value in settings.kafka.items():
        env[f"DRIFTLINE_KAFKA__{key}"] = value
    return env


@dataclass
class Service:
    """A running child process and its log file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        """Wait until the log shows ``text``; raise with the log's tail on exit or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise DriftlineError(
                    f"{self.log.name}: exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
                )
            time.sleep(0.1)
        raise DriftlineError(f"{self.log.name}: no {text!r} within {timeout:.0f}s:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


@contextmanager
def service(
    settings: Settings, log: Path, *args: str, ready: str | None = None, ready_timeout: float = 120.0
) -> Iterator[Service]:
    """Run ``driftline ARGS`` until the block ends (also on errors and Ctrl-C)."""
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            driftline_command(settings, *args),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=topic_environment(settings),
        )
    running = Service(proc, log)
    try:
        if ready is not None:
            running.wait_for(ready, ready_timeout)
        yield running
    finally:
        running.stop()


SERVE_READY = "serving "
"""What ``driftline serve`` logs once it has joined its group and is consuming."""

MONITOR_READY = "watching "
"""What ``driftline monitor`` logs once it has restored its state and reads its inputs."""
