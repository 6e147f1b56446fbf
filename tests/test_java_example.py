"""The Java example (``examples/java``) against a real broker and a real `serve`: a Java producer
(kafka-clients' default murmur2 partitioner, Avro's own single-object encoder) writes canonical events,
bad records and labels; `serve` answers; the Java consumer checks and summarises; and the topics are
read back here too. The jar is built once per source hash and cached (first build: Maven)."""

from __future__ import annotations

import datetime
import decimal
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from driftline.config import Settings, load_settings
from driftline.schemas import AvroDecoder, AvroSchema, builtin_store
from driftline.testing.java_example import EXAMPLE_DIR, build_jar, run_jar, summary
from tests.helpers import DECODER, STORE, dlq_headers, read_topic, serving

pytestmark = pytest.mark.kafka

COUNT = 1000
DLQ_HEADERS = ("reason", "detail", "topic", "partition", "offset", "timestamp")
PAYMENT = AvroSchema.from_json((EXAMPLE_DIR / "src/main/avro/payment.avsc").read_text())


@pytest.fixture(scope="module")
def jar() -> Path:
    return build_jar(load_settings().cache_dir)


def java(jar: Path, *args: str, timeout: float = 90.0) -> dict[str, Any]:
    """Run one command of the example with ``--json``; its summary (it must have exited 0)."""
    done = run_jar(jar, *args, "--json", timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return summary(done)


def consume_options(settings: Settings) -> list[str]:
    """``consume``'s options for the test's topics."""
    topics = settings.topics
    return [
        *("--bootstrap-servers", str(settings.bootstrap_servers), "--events-topic", topics.events),
        *("--predictions-topic", topics.predictions, "--dead-letters-topic", topics.dead_letters),
        *("--labels-topic", topics.labels, "--drift-alerts-topic", topics.drift_alerts),
    ]


def test_java_single_object_headers_are_driftlines(jar: Path) -> None:
    headers = java(jar, "fingerprints")
    for name in ("io.driftline.InputEvent", "io.driftline.Label", "io.driftline.Prediction"):
        assert headers[name] == "c301" + STORE.latest(name).fingerprint.hex()
    assert headers["com.example.payments.Payment"] == "c301" + PAYMENT.fingerprint.hex()


def test_java_events_are_answered_once_on_their_partition_and_bad_ones_dead_lettered(
    settings: Settings, model_dir: Path, tmp_path: Path, jar: Path
) -> None:
    topics = settings.topics
    server = ["--bootstrap-servers", str(settings.bootstrap_servers)]
    produce = ["--events-topic", topics.events, "--labels-topic", topics.labels, "--run-id", "jx"]
    produced = java(jar, "produce", *server, *produce, "--count", str(COUNT), "--bad")
    bad: dict[str, str] = produced["bad_records"]
    assert produced["events"] == COUNT
    assert len(bad) == 6
    assert produced["labels"] == produced["labels_on_event_partition"] == COUNT

    with serving(settings, model_dir, tmp_path / "serve.log", "--group", "g-java"):
        started = time.monotonic()
        seen = java(jar, "consume", *consume_options(settings), "--timeout-s", "60")
        assert time.monotonic() - started < 60

    # The Java consumer's own checks ...
    assert seen["ok"], seen["problems"]
    assert seen["events"] == COUNT + len(bad)
    assert seen["answered_exactly_once"]
    assert seen["predictions"] == seen["predicted_events"] == COUNT
    assert seen["dead_letters"] == seen["dead_lettered_events"] == len(bad)
    assert seen["predictions_on_event_partition"]
    assert seen["dead_letters_as_documented"]
    assert seen["labels"] == COUNT
    assert seen["labels_on_event_partition"]
    assert seen["dead_letter_reasons"] == dict(Counter(bad.values()))
    for sample in seen["dead_letter_samples"]:
        assert sample["headers"]["driftline.dlq.reason"] == bad[sample["key"]]
        assert {f"driftline.dlq.{h}" for h in DLQ_HEADERS} <= set(sample["headers"])

    # ... and the same, read here.
    events = read_topic(settings, topics.events, expected=COUNT + len(bad), settle=0)
    where = {(m.key() or b"").decode(): m for m in events}
    n = topics.partitions
    by_crc32 = sum(zlib.crc32(m.key() or b"") % n != m.partition() for m in events)
    assert by_crc32 > COUNT // 4  # murmur2 placed these: keying the outputs alone would misplace them
    predictions = read_topic(settings, topics.predictions, expected=COUNT)
    answered = Counter(str(DECODER.decode(m.value())["event_id"]) for m in predictions)
    assert answered == Counter(f"jx-{i:09d}" for i in range(COUNT))  # each good event, once
    for m in predictions:
        assert m.partition() == where[(m.key() or b"").decode()].partition()
    dead = read_topic(settings, topics.dead_letters, expected=len(bad))
    assert sorted((m.key() or b"").decode() for m in dead) == sorted(bad)
    for m in dead:
        key = (m.key() or b"").decode()
        source = where[key]
        h = dlq_headers(m)
        assert h["driftline.dlq.reason"] == bad[key]
        assert h["driftline.dlq.detail"]
        assert h["driftline.dlq.topic"] == topics.events
        assert (int(h["driftline.dlq.partition"]), int(h["driftline.dlq.offset"])) == (
            source.partition(),
            source.offset(),
        )
        assert int(h["driftline.dlq.timestamp"]) == source.timestamp()[1]
        assert m.partition() == source.partition()
        assert (m.value() or b"") == (source.value() or b"")
        assert h["example.expect-reason"] == bad[key]  # the input's own headers travel along
    labels = read_topic(settings, topics.labels, expected=COUNT, settle=0)
    assert all(m.partition() == where[(m.key() or b"").decode()].partition() for m in labels)


def test_java_payments_decode_with_driftlines_decoder(settings: Settings, jar: Path) -> None:
    """The user-schema mode: Java's decimal, nullable, string, boolean and timestamp-micros values
    arrive as Driftline reads them (tests/test_java_payments.py serves them end to end)."""
    before_us = time.time_ns() // 1000
    server = ["--bootstrap-servers", str(settings.bootstrap_servers)]
    produced = java(jar, "produce-payments", *server, "--topic", settings.topics.events, "--count", "40")
    assert produced["payments"] == 40
    assert produced["with_tip"] == 30
    assert produced["payment_header"] == "c301" + PAYMENT.fingerprint.hex()
    store = builtin_store()
    store.add(PAYMENT)
    decoder = AvroDecoder(store)
    records = read_topic(settings, settings.topics.events, expected=40, settle=0)
    assert len(records) == 40
    for m in records:
        payment = decoder.decode(m.value())
        assert (m.key() or b"").decode() == payment["event_id"]
        index = int(payment["event_id"].rsplit("-", 1)[1])
        assert decimal.Decimal("0.01") <= as_decimal(payment["amount"], 2) < decimal.Decimal("10000")
        assert (payment["tip"] is None) == (index % 4 == 0)
        assert payment["country"] in {"DE", "FR", "US", "GB", "JP", "BR", "IN", "NL"}
        assert isinstance(payment["card_present"], bool)
        assert abs(as_micros(payment["event_time"]) - before_us) < 60_000_000

    # Nothing serves these yet: the consumer's check fails, says so, and exits 1 after its timeout.
    done = run_jar(jar, "consume", *consume_options(settings), "--timeout-s", "3", "--json", timeout=60)
    assert done.returncode == 1, done.stderr
    unanswered = summary(done)
    assert not unanswered["ok"]
    assert not unanswered["complete_before_timeout"]
    assert unanswered["events"] == unanswered["unanswered"] == 40


def as_decimal(value: object, scale: int) -> decimal.Decimal:
    """A decoded Avro decimal: a Decimal when read with logical types, else its two's-complement bytes."""
    if isinstance(value, decimal.Decimal):
        return value
    assert isinstance(value, bytes)
    return decimal.Decimal(int.from_bytes(value, "big", signed=True)).scaleb(-scale)


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def as_micros(value: object) -> int:
    """A decoded timestamp-micros: a datetime when read with logical types, else the integer."""
    if isinstance(value, datetime.datetime):
        assert value.tzinfo is not None
        return (value - EPOCH) // datetime.timedelta(microseconds=1)
    assert isinstance(value, int)
    return value
