"""Fakes and a clock for testing Driftline's pure logic without a broker.

These stand in for confluent-kafka objects in unit tests only; integration tests use a real broker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")


class ManualClock:
    """A monotonic clock that moves only when told to.

    >>> c = ManualClock(); c.advance(1.5); c()
    1.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ListSource(Generic[T]):
    """``consume(n, timeout)`` over a list, timed like a Kafka consumer's: a call that cannot return
    ``n`` items waits out its whole ``timeout`` (on ``clock``) and returns what there is."""

    def __init__(self, items: Sequence[T], clock: ManualClock | None = None) -> None:
        self._items = list(items)
        self._clock = clock

    def consume(self, num_messages: int, timeout: float) -> list[T]:
        taken, self._items = self._items[:num_messages], self._items[num_messages:]
        if len(taken) < num_messages and self._clock is not None:
            self._clock.advance(timeout)
        return taken


@dataclass
class FakeMessage:
    """The subset of ``confluent_kafka.Message`` that Driftline's processing reads."""

    _value: bytes | None
    _key: bytes | None = None
    _topic: str = "events"
    _partition: int = 0
    _offset: int = 0
    _timestamp_ms: int = 0
    _headers: list[tuple[str, str | bytes | None]] = field(default_factory=list)

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)

    def headers(self) -> list[tuple[str, str | bytes | None]] | None:
        return self._headers or None

    def error(self) -> None:
        return None


@dataclass
class ProducedRecord:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, str | bytes | None]]


class FakeProducer:
    """``produce``/``poll``/``flush`` like ``confluent_kafka.Producer``, into a list.

    Records over ``max_message_bytes`` are refused at ``produce()`` with ``MSG_SIZE_TOO_LARGE``, as
    librdkafka does; ``broker_refuses`` decides, per record, the error its delivery report carries
    (the broker's answer), served on the next ``poll``/``flush``. Refused records are not kept.

    >>> p = FakeProducer(max_message_bytes=10)
    >>> p.produce("t", b"small"); p.flush(); [r.value for r in p.records]
    0
    [b'small']
    """

    def __init__(
        self,
        max_message_bytes: int = 1_000_000,
        broker_refuses: Callable[[ProducedRecord], KafkaError | None] = lambda _r: None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.broker_refuses = broker_refuses
        self.records: list[ProducedRecord] = []
        self._reports: list[tuple[Callable[[KafkaError | None, Any], None] | None, KafkaError | None]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        record = ProducedRecord(topic, value, key, list(headers or []))
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v or b"") for k, v in record.headers)
        if size > self.max_message_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
        err = self.broker_refuses(record)
        if err is None:
            self.records.append(record)
        self._reports.append((on_delivery, err))

    def poll(self, timeout: float = 0.0) -> int:
        reports, self._reports = self._reports, []
        for callback, err in reports:
            if callback is not None:
                callback(err, None)
        return len(reports)

    def flush(self, timeout: float = 0.0) -> int:
        self.poll()
        return 0
