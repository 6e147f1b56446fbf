"""Batch-at-a-time Avro for Driftline's own records: numpy over the whole batch, no per-event fastavro call.

* :func:`decode_input_events` reads the common, canonical shape of ``io.driftline.InputEvent`` values
  (single-object framing, a known writer fingerprint, one block of exactly ``n_features`` floats, nothing
  after the body) and reports which rows it read. It accepts a row only when fastavro would decode that
  payload to exactly the same values; every other row is left to the caller's fastavro path, which then
  produces the right value or the right error.
* :func:`encode_predictions` writes ``io.driftline.Prediction`` values byte-identical to fastavro's
  ``schemaless_writer`` behind a given framing header.

>>> from driftline.schemas.wire import AvroDecoder, AvroEncoder, builtin_store, load_schema
>>> v2 = load_schema("input_event.avsc")
>>> event = {"event_id": "e1", "event_time": 5, "features": [1.5, -2.0], "source": None}
>>> batch = decode_input_events([AvroEncoder.single_object(v2).encode(event), b"junk"],
...                             {v2.fingerprint: True}, n_features=2)
>>> batch.rows.tolist(), batch.event_ids, batch.event_times.tolist(), batch.features.tolist()
([0], [b'e1'], [5], [[1.5, -2.0]])
>>> header = SINGLE_OBJECT_MARKER + load_schema("prediction.avsc").fingerprint
>>> scores, millis = np.array([[0.25, 0.75]], dtype=np.float32), np.array([2.0], dtype=np.float32)
>>> [value] = encode_predictions(header, batch.event_ids, batch.event_times, "m", "1", scores, millis)
>>> AvroDecoder(builtin_store()).decode(value)["predicted_class"]
1
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from driftline.schemas.wire import SINGLE_OBJECT_MARKER, load_schema

Int64s = npt.NDArray[np.int64]
UInt64s = npt.NDArray[np.uint64]
Bytes = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float32]

_FINGERPRINT = 8
_HEADER = len(SINGLE_OBJECT_MARKER) + _FINGERPRINT
_VARINT_MAX = 10  # a zigzag long never needs more bytes
_PADDING = bytes(16)  # after the joined batch, so fixed-width reads never index past the buffer
_SHIFTS = np.arange(0, 7 * _VARINT_MAX, 7, dtype=np.uint64)
_UNION_NULL, _UNION_STRING = 0x00, 0x02  # union branch 0 and 1 as zigzag varints
_QUIET_NAN = np.uint32(0x0040_0000)


INPUT_EVENT_WRITERS: dict[bytes, bool] = {
    load_schema("input_event.v1.avsc").fingerprint: False,
    load_schema("input_event.avsc").fingerprint: True,
}
"""Driftline's InputEvent versions :func:`decode_input_events` reads (by fingerprint), and whether each
has the trailing ``source``."""


@dataclass(frozen=True)
class DecodedInputs:
    """The rows of a batch that :func:`decode_input_events` read, and their values."""

    rows: Int64s
    event_ids: list[bytes]
    event_times: Int64s
    features: Floats


@dataclass(frozen=True)
class _Batch:
    """A joined batch: every payload back to back, zero-padded, and where each one starts and ends."""

    data: bytes
    buf: Bytes
    starts: Int64s
    ends: Int64s

    @classmethod
    def join(cls, payloads: Sequence[bytes]) -> _Batch:
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        data = b"".join([*payloads, _PADDING])
        ends = np.cumsum(lengths)
        return cls(data, np.frombuffer(data, dtype=np.uint8), ends - lengths, ends)


def decode_input_events(
    payloads: Sequence[bytes], writer_fingerprints: Mapping[bytes, bool], n_features: int
) -> DecodedInputs:
    r"""Decode the canonical single-object ``InputEvent`` values of a batch at once.

    ``writer_fingerprints`` maps each accepted writer schema's fingerprint to whether that version has the
    trailing ``source`` union. Rows that are not read (any other framing, fingerprint or array layout,
    truncated or trailing bytes, invalid UTF-8, ...) are simply absent from ``rows``, for the caller's
    fastavro path; this never raises on malformed payloads.

    >>> fp = bytes(8)
    >>> body = b"\x04e1" + b"\x02" + b"\x02" + np.array([0.5], dtype="<f4").tobytes() + b"\x00"
    >>> out = decode_input_events([b"", b"\xc3\x01" + fp + body], {fp: False}, n_features=1)
    >>> out.rows.tolist(), out.event_ids, out.event_times.tolist(), out.features.tolist()
    ([1], [b'e1'], [1], [[0.5]])
    """
    if n_features < 0:
        raise ValueError(f"n_features must be at least 0, not {n_features}")
    batch = _Batch.join(payloads)
    rows, has_source = _framed_rows(batch, writer_fingerprints)
    end = batch.ends[rows]
    ok = np.ones(len(rows), dtype=np.bool_)
    id_at, id_end, ok = _read_string(batch.buf, batch.starts[rows] + _HEADER, end, ok)
    times, pos, ok = _read_long(batch.buf, id_end, end, ok)
    features_at, pos, ok = _read_float_block(batch.buf, pos, end, ok, n_features)
    source_at, source_end, ok = _read_source(batch.buf, pos, end, ok, has_source)
    ok = _valid_utf8(batch, np.column_stack([id_at, id_end, source_at, source_end]), ok)
    keep = np.flatnonzero(ok)
    ids = [batch.data[a:b] for a, b in zip(id_at[keep].tolist(), id_end[keep].tolist(), strict=True)]
    features = _gather_floats(batch.buf, features_at[keep], n_features)
    return DecodedInputs(rows[keep], ids, times[keep], features)


def _framed_rows(batch: _Batch, writer_fingerprints: Mapping[bytes, bool]) -> tuple[Int64s, Mask]:
    """Rows with the single-object marker and a known fingerprint, and whether their writer has ``source``."""
    rows = np.flatnonzero(batch.ends - batch.starts >= _HEADER)
    at = batch.starts[rows]
    fingerprints = sliding_window_view(batch.buf, _FINGERPRINT)[at + len(SINGLE_OBJECT_MARKER)]
    fingerprints64 = fingerprints.view("<u8").reshape(-1)
    known = np.zeros(len(rows), dtype=np.bool_)
    has_source = np.zeros(len(rows), dtype=np.bool_)
    for fingerprint, with_source in writer_fingerprints.items():
        if len(fingerprint) == _FINGERPRINT:
            hit = fingerprints64 == np.frombuffer(fingerprint, dtype="<u8")[0]
            known |= hit
            has_source |= hit & bool(with_source)
    ok = known & (batch.buf[at] == SINGLE_OBJECT_MARKER[0]) & (batch.buf[at + 1] == SINGLE_OBJECT_MARKER[1])
    return rows[ok], has_source[ok]


def _read_varint(buf: Bytes, pos: Int64s, end: Int64s, ok: Mask) -> tuple[UInt64s, Int64s, Mask]:
    """The varints at ``pos`` (of the ``ok`` rows): raw unsigned values, next positions, still-ok rows.

    Only the shortest form is accepted, which fastavro reads to the same 64-bit value: at most 10 bytes,
    the last one not 0 unless it is the only one, and a 10th byte of exactly 1.
    """
    raw = np.zeros(len(pos), dtype=np.uint64)
    size = np.zeros(len(pos), dtype=np.int64)
    more = ok.copy()
    for lane in range(_VARINT_MAX):  # one byte of every row at a time; typical varints are short
        byte = buf[pos + lane]
        raw |= np.where(more, byte & 0x7F, 0).astype(np.uint64) << _SHIFTS[lane]
        size += more
        more &= byte >= 0x80
        if not more.any():
            break
    last = buf[pos + np.maximum(size, 1) - 1]
    ok = ok & ~more & (size <= end - pos) & ((size == 1) | (last != 0)) & ((size < _VARINT_MAX) | (last == 1))
    return raw, np.where(ok, pos + size, 0), ok


def _read_long(buf: Bytes, pos: Int64s, end: Int64s, ok: Mask) -> tuple[Int64s, Int64s, Mask]:
    """Avro longs (zigzag varints) at ``pos``: values, next positions, still-ok rows."""
    raw, after, ok = _read_varint(buf, pos, end, ok)
    return (raw >> np.uint64(1) ^ np.uint64(0) - (raw & np.uint64(1))).view(np.int64), after, ok


def _read_string(buf: Bytes, pos: Int64s, end: Int64s, ok: Mask) -> tuple[Int64s, Int64s, Mask]:
    """Avro strings (length, bytes) at ``pos``: where their bytes start and stop, still-ok rows."""
    length, at, ok = _read_long(buf, pos, end, ok)
    ok = ok & (length >= 0) & (length <= end - at)
    return np.where(ok, at, 0), np.where(ok, at + length, 0), ok


def _read_float_block(
    buf: Bytes, pos: Int64s, end: Int64s, ok: Mask, n_features: int
) -> tuple[Int64s, Int64s, Mask]:
    """An array<float> as fastavro writes ``n_features`` items: one block (count, floats), then the 0
    terminator. Returns where the floats start, the next positions and the still-ok rows."""
    prefix = avro_long(n_features) if n_features else b""
    width = len(prefix) + 4 * n_features + 1
    ok = ok & (width <= end - pos)
    for offset, expected in enumerate(prefix):
        ok &= buf[np.where(ok, pos + offset, 0)] == expected
    ok &= buf[np.where(ok, pos + width - 1, 0)] == 0
    return np.where(ok, pos + len(prefix), 0), np.where(ok, pos + width, 0), ok


def _read_source(
    buf: Bytes, pos: Int64s, end: Int64s, ok: Mask, has_source: Mask
) -> tuple[Int64s, Int64s, Mask]:
    """The ``["null", "string"]`` union that ends v2 bodies (v1 bodies end at ``pos``): where the string's
    bytes start and stop (an empty range for null and v1), still-ok rows. The payload must end there."""
    tag = buf[pos]
    is_string = has_source & (tag == _UNION_STRING)
    ok = ok & (~has_source | is_string | (tag == _UNION_NULL))
    after = pos + has_source
    string_ok = ok & is_string
    at, stop, string_ok = _read_string(buf, np.where(string_ok, after, 0), end, string_ok)
    ok &= np.where(is_string, string_ok, True) & (np.where(is_string, stop, after) == end)
    return np.where(is_string, at, after), np.where(is_string, stop, after), ok


def _valid_utf8(batch: _Batch, segments: Int64s, ok: Mask) -> Mask:
    """``ok`` less the rows with a ``[start, stop)`` byte range in ``segments`` (one row of start, stop
    pairs per row, ascending) that is not strict UTF-8, which fastavro's decode needs.

    Pure-ASCII ranges are found for the whole batch at once; only the others are decoded one by one.
    """
    chosen = np.flatnonzero(ok)
    bounds = segments[chosen].reshape(-1)  # ascending, so one pass over the batch
    if len(bounds) == 0:
        return ok
    high = np.bitwise_or.reduceat(batch.buf, bounds)[0::2] >= 0x80
    high &= bounds[1::2] > bounds[0::2]  # reduceat gives an empty range one byte, not nothing
    ok = ok.copy()
    per_row = segments.shape[1] // 2
    for index in np.flatnonzero(high).tolist():
        start, stop = bounds[2 * index : 2 * index + 2].tolist()
        try:
            batch.data[start:stop].decode("utf-8")
        except UnicodeDecodeError:
            ok[chosen[index // per_row]] = False
    return ok


def _gather_floats(buf: Bytes, at: Int64s, n_features: int) -> Floats:
    """The ``n_features`` little-endian float32 values at each of ``at``, one row each."""
    if n_features == 0 or len(at) == 0:
        return np.zeros((len(at), n_features), dtype=np.float32)
    rows = sliding_window_view(buf, 4 * n_features)[at]
    return np.ascontiguousarray(rows).view("<f4").astype(np.float32, copy=False)


def encode_predictions(
    header: bytes,
    event_ids: Sequence[bytes],
    event_times: npt.NDArray[np.int64],
    model_name: str,
    model_version: str,
    scores: npt.NDArray[np.float32],
    processing_ms: npt.NDArray[np.float32],
    classes: Sequence[str] = (),
    values: npt.NDArray[np.float64] | None = None,
) -> list[bytes]:
    """``header`` + the Avro body of one ``io.driftline.Prediction`` per row, as fastavro writes it.

    Classification: ``scores`` has one row per event and a column per class; ``predicted_class`` is its
    first argmax and ``predicted_label`` that class's name in ``classes`` (null without ``classes``).
    Regression: ``values`` holds the predictions, ``scores`` has no columns and ``predicted_class`` is -1.

    >>> out = encode_predictions(b"", [b"e1"], np.array([1]), "m", "1",
    ...                          np.array([[0.5, 0.5]], dtype=np.float32), np.array([2.0], dtype=np.float32))
    >>> out[0].hex(" ")
    '04 65 31 02 02 6d 02 31 04 00 00 00 3f 00 00 00 3f 00 00 00 00 00 40 00 00'
    """
    if len(event_ids) == 0:
        return []
    times, probs, millis = _checked_columns(
        len(event_ids), event_times, scores, processing_ms, values is None
    )
    id_lengths = np.fromiter(map(len, event_ids), dtype=np.int64, count=len(event_ids))
    predicted = probs.argmax(axis=1) if values is None else np.full(len(times), -1, dtype=np.int64)
    longs = [_zigzag(v) for v in (id_lengths, times, predicted)]
    sizes = [_varint_sizes(raw) for raw in longs]
    middle = _middle_block(model_name, model_version, probs)
    tails, tail_lengths = _tails(predicted, classes, values)
    lengths = len(header) + sizes[0] + id_lengths + sizes[1] + middle.shape[1] + sizes[2] + 4 + tail_lengths
    ends = np.cumsum(lengths)
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    at = _put(out, ends - lengths, np.frombuffer(header, dtype=np.uint8))
    at = _put_varint(out, at, longs[0], sizes[0])
    at = _put_ragged(out, at, b"".join(event_ids), id_lengths)
    at = _put_varint(out, at, longs[1], sizes[1])
    at = _put(out, at, middle)
    at = _put_varint(out, at, longs[2], sizes[2])
    at = _put(out, at, _float_bytes(millis[:, None]))
    _put_ragged(out, at, tails, tail_lengths)
    data = out.tobytes()
    return [data[a:b] for a, b in itertools.pairwise([0, *ends.tolist()])]


def _tails(
    predicted: Int64s, classes: Sequence[str], values: npt.NDArray[np.float64] | None
) -> tuple[bytes, Int64s]:
    """Each row's ``predicted_label`` and ``value`` unions, joined, and their lengths."""
    if values is not None:  # regression: label null, value a double
        column = np.asarray(values, dtype="<f8").reshape(-1, 1).view(np.uint8)
        block = np.empty((len(column), 10), dtype=np.uint8)
        block[:, 0], block[:, 1], block[:, 2:] = _UNION_NULL, _UNION_STRING, column
        return block.tobytes(), np.full(len(column), 10, dtype=np.int64)
    if not classes:
        return bytes(2 * len(predicted)), np.full(len(predicted), 2, dtype=np.int64)
    per_class = [bytes([_UNION_STRING]) + _avro_string(name) + bytes([_UNION_NULL]) for name in classes]
    if predicted.max() >= len(per_class):
        raise ValueError(f"scores have more columns than the {len(per_class)} class names")
    table = np.array([len(t) for t in per_class], dtype=np.int64)
    return b"".join(per_class[k] for k in predicted.tolist()), table[predicted]


