"""Label-free drift detectors, each against a :class:`~driftline.monitoring.profile.ReferenceProfile`.

Two families:

* **Estimated performance** (alerting): :class:`ExpectedErrorDrift` maps each score to the error rate the
  reference showed at that confidence (confidence-based performance estimation, as NannyML's CBPE);
  :class:`FeatureImpactDrift` maps each feature value to the error rate the reference showed in that
  value's bin, and values outside the reference range to an error raised towards chance in proportion
  to how much the scores depend on that feature. Each channel runs a one-sided CUSUM of a betting
  martingale ``log(1 + lam * (u - mu - min_increase / 2))``: its expected value is <= 0 while the
  mean proxy error stays within ``min_increase / 2`` of the reference, so an alarm needs an estimated
  rise (and Lorden's bound gives an average run length of at least ``exp(threshold)`` per channel without
  one). Shifts that move events to where the model is as good or better raise nothing.
* **Distribution change** (informational): :class:`FeatureDrift` (each feature and the joint Mahalanobis
  distance) and :class:`ScoreDrift` (confidence and predicted class) run two-sample G-tests of the
  last ``window`` events' bin counts against the reference's. They see any shift, harmful or not.

None of them can see a change of P(y|x) that leaves P(x) alone (pure concept drift): that takes labels.

>>> from driftline.monitoring.profile import ReferenceProfile
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(0, 10, size=(3000, 2))
>>> p1 = 1 / (1 + np.exp(-2 * (x[:, 0] - 5)))
>>> prof = ReferenceProfile.from_training(x, p1, ["relevant", "irrelevant"], rng.random(3000) < p1)
>>> shifted = rng.uniform(0, 10, size=(2000, 2)); shifted[:, 1] /= 4  # irrelevant feature, harmless
>>> ExpectedErrorDrift(prof).update_batch(1 / (1 + np.exp(-2 * (shifted[:, 0] - 5)))) is None
True
>>> FeatureDrift(prof).update_batch(shifted) is not None
True
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from driftline.monitoring.base import BatchDetector
from driftline.monitoring.profile import ReferenceProfile, RegressionProfile, Sketch, as_probabilities

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]


class _ErrorCusum(BatchDetector):
    """One betting CUSUM per channel of per-event error proxies ``u = sketch.error[sketch.bin(value)]``.

    The state is the CUSUM of each channel; a checkpoint restored with a profile of another number of
    channels does not fit, and the detector starts fresh (:mod:`driftline.monitoring.state`)."""

    def __init__(self, sketches: list[Sketch], min_increase: float, arl: float) -> None:
        super().__init__()
        self.min_increase = min_increase
        self.arl = arl
        self._sketches = sketches
        self._errors = [np.asarray(s.error) for s in sketches]
        tolerance = min_increase / 2
        self._null = np.array([s.mean_error for s in sketches]) + tolerance
        spread = np.array(
            [
                np.dot(s.probs, (np.asarray(s.error) - m) ** 2)
                for s, m in zip(sketches, self._null, strict=True)
            ]
        )
        self._bet = np.minimum(tolerance / spread, 0.5 / self._null)
        self._threshold = math.log(arl * len(sketches))
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._sums = np.zeros(len(self._sketches))

    def _proxies(self, rows: Floats) -> Floats:
        columns = [err[s.bin(col)] for s, err, col in zip(self._sketches, self._errors, rows.T, strict=True)]
        return np.stack(columns, axis=1)

    def _advance(self, rows: Floats) -> Floats:
        steps = np.log1p(self._bet * (self._proxies(rows) - self._null))
        walk = self._sums + np.cumsum(steps, axis=0)
        sums = walk - np.minimum(np.minimum.accumulate(walk, axis=0), 0.0)
        self._sums = sums[-1]
        stats: Floats = sums.max(axis=1)
        self._statistic = float(stats[-1])
        return stats

    @property
    def channel_statistics(self) -> list[float]:
        """The CUSUM of each channel (a gauge per feature)."""
        return [float(v) for v in self._sums]


class ExpectedErrorDrift(_ErrorCusum):
    """Alarms when the calibrated expected error of the scores rises by ``min_increase`` or more.

    ``update(score)`` takes one positive-class probability or one row of class probabilities;
    ``update_batch`` an ``(n,)`` or ``(n, classes)`` array. The threshold is ``log(arl)``.

    >>> from driftline.monitoring.profile import ReferenceProfile
    >>> rng = np.random.default_rng(3)
    >>> p = rng.beta(0.3, 0.3, 4000)
    >>> prof = ReferenceProfile.from_training(rng.normal(size=(4000, 1)), p, ["x"], rng.random(4000) < p)
    >>> det = ExpectedErrorDrift(prof)
    >>> det.update_batch(rng.beta(0.3, 0.3, 3000)) is None, det.update_batch(rng.beta(2, 2, 3000)) is not None
    (True, True)
    """

    def __init__(self, profile: ReferenceProfile, min_increase: float = 0.03, arl: float = 1e5) -> None:
        self.profile = profile
        super().__init__([profile.confidence], min_increase, arl)

    def _rows(self, xs: npt.ArrayLike) -> Floats:
        confidence: Floats = as_probabilities(xs).max(axis=1)[:, None]
        return confidence


class FeatureImpactDrift(_ErrorCusum):
    """Alarms when the error that the features' bins carried on the reference rises by ``min_increase``.

    ``update(row)`` takes one feature vector, ``update_batch`` an ``(n, features)`` array. One channel per
    feature; the threshold is ``log(arl * n_features)``.
    """

    def __init__(self, profile: ReferenceProfile, min_increase: float = 0.03, arl: float = 1e5) -> None:
        self.profile = profile
        super().__init__(list(profile.features), min_increase, arl)

    def _rows(self, xs: npt.ArrayLike) -> Floats:
        return np.asarray(xs, dtype=np.float64).reshape(-1, len(self._sketches))


def _xlogy(x: Floats, expected: Floats) -> Floats:
    """``x * log(x / expected)``, 0 where ``x`` is 0."""
    out: Floats = np.where(x > 0, x * np.log(np.maximum(x, 1e-300) / np.maximum(expected, 1e-300)), 0.0)
    return out


class _WindowedGTest(BatchDetector):
    """Two-sample G-tests of the last ``window`` events' bin counts against the reference's, one per
    channel, every ``stride`` events.

    The statistic is the largest Wilson-Hilferty z-score of a channel's G; the threshold is the normal
    quantile at ``stride / (arl * channels)`` (a Bonferroni bound over the tests in ``arl`` events). The
    default ``arl`` is 10^6 events: every window is compared with the same reference sample, whose own
    sampling error is shared by all tests.

    The state is the last ``window`` events' bins and the count of events since the last reset. A test
    needs ``window`` bins at hand, not only ``window`` events seen, so a checkpoint restored with a larger
    ``window`` waits until the window has filled up (and one with a smaller window uses its tail).
    """

    def __init__(
        self, sketches: list[Sketch], n_reference: int, window: int, stride: int, arl: float
    ) -> None:
        super().__init__()
        if not 0 < stride <= window:
            raise ValueError("need 0 < stride <= window")
        self.window, self.stride, self.arl = window, stride, arl
        self._sketches = sketches
        sizes = [len(s.probs) for s in sketches]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._reference = np.concatenate([np.asarray(s.probs) for s in sketches]) * n_reference
        self._shares = np.array([window, n_reference], dtype=np.float64) / (window + n_reference)
        self._channel = np.repeat(np.arange(len(sketches)), sizes)
        self._df = np.array(sizes, dtype=np.float64) - 1
        self._threshold = NormalDist().inv_cdf(1 - stride / (arl * len(sketches)))
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._recent = np.zeros((0, len(self._sketches)), dtype=np.intp)
        self._seen = 0

    def _rearm(self) -> None:
        statistic = self._statistic
        self._reset()
        self._statistic = statistic

    def _bins(self, rows: Floats) -> Ints:
        raise NotImplementedError

    def _zscores(self, window_bins: Ints) -> Floats:
        flat = (window_bins + self._offsets).ravel()
        observed = np.bincount(flat, minlength=len(self._reference)).astype(np.float64)
        pooled = observed + self._reference
        terms = _xlogy(observed, pooled * self._shares[0]) + _xlogy(self._reference, pooled * self._shares[1])
        g = 2 * np.bincount(self._channel, weights=terms)
        k = 2 / (9 * self._df)
        z: Floats = (np.cbrt(np.maximum(g, 0) / self._df) - (1 - k)) / np.sqrt(k)
        return z

    def _advance(self, rows: Floats) -> Floats:
        bins = np.concatenate([self._recent, self._bins(rows)])
        stats = np.full(len(rows), -np.inf)
        offset = len(bins) - len(rows)
        seen = self._seen + 1 + np.arange(len(rows))
        known = offset + 1 + np.arange(len(rows))  # bins at hand: as many as seen, or fewer if restored
        for i in np.flatnonzero((seen % self.stride == 0) & (known >= self.window)):
            end = offset + i + 1
            stats[i] = float(self._zscores(bins[end - self.window : end]).max())
            self._statistic = stats[i]
        self._recent = bins[-self.window :]
        self._seen += len(rows)
        return stats


class FeatureDrift(_WindowedGTest):
    """Windowed G-tests of every feature's bins and of the joint Mahalanobis distance's bins.

    ``update(row)`` takes one feature vector, ``update_batch`` an ``(n, features)`` array.
    """

    def __init__(
        self, profile: ReferenceProfile, window: int = 1000, stride: int = 100, arl: float = 1e6
    ) -> None:
        self.profile = profile
        super().__init__([*profile.features, profile.distance], profile.n, window, stride, arl)

    def _rows(self, xs: npt.ArrayLike) -> Floats:
        return np.asarray(xs, dtype=np.float64).reshape(-1, len(self.profile.features))

    def _bins(self, rows: Floats) -> Ints:
        values = np.column_stack([rows, self.profile.mahalanobis(rows)])
        return np.stack([s.bin(col) for s, col in zip(self._sketches, values.T, strict=True)], axis=1)


class ScoreDrift(_WindowedGTest):
    """Windowed G-tests of the confidence's bins and of the predicted class (prediction drift).

    ``update(score)`` takes one positive-class probability or one row of class probabilities;
    ``update_batch`` an ``(n,)`` or ``(n, classes)`` array.
    """

    def __init__(
        self, profile: ReferenceProfile, window: int = 1000, stride: int = 100, arl: float = 1e6
    ) -> None:
        self.profile = profile
        super().__init__([profile.confidence, profile.predicted], profile.n, window, stride, arl)

    def _rows(self, xs: npt.ArrayLike) -> Floats:
        return as_probabilities(xs)

    def _bins(self, rows: Floats) -> Ints:
        confidence, predicted = self._sketches
        return np.stack([confidence.bin(rows.max(axis=1)), predicted.bin(rows.argmax(axis=1))], axis=1)


class ValueDrift(_WindowedGTest):
    """A windowed G-test of a regression model's predicted values against their reference bins
    (prediction drift without labels). ``update_batch`` takes an ``(n,)`` array of values."""

    def __init__(
        self, profile: RegressionProfile, window: int = 1000, stride: int = 100, arl: float = 1e6
    ) -> None:
        self.profile = profile
        super().__init__([profile.values], profile.n, window, stride, arl)

    def _rows(self, xs: npt.ArrayLike) -> Floats:
        return np.asarray(xs, dtype=np.float64).reshape(-1)

    def _bins(self, rows: Floats) -> Ints:
        return self._sketches[0].bin(rows)[:, None]
