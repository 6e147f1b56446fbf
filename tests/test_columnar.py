"""The batch codec against fastavro itself, without a broker.

Decoding: every row :func:`decode_input_events` accepts must decode through fastavro (the caller's
fallback, :class:`AvroDecoder`) to exactly the same values, and the canonical payloads fastavro writes
must be accepted. Encoding: :func:`encode_predictions` must match ``schemaless_writer`` byte for byte.
"""

from __future__ import annotations

import io
import random
import string
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastavro import schemaless_writer
from fastavro.utils import generate_many

from driftline.errors import DecodeError
from driftline.schemas.columnar import DecodedInputs, avro_long, decode_input_events, encode_predictions
from driftline.schemas.wire import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MARKER,
    AvroDecoder,
    AvroEncoder,
    AvroSchema,
    builtin_store,
    load_schema,
)

Record = dict[str, Any]

V1 = load_schema("input_event.v1.avsc")
V2 = load_schema("input_event.avsc")
PREDICTION = load_schema("prediction.avsc")
WRITERS = {V1.fingerprint: False, V2.fingerprint: True}
DECODER = AvroDecoder(builtin_store())
ALPHABET = string.ascii_letters + string.digits + "-_:. é日本🚀\x00\x7f"
TIMES = [0, 1, -1, 63, -64, 64, -65, 8191, 8192, 1_700_000_000_123, -(2**62), 2**62, -(2**63), 2**63 - 1]
SPECIAL_FLOATS = [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e-45, 3.4e38, -1.5]


# ----------------------------------------------------------------------------------------- helpers


def avro_bytes(data: bytes) -> bytes:
    return avro_long(len(data)) + data


def floats(values: Iterable[float]) -> bytes:
    return np.array(list(values), dtype="<f4").tobytes()


def framed(schema: AvroSchema, body: bytes) -> bytes:
    return SINGLE_OBJECT_MARKER + schema.fingerprint + body


def encode(schema: AvroSchema, record: Record) -> bytes:
    return AvroEncoder.single_object(schema).encode(record)


def fastavro_decode(payload: bytes) -> Record | None:
    """What the caller's fastavro path makes of a payload: a record, or None for a decode error."""
    try:
        return DECODER.decode(payload)
    except DecodeError:
        return None


def random_id(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return ""
    if kind == 1:
        return "x" * rng.choice([63, 64, 200, 1000])
    if kind == 2:
        return rng.choice(["é", "日本語", "🚀", "ñandú-", "\x00"]) * rng.randrange(1, 40)
    if kind == 3:
        return f"3f9a2c-{rng.randrange(10**9):09d}"
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 40)))


def random_time(rng: random.Random) -> int:
    if rng.random() < 0.5:
        return rng.choice(TIMES)
    return rng.randrange(-(2**63), 2**63)


def random_features(rng: random.Random, n: int) -> list[float]:
    return [rng.choice(SPECIAL_FLOATS) if rng.random() < 0.1 else rng.gauss(0, 100) for _ in range(n)]


def random_source(rng: random.Random) -> str | None:
    return rng.choice([None, None, "", "3f9a2c", "é" * 300, random_id(rng)])


def random_record(rng: random.Random, n_features: int) -> Record:
    return {
        "event_id": random_id(rng),
        "event_time": random_time(rng),
        "features": random_features(rng, n_features),
        "source": random_source(rng),
    }


def random_event(rng: random.Random, n_features: int) -> bytes:
    """A payload as fastavro writes it, by either writer version."""
    return encode(rng.choice([V1, V2]), random_record(rng, n_features))


def assert_same_floats(actual: npt.NDArray[np.float32], expected: Sequence[float]) -> None:
    wanted = np.array(expected, dtype=np.float32)
    assert actual.shape == wanted.shape
    assert np.array_equal(np.isnan(actual), np.isnan(wanted))
    finite = ~np.isnan(wanted)
    assert np.array_equal(actual[finite].view(np.uint32), wanted[finite].view(np.uint32))  # -0.0 too


