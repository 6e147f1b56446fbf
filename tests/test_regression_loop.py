"""A regression stream with a drift: alert, retraining with the recipe, MAE recovers.

A team's own regression model (a linear module on three numeric fields, fitted on pre-drift data) is
live; ``serve``, ``monitor`` and ``train --recipe driftline.trainers.recipes:mlp --metric mae`` run as
processes while events in its contract and their targets arrive. After ``DRIFT_AT`` events every
target moves up by three standard deviations: the monitor's ErrorRise opens a CONCEPT alert and asks
for retraining, the trainer fits the default recipe on the events after the alert, and the version
it promotes serves with about the pre-drift error again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from torch import nn

import driftline
from driftline.config import Settings
from driftline.demo import TRAIN_READY
from driftline.demo_report import Tracker
from driftline.models import control
from driftline.models.spec import InputField, ModelSpec, Regression
from driftline.services import MONITOR_READY, SERVE_READY, Service, service
from driftline.streams.produce import Pacer

FIELDS = ("distance_km", "stops", "load")
SPEC = ModelSpec(inputs=tuple(InputField(name=f) for f in FIELDS), task=Regression(target="minutes"))
WEIGHTS = np.array([2.0, -1.0, 0.5])
NOISE = 1.0
DRIFT_AT = 700
"""Events before the shift: more than ErrorRise's 500-error grace period, so its reference MAE is
the pre-drift one even without a reference profile."""
RETRAIN_EVENTS = 600
RATE = 150.0
NEW_VERSION_EVENTS = 300
"""Labelled predictions of the retrained version the MAE is judged on."""


def draw(n: int, rng: np.random.Generator) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    x = rng.normal(size=(n, len(FIELDS)))
    return x, x @ WEIGHTS + 10.0 + NOISE * rng.normal(size=n)


def least_squares(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> nn.Linear:
    coef, *_ = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)
    module = nn.Linear(len(FIELDS), 1)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(coef[None, :-1], dtype=torch.float32))
        module.bias.copy_(torch.tensor(coef[-1:], dtype=torch.float32))
    return module


class Sender:
    """Events in the model's contract at ``RATE``, each target right after, shifted from ``DRIFT_AT``."""

    def __init__(self, settings: Settings, model: Path, shift: float, limit: int = 20_000) -> None:
        self.targets: dict[str, float] = {}
        self._settings, self._model, self._shift, self._limit = settings, model, shift, limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="regression-sender", daemon=True)

    def start(self) -> Sender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        rng = np.random.default_rng(4)
        pacer = Pacer(RATE)
        with driftline.Client(self._model, settings=self._settings) as client:
            for start in range(0, self._limit, 10):
                if self._stop.is_set():
                    return
                pacer.wait(start)
                x, y = draw(10, rng)
                ids = [f"trip-{i:06d}" for i in range(start, start + 10)]
                y = y + np.where(np.arange(start, start + 10) >= DRIFT_AT, self._shift, 0.0)
                client.send(
                    [
                        {"event_id": i, **dict(zip(FIELDS, r, strict=True))}
                        for i, r in zip(ids, x.tolist(), strict=True)
                    ],
                    flush=False,
                )
                client.send_labels(zip(ids, y.tolist(), strict=True))
                self.targets.update(zip(ids, y.tolist(), strict=True))


def wait_for(done: Callable[[], bool], timeout: float, what: str, services: list[Service]) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.log.name}\n{s.output()[-3000:]}" for s in services)
            pytest.fail(f"{what} not within {timeout:.0f}s\n{logs}")
        time.sleep(0.5)


def mae(seen: Any, targets: dict[str, float], keep: Callable[[str, str], bool]) -> tuple[float, int]:
    """Mean absolute error of the predictions whose (event id, version) ``keep`` accepts, and their count."""
    errors = [
        abs(seen.values[i] - targets[i])
        for i, (version, *_) in seen.predictions.items()
        if i in seen.values and i in targets and keep(i, version)
    ]
    return float(np.mean(errors)) if errors else float("nan"), len(errors)


@pytest.mark.kafka
def test_a_drifted_regression_stream_is_retrained_by_the_recipe_and_its_error_recovers(
    registry: Settings, tmp_path: Path, keys: Path
) -> None:
    private = (keys / "signing.key").read_bytes()
    name = registry.model_name
    x, y = draw(2000, np.random.default_rng(3))
    sample = [dict(zip(FIELDS, r, strict=True)) for r in x[:300].tolist()]
    artifact = driftline.export(
        least_squares(x, y), SPEC, sample, tmp_path / "v1", name=name, version="1", labels=y[:300].tolist()
    )
    control.publish_as(registry, artifact, private, "LIVE")
    sender = Sender(registry, artifact, shift=3.0 * float(y.std()))
    tracker = Tracker(registry).start()

    def retrained() -> int:
        with tracker.lock:
            return mae(tracker.seen, sender.targets, lambda _i, v: v != "1")[1]

    monitor_args = ["--retrain-events", str(RETRAIN_EVENTS), "--update-interval-s", "2"]
    monitor_args += ["--label-ttl-s", "60", "--cooldown-s", "10"]
    train_args = ["--recipe", "driftline.trainers.recipes:mlp", "--metric", "mae", "--device", "cpu"]
    train_args += ["--min-rows", "300", "--data-timeout-s", "30"]
    try:
        with (
            service(
                registry, tmp_path / "serve.log", "serve", "--max-wait-ms", "20", ready=SERVE_READY
            ) as serve,
            service(
                registry, tmp_path / "monitor.log", "monitor", *monitor_args, ready=MONITOR_READY
            ) as monitor,
            service(registry, tmp_path / "train.log", "train", *train_args, ready=TRAIN_READY) as train,
        ):
            sender.start()
            what = f"{NEW_VERSION_EVENTS} labelled predictions of a retrained version"
            wait_for(lambda: retrained() >= NEW_VERSION_EVENTS, 180, what, [serve, monitor, train])
    finally:
        sender.stop()
        tracker.stop()

    seen = tracker.seen
    opened = [(a["kind"], a["detector"]) for a in seen.alerts if a["status"] == "OPEN"]
    assert ("CONCEPT", "ErrorRise") in opened
    assert seen.requests
    assert seen.requests[0]["model_version"] == "1"
    live = control.signer_ledger(registry, private).live(name)
    assert live is not None
    assert live["version"] != "1"
    assert live["parent_version"] is not None
    assert live["reason"].startswith("promoted")
    assert live["metrics"]["candidate_mae"] < live["metrics"]["live_mae"]  # judged by MAE, held out

    targets = sender.targets
    before, n_before = mae(seen, targets, lambda i, v: v == "1" and int(i[5:]) < DRIFT_AT)
    drifted, n_drifted = mae(seen, targets, lambda i, v: v == "1" and int(i[5:]) >= DRIFT_AT)
    after, n_after = mae(seen, targets, lambda _i, v: v != "1")
    assert n_before == DRIFT_AT
    assert n_drifted > 0
    assert n_after >= NEW_VERSION_EVENTS
    assert drifted > 3 * before  # the drift is real for the old version
    assert after <= 1.5 * before, (before, drifted, after)
    assert after < 0.5 * drifted
