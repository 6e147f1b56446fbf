"""The monitor's batch readers against fastavro: every row they accept decodes to fastavro's values;
every malformed row is left out (for the fastavro path), never misread."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.schemas.columnar_outputs import decode_labels, decode_predictions
from driftline.schemas.wire import AvroDecoder, AvroEncoder, builtin_store, load_schema

STORE = builtin_store()
PREDICTION = AvroEncoder.single_object(STORE.latest("io.driftline.Prediction"))
PREDICTION_V1 = AvroEncoder.single_object(load_schema("prediction.v1.avsc"))
WRITERS = {PREDICTION.schema.fingerprint: True, PREDICTION_V1.schema.fingerprint: False}
LABEL = AvroEncoder.single_object(STORE.latest("io.driftline.Label"))
FASTAVRO = AvroDecoder(STORE)
IDS = ["e", "évènement-ü", "x" * 200, "", "🙂 id"]


def predictions(rng: np.random.Generator, n: int, classes: int) -> list[bytes]:
    out = []
    for i in range(n):
        scores = rng.random(classes).astype(np.float32)
        record = {
            "event_id": f"{IDS[i % len(IDS)]}-{i}",
            "event_time": int(rng.integers(-(2**62), 2**62)),
            "model_name": "m",
            "model_version": str(int(rng.integers(0, 3))),
            "scores": scores.tolist(),
            "predicted_class": int(rng.integers(-(2**31), 2**31 - 1)),
            "processing_ms": float(rng.random()),
        }
        if i % 4 == 3:  # version 1 writers are still read
            out.append(PREDICTION_V1.encode(record))
            continue
        record["predicted_label"] = [None, f"class {IDS[i % len(IDS)]}"][i % 2]
        record["value"] = [None, float(rng.normal())][i % 3 == 0]
        out.append(PREDICTION.encode(record))
    return out


@pytest.mark.parametrize("classes", [1, 2, 5])
def test_accepted_predictions_match_fastavro(classes: int) -> None:
    payloads = predictions(np.random.default_rng(classes), 300, classes)
    out = decode_predictions(payloads, WRITERS, classes)
    assert out.rows.tolist() == list(range(300))
    for j, row in enumerate(out.rows.tolist()):
        expected = FASTAVRO.decode(payloads[row])
        assert out.event_ids[j] == expected["event_id"]
        assert out.event_times[j] == expected["event_time"]
        assert out.versions[j] == expected["model_version"]
        assert out.predicted[j] == expected["predicted_class"]
        assert out.scores[j].tolist() == pytest.approx(expected["scores"])


def test_malformed_predictions_are_left_out_never_misread() -> None:
    rng = np.random.default_rng(9)
    good = predictions(rng, 50, 2)
    bad = [
        b"",
        good[0][:-1],  # truncated
        good[1] + b"\x00",  # trailing byte
        b"\x00" + good[2][1:],  # not single-object
        good[3][:2] + bytes(8) + good[3][10:],  # unknown fingerprint
        predictions(rng, 1, 3)[0],  # three scores where two are expected
        good[4][:10] + b"\x03\xff" + good[4][12:],  # a broken id
        good[5][:-1] + b"\x04",  # a union branch that does not exist
        good[6][:-9] + b"\x02\x00",  # a value union cut short
    ]
    payloads = good + bad
    out = decode_predictions(payloads, WRITERS, 2)
    assert out.rows.tolist() == list(range(50))


def test_labels_match_fastavro_and_malformed_ones_are_left_out() -> None:
    rng = np.random.default_rng(4)
    records = [
        {
            "event_id": f"{IDS[i % len(IDS)]}{i}",
            "event_time": int(rng.integers(0, 2**40)),
            "label": int(rng.integers(-5, 5)),
        }
        for i in range(200)
    ]
    label_v1 = AvroEncoder.single_object(load_schema("label.v1.avsc"))
    payloads = [(LABEL if i % 2 else label_v1).encode(r) for i, r in enumerate(records)]
    payloads += [payloads[0][:-1], payloads[1] + b"\x01", b"\xc3\x01"]
    named = {"event_id": "n", "event_time": 1, "class_name": "yes", "target": None}
    valued = {"event_id": "t", "event_time": 1, "class_name": None, "target": 2.5}
    payloads += [LABEL.encode(named), LABEL.encode(valued)]  # for fastavro: truth beyond a class index
    writers = {LABEL.schema.fingerprint: True, label_v1.schema.fingerprint: False}
    out = decode_labels(payloads, writers)
    assert out.rows.tolist() == list(range(200))
    assert out.event_ids == [r["event_id"] for r in records]
    assert out.labels.tolist() == [r["label"] for r in records]
    assert out.event_times.tolist() == [r["event_time"] for r in records]
