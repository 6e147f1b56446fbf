"""Running every detector over the benchmark's episodes; one record (plain JSON) per episode.

An outcome is ``[pre-change alarms, pre-change events seen, delay or None]``: the delay is the first alarm
in the detection window minus the change point. River's detectors see one event at a time; ours see the
whole stream through ``update_batch`` (after an alarm they go on as if reset, so ``_reset()`` and feeding
the rest gives every alarm).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from river import drift

from driftline.bench.drift_streams import BASES, REFERENCE, TRAIN, Episode, Rows, episodes_for, transition
from driftline.models.runtime import TorchPredictor
from driftline.monitoring.detectors import (
    BernoulliGLR,
    ExpectedErrorDrift,
    FeatureDrift,
    FeatureImpactDrift,
    ScoreDrift,
)
from driftline.monitoring.profile import ReferenceProfile
from driftline.trainers.fit import fit_classifier

Floats = npt.NDArray[np.float64]
Outcome = list[Any]
HARM = 0.03
"""An episode is harmful when the model's error rate rises by at least this much after the change."""
KSWIN_LEAD = 1000
"""KSWIN (0.25 ms per event) starts this many events before the change; it only remembers 100."""
CLASSES = {"led": 10}
ADWIN: Callable[[], Any] = drift.ADWIN
RIVER_LABEL_BASED: dict[str, Callable[[], Any]] = {
    "ADWIN": ADWIN,
    "PageHinkley": drift.PageHinkley,
    "HDDM_A": drift.binary.HDDMA,
}
OURS = "GLR (ours)"
STRICT_THRESHOLD = 13.0
"""A stricter GLR beside the default: calibrated to at most ~0.06 false alarms per 10^5 (the default: 0.3)."""
OURS_VARIANTS: dict[str, Callable[[], BernoulliGLR]] = {
    OURS: BernoulliGLR,
    "GLR strict (ours, h=13)": lambda: BernoulliGLR(threshold=STRICT_THRESHOLD),
}
LABEL_BASED = [*OURS_VARIANTS, *RIVER_LABEL_BASED]


def ours_alarms(detector: Any, xs: npt.ArrayLike) -> list[int]:
    rows = np.asarray(xs)
    alarms: list[int] = []
    pos = 0
    while pos < len(rows):
        hit = detector.update_batch(rows[pos:])
        if hit is None:
            break
        alarms.append(pos + hit)
        detector._reset()
        pos += hit + 1
    return alarms


def river_alarms(detector: Any, values: Sequence[float]) -> list[int]:
    alarms = []
    for i, v in enumerate(values):
        detector.update(v)
        if detector.drift_detected:
            alarms.append(i)
    return alarms


def outcome(alarms: Sequence[int], start: int, stop: int, offset: int = 0) -> Outcome:
    """``alarms`` are positions in a stream that began ``offset`` events into the episode."""
    at = np.asarray(alarms, dtype=np.int64) + offset
    window = at[(at >= start) & (at < stop)]
    return [int((at < start).sum()), start - offset, int(window[0] - start) if len(window) else None]


def label_based(
    errors: npt.NDArray[np.bool_], start: int, stop: int, river: Sequence[str] | None = None
) -> dict[str, Outcome]:
    """Our GLR and River's detectors (all, or those named) on one 0/1 error stream."""
    out = {name: outcome(ours_alarms(make(), errors), start, stop) for name, make in OURS_VARIANTS.items()}
    values = errors.astype(np.float64).tolist()
    for name in RIVER_LABEL_BASED if river is None else river:
        out[name] = outcome(river_alarms(RIVER_LABEL_BASED[name](), values), start, stop)
    return out


def bernoulli_episode(p0: float, p1: float, gradual: int, seed: int, pre: int, window: int) -> Floats:
    """Track A: a 0/1 error stream whose rate moves from ``p0`` to ``p1`` at ``pre``."""
    rng = np.random.default_rng(seed)
    rate = np.full(pre + gradual + window, p0)
    rate[pre:] = p1
    if gradual:
        rate[pre : pre + gradual] = p0 + (p1 - p0) * transition(gradual, gradual)
    out: Floats = (rng.random(len(rate)) < rate).astype(np.float64)
    return out


