"""Avro over Kafka: the two framings Driftline reads and writes.

* **Single-object encoding** (Avro spec): ``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint of the
  writer schema + Avro binary. Used when no Schema Registry is configured; the writer schema must be known
  to the :class:`SchemaStore` (Driftline's own schemas, plus any ``.avsc`` files the user adds).
* **Confluent framing**: ``00`` + 4-byte big-endian schema id + Avro binary, the id resolved through a
  Schema Registry (confluent-kafka's client).

Decoders recognise both by the first byte. Records written with an older version of a schema are read
with the newest known version of the same record name, so added fields take their defaults.

>>> store = builtin_store()
>>> enc = AvroEncoder.single_object(store.latest("io.driftline.Label"))
>>> data = enc.encode({"event_id": "e1", "event_time": 1_700_000_000_000, "label": 1})
>>> data[:2].hex()
'c301'
>>> AvroDecoder(store).decode(data)["label"]
1
"""

from __future__ import annotations

import copy
import io
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from driftline.errors import DecodeError, SchemaError

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_SINGLE_OBJECT_HEADER = 10
_CONFLUENT_HEADER = 5

Record = dict[str, Any]


def _strip_logical_types(node: Any) -> Any:
    """Return ``node`` without logicalType annotations: the binary is identical, and reading plain
    ints instead of datetimes is several times faster on the hot path."""
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


@dataclass(frozen=True)
class AvroSchema:
    """A parsed writer/reader schema and its identity."""

    name: str
    raw: Mapping[str, Any]
    parsed: Any
    """Parsed without logical types (plain longs and bytes): Driftline's own schemas are read so."""
    fingerprint: bytes
    logical: Any = None
    """Parsed with logical types (decimals, timestamps): users' schemas are read so."""

    @property
    def is_builtin(self) -> bool:
        return self.name.startswith("io.driftline.") and not self.name.startswith("io.driftline.user.")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AvroSchema:
        try:
            canonical = to_parsing_canonical_form(parse_schema(copy.deepcopy(dict(raw))))
            parsed = parse_schema(_strip_logical_types(copy.deepcopy(dict(raw))))
            logical = parse_schema(copy.deepcopy(dict(raw)))
        except Exception as exc:  # fastavro raises several unrelated types for bad schemas
            raise SchemaError(f"Invalid Avro schema: {exc}") from exc
        name = parsed.get("name") if isinstance(parsed, dict) else None
        if not isinstance(name, str):
            raise SchemaError("Driftline schemas must be named Avro records.")
        return cls(name, raw, parsed, bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")), logical)

    @classmethod
    def from_json(cls, text: str) -> AvroSchema:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"Schema is not valid JSON: {exc}") from exc

    @property
    def field_names(self) -> list[str]:
        return [f["name"] for f in self.raw.get("fields", [])]


def load_schema(filename: str) -> AvroSchema:
    """Load one of Driftline's bundled schemas by file name (``"prediction.avsc"``)."""
    text = resources.files("driftline.schemas").joinpath(filename).read_text()
    return AvroSchema.from_json(text)


class SchemaStore:
    """Known schemas by fingerprint; the newest schema added under a name is that name's reader schema."""

    def __init__(self, schemas: Iterable[AvroSchema] = ()) -> None:
        self._by_fingerprint: dict[bytes, AvroSchema] = {}
        self._latest: dict[str, AvroSchema] = {}
        for schema in schemas:
            self.add(schema)

    def add(self, schema: AvroSchema) -> AvroSchema:
        self._by_fingerprint[schema.fingerprint] = schema
        self._latest[schema.name] = schema
        return schema

    def add_files(self, paths: Iterable[Path]) -> None:
        """Add user ``.avsc`` files, oldest version first."""
        for path in paths:
            self.add(AvroSchema.from_json(path.read_text()))

    def by_fingerprint(self, fp: bytes) -> AvroSchema | None:
        return self._by_fingerprint.get(fp)

    def latest(self, name: str) -> AvroSchema:
        try:
            return self._latest[name]
        except KeyError:
            raise SchemaError(f"No schema named {name!r} is known.") from None

    def reader_for(self, writer: AvroSchema) -> AvroSchema:
        return self._latest.get(writer.name, writer)


# Bundled schemas, oldest version first within a name.
BUILTIN_SCHEMA_FILES = (
    "input_event.v1.avsc",
    "input_event.avsc",
    "prediction.v1.avsc",
    "prediction.avsc",
    "label.v1.avsc",
    "label.avsc",
    "model_version.v1.avsc",
    "model_version.avsc",
    "audit_event.avsc",
    "drift_alert.v1.avsc",
    "drift_alert.avsc",
    "retrain_request.avsc",
)


def builtin_store() -> SchemaStore:
    """A store with every schema Driftline ships."""
    return SchemaStore(load_schema(name) for name in BUILTIN_SCHEMA_FILES)


