"""The processor's pure core, batching and features: no broker needed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from driftline.models import ModelConfig, TorchPredictor, build_module, load_artifact, save_artifact
from driftline.models.architectures import ARCHITECTURES
from driftline.schemas import AvroDecoder, AvroEncoder, AvroSchema, builtin_store, load_schema
from driftline.streams.batching import MicroBatcher
from driftline.streams.features import FeatureExtractor
from driftline.streams.processor import BatchProcessor
from driftline.testing import FakeMessage, ListSource, ManualClock

STORE = builtin_store()
EVENTS = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
CONFIG = ModelConfig(
    name="m", version="7", architecture="logistic", features=["a", "b", "c"], classes=["n", "y"]
)


def event(i: int, features: list[float]) -> FakeMessage:
    value = EVENTS.encode({"event_id": f"e{i}", "event_time": 1000 + i, "features": features, "source": None})
    return FakeMessage(value, f"e{i}".encode(), _offset=i)


def core() -> BatchProcessor:
    return BatchProcessor(
        AvroDecoder(STORE),
        TorchPredictor(CONFIG, build_module(CONFIG), "cpu"),
        AvroEncoder.single_object(STORE.latest("io.driftline.Prediction")),
        clock=ManualClock(),
    )


def test_every_event_lands_in_exactly_one_output() -> None:
    rng = np.random.default_rng(0)
    messages = []
    for i in range(300):
        kind = i % 5
        if kind == 0:
            messages.append(FakeMessage(b"\xc3\x01broken", _offset=i))
        elif kind == 1:
            messages.append(event(i, [math.inf, 1.0, 2.0]))
        elif kind == 2:
            messages.append(event(i, [1.0]))
        else:
            messages.append(event(i, rng.normal(size=3).tolist()))
    result = core().process(messages, arrivals=[0.0] * len(messages))
    dead = sorted(d.message.offset() or 0 for d in result.dead_letters)
    decoder = AvroDecoder(STORE)
    predicted = sorted(int(decoder.decode(v)["event_id"][1:]) for v in result.values)
    assert sorted(dead + predicted) == list(range(300))
    assert {d.reason for d in result.dead_letters} == {"undecodable", "non-finite", "wrong-length"}
    assert len(result.event_times_ms) == len(result.values) == len(result.keys)


def test_predictions_carry_identity_scores_and_the_input_key() -> None:
    result = core().process([event(1, [0.1, 0.2, 0.3])], arrivals=[0.0])
    (value,) = result.values
    p = AvroDecoder(STORE).decode(value)
    assert result.keys == [b"e1"]
    assert (p["event_id"], p["event_time"], p["model_name"], p["model_version"]) == ("e1", 1001, "m", "7")
    assert p["predicted_class"] == int(np.argmax(p["scores"]))
    assert math.isclose(sum(p["scores"]), 1.0, rel_tol=1e-5)


def test_user_records_with_named_fields_are_accepted() -> None:
    user = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "Order",
            "namespace": "shop",
            "fields": [
                {"name": "a", "type": "double"},
                {"name": "b", "type": "int"},
                {"name": "c", "type": "float"},
                {"name": "note", "type": "string"},
            ],
        }
    )
    store = builtin_store()
    store.add(user)
    proc = BatchProcessor(
        AvroDecoder(store),
        TorchPredictor(CONFIG, build_module(CONFIG), "cpu"),
        AvroEncoder.single_object(store.latest("io.driftline.Prediction")),
    )
    value = AvroEncoder.single_object(user).encode({"a": 1.0, "b": 2, "c": 3.0, "note": "x"})
    result = proc.process(
        [FakeMessage(value, _topic="orders", _partition=3, _offset=9, _timestamp_ms=77)], [0.0]
    )
    p = AvroDecoder(store).decode(result.values[0])
    assert (p["event_id"], p["event_time"]) == ("orders/3/9", 77)  # no id/time fields: Kafka's own


def test_feature_extractor_reports_each_rejection() -> None:
    fx = FeatureExtractor.numeric(["a", "b"])
    out = fx.extract([{"a": "x", "b": 1}, {"features": [1.0, math.nan]}, {"features": [1.0, 2.0]}])
    assert out.numeric.tolist() == [[1.0, 2.0]]
    assert {i: r for i, (r, _) in out.rejected.items()} == {0: "bad-type", 1: "non-finite"}


def test_batches_close_on_size() -> None:
    clock = ManualClock()
    batcher = MicroBatcher(max_size=4, max_wait=1.0, clock=clock)
    assert len(batcher.collect(ListSource(list(range(10)), clock))) == 4


def test_batches_close_on_the_latency_budget() -> None:
    clock = ManualClock()

    class Trickle:
        """A message every 30 ms; like a real consumer, a call returns within its timeout."""

        def consume(self, num_messages: int, timeout: float) -> list[int]:
            if timeout < 0.03:
                clock.advance(timeout)
                return []
            clock.advance(0.03)
            return [1]

    batch = MicroBatcher(max_size=1000, max_wait=0.1, clock=clock).collect(Trickle())
    assert len(batch) == 4  # first at t=0.03, then 0.06, 0.09, 0.12: the 0.1 s budget is spent
    assert batch.arrivals == pytest.approx([0.03, 0.06, 0.09, 0.12])


def test_an_idle_source_gives_an_empty_batch() -> None:
    clock = ManualClock()
    assert len(MicroBatcher(10, 0.1, clock).collect(ListSource([], clock), idle_timeout=0.5)) == 0
    assert clock() == 0.5


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_architecture_round_trips_through_an_artifact(architecture: str, tmp_path: Path) -> None:
    """Contract over every registered architecture: same outputs after save/load, probabilities out."""
    config = CONFIG.model_copy(update={"architecture": architecture})
    module = build_module(config)
    save_artifact(tmp_path, config, module)
    loaded_config, loaded = load_artifact(tmp_path)
    assert loaded_config == config
    x = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)
    before = TorchPredictor(config, module, "cpu").predict_batch(x)
    after = TorchPredictor(loaded_config, loaded, "cpu").predict_batch(x)
    np.testing.assert_allclose(before, after, rtol=1e-6)
    np.testing.assert_allclose(after.sum(axis=1), 1.0, rtol=1e-5)
    assert TorchPredictor(config, module, "cpu").predict_batch(x[:0]).shape == (0, 2)


def test_artifacts_never_need_pickle(tmp_path: Path) -> None:
    save_artifact(tmp_path, CONFIG, build_module(CONFIG))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_the_latency_budget_starts_at_the_first_event_not_at_the_call() -> None:
    """A source that holds back a full batch must not hold back the first event past the budget."""
    clock = ManualClock()
    source = ListSource([1, 2, 3], clock)  # far fewer than max_size are available
    batch = MicroBatcher(max_size=1000, max_wait=0.02, clock=clock).collect(source, idle_timeout=5.0)
    assert len(batch) == 3
    assert clock() == pytest.approx(0.02)  # events waiting since t=0 leave at the budget, not at idle_timeout


def test_fast_and_general_paths_mix_in_input_order() -> None:
    """InputEvents v1/v2 (columnar path), user records and bad events (fastavro path), interleaved,
    come out in input order."""
    user = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "Reading",
            "namespace": "plant",
            "fields": [
                {"name": "event_id", "type": "string"},
                {"name": "event_time", "type": "long"},
                {"name": "a", "type": "float"},
                {"name": "b", "type": "float"},
                {"name": "c", "type": "double"},
            ],
        }
    )
    store = builtin_store()
    store.add(user)
    v1, named = AvroEncoder.single_object(load_schema("input_event.v1.avsc")), AvroEncoder.single_object(user)
    messages = []
    for i in range(80):
        record = {"event_id": f"e{i}", "event_time": 1000 + i}
        if i % 4 == 0:
            messages.append(event(i, [float(i)] * 3))
            continue
        if i % 4 == 1:
            value = v1.encode({**record, "features": [float(i)] * 3})
        elif i % 4 == 2:
            value = named.encode({**record, "a": 1.0, "b": 2.0, "c": 3.0})
        else:
            value = b"\x00\x00\x00\x00\x09confluent-without-registry"
        messages.append(FakeMessage(value, f"e{i}".encode(), _offset=i))
    proc = BatchProcessor(
        AvroDecoder(store),
        TorchPredictor(CONFIG, build_module(CONFIG), "cpu"),
        AvroEncoder.single_object(store.latest("io.driftline.Prediction")),
    )
    result = proc.process(messages, arrivals=[0.0] * 80)
    ids = [AvroDecoder(store).decode(v)["event_id"] for v in result.values]
    assert ids == [f"e{i}" for i in range(80) if i % 4 != 3]
    assert result.keys == [i.encode() for i in ids]
    assert result.event_times_ms.tolist() == [1000 + i for i in range(80) if i % 4 != 3]
    assert [d.message.offset() for d in result.dead_letters] == [i for i in range(80) if i % 4 == 3]


def test_a_model_output_that_is_not_finite_is_dead_lettered_never_published() -> None:
    """Finite inputs of 3e38 overflow a logistic model's logits: the softmax is NaN. Those events are
    dead-lettered (naming model and version); the others are predicted as usual, the shadow too."""
    module = build_module(CONFIG)
    for weight in module.parameters():
        weight.data.fill_(10.0)  # 10 * 3e38 overflows float32: every logit is infinite
    processor = core()
    processor.predictor = TorchPredictor(CONFIG, module, "cpu")
    processor.shadow = TorchPredictor(CONFIG.model_copy(update={"version": "8"}), module, "cpu")
    messages = [event(0, [0.1, 0.2, 0.3]), event(1, [3e38, 3e38, 3e38]), event(2, [0.3, 0.2, 0.1])]
    result = processor.process(messages, arrivals=[0.0] * 3)
    decoder = AvroDecoder(STORE)
    assert [decoder.decode(v)["event_id"] for v in result.values] == ["e0", "e2"]
    assert [(d.message.offset(), d.reason) for d in result.dead_letters] == [(1, "non-finite-output")]
    assert "model m version 7" in result.dead_letters[0].detail
    assert all(np.isfinite(decoder.decode(v)["scores"]).all() for v in result.values)
    assert [decoder.decode(v)["model_version"] for v in result.shadow_values] == ["8", "8"]
    assert result.shadow_keys == [b"e0", b"e2"]
