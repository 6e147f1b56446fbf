"""Test helpers that talk to the real broker: produce events, read topics back, run `serve` as a process."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Message

from driftline.config import Settings
from driftline.headers import header_list
from driftline.models.artifact import copy_as_version
from driftline.schemas import AvroDecoder, AvroEncoder, builtin_store
from driftline.services import SERVE_READY, Service, service
from driftline.streams import kafka
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import generate

STORE = builtin_store()
DECODER = AvroDecoder(STORE)


def produce_events(settings: Settings, count: int, run_id: str, seed: int = 1) -> list[str]:
    """Produce ``count`` Agrawal events; return their ids."""
    data = generate("agrawal", count, seed=seed)
    encoder = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
    produce_stream(settings, data, encoder, None, run_id=run_id)
    return [f"{run_id}-{i:09d}" for i in range(count)]


def produce_raw(settings: Settings, records: Sequence[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) pairs as they are."""
    producer = kafka.producer(settings)
    for key, value in records:
        producer.produce(settings.topics.events, value, key)
    assert producer.flush(30) == 0


read_topic = functools.partial(kafka.read_topic, settle=1.0)
""":func:`driftline.streams.kafka.read_topic`, waiting a second after ``expected`` to catch extras."""


def prediction_ids(messages: Sequence[Message]) -> list[str]:
    return [str(DECODER.decode(m.value())["event_id"]) for m in messages]


def dlq_headers(message: Message) -> dict[str, str]:
    return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in header_list(message.headers())}


@contextmanager
def serving(settings: Settings, model_dir: Path, log: Path, *args: str) -> Iterator[Service]:
    """Run `driftline serve` as a separate process until the block ends."""
    with service(settings, log, "serve", "--model", str(model_dir), *args, ready=SERVE_READY) as running:
        yield running


MODEL = "agrawal"
"""The test model's name (see the ``model_dir`` fixture)."""


def versioned(model_dir: Path, root: Path, version: str) -> Path:
    """The test model as another version (same weights, its own config and hash)."""
    return copy_as_version(model_dir, root / f"v{version}", version)
