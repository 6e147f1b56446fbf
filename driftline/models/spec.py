"""A model's contract: the event fields it reads, how they become tensors, and what it predicts.

One typed :class:`ModelSpec` travels with every artifact and every registry record. It says, per input
field, its kind (numeric, boolean, categorical), whether it may be null and what replaces a null, its
unit; where the event id and event time come from and in which unit; and the task (classification with
class names, or regression with the target's name and unit). :meth:`ModelSpec.encode` turns a batch
of decoded records into the model's inputs, column by column, with a precise reason for every record
it cannot use. Serve, the monitor and the trainer all call it, so preprocessing is one piece of code.

The tensors a model takes are named and fixed:

* ``numeric``: float32 ``(batch, n)``, the numeric and boolean fields in spec order, numeric ones
  standardised with the spec's ``mean`` and ``scale`` (booleans are 0.0 / 1.0);
* ``categorical``: int64 ``(batch, m)``, the categorical fields' codes: 0 is the bucket for unseen
  categories and nulls, ``k`` is ``categories[k - 1]``.

A model without categorical fields takes only ``numeric``; one with only categorical fields, only
``categorical``.

>>> spec = ModelSpec(
...     inputs=[InputField(name="amount", unit="EUR", mean=10.0, scale=5.0),
...             InputField(name="tip", nullable=True, impute=0.0),
...             InputField(name="country", kind="categorical", categories=["DE", "FR"])],
...     task=Classification(classes=["ok", "fraud"]))
>>> out = spec.encode([{"amount": 20, "tip": None, "country": "FR"},
...                    {"amount": "x", "tip": 1.0, "country": "IT"}])
>>> out.numeric.tolist(), out.codes.tolist()
([[20.0, 0.0]], [[2]])
>>> out.rejected
{1: ('bad-type', "field 'amount' must be numeric (int, long, float, double or decimal), not str 'x'")}
>>> {k: v.tolist() for k, v in spec.model_inputs(out.numeric, out.codes).items()}
{'numeric': [[2.0, 0.0]], 'categorical': [[2]]}
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

Matrix = npt.NDArray[np.float32]
Codes = npt.NDArray[np.int64]
Rejections = dict[int, tuple[str, str]]
"""Record index to (reason, detail)."""

NUMERIC_INPUT = "numeric"
CATEGORICAL_INPUT = "categorical"
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST_MS = 7_258_118_400_000
"""2200-01-01 in epoch milliseconds: a later event time is taken for a unit mistake."""
_NUMBER_TYPES = frozenset({int, float, decimal.Decimal})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputField(_Frozen):
    """One event field the model reads."""

    name: str = Field(pattern=_NAME, description="The field's name in the event record.")
    kind: Literal["numeric", "boolean", "categorical"] = "numeric"
    nullable: bool = Field(False, description="Whether the field may be null (an Avro union with null).")
    impute: float | None = Field(
        None,
        description="The value a null becomes (numeric and boolean fields; required when nullable). "
        "A null categorical value goes to the unseen bucket.",
    )
    categories: tuple[str, ...] = Field((), description="A categorical field's vocabulary, in code order.")
    mean: float = Field(
        0.0, description="Standardisation: a numeric value enters the model as (x - mean) / scale."
    )
    scale: float = Field(1.0, gt=0.0)
    unit: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InputField:
        if self.kind == "categorical":
            if not self.categories:
                raise ValueError(f"categorical field {self.name!r} needs its categories")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"categorical field {self.name!r} lists a category twice")
            if self.impute is not None:
                raise ValueError(
                    f"categorical field {self.name!r}: nulls go to the unseen bucket, not impute"
                )
        elif self.categories:
            raise ValueError(f"{self.kind} field {self.name!r} cannot have categories")
        if self.nullable and self.kind != "categorical" and self.impute is None:
            raise ValueError(f"nullable field {self.name!r} needs impute: the value a null becomes")
        if self.kind == "boolean" and (self.mean, self.scale) != (0.0, 1.0):
            raise ValueError(f"boolean field {self.name!r} is not standardised")
        return self

    @property
    def expected(self) -> str:
        """What a value of this field must be, in words (for dead-letter details)."""
        return {
            "numeric": "numeric (int, long, float, double or decimal)",
            "boolean": "a boolean",
            "categorical": "a string or enum symbol",
        }[self.kind] + (" or null" if self.nullable else "")


TimeUnit = Literal["millis", "micros", "nanos", "seconds", "iso8601"]


class EventTime(_Frozen):
    """Where an event's time comes from. Avro ``timestamp-millis``/``timestamp-micros`` values are
    converted whatever ``unit`` says; ``unit`` tells how to read a plain number or string. Without
    the field (or with ``field: null``) the Kafka record's timestamp is used."""

    field: str | None = Field("event_time", pattern=_NAME)
    unit: TimeUnit = "millis"


