"""``driftline tail``: subscribe to a topic and print its records decoded, one JSON object per line."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from driftline.config import Settings
from driftline.errors import DecodeError
from driftline.headers import header_list
from driftline.schemas.wire import AvroDecoder
from driftline.streams import kafka
from driftline.streams.kafka import Message


def describe(message: Message, decoder: AvroDecoder) -> dict[str, Any]:
    """A JSON-ready view of one message: its position, decoded value (or why not) and headers."""
    view: dict[str, Any] = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "key": (message.key() or b"").decode(errors="replace"),
    }
    try:
        view["value"] = decoder.decode(message.value())
    except DecodeError as exc:
        view["raw"] = (message.value() or b"").hex()
        view["undecoded"] = exc.reason
    headers = header_list(message.headers())
    if headers:
        view["headers"] = {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in headers}
    return view


def tail(
    settings: Settings,
    topic: str,
    decoder: AvroDecoder,
    emit: Callable[[str], None],
    *,
    from_beginning: bool = True,
    max_records: int | None = None,
    idle_timeout: float | None = None,
    read_committed: bool = False,
) -> int:
    """Print records until ``max_records`` or ``idle_timeout`` seconds without one; return the count."""
    consumer = kafka.consumer(
        settings,
        f"driftline-tail-{uuid.uuid4().hex[:8]}",
        **{
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        },
    )
    consumer.subscribe([topic])
    seen, last = 0, time.monotonic()
    try:
        while max_records is None or seen < max_records:
            polled = kafka.data_messages([consumer.poll(0.2)])
            if not polled:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
                continue
            last = time.monotonic()
            emit(json.dumps(describe(polled[0], decoder), default=str))
            seen += 1
    finally:
        consumer.close()
    return seen
