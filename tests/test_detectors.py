"""Contract tests run over every drift detector, plus the reference profile and label-free precision.

The toy model: three features uniform on [0, 10]; the label is 1 with probability
``sigmoid(2 * (x0 + x1 - 10))`` and the model's score is exactly that probability (so it is calibrated);
``x2`` is irrelevant.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from driftline.monitoring import detectors
from driftline.monitoring.base import BatchDetector
from driftline.monitoring.detectors import (
    BernoulliGLR,
    CategoryDrift,
    DriftDetector,
    ErrorRise,
    ExpectedErrorDrift,
    FeatureDrift,
    FeatureImpactDrift,
    ScoreDrift,
    ValueDrift,
)
from driftline.monitoring.profile import FieldReference, ReferenceProfile, RegressionProfile
from driftline.monitoring.state import detector_state, load_detector_state, runtime_fields

Floats = npt.NDArray[np.float64]
NAMES = ["relevant_a", "relevant_b", "irrelevant"]
CHANGE = 5000


def score(x: Floats) -> Floats:
    out: Floats = 1 / (1 + np.exp(-2 * (x[:, 0] + x[:, 1] - 10)))
    return out


def inputs(n: int, seed: int) -> Floats:
    return np.random.default_rng(seed).uniform(0, 10, size=(n, 3))


def near_boundary(n: int, seed: int) -> Floats:
    """A harmful shift: events move to where the model is unsure (x0 + x1 close to 10)."""
    x = inputs(n, seed)
    x[:, 1] = np.clip(10 - x[:, 0] + np.random.default_rng(seed + 1).normal(0, 0.5, n), 0, 10)
    return x


def irrelevant_shift(n: int, seed: int) -> Floats:
    """A harmless shift: the irrelevant feature keeps only a third of its range."""
    x = inputs(n, seed)
    x[:, 2] /= 3
    return x


def relevant_noise(n: int, seed: int) -> Floats:
    """A harmful shift the scores do not show: noise on the relevant features."""
    x = inputs(n, seed)
    x[:, :2] += np.random.default_rng(seed + 2).normal(0, 1.5, size=(n, 2))
    return x


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    x = inputs(5000, 0)
    p = score(x)
    labels = (np.random.default_rng(1).random(5000) < p).astype(np.int64)
    return ReferenceProfile.from_training(x, p, NAMES, labels)


@dataclass(frozen=True)
class Case:
    """A detector factory and what it is fed: a stationary stream, and one that changes at ``CHANGE``."""

    name: str
    make: Callable[..., Any]
    """``make(profile, **parameters)``."""
    stream: Callable[[int, int, bool], Any]
    within: int
    """An obvious change must raise an alarm within this many events."""
    other: dict[str, Any]
    """Parameters unlike the defaults (the threshold changes with them) that a checkpoint taken with the
    defaults still fits."""


def _errors(n: int, seed: int, changed: bool) -> Floats:
    rng = np.random.default_rng(seed)
    rate = np.full(n, 0.2)
    if changed:
        rate[CHANGE:] = 0.5
    out: Floats = (rng.random(n) < rate).astype(np.float64)
    return out


def _features(shift: Callable[[int, int], Floats]) -> Callable[[int, int, bool], Floats]:
    def stream(n: int, seed: int, changed: bool) -> Floats:
        x = inputs(n, seed)
        if changed:
            x[CHANGE:] = shift(n - CHANGE, seed + 100)
        return x

    return stream


def _scores(shift: Callable[[int, int], Floats]) -> Callable[[int, int, bool], Floats]:
    return lambda n, seed, changed: score(_features(shift)(n, seed, changed))


def _abs_errors(n: int, seed: int, changed: bool) -> Floats:
    rng = np.random.default_rng(seed)
    scale = np.full(n, 1.0)
    if changed:
        scale[CHANGE:] = 2.0
    out: Floats = np.abs(rng.normal(0.0, scale))
    return out


SHARES = [0.05, 0.5, 0.3, 0.15]
COUNTRY = FieldReference.of_codes("country", np.random.default_rng(3).choice(4, 2000, p=SHARES), [], 3)


def _codes(n: int, seed: int, changed: bool) -> Floats:
    rng = np.random.default_rng(seed)
    codes = rng.choice(4, n, p=SHARES).astype(np.float64)
    if changed:
        codes[CHANGE:] = rng.choice(4, n - CHANGE, p=[0.05, 0.2, 0.3, 0.45])
    return codes[:, None]


_TARGETS = np.random.default_rng(4).normal(50.0, 10.0, 3000)
VALUES = RegressionProfile.from_training(_TARGETS + np.random.default_rng(5).normal(0, 2, 3000), _TARGETS)


def _values(n: int, seed: int, changed: bool) -> Floats:
    """A regression model's predicted values; after ``CHANGE`` they move up by half a standard deviation."""
    values: Floats = np.random.default_rng(seed).normal(50.0, 10.2, n)
    if changed:
        values[CHANGE:] += 5.0
    return values


