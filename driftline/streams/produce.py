"""``driftline produce``: a synthetic business system that emits Avro events (and, later, their labels).

Bounded by ``count`` and optionally paced to ``rate`` events per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import Producer

from driftline.config import Settings
from driftline.errors import DeliveryError
from driftline.schemas.wire import AvroEncoder
from driftline.streams import kafka
from driftline.streams.synthetic import LabelledData

CHUNK = 500


@dataclass(frozen=True)
class ProduceReport:
    events: int
    labels: int
    malformed: int
    seconds: float


def event_id(run_id: str, index: int) -> str:
    return f"{run_id}-{index:09d}"


def corrupt(payload: bytes) -> bytes:
    """A deterministic malformed variant of an event: its Avro body cut short."""
    return payload[: max(1, len(payload) // 2)]


class Pacer:
    """Sleeps so that event ``n`` is not sent before ``n / rate`` seconds (no-op without a rate)."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate, self._clock, self._sleep = rate, clock, sleep
        self._start = clock()

    def wait(self, sent: int) -> None:
        if self._rate:
            ahead = self._start + sent / self._rate - self._clock()
            if ahead > 0:
                self._sleep(ahead)


def chunks(n: int, size: int = CHUNK) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def produce_stream(
    settings: Settings,
    data: LabelledData,
    events: AvroEncoder,
    labels: AvroEncoder | None,
    *,
    run_id: str,
    rate: float | None = None,
    malformed_every: int = 0,
    on_progress: Callable[[int], None] | None = None,
    timeout: float = 60.0,
    chunk_size: int = CHUNK,
) -> ProduceReport:
    """Produce every row of ``data`` as an InputEvent (and a Label when ``labels`` is given)."""
    producer = kafka.producer(settings)
    topics = settings.topics
    pacer = Pacer(rate)
    started = time.monotonic()
    malformed = 0
    rows = data.x.tolist()
    for chunk in chunks(len(rows), chunk_size):
        pacer.wait(chunk.start)
        now_ms = int(time.time() * 1000)
        for i in chunk:
            eid = event_id(run_id, i)
            key = eid.encode()
            value = events.encode(
                {"event_id": eid, "event_time": now_ms, "features": rows[i], "source": run_id}
            )
            if malformed_every and i % malformed_every == malformed_every - 1:
                value, malformed = corrupt(value), malformed + 1
            _produce(producer, topics.events, key, value)
            if labels is not None:
                label = labels.encode({"event_id": eid, "event_time": now_ms, "label": int(data.y[i])})
                _produce(producer, topics.labels, key, label)
        producer.poll(0)
        if on_progress is not None:
            on_progress(len(chunk))
    remaining = producer.flush(timeout)
    if remaining:
        raise DeliveryError(f"{remaining} events were not acknowledged within {timeout:.0f}s.")
    n = len(rows)
    return ProduceReport(n, n if labels is not None else 0, malformed, time.monotonic() - started)


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)
