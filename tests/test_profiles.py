"""Reference profiles of regression models: built by export, by the trainer and by `driftline models
profile` from labelled events on Kafka; read by the monitor, whose error-rise test takes its MAE."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import driftline
from driftline.cli import main
from driftline.config import Settings
from driftline.errors import ModelError
from driftline.models.control import PROFILE_FILE
from driftline.models.follower import encode_record
from driftline.models.signing import example_version, sign_version
from driftline.monitoring.build_profile import reference_profile
from driftline.monitoring.fields import FieldChecks
from driftline.monitoring.monitor import DriftMonitor, VersionDetectors
from driftline.monitoring.profile import ReferenceProfile, RegressionProfile, load_profile
from driftline.monitoring.regression import ErrorRise
from driftline.schemas import AvroEncoder, builtin_store
from driftline.services import topic_environment
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import generate
from driftline.testing import FakeCluster
from driftline.trainers.profiling import profile_from_topics
from driftline.trainers.recipe import TrainingData
from driftline.trainers.retrain import _profile
from tests.test_monitor_logic import INPUTS, PRIVATE, TOPICS, monitor

STORE = builtin_store()
EVENTS = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
LABELS = AvroEncoder.single_object(STORE.latest("io.driftline.Label"))
ETA = driftline.ModelSpec(
    inputs=[
        driftline.InputField(name="distance_km", unit="km"),
        driftline.InputField(name="stops", nullable=True, impute=0.0),
        driftline.InputField(name="zone", kind="categorical", categories=("north", "south")),
    ],
    task=driftline.Regression(target="minutes", unit="min"),
)


class Eta(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.numeric = nn.Linear(2, 1)
        self.zone = nn.Embedding(3, 1)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.numeric(numeric) + self.zone(categorical[:, 0])
        return out


def trips(n: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "distance_km": float(rng.uniform(1, 20)),
            "stops": None if i % 5 == 0 else float(rng.integers(0, 4)),
            "zone": "north" if i % 3 else "south",
        }
        for i in range(n)
    ]


def predicted(module: nn.Module, rows: list[dict[str, object]]) -> np.ndarray:
    encoded = ETA.encode(rows)
    inputs = ETA.model_inputs(encoded.numeric, encoded.codes)
    with torch.inference_mode():
        out = module(*(torch.from_numpy(inputs[name]) for name in ETA.tensor_names))
    return np.asarray(out.numpy()[:, 0], dtype=np.float64)


def regression_profile(n: int = 400, scale: float = 1.0, seed: int = 0) -> RegressionProfile:
    rng = np.random.default_rng(seed)
    values = rng.normal(20, 5, n)
    return RegressionProfile.from_training(values, values + rng.normal(0, scale, n))


def test_a_regression_profile_round_trips_and_says_its_task() -> None:
    profile = reference_profile(
        ETA,
        np.column_stack([np.linspace(1, 20, 64), np.zeros(64)]),
        np.tile([[1], [2]], (32, 1)),
        np.linspace(5, 50, 64)[:, None],
        targets=np.linspace(5, 50, 64) + 0.5,
    )
    assert isinstance(profile, RegressionProfile)
    assert profile.n == 64
    assert profile.mae == pytest.approx(0.5)
    assert profile.rmse == pytest.approx(0.5)
    assert [f.name for f in profile.fields] == ["distance_km", "stops", "zone"]
    assert profile.fields[2].codes == (0.0, 0.5, 0.5)
    text = profile.to_json()
    assert json.loads(text)["task"] == "regression"
    assert RegressionProfile.from_json(text) == profile
    assert load_profile(text) == profile
    with pytest.raises(ValueError, match="load_profile"):
        ReferenceProfile.from_json(text)
    with pytest.raises(ValueError, match="targets"):
        reference_profile(ETA, np.zeros((64, 2)), np.ones((64, 1)), np.zeros((64, 1)))


def test_classification_profiles_load_as_before() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 2))
    p1 = 1 / (1 + np.exp(-3 * x[:, 0]))
    profile = ReferenceProfile.from_training(x, p1, ["a", "b"], (rng.random(500) < p1).astype(np.int64))
    text = profile.to_json()
    assert text.startswith('{"version":1,"feature_names":["a","b"],')
    assert '"task"' not in text
    assert "fields" not in json.loads(text)  # written as older monitors read it
    loaded = load_profile(text)
    assert isinstance(loaded, ReferenceProfile)
    assert loaded == profile == ReferenceProfile.from_json(text)


def test_export_writes_a_regression_profile_when_given_the_targets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    module = Eta()
    rows = trips(60)
    targets = predicted(module, rows) + np.linspace(-2, 2, 60)
    with caplog.at_level(logging.WARNING, logger="driftline.api"):
        bare = driftline.export(module, ETA, rows, tmp_path / "bare", name="eta", version="1")
    assert not (bare / PROFILE_FILE).exists()
    assert "labels=" in caplog.text

    artifact = driftline.export(
        module, ETA, rows, tmp_path / "eta", name="eta", version="1", labels=targets.tolist()
    )
    profile = load_profile((artifact / PROFILE_FILE).read_text())
    assert isinstance(profile, RegressionProfile)
    assert profile.n == 60
    assert profile.mae == pytest.approx(float(np.abs(np.linspace(-2, 2, 60)).mean()), abs=1e-4)
    stops = profile.field("stops")
    assert stops is not None
    assert stops.null_rate == pytest.approx(12 / 60)
    zone = profile.field("zone")
    assert zone is not None
    assert zone.codes == pytest.approx((0.0, 40 / 60, 20 / 60))
    with pytest.raises(ModelError, match="59 labels for 60 sample rows"):
        driftline.export(module, ETA, rows, tmp_path / "x", name="eta", version="1", labels=[1.0] * 59)


def test_the_trainer_profiles_a_regression_candidate_on_its_held_out_rows() -> None:
    rng = np.random.default_rng(1)
    numeric = rng.uniform(0, 10, (80, 2)).astype(np.float32)
    codes = rng.integers(1, 3, (80, 1))
    targets = numeric[:, 0].astype(np.float64) * 3
    held_out = TrainingData(ETA, numeric, codes, targets, np.arange(80, dtype=np.int64))
    nulls = np.zeros((80, 3), dtype=np.bool_)
    nulls[:20, 1] = True  # a quarter of the held-out rows had no `stops`
    text = _profile(ETA, held_out, (targets + 1.0).astype(np.float32)[:, None], nulls)
    assert text is not None
    profile = load_profile(text)
    assert isinstance(profile, RegressionProfile)
    assert profile.n == 80
    assert profile.mae == pytest.approx(1.0)
    assert [f.null_rate for f in profile.fields] == [0.0, 0.25, 0.0]  # the monitor's null reference
    assert _profile(ETA, held_out.slice(0, 20), targets[:20, None].astype(np.float32), None) is None


def test_the_monitor_takes_the_reference_mae_from_the_profile() -> None:
    profile = regression_profile()
    detectors = VersionDetectors(profile, ETA)
    assert isinstance(detectors.concept.detector, ErrorRise)
    assert detectors.concept.detector.mae == profile.mae
    assert [c.name for c in detectors.label_free] == ["ValueDrift"]  # gauges on the predicted values
    assert VersionDetectors(None, ETA).concept.detector.mae is None


def _concept_alerts(profile: RegressionProfile | None, errors: np.ndarray) -> list[dict[str, object]]:
    monitor = DriftMonitor("eta")
    monitor.set_version("1", profile, now_ms=0, spec=ETA)
    for start in range(0, len(errors), 50):
        batch = errors[start : start + 50]
        monitor.observe_abs_errors(batch, ["1"] * len(batch), now_ms=start)
    return [r for kind, r in monitor.take_outputs() if kind == "alert" and r["kind"] == "CONCEPT"]


def test_a_drift_inside_the_first_500_errors_is_found_with_a_profile() -> None:
    rng = np.random.default_rng(5)
    profile = regression_profile(scale=1.0)
    errors = np.abs(np.concatenate([rng.normal(0, 1.0, 100), rng.normal(0, 3.0, 500)]))
    found = _concept_alerts(profile, errors)
    assert [a["status"] for a in found][:1] == ["OPEN"]
    assert found[0]["time"] == 100  # the first batch after the drift (batches of 50; time = its start)
    assert found[0]["detector"] == "ErrorRise"
    assert found[0]["severity"] == "CRITICAL"
    # without one, the first 500 errors (the drift among them) become the reference: nothing is found
    assert _concept_alerts(None, errors) == []


def test_a_checkpoint_restored_with_the_profile_keeps_its_reference() -> None:
    profile = regression_profile()
    monitor = DriftMonitor("eta")
    monitor.set_version("1", profile, now_ms=0, spec=ETA)
    monitor.observe_abs_errors(np.full(10, profile.mae), ["1"] * 10, now_ms=1)
    again = DriftMonitor("eta")
    again.restore(json.loads(json.dumps(monitor.state())), profile, ETA)
    assert again.detectors.concept.detector.mae == profile.mae
    assert again.feature_gauges() == []


def test_field_checks_read_a_regression_profiles_fields() -> None:
    numeric = np.column_stack([np.arange(64.0), np.tile([0.0, 3.0], 32)])  # `stops` 0 where imputed
    profile = reference_profile(
        ETA,
        numeric,
        np.tile([[1], [2]], (32, 1)),
        np.arange(64.0)[:, None],
        targets=np.arange(64.0),
        nulls=np.tile([[False, True, False], [False, False, False]], (32, 1)),
    )
    checks = FieldChecks.build(ETA, profile)
    (_, nulls), *_ = checks.rates
    assert list(nulls.reference) == [0.0, 0.5, 0.0]
    assert checks.categories is not None
    assert checks.categories.names == ("zone",)
    # each numeric field's range over its values that were not null (the imputed 0s left out)
    assert (checks.ranged, checks.low, checks.high) == ([0, 1], [0.0, 3.0], [63.0, 3.0])
    assert [issue for issue, _ in checks.rates] == ["null", "out-of-range", "unseen-category"]
    out = checks.flags(np.array([[70.0, 3.0], [10.0, 3.0]]), np.ones((2, 1), np.int64), None)[1]
    assert out.tolist() == [[True, False], [False, False]]


def test_the_monitor_service_reads_a_regression_profile_from_the_registry() -> None:
    profile = regression_profile()
    live = example_version(
        model_name="m",
        version="1",
        status="LIVE",
        features=["distance_km", "stops"],
        spec=ETA.model_dump_json(),
        reference_profile=profile.to_json(),
    )
    cluster = FakeCluster(dict.fromkeys(INPUTS, 2))
    cluster.append(TOPICS.model_versions, encode_record(sign_version(live, PRIVATE)))
    service = monitor(cluster)
    service.run(lambda: True)
    assert service.monitor.version == "1"
    assert service.monitor.detectors.profile == profile
    assert service.monitor.detectors.concept.detector.mae == profile.mae


@pytest.mark.kafka
def test_models_profile_builds_a_regression_profile_from_labelled_events(
    settings: Settings, tmp_path: Path
) -> None:
    torch.manual_seed(2)
    module = Eta()
    rows = trips(120, seed=4)
    artifact = driftline.export(module, ETA, rows[:40], tmp_path / "eta", name="eta", version="1")
    assert not (artifact / PROFILE_FILE).exists()
    cli = ["-b", str(settings.bootstrap_servers), "models", "profile", str(artifact), "--timeout", "30"]
    env = topic_environment(settings)

    with driftline.Client(artifact, settings=settings) as client:
        ids = client.send(rows)
        refused = CliRunner().invoke(main, cli, env=env)
        assert refused.exit_code == 1, refused.output
        assert "only 0 labelled rows" in refused.output
        assert "32 needed" in refused.output
        assert "120 no label" in refused.output
        offsets = np.linspace(0.5, 1.5, 100)  # labels for 100 of the 120 events, each off by a known amount
        values = predicted(module, rows)
        client.send_labels((i, float(v + d)) for i, v, d in zip(ids, values, offsets, strict=False))

    result = CliRunner().invoke(main, [*cli, "--rows", "500"], env=env)
    assert result.exit_code == 0, result.output
    assert "from 100 labelled rows; not used: 20 no label" in result.output
    assert f"driftline models publish {artifact}" in result.output
    profile = load_profile((artifact / PROFILE_FILE).read_text())
    assert isinstance(profile, RegressionProfile)
    assert profile.n == 100
    assert profile.mae == pytest.approx(float(offsets.mean()), abs=1e-3)
    assert f"MAE {profile.mae:.4g}" in result.output
    assert [f.name for f in profile.fields] == ["distance_km", "stops", "zone"]


@pytest.mark.kafka
def test_a_built_in_classifier_is_profiled_from_the_last_labelled_events(
    settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    artifact = Path(shutil.copytree(model_dir, tmp_path / "model"))
    produce_stream(settings, generate("agrawal", 300, seed=9), EVENTS, LABELS, run_id="p")
    built = profile_from_topics(settings, artifact, 200, from_end=True, timeout=30)
    profile = load_profile((artifact / PROFILE_FILE).read_text())
    assert profile == built.profile
    assert isinstance(profile, ReferenceProfile)
    assert built.rows == profile.n == 200
    assert profile.fields == ()  # a built-in architecture has no spec, so no field references
    assert profile.reference_error is not None


def test_a_regression_models_values_are_held_against_their_reference_without_labels() -> None:
    rng = np.random.default_rng(8)
    targets = rng.normal(50, 10, 2000)
    profile = RegressionProfile.from_training(targets + rng.normal(0, 2, 2000), targets)
    spec = driftline.ModelSpec(inputs=[driftline.InputField(name="x")], task=driftline.Regression(target="y"))

    def statistic(values: np.ndarray) -> float:
        monitor = DriftMonitor("m")
        monitor.set_version("1", profile, now_ms=0, spec=spec)
        monitor.observe_values(values, ["1"] * len(values), now_ms=1)
        assert monitor.take_outputs() == []  # gauges only: never an alert
        [(kind, _, value, threshold)] = [g for g in monitor.gauges() if g[1] == "ValueDrift"]
        assert kind == "PREDICTION"
        return value / threshold

    assert statistic(rng.normal(50, 10, 3000)) < 1  # the same distribution
    assert statistic(rng.normal(58, 10, 3000)) > 1  # values moved by 0.8 sd