def check_batch(payloads: Sequence[bytes], n_features: int) -> DecodedInputs:
    """Decode a batch and hold every accepted row against fastavro; return the result."""
    out = decode_input_events(payloads, WRITERS, n_features)
    rows = out.rows.tolist()
    assert rows == sorted(set(rows))
    assert all(0 <= row < len(payloads) for row in rows)
    assert out.rows.dtype == np.int64
    assert out.event_times.dtype == np.int64
    assert out.features.dtype == np.float32
    assert out.features.shape == (len(rows), n_features)
    assert len(out.event_ids) == len(rows) == len(out.event_times)
    for i, row in enumerate(rows):
        record = DECODER.decode(payloads[row])  # an accepted row must decode: this must not raise
        assert out.event_ids[i] == record["event_id"].encode("utf-8")
        assert int(out.event_times[i]) == record["event_time"]
        assert_same_floats(out.features[i], record["features"])
    return out


def accepted(payloads: Sequence[bytes], n_features: int) -> set[int]:
    return set(check_batch(payloads, n_features).rows.tolist())


# ------------------------------------------------------------------------------------------ decode


@pytest.mark.parametrize("n_features", [0, 1, 9, 100])
def test_random_records_are_accepted_exactly_when_their_feature_count_matches(n_features: int) -> None:
    rng = random.Random(n_features)
    counts = [n_features if rng.random() < 0.8 else rng.choice([0, 1, 2, 9, 10, 99, 101]) for _ in range(500)]
    records = [random_record(rng, count) for count in counts]
    payloads = [encode(rng.choice([V1, V2]), record) for record in records]
    assert accepted(payloads, n_features) == {i for i, count in enumerate(counts) if count == n_features}


@pytest.mark.parametrize("schema", [V1, V2], ids=["v1", "v2"])
def test_records_from_fastavro_generate_many_are_accepted(schema: AvroSchema) -> None:
    records = list(generate_many(dict(schema.raw), 1000))
    payloads = [encode(schema, record) for record in records]
    n_features = len(records[0]["features"])
    expected = {i for i, record in enumerate(records) if len(record["features"]) == n_features}
    assert len(expected) > 500
    assert accepted(payloads, n_features) == expected


def test_a_typical_batch_is_read_whole() -> None:
    rng = np.random.default_rng(7)
    records = [
        {
            "event_id": f"3f9a2c-{i:09d}",
            "event_time": 1_700_000_000_000 + i,
            "features": rng.standard_normal(9).astype(np.float32).tolist(),
            "source": "3f9a2c" if i % 3 else None,
        }
        for i in range(2000)
    ]
    payloads = [encode(V2 if i % 2 else V1, record) for i, record in enumerate(records)]
    out = check_batch(payloads, 9)
    assert out.rows.tolist() == list(range(2000))
    assert out.event_ids[12] == b"3f9a2c-000000012"
    assert np.array_equal(out.features, np.array([r["features"] for r in records], dtype=np.float32))


@pytest.mark.parametrize(
    "record",
    [
        {"event_id": "", "event_time": 0, "features": [1.0], "source": None},
        {"event_id": "é日本🚀", "event_time": -1, "features": [float("nan")], "source": "é" * 300},
        {"event_id": "x" * 63, "event_time": 2**63 - 1, "features": [float("inf")], "source": ""},
        {"event_id": "x" * 64, "event_time": -(2**63), "features": [float("-inf")], "source": "s"},
        {"event_id": "x" * 200, "event_time": 64, "features": [-0.0], "source": None},
        {"event_id": "\x00", "event_time": -65, "features": [1e-45], "source": "\x00"},
    ],
)
def test_edge_case_records_are_accepted_by_both_versions(record: Record) -> None:
    payloads = [encode(V1, record), encode(V2, record)]
    assert accepted(payloads, 1) == {0, 1}


def test_every_truncation_and_every_appended_byte_is_rejected() -> None:
    rng = random.Random(1)
    for _ in range(60):
        payload = random_event(rng, rng.choice([0, 1, 9]))
        n_features = len(DECODER.decode(payload)["features"])
        cut = [payload[:size] for size in range(len(payload))]
        longer = [payload + bytes([value]) for value in (0, 1, 2, 0x80, 0xFF)]
        assert accepted(cut + longer + [payload], n_features) == {len(cut) + len(longer)}