def _checked_columns(
    rows: int,
    event_times: npt.NDArray[np.int64],
    scores: Floats,
    processing_ms: Floats,
    classify: bool = True,
) -> tuple[Int64s, Floats, Floats]:
    """The columns as int64 / float32 arrays, after checking that they describe ``rows`` events."""
    times = np.asarray(event_times, dtype=np.int64).reshape(-1)
    probs = np.asarray(scores, dtype=np.float32)
    millis = np.asarray(processing_ms, dtype=np.float32).reshape(-1)
    if classify and (probs.ndim != 2 or probs.shape[0] != rows or probs.shape[1] == 0):
        raise ValueError(f"scores must have shape ({rows}, classes >= 1), not {probs.shape}")
    if not classify:
        probs = probs.reshape(rows, 0)
    if len(times) != rows or len(millis) != rows:
        raise ValueError(f"event_times and processing_ms must have {rows} values each")
    return times, probs, millis


def _middle_block(model_name: str, model_version: str, probs: Floats) -> Bytes:
    """Per row: the two model strings, the scores array (one block, then the 0 terminator)."""
    count = avro_long(probs.shape[1]) if probs.shape[1] else b""  # an empty array is its terminator only
    strings = _avro_string(model_name) + _avro_string(model_version) + count
    block = np.empty((len(probs), len(strings) + 4 * probs.shape[1] + 1), dtype=np.uint8)
    block[:, : len(strings)] = np.frombuffer(strings, dtype=np.uint8)
    block[:, len(strings) : -1] = _float_bytes(probs)
    block[:, -1] = 0
    return block