class Classification(_Frozen):
    kind: Literal["classification"] = "classification"
    classes: tuple[str, ...] = Field(min_length=2, description="Class names, in the model's output order.")
    outputs: Literal["logits", "probabilities"] = Field(
        "logits", description="What the model returns; logits are turned into probabilities by softmax."
    )


class Regression(_Frozen):
    kind: Literal["regression"] = "regression"
    target: str = Field(description="The predicted quantity's name.")
    unit: str | None = None


Task = Annotated[Classification | Regression, Field(discriminator="kind")]


@dataclass
class Encoded:
    """A batch of records as model inputs: the usable records' rows, in input order."""

    kept: npt.NDArray[np.int64]
    """Index of each usable record in the batch."""
    numeric: Matrix
    """Raw (imputed, not standardised) numeric and boolean values, ``(len(kept), n_numeric)``."""
    codes: Codes
    """Categorical codes, ``(len(kept), n_categorical)``."""
    event_ids: list[str | None]
    """The event id field's value, None where the record has none (the caller supplies one)."""
    event_times: list[int | None]
    """Event time in epoch milliseconds, None where the record has none."""
    rejected: Rejections = field(default_factory=dict)
    nulls: npt.NDArray[np.bool_] | None = None
    """Which kept values were null (and imputed, or coded unseen), ``(len(kept), len(spec.inputs))`` in
    the spec's input order; ``None`` where the source cannot tell (``features`` arrays have no nulls)."""