def test_random_byte_substitutions_are_rejected_or_decoded_exactly() -> None:
    rng = random.Random(2)
    for _ in range(200):
        payload = bytearray(random_event(rng, 9))
        mutants = []
        for _ in range(40):
            mutant = payload.copy()
            for _ in range(rng.choice([1, 1, 2, 3])):
                mutant[rng.randrange(len(mutant))] = rng.randrange(256)
            mutants.append(bytes(mutant))
        check_batch(mutants, 9)


def test_every_value_at_every_position_is_rejected_or_decoded_exactly() -> None:
    record = {"event_id": "é-1", "event_time": -70, "features": [1.5, float("nan")], "source": "ab"}
    for schema in (V1, V2):
        payload = encode(schema, record)
        mutants = [
            payload[:at] + bytes([value]) + payload[at + 1 :]
            for at in range(len(payload))
            for value in range(256)
        ]
        out = check_batch(mutants, 2)
        assert len(out.rows) > 1000  # the float and id bytes can take most values


def test_multi_block_and_negative_count_arrays_are_left_to_fastavro() -> None:
    head = avro_bytes(b"e-1") + avro_long(5)
    values = [float(i) for i in range(9)]
    layouts = [
        avro_long(4) + floats(values[:4]) + avro_long(5) + floats(values[4:]) + b"\x00",
        avro_long(-9) + avro_long(36) + floats(values) + b"\x00",
        avro_long(9) + floats(values) + avro_long(0) + b"",  # the canonical one, for contrast
        b"\x92\x00" + floats(values) + b"\x00",  # count 9 in two bytes
        avro_long(9) + floats(values) + b"\x80\x00",  # terminator 0 in two bytes
    ]
    payloads = [framed(V1, head + layout) for layout in layouts]
    for payload in payloads:
        assert fastavro_decode(payload) is not None  # all valid Avro
    assert accepted(payloads, 9) == {2}


def test_other_framings_and_fingerprints_are_rejected() -> None:
    record = {"event_id": "e", "event_time": 1, "features": [1.0, 2.0], "source": None}
    body = encode(V2, record)[10:]
    payloads = [
        AvroEncoder.confluent(V2, 1).encode(record),
        CONFLUENT_MAGIC + bytes(4) + body,
        framed(PREDICTION, body),
        b"\xc3\x02" + V2.fingerprint + body,
        b"\xc2\x01" + V2.fingerprint + body,
        SINGLE_OBJECT_MARKER + V2.fingerprint[::-1] + body,
        framed(V1, body),  # a v2 body under the v1 fingerprint has a trailing byte
        framed(V2, body),
    ]
    assert accepted(payloads, 2) == {7}
    assert decode_input_events([framed(V2, body)], {}, 2).rows.tolist() == []
    assert decode_input_events(
        [framed(V2, body)], {b"short": True, V2.fingerprint: True}, 2
    ).rows.tolist() == [0]