def _zigzag(values: npt.NDArray[np.integer]) -> UInt64s:
    """Avro's zigzag mapping of signed longs onto unsigned ones."""
    signed = values.astype(np.int64, copy=False)
    return ((signed << 1) ^ (signed >> 63)).view(np.uint64)


def _varint_sizes(raw: UInt64s) -> Int64s:
    """How many varint bytes each unsigned value needs."""
    size = np.ones(len(raw), dtype=np.int64)
    for shift in _SHIFTS[1:]:
        longer = raw >> shift != 0
        if not longer.any():
            break
        size += longer
    return size


def _put_varint(out: Bytes, at: Int64s, raw: UInt64s, size: Int64s) -> Int64s:
    """Write each value as a ``size``-byte varint at ``at``, one byte of every row at a time."""
    for lane in range(int(size.max())):
        continues = (size > lane + 1).astype(np.uint8) << 7
        byte = (raw >> _SHIFTS[lane] & np.uint64(0x7F)).astype(np.uint8) | continues
        here = size > lane
        out[(at + lane)[here]] = byte[here]
    return at + size


def _put(out: Bytes, at: Int64s, block: Bytes) -> Int64s:
    """Write ``block`` (the same bytes for every row, or one row each) at ``at``; return where they end."""
    width = int(block.shape[-1])
    if width:
        sliding_window_view(out, width, writeable=True)[at] = block
    return at + width


