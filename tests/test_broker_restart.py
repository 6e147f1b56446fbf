"""The local broker keeps its data across stops: same address, topics and records; only --fresh wipes.

Every test here starts its own broker in a temporary home (not the session's cluster), so each one
that starts a JVM carries the ``kafka`` marker. Timeouts are generous: a 2-core machine shared with
other work starts a broker in 10-30 s, and a resumed one first recovers its logs.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from driftline.broker import LocalBroker
from driftline.cli import main
from driftline.config import Settings, Topics, load_settings
from driftline.errors import BrokerError
from driftline.streams import kafka
from tests.helpers import prediction_ids, produce_events, read_topic, serving

START_TIMEOUT = 240.0
READ_TIMEOUT = 180.0


def _broker(home: Path, log: list[str] | None = None) -> LocalBroker:
    sink = log.append if log is not None else (lambda _: None)
    return LocalBroker(home, load_settings().cache_dir, heap_mb=256, partitions=2, log=sink)


def _settings(bootstrap_servers: str) -> Settings:
    topics = Topics().scoped(f"r{uuid.uuid4().hex[:10]}", partitions=2)
    return load_settings(bootstrap_servers=bootstrap_servers).model_copy(update={"topics": topics})


def _topic_names(settings: Settings) -> set[str]:
    return set(kafka.admin(settings).list_topics(timeout=60).topics)


def _produce(settings: Settings, topic: str, count: int) -> list[bytes]:
    producer = kafka.producer(settings)
    keys = [f"k{i:05d}".encode() for i in range(count)]
    for key in keys:
        producer.produce(topic, b"value-" + key, key)
    assert producer.flush(READ_TIMEOUT) == 0
    return keys


@pytest.mark.kafka
def test_a_restarted_broker_keeps_its_address_topics_and_records(tmp_path: Path) -> None:
    log: list[str] = []
    broker = _broker(tmp_path, log)
    first = broker.start(timeout=START_TIMEOUT)
    try:
        record = broker.saved()
        settings = _settings(first.bootstrap_servers)
        topic = settings.topics.events
        kafka.create_topics(settings, [topic])
        keys = _produce(settings, topic, 1000)
        assert broker.stop()

        again = broker.start(timeout=START_TIMEOUT)
        assert again.bootstrap_servers == first.bootstrap_servers
        assert broker.saved() == record  # same cluster id and ports, not formatted again
        assert topic in _topic_names(settings)
        kept = [(m.key(), m.value()) for m in kafka.read_to_end(settings, topic, timeout=READ_TIMEOUT)]
        assert sorted(kept) == [(key, b"value-" + key) for key in keys]
        assert not any("Wiping" in line for line in log)
        assert broker.stop()

        wiped = broker.start(timeout=START_TIMEOUT, fresh=True)
        assert any(line.startswith(f"Wiping {broker.data_dir} (--fresh)") for line in log)
        assert broker.saved() != record
        assert topic not in _topic_names(_settings(wiped.bootstrap_servers))
    finally:
        broker.stop()


@pytest.mark.kafka
def test_cli_restart_keeps_the_address_and_a_taken_port_is_reported(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path)]
    runner = CliRunner()
    timeout = ["--heap-mb", "256", "--timeout", str(START_TIMEOUT)]
    started = runner.invoke(main, [*home, "broker", "start", *timeout])
    try:
        assert started.exit_code == 0, started.output
        address = _broker(tmp_path).status()
        assert address is not None
        restarted = runner.invoke(main, [*home, "broker", "restart", *timeout])
        assert restarted.exit_code == 0, restarted.output
        assert "Stopped the local broker." in restarted.output
        assert f"Kafka serves at {address.bootstrap_servers} " in restarted.output
        assert runner.invoke(main, [*home, "broker", "stop"]).exit_code == 0

        port = int(address.bootstrap_servers.rsplit(":", 1)[1])
        with socket.socket() as squatter:  # someone else takes the broker's port while it is down
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            refused = runner.invoke(main, [*home, "broker", "start", *timeout])
        assert isinstance(refused.exception, BrokerError), refused.output
        message = str(refused.exception)
        assert f"Port {port} on 127.0.0.1" in message
        assert "taken by another process" in message
        assert "Stop that process" in message
        assert "--fresh" in message
        assert (tmp_path / "broker" / "broker.json").exists()  # nothing was wiped
        assert _broker(tmp_path).status() is None
    finally:
        runner.invoke(main, [*home, "broker", "stop"])


def test_data_without_a_record_of_its_ports_is_not_wiped(tmp_path: Path) -> None:
    """A data dir an older Driftline formatted (no broker.json): refused, kept, --fresh named."""
    meta = tmp_path / "broker" / "data" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("cluster.id=old\n")
    with pytest.raises(BrokerError, match=r"no broker\.json") as caught:
        _broker(tmp_path).start(timeout=START_TIMEOUT)
    assert "--fresh" in str(caught.value)
    assert meta.exists()


def test_broker_help_explains_resume_fresh_and_restart() -> None:
    runner = CliRunner()
    start = runner.invoke(main, ["broker", "start", "--help"])
    assert start.exit_code == 0
    assert "--fresh" in start.output
    assert "resumes" in start.output
    restart = runner.invoke(main, ["broker", "restart", "--help"])
    assert restart.exit_code == 0
    assert "same data and address" in restart.output


def _readiness(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()
    except OSError as exc:  # not listening yet
        return 0, str(exc)


def _wait_for_readiness(port: int, status: int, timeout: float = READ_TIMEOUT) -> tuple[float, str]:
    """Seconds until /readyz answered ``status``, and its body."""
    started = time.monotonic()
    while True:
        code, body = _readiness(port)
        if code == status:
            return time.monotonic() - started, body
        assert time.monotonic() - started < timeout, f"/readyz still answers {code}: {body}"
        time.sleep(0.2)


@pytest.mark.kafka
def test_serve_keeps_serving_across_a_broker_stop_and_start(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`driftline serve` is not restarted: it turns not-ready while the cluster is gone, ready again
    when it returns, and every event gets a prediction."""
    monkeypatch.setenv("DRIFTLINE_HTTP__UNREACHABLE_AFTER_S", "2")
    broker = _broker(tmp_path / "home")
    info = broker.start(timeout=START_TIMEOUT)
    port = _free_port()
    try:
        settings = _settings(info.bootstrap_servers)
        kafka.create_topics(settings)
        log = tmp_path / "serve.log"
        args = ["--group", "g-restart", "--metrics-port", str(port)]
        with serving(settings, model_dir, log, *args) as running:
            before = produce_events(settings, 500, run_id="before")
            read_topic(settings, settings.topics.predictions, expected=len(before), timeout=READ_TIMEOUT)
            _wait_for_readiness(port, 200)
            assert broker.stop()
            _, body = _wait_for_readiness(port, 503)
            assert "unreachable" in json.loads(body)["cluster"]
            assert broker.start(timeout=START_TIMEOUT).bootstrap_servers == info.bootstrap_servers
            back, _ = _wait_for_readiness(port, 200)
            print(f"serve was ready again {back:.1f}s after the broker served")
            after = produce_events(settings, 500, run_id="after", seed=2)
            predictions = read_topic(
                settings, settings.topics.predictions, expected=len(before) + len(after), timeout=READ_TIMEOUT
            )
            assert running.proc.poll() is None, running.output()
            assert running.stop() == 0, running.output()
        got = Counter(prediction_ids(predictions))
        assert set(got) == set(before) | set(after), running.output()
        assert "cannot reach the Kafka cluster" in log.read_text()
    finally:
        broker.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