@pytest.mark.parametrize(
    "bad", [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe6\x97", b"a\x80", b"\xf4\x90\x80\x80"]
)
def test_invalid_utf8_ids_and_sources_are_rejected(bad: bytes) -> None:
    features = avro_long(1) + floats([1.0]) + b"\x00"
    payloads = [
        framed(V1, avro_bytes(bad) + avro_long(1) + features),
        framed(V2, avro_bytes(b"ok") + avro_long(1) + features + b"\x02" + avro_bytes(bad)),
        framed(V2, avro_bytes(b"ok") + avro_long(1) + features + b"\x02" + avro_bytes("é".encode())),
    ]
    assert fastavro_decode(payloads[0]) is None
    assert fastavro_decode(payloads[1]) is None
    assert accepted(payloads, 1) == {2}


def test_unusual_varints_and_union_indexes_are_rejected_or_decoded_exactly() -> None:
    features = avro_long(1) + floats([1.0]) + b"\x00"
    cases = [
        (b"\x84\x00e1", avro_long(1), b"\x00"),  # overlong id length
        (avro_bytes(b"e"), b"\x82\x80\x00", b"\x00"),  # overlong time
        (avro_bytes(b"e"), b"\xff" * 9 + b"\x01", b"\x00"),  # 10 bytes: the largest zigzag value
        (avro_bytes(b"e"), b"\xff" * 9 + b"\x03", b"\x00"),  # 10 bytes, more than 64 bits
        (avro_bytes(b"e"), b"\xff" * 10 + b"\x01", b"\x00"),  # 11 bytes
        (avro_bytes(b"e"), b"\xff" * 30, b"\x00"),  # never ends
        (b"\x01e", avro_long(1), b"\x00"),  # negative length
        (b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01", avro_long(1), b"\x00"),  # huge length
        (avro_bytes(b"e"), avro_long(1), b"\x01" + avro_bytes(b"s")),  # union index -1
        (avro_bytes(b"e"), avro_long(1), b"\x04"),  # union index 2
        (avro_bytes(b"e"), avro_long(1), b"\x80\x00"),  # union index 0, overlong
        (avro_bytes(b"e"), avro_long(1), b""),  # union missing
        (avro_bytes(b"e"), avro_long(1), b"\x02"),  # string missing
        (avro_bytes(b"e"), avro_long(1), b"\x02\x04s"),  # string cut short
    ]
    payloads = [framed(V2, event_id + time + features + tail) for event_id, time, tail in cases]
    out = check_batch(payloads, 1)
    assert 2 in out.rows.tolist()
    assert out.event_times[out.rows.tolist().index(2)] == -(2**63)
    assert not {3, 4, 5, 6, 7, 11, 12, 13} & set(out.rows.tolist())


def test_garbage_never_raises() -> None:
    rng = random.Random(3)
    header = SINGLE_OBJECT_MARKER + V2.fingerprint
    payloads = [b"", b"\xc3", b"\xc3\x01", header, header + b"\x00"]
    for _ in range(3000):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        payloads.append(rng.choice([b"", header, header + b"\x02e\x02\x02"]) + noise)
    for n_features in (0, 1, 2):
        check_batch(payloads, n_features)
    assert check_batch([], 3).features.shape == (0, 3)
    assert check_batch([b""] * 5, 10_000).rows.tolist() == []
    assert check_batch([header + b"\x02e\x02\xa0\x9c\x01"], 10_000).rows.tolist() == []  # counts 10_000


def test_mixed_batches_keep_their_row_indices() -> None:
    rng = random.Random(4)
    good = [random_event(rng, 3) for _ in range(300)]
    bad = [rng.choice([b"", b"\x00junk", good[0][:-1], good[0] + b"\x00"]) for _ in range(300)]
    order = list(range(600))
    rng.shuffle(order)
    payloads = [(good + bad)[i] for i in order]
    out = check_batch(payloads, 3)
    assert {order[row] for row in out.rows.tolist()} == set(range(300))


def test_negative_feature_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="n_features"):
        decode_input_events([], WRITERS, -1)


# ------------------------------------------------------------------------------------------ encode


def fastavro_predictions(
    header: bytes,
    ids: Sequence[bytes],
    times: npt.NDArray[np.int64],
    name: str,
    version: str,
    scores: npt.NDArray[np.float32],
    millis: npt.NDArray[np.float32],
) -> list[bytes]:
    out = []
    for i, event_id in enumerate(ids):
        record = {
            "event_id": event_id.decode(),
            "event_time": int(times[i]),
            "model_name": name,
            "model_version": version,
            "scores": scores[i].tolist(),
            "predicted_class": int(np.argmax(scores[i])),
            "processing_ms": float(millis[i]),
        }
        body = io.BytesIO()
        schemaless_writer(body, PREDICTION.parsed, record)
        out.append(header + body.getvalue())
    return out


def random_scores(rng: np.random.Generator, rows: int, classes: int) -> npt.NDArray[np.float32]:
    kind = rng.integers(4)
    if kind == 0:  # many ties
        return rng.integers(0, 3, (rows, classes)).astype(np.float32)
    scores = rng.random((rows, classes)).astype(np.float32)
    if kind == 1:
        specials = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45], dtype=np.float32)
        mask = rng.random((rows, classes)) < 0.2
        scores[mask] = rng.choice(specials, int(mask.sum()))
    if kind == 2:
        signalling = np.array([0x7F800001, 0xFFA00000, 0x7FC00001], dtype=np.uint32).view(np.float32)
        mask = rng.random((rows, classes)) < 0.2
        scores[mask] = rng.choice(signalling, int(mask.sum()))
    return scores


