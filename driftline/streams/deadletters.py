"""Dead letters that cannot stop a partition.

An event that could not be handled goes to the dead-letter topic with its original key, bytes and
headers, plus ``driftline.dlq.*`` headers saying why and where it came from. When that record cannot
be written as it is (larger than the producer's or the topic's limit, or refused by the broker for
any other reason), a **reduced form** is written instead: the same ``driftline.dlq.*`` headers, the
first :data:`PREFIX_BYTES` bytes of the value (and of the key), the original sizes and the value's
SHA-256, and ``driftline.dlq.reduced`` naming why it was reduced. Only if even that fails does the
service stop, loudly, without committing past the event.

Header values are UTF-8 text. The full set:

========================== ==================================================================
``driftline.dlq.reason``   why the event was rejected (``undecodable``, ``bad-type``, ...)
``driftline.dlq.detail``   a sentence naming what was wrong
``driftline.dlq.topic``    the source topic
``driftline.dlq.partition`` its partition (decimal)
``driftline.dlq.offset``   its offset (decimal)
``driftline.dlq.timestamp`` its Kafka timestamp, ms since the epoch (decimal)
``driftline.dlq.service``  the service that dead-lettered it, when not ``serve``
``driftline.dlq.reduced``  only on a reduced form: ``too-large`` or ``refused:<Kafka error>``
``driftline.dlq.size``     reduced form only: the original value's size in bytes
``driftline.dlq.key-size`` reduced form only: the original key's size in bytes
``driftline.dlq.sha256``   reduced form only: SHA-256 of the original value (hex)
========================== ==================================================================

>>> from driftline.testing import FakeMessage
>>> from driftline.streams.records import DeadLetter
>>> big = DeadLetter(FakeMessage(b"x" * 5000, _offset=7), "undecodable", "not Avro")
>>> record = dead_letter_record(big, limit=2048)
>>> record.reduced, len(record.value or b""), dict(record.headers)["driftline.dlq.size"]
('too-large', 1024, b'5000')
>>> dead_letter_record(big, limit=10_000).reduced is None
True
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from driftline.errors import DeliveryError
from driftline.headers import header_list
from driftline.streams import kafka
from driftline.streams.kafka import Header, KafkaError, KafkaException, Producing
from driftline.streams.records import DeadLetter, SourceMessage

log = logging.getLogger(__name__)

DLQ_PREFIX = "driftline.dlq."
PREFIX_BYTES = 1024
"""How much of a too-large value (and key) a reduced dead letter keeps."""
DETAIL_CHARS = 2000
"""A reduced dead letter's detail is cut to this many characters."""
RECORD_OVERHEAD = 512
"""Bytes kept free for the record batch's framing when judging whether a record fits."""
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes`` (the producer's own limit)."""

Position = tuple[str | None, int | None, int | None]


@dataclass(frozen=True)
class DeadLetterRecord:
    """What is produced to the dead-letter topic for one dead letter."""

    key: bytes | None
    value: bytes | None
    headers: list[Header]
    reduced: str | None = None
    """``None`` for the full form; else why it was reduced (``too-large``, ``refused:...``)."""


def position(message: SourceMessage) -> Position:
    return message.topic(), message.partition(), message.offset()


def dead_letter_headers(dead: DeadLetter, service: str | None = None) -> list[Header]:
    """Where the event came from and why it was rejected (without the original headers)."""
    m = dead.message
    headers: list[Header] = [
        (DLQ_PREFIX + "reason", dead.reason.encode()),
        (DLQ_PREFIX + "detail", dead.detail.encode()),
        (DLQ_PREFIX + "topic", str(m.topic()).encode()),
        (DLQ_PREFIX + "partition", str(m.partition()).encode()),
        (DLQ_PREFIX + "offset", str(m.offset()).encode()),
        (DLQ_PREFIX + "timestamp", str(m.timestamp()[1]).encode()),
    ]
    if service is not None:
        headers.append((DLQ_PREFIX + "service", service.encode()))
    return headers


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> int:
    """The bytes a record takes on the wire, framing aside (what Kafka's size limits count)."""
    size = len(key or b"") + len(value or b"")
    for name, header_value in headers:
        size += len(name.encode()) + len(header_value or b"")
    return size


def full_record(dead: DeadLetter, service: str | None = None) -> DeadLetterRecord:
    m = dead.message
    headers = [*header_list(m.headers()), *dead_letter_headers(dead, service)]
    return DeadLetterRecord(m.key(), m.value(), headers)


def reduced_record(dead: DeadLetter, why: str, service: str | None = None) -> DeadLetterRecord:
    """The small form: position, sizes, a prefix of the bytes, the value's hash; no original headers."""
    m = dead.message
    value, key = m.value() or b"", m.key() or b""
    short = DeadLetter(m, dead.reason, dead.detail[:DETAIL_CHARS])
    headers: list[Header] = [
        *dead_letter_headers(short, service),
        (DLQ_PREFIX + "reduced", why.encode()),
        (DLQ_PREFIX + "size", str(len(value)).encode()),
        (DLQ_PREFIX + "key-size", str(len(key)).encode()),
        (DLQ_PREFIX + "sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    short_key = key[:PREFIX_BYTES] if m.key() is not None else None
    return DeadLetterRecord(short_key, value[:PREFIX_BYTES], headers, why)


def dead_letter_record(dead: DeadLetter, limit: int, service: str | None = None) -> DeadLetterRecord:
    """The full record if it fits in ``limit`` bytes (framing included), else the reduced form."""
    full = full_record(dead, service)
    if record_size(full.key, full.value, full.headers) + RECORD_OVERHEAD <= limit:
        return full
    return reduced_record(dead, "too-large", service)


def max_message_bytes(client_config: dict[str, Any], topic_limit: int | None = None) -> int:
    """The largest record a producer with ``client_config`` can write to a topic whose
    ``max.message.bytes`` is ``topic_limit`` (``None``: unknown)."""
    limit = int(client_config.get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
    if topic_limit is not None:
        # The topic's limit counts the compressed batch: leave room for lz4's worst-case growth.
        limit = min(limit, topic_limit - topic_limit // 200)
    return limit


class DeadLetterWriter:
    """Produces dead letters; falls back to the reduced form whenever the full one is refused.

    A refusal at ``produce()`` (the record is over the producer's limit, say) is handled at once. A
    refusal by the broker arrives later, in a delivery report: the writer remembers the event's
    position and keeps the dead letter, and :meth:`rewrite_refused` writes those again in reduced
    form, before the caller commits. A batch that is replayed instead (an aborted transaction) writes
    them reduced from the start. A reduced form that is refused too is a failure the caller must not
    commit past: :meth:`failures` lists them.
    """

    def __init__(
        self,
        producer: Producing,
        topic: str,
        limit: int,
        service: str | None = None,
        on_reduced: Callable[[str], None] = lambda _why: None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self.limit = limit
        self._service = service
        self._on_reduced = on_reduced
        self.same_partition = False
        """Write each dead letter to its event's partition number (the topics are co-partitioned)."""
        self._refused: list[tuple[DeadLetter, str]] = []
        self._failures: list[str] = []
        self._reduce: dict[Position, str] = {}
        """Positions whose full dead letter the broker refused once: written reduced from now on."""

    def write_batch(self, dead_letters: Sequence[DeadLetter]) -> None:
        for dead in dead_letters:
            why = self._reduce.get(position(dead.message))
            if why is None:
                self._write(dead, dead_letter_record(dead, self.limit, self._service))
            else:
                self._write(dead, reduced_record(dead, why, self._service))

    def rewrite_refused(self) -> int:
        """Write again, reduced, each dead letter the broker refused since the last call; return how many."""
        refused, self._refused = self._refused, []
        for dead, why in refused:
            self._write(dead, reduced_record(dead, why, self._service))
        return len(refused)

    def discard_pending(self) -> None:
        """Forget refusals and failures of records whose batch is replayed (an aborted transaction)."""
        self._refused, self._failures = [], []

    def failures(self) -> list[str]:
        """Reduced dead letters the broker refused since the last call (the caller must not commit)."""
        failures, self._failures = self._failures, []
        return failures

    def _write(self, dead: DeadLetter, record: DeadLetterRecord) -> None:
        try:
            self._produce(dead, record)
        except KafkaException as exc:
            if record.reduced is not None:
                raise cannot_write(dead, str(exc)) from exc
            record = reduced_record(dead, _why_refused(exc), self._service)
            log.warning("dead letter %s refused (%s): writing its reduced form", position(dead.message), exc)
            try:
                self._produce(dead, record)
            except KafkaException as again:
                raise cannot_write(dead, str(again)) from again
        if record.reduced is not None:
            self._on_reduced(record.reduced)

    def _produce(self, dead: DeadLetter, record: DeadLetterRecord) -> None:
        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is None or err.code() in _NOT_ABOUT_THE_RECORD:
                return  # delivered, or dropped with its whole batch (an aborted transaction)
            if record.reduced is None and not err.retriable():
                why = f"refused:{err.name()}"
                self._reduce[position(dead.message)] = why
                self._refused.append((dead, why))
            else:
                self._failures.append(f"{position(dead.message)}: {err}")

        partition = dead.message.partition() if self.same_partition else None
        kafka.produce(
            self._producer,
            self._topic,
            record.value,
            record.key,
            partition=kafka.ANY_PARTITION if partition is None else partition,
            on_delivery=delivered,
            headers=record.headers,
        )


_NOT_ABOUT_THE_RECORD = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


def _why_refused(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    if not isinstance(err, KafkaError):
        return "refused:unknown"
    if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        return "too-large"
    return f"refused:{err.name()}"


def cannot_write(dead: DeadLetter, why: str) -> DeliveryError:
    t, p, o = position(dead.message)
    return DeliveryError(
        f"Could not write the dead letter of {t}[{p}]@{o}, not even in reduced form ({why}). Nothing "
        "past it was committed: check that the dead-letter topic exists and is writable by this "
        "service, and that message.max.bytes is at least a few kB."
    )
