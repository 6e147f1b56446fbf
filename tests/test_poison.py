"""No input can stop a partition: events of about 1 MB, and one exactly at the broker's limit, are
dead-lettered in reduced form while every good event around them is predicted once."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from driftline.config import Settings
from driftline.models import control
from driftline.services import MONITOR_READY, service
from driftline.streams import kafka
from tests.helpers import (
    MODEL,
    dlq_headers,
    prediction_ids,
    produce_events,
    read_topic,
    serving,
    versioned,
)

pytestmark = pytest.mark.kafka


def produce_at_the_broker_limit(settings: Settings, partition: int) -> tuple[bytes, int]:
    """The largest value (random bytes, no key) the broker accepts, and its offset: one byte more
    is refused."""
    producer = kafka.producer(
        settings, **{"message.max.bytes": 2_000_000, "compression.type": "none", "linger.ms": 0}
    )
    reports: list[tuple[KafkaError | None, Message]] = []
    for size in range(1_048_530, 1_048_400, -1):  # the default limit is 1,048,588 bytes per batch
        value = os.urandom(size)
        reports.clear()
        producer.produce(
            settings.topics.events,
            value,
            partition=partition,
            on_delivery=lambda e, m: reports.append((e, m)),
        )
        assert producer.flush(30) == 0
        err, message = reports[0]
        if err is None:
            assert size < 1_048_530, "the first try was accepted: start the search higher"
            return value, int(message.offset() or 0)
        assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    raise AssertionError("no value near the broker's limit was accepted")


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_events_of_a_megabyte_are_dead_lettered_reduced_and_stop_nothing(
    settings: Settings, model_dir: Path, tmp_path: Path, exactly_once: bool
) -> None:
    before = produce_events(settings, 1000, run_id="before")
    big = os.urandom(999_900)  # what librdkafka's defaults let a producer write
    producer = kafka.producer(settings, **{"compression.type": "none"})
    offsets: list[int | None] = []
    producer.produce(
        settings.topics.events,
        big,
        b"big-key",
        partition=0,
        on_delivery=lambda _e, m: offsets.append(m.offset()),
    )
    assert producer.flush(30) == 0
    at_limit, at_limit_offset = produce_at_the_broker_limit(settings, partition=1)
    after = produce_events(settings, 1000, run_id="after")
    args = ["--group", "g-poison", "--instance-id", "poison"] + (["--exactly-once"] if exactly_once else [])
    with serving(settings, model_dir, tmp_path / "serve.log", *args) as running:
        predictions = read_topic(
            settings, settings.topics.predictions, expected=2000, read_committed=exactly_once, timeout=120
        )
        dead = read_topic(settings, settings.topics.dead_letters, expected=2, read_committed=exactly_once)
        assert running.proc.poll() is None, running.output()  # never crashed
        assert running.stop() == 0, running.output()
    got = Counter(prediction_ids(predictions))
    assert set(got) == set(before) | set(after)
    assert max(got.values()) == 1  # no restart, so no replay either
    assert len(dead) == 2
    by_size = {int(dlq_headers(m)["driftline.dlq.size"]): (m, dlq_headers(m)) for m in dead}
    assert set(by_size) == {len(big), len(at_limit)}
    for value, partition, offset in ((big, 0, offsets[0]), (at_limit, 1, at_limit_offset)):
        message, headers = by_size[len(value)]
        assert headers["driftline.dlq.reason"] == "undecodable"
        assert headers["driftline.dlq.reduced"] == "too-large"
        assert headers["driftline.dlq.sha256"] == hashlib.sha256(value).hexdigest()
        assert message.value() == value[:1024]
        assert headers["driftline.dlq.topic"] == settings.topics.events
        assert (headers["driftline.dlq.partition"], headers["driftline.dlq.offset"]) == (
            str(partition),
            str(offset),
        )


def test_the_producer_refuses_what_the_broker_would_refuse(settings: Settings) -> None:
    """Our producers keep librdkafka's limit (1,000,000 bytes), under the broker's (1,048,588)."""
    producer = kafka.producer(settings)
    with pytest.raises(KafkaException) as refused:
        producer.produce(settings.topics.events, os.urandom(1_000_001))
    assert refused.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    limit = kafka.topic_max_message_bytes(settings, settings.topics.dead_letters)
    assert limit is not None
    assert limit >= 1_000_000


def test_the_monitor_dead_letters_a_megabyte_reduced_and_reads_on(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path
) -> None:
    private = (keys / "signing.key").read_bytes()
    control.publish_version(registry, versioned(model_dir, tmp_path, "1"), private)
    control.promote(registry, private, MODEL, "1")
    big_event, big_label = os.urandom(999_900), os.urandom(999_950)
    producer = kafka.producer(registry, **{"compression.type": "none"})
    producer.produce(registry.topics.events, big_event, b"e")
    producer.produce(registry.topics.labels, big_label, b"l")
    assert producer.flush(30) == 0
    produce_events(registry, 500, run_id="good")
    with service(registry, tmp_path / "monitor.log", "monitor", ready=MONITOR_READY) as monitor:
        dead = read_topic(registry, registry.topics.dead_letters, expected=2, read_committed=True, timeout=90)
        monitor.wait_for("read to events 501", 60)
        assert monitor.proc.poll() is None, monitor.output()
    headers = sorted((dlq_headers(m) for m in dead), key=lambda h: h["driftline.dlq.topic"])
    assert [h["driftline.dlq.topic"] for h in headers] == sorted(
        [registry.topics.events, registry.topics.labels]
    )
    assert {h["driftline.dlq.service"] for h in headers} == {"monitor"}
    assert {h["driftline.dlq.reduced"] for h in headers} == {"too-large"}
    assert {int(h["driftline.dlq.size"]) for h in headers} == {len(big_event), len(big_label)}