HEADERS = [SINGLE_OBJECT_MARKER + PREDICTION.fingerprint, CONFLUENT_MAGIC + (7).to_bytes(4, "big"), b""]


@pytest.mark.parametrize("seed", range(40))
def test_predictions_match_fastavro_byte_for_byte(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    rows = int(rng.choice([0, 1, 2, 7, 100, 300]))
    classes = int(rng.choice([1, 2, 3, 10, 64, 65, 130]))
    uniform = pyrng.random() < 0.3
    ids = [(f"3f9a2c-{i:09d}" if uniform else random_id(pyrng)).encode() for i in range(rows)]
    times = np.array([random_time(pyrng) for _ in range(rows)], dtype=np.int64)
    scores = random_scores(rng, rows, classes)
    if classes > 64 and rows:
        scores[: rows // 2, 64:] += 10  # a predicted class of 64 or more needs a two-byte varint
    millis = random_scores(rng, rows, 1).reshape(-1)
    name, version = pyrng.choice([("m", "1"), ("", ""), ("agrawal-mlp", "2024-06-01"), ("é" * 100, "v" * 70)])
    header = HEADERS[seed % len(HEADERS)]
    expected = fastavro_predictions(header, ids, times, name, version, scores, millis)
    assert encode_predictions(header, ids, times, name, version, scores, millis) == expected


def test_predictions_decode_back() -> None:
    scores = np.array([[0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    header = SINGLE_OBJECT_MARKER + PREDICTION.fingerprint
    values = encode_predictions(
        header, [b"a", b"bb"], np.array([-5, 7]), "m", "1", scores, np.array([1.5, 0.0], dtype=np.float32)
    )
    records = [DECODER.decode(value) for value in values]
    assert [r["predicted_class"] for r in records] == [1, 0]  # a tie picks the first
    assert [r["event_time"] for r in records] == [-5, 7]
    assert records[1]["scores"] == [0.5, 0.5]


def test_predictions_with_empty_ids() -> None:
    scores = np.ones((3, 1), dtype=np.float32)
    args = (b"", [b""] * 3, np.arange(3, dtype=np.int64), "m", "1", scores, scores[:, 0])
    assert encode_predictions(*args) == fastavro_predictions(*args)


def test_zero_predictions() -> None:
    empty = np.zeros((0, 2), dtype=np.float32)
    assert encode_predictions(b"", [], np.zeros(0, dtype=np.int64), "m", "1", empty, empty[:, 0]) == []


@pytest.mark.parametrize(
    ("scores", "times", "millis"),
    [
        (np.zeros((2, 0)), [1, 2], [0.0, 0.0]),
        (np.zeros((3, 2)), [1, 2], [0.0, 0.0]),
        (np.zeros(2), [1, 2], [0.0, 0.0]),
        (np.zeros((2, 2)), [1], [0.0, 0.0]),
        (np.zeros((2, 2)), [1, 2], [0.0]),
    ],
)
def test_inconsistent_columns_are_an_error(scores: Any, times: Any, millis: Any) -> None:
    with pytest.raises(ValueError, match="must have"):
        encode_predictions(b"", [b"a", b"b"], np.array(times), "m", "1", scores, np.array(millis))


def test_predictions_round_trip_the_decoded_inputs() -> None:
    rng = random.Random(5)
    payloads = [random_event(rng, 4) for _ in range(200)]
    batch = check_batch(payloads, 4)
    scores = np.abs(batch.features[:, :3])
    millis = np.full(len(batch.rows), 0.25, dtype=np.float32)
    header = SINGLE_OBJECT_MARKER + PREDICTION.fingerprint
    args = (header, batch.event_ids, batch.event_times, "m", "1", scores, millis)
    assert encode_predictions(*args) == fastavro_predictions(*args)