def _put_ragged(out: Bytes, at: Int64s, joined: bytes, lengths: Int64s) -> Int64s:
    """Write consecutive pieces of ``joined`` (``lengths`` bytes each) at ``at``; return where they end."""
    pieces = np.frombuffer(joined, dtype=np.uint8)
    if lengths.min() == lengths.max():  # typical ids share one format: one row-wise copy
        return _put(out, at, pieces.reshape(len(lengths), int(lengths[0])))
    index = np.repeat(at - (np.cumsum(lengths) - lengths), lengths)
    index += np.arange(len(pieces), dtype=np.int64)
    out[index] = pieces
    return at + lengths


def _float_bytes(values: Floats) -> Bytes:
    """Little-endian float32 bytes, one row per row of ``values``, as fastavro writes them.

    fastavro receives each value as a Python float (float32 -> double -> float32), which is exact except
    that a signalling NaN comes back quiet; the quiet bit is set here the same way.
    """
    bits = np.ascontiguousarray(values, dtype="<f4").view("<u4")
    bits = np.where(np.isnan(values), bits | _QUIET_NAN, bits).astype("<u4", copy=False)
    return bits.view(np.uint8).reshape(len(values), -1)


def avro_long(value: int) -> bytes:
    """One Avro long (zigzag varint).

    >>> avro_long(0), avro_long(-1), avro_long(64)
    (b'\\x00', b'\\x01', b'\\x80\\x01')
    """
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    while raw > 0x7F:
        out.append(raw & 0x7F | 0x80)
        raw >>= 7
    return bytes([*out, raw])


def _avro_string(text: str) -> bytes:
    encoded = text.encode("utf-8")
    return avro_long(len(encoded)) + encoded
