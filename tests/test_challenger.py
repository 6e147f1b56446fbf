"""Champion-challenger: a candidate that won on held-out rows runs as the shadow on live traffic and is
promoted only on its live score; a worse one is not."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import driftline
from driftline.config import Settings
from driftline.models import control
from driftline.models.registry import VersionLedger, example_version, status_record
from driftline.models.spec import Classification, InputField, ModelSpec, Regression
from driftline.options import TrainOptions
from driftline.schemas.wire import AvroEncoder, builtin_store
from driftline.services import SERVE_READY, service
from driftline.testing import FakeMessage
from driftline.trainers.challenger import (
    Scoreboard,
    Verdict,
    judge,
    labels_of,
    predictions_of,
    round_records,
)
from driftline.trainers.dataset import TrainingSet
from driftline.trainers.retrain import train_recipe_and_publish
from driftline.trainers.service import answer_request
from tests import recipe_fixture

STORE = builtin_store()
PREDICTION = AvroEncoder.single_object(STORE.latest("io.driftline.Prediction"))
LABEL = AvroEncoder.single_object(STORE.latest("io.driftline.Label"))
COUNTRIES = ("DE", "FR", "IT")
SPEC = ModelSpec(
    inputs=[
        InputField(name="amount", mean=50.0, scale=30.0),
        InputField(name="card_present", kind="boolean"),
        InputField(name="country", kind="categorical", categories=COUNTRIES),
    ],
    task=Classification(classes=("ok", "fraud")),
)


def board_of(live: list[float], challenger: list[float], truth: list[int], wanted: int = 100) -> Scoreboard:
    """A board whose events e0.. got these probabilities of class 1 and these labels."""
    ids = [f"e{i}" for i in range(len(truth))]
    board = Scoreboard(wanted)
    board.add_labels(ids, np.array(truth))
    board.add_live(ids, np.array([[1 - p, p] for p in live]))
    board.add_challenger(ids, np.array([[1 - p, p] for p in challenger]))
    return board


# -- pure ----------------------------------------------------------------------------------------


def test_only_events_both_versions_answered_and_a_label_reached_are_scored() -> None:
    board = Scoreboard(wanted=10)
    board.add_labels(["a", "b", "c", "d"], np.array([1, 0, 1, 1]))  # labels may come first
    board.add_live(["a", "b", "c", "x"], np.array([[0.2, 0.8], [0.9, 0.1], [0.7, 0.3], [0.5, 0.5]]))
    assert len(board) == 0
    board.add_challenger(["b", "c", "d"], np.array([[0.1, 0.9], [0.4, 0.6], [0.3, 0.7]]))
    assert len(board) == 2  # b and c: a has no shadow answer, d no live one, x no label
    assert board.scores("accuracy") == (0.5, 0.5)  # (challenger, live): c right, b wrong; b right, c wrong
    board.add_challenger(["a", "b"], np.array([[0.0, 1.0], [0.0, 1.0]]))  # b again: a replay, ignored
    assert len(board) == 3
    assert board.scores("accuracy") == pytest.approx((2 / 3, 2 / 3))


def test_the_board_keeps_the_first_wanted_events_and_bounds_what_waits() -> None:
    board = Scoreboard(wanted=2, max_pending=3)
    board.add_live([f"e{i}" for i in range(10)], np.ones((10, 2)) / 2)
    ids = ["e0", "e7", "e8", "e9"]  # e0 went first: at most 3 live answers wait
    board.add_challenger(ids, np.ones((4, 2)) / 2)
    board.add_labels(ids, np.zeros(4))
    assert len(board) == 2  # e7 and e8; e9 came after the board was full
    assert board.full


def test_the_better_challenger_is_promoted_and_the_worse_is_not() -> None:
    truth = [1, 0, 1, 0, 1, 0]
    good = board_of([0.6, 0.6, 0.6, 0.4, 0.4, 0.4], [0.9, 0.1, 0.9, 0.1, 0.9, 0.1], truth, wanted=6)
    verdict = judge(good, "accuracy", margin=0.01, challenger="3", live="2", min_events=3)
    assert (verdict.decided, verdict.promote, verdict.events) == (True, True, 6)
    assert (verdict.challenger_score, verdict.live_score) == pytest.approx((1.0, 4 / 6))
    assert "accuracy of shadow v3 1.0000 beats live v2 0.6667 by 0.01 on the same 6 labelled events" in (
        verdict.reason
    )
    assert "only" not in verdict.reason
    bad = board_of([0.9, 0.1, 0.9, 0.1, 0.9, 0.1], [0.6, 0.6, 0.6, 0.4, 0.4, 0.4], truth, wanted=6)
    verdict = judge(bad, "log_loss", margin=0.01, challenger="3", live="2", min_events=3)
    assert (verdict.decided, verdict.promote) == (True, False)
    assert "does not beat" in verdict.reason
    assert "lower is better" in verdict.reason


def test_a_timed_out_round_decides_on_what_came_or_keeps_the_shadow_when_too_few() -> None:
    board = board_of([0.4] * 4, [0.9, 0.1, 0.9, 0.1], [1, 0, 1, 0], wanted=10)
    verdict = judge(board, "accuracy", margin=0.0, challenger="3", live="2", min_events=4, waited="within 9s")
    assert verdict.decided
    assert verdict.promote
    assert verdict.reason.startswith("only 4 of 10 labelled events came within 9s; on live traffic")
    verdict = judge(board, "accuracy", margin=0.0, challenger="3", live="2", min_events=5, waited="within 9s")
    assert (verdict.decided, verdict.promote) == (False, False)
    assert "too few to judge (at least 5): v3 stays in shadow" in verdict.reason


def test_a_regression_challenger_is_judged_by_its_values() -> None:
    board = Scoreboard(wanted=3)
    board.add_live(["a", "b", "c"], np.array([10.0, 20.0, 30.0]))
    board.add_challenger(["a", "b", "c"], np.array([11.0, 19.0, 30.5]))
    board.add_labels(["a", "b", "c"], np.array([12.0, 18.0, 31.0]))
    assert board.scores("mae") == pytest.approx((2.5 / 3, 5 / 3))
    verdict = judge(board, "mae", margin=0.5, challenger="2", live="1", min_events=1)
    assert verdict.promote


def prediction(event_id: str, version: str, p: float, **extra: Any) -> bytes:
    return PREDICTION.encode(
        {
            "event_id": event_id,
            "event_time": 1,
            "model_name": "m",
            "model_version": version,
            "scores": [1 - p, p],
            "predicted_class": int(p > 0.5),
            "processing_ms": 1.0,
            **extra,
        }
    )


def test_predictions_of_one_version_and_labels_are_read_from_records() -> None:
    messages = [
        FakeMessage(prediction("a", "2", 0.75)),
        FakeMessage(prediction("b", "1", 0.5)),  # another version
        FakeMessage(b"junk"),  # the monitor dead-letters it; here it is skipped
        FakeMessage(prediction("c", "2", 0.25)),
    ]
    ids, outputs = predictions_of(messages, SPEC, "2")
    assert ids == ["a", "c"]
    assert outputs.tolist() == [[0.25, 0.75], [0.75, 0.25]]
    labels = [
        FakeMessage(LABEL.encode({"event_id": "a", "event_time": 1, "label": 1})),
        FakeMessage(LABEL.encode({"event_id": "c", "event_time": 1, "label": -1, "class_name": "fraud"})),
        FakeMessage(LABEL.encode({"event_id": "d", "event_time": 1, "label": -1, "class_name": "what"})),
    ]
    ids, truths = labels_of(labels, SPEC)
    assert sorted(zip(ids, truths.tolist(), strict=True)) == [("a", 1.0), ("c", 1.0)]


def test_regression_predictions_and_targets_are_read_as_values() -> None:
    spec = ModelSpec(inputs=[InputField(name="x")], task=Regression(target="y"))
    value = PREDICTION.encode(
        {
            "event_id": "a",
            "event_time": 1,
            "model_name": "m",
            "model_version": "1",
            "scores": [],
            "predicted_class": -1,
            "processing_ms": 1.0,
            "predicted_label": None,
            "value": 4.5,
        }
    )
    ids, outputs = predictions_of([FakeMessage(value)], spec, "1")
    assert (ids, outputs.tolist()) == (["a"], [[4.5]])
    label = LABEL.encode({"event_id": "a", "event_time": 1, "label": -1, "target": 5.0})
    assert labels_of([FakeMessage(label)], spec)[0] == ["a"]
    assert labels_of([FakeMessage(label)], spec)[1].tolist() == [5.0]


def ledger_with(shadow_status: str = "SHADOW", live: str = "2") -> VersionLedger:
    ledger = VersionLedger()
    ledger.apply(example_version(model_name="m", version=live, status="LIVE"))
    ledger.apply(example_version(model_name="m", version="3", status=shadow_status, metrics={"x": 1.0}))
    return ledger


WIN = Verdict(True, True, 50, "accuracy", 0.9, 0.7, "on live traffic, accuracy of shadow v3 0.9000 beats")
LOSS = Verdict(True, False, 50, "accuracy", 0.6, 0.7, "on live traffic, accuracy of shadow v3 does not")
UNDECIDED = Verdict(False, False, 5, "accuracy", 0.6, 0.7, "too few to judge")


def test_a_round_ends_in_a_promotion_whose_reason_and_metrics_give_both_live_scores() -> None:
    records = round_records(ledger_with(), "m", "3", "2", WIN, now=7)
    assert [(r["version"], r["status"]) for r in records] == [("3", "LIVE"), ("2", "RETIRED")]
    assert records[0]["reason"] == f"promoted at 7, replacing v2: {WIN.reason}"
    assert records[0]["metrics"] == {
        "x": 1.0,
        "live_traffic_candidate_accuracy": 0.9,
        "live_traffic_live_accuracy": 0.7,
        "live_traffic_events": 50.0,
    }


def test_a_round_retires_a_loser_keeps_an_undecided_shadow_and_respects_other_changes() -> None:
    [loser] = round_records(ledger_with(), "m", "3", "2", LOSS, now=7)
    assert (loser["status"], loser["reason"]) == ("RETIRED", f"not promoted: {LOSS.reason}")
    [kept] = round_records(ledger_with(), "m", "3", "2", UNDECIDED, now=7)
    assert (kept["status"], kept["reason"]) == ("SHADOW", "still shadowing: too few to judge")
    [moved_on] = round_records(ledger_with(live="4"), "m", "3", "2", WIN, now=7)  # v4 went live meanwhile
    assert moved_on["status"] == "RETIRED"
    assert moved_on["reason"].startswith("not promoted: v4 went live while v3 was judged against v2")
    assert round_records(ledger_with("RETIRED"), "m", "3", "2", WIN, now=7) == []  # an operator retired it


# -- on the broker -------------------------------------------------------------------------------


def payments(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    return [
        {
            "amount": float(rng.gamma(2.0, 25.0)),
            "card_present": bool(rng.random() < 0.6),
            "country": str(rng.choice(COUNTRIES)),
        }
        for _ in range(n)
    ]


def true_rule(row: dict[str, Any]) -> int:
    return int((row["amount"] > 60 and not row["card_present"]) or row["country"] == "IT")


def wrong_rule(row: dict[str, Any]) -> int:
    """Labels of a broken window: the challenger trained on them wins on its held-out rows only."""
    return int(row["country"] == "FR")


def window(rows: list[dict[str, Any]], rule: Any) -> TrainingSet:
    encoded = SPEC.encode(rows)
    y = np.array([rule(r) for r in rows], dtype=np.int64)
    return TrainingSet(encoded.numeric, y, np.arange(len(rows), dtype=np.int64), codes=encoded.codes)


def traffic(settings: Settings, name: str, stop: threading.Event, sent: list[int]) -> None:
    """Events and their labels at a steady ~250 a second, for at most 80 s."""
    rng = np.random.default_rng(11)
    with driftline.Client(name, settings=settings) as client:
        for _ in range(400):
            if stop.wait(0.2):
                return
            rows = payments(50, rng)
            ids = client.send(rows)
            client.send_labels(zip(ids, [true_rule(r) for r in rows], strict=True))
            sent[0] += len(ids)


@pytest.mark.kafka
def test_a_shadow_challenger_is_promoted_on_its_live_score_and_a_worse_one_is_not(
    registry: Settings, tmp_path: Path, keys: Path
) -> None:
    private = (keys / "signing.key").read_bytes()
    name = registry.model_name
    rng = np.random.default_rng(5)
    torch.manual_seed(0)
    untrained = recipe_fixture.FraudNet(len(COUNTRIES), 2)  # v1: the champion to beat
    artifact = driftline.export(untrained, SPEC, payments(200, rng), tmp_path / "v1", name=name, version="1")
    control.publish_as(registry, artifact, private, "LIVE")
    options = TrainOptions(
        recipe="tests.recipe_fixture:fraud_net", min_rows=500, shadow_events=400, shadow_timeout_s=30
    )
    stop, sent = threading.Event(), [0]
    producer = threading.Thread(target=traffic, args=(registry, name, stop, sent), daemon=True)
    with service(registry, tmp_path / "serve.log", "serve", ready=SERVE_READY) as serving:
        producer.start()
        try:
            better = train_recipe_and_publish(
                registry,
                private,
                name,
                window(payments(1200, rng), true_rule),
                SPEC,
                options.recipe or "",
                options,
            )
            worse = train_recipe_and_publish(
                registry,
                private,
                name,
                window(payments(1200, rng), wrong_rule),
                SPEC,
                options.recipe or "",
                options,
            )
            resumed = crashed_round_is_judged_again(registry, private, rng, options)
        finally:
            stop.set()
            producer.join(30)
        log = serving.output()
    assert not producer.is_alive()
    assert "shadowing" in log

    ledger = control.signer_ledger(registry, private)
    assert better.promoted
    assert better.record["status"] == "LIVE"
    assert better.record["reason"].startswith("promoted at ")
    assert "on live traffic, accuracy of shadow v2" in better.record["reason"]
    assert "beats live v1" in better.record["reason"]
    assert "on the same 400 labelled events" in better.record["reason"]
    metrics = better.record["metrics"]
    assert metrics["live_traffic_events"] == 400
    assert metrics["live_traffic_candidate_accuracy"] > metrics["live_traffic_live_accuracy"] + 0.1
    statuses = [(r["version"], r["status"]) for _, r in ledger.state(name).history]
    assert statuses[:5] == [
        ("1", "CANDIDATE"),
        ("1", "LIVE"),
        ("2", "CANDIDATE"),
        ("2", "SHADOW"),
        ("2", "LIVE"),
    ]
    assert ledger.version(name, "2")["reason"].startswith("promoted")

    assert worse.candidate_accuracy > (worse.live_accuracy or 1.0)  # it won on its held-out rows ...
    assert not worse.promoted  # ... and lost on live traffic
    assert worse.record["status"] == "RETIRED"
    assert worse.record["reason"].startswith("not promoted: on live traffic, accuracy of shadow v3")
    assert "does not beat live v2" in worse.record["reason"]
    live = ledger.live(name)
    assert live is not None
    assert live["version"] == "2"
    assert ledger.shadow(name) is None
    assert ledger.version(name, "3")["status"] == "RETIRED"

    assert resumed["status"] in {"LIVE", "RETIRED"}  # the round a crash cut short was judged again
    assert resumed["metrics"]["live_traffic_events"] >= 200
    assert ledger.version(name, "4")["status"] == resumed["status"]


def crashed_round_is_judged_again(
    registry: Settings, private: bytes, rng: np.random.Generator, options: TrainOptions
) -> dict[str, Any]:
    """v4 answers request r-crash and its trainer died in the middle of the shadow round (its last
    record says SHADOW): the request comes again, the next trainer judges v4 again on live traffic."""
    name = registry.model_name
    quiet = options.model_copy(update={"shadow_events": 0, "margin": 10.0})  # published, not promoted
    v4 = train_recipe_and_publish(
        registry,
        private,
        name,
        window(payments(1200, rng), true_rule),
        SPEC,
        options.recipe or "",
        quiet,
        request_id="r-crash",
    ).record
    mid_round = status_record(v4, "SHADOW", "shadowing next to live v2 for 400 labelled events")
    control.change(registry, private, lambda _l, _n: [mid_round])
    request = {"request_id": "r-crash", "model_name": name, "model_version": "2", "training_data": []}
    assert answer_request(registry, private, name, request, options) is None  # answered already ...
    return control.signer_ledger(registry, private).version(name, "4")  # ... and judged again
