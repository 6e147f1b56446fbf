"""Monitoring for every task and field kind (issue 11): data quality per field (nulls seen before
imputation, values out of the reference range, unseen categories), categorical drift, and a regression
model's error rise. Pure tests first (no broker), then the running monitor on a real broker: a
categorical field whose categories shift raises a data alert, a field that turns null raises a
data-quality alert, and a regression stream whose error rises raises a concept alert."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import driftline
from driftline.config import Settings
from driftline.models.spec import Classification, InputField, ModelSpec, Regression
from driftline.monitoring.monitor import DriftMonitor
from driftline.monitoring.profile import FieldReference, ReferenceProfile
from driftline.monitoring.quality import FieldRates
from driftline.monitoring.regression import ErrorRise
from driftline.schemas import AvroDecoder, AvroEncoder, builtin_store
from driftline.streams.features import FeatureExtractor
from driftline.streams.records import decode_rows
from driftline.testing import FakeMessage

STORE = builtin_store()
ALERTS = AvroEncoder.single_object(STORE.latest("io.driftline.DriftAlert"))
COUNTRIES = ("DE", "FR", "IT")
SPEC = ModelSpec(
    inputs=[
        InputField(name="amount", mean=50.0, scale=30.0),
        InputField(name="tip", nullable=True, impute=0.0),
        InputField(name="country", kind="categorical", categories=COUNTRIES),
    ],
    task=Classification(classes=("ok", "fraud")),
)
SHARES = (0.5, 0.3, 0.15, 0.05)
"""DE, FR, IT, and an unseen country (ES)."""


def payments(
    n: int, seed: int, *, tip_null: float = 0.2, shares: tuple[float, ...] = SHARES
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    countries = rng.choice([*COUNTRIES, "ES"], n, p=shares)
    return [
        {
            "event_id": f"e{seed}-{i}",
            "amount": float(rng.gamma(2.0, 25.0)),
            "tip": None if rng.random() < tip_null else float(rng.random() * 5),
            "country": str(countries[i]),
        }
        for i in range(n)
    ]


def profile_of(rows: list[dict[str, Any]]) -> ReferenceProfile:
    """What ``driftline.export`` stores for SPEC: the numeric features' profile plus field references."""
    encoded = SPEC.encode(rows)
    assert encoded.nulls is not None
    rng = np.random.default_rng(0)
    profile = ReferenceProfile.from_training(encoded.numeric, rng.random(len(rows)), ["amount", "tip"])
    fields = (
        FieldReference.of_values("amount", "numeric", encoded.nulls[:, 0]),
        FieldReference.of_values("tip", "numeric", encoded.nulls[:, 1]),
        FieldReference.of_codes("country", encoded.codes[:, 0], encoded.nulls[:, 2], len(COUNTRIES)),
    )
    return ReferenceProfile(**{**vars(profile), "fields": fields})


def feed(monitor: DriftMonitor, rows: list[dict[str, Any]], now_ms: int, batch: int = 250) -> None:
    for start in range(0, len(rows), batch):
        encoded = SPEC.encode(rows[start : start + batch])
        monitor.observe_inputs(encoded.numeric, now_ms)
        monitor.observe_fields(encoded.numeric, encoded.codes, encoded.nulls, now_ms)


def alerts_of(monitor: DriftMonitor) -> list[dict[str, Any]]:
    out = [r for what, r in monitor.take_outputs() if what == "alert"]
    for record in out:
        ALERTS.encode(record)  # every alert fits the schema
    return out


def live(profile: ReferenceProfile | None, spec: ModelSpec = SPEC) -> DriftMonitor:
    monitor = DriftMonitor("pay")
    monitor.set_version("1", profile, now_ms=0, spec=spec)
    pos = {"events": {0: (0, 1)}}
    monitor.advance(pos, pos)
    return monitor


# -- the spec sees nulls before imputing them --------------------------------------------------------


