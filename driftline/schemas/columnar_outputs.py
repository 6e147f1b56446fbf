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
>>> out = decode_predictions([b"junk", value], p.schema.fingerprint, n_classes=2)
>>> out.rows.tolist(), out.event_ids, out.versions, out.scores.tolist(), out.predicted.tolist()
([1], ['e1'], ['3'], [[0.25, 0.75]], [1])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from driftline.schemas.columnar import (
    _HEADER,
    Floats,
    Int64s,
    _Batch,
    _framed_rows,
    _gather_floats,
    _read_float_block,
    _read_long,
    _read_string,
    _valid_utf8,
)


@dataclass(frozen=True)
class DecodedPredictions:
    rows: Int64s
    event_ids: list[str]
    event_times: Int64s
    versions: list[str]
    scores: Floats
    predicted: Int64s


@dataclass(frozen=True)
class DecodedLabels:
    rows: Int64s
    event_ids: list[str]
    event_times: Int64s
    labels: Int64s


def decode_predictions(payloads: Sequence[bytes], fingerprint: bytes, n_classes: int) -> DecodedPredictions:
    batch = _Batch.join(payloads)
    rows, _ = _framed_rows(batch, {fingerprint: False})
    buf, end = batch.buf, batch.ends[rows]
    ok = np.ones(len(rows), dtype=np.bool_)
    id_at, id_end, ok = _read_string(buf, batch.starts[rows] + _HEADER, end, ok)
    times, pos, ok = _read_long(buf, id_end, end, ok)
    name_at, name_end, ok = _read_string(buf, pos, end, ok)
    version_at, version_end, ok = _read_string(buf, name_end, end, ok)
    scores_at, pos, ok = _read_float_block(buf, version_end, end, ok, n_classes)
    predicted, pos, ok = _read_long(buf, pos, end, ok)
    ok &= pos + 4 == end  # processing_ms, then nothing
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
    )


def decode_labels(payloads: Sequence[bytes], fingerprint: bytes) -> DecodedLabels:
    batch = _Batch.join(payloads)
    rows, _ = _framed_rows(batch, {fingerprint: False})
    buf, end = batch.buf, batch.ends[rows]
    ok = np.ones(len(rows), dtype=np.bool_)
    id_at, id_end, ok = _read_string(buf, batch.starts[rows] + _HEADER, end, ok)
    times, pos, ok = _read_long(buf, id_end, end, ok)
    labels, pos, ok = _read_long(buf, pos, end, ok)
    ok &= (pos == end) & (labels >= -(2**31)) & (labels < 2**31)
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
