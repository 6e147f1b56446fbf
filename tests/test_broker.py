"""The local broker's failure paths say what happened."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from driftline.broker import LocalBroker, local
from driftline.config import load_settings
from driftline.errors import BrokerError

pytestmark = pytest.mark.kafka  # every test here starts a JVM


def test_a_broker_that_dies_while_starting_reports_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its port is already taken: the JVM exits, and the error carries the log's tail."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        real_free_port, taken_first = (
            local._free_port,
            [port],
        )  # the broker port is taken, the controller's is free
        monkeypatch.setattr(
            local, "_free_port", lambda: taken_first.pop() if taken_first else real_free_port()
        )
        broker = LocalBroker(tmp_path, load_settings().cache_dir, heap_mb=256)
        with pytest.raises(BrokerError, match="exited with code") as caught:
            broker.start(timeout=90)
    assert "Log tail" in str(caught.value)
    assert broker.status() is None


def test_a_jvm_that_cannot_start_is_reported(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="Formatting the broker's storage failed"):
        LocalBroker(tmp_path, load_settings().cache_dir, heap_mb=1).start(timeout=30)
