"""Fakes and a clock for testing Driftline's pure logic without a broker.

These stand in for confluent-kafka objects in unit tests only; integration tests use a real broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

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


# The Kafka client fakes live in driftline.testing.kafka; the names are re-exported here.
from driftline.testing.kafka import (  # noqa: E402
    FakeCluster,
    FakeConsumer,
    FakeGroupConsumer,
    FakeProducer,
    ProducedRecord,
)

__all__ = [
    "FakeCluster",
    "FakeConsumer",
    "FakeGroupConsumer",
    "FakeMessage",
    "FakeProducer",
    "ListSource",
    "ManualClock",
    "ProducedRecord",
]
