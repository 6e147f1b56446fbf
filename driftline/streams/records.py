"""One path from consumed messages to model rows, for serve, the monitor and the trainer alike.

:func:`decode_rows` turns a batch of raw events into (rows the model can take, dead letters) for every
wire format Driftline reads: Driftline's own ``InputEvent`` in single-object framing (the common case,
read for the whole batch at once by :func:`~driftline.schemas.columnar.decode_input_events`), and
every other event (Confluent framing, user record schemas from ``--schema`` files or the Schema
Registry, anything malformed) through fastavro one by one, which also names what is wrong with a bad
event. Every event ends up in exactly one of the two outputs, with the same reasons in every service.

No Kafka here: the input is anything shaped like ``confluent_kafka.Message``.

>>> from driftline.testing import FakeMessage
>>> from driftline.schemas import AvroEncoder, builtin_store
>>> store = builtin_store()
>>> event = AvroEncoder.single_object(store.latest("io.driftline.InputEvent")).encode(
...     {"event_id": "e1", "event_time": 7, "features": [1.0, float("nan")], "source": None})
>>> rows, dead = decode_rows([FakeMessage(event), FakeMessage(b"junk", _offset=1)],
...                          AvroDecoder(store), FeatureExtractor.numeric(["a", "b"]))
>>> len(rows), sorted(d.reason for d in dead)
(0, ['non-finite', 'undecodable'])
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from driftline.config import Settings
from driftline.errors import DecodeError
from driftline.headers import Headers
from driftline.models.spec import Classification, ModelSpec
from driftline.schemas.columnar import INPUT_EVENT_WRITERS, decode_input_events
from driftline.schemas.wire import AvroDecoder, AvroSchema, RegistryResolver, builtin_store
from driftline.streams.features import FeatureExtractor


class SourceMessage(Protocol):
    """The parts of a consumed Kafka message that decoding and dead-lettering read."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> Headers | None: ...


@dataclass(frozen=True)
class DeadLetter:
    """An event that could not be handled, with why."""

    message: SourceMessage
    reason: str
    detail: str


@dataclass
class Rows:
    """Decoded, valid rows of a batch: where they were and what the model needs of them."""

    rows: npt.NDArray[np.int64]
    """Each row's index in the batch, ascending (input order, so per-key order holds)."""
    event_ids: list[bytes]
    event_times: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]
    """Numeric and boolean inputs, raw (imputed, not standardised), in the model's order."""
    codes: npt.NDArray[np.int64]
    """Categorical inputs' codes (no columns for a model without categorical fields)."""
    nulls: npt.NDArray[np.bool_] | None = None
    """Which values were null before imputation, ``(len(rows), len(spec.inputs))`` in the spec's input
    order (the monitor's data-quality checks read it)."""

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: npt.NDArray[np.intp]) -> Rows:
        """The rows at ``index`` (positions in this batch of rows, ascending)."""
        return Rows(
            self.rows[index],
            [self.event_ids[i] for i in index.tolist()],
            self.event_times[index],
            self.features[index],
            self.codes[index],
            None if self.nulls is None else self.nulls[index],
        )


def fallback_event_id(message: SourceMessage) -> str:
    """An id for events whose schema has none: their position in Kafka."""
    return f"{message.topic()}/{message.partition()}/{message.offset()}"


def contract_schema(model_name: str, spec: ModelSpec) -> AvroSchema:
    """The Avro schema a producer writes for ``model_name``'s contract; every service that serves the
    model knows it, so events in it need no ``--schema`` file.

    >>> from driftline.models.spec import InputField
    >>> spec = ModelSpec.numeric(["a"], ["n", "y"])
    >>> contract_schema("fraud-v2", spec).name
    'io.driftline.user.fraud_v2.Event'
    """
    namespace = "io.driftline.user." + (re.sub(r"[^A-Za-z0-9_]", "_", model_name) or "model")
    return AvroSchema.from_dict(spec.avro_schema("Event", namespace))


def truth_of(record: Mapping[str, Any], spec: ModelSpec | None) -> float:
    """A Label record's truth for a model: its class index (from ``label`` or ``class_name``), or a
    regression target. Raises :class:`DecodeError` with a reason when the record has none that fits.

    >>> from driftline.models.spec import InputField, Regression
    >>> truth_of({"label": -1, "class_name": "yes"}, ModelSpec.numeric(["a"], ["no", "yes"]))
    1.0
    >>> truth_of({"label": 2}, None)
    2.0
    """
    if spec is not None and spec.is_regression:
        if record.get("target") is None:
            raise DecodeError("no-target", "a label of a regression model needs a target value")
        return float(record["target"])
    name = record.get("class_name")
    if name is None:
        label = int(record["label"])
        if label < 0:
            raise DecodeError("no-label", "the label has no class index, class_name or target")
        return float(label)
    classes = spec.task.classes if spec is not None and isinstance(spec.task, Classification) else ()
    if name not in classes:
        raise DecodeError(
            "unknown-class", f"class_name {name!r} is not one of the model's classes {list(classes)}"
        )
    return float(classes.index(name))