CASES = [
    Case(
        "BernoulliGLR",
        lambda prof, **parameters: BernoulliGLR(**parameters),
        _errors,
        300,
        {"threshold": 14.0, "min_window": 16, "grid_ratio": 1.2, "grace_period": 50, "clock": 2},
    ),
    Case(
        "ExpectedErrorDrift",
        ExpectedErrorDrift,
        _scores(near_boundary),
        1000,
        {"min_increase": 0.05, "arl": 1e7},
    ),
    Case(
        "FeatureImpactDrift",
        FeatureImpactDrift,
        _features(relevant_noise),
        1000,
        {"min_increase": 0.05, "arl": 1e7},
    ),
    Case(
        "FeatureDrift",
        FeatureDrift,
        _features(irrelevant_shift),
        1000,
        {"window": 1500, "stride": 50, "arl": 1e8},
    ),
    Case("ScoreDrift", ScoreDrift, _scores(near_boundary), 1000, {"window": 500, "stride": 250, "arl": 1e4}),
    Case(
        "ErrorRise",
        lambda prof, **parameters: ErrorRise(**parameters),
        _abs_errors,
        200,
        {"threshold": 30.0, "drift": 0.3, "grace_period": 300, "clip": 5.0},
    ),
    Case(
        "ValueDrift",
        lambda prof, **parameters: ValueDrift(VALUES, **parameters),
        _values,
        1000,
        {"window": 1500, "stride": 50, "arl": 1e8},
    ),
    Case(
        "CategoryDrift",
        lambda prof, **parameters: CategoryDrift([COUNTRY], 2000, **parameters),
        _codes,
        1000,
        {"window": 1500, "stride": 50, "arl": 1e8},
    ),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    out: Case = request.param
    return out


def _concrete(cls: type) -> set[str]:
    subclasses: list[type] = cls.__subclasses__()
    return {c.__name__ for c in subclasses if not c.__name__.startswith("_")}.union(
        *(_concrete(c) for c in subclasses)
    )


def test_every_detector_has_a_case() -> None:
    names = {c.name for c in CASES}
    assert _concrete(BatchDetector) == names
    assert set(detectors.__all__) - {"DriftDetector"} == names


def test_meets_the_protocol(case: Case, profile: ReferenceProfile) -> None:
    det = case.make(profile)
    assert isinstance(det, DriftDetector)
    assert det.statistic == 0.0
    assert not det.drift_detected
    assert np.isfinite(det.threshold)
    for prop in ("drift_detected", "statistic", "threshold"):
        with pytest.raises(AttributeError):
            setattr(det, prop, 1.0)


@pytest.mark.parametrize("seed", [12, 13])
def test_no_alarm_on_a_stationary_stream(case: Case, profile: ReferenceProfile, seed: int) -> None:
    """Fixed seeds: the nominal rates are at most 1 false alarm per 10^5 events (10^6 for the G-tests),
    so a given 30,000-event stream can alarm (ScoreDrift does on seed 11 against this reference); the
    benchmark measures the rates over millions of events."""
    det = case.make(profile)
    assert det.update_batch(case.stream(30_000, seed, False)) is None
    assert not det.drift_detected
    assert np.isfinite(det.statistic)
    assert det.statistic <= det.threshold


def test_alarm_soon_after_an_obvious_change(case: Case, profile: ReferenceProfile) -> None:
    det = case.make(profile)
    first = det.update_batch(case.stream(CHANGE + 2 * case.within, 21, True))
    assert first is not None
    assert CHANGE <= first < CHANGE + case.within
    assert det.drift_detected


def test_update_batch_equals_repeated_update(case: Case, profile: ReferenceProfile) -> None:
    stream = case.stream(CHANGE + case.within, 31, True)
    one_by_one = case.make(profile)
    alarms, stats = [], []
    for i, x in enumerate(stream):
        one_by_one.update(x)
        stats.append(one_by_one.statistic)
        if one_by_one.drift_detected:
            alarms.append(i)
    batched = case.make(profile)
    cuts = np.sort(np.random.default_rng(0).choice(np.arange(1, len(stream)), size=40, replace=False))
    assert alarms, "the change must be detected"
    for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        hit = batched.update_batch(stream[lo:hi])
        inside = [a - lo for a in alarms if lo <= a < hi]
        assert hit == (inside[0] if inside else None)
        assert batched.drift_detected == bool(inside)
        assert batched.statistic == pytest.approx(stats[hi - 1], rel=1e-9, abs=1e-9)


def test_reset_restores_the_initial_state(case: Case, profile: ReferenceProfile) -> None:
    stream = case.stream(CHANGE + case.within, 41, True)
    fresh = case.make(profile)
    expected = fresh.update_batch(stream)
    used = case.make(profile)
    used.update_batch(stream[: CHANGE + case.within // 2])
    used._reset()
    assert used.statistic == 0.0
    assert not used.drift_detected
    assert used.update_batch(stream) == expected
    assert used.statistic == pytest.approx(fresh.statistic)


def _parameters(det: Any) -> list[str]:
    return [n for n in inspect.signature(type(det)).parameters if n != "profile"]


def test_parameters_are_stored_under_their_own_names(case: Case, profile: ReferenceProfile) -> None:
    det = case.make(profile, **case.other)
    for name in _parameters(det):
        assert hasattr(det, name), f"the parameter {name} is not an attribute of the same name"
    for name, value in case.other.items():
        assert getattr(det, name) == value
    fields = runtime_fields(det)
    assert fields
    assert all(f.startswith("_") for f in fields)
    assert not {f.lstrip("_") for f in fields} & {*_parameters(det), "threshold"}


def _checkpoint(det: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(detector_state(det)))
    return out


def _used(case: Case, profile: ReferenceProfile) -> tuple[Any, Any]:
    """A detector with the default parameters, fed well past the change, and the rest of the stream."""
    stream = case.stream(CHANGE + 2 * case.within, 81, True)
    cut = CHANGE + case.within
    det = case.make(profile)
    det.update_batch(stream[:cut])
    return det, stream[cut:]


def test_a_checkpoint_holds_state_and_restores_into_new_parameters(
    case: Case, profile: ReferenceProfile
) -> None:
    original, rest = _used(case, profile)
    saved = _checkpoint(original)
    assert set(saved) == set(runtime_fields(original))
    restored = case.make(profile, **case.other)
    assert load_detector_state(restored, saved)
    for name, value in case.other.items():
        assert getattr(restored, name) == value
    assert restored.threshold == case.make(profile, **case.other).threshold != original.threshold
    assert _checkpoint(restored) == saved
    for name in saved:
        assert np.array_equal(getattr(restored, name), getattr(original, name))
    restored.update_batch(rest)  # goes on with the new parameters
    assert np.isfinite(restored.statistic)

    same = case.make(profile)
    assert load_detector_state(same, saved)
    assert same.update_batch(rest) == original.update_batch(rest)
    assert same.statistic == original.statistic
    assert _checkpoint(same) == _checkpoint(original)


def test_a_checkpoint_with_parameters_in_it_does_not_change_them(
    case: Case, profile: ReferenceProfile
) -> None:
    """Checkpoints written before parameters were left out carry ``_threshold``: it is ignored."""
    original, _ = _used(case, profile)
    old_format = {**_checkpoint(original), "_threshold": 1.0, "threshold": 1.0}
    restored = case.make(profile, **case.other)
    assert load_detector_state(restored, old_format)
    assert restored.threshold == case.make(profile, **case.other).threshold
    assert _checkpoint(restored) == _checkpoint(original)


def _widened(det: Any) -> Any:
    """A copy of ``det`` with one more column in its first state array (a state of another shape)."""
    out = copy.copy(det)
    name = next(n for n in runtime_fields(det) if isinstance(getattr(det, n), np.ndarray))
    array = getattr(det, name)
    setattr(out, name, np.concatenate([array, np.zeros_like(array[..., :1])], axis=-1))
    return out


@pytest.mark.parametrize("change", ["missing", "unknown", "shape"])
def test_a_checkpoint_that_does_not_fit_starts_the_detector_fresh(
    case: Case, profile: ReferenceProfile, change: str, caplog: pytest.LogCaptureFixture
) -> None:
    original, rest = _used(case, profile)
    saved = _checkpoint(original)
    if change == "missing":
        del saved[runtime_fields(original)[-1]]
    elif change == "unknown":
        saved["_from_other_code"] = 1
    else:
        saved = _checkpoint(_widened(original))
    det = case.make(profile, **case.other)
    det.update_batch(rest)
    with caplog.at_level(logging.WARNING, logger="driftline.monitoring.state"):
        assert not load_detector_state(det, saved)
    assert f"{case.name} starts fresh" in caplog.text
    assert _checkpoint(det) == _checkpoint(case.make(profile, **case.other))


def test_a_glr_checkpoint_of_another_max_window_starts_fresh(caplog: pytest.LogCaptureFixture) -> None:
    original = BernoulliGLR()
    original.update_batch(_errors(3000, 91, False))
    det = BernoulliGLR(max_window=4096)
    with caplog.at_level(logging.WARNING, logger="driftline.monitoring.state"):
        assert not load_detector_state(det, _checkpoint(original))
    assert "_cumulative does not fit" in caplog.text
    assert det.n_seen == 0


@pytest.mark.parametrize("window", [500, 1500])
@pytest.mark.parametrize("name", ["FeatureDrift", "ScoreDrift"])
def test_a_windowed_test_restored_with_another_window_tests_the_last_window(
    name: str, window: int, profile: ReferenceProfile
) -> None:
    """A larger window waits until it has filled up; either way the test is the one that a detector with
    that window all along makes (on a stream without alarms)."""
    case = next(c for c in CASES if c.name == name)
    stream = case.stream(4000, 12, False)
    original = case.make(profile)
    original.update_batch(stream[:2000])
    restored = case.make(profile, window=window)
    assert load_detector_state(restored, _checkpoint(original))
    throughout = case.make(profile, window=window)
    throughout.update_batch(stream[:2000])
    for lo in range(2000, 4000, 100):
        assert restored.update_batch(stream[lo : lo + 100]) is None
        assert throughout.update_batch(stream[lo : lo + 100]) is None
        if window > 1000 and lo + 100 < 2000 + window - 1000:
            assert restored.statistic == original.statistic  # not a full window yet: no test
        else:
            assert restored.statistic == pytest.approx(throughout.statistic, rel=1e-12)


def test_profile_json_round_trip_and_size() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20_000, 9)).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), size=20_000)
    prof = ReferenceProfile.from_training(x, probs, [f"f{i}" for i in range(9)], rng.integers(0, 3, 20_000))
    text = prof.to_json()
    assert len(text.encode()) < 200_000
    again = ReferenceProfile.from_json(text)
    assert again == prof
    assert again.to_json() == text
    assert again.n_classes == 3
    assert again.reference_error is not None