class ModelSpec(_Frozen):
    """The contract between a model and the events it serves."""

    inputs: tuple[InputField, ...] = Field(min_length=1)
    task: Task
    event_id: str | None = Field("event_id", pattern=_NAME, description="The field holding the event's id.")
    event_time: EventTime = EventTime()

    @model_validator(mode="after")
    def _unique(self) -> ModelSpec:
        names = [f.name for f in self.inputs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"input fields named twice: {twice}")
        clash = {self.event_id, self.event_time.field} & set(names)
        if clash:
            raise ValueError(f"{sorted(n for n in clash if n)} cannot be both an input and the event id/time")
        return self

    @classmethod
    def numeric(cls, features: Sequence[str], classes: Sequence[str]) -> ModelSpec:
        """The spec of Driftline's built-in architectures: numeric features, class indices out."""
        return cls(
            inputs=tuple(InputField(name=name) for name in features),
            task=Classification(classes=tuple(classes), outputs="probabilities"),
        )

    @property
    def numeric_fields(self) -> list[InputField]:
        return [f for f in self.inputs if f.kind != "categorical"]

    @property
    def categorical_fields(self) -> list[InputField]:
        return [f for f in self.inputs if f.kind == "categorical"]

    @property
    def tensor_names(self) -> list[str]:
        """The model's input tensors, in order."""
        return [
            name
            for name, fields in (
                (NUMERIC_INPUT, self.numeric_fields),
                (CATEGORICAL_INPUT, self.categorical_fields),
            )
            if fields
        ]

    @property
    def columns(self) -> tuple[tuple[str, str, tuple[str, ...], float | None], ...]:
        """What the raw columns of :meth:`encode` depend on: two specs with equal columns can score the
        same decoded rows (standardisation is each model's own)."""
        return tuple((f.name, f.kind, f.categories, f.impute) for f in self.inputs)

    @property
    def is_regression(self) -> bool:
        return isinstance(self.task, Regression)

    @property
    def outputs(self) -> int:
        """Width of a prediction's scores: one per class, none for regression."""
        return len(self.task.classes) if isinstance(self.task, Classification) else 0

    def model_inputs(self, numeric: Matrix, codes: Codes) -> dict[str, npt.NDArray[Any]]:
        """The tensors the model takes, from :meth:`encode`'s raw columns (standardised here)."""
        inputs: dict[str, npt.NDArray[Any]] = {}
        fields = self.numeric_fields
        if fields:
            mean = np.asarray([f.mean for f in fields], dtype=np.float32)
            scale = np.asarray([f.scale for f in fields], dtype=np.float32)
            inputs[NUMERIC_INPUT] = np.ascontiguousarray((numeric - mean) / scale, dtype=np.float32)
        if self.categorical_fields:
            inputs[CATEGORICAL_INPUT] = np.ascontiguousarray(codes, dtype=np.int64)
        return inputs

    def encode(self, records: Sequence[Mapping[str, Any]]) -> Encoded:
        """Decoded records to raw model columns; every record is either kept or rejected with a reason."""
        n = len(records)
        rejected: Rejections = {}
        numeric = np.empty((n, len(self.numeric_fields)), dtype=np.float32)
        for j, spec in enumerate(self.numeric_fields):
            numeric[:, j] = _numeric_column(records, spec, rejected)
        codes = np.empty((n, len(self.categorical_fields)), dtype=np.int64)
        for j, spec in enumerate(self.categorical_fields):
            codes[:, j] = _categorical_column(records, spec, rejected)
        times = _event_times(records, self.event_time, rejected)
        id_field = self.event_id
        ids: list[str | None] = [_event_id(r.get(id_field)) for r in records] if id_field else [None] * n
        nulls = self._nulls(records)
        if not rejected:
            return Encoded(np.arange(n, dtype=np.int64), numeric, codes, ids, times, nulls=nulls)
        kept = np.asarray([i for i in range(n) if i not in rejected], dtype=np.int64)
        return Encoded(
            kept,
            numeric[kept],
            codes[kept],
            [ids[i] for i in kept.tolist()],
            [times[i] for i in kept.tolist()],
            dict(sorted(rejected.items())),
            nulls[kept],
        )

    def _nulls(self, records: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.bool_]:
        """Which values of the nullable fields are null (the others are never kept null)."""
        nulls = np.zeros((len(records), len(self.inputs)), dtype=np.bool_)
        for j, spec in enumerate(self.inputs):
            if spec.nullable:
                nulls[:, j] = np.fromiter(
                    (r.get(spec.name, _MISSING) is None for r in records), dtype=np.bool_, count=len(records)
                )
        return nulls

    def avro_schema(self, name: str = "Event", namespace: str = "io.driftline.user") -> dict[str, Any]:
        """The Avro record schema a producer writes for this model (any superset of it works too)."""
        fields: list[dict[str, Any]] = []
        if self.event_id:
            fields.append(
                {"name": self.event_id, "type": "string", "doc": "The event's id (key the record by it)."}
            )
        if self.event_time.field:
            fields.append({"name": self.event_time.field, **_time_type(self.event_time.unit)})
        for f in self.inputs:
            avro: Any = {"numeric": "double", "boolean": "boolean", "categorical": "string"}[f.kind]
            entry: dict[str, Any] = {"name": f.name, "type": ["null", avro] if f.nullable else avro}
            doc = "; ".join(
                part
                for part in (
                    f.description,
                    f"unit: {f.unit}" if f.unit else None,
                    f"categories: {', '.join(f.categories)} (others are read as unseen)"
                    if f.categories
                    else None,
                    f"null is read as {f.impute:g}" if f.nullable and f.impute is not None else None,
                )
                if part
            )
            if doc:
                entry["doc"] = doc
            fields.append(entry)
        return {"type": "record", "name": name, "namespace": namespace, "fields": fields}


def _time_type(unit: TimeUnit) -> dict[str, Any]:
    if unit == "iso8601":
        return {"type": "string", "doc": "Event time, ISO-8601 (UTC unless it has an offset)."}
    if unit in ("millis", "micros"):
        return {"type": {"type": "long", "logicalType": f"timestamp-{unit}"}, "doc": "Event time."}
    return {"type": "long", "doc": f"Event time, epoch {unit}."}


_MISSING = object()


def _numeric_column(records: Sequence[Mapping[str, Any]], spec: InputField, rejected: Rejections) -> Matrix:
    """One numeric or boolean field of every record as float32; bad values are rejected and left 0."""
    values = [r.get(spec.name, _MISSING) for r in records]
    allowed = frozenset({bool}) if spec.kind == "boolean" else _NUMBER_TYPES
    if {type(v) for v in values} <= allowed:  # the common case: one C-level pass
        column = np.asarray(values, dtype=np.float64)
    else:
        column = np.zeros(len(values), dtype=np.float64)
        for i, value in enumerate(values):
            if value is None and spec.nullable:
                column[i] = spec.impute if spec.impute is not None else 0.0
            elif type(value) in allowed:
                column[i] = float(value)
            elif i not in rejected:
                rejected[i] = _bad_value(spec, value)
    finite = np.isfinite(column)
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            rejected.setdefault(
                i, ("non-finite", f"field {spec.name!r} is {values[i]!r}; a finite number is needed")
            )
        column[~finite] = 0.0
    with np.errstate(over="ignore"):
        out = column.astype(np.float32)
    overflow = ~np.isfinite(out)
    for i in np.flatnonzero(overflow).tolist():
        rejected.setdefault(i, ("non-finite", f"field {spec.name!r} = {values[i]!r} does not fit a float32"))
    return out


