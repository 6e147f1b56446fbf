"""Outputs on the input's partition: a producer with Java's partitioner (murmur2) writes the events,
and every prediction lands on the partition number of its event (librdkafka's own default, CRC32,
would put most of them elsewhere)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from driftline.config import Settings
from driftline.schemas import AvroEncoder
from driftline.streams import kafka
from driftline.streams.kafka import KafkaError, Message
from tests.helpers import DECODER, STORE, read_topic, serving

pytestmark = pytest.mark.kafka

EVENTS = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
COUNT = 2000


def test_predictions_land_on_their_events_partition_whatever_the_producers_partitioner(
    settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    java_like = kafka.producer(settings, partitioner="murmur2_random")
    placed: dict[str, int] = {}

    def delivered(err: KafkaError | None, message: Message) -> None:
        assert err is None, err
        placed[(message.key() or b"").decode()] = int(message.partition() or 0)

    for i in range(COUNT):
        eid = f"j-{i:05d}"
        value = EVENTS.encode(
            {"event_id": eid, "event_time": 1, "features": [float(i % 5)] * 9, "source": None}
        )
        java_like.produce(settings.topics.events, value, eid.encode(), on_delivery=delivered)
    assert java_like.flush(60) == 0
    n = settings.topics.partitions
    elsewhere_by_crc32 = sum(zlib.crc32(eid.encode()) % n != p for eid, p in placed.items())
    assert elsewhere_by_crc32 > COUNT // 4  # the test can fail: keying alone would misplace these

    with serving(settings, model_dir, tmp_path / "serve.log", "--group", "g-partitions"):
        predictions = read_topic(settings, settings.topics.predictions, expected=COUNT, timeout=120)
    assert len(predictions) == COUNT
    for m in predictions:
        assert m.partition() == placed[str(DECODER.decode(m.value())["event_id"])]
