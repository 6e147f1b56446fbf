"""Confluent framing end to end against a real Schema Registry server (not ``mock://``).

A user's record schema is registered over HTTP, events are framed by confluent-kafka's own
AvroSerializer and go through the real broker, and the decoder every Driftline service builds
(:func:`driftline.streams.records.decoder_for`) reads them by the schema id in each event: a decoder
that resolved version 1 reads version 2 as soon as it appears, with no restart. The registry itself
refuses an incompatible change. See :mod:`tests.registry_fixtures` for where the registry comes from.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from driftline.config import Settings
from driftline.streams import kafka
from driftline.streams.records import decoder_for
from tests.helpers import produce_raw

pytestmark = pytest.mark.kafka
pytest_plugins = ["tests.registry_fixtures"]  # schema_registry_url, registry_client, subject

USER_V1: dict[str, Any] = {
    "type": "record",
    "name": "User",
    "namespace": "com.acme.accounts",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "event_time", "type": "long"},
        {"name": "age", "type": "double"},
        {"name": "country", "type": "string"},
    ],
}
USER_V2: dict[str, Any] = {  # BACKWARD compatible: the new field has a default
    **USER_V1,
    "fields": [*USER_V1["fields"], {"name": "tier", "type": "string", "default": "standard"}],
}
USER_BROKEN: dict[str, Any] = {  # not BACKWARD compatible: a new field without a default
    **USER_V1,
    "fields": [*USER_V1["fields"], {"name": "score", "type": "double"}],
}


def users(prefix: str, count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"event_id": f"{prefix}-{i}", "event_time": 1_700_000_000_000 + i, "age": 20.0 + i, "country": "NL"}
        | extra
        for i in range(count)
    ]


def frame_batch(
    client: SchemaRegistryClient, schema: dict[str, Any], topic: str, records: list[dict[str, Any]]
) -> list[tuple[bytes, bytes]]:
    """(key, Confluent-framed value) pairs written by confluent-kafka's AvroSerializer, which looks
    the schema up in the registry (it must be registered already) for its id."""
    serializer = AvroSerializer(client, json.dumps(schema), conf={"auto.register.schemas": False})
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [(r["event_id"].encode(), serializer(r, ctx)) for r in records]


def schema_id(value: bytes) -> int:
    assert value[:1] == b"\x00", "not Confluent-framed"
    framed: int = struct.unpack_from(">I", value, 1)[0]
    return framed


def register(client: SchemaRegistryClient, name: str, schema: dict[str, Any]) -> int:
    registered: int = client.register_schema(name, Schema(json.dumps(schema), "AVRO"))
    return registered


def test_decoder_reads_each_event_by_its_schema_id_across_an_evolution(
    schema_registry_url: str, registry_client: SchemaRegistryClient, settings: Settings
) -> None:
    topic = settings.topics.events
    value_subject = f"{topic}-value"  # the serializer's default TopicNameStrategy
    registry_client.set_compatibility(value_subject, "BACKWARD")
    v1 = register(registry_client, value_subject, USER_V1)
    first = users("v1", 20)
    produce_raw(settings, frame_batch(registry_client, USER_V1, topic, first))

    decoder = decoder_for(settings.model_copy(update={"schema_registry_url": schema_registry_url}))
    read = kafka.read_to_end(settings, topic)
    assert {schema_id(m.value() or b"") for m in read} == {v1}
    assert sorted((decoder.decode(m.value()) for m in read), key=lambda r: r["event_id"]) == sorted(
        first, key=lambda r: r["event_id"]
    )

    v2 = register(registry_client, value_subject, USER_V2)  # while the decoder above lives on
    assert v2 != v1
    assert registry_client.get_latest_version(value_subject).version == 2
    second = users("v2", 20, tier="gold")
    produce_raw(settings, frame_batch(registry_client, USER_V2, topic, second))

    decoded = [decoder.decode(m.value()) for m in kafka.read_to_end(settings, topic)]
    by_id = {r["event_id"]: r for r in decoded}
    assert len(decoded) == len(by_id) == 40
    assert all(by_id[r["event_id"]] == r for r in first)  # v1 events: read with their own schema
    assert all(by_id[r["event_id"]] == r for r in second)  # v2 events: the new field is there


def test_the_registry_refuses_an_incompatible_change(
    registry_client: SchemaRegistryClient, subject: str
) -> None:
    registry_client.set_compatibility(subject, "BACKWARD")
    register(registry_client, subject, USER_V1)
    broken = Schema(json.dumps(USER_BROKEN), "AVRO")
    assert registry_client.test_compatibility(subject, broken) is False
    with pytest.raises(SchemaRegistryError) as refused:
        registry_client.register_schema(subject, broken)
    assert refused.value.http_status_code == 409
    assert registry_client.test_compatibility(subject, Schema(json.dumps(USER_V2), "AVRO")) is True
    assert list(registry_client.get_versions(subject)) == [1]
