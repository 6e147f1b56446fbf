"""The processor against a real broker: nothing lost, bad input dead-lettered, crashes replayed."""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from prometheus_client import generate_latest

from driftline.config import Settings
from driftline.options import ServeOptions
from driftline.schemas import AvroDecoder, AvroEncoder, AvroSchema, RegistryResolver
from driftline.streams import kafka
from driftline.streams.produce import produce_stream
from driftline.streams.serve import build_processor
from driftline.streams.synthetic import generate
from tests.helpers import (
    DECODER,
    STORE,
    dlq_headers,
    prediction_ids,
    produce_events,
    produce_raw,
    read_topic,
    serving,
)

pytestmark = pytest.mark.kafka


def committed_offsets(settings: Settings, group: str) -> int:
    consumer = kafka.consumer(settings, group)
    parts = [TopicPartition(settings.topics.events, p) for p in range(settings.topics.partitions)]
    try:
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def test_every_event_gets_exactly_one_prediction(settings: Settings, model_dir: Path, tmp_path: Path) -> None:
    ids = produce_events(settings, 5000, run_id="once")
    with serving(settings, model_dir, tmp_path / "serve.log", "--group", "g-once") as running:
        predictions = read_topic(settings, settings.topics.predictions, expected=len(ids))
        assert running.stop() == 0, running.output()
        running.wait_for("stopped cleanly", 5)  # SIGTERM: finish, commit, leave the group
    got = Counter(prediction_ids(predictions))
    assert set(got) == set(ids)
    assert max(got.values()) == 1
    first = DECODER.decode(predictions[0].value())
    assert first["model_name"] == "agrawal"
    assert first["model_version"] == "1"
    assert math.isclose(sum(first["scores"]), 1.0, rel_tol=1e-5)
    assert predictions[0].key() == first["event_id"].encode()  # keyed like the input
    assert committed_offsets(settings, "g-once") == len(ids)  # all committed on clean shutdown


def _produce_in_background(settings: Settings, count: int, rate: float, run_id: str) -> threading.Thread:
    data = generate("agrawal", count, seed=5)
    encoder = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
    thread = threading.Thread(
        target=produce_stream, args=(settings, data, encoder, None), kwargs={"run_id": run_id, "rate": rate}
    )
    thread.start()
    return thread


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_sigkill_mid_stream_loses_nothing(
    settings: Settings, model_dir: Path, tmp_path: Path, exactly_once: bool
) -> None:
    count = 12000
    args = ["--group", "g-kill", "--instance-id", "one", "--max-batch", "200", "--max-wait-ms", "5"]
    if exactly_once:
        args.append("--exactly-once")
    producer = _produce_in_background(settings, count, rate=4000, run_id="kill")
    try:
        with serving(settings, model_dir, tmp_path / "serve.log", *args) as first:
            # Kill once predictions are flowing but well before the producer is done.
            assert len(read_topic(settings, settings.topics.predictions, expected=1000, settle=0)) >= 1000
            first.proc.kill()
            first.proc.wait(10)
            assert first.proc.returncode == -9
        with serving(settings, model_dir, tmp_path / "serve2.log", *args):
            producer.join(60)
            predictions = read_topic(
                settings, settings.topics.predictions, expected=count, read_committed=exactly_once, timeout=90
            )
    finally:
        producer.join(60)
    got = Counter(prediction_ids(predictions))
    assert set(got) == {f"kill-{i:09d}" for i in range(count)}
    if exactly_once:
        assert max(got.values()) == 1, "a read_committed view must hold no duplicate"


