"""Micro-batching by size and by a maximum wait (the latency budget).

A batch closes when it holds ``max_size`` events, or ``max_wait`` seconds after its first event
arrived, whichever comes first. The source is anything with ``consume(n, timeout)``, such as a
confluent-kafka ``Consumer`` or :class:`driftline.testing.ListSource`; the clock is injectable.

>>> from driftline.testing import ListSource, ManualClock
>>> clock = ManualClock()
>>> source = ListSource(list(range(7)), clock=clock)
>>> batcher = MicroBatcher(max_size=3, max_wait=0.05, clock=clock)
>>> [len(batcher.collect(source)) for _ in range(4)]
[3, 3, 1, 0]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

M = TypeVar("M")
M_co = TypeVar("M_co", covariant=True)


class Source(Protocol[M_co]):
    def consume(self, num_messages: int, timeout: float) -> list[M_co]: ...


@dataclass
class Batch(Generic[M]):
    """Messages in arrival order, with the monotonic arrival time of each."""

    messages: list[M] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages)

    def extend(self, messages: list[M], now: float) -> None:
        self.messages.extend(messages)
        self.arrivals.extend([now] * len(messages))


class MicroBatcher:
    """Collects one batch at a time from a source."""

    def __init__(
        self, max_size: int, max_wait: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_size < 1 or max_wait < 0:
            raise ValueError("max_size must be >= 1 and max_wait >= 0")
        self.max_size = max_size
        self.max_wait = max_wait
        self._clock = clock

    def collect(self, source: Source[M], idle_timeout: float = 0.1) -> Batch[M]:
        """Wait up to ``idle_timeout`` for a first event, then fill the batch within the budget.

        Returns an empty batch when nothing arrived.
        """
        batch: Batch[M] = Batch()
        first = source.consume(self.max_size, idle_timeout)
        if not first:
            return batch
        start = self._clock()
        batch.extend(first, start)
        deadline = start + self.max_wait
        while len(batch) < self.max_size:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            more = source.consume(self.max_size - len(batch), remaining)
            if more:
                batch.extend(more, self._clock())
        return batch
