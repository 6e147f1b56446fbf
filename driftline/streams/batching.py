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


class Source(Protocol[M]):
    def consume(self, num_messages: int, timeout: float) -> list[M]: ...


@dataclass
class Batch(Generic[M]):
    """Messages in arrival order, the monotonic arrival time of each, and when the batch opened."""

    messages: list[M] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    opened: float = 0.0

    def __len__(self) -> int:
        return len(self.messages)

    def extend(self, messages: list[M], now: float) -> None:
        if not self.messages:
            self.opened = now
        self.messages.extend(messages)
        self.arrivals.extend([now] * len(messages))

    def take(self) -> Batch[M]:
        """Move the contents out into a new batch and leave this one empty."""
        taken = Batch(self.messages, self.arrivals, self.opened)
        self.messages, self.arrivals = [], []
        return taken


class MicroBatcher:
    """Fills one batch at a time from a source."""

    def __init__(self, max_size: int, max_wait: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_size < 1 or max_wait < 0:
            raise ValueError("max_size must be >= 1 and max_wait >= 0")
        self.max_size = max_size
        self.max_wait = max_wait
        self._clock = clock

    def collect(self, source: Source[M], idle_timeout: float = 0.1) -> Batch[M]:
        """Collect a new batch (empty if nothing arrived within ``idle_timeout``)."""
        batch: Batch[M] = Batch()
        self.fill(source, batch, idle_timeout)
        return batch

    def fill(self, source: Source[M], batch: Batch[M], idle_timeout: float = 0.1) -> None:
        """Fill ``batch`` until it holds ``max_size`` events or its wait budget is spent.

        The batch is owned by the caller, so a rebalance callback running inside ``consume`` may
        handle and empty it (see :class:`driftline.streams.serve.StreamProcessor`).
        """
        if not batch:
            # A consumer's consume(n, timeout) blocks until it has n messages or the timeout passes,
            # so wait for one event only: the latency budget starts when it arrives.
            first = source.consume(1, idle_timeout)
            if not first:
                return
            batch.extend(first, self._clock())
        while len(batch) < self.max_size:
            remaining = batch.opened + self.max_wait - self._clock()
            if remaining <= 0:
                return
            more = source.consume(self.max_size - len(batch), remaining)
            if more:
                batch.extend(more, self._clock())
