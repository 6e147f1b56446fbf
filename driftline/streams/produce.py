"""``driftline produce``: a synthetic business system that emits Avro events (and, later, their labels).

Bounded by ``count`` and optionally paced to ``rate`` events per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from driftline.config import Settings
from driftline.errors import DeliveryError
from driftline.schemas.columnar import avro_long
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


def stamp_template(encoder: AvroEncoder, record: dict[str, Any]) -> tuple[bytes, bytes]:
    """Encode a record whose first two fields are ``event_id`` (string) and ``event_time`` (long, here 0),
    and split it around the event time so that ``before + avro_long(ms) + after`` is the record at ``ms``.
    """
    encoded = encoder.encode(record)
    id_bytes = record["event_id"].encode()
    at = len(encoder.header) + len(avro_long(len(id_bytes))) + len(id_bytes)
    if encoder.schema.field_names[:2] != ["event_id", "event_time"] or encoded[at] != 0:
        raise ValueError("stamp_template needs event_id then event_time (0) as the first two fields")
    return encoded[:at], encoded[at + 1 :]


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
    first_index: int = 0,
) -> ProduceReport:
    """Produce every row of ``data`` as an InputEvent (and a Label when ``labels`` is given)."""
    producer = kafka.producer(settings)
    topics = settings.topics
    ids = [event_id(run_id, first_index + i) for i in range(len(data.y))]
    rows = data.x.tolist()
    # Encode everything up front with a blank event time, so the paced loop only stamps and sends.
    event_parts = [
        stamp_template(events, {"event_id": eid, "event_time": 0, "features": row, "source": run_id})
        for eid, row in zip(ids, rows, strict=True)
    ]
    label_parts = (
        [
            stamp_template(labels, {"event_id": eid, "event_time": 0, "label": label})
            for eid, label in zip(ids, data.y.tolist(), strict=True)
        ]
        if labels is not None
        else []
    )
    pacer = Pacer(rate)
    started = time.monotonic()
    malformed = 0
    for chunk in chunks(len(rows), chunk_size):
        pacer.wait(chunk.start)
        now = avro_long(int(time.time() * 1000))
        for i in chunk:
            key = ids[i].encode()
            before, after = event_parts[i]
            value = before + now + after
            if malformed_every and i % malformed_every == malformed_every - 1:
                value, malformed = corrupt(value), malformed + 1
            kafka.produce(producer, topics.events, value, key)
            if label_parts:
                before, after = label_parts[i]
                kafka.produce(producer, topics.labels, before + now + after, key)
        producer.poll(0)
        if on_progress is not None:
            on_progress(len(chunk))
    remaining = producer.flush(timeout)
    if remaining:
        raise DeliveryError(f"{remaining} events were not acknowledged within {timeout:.0f}s.")
    n = len(rows)
    return ProduceReport(n, len(label_parts), malformed, time.monotonic() - started)