def decoder_for(settings: Settings, schemas: Sequence[Path] = ()) -> AvroDecoder:
    """The decoder of every service: Driftline's schemas, the ``--schema`` files, the registry."""
    store = builtin_store()
    store.add_files(schemas)
    return AvroDecoder(store, RegistryResolver.from_config(settings.registry_config()))


def decode_record(payload: bytes | None, decoder: AvroDecoder) -> dict[str, Any]:
    """One event as a record: Avro in either framing, or a JSON object (for systems without Avro).

    >>> decode_record(b' {"event_id": "e1", "amount": 12.5}', AvroDecoder(builtin_store()))
    {'event_id': 'e1', 'amount': 12.5}
    """
    if payload and payload.lstrip()[:1] in (b"{", b"["):  # never Avro: single-object is C3 01, Confluent 00
        try:
            record = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise DecodeError("undecodable", f"invalid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise DecodeError("undecodable", "a JSON event must be an object")
        return record
    return decoder.decode(payload)


def decode_rows(
    messages: Sequence[SourceMessage], decoder: AvroDecoder, features: FeatureExtractor
) -> tuple[Rows, list[DeadLetter]]:
    """The batch's usable rows in input order, and a dead letter for each other event."""
    dead: list[DeadLetter] = []
    payloads = [m.value() or b"" for m in messages] if features.accepts_arrays else []
    fast = decode_input_events(payloads, INPUT_EVENT_WRITERS, len(features.feature_names))
    finite = np.asarray(np.isfinite(fast.features).all(axis=1), dtype=np.bool_)
    for i in fast.rows[~finite].tolist():
        dead.append(DeadLetter(messages[i], "non-finite", "a feature value is NaN or infinite"))
    slow_rows = np.setdiff1d(np.arange(len(messages), dtype=np.int64), fast.rows, assume_unique=True)
    slow = _decode_one_by_one(messages, slow_rows.tolist(), decoder, features, dead)
    if not len(slow.rows) and finite.all():  # the common case: every event took the columnar path
        no_codes = np.zeros((len(fast.rows), 0), dtype=np.int64)
        no_nulls = np.zeros((len(fast.rows), len(features.spec.inputs)), dtype=np.bool_)
        return Rows(fast.rows, fast.event_ids, fast.event_times, fast.features, no_codes, no_nulls), dead
    width = len(features.spec.inputs)
    slow_nulls = slow.nulls if slow.nulls is not None else np.zeros((len(slow.rows), width), np.bool_)
    rows = np.concatenate([fast.rows[finite], slow.rows])
    order = np.argsort(rows, kind="stable")
    kept_fast: list[bool] = finite.tolist()
    ids = [*(b for b, ok in zip(fast.event_ids, kept_fast, strict=True) if ok), *slow.event_ids]
    merged = Rows(
        rows=rows[order],
        event_ids=[ids[k] for k in order.tolist()],
        event_times=np.concatenate([fast.event_times[finite], slow.event_times])[order],
        features=np.concatenate([fast.features[finite], slow.features])[order],
        codes=np.concatenate([np.zeros((int(finite.sum()), slow.codes.shape[1]), np.int64), slow.codes])[
            order
        ],
        nulls=np.concatenate([np.zeros((int(finite.sum()), width), np.bool_), slow_nulls])[order],
    )
    return merged, dead


def _decode_one_by_one(
    messages: Sequence[SourceMessage],
    rows: list[int],
    decoder: AvroDecoder,
    features: FeatureExtractor,
    dead: list[DeadLetter],
) -> Rows:
    """The general path: fastavro per event, any known schema, a precise reason for every failure."""
    positions: list[int] = []
    records: list[dict[str, Any]] = []
    for i in rows:
        try:
            records.append(decode_record(messages[i].value(), decoder))
            positions.append(i)
        except DecodeError as exc:
            dead.append(DeadLetter(messages[i], exc.reason, exc.detail))
    out = features.extract(records)
    for j, (reason, detail) in out.rejected.items():
        dead.append(DeadLetter(messages[positions[j]], reason, detail))
    kept = [positions[j] for j in out.kept.tolist()]
    ids = [
        (event_id if event_id is not None else fallback_event_id(messages[i])).encode()
        for i, event_id in zip(kept, out.event_ids, strict=True)
    ]
    times = [
        event_time if event_time is not None else messages[i].timestamp()[1]
        for i, event_time in zip(kept, out.event_times, strict=True)
    ]
    return Rows(
        np.asarray(kept, dtype=np.int64),
        ids,
        np.asarray(times, dtype=np.int64),
        out.numeric,
        out.codes,
        out.nulls,
    )