def stationary_alarms(rate: float, events: int, seed: int) -> dict[str, int]:
    """Alarms of every label-based detector on one i.i.d. Bernoulli(``rate``) stream.

    A frozen model's errors on an i.i.d. stream are i.i.d. Bernoulli, so this is exact in distribution.
    """
    errors = np.random.default_rng(seed).random(events) < rate
    counts = {name: len(ours_alarms(make(), errors)) for name, make in OURS_VARIANTS.items()}
    values = errors.astype(np.float64).tolist()
    for name, make in RIVER_LABEL_BASED.items():
        counts[name] = len(river_alarms(make(), values))
    return counts


def train(x: Floats, y: npt.NDArray[np.int64], n_classes: int, seed: int) -> TorchPredictor:
    """The frozen model: the product's MLP (two hidden layers of 32) fitted on pre-change rows."""
    fit = fit_classifier(
        x.astype(np.float32),
        y,
        features=[f"x{i}" for i in range(x.shape[1])],
        classes=[str(c) for c in range(n_classes)],
        name="drift-bench",
        version=str(seed),
        params={"hidden": [32, 32]},
        epochs=40,
        batch_size=128,
        holdout=0.0,
        seed=seed,
        device="cpu",
    )
    return TorchPredictor(fit.config, fit.module, device="cpu")


def _any_of(alarm_lists: Sequence[Sequence[int]]) -> list[int]:
    return sorted({a for alarms in alarm_lists for a in alarms})


def label_free(ep: Episode, probs: Floats, profile: ReferenceProfile, kswin: bool) -> dict[str, Outcome]:
    start, stop = ep.start, ep.stop
    confidence = probs.max(axis=1).tolist()
    expected = ours_alarms(ExpectedErrorDrift(profile), probs)
    impact = ours_alarms(FeatureImpactDrift(profile), ep.x)
    alarms = {
        "expected error (ours)": expected,
        "feature impact (ours)": impact,
        "either of ours": _any_of([expected, impact]),
        "feature G-tests (ours)": ours_alarms(FeatureDrift(profile), ep.x),
        "score G-tests (ours)": ours_alarms(ScoreDrift(profile), probs),
        "ADWIN on score": river_alarms(ADWIN(), confidence),
        "PageHinkley on score": river_alarms(drift.PageHinkley(), confidence),
        "ADWIN per feature": _any_of([river_alarms(ADWIN(), col.tolist()) for col in ep.x.T]),
    }
    out = {name: outcome(a, start, stop) for name, a in alarms.items()}
    if kswin:
        lead = start - KSWIN_LEAD
        out["KSWIN on score"] = outcome(
            river_alarms(drift.KSWIN(seed=ep.seed), confidence[lead:]), start, stop, lead
        )
    return out


def base_records(base: str, seed: int, kswin: bool) -> list[dict[str, Any]]:
    """Train the frozen model for one generator and seed, then run every episode of that generator."""
    pre = Rows(BASES[base].pre(seed))
    n_classes = CLASSES.get(base, 2)
    x_train, y_train = pre.take(TRAIN)
    model = train(x_train, y_train, n_classes, seed)
    x_ref, y_ref = pre.take(REFERENCE)
    profile = ReferenceProfile.from_training(
        x_ref, model.predict_batch(x_ref.astype(np.float32)), [f"x{i}" for i in range(x_ref.shape[1])], y_ref
    )
    records = []
    for ep in episodes_for(base, seed, pre):
        probs = model.predict_batch(ep.x.astype(np.float32)).astype(np.float64)
        errors = probs.argmax(axis=1) != ep.y
        before, after = float(errors[: ep.start].mean()), float(errors[ep.end : ep.stop].mean())
        records.append(
            {
                "condition": ep.condition.name,
                "seed": seed,
                "track_b": ep.condition.track_b,
                "input_change": ep.condition.input_change,
                "error_before": before,
                "error_after": after,
                "harmful": after - before >= HARM,
                # Track C only needs ADWIN beside ours as label-based references (HDDM_A is slow).
                "label_based": label_based(
                    errors, ep.start, ep.stop, None if ep.condition.track_b else ["ADWIN"]
                ),
                "label_free": label_free(ep, probs, profile, kswin),
            }
        )
    return records