def test_encode_nulls_follow_the_kept_rows_in_spec_order() -> None:
    spec = ModelSpec(
        inputs=[
            *SPEC.inputs[:2],
            InputField(name="country", kind="categorical", categories=COUNTRIES, nullable=True),
        ],
        task=SPEC.task,
    )
    out = spec.encode(
        [
            {"amount": 1.0, "tip": None, "country": None},
            {"amount": "x", "tip": 1.0, "country": "DE"},
            {"amount": 2.0, "tip": 3.0, "country": "ES"},
        ]
    )
    assert out.kept.tolist() == [0, 2]
    assert out.numeric.tolist() == [[1.0, 0.0], [2.0, 3.0]]  # imputed as before
    assert out.codes.tolist() == [[0], [0]]
    assert out.nulls is not None
    assert out.nulls.tolist() == [[False, True, True], [False, False, False]]


# -- the reference profile keeps field references, and old profiles load ----------------------------------


def test_field_references_round_trip_and_profiles_without_them_load_as_before() -> None:
    profile = profile_of(payments(600, seed=1))
    again = ReferenceProfile.from_json(profile.to_json())
    assert again == profile
    country = again.field("country")
    assert country is not None
    assert len(country.codes) == 4
    assert country.unseen_rate == pytest.approx(0.05, abs=0.03)
    tip = again.field("tip")
    assert tip is not None
    assert tip.null_rate == pytest.approx(0.2, abs=0.05)
    plain = ReferenceProfile(**{**vars(profile), "fields": ()})
    old = json.loads(plain.to_json())
    assert "fields" not in old  # what monitors before issue 11 read
    assert ReferenceProfile.from_json(json.dumps(old)) == plain


# -- the rate detector: few false alarms, one alert until it clears -------------------------------------


@pytest.mark.parametrize("reference", [0.0, 0.02, 0.3, 0.9])
def test_a_field_at_its_reference_rate_raises_nothing(reference: float) -> None:
    rng = np.random.default_rng(4)
    rates = FieldRates(["f"], [reference])
    for _ in range(200):
        assert rates.update_batch(rng.random((500, 1)) < reference) is None
    assert not rates.raised.any()


def test_a_clear_rise_raises_its_field_once_and_it_clears_when_the_rate_comes_back() -> None:
    rng = np.random.default_rng(5)
    rates = FieldRates(["a", "b"], [0.1, 0.1], window=1000, min_events=200)
    rates.update_batch(rng.random((2000, 2)) < 0.1)
    raised = [
        rates.update_batch(np.column_stack([rng.random(100) < 0.5, rng.random(100) < 0.1])) for _ in range(10)
    ]
    assert sum(r is not None for r in raised) == 1  # raised once, then held
    assert rates.raised.tolist() == [True, False]
    rates.update_batch(rng.random((1000, 2)) < 0.1)
    assert rates.raised.tolist() == [False, False]


# -- the monitor: per-field alerts --------------------------------------------------------------------


def test_a_field_that_turns_null_raises_one_data_quality_alert_resolved_when_it_comes_back() -> None:
    monitor = live(profile_of(payments(600, seed=1)))
    feed(monitor, payments(2000, seed=2), now_ms=1)
    assert alerts_of(monitor) == []  # at the reference rates
    feed(monitor, payments(1500, seed=3, tip_null=1.0), now_ms=2)
    opened = alerts_of(monitor)
    assert [(a["status"], a["kind"], a["field"], a["issue"]) for a in opened] == [
        ("OPEN", "DATA_QUALITY", "tip", "null")
    ]
    assert opened[0]["features"] == ["tip"]
    assert "tip" in opened[0]["alert_id"]
    assert opened[0]["statistic"] > opened[0]["threshold"]
    assert [w for w, _ in monitor.take_outputs()] == []  # no retraining for a broken pipeline
    assert {f: r for i, f, r in monitor.field_gauges() if i == "null"}["tip"] == 1.0
    state = json.loads(json.dumps(monitor.state()))
    restored = DriftMonitor("pay")
    restored.restore(state, monitor.detectors.profile, SPEC)
    assert restored.state() == monitor.state()
    feed(restored, payments(2000, seed=4), now_ms=3)
    resolved = alerts_of(restored)
    assert [(a["status"], a["field"], a["alert_id"]) for a in resolved] == [
        ("RESOLVED", "tip", opened[0]["alert_id"])
    ]