class RegistryResolver:
    """Schema ids to schemas through a Confluent Schema Registry, cached per id."""

    def __init__(self, client: Any) -> None:
        """``client`` is a confluent-kafka ``SchemaRegistryClient`` (or its in-memory ``mock://`` twin)."""
        self._client = client
        self._by_id: dict[int, AvroSchema] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> RegistryResolver | None:
        """A resolver for the settings' registry, or ``None`` when no registry is configured."""
        if not config:
            return None
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return cls(SchemaRegistryClient.new_client(dict(config)))

    def get(self, schema_id: int) -> AvroSchema:
        cached = self._by_id.get(schema_id)
        if cached is None:
            text = self._client.get_schema(schema_id).schema_str
            if text is None:
                raise SchemaError(f"Schema id {schema_id} has no schema text.")
            cached = self._by_id[schema_id] = AvroSchema.from_json(text)
        return cached

    def register(self, subject: str, schema: AvroSchema) -> int:
        from confluent_kafka.schema_registry import Schema

        schema_id = self._client.register_schema(subject, Schema(json.dumps(schema.raw), "AVRO"))
        self._by_id[schema_id] = schema
        return int(schema_id)


class AvroDecoder:
    """Framed bytes to records, for either framing."""

    def __init__(self, store: SchemaStore, registry: RegistryResolver | None = None) -> None:
        self._store = store
        self._registry = registry
        self._readers: dict[bytes | int, tuple[Any, Any]] = {}

    def learn(self, schema: AvroSchema) -> None:
        """Accept events written in ``schema`` from now on (a served model's contract)."""
        self._store.add(schema)

    def decode(self, payload: bytes | None) -> Record:
        """Decode one framed record or raise :class:`DecodeError` with a short reason."""
        if not payload:
            raise DecodeError("empty", "the event has no value")
        writer, reader, start = self._resolve(payload)
        stream = io.BytesIO(payload)
        stream.seek(start)
        try:
            record = schemaless_reader(stream, writer, reader)
        except Exception as exc:  # truncated or corrupt binary: fastavro raises many types
            raise DecodeError("undecodable", f"Avro body does not match its schema: {exc!r}") from exc
        if stream.tell() != len(payload):
            raise DecodeError("undecodable", "trailing bytes after the Avro body")
        if not isinstance(record, dict):
            raise DecodeError("undecodable", "the value is not an Avro record")
        return record

    def _resolve(self, payload: bytes) -> tuple[Any, Any, int]:
        if payload[:2] == SINGLE_OBJECT_MARKER and len(payload) >= _SINGLE_OBJECT_HEADER:
            key: bytes | int = payload[2:_SINGLE_OBJECT_HEADER]
            start = _SINGLE_OBJECT_HEADER
        elif payload[:1] == CONFLUENT_MAGIC and len(payload) >= _CONFLUENT_HEADER:
            key = struct.unpack_from(">I", payload, 1)[0]
            start = _CONFLUENT_HEADER
        else:
            raise DecodeError(
                "undecodable",
                "neither Avro single-object (C3 01) nor Confluent (00 + schema id) framing",
            )
        pair = self._readers.get(key)
        if pair is None:
            writer = self._writer_schema(key)
            reader = self._store.reader_for(writer)
            if writer.is_builtin:  # plain longs for Driftline's own timestamps: several times faster
                pair = self._readers[key] = (writer.parsed, reader.parsed)
            else:  # users' decimals and timestamps as Decimal and datetime, for their model's spec
                pair = self._readers[key] = (writer.logical, reader.logical)
        return pair[0], pair[1], start

    def _writer_schema(self, key: bytes | int) -> AvroSchema:
        if isinstance(key, bytes):
            schema = self._store.by_fingerprint(key)
            if schema is None:
                raise DecodeError(
                    "unknown-schema",
                    f"no known schema has fingerprint {key.hex()}; add its .avsc with --schema",
                )
            return schema
        if self._registry is None:
            raise DecodeError(
                "unknown-schema",
                f"Confluent-framed event (schema id {key}) but no --schema-registry-url is set",
            )
        try:
            return self._registry.get(key)
        except Exception as exc:
            raise DecodeError("unknown-schema", f"schema id {key}: {exc}") from exc


class AvroEncoder:
    """Records of one schema to framed bytes."""

    def __init__(self, schema: AvroSchema, header: bytes) -> None:
        self.schema = schema
        self.header = header
        """The framing prefix written before each Avro body."""
        # users' records may carry Decimal and datetime values; Driftline's own are written as plain numbers
        self._parsed = schema.parsed if schema.is_builtin or schema.logical is None else schema.logical

    @classmethod
    def single_object(cls, schema: AvroSchema) -> AvroEncoder:
        return cls(schema, SINGLE_OBJECT_MARKER + schema.fingerprint)

    @classmethod
    def confluent(cls, schema: AvroSchema, schema_id: int) -> AvroEncoder:
        return cls(schema, CONFLUENT_MAGIC + struct.pack(">I", schema_id))

    @classmethod
    def for_settings(cls, schema: AvroSchema, registry: RegistryResolver | None, subject: str) -> AvroEncoder:
        """Confluent framing when a registry is configured (registering the schema), else single-object."""
        if registry is None:
            return cls.single_object(schema)
        return cls.confluent(schema, registry.register(subject, schema))

    def encode(self, record: Mapping[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self.header)
        schemaless_writer(out, self._parsed, record)
        return out.getvalue()
