"""``driftline produce --from FILE``: rows of a CSV or Parquet file as events of a model's contract.

A :class:`FileSource` reads the file with pyarrow a record batch at a time (a large file is never
loaded whole), finds the column of each field of the model's :class:`~driftline.models.spec.ModelSpec`
(a column is named like its field, or renamed with ``COLUMN=FIELD`` mappings), converts each column
once per batch to what the contract's Avro schema (:meth:`ModelSpec.avro_schema`) holds, and yields
:class:`FileBatch` es: the records, their event ids and times, and the labels of an optional label
column. :func:`produce_file` sends them, keyed by event id, paced to a rate or as fast as possible.

Per field kind:

* numeric: any number column (ints, floats, decimals), or strings of numbers, as floats;
* boolean: booleans, 0/1, or ``true``/``false``/``yes``/``no``/``t``/``f``/``y``/``n`` strings;
* categorical: strings (numbers become their text; an empty CSV cell is a null);
* a null (an empty cell, NaN) is ``None`` for a nullable field and an error for any other;
* the event id: the column's text, or ``<file stem>-<row>`` where the file has none (rows count from 1);
* the event time: a number column is in the spec's unit; timestamps, dates and ISO-8601 strings are
  converted to it; without a time column events carry the time they are sent.

>>> import pyarrow as pa, pyarrow.csv as csv, tempfile, pathlib
>>> from driftline.models.spec import InputField, ModelSpec, Classification
>>> spec = ModelSpec(inputs=[InputField(name="amount"), InputField(name="country", kind="categorical",
...     categories=["DE", "FR"], nullable=True)], task=Classification(classes=["ok", "fraud"]))
>>> path = pathlib.Path(tempfile.mkdtemp()) / "sales.csv"
>>> _ = path.write_text("amount,country,event_time,class\\n12.50,FR,2024-01-01T00:00:00Z,fraud\\n3,,,ok\\n")
>>> batch = next(FileSource(path, spec, label_column="class").batches())
>>> batch.records
[{'event_id': 'sales-1', 'event_time': 1704067200000, 'amount': 12.5, 'country': 'FR'}, \
{'event_id': 'sales-2', 'event_time': None, 'amount': 3.0, 'country': None}]
>>> batch.labels
[1, 0]
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
import pyarrow.csv as pacsv  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from driftline.config import Settings
from driftline.errors import ConfigError, DeliveryError
from driftline.models.spec import Classification, InputField, ModelSpec, TimeUnit
from driftline.schemas.wire import AvroEncoder
from driftline.streams import kafka
from driftline.streams.produce import Pacer

BATCH_ROWS = 10_000
"""Rows per record batch read from the file."""
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
NUMBER_NULLS = ["", "null", "NULL", "None", "NA", "N/A", "n/a", "NaN", "nan"]
"""Text read as null in a number column (a categorical field keeps them, except the empty text)."""
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_BOOLEAN_NULLS = ["", "null", "none", "na", "n/a", "nan"]
_NANOS = {"seconds": 1_000_000_000, "millis": 1_000_000, "micros": 1_000, "nanos": 1}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Label = int | float


@dataclass
class FileBatch:
    """Consecutive rows of the file as the contract's records."""

    first_row: int
    """The first record's row number in the file (rows count from 1, a CSV header excluded)."""
    records: list[dict[str, Any]]
    """The Avro records to send; the event time is ``None`` where it is stamped at send time."""
    event_ids: list[str]
    event_millis: list[int | None]
    """Each event's time in epoch milliseconds (for its label); ``None``: the time it is sent."""
    labels: list[Label | None] | None = None
    """The class index (classification) or target (regression) per row; ``None`` where unlabelled."""

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class FileSource:
    """A CSV or Parquet file read as events of ``spec``."""

    path: Path
    spec: ModelSpec
    mapping: Mapping[str, str] = field(default_factory=dict)
    """File column to contract field (``--map COLUMN=FIELD``); other columns keep their names."""
    label_column: str | None = None
    batch_rows: int = BATCH_ROWS
    classes: Sequence[str] | None = None
    """Class names for labels given as names; default: the spec's (classification)."""
    notes: list[str] = field(default_factory=list)
    """What the reader decided that the user should hear (absent optional columns and the like)."""

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.format = file_format(self.path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path} does not exist or is not a file.")
        if self.classes is None and isinstance(self.spec.task, Classification):
            self.classes = self.spec.task.classes
        self.file_columns = self._read_columns()
        self.columns = self._resolve_columns()

    # -- columns ----------------------------------------------------------------------------------

    def _read_columns(self) -> list[str]:
        try:
            if self.format == "parquet":
                return list(pq.ParquetFile(self.path).schema_arrow.names)
            with pacsv.open_csv(self.path, **self._csv_options({})) as reader:
                return list(reader.schema.names)
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(f"cannot read {self.path} as {self.format.upper()}: {exc}") from exc

    def _resolve_columns(self) -> dict[str, str | None]:
        """Contract field to file column (``None``: the file has no column for it)."""
        fields = [f.name for f in self.spec.inputs]
        special = [name for name in (self.spec.event_id, self.spec.event_time.field) if name]
        known = set(fields) | set(special)
        for column, target in self.mapping.items():
            if target not in known:
                raise ConfigError(
                    f"--map {column}={target}: the model has no field {target!r}; its fields are "
                    f"{', '.join(sorted(known))}"
                )
            if column not in self.file_columns:
                raise ConfigError(
                    f"--map {column}={target}: {self.path.name} has no column {column!r}; "
                    f"its columns are {', '.join(self.file_columns)}"
                )
        renamed = {target: column for column, target in self.mapping.items()}
        columns: dict[str, str | None] = {}
        for name in [*special, *fields]:
            column = renamed.get(name, name)
            columns[name] = column if column in self.file_columns else None
        missing = [f.name for f in self.spec.inputs if columns[f.name] is None and not f.nullable]
        if missing:
            raise ConfigError(
                f"{self.path.name} has no column for the model's field(s) {', '.join(missing)}; its "
                f"columns are {', '.join(self.file_columns)}. Rename a column to a field with "
                "--map COLUMN=FIELD."
            )
        for f in self.spec.inputs:
            if columns[f.name] is None:
                self.notes.append(f"no column {f.name!r}: the nullable field is null in every event")
        if self.spec.event_id and columns[self.spec.event_id] is None:
            self.notes.append(f"no column {self.spec.event_id!r}: event ids are {self.path.stem}-<row>")
        if self.spec.event_time.field and columns[self.spec.event_time.field] is None:
            self.notes.append(
                f"no column {self.spec.event_time.field!r}: events carry the time they are sent"
            )
        if self.label_column is not None and self.label_column not in self.file_columns:
            raise ConfigError(
                f"--label-column {self.label_column}: {self.path.name} has no such column; its "
                f"columns are {', '.join(self.file_columns)}"
            )
        return columns

    @property
    def needed(self) -> list[str]:
        """The file columns read (each once)."""
        wanted = [c for c in self.columns.values() if c is not None]
        if self.label_column is not None:
            wanted.append(self.label_column)
        return list(dict.fromkeys(wanted))

    def row_count(self) -> int | None:
        """Rows in the file where it is cheap to know (Parquet metadata), else ``None``."""
        if self.format == "parquet":
            return int(pq.ParquetFile(self.path).metadata.num_rows)
        return None

    # -- reading ----------------------------------------------------------------------------------

    def _csv_options(self, column_types: Mapping[str, Any]) -> dict[str, Any]:
        delimiter = "\t" if ".tsv" in self.path.suffixes else ","
        return {
            "read_options": pacsv.ReadOptions(block_size=1 << 22),
            "parse_options": pacsv.ParseOptions(delimiter=delimiter),
            "convert_options": pacsv.ConvertOptions(
                column_types=dict(column_types),
                include_columns=list(column_types) or None,
                strings_can_be_null=False,
            ),
        }

    def _csv_types(self) -> dict[str, Any]:
        """Every needed column as text, converted here per field kind (so an error names its row)."""
        return dict.fromkeys(self.needed, pa.string())

    def record_batches(self) -> Iterator[Any]:
        """The needed columns of the file, one ``pyarrow.RecordBatch`` at a time."""
        try:
            if self.format == "parquet":
                parquet = pq.ParquetFile(self.path)
                yield from parquet.iter_batches(batch_size=self.batch_rows, columns=self.needed)
            else:
                with pacsv.open_csv(self.path, **self._csv_options(self._csv_types())) as reader:
                    for batch in reader:
                        for start in range(0, batch.num_rows, self.batch_rows):
                            yield batch.slice(start, self.batch_rows)
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from exc

    def batches(self, limit: int | None = None) -> Iterator[FileBatch]:
        """The file's rows (at most ``limit``) as the contract's records, a batch at a time."""
        row = 1
        for read in self.record_batches():
            if limit is not None and row > limit:
                return
            batch = read if limit is None else read.slice(0, limit - row + 1)
            if batch.num_rows:
                yield self.convert(batch, row)
            row += batch.num_rows

    # -- converting -------------------------------------------------------------------------------

    def convert(self, batch: Any, first_row: int) -> FileBatch:
        """One record batch of the file to the contract's records."""
        n = batch.num_rows
        spec = self.spec
        values: dict[str, list[Any]] = {}
        ids = [f"{self.path.stem}-{first_row + i}" for i in range(n)]
        if spec.event_id:
            column = self.columns[spec.event_id]
            if column is not None:
                given = _text(batch.column(column)).to_pylist()
                ids = [g if g else fallback for g, fallback in zip(given, ids, strict=True)]
            values[spec.event_id] = ids
        millis: list[int | None] = [None] * n
        time_field = spec.event_time.field
        if time_field:
            column = self.columns[time_field]
            if column is not None:
                values[time_field], millis = _times(
                    batch.column(column), spec.event_time.unit, _Where(self.path, column, first_row)
                )
            else:
                values[time_field] = [None] * n
        for f in spec.inputs:
            column = self.columns[f.name]
            if column is None:
                values[f.name] = [None] * n
            else:
                values[f.name] = _field(batch.column(column), f, _Where(self.path, column, first_row))
        names = list(values)
        records = [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]
        labels = None
        if self.label_column is not None:
            where = _Where(self.path, self.label_column, first_row)
            labels = _labels(batch.column(self.label_column), spec, self.classes, where)
        return FileBatch(first_row, records, ids, millis, labels)


