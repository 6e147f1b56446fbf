"""Model versions on a real broker: `serve` loads the live version from the registry topic, swaps new
ones in between batches without losing or repeating an event, and refuses what it cannot trust."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Message
from prometheus_client import generate_latest

from driftline.cli import main
from driftline.config import Settings
from driftline.errors import ConfigError
from driftline.metrics import ServeMetrics
from driftline.models import control
from driftline.models.packing import pack_artifact, sha256_hex, split
from driftline.models.signing import generate_keys, key_id, sign_version
from driftline.models.transport import CHUNKS_HEADER, artifact_partition
from driftline.options import ServeOptions
from driftline.services import SERVE_READY, service, topic_environment
from driftline.streams import kafka
from driftline.streams.app import serve_until_stopped
from tests.helpers import DECODER, MODEL, produce_events, read_topic, versioned
from tests.test_serve import _produce_in_background

pytestmark = pytest.mark.kafka


def predicted_versions(messages: list[Message]) -> dict[str, str]:
    return {
        str(r["event_id"]): str(r["model_version"])
        for r in map(DECODER.decode, (m.value() for m in messages))
    }


def audit_records(settings: Settings, expected: int) -> list[dict[str, object]]:
    return [DECODER.decode(m.value()) for m in read_topic(settings, settings.topics.audit, expected)]


@pytest.fixture
def in_process_serve(registry: Settings) -> Iterator[ServeMetrics]:
    """`serve` from the registry in a thread of this process (so its metrics can be read)."""
    metrics, stop, started = ServeMetrics(), threading.Event(), threading.Event()
    options = ServeOptions(group_id="g-refuse", instance_id="inproc", max_batch=200, max_wait_ms=5)
    thread = threading.Thread(
        target=serve_until_stopped,
        args=(registry, options, stop),
        kwargs={"device": "cpu", "metrics": metrics, "on_started": lambda _p: started.set()},
    )
    thread.start()
    try:
        assert started.wait(60), "serve did not start"
        yield metrics
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def wait_until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_forged_tampered_and_mismatched_versions_are_refused_while_serving_goes_on(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path, request: pytest.FixtureRequest
) -> None:
    private = (keys / "signing.key").read_bytes()
    control.publish_version(registry, versioned(model_dir, tmp_path, "1"), private)
    control.promote(registry, private, MODEL, "1")
    metrics: ServeMetrics = request.getfixturevalue("in_process_serve")

    def refused() -> dict[str, float]:
        text = generate_latest(metrics.registry).decode()
        return {
            line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("driftline_model_versions_refused_total{")
        }

    # 1. unsigned, and forged: signed by a key nobody trusts but claiming ours.
    v2 = control.publish_version(registry, versioned(model_dir, tmp_path, "2"), private)
    live2 = {**v2, "status": "LIVE", "reason": "forged"}
    other, _ = generate_keys()
    forged = {**sign_version(live2, other), "key_id": key_id((keys / "signing.pub").read_bytes())}
    control.write_records(registry, [{**live2, "signature": b""}, forged])
    # 2. tampered: a correctly signed version whose artifact chunks were replaced on the topic.
    v3_dir = versioned(model_dir, tmp_path, "3")
    v3 = control.publish_version(registry, v3_dir, private)
    data = pack_artifact(v3_dir)
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    overwrite = kafka.producer(registry)
    chunks = split(bytes(bad))
    for index, chunk in enumerate(chunks):
        overwrite.produce(
            registry.topics.artifacts,
            chunk,
            f"{v3['sha256']}:{index}".encode(),
            partition=artifact_partition(v3["sha256"], registry.topics.partitions),
            headers=[(CHUNKS_HEADER, str(len(chunks)).encode())],
        )
    assert overwrite.flush(10) == 0
    control.promote(registry, private, MODEL, "3")
    # 3. wrong sha256: a signed record naming bytes the artifact at its URL is not.
    v4_dir = versioned(model_dir, tmp_path, "4")
    v4_file = tmp_path / "v4.tar"
    v4_file.write_bytes(pack_artifact(v4_dir))
    wrong = {
        **v3,
        "version": "4",
        "status": "LIVE",
        "artifact_uri": v4_file.as_uri(),
        "sha256": sha256_hex(b"something else"),
        "reason": "wrong sha",
    }
    control.write_records(registry, [sign_version(wrong, private)])

    wait_until(lambda: sum(refused().values()) >= 4)
    assert refused() == {"unsigned": 1.0, "bad-signature": 1.0, "sha256-mismatch": 2.0}
    # Serving went on with v1 all along; a good version still goes live afterwards.
    ids = produce_events(registry, 300, run_id="before")
    predictions = read_topic(registry, registry.topics.predictions, expected=len(ids))
    assert set(predicted_versions(predictions).values()) == {"1"}
    control.publish_version(
        registry, versioned(model_dir, tmp_path, "5"), private, uri=(tmp_path / "v5.tar").as_uri()
    )
    control.promote(registry, private, MODEL, "5")
    wait_until(lambda: b'driftline_model_swaps_total{role="live"} 1.0' in generate_latest(metrics.registry))
    later = produce_events(registry, 300, run_id="after", seed=2)
    predictions = read_topic(registry, registry.topics.predictions, expected=len(ids) + len(later))
    assert {v for i, v in predicted_versions(predictions).items() if i.startswith("after")} == {"5"}
    audit = audit_records(registry, expected=5)
    assert Counter((r["action"], r["reason"]) for r in audit) == {
        ("REFUSED", "unsigned"): 1,
        ("REFUSED", "bad-signature"): 1,
        ("REFUSED", "sha256-mismatch"): 2,
        ("SWAPPED", "ok"): 1,
    }


def test_a_processor_started_later_serves_the_current_live_version(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path
) -> None:
    private = (keys / "signing.key").read_bytes()
    for version in ("1", "2", "3"):
        control.publish_version(registry, versioned(model_dir, tmp_path, version), private)
        control.promote(registry, private, MODEL, version)
    control.rollback(registry, private, MODEL)
    ids = produce_events(registry, 500, run_id="late")
    with service(
        registry, tmp_path / "serve.log", "serve", "--group", "g-late", ready=SERVE_READY
    ) as running:
        predictions = read_topic(registry, registry.topics.predictions, expected=len(ids))
        assert "loaded agrawal v2 from the registry" in running.output()
    assert set(predicted_versions(predictions).values()) == {"2"}
    assert len(predictions) == len(ids)


def test_a_shadow_version_scores_the_same_events_into_the_shadow_topic(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path
) -> None:
    private = (keys / "signing.key").read_bytes()
    control.publish_version(registry, versioned(model_dir, tmp_path, "1"), private)
    control.promote(registry, private, MODEL, "1")
    control.publish_version(registry, versioned(model_dir, tmp_path, "2"), private)
    control.set_status(registry, private, MODEL, "2", "SHADOW")
    ids = produce_events(registry, 500, run_id="shadow")
    with service(
        registry, tmp_path / "serve.log", "serve", "--group", "g-shadow", ready=SERVE_READY
    ) as running:
        live = read_topic(registry, registry.topics.predictions, expected=len(ids))
        shadow = read_topic(registry, registry.topics.shadow_predictions, expected=len(ids))
        assert "shadowing agrawal v2 next to live v1" in running.output()
    assert predicted_versions(live) == dict.fromkeys(ids, "1")
    assert predicted_versions(shadow) == dict.fromkeys(ids, "2")
    audit = audit_records(registry, expected=1)
    assert [(r["action"], r["version"]) for r in audit] == [("SHADOWING", "2")]


def test_the_models_commands_drive_the_registry(registry: Settings, model_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **topic_environment(registry),
        "DRIFTLINE_SIGNING__PRIVATE_KEY": "",
        "DRIFTLINE_SIGNING__PUBLIC_KEYS": "[]",
    }
    env = {k: v for k, v in env.items() if not k.startswith("DRIFTLINE_SIGNING")}
    cli = ["--home", str(home), "-b", str(registry.bootstrap_servers)]

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, [*cli, *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    no_key = CliRunner().invoke(main, [*cli, "models", "publish", str(model_dir)], env=env)
    assert isinstance(no_key.exception, ConfigError)  # `driftline` prints it as one line, exit code 2
    assert "driftline models keygen" in str(no_key.exception)
    run("models", "keygen")
    assert (home / "keys" / "signing.key").stat().st_mode & 0o077 == 0
    run("models", "publish", str(versioned(model_dir, tmp_path, "1")), "--live")
    run("models", "publish", str(versioned(model_dir, tmp_path, "2")), "--shadow")
    assert "agrawal v2: LIVE" in run("models", "promote", MODEL, "2")
    assert "agrawal v1: LIVE (rollback from v2" in run("models", "rollback", MODEL)
    history = run("models", "list", "--history")
    statuses = [line.split("│")[3].strip() for line in history.splitlines() if "│ agrawal" in line]
    assert statuses == ["CANDIDATE", "LIVE", "CANDIDATE", "SHADOW", "LIVE", "RETIRED", "LIVE", "RETIRED"]
    shown = json.loads(run("models", "show", MODEL))
    assert (shown["version"], shown["status"]) == ("1", "LIVE")


def runs(sequence: list[str]) -> list[str]:
    """The sequence without consecutive repeats: [1, 1, 2, 2, 1] -> [1, 2, 1]."""
    return [v for i, v in enumerate(sequence) if i == 0 or sequence[i - 1] != v]


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    remaining = iter(whole)
    return all(any(v == w for w in remaining) for v in part)


def test_promotions_and_a_rollback_under_load_lose_and_repeat_nothing(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path
) -> None:
    """100k events at a steady rate through two processes of one group; meanwhile versions 2, 3 and 4
    go live and a rollback returns to 3. Every event gets one prediction, and each partition's
    versions change in the order of the registry, at batch boundaries."""
    private = (keys / "signing.key").read_bytes()
    for version in ("1", "2", "3", "4"):
        control.publish_version(registry, versioned(model_dir, tmp_path, version), private)
    control.promote(registry, private, MODEL, "1")
    count, rate = 100_000, 12_500.0
    args = ["serve", "--group", "g-swap", "--max-batch", "500", "--max-wait-ms", "10"]
    with (
        service(registry, tmp_path / "a.log", *args, "--instance-id", "a", ready=SERVE_READY) as a,
        service(registry, tmp_path / "b.log", *args, "--instance-id", "b", ready=SERVE_READY) as b,
    ):
        producer = _produce_in_background(registry, count, rate, run_id="swap")
        time.sleep(1.5)
        for version in ("2", "3", "4"):
            control.promote(registry, private, MODEL, version)
            time.sleep(1.2)
        control.rollback(registry, private, MODEL)
        producer.join(60)
        predictions = read_topic(registry, registry.topics.predictions, expected=count, timeout=120)
        logs = a.output() + b.output()
    ids = Counter(str(DECODER.decode(m.value())["event_id"]) for m in predictions)
    assert len(ids) == count
    assert max(ids.values()) == 1, "an event was predicted twice"
    order = ["1", "2", "3", "4", "3"]
    by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for m in predictions:
        by_partition[m.partition() or 0].append(
            (m.offset() or 0, str(DECODER.decode(m.value())["model_version"]))
        )
    for partition, rows in by_partition.items():
        seen = runs([v for _, v in sorted(rows)])
        assert is_subsequence(seen, order), f"partition {partition} went {seen}"
    assert {v for rows in by_partition.values() for _, v in rows} == {"1", "2", "3", "4"}
    assert logs.count("swapped agrawal") == 8, logs[-3000:]  # 4 changes x 2 processes
    report_swap_gaps(predictions)


def report_swap_gaps(predictions: list[Message]) -> None:
    """Print (not assert: timing is for benchmarks) the largest pause in output at a version change
    against the largest pause elsewhere, per partition, from the predictions' broker timestamps."""
    at_swap: list[int] = []
    elsewhere: list[int] = []
    rows: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for m in predictions:
        version = str(DECODER.decode(m.value())["model_version"])
        rows[m.partition() or 0].append((m.offset() or 0, m.timestamp()[1], version))
    for partition_rows in rows.values():
        partition_rows.sort()
        for (_, t0, v0), (_, t1, v1) in itertools.pairwise(partition_rows):
            (at_swap if v0 != v1 else elsewhere).append(t1 - t0)
    print(f"\nlargest output pause at a swap {max(at_swap)} ms, elsewhere {max(elsewhere)} ms")
