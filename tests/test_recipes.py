"""Training recipes: the team's own training function closes the loop on its own fields. Driftline
exports, checks, judges by the task's metric, signs and publishes; the same request trains once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import driftline
from driftline.config import Settings
from driftline.errors import ConfigError
from driftline.models import control
from driftline.models.spec import Classification, InputField, ModelSpec, Regression
from driftline.options import TrainOptions
from driftline.trainers import scoring
from driftline.trainers.dataset import first_windows
from driftline.trainers.recipe import TrainingContext, TrainingData, load_recipe, run_recipe
from driftline.trainers.recipes import mlp
from driftline.trainers.service import answer_request
from tests import recipe_fixture

COUNTRIES = ("DE", "FR", "IT")
SPEC = ModelSpec(
    inputs=[
        InputField(name="amount", mean=50.0, scale=30.0),
        InputField(name="card_present", kind="boolean"),
        InputField(name="country", kind="categorical", categories=COUNTRIES),
    ],
    task=Classification(classes=("ok", "fraud")),
)


def payments(n: int, seed: int) -> tuple[list[dict[str, Any]], list[str]]:
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(n):
        amount = float(rng.gamma(2.0, 25.0))
        card = bool(rng.random() < 0.6)
        country = str(rng.choice(COUNTRIES))
        rows.append({"amount": amount, "card_present": card, "country": country})
        labels.append("fraud" if (amount > 60 and not card) or country == "IT" else "ok")
    return rows, labels


# -- pure ----------------------------------------------------------------------------------------


def test_recipes_are_found_by_import_path_and_bad_references_say_why() -> None:
    assert load_recipe("driftline.trainers.recipes:mlp") is mlp
    with pytest.raises(ConfigError, match="cannot import"):
        load_recipe("no_such_package.recipes:fit")
    with pytest.raises(ConfigError, match="has no 'nothing'"):
        load_recipe("driftline.trainers.recipes:nothing")
    with pytest.raises(ConfigError, match="no recipe 'unknown'"):
        load_recipe("unknown")


def test_a_recipe_must_return_a_module() -> None:
    data = TrainingData(
        SPEC, np.zeros((2, 2), np.float32), np.zeros((2, 1), np.int64), np.zeros(2), np.zeros(2, np.int64)
    )
    with pytest.raises(ConfigError, match=r"returns a torch\.nn\.Module"):
        run_recipe(lambda _d, _c: "a model", data, TrainingContext("m", "1", "cpu", 0))


def test_the_data_a_recipe_gets_is_shaped_by_the_spec() -> None:
    rows, labels = payments(50, seed=1)
    encoded = SPEC.encode(rows)
    targets = np.array([SPEC.task.classes.index(v) for v in labels])  # type: ignore[union-attr]
    data = TrainingData(SPEC, encoded.numeric, encoded.codes, targets, np.zeros(50, np.int64))
    numeric, codes = data.tensors()
    assert numeric.shape == (50, 2)
    assert codes.dtype == torch.int64
    assert data.records()[0] == pytest.approx({**rows[0], "card_present": float(rows[0]["card_present"])})


def test_warm_start_copies_matching_weights_only() -> None:
    live = recipe_fixture.FraudNet(3, 2)
    weights = {k: v.detach().numpy() for k, v in live.state_dict().items()}
    weights["out.weight"] = np.zeros((5, 16), np.float32)  # another shape: not copied
    fresh = recipe_fixture.FraudNet(3, 2)
    loaded = TrainingContext("m", "2", "cpu", 0, "1", weights).warm_start(fresh)
    assert "out.weight" not in loaded
    assert torch.equal(fresh.hidden.weight, live.hidden.weight)


def test_metrics_agree_with_their_definitions() -> None:
    y = np.array([1, 0, 1, 1, 0])
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.45, 0.55], [0.7, 0.3], [0.9, 0.1]])
    assert scoring.score("accuracy", y, p) == pytest.approx(0.8)
    assert scoring.score("log_loss", y, p) == pytest.approx(-np.mean(np.log([0.8, 0.6, 0.55, 0.3, 0.9])))
    # positives score 0.8, 0.55, 0.3; negatives 0.4, 0.1: 5 of 6 pairs ordered right
    assert scoring.score("roc_auc", y, p) == pytest.approx(5 / 6)
    truth, predicted = np.array([1.0, 2.0, 4.0]), np.array([[1.5], [2.0], [3.0]])
    assert scoring.score("mae", truth, predicted) == pytest.approx(0.5)
    assert scoring.score("rmse", truth, predicted) == pytest.approx(np.sqrt((0.25 + 0 + 1) / 3))
    with pytest.raises(ValueError, match="not a regression metric"):
        scoring.metric_for("accuracy", regression=True)


def test_the_default_recipe_fits_regression_with_categories() -> None:
    spec = ModelSpec(
        inputs=[InputField(name="x"), InputField(name="c", kind="categorical", categories=("a", "b"))],
        task=Regression(target="y"),
    )
    rng = np.random.default_rng(0)
    x, c = rng.normal(size=(600, 1)).astype(np.float32), rng.integers(0, 3, (600, 1))
    y = 3 * x[:, 0] + 2 * c[:, 0] + 10
    data = TrainingData(spec, x, c, y, np.zeros(600, np.int64))
    trained = run_recipe(mlp, data, TrainingContext("m", "1", "cpu", 0))
    with torch.inference_mode():
        out = trained.module(torch.from_numpy(x), torch.from_numpy(c)).numpy()[:, 0]
    assert float(np.abs(out - y).mean()) < 0.5  # the target's spread is about 3.5


# -- on the broker -------------------------------------------------------------------------------


@pytest.mark.kafka
def test_a_recipe_retrains_a_teams_model_with_full_lineage_and_once_per_request(
    registry: Settings, tmp_path: Path, keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    private = (keys / "signing.key").read_bytes()
    name = registry.model_name
    rows, labels = payments(2400, seed=7)
    first = recipe_fixture.FraudNet(len(COUNTRIES), 2)  # v1: an untrained module, so v2 must beat it
    artifact = driftline.export(first, SPEC, rows[:200], tmp_path / "v1", name=name, version="1")
    control.publish_as(registry, artifact, private, "LIVE")
    with driftline.Client(name, settings=registry) as client:
        ids = client.send(rows)
        client.send_labels(zip(ids, labels, strict=True))

    t = registry.topics
    windows = [*first_windows(registry, t.events, 2400), *first_windows(registry, t.labels, 2400)]
    # 5 events that never come: the trainer waits for them, says so, and trains on what came
    windows[0] = {**windows[0], "end_offset": windows[0]["end_offset"] + 5}
    request: dict[str, Any] = {
        "request_id": "drift-1",
        "model_name": name,
        "model_version": "1",
        "reason": "test",
        "training_data": windows,
    }
    options = TrainOptions(
        recipe="tests.recipe_fixture:fraud_net", metric="log_loss", min_rows=500, data_timeout_s=12
    )
    recipe_fixture.CALLS.clear()
    with caplog.at_level(logging.INFO, logger="driftline.trainers.dataset"):
        outcome = answer_request(registry, private, name, request, options)
    assert "waiting for the window's data" in caplog.text
    assert "training on the" in caplog.text

    assert outcome is not None
    assert outcome.promoted
    assert outcome.metric == "log_loss"
    assert outcome.live_accuracy is not None
    assert outcome.candidate_accuracy < outcome.live_accuracy - options.margin  # lower is better
    record = outcome.record
    assert (record["version"], record["parent_version"], record["request_id"]) == ("2", "1", "drift-1")
    assert {w["topic"] for w in record["training_data"]} == {t.events, t.labels}
    assert {"candidate_log_loss", "live_log_loss", "train_rows", "eval_rows", "recipe_final_loss"} <= set(
        record["metrics"]
    )
    train_rows, eval_rows = record["metrics"]["train_rows"], record["metrics"]["eval_rows"]
    assert train_rows + eval_rows > 2000  # first_windows reads up to 2,400 per topic, spread over partitions
    assert "log_loss (mean negative log" in record["reason"]
    assert record["spec"] == SPEC.model_dump_json()
    assert record["reference_profile"]
    [(version, trained_rows, warm)] = recipe_fixture.CALLS
    assert (version, trained_rows) == ("2", train_rows)
    assert "hidden.weight" in warm  # warm-started from v1's graph

    live = control.signer_ledger(registry, private).live(name)
    assert live is not None
    assert live["version"] == "2"
    assert answer_request(registry, private, name, request, options) is None  # trains once
    assert len(recipe_fixture.CALLS) == 1
    stale = {**request, "request_id": "drift-0", "model_version": "1"}  # v1 is no longer live
    assert answer_request(registry, private, name, stale, options) is None
    assert len(recipe_fixture.CALLS) == 1


def test_after_a_sudden_flip_the_candidate_fitted_on_the_recent_rows_alone_is_kept() -> None:
    from driftline.options import TrainOptions
    from driftline.trainers.retrain import _best_recent
    from driftline.trainers.scoring import metric_for

    spec = ModelSpec(inputs=[InputField(name="x")], task=Classification(classes=("no", "yes")))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(800, 1)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    y[400:] = 1 - y[400:]  # the concept flips halfway: the last 40% of the training rows and the held-out
    rows = TrainingData(spec, x, np.zeros((800, 0), np.int64), y, np.arange(800, dtype=np.int64))
    fitting, held_out = rows.slice(0, 600), rows.slice(600)
    context = TrainingContext("m", "2", "cpu", 0)
    accuracy = metric_for("accuracy", regression=False)
    every = TrainOptions(recent_shares=(1.0, 0.5, 0.25))
    _, start = _best_recent(mlp, fitting, held_out, context, accuracy, every)
    assert start in (300, 450)  # a share after the flip (0.5 reaches back 100 rows before it)
    _, whole = _best_recent(mlp, fitting, held_out, context, accuracy, TrainOptions())
    assert whole == 0