def test_bad_events_go_to_the_dead_letter_topic(settings: Settings, model_dir: Path, tmp_path: Path) -> None:
    enc = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
    good = [
        enc.encode({"event_id": f"good-{i}", "event_time": 1, "features": [float(i)] * 9, "source": None})
        for i in range(20)
    ]
    unknown = AvroSchema.from_dict(
        {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}
    )
    user = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "Loan",
            "namespace": "acme",
            "fields": [{"name": "salary", "type": "double"}, {"name": "age", "type": "int"}],
        }
    )
    bad = {
        b"junk": b"\x17not avro at all",
        b"empty": b"",
        b"truncated": good[0][:12],
        b"unknown-schema": AvroEncoder.single_object(unknown).encode({"x": 1}),
        b"confluent-no-registry": b"\x00\x00\x00\x00\x07" + good[0][10:],
        b"wrong-length": enc.encode(
            {"event_id": "w", "event_time": 1, "features": [1.0, 2.0], "source": None}
        ),
        b"nan": enc.encode(
            {"event_id": "n", "event_time": 1, "features": [math.nan] + [1.0] * 8, "source": None}
        ),
        b"missing-field": AvroEncoder.single_object(user).encode({"salary": 1.0, "age": 30}),
    }
    records = [(f"good-{i}".encode(), v) for i, v in enumerate(good)] + list(bad.items())
    produce_raw(settings, records)
    user_schema = tmp_path / "loan.avsc"
    user_schema.write_text(json.dumps(user.raw))
    with serving(
        settings, model_dir, tmp_path / "serve.log", "--group", "g-bad", "--schema", str(user_schema)
    ):
        predictions = read_topic(settings, settings.topics.predictions, expected=len(good))
        dead = read_topic(settings, settings.topics.dead_letters, expected=len(bad))
    assert sorted(prediction_ids(predictions)) == sorted(f"good-{i}" for i in range(20))
    assert len(dead) == len(bad)
    reasons = {m.key(): dlq_headers(m) for m in dead}
    expected = {
        b"junk": "undecodable",
        b"empty": "empty",
        b"truncated": "undecodable",
        b"unknown-schema": "unknown-schema",
        b"confluent-no-registry": "unknown-schema",
        b"wrong-length": "wrong-length",
        b"nan": "non-finite",
        b"missing-field": "missing-field",
    }
    assert {k: h["driftline.dlq.reason"] for k, h in reasons.items()} == expected
    source = {
        (m.partition(), m.offset()): m.value()
        for m in read_topic(settings, settings.topics.events, expected=len(records), settle=0)
    }
    for m in dead:  # original bytes and the source position travel with the reason
        key = m.key()
        assert key is not None
        assert (m.value() or b"") == bad[key]
        h = reasons[key]
        assert h["driftline.dlq.topic"] == settings.topics.events
        assert (source[(int(h["driftline.dlq.partition"]), int(h["driftline.dlq.offset"]))] or b"") == bad[
            key
        ]
        assert h["driftline.dlq.detail"]


def test_confluent_framing_through_a_schema_registry(settings: Settings, model_dir: Path) -> None:
    """Events framed by confluent-kafka's own AvroSerializer (magic byte + schema id) are served.

    The registry is confluent-kafka's in-memory ``mock://`` client (no registry server runs here);
    the broker is real.
    """
    client = SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})
    schema = STORE.latest("io.driftline.InputEvent")
    serializer = AvroSerializer(client, json.dumps(schema.raw))
    ctx = SerializationContext(settings.topics.events, MessageField.VALUE)
    events = [
        (
            f"c-{i}".encode(),
            serializer({"event_id": f"c-{i}", "event_time": 5, "features": [1.0] * 9, "source": "erp"}, ctx),
        )
        for i in range(50)
    ]
    assert events[0][1][:1] == b"\x00"
    produce_raw(settings, events)
    processor = build_processor(
        settings,
        model_dir,
        ServeOptions(group_id="g-confluent"),
        device="cpu",
        registry=RegistryResolver(client),
    )
    stop_event = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop_event,))
    thread.start()
    try:
        predictions = read_topic(settings, settings.topics.predictions, expected=50)
    finally:
        stop_event.set()
        thread.join(30)
    assert not thread.is_alive()
    assert sorted(prediction_ids_confluent(predictions, client)) == sorted(f"c-{i}" for i in range(50))
    exposed = generate_latest(processor.metrics.registry).decode()
    assert "driftline_events_consumed_total 50.0" in exposed
    assert "driftline_predictions_produced_total 50.0" in exposed
    assert 'driftline_model_info{model="agrawal",version="1"} 1.0' in exposed
    assert "driftline_end_to_end_latency_seconds_count 50" in exposed


def prediction_ids_confluent(messages: list[Message], client: SchemaRegistryClient) -> list[str]:
    decoder = AvroDecoder(STORE, RegistryResolver(client))
    assert all((m.value() or b"")[:1] == b"\x00" for m in messages)  # predictions use the registry too
    return [decoder.decode(m.value())["event_id"] for m in messages]


def test_a_rebalance_mid_stream_neither_loses_nor_repeats(
    settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    """A second processor joins the group while events flow: the in-flight batch is finished and
    committed before the partitions move, so every event has exactly one prediction."""
    count = 12000
    args = ["--group", "g-scale", "--max-batch", "300", "--max-wait-ms", "10"]
    producer = _produce_in_background(settings, count, rate=4000, run_id="scale")
    try:
        with serving(settings, model_dir, tmp_path / "a.log", *args, "--instance-id", "a"):
            assert len(read_topic(settings, settings.topics.predictions, expected=1000, settle=0)) >= 1000
            with serving(settings, model_dir, tmp_path / "b.log", *args, "--instance-id", "b") as second:
                producer.join(60)
                predictions = read_topic(settings, settings.topics.predictions, expected=count, timeout=90)
                assert "serving" in second.output()
    finally:
        producer.join(60)
    got = Counter(prediction_ids(predictions))
    assert set(got) == {f"scale-{i:09d}" for i in range(count)}
    assert max(got.values()) == 1