def file_format(path: Path) -> str:
    """``csv`` or ``parquet`` by the file's extension."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise ConfigError(
        f"{path.name}: unknown file type; --from reads CSV ({', '.join(CSV_SUFFIXES)}) and Parquet "
        f"({', '.join(PARQUET_SUFFIXES)}) files"
    )


def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """``COLUMN=FIELD`` options to a column-to-field map."""
    out: dict[str, str] = {}
    for item in items:
        column, sep, target = item.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise ConfigError(f"--map {item!r} is not COLUMN=FIELD (example: --map amount_eur=amount)")
        out[column.strip()] = target.strip()
    return out


@dataclass(frozen=True)
class _Where:
    path: Path
    column: str
    first_row: int

    def at(self, index: int) -> str:
        return f"{self.path.name}, column {self.column!r}, row {self.first_row + index}"


def _text(column: Any) -> Any:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    if pa.types.is_dictionary(column.type):
        return _text(column.cast(column.type.value_type))
    return pc.cast(column, pa.string())


def _field(column: Any, spec: InputField, where: _Where) -> list[Any]:
    """One column of a batch as the Python values of ``spec``'s Avro field."""
    if spec.kind == "numeric":
        floats = _floats(column, where)
        infinite = np.isinf(floats)
        if infinite.any():
            bad = int(np.flatnonzero(infinite)[0])
            raise ConfigError(f"{where.at(bad)} is {floats[bad]}: field {spec.name!r} needs a finite number")
        empty = np.isnan(floats)
        out: list[Any] = floats.tolist()
        if empty.any():
            if not spec.nullable:
                raise _not_nullable(spec, where, int(np.flatnonzero(empty)[0]))
            for i in np.flatnonzero(empty).tolist():
                out[i] = None
        return out
    if spec.kind == "boolean":
        values: list[Any] = _booleans(column, where)
    else:
        text = _text(column)
        values = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text).to_pylist()
    if not spec.nullable and None in values:
        raise _not_nullable(spec, where, values.index(None))
    return values