def _categorical_column(
    records: Sequence[Mapping[str, Any]], spec: InputField, rejected: Rejections
) -> Codes:
    vocabulary = {category: k for k, category in enumerate(spec.categories, start=1)}
    values = [r.get(spec.name, _MISSING) for r in records]
    if {type(v) for v in values} <= {str}:  # the common case: one lookup pass, no per-value branches
        return np.fromiter(map(vocabulary.get, values, [0] * len(values)), dtype=np.int64, count=len(values))
    codes = np.zeros(len(records), dtype=np.int64)
    for i, value in enumerate(values):
        if isinstance(value, str):
            codes[i] = vocabulary.get(value, 0)
        elif value is None and spec.nullable:
            continue
        elif i not in rejected:
            rejected[i] = _bad_value(spec, value)
    return codes


def _bad_value(spec: InputField, value: Any) -> tuple[str, str]:
    if value is _MISSING:
        return "missing-field", f"the record has no field {spec.name!r} ({spec.expected})"
    if value is None:
        return "null-value", f"field {spec.name!r} is null; the model needs {spec.expected}"
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return "bad-type", f"field {spec.name!r} must be {spec.expected}, not {type(value).__name__} {shown}"


def _event_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _event_times(
    records: Sequence[Mapping[str, Any]], spec: EventTime, rejected: Rejections
) -> list[int | None]:
    if spec.field is None:
        return [None] * len(records)
    values = [r.get(spec.field) for r in records]
    ints = {type(v) for v in values} <= {int}
    if ints and spec.unit != "iso8601" and _fits_int64(values, 1000 if spec.unit == "seconds" else 1):
        raw = np.asarray(values, dtype=np.int64)  # the common case, vectorised
        millis = {"millis": raw, "micros": raw // 1000, "nanos": raw // 1_000_000, "seconds": raw * 1000}[
            spec.unit
        ]
        times: list[int | None] = millis.tolist()
    else:
        times = [None] * len(values)
        for i, value in enumerate(values):
            try:
                times[i] = _millis(value, spec.unit)
            except ValueError as exc:
                rejected.setdefault(i, ("bad-time", f"field {spec.field!r}: {exc}"))
    for i, ms in enumerate(times):
        if ms is not None and not 0 <= ms < _LATEST_MS:
            rejected.setdefault(
                i,
                (
                    "bad-time",
                    f"field {spec.field!r} = {values[i]!r} read as {spec.unit} is {ms} ms since 1970, "
                    "outside 1970-2200: is its unit right? (the model's spec says "
                    f"{spec.unit!r}; Avro timestamp-millis/-micros are converted whatever the unit)",
                ),
            )
    return times


def _fits_int64(values: Sequence[Any], scale: int) -> bool:
    """Whether every value times ``scale`` fits an int64 (else the exact, per-value path)."""
    bound = 2**63 // scale
    return not values or (min(values) >= -bound and max(values) < bound)


def _millis(value: Any, unit: TimeUnit) -> int | None:
    """One event time in epoch milliseconds; None when absent."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (aware - _EPOCH) // dt.timedelta(milliseconds=1)
    if isinstance(value, str):
        if unit != "iso8601":
            raise ValueError(f"{value!r} is a string; the spec reads epoch {unit} numbers (or say iso8601)")
        try:
            return _millis(dt.datetime.fromisoformat(value), unit)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO-8601 time") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a time (epoch {unit} number, Avro timestamp or ISO-8601 string)")
    scale = {"millis": 1.0, "micros": 1e-3, "nanos": 1e-6, "seconds": 1e3, "iso8601": 1.0}[unit]
    if unit == "iso8601":
        raise ValueError(f"{value!r} is a number; the spec reads ISO-8601 strings")
    return int(value * scale) if isinstance(value, float) or scale > 1 else int(value) // round(1 / scale)
