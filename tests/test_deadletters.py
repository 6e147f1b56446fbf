"""Dead letters that cannot stop a partition: the full form when it fits, else a reduced form."""

from __future__ import annotations

import hashlib

import pytest
from confluent_kafka import KafkaError

from driftline.errors import DeliveryError
from driftline.streams.deadletters import (
    PREFIX_BYTES,
    DeadLetterWriter,
    dead_letter_record,
    max_message_bytes,
)
from driftline.streams.records import DeadLetter
from driftline.testing import FakeMessage, FakeProducer, ProducedRecord


def dead(value: bytes, offset: int = 3, key: bytes | None = b"k") -> DeadLetter:
    message = FakeMessage(value, key, "events", 1, offset, 1234, [("trace", b"abc")])
    return DeadLetter(message, "undecodable", "not Avro")


def text_headers(record: ProducedRecord) -> dict[str, str]:
    return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in record.headers}


def test_a_dead_letter_that_fits_keeps_everything() -> None:
    record = dead_letter_record(dead(b"junk"), limit=10_000)
    assert record.reduced is None
    assert (record.key, record.value) == (b"k", b"junk")
    assert ("trace", b"abc") in record.headers  # the original headers travel on


def test_a_too_large_dead_letter_is_reduced_with_its_position_size_and_hash() -> None:
    value = bytes(range(256)) * 4000  # 1,024,000 bytes
    record = dead_letter_record(dead(value, offset=41), limit=1_000_000)
    headers = dict(record.headers)
    assert record.reduced == "too-large"
    assert record.value == value[:PREFIX_BYTES]
    assert headers["driftline.dlq.reason"] == b"undecodable"  # why the event was rejected
    assert headers["driftline.dlq.reduced"] == b"too-large"  # why this record is short
    assert headers["driftline.dlq.offset"] == b"41"
    assert headers["driftline.dlq.partition"] == b"1"
    assert headers["driftline.dlq.size"] == str(len(value)).encode()
    assert headers["driftline.dlq.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert "trace" not in headers


def test_the_limit_is_the_smaller_of_the_producer_and_the_topic() -> None:
    assert max_message_bytes({}) == 1_000_000
    assert max_message_bytes({"message.max.bytes": "2000000"}, topic_limit=1_048_588) < 1_048_588
    assert max_message_bytes({"message.max.bytes": 5000}, topic_limit=1_048_588) == 5000


def test_a_record_refused_at_produce_is_written_reduced() -> None:
    producer = FakeProducer(max_message_bytes=4096)
    reduced: list[str] = []
    writer = DeadLetterWriter(producer, "dlq", limit=1_000_000, on_reduced=reduced.append)
    writer.write_batch([dead(b"x" * 10_000), dead(b"ok", offset=4)])  # our limit is wrong: 1 MB
    assert producer.flush() == 0
    assert [len(r.value or b"") for r in producer.records] == [PREFIX_BYTES, 2]
    assert text_headers(producer.records[0])["driftline.dlq.reduced"] == "too-large"
    assert reduced == ["too-large"]


def test_a_record_the_broker_refuses_is_written_again_reduced_before_the_commit() -> None:
    too_big = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "broker: message too large")
    producer = FakeProducer(broker_refuses=lambda r: too_big if len(r.value or b"") > 5000 else None)
    writer = DeadLetterWriter(producer, "dlq", limit=1_000_000, service="monitor")
    batch = [dead(b"y" * 8000, offset=7), dead(b"fine", offset=8)]
    writer.write_batch(batch)
    producer.flush()
    assert writer.rewrite_refused() == 1
    producer.flush()
    assert writer.failures() == []
    first, second = sorted(producer.records, key=lambda r: text_headers(r)["driftline.dlq.offset"])
    assert text_headers(first)["driftline.dlq.reduced"] == "refused:MSG_SIZE_TOO_LARGE"
    assert text_headers(first)["driftline.dlq.service"] == "monitor"
    assert second.value == b"fine"
    # A replay of the same batch (an aborted transaction) writes it reduced from the start.
    producer.records.clear()
    writer.write_batch(batch)
    producer.flush()
    assert writer.rewrite_refused() == 0
    assert [len(r.value or b"") for r in producer.records] == [PREFIX_BYTES, 4]


def test_when_even_the_reduced_form_is_refused_the_writer_says_so() -> None:
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "not allowed")
    producer = FakeProducer(broker_refuses=lambda _r: denied)
    writer = DeadLetterWriter(producer, "dlq", limit=1_000_000)
    writer.write_batch([dead(b"z")])
    producer.flush()
    writer.rewrite_refused()
    producer.flush()
    assert len(writer.failures()) == 1  # the caller raises DeliveryError and commits nothing
    assert producer.records == []


def test_a_producer_too_small_for_the_reduced_form_raises() -> None:
    writer = DeadLetterWriter(FakeProducer(max_message_bytes=100), "dlq", limit=1_000_000)
    with pytest.raises(DeliveryError, match="not even in reduced form"):
        writer.write_batch([dead(b"w" * 5000)])
