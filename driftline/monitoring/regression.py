"""A regression model's error rise, from the absolute errors of its labelled predictions.

:class:`ErrorRise` is a one-sided CUSUM (Page's test) of standardised absolute errors
``z = min(|e| / mae, clip) - 1 - drift``: its walk drifts down while the mean absolute error stays at
the reference ``mae`` and climbs once it rises by more than ``drift`` (a share of ``mae``). The
reference MAE is given (a profile's) or estimated from the first ``grace_period`` errors after a
start, and again after each alarm (the new level becomes the reference, as
:class:`~driftline.monitoring.detectors.BernoulliGLR` does). Dividing by the MAE makes one threshold
fit every target unit; clipping bounds what one wild error can do.

The default threshold (20) was calibrated on simulated stationary errors (:func:`false_alarm_rate`):
half-normal, exponential (Laplace residuals) and Student-t(3) absolute errors gave fewer than 1 false
alarm per 10^5 events over 2 * 10^6-event runs restarting after each alarm; a doubled MAE is found
within about 30 events, a 50% rise within about 80.

>>> rng = np.random.default_rng(2)
>>> errors = np.abs(np.concatenate([rng.normal(0, 1.0, 5000), rng.normal(0, 2.0, 1000)]))
>>> det = ErrorRise()
>>> first = det.update_batch(errors)
>>> 5000 <= first < 5100, det.drift_detected
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from driftline.monitoring.base import BatchDetector

Floats = npt.NDArray[np.float64]


class ErrorRise(BatchDetector):
    """Page's CUSUM of standardised absolute errors against a reference mean absolute error.

    Parameters
    ----------
    reference_mae
        The reference MAE; ``None``: the mean of the first ``grace_period`` errors after each start.
    drift
        The rise (a share of the reference MAE) the walk tolerates.
    threshold
        The CUSUM value that raises an alarm.
    grace_period
        Errors that estimate the reference MAE when none is given.
    clip
        Most that one standardised error counts.
    """

    def __init__(
        self,
        reference_mae: float | None = None,
        drift: float = 0.25,
        threshold: float = 20.0,
        grace_period: int = 500,
        clip: float = 4.0,
    ) -> None:
        if reference_mae is not None and reference_mae <= 0:
            raise ValueError("reference_mae must be positive")
        if not (drift > 0 and threshold > 0 and grace_period >= 1 and clip > 1 + drift):
            raise ValueError("need drift > 0, threshold > 0, grace_period >= 1 and clip > 1 + drift")
        self.reference_mae = reference_mae
        self.drift = drift
        self._threshold = threshold
        self.grace_period = grace_period
        self.clip = clip
        super().__init__()
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._warmup = np.zeros(2)
        """Errors seen for the reference MAE's estimate, and their sum."""
        self._mae = 0.0 if self.reference_mae is None else float(self.reference_mae)
        self._cusum = 0.0

    @property
    def mae(self) -> float | None:
        """The reference MAE in use (``None`` while it is being estimated)."""
        return self._mae if self._mae > 0 else None

    def _rows(self, xs: npt.ArrayLike) -> Floats:
        return np.abs(np.asarray(xs, dtype=np.float64).ravel())

    def _advance(self, rows: Floats) -> Floats:
        stats = np.full(len(rows), -np.inf)
        start = 0
        if self.mae is None:
            seen, total = self._warmup
            start = min(self.grace_period - int(seen), len(rows))
            self._warmup = np.array([seen + start, total + float(rows[:start].sum())])
            if seen + start >= self.grace_period:
                self._mae = max(self._warmup[1] / self._warmup[0], 1e-12)
        if start == len(rows):
            return stats
        z = np.minimum(rows[start:] / self._mae, self.clip) - 1.0 - self.drift
        walk = self._cusum + np.cumsum(z)
        sums = walk - np.minimum(np.minimum.accumulate(walk), 0.0)
        self._cusum = float(sums[-1])
        self._statistic = self._cusum
        stats[start:] = sums
        return stats


def false_alarm_rate(sample: np.random.Generator, draw: str, events: int, **params: float) -> float:
    """False alarms per 10^5 events of :class:`ErrorRise` on stationary absolute errors of one kind
    (``half-normal``, ``exponential``, ``t3``), restarting after each alarm (the calibration run)."""
    makers: dict[str, Callable[[int], Floats]] = {
        "half-normal": lambda n: np.abs(sample.normal(size=n)),
        "exponential": lambda n: sample.exponential(size=n),
        "t3": lambda n: np.abs(sample.standard_t(3, size=n)),
    }
    det = ErrorRise(**params)  # type: ignore[arg-type]
    alarms = 0
    for _ in range(events // 100_000):
        errors = makers[draw](100_000)
        while (first := det.update_batch(errors)) is not None:
            alarms += 1
            det._reset()  # update_batch went on past the alarm: feed the rest again from the alarm
            errors = errors[first + 1 :]
    return alarms / (events / 100_000)
