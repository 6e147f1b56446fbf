"""Batch-at-a-time reading of Driftline's ``Prediction`` and ``Label`` values, for the drift monitor.

Like :func:`~driftline.schemas.columnar.decode_input_events`, each reader accepts a row only in the
canonical shape (single-object framing with the given fingerprint, nothing after the body, strict
UTF-8 strings, for predictions exactly ``n_classes`` scores in one block) and leaves every other row
out of ``rows`` for the caller's fastavro path. It never raises on malformed payloads.

>>> from driftline.schemas.wire import AvroEncoder, builtin_store
>>> store = builtin_store()
>>> p = AvroEncoder.single_object(store.latest("io.driftline.Prediction"))
>>> value = p.encode({"event_id": "e1", "event_time": 7, "model_name": "m", "model_version": "3",
...                   "scores": [0.25, 0.75], "predicted_class": 1, "processing_ms": 1.5})
>>> out = decode_predictions([b"junk", value], {p.schema.fingerprint: True}, n_classes=2)
>>> out.rows.tolist(), out.event_ids, out.versions, out.scores.tolist(), out.predicted.tolist()
([1], ['e1'], ['3'], [[0.25, 0.75]], [1])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driftline.schemas.columnar import (
    _HEADER,
    Bytes,
    Floats,
    Int64s,
    Mask,
    _Batch,
    _framed_rows,
    _gather_floats,
    _read_float_block,
    _read_long,
    _read_string,
    _valid_utf8,
)
from driftline.schemas.wire import load_schema


def _skip_tail(
    buf: Bytes, pos: Int64s, end: Int64s, ok: Mask, has_tail: Mask
) -> tuple[Int64s, npt.NDArray[np.float64]]:
    """Past ``predicted_label`` (null or a string) and ``value`` (null or a double) where the writer has
    them, and the values (NaN where null); a row with any other union branch ends up off its end (and
    so goes to fastavro)."""
    label, after, ok = _read_long(buf, pos, end, ok & has_tail)
    length, text_at, _ = _read_long(buf, after, end, ok)
    after = np.where(label == 1, text_at + length, np.where(label == 0, after, end + 1))
    value, past, _ = _read_long(buf, after, end, ok & (after < end))
    has_value = ok & has_tail & (value == 1) & (past + 8 <= end)
    values = np.full(len(pos), np.nan)
    if has_value.any():
        at = past[has_value]
        values[has_value] = buf[at[:, None] + np.arange(8)].copy().view("<f8").reshape(-1)
    past = np.where(value == 1, past + 8, np.where(value == 0, past, end + 1))
    return np.where(has_tail, np.where(ok, past, end + 1), pos), values


@dataclass(frozen=True)
class DecodedPredictions:
    rows: Int64s
    event_ids: list[str]
    event_times: Int64s
    versions: list[str]
    scores: Floats
    predicted: Int64s
    values: npt.NDArray[np.float64]
    """A regression model's predicted values (NaN for classification)."""


@dataclass(frozen=True)
class DecodedLabels:
    rows: Int64s
    event_ids: list[str]
    event_times: Int64s
    labels: Int64s


PREDICTION_WRITERS: dict[bytes, bool] = {
    load_schema("prediction.v1.avsc").fingerprint: False,
    load_schema("prediction.avsc").fingerprint: True,
}
"""Driftline's Prediction versions :func:`decode_predictions` reads, and whether each has version 2's
trailing unions."""
LABEL_WRITERS: dict[bytes, bool] = {
    load_schema("label.v1.avsc").fingerprint: False,
    load_schema("label.avsc").fingerprint: True,
}
"""Driftline's Label versions :func:`decode_labels` reads, and whether each has version 2's unions."""


def decode_predictions(
    payloads: Sequence[bytes], writer_fingerprints: Mapping[bytes, bool], n_classes: int
) -> DecodedPredictions:
    """``writer_fingerprints`` maps each accepted Prediction writer to whether it has the trailing
    ``predicted_label`` and ``value`` unions (version 2)."""
    batch = _Batch.join(payloads)
    rows, has_tail = _framed_rows(batch, writer_fingerprints)
    buf, end = batch.buf, batch.ends[rows]
    ok = np.ones(len(rows), dtype=np.bool_)
    id_at, id_end, ok = _read_string(buf, batch.starts[rows] + _HEADER, end, ok)
    times, pos, ok = _read_long(buf, id_end, end, ok)
    name_at, name_end, ok = _read_string(buf, pos, end, ok)
    version_at, version_end, ok = _read_string(buf, name_end, end, ok)
    scores_at, pos, ok = _read_float_block(buf, version_end, end, ok, n_classes)
    predicted, pos, ok = _read_long(buf, pos, end, ok)
    pos, values = _skip_tail(buf, pos + 4, end, ok, has_tail)  # processing_ms, then version 2's unions
    ok &= pos == end
    ok &= (predicted >= -(2**31)) & (predicted < 2**31)  # an Avro int
    segments = np.column_stack([id_at, id_end, name_at, name_end, version_at, version_end])
    ok = _valid_utf8(batch, segments, ok)
    keep = np.flatnonzero(ok)
    return DecodedPredictions(
        rows[keep],
        _strings(batch, id_at[keep], id_end[keep]),
        times[keep],
        _strings(batch, version_at[keep], version_end[keep], repeated=True),
        _gather_floats(buf, scores_at[keep], n_classes),
        predicted[keep],
        values[keep],
    )


def decode_labels(payloads: Sequence[bytes], writer_fingerprints: Mapping[bytes, bool]) -> DecodedLabels:
    """Labels by class index; ``writer_fingerprints`` maps each accepted Label writer to whether it has
    version 2's ``class_name`` and ``target`` unions (rows that use them go to fastavro)."""
    batch = _Batch.join(payloads)
    rows, has_tail = _framed_rows(batch, writer_fingerprints)
    buf, end = batch.buf, batch.ends[rows]
    ok = np.ones(len(rows), dtype=np.bool_)
    id_at, id_end, ok = _read_string(buf, batch.starts[rows] + _HEADER, end, ok)
    times, pos, ok = _read_long(buf, id_end, end, ok)
    labels, pos, ok = _read_long(buf, pos, end, ok)
    null_tail = (
        (pos + 2 == end)
        & (buf[np.minimum(pos, len(buf) - 2)] == 0)
        & (buf[np.minimum(pos + 1, len(buf) - 1)] == 0)
    )
    ok &= np.where(has_tail, null_tail, pos == end) & (labels >= -(2**31)) & (labels < 2**31)
    ok = _valid_utf8(batch, np.column_stack([id_at, id_end]), ok)
    keep = np.flatnonzero(ok)
    return DecodedLabels(rows[keep], _strings(batch, id_at[keep], id_end[keep]), times[keep], labels[keep])


def _strings(batch: _Batch, starts: Int64s, stops: Int64s, *, repeated: bool = False) -> list[str]:
    """The strings at ``[starts, stops)``; ``repeated``: few distinct values, decoded once each."""
    data = batch.data
    pairs = zip(starts.tolist(), stops.tolist(), strict=True)
    if not repeated:
        return [data[a:b].decode() for a, b in pairs]
    cache: dict[bytes, str] = {}
    return [cache.get(raw) or cache.setdefault(raw, raw.decode()) for raw in (data[a:b] for a, b in pairs)]
