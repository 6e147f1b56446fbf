"""Wire formats and schema evolution, without a broker."""

from __future__ import annotations

import json
import struct

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro.utils import generate_many

from driftline.errors import DecodeError, SchemaError
from driftline.schemas import (
    AvroDecoder,
    AvroEncoder,
    AvroSchema,
    RegistryResolver,
    builtin_store,
    load_schema,
)
from driftline.schemas.wire import BUILTIN_SCHEMA_FILES

STORE = builtin_store()
EVENT = {"event_id": "e-1", "event_time": 1_700_000_000_123, "features": [1.5, -2.0, 3.25], "source": "crm"}


def test_single_object_encoding_matches_the_avro_spec() -> None:
    schema = STORE.latest("io.driftline.InputEvent")
    data = AvroEncoder.single_object(schema).encode(EVENT)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema.fingerprint
    # CRC-64-AVRO of the canonical form, little-endian (as the Java implementation writes it).
    assert len(schema.fingerprint) == 8
    assert AvroDecoder(STORE).decode(data) == EVENT


def test_confluent_framing_written_by_confluent_kafka_decodes() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://wire-test"})
    schema = STORE.latest("io.driftline.InputEvent")
    data = AvroSerializer(client, json.dumps(schema.raw))(
        EVENT, SerializationContext("t", MessageField.VALUE)
    )
    assert data is not None
    assert data[:1] == b"\x00"
    schema_id = struct.unpack(">I", data[1:5])[0]
    resolver = RegistryResolver(client)
    assert resolver.get(schema_id).name == "io.driftline.InputEvent"
    assert AvroDecoder(STORE, resolver).decode(data) == EVENT


def test_our_confluent_encoder_round_trips_through_the_registry() -> None:
    resolver = RegistryResolver(SchemaRegistryClient.new_client({"url": "mock://wire-test-2"}))
    schema = STORE.latest("io.driftline.Prediction")
    encoder = AvroEncoder.for_settings(schema, resolver, "predictions-value")
    record = {
        "event_id": "e",
        "event_time": 1,
        "model_name": "m",
        "model_version": "3",
        "scores": [0.25, 0.75],
        "predicted_class": 1,
        "processing_ms": 2.5,
        "predicted_label": "yes",
        "value": None,
    }
    assert AvroDecoder(STORE, resolver).decode(encoder.encode(record)) == record


def test_predictions_and_versions_written_before_version_2_still_decode() -> None:
    old = {
        "event_id": "e",
        "event_time": 1,
        "model_name": "m",
        "model_version": "3",
        "scores": [0.25, 0.75],
        "predicted_class": 1,
        "processing_ms": 2.5,
    }
    data = AvroEncoder.single_object(load_schema("prediction.v1.avsc")).encode(old)
    assert AvroDecoder(STORE).decode(data) == {**old, "predicted_label": None, "value": None}


def test_an_event_written_with_schema_v1_still_decodes_with_defaults() -> None:
    v1 = load_schema("input_event.v1.avsc")
    old = {"event_id": "old", "event_time": 5, "features": [1.0]}
    decoded = AvroDecoder(STORE).decode(AvroEncoder.single_object(v1).encode(old))
    assert decoded == {**old, "source": None}  # read with the newest InputEvent: the added field defaults


def _versions() -> list[tuple[AvroSchema, AvroSchema]]:
    schemas = [load_schema(f) for f in BUILTIN_SCHEMA_FILES]
    pairs = []
    for i, newer in enumerate(schemas):
        pairs += [(older, newer) for older in schemas[:i] if older.name == newer.name]
    return pairs


@pytest.mark.parametrize(("older", "newer"), _versions(), ids=lambda s: s.name)
def test_every_schema_version_is_backward_compatible(older: AvroSchema, newer: AvroSchema) -> None:
    """Data written with any older version reads with the newer one (fastavro generates the data)."""
    store = builtin_store()
    decoder = AvroDecoder(store)
    for record in generate_many(dict(older.raw), 200):
        decoded = decoder.decode(AvroEncoder.single_object(older).encode(record))
        assert set(decoded) == set(newer.field_names)


def test_every_bundled_schema_file_loads_and_the_store_knows_it() -> None:
    for name in BUILTIN_SCHEMA_FILES:
        schema = load_schema(name)
        assert STORE.by_fingerprint(schema.fingerprint) == schema


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\x42\x00garbage", "undecodable"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown-schema"),
        (b"\x00\x00\x00\x00\x01\x02", "unknown-schema"),
    ],
)
def test_undecodable_payloads_raise_decode_errors_with_reasons(payload: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        AvroDecoder(STORE).decode(payload)
    assert caught.value.reason == reason


def test_trailing_bytes_and_truncation_are_rejected() -> None:
    data = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent")).encode(EVENT)
    for bad in (data + b"\x00", data[:-3]):
        with pytest.raises(DecodeError, match="undecodable"):
            AvroDecoder(STORE).decode(bad)


def test_invalid_schemas_are_refused_clearly() -> None:
    with pytest.raises(SchemaError, match="not valid JSON"):
        AvroSchema.from_json("{")
    with pytest.raises(SchemaError, match="named Avro records"):
        AvroSchema.from_dict({"type": "array", "items": "int"})


def test_stamped_templates_equal_records_encoded_at_that_time() -> None:
    from driftline.schemas.columnar import avro_long
    from driftline.streams.produce import stamp_template

    for name, extra in (
        ("io.driftline.InputEvent", {"features": [1.0], "source": "x"}),
        ("io.driftline.Label", {"label": 1}),
    ):
        encoder = AvroEncoder.single_object(STORE.latest(name))
        for event_id in ("", "e", "é" * 70):
            before, after = stamp_template(encoder, {"event_id": event_id, "event_time": 0, **extra})
            for ms in (0, 1, -5, 1_795_000_000_000, 2**62):
                assert before + avro_long(ms) + after == encoder.encode(
                    {"event_id": event_id, "event_time": ms, **extra}
                )