def _not_nullable(spec: InputField, where: _Where, index: int) -> ConfigError:
    return ConfigError(
        f"{where.at(index)} is empty, but field {spec.name!r} is not nullable in the model's spec "
        f"(it needs {spec.expected})"
    )


def _floats(column: Any, where: _Where) -> npt.NDArray[np.float64]:
    """A column as float64, nulls as NaN."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _floats(column.cast(kind.value_type), where)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = pc.utf8_trim_whitespace(column)
        nulls = pc.is_in(column, value_set=pa.array(NUMBER_NULLS, kind))
        column = pc.if_else(nulls, pa.scalar(None, kind), column)
    try:
        doubles = pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for i, value in enumerate(column.to_pylist()):
            try:
                float(value) if value is not None else None
            except (TypeError, ValueError):
                raise ConfigError(f"{where.at(i)} is {value!r}: a number is needed") from None
        raise ConfigError(f"{where.at(0)}: a column of {kind} cannot be read as numbers") from None
    return np.asarray(doubles.to_numpy(zero_copy_only=False), dtype=np.float64)


def _booleans(column: Any, where: _Where) -> list[bool | None]:
    if pa.types.is_boolean(column.type):
        return list(column.to_pylist())
    out: list[bool | None] = []
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        for i, value in enumerate(column.to_pylist()):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                out.append(None)
            elif value in (0, 1):
                out.append(bool(value))
            else:
                raise ConfigError(f"{where.at(i)} is {value!r}: a boolean is 0 or 1 (or true/false)")
        return out
    text = _text(column)
    words = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    true = pc.is_in(words, value_set=pa.array(sorted(_TRUE)))
    empty = pc.or_kleene(pc.is_null(words), pc.is_in(words, value_set=pa.array(_BOOLEAN_NULLS)))
    known = pc.or_(
        pc.or_(true, pc.is_in(words, value_set=pa.array(sorted(_FALSE)))), pc.fill_null(empty, True)
    )
    if not pc.all(known).as_py():
        bad = int(np.flatnonzero(~np.asarray(known.to_numpy(zero_copy_only=False)))[0])
        value = text[bad].as_py()
        raise ConfigError(f"{where.at(bad)} is {value!r}: a boolean is true/false, yes/no, t/f, y/n or 1/0")
    return list(pc.if_else(pc.fill_null(empty, True), pa.scalar(None, pa.bool_()), true).to_pylist())


def _times(column: Any, unit: TimeUnit, where: _Where) -> tuple[list[Any], list[int | None]]:
    """An event time column as (the Avro field's values in the spec's unit, epoch milliseconds)."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _times(column.cast(kind.value_type), unit, where)
    nanos: list[int | None]
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        stamps = column if pa.types.is_timestamp(kind) else pc.cast(column, pa.timestamp("s"))
        nanos = pc.cast(pc.cast(stamps, pa.timestamp("ns"), safe=False), pa.int64()).to_pylist()
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        if unit == "iso8601":
            raise ConfigError(
                f"{where.at(0)} holds numbers; the model's spec reads event times as ISO-8601 strings"
            )
        nanos = [None if v is None else round(v * _NANOS[unit]) for v in _numbers(column)]
    else:
        text = [None if v is None or not v.strip() else v.strip() for v in _text(column).to_pylist()]
        if unit == "iso8601":  # sent as written, once it is known to parse
            iso = [None if v is None else _iso_nanos(v, where, i) for i, v in enumerate(text)]
            return text, [None if v is None else v // 1_000_000 for v in iso]
        nanos = [None if v is None else _text_nanos(v, unit, where, i) for i, v in enumerate(text)]
    millis = [None if v is None else v // 1_000_000 for v in nanos]
    if unit == "iso8601":
        return [
            None if v is None else (_EPOCH + dt.timedelta(microseconds=v // 1000)).isoformat() for v in nanos
        ], millis
    scale = _NANOS[unit]
    return [None if v is None else v // scale for v in nanos], millis


def _numbers(column: Any) -> list[Any]:
    """Numbers as Python ints where they are whole (so that epoch nanos keep every digit); NaN: None."""
    out: list[Any] = []
    for v in column.to_pylist():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif isinstance(v, int) or not float(v).is_integer():
            out.append(v)
        else:
            out.append(int(v))
    return out


def _text_nanos(value: str, unit: TimeUnit, where: _Where, i: int) -> int:
    if value.lstrip("-").isdigit():
        return int(value) * _NANOS[unit]
    try:
        number = float(value)
    except ValueError:
        return _iso_nanos(value, where, i)
    if not math.isfinite(number):
        raise ConfigError(f"{where.at(i)} is {value!r}: not a time")
    return round(number * _NANOS[unit])


def _iso_nanos(value: str, where: _Where, i: int) -> int:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{where.at(i)} is {value!r}: not an ISO-8601 time nor an epoch number") from None
    aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return (aware - _EPOCH) // dt.timedelta(microseconds=1) * 1000


def _labels(column: Any, spec: ModelSpec, classes: Sequence[str] | None, where: _Where) -> list[Label | None]:
    """The label column as class indices (classification) or numbers (regression); null: no label."""
    if not isinstance(spec.task, Classification):
        floats = _floats(column, where)
        return [None if math.isnan(v) else v for v in floats.tolist()]
    index = {name: k for k, name in enumerate(classes or ())}
    out: list[Label | None] = []
    for i, value in enumerate(column.to_pylist()):
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            out.append(None)
            continue
        if isinstance(value, str) and value in index:
            out.append(index[value])
            continue
        number = _class_number(value)
        if number is None or number < 0 or (classes and number >= len(classes)):
            known = (
                f"one of {', '.join(classes)} or an index 0-{len(classes) - 1}"
                if classes
                else "a class index (0, 1, ...)"
            )
            raise ConfigError(f"{where.at(i)} is {value!r}: a label is {known}")
        out.append(number)
    return out


def _class_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


# -- sending ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileReport:
    events: int
    labels: int
    seconds: float


def now_in(unit: TimeUnit, now_ms: int) -> int | str:
    """The time ``now_ms`` as the spec's event time field holds it."""
    if unit == "iso8601":
        return (_EPOCH + dt.timedelta(milliseconds=now_ms)).isoformat()
    return now_ms * 1_000_000 // _NANOS[unit]


LabelWriter = Callable[[str, int, Label], bytes]
"""Event id, event time (epoch ms) and label to a framed Label record."""


def label_writer(encoder: AvroEncoder, spec: ModelSpec, classes: Sequence[str] | None = None) -> LabelWriter:
    """Labels in the Label schema ``encoder`` writes: the class index (and its name where the schema
    has ``class_name``) for classification; the number in ``target`` for regression, which needs a
    Label schema with that field."""
    fields = set(encoder.schema.field_names)
    if isinstance(spec.task, Classification):
        names = tuple(spec.task.classes if classes is None else classes)
        with_name = "class_name" in fields and bool(names)

        def write_class(event_id: str, millis: int, label: Label) -> bytes:
            record: dict[str, Any] = {"event_id": event_id, "event_time": millis, "label": int(label)}
            if with_name:
                record["class_name"] = names[int(label)]
            return encoder.encode(record)

        return write_class
    if "target" not in fields:
        raise ConfigError(
            f"the model predicts a number ({spec.task.target}): its labels need the Label v2 schema, "
            f"with a `target` field, and {encoder.schema.name} has fields {', '.join(sorted(fields))} "
            "only. Produce the events without --label-column."
        )

    def write_target(event_id: str, millis: int, label: Label) -> bytes:
        return encoder.encode({"event_id": event_id, "event_time": millis, "target": float(label)})

    return write_target


def produce_file(
    settings: Settings,
    source: FileSource,
    events: AvroEncoder,
    labels: LabelWriter | None = None,
    *,
    rate: float | None = None,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    timeout: float = 60.0,
    chunk_size: int = 500,
) -> FileReport:
    """Send the file's rows to the events topic keyed by event id, each row's label (when ``labels``
    encodes them: event id, event time in ms, label to framed bytes) to the labels topic."""
    producer = kafka.producer(settings)
    topics = settings.topics
    time_field = source.spec.event_time.field
    unit = source.spec.event_time.unit
    if rate:  # about twenty sends a second, so that a slow rate is smooth
        chunk_size = max(1, min(chunk_size, math.ceil(rate / 20)))
    pacer = Pacer(rate)
    started = time.monotonic()
    sent = labelled = 0
    for batch in source.batches(limit):
        for start in range(0, len(batch), chunk_size):
            pacer.wait(sent)
            now_ms = int(time.time() * 1000)
            stamp = now_in(unit, now_ms)
            stop = min(len(batch), start + chunk_size)
            for i in range(start, stop):
                record = batch.records[i]
                if time_field and record[time_field] is None:
                    record[time_field] = stamp
                key = batch.event_ids[i].encode()
                kafka.produce(producer, topics.events, events.encode(record), key)
                label = None if batch.labels is None or labels is None else batch.labels[i]
                if label is not None and labels is not None:
                    at = batch.event_millis[i]
                    kafka.produce(
                        producer,
                        topics.labels,
                        labels(batch.event_ids[i], now_ms if at is None else at, label),
                        key,
                    )
                    labelled += 1
            sent += stop - start
            producer.poll(0)
            if on_progress is not None:
                on_progress(stop - start)
    remaining = producer.flush(timeout)
    if remaining:
        raise DeliveryError(f"{remaining} events were not acknowledged within {timeout:.0f}s.")
    return FileReport(sent, labelled, time.monotonic() - started)