def test_values_out_of_range_and_unseen_categories_raise_their_own_alerts() -> None:
    monitor = live(profile_of(payments(600, seed=1)))
    rows = payments(1500, seed=6, shares=(0.3, 0.2, 0.1, 0.4))  # 40% of countries unseen
    for row in rows:
        row["amount"] = 10_000.0
    feed(monitor, rows, now_ms=1)
    got = {(a["kind"], a["field"], a["issue"]) for a in alerts_of(monitor) if a["status"] == "OPEN"}
    assert ("DATA_QUALITY", "amount", "out-of-range") in got
    assert ("DATA_QUALITY", "country", "unseen-category") in got
    gauges = {(i, f): r for i, f, r in monitor.field_gauges()}
    assert gauges[("out-of-range", "amount")] == 1.0
    assert gauges[("unseen-category", "country")] == pytest.approx(0.4, abs=0.06)


def test_a_categorical_field_whose_categories_shift_raises_a_data_alert_naming_it() -> None:
    monitor = live(profile_of(payments(600, seed=1)))
    feed(monitor, payments(3000, seed=7), now_ms=1)
    assert alerts_of(monitor) == []
    feed(monitor, payments(2000, seed=8, shares=(0.1, 0.1, 0.75, 0.05)), now_ms=2)
    opened = [a for a in alerts_of(monitor) if a["status"] == "OPEN"]
    assert [(a["kind"], a["detector"], a["field"], a["issue"]) for a in opened] == [
        ("DATA", "CategoryDrift", "country", "category-shift")
    ]
    assert opened[0]["features"] == ["country"]


def test_without_a_profile_nulls_are_held_against_zero() -> None:
    monitor = live(None)
    feed(monitor, payments(300, seed=9, tip_null=0.0), now_ms=1)
    assert alerts_of(monitor) == []
    feed(monitor, payments(400, seed=9, tip_null=0.5), now_ms=2)
    assert [(a["field"], a["issue"]) for a in alerts_of(monitor)] == [("tip", "null")]


# -- regression: the error rise --------------------------------------------------------------------------

ETA = ModelSpec(inputs=[InputField(name="distance_km")], task=Regression(target="minutes"))


def test_a_regression_models_error_rise_raises_a_concept_alert() -> None:
    monitor = live(None, ETA)
    rng = np.random.default_rng(10)
    for chunk in np.array_split(np.abs(rng.normal(0, 2.0, 6000)), 12):
        monitor.observe_abs_errors(chunk, ["1"] * len(chunk), now_ms=1)
    assert alerts_of(monitor) == []
    monitor.observe_abs_errors(np.abs(rng.normal(0, 5.0, 500)), ["1"] * 500, now_ms=2)
    opened = alerts_of(monitor)
    assert [(a["kind"], a["detector"], a["severity"]) for a in opened] == [
        ("CONCEPT", "ErrorRise", "CRITICAL")
    ]
    classification = live(None)
    classification.observe_abs_errors(np.full(10, 1e6), ["1"] * 10, now_ms=1)  # not a regression model
    assert classification.detectors.concept.name == "BernoulliGLR"


def test_error_rise_uses_a_given_reference_mae() -> None:
    det = ErrorRise(reference_mae=1.0)
    assert det.mae == 1.0
    assert det.update_batch(np.full(100, 3.0)) is not None


# -- the service's null bookkeeping ----------------------------------------------------------------------


def test_the_record_path_says_which_values_were_null_in_row_order() -> None:
    """JSON records (nulls possible) and InputEvent arrays (never null) in one batch: each row's nulls
    line up with its row, whatever path decoded it."""
    spec = ModelSpec(
        inputs=[InputField(name="a"), InputField(name="b", nullable=True, impute=0.0)],
        task=Classification(classes=("n", "y")),
    )
    array = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent")).encode(
        {"event_id": "x", "event_time": 1, "features": [1.0, 2.0], "source": None}
    )
    messages = [
        FakeMessage(json.dumps({"event_id": "j0", "a": 1.0, "b": None}).encode()),
        FakeMessage(array, _offset=1),
        FakeMessage(json.dumps({"event_id": "j2", "a": 2.0, "b": 3.0}).encode(), _offset=2),
        FakeMessage(json.dumps({"event_id": "j3", "a": 3.0, "b": None}).encode(), _offset=3),
    ]
    rows, dead = decode_rows(messages, AvroDecoder(STORE), FeatureExtractor(spec))
    assert dead == []
    assert rows.nulls is not None
    assert rows.rows.tolist() == [0, 1, 2, 3]
    assert rows.nulls.tolist() == [[False, True], [False, False], [False, False], [False, True]]
    assert rows.take(np.array([3])).nulls.tolist() == [[False, True]]  # type: ignore[union-attr]