def test_profile_accepts_positive_class_probabilities(profile: ReferenceProfile) -> None:
    x = inputs(5000, 0)
    p = score(x)
    labels = (np.random.default_rng(1).random(5000) < p).astype(np.int64)
    two_columns = ReferenceProfile.from_training(x, np.stack([1 - p, p], axis=1), NAMES, labels)
    assert two_columns == profile
    assert profile.importance[2] < 0.05
    assert min(profile.importance[:2]) > 0.5


def test_profile_rejects_an_unknown_version(profile: ReferenceProfile) -> None:
    with pytest.raises(ValueError, match="version"):
        ReferenceProfile.from_json(profile.to_json().replace('"version":1', '"version":99'))


@pytest.mark.parametrize("seed", [51, 52, 53])
def test_label_free_alerts_ignore_a_harmless_shift(profile: ReferenceProfile, seed: int) -> None:
    harmless = irrelevant_shift(20_000, seed)
    assert ExpectedErrorDrift(profile).update_batch(score(harmless)) is None
    assert FeatureImpactDrift(profile).update_batch(harmless) is None
    # The plain distribution test does see the shift: it is not meant for alerting on harm.
    assert FeatureDrift(profile).update_batch(harmless) is not None


@pytest.mark.parametrize("seed", [61, 62, 63])
def test_label_free_alerts_see_a_harmful_shift(profile: ReferenceProfile, seed: int) -> None:
    assert ExpectedErrorDrift(profile).update_batch(score(near_boundary(3000, seed))) is not None
    assert FeatureImpactDrift(profile).update_batch(relevant_noise(3000, seed)) is not None


def test_the_harmful_shifts_are_harmful() -> None:
    rng = np.random.default_rng(7)

    def error(x_seen: Floats, x_true: Floats) -> float:
        labels = rng.random(len(x_true)) < score(x_true)
        return float(((score(x_seen) > 0.5) != labels).mean())

    clean = inputs(20_000, 70)
    base = error(clean, clean)
    assert error(near_boundary(20_000, 71), near_boundary(20_000, 71)) > base + 0.03
    noisy = relevant_noise(20_000, 72)
    assert error(noisy, inputs(20_000, 72)) > base + 0.03
    assert abs(error(irrelevant_shift(20_000, 73), irrelevant_shift(20_000, 73)) - base) < 0.02