# -- the running monitor on a broker ---------------------------------------------------------------------


def _fraud_module() -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.country = nn.Embedding(len(COUNTRIES) + 1, 2)
            self.out = nn.Linear(2 + 2, 2)

        def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.out(torch.cat([numeric, self.country(categorical[:, 0])], dim=1))
            return out

    torch.manual_seed(0)
    return Net()


def _wait_for_alerts(settings: Settings, want: int, timeout: float) -> list[dict[str, Any]]:
    from tests.helpers import DECODER, read_topic

    return [
        DECODER.decode(m.value()) for m in read_topic(settings, settings.topics.drift_alerts, want, timeout)
    ]


@pytest.mark.kafka
def test_a_categorical_shift_raises_a_data_alert_and_a_null_field_a_data_quality_alert(
    registry: Settings, tmp_path: Path, keys: Path
) -> None:
    from driftline.models import control
    from driftline.services import MONITOR_READY, service

    spec = SPEC.model_copy(update={"event_id": "event_id"})
    artifact = driftline.export(
        _fraud_module(),
        spec,
        payments(400, seed=1),
        tmp_path / "pay-1",
        name=registry.model_name,
        version="1",
    )
    profile = ReferenceProfile.from_json((artifact / "reference_profile.json").read_text())
    assert profile.field("tip").null_rate > 0.1  # type: ignore[union-attr]
    control.publish_as(registry, artifact, (keys / "signing.key").read_bytes(), "LIVE")
    with (
        driftline.Client(registry.model_name, settings=registry) as client,
        service(registry, tmp_path / "monitor.log", "monitor", ready=MONITOR_READY),
    ):
        client.send(payments(1500, seed=2, tip_null=1.0, shares=(0.05, 0.05, 0.85, 0.05)))
        alerts = _wait_for_alerts(registry, 2, timeout=90)
    opened = {(a["kind"], a["field"], a["issue"]) for a in alerts if a["status"] == "OPEN"}
    assert ("DATA", "country", "category-shift") in opened
    assert ("DATA_QUALITY", "tip", "null") in opened


@pytest.mark.kafka
def test_a_regression_stream_whose_error_rises_raises_a_concept_alert(
    registry: Settings, tmp_path: Path, keys: Path
) -> None:
    from torch import nn

    from driftline.models import control
    from driftline.services import MONITOR_READY, service
    from driftline.streams import kafka

    spec = ModelSpec(inputs=[InputField(name="distance_km")], task=Regression(target="minutes"))
    rows = [{"distance_km": float(d)} for d in range(40)]
    artifact = driftline.export(
        nn.Linear(1, 1), spec, rows, tmp_path / "eta-1", name=registry.model_name, version="1"
    )
    control.publish_as(registry, artifact, (keys / "signing.key").read_bytes(), "LIVE")
    predictions = AvroEncoder.single_object(STORE.latest("io.driftline.Prediction"))
    rng = np.random.default_rng(11)
    n, rise_at = 3000, 2000
    ids = [f"trip-{i}" for i in range(n)]
    values = rng.uniform(10, 60, n)
    now = int(time.time() * 1000) + 1000  # after the version's creation: its errors count
    producer = kafka.producer(registry)
    for event_id, value in zip(ids, values, strict=True):
        record = {
            "event_id": event_id,
            "event_time": now,
            "model_name": registry.model_name,
            "model_version": "1",
            "scores": [],
            "predicted_class": -1,
            "processing_ms": 1.0,
            "predicted_label": None,
            "value": float(value),
        }
        kafka.produce(producer, registry.topics.predictions, predictions.encode(record), event_id.encode())
    assert producer.flush(60) == 0
    noise = np.where(np.arange(n) < rise_at, 2.0, 6.0) * rng.normal(size=n)
    with (
        driftline.Client(registry.model_name, settings=registry) as client,
        service(registry, tmp_path / "monitor.log", "monitor", ready=MONITOR_READY),
    ):
        client.send_labels(zip(ids, values + noise, strict=True), event_time_ms=now)
        alerts = _wait_for_alerts(registry, 1, timeout=90)
    assert [(a["kind"], a["detector"], a["status"]) for a in alerts] == [("CONCEPT", "ErrorRise", "OPEN")]
