"""Joining late ground truth with predictions: a windowed join on event id with a time-to-live.

Labels arrive late and in any order, sometimes before the monitor has read the prediction they
belong to. Both sides wait in insertion-ordered buffers until their partner arrives or until they
are older than ``ttl_ms`` in event time (then they expire, counted, so memory stays bounded). A hard
cap on buffered entries bounds memory even when event times are wrong.

>>> join = LabelJoin(ttl_ms=1000)
>>> join.add_predictions(["a", "b"], np.array([1, 0]), ["1", "1"], np.array([10, 20]))
Joined(size=0)
>>> hits = join.add_labels(["b", "zz"], np.array([1, 1]), np.array([20, 30]))
>>> hits.event_ids, hits.errors.tolist(), join.pending
(['b'], [True], (1, 1))
>>> join.expire(now_ms=5000), join.pending
(2, (0, 0))
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]
"""Predicted and true values: class indices for classification (exact in float64), numbers for
regression."""


@dataclass
class Joined:
    """Predictions matched with their labels, in the order the matches were made."""

    event_ids: list[str] = field(default_factory=list)
    predicted: Values = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    labels: Values = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    versions: list[str] = field(default_factory=list)
    event_times: Ints = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def errors(self) -> npt.NDArray[np.bool_]:
        """Classification: whether each prediction was wrong."""
        return np.asarray(self.predicted != self.labels, dtype=np.bool_)

    @property
    def abs_errors(self) -> Values:
        """Regression: each prediction's absolute error, in the target's unit."""
        return np.abs(self.predicted - self.labels)

    def __len__(self) -> int:
        return len(self.event_ids)

    def __repr__(self) -> str:
        return f"Joined(size={len(self)})"


class LabelJoin:
    """Pending predictions and labels, matched by event id."""

    def __init__(self, ttl_ms: int, max_pending: int = 2_000_000) -> None:
        self.ttl_ms = ttl_ms
        self.max_pending = max_pending
        self._predictions: OrderedDict[str, tuple[float, str, int]] = OrderedDict()
        """event id -> (predicted class, model version, event time)."""
        self._labels: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """event id -> (label, event time)."""
        self.expired = 0
        """Entries dropped unmatched so far (by age or by the cap)."""

    @property
    def pending(self) -> tuple[int, int]:
        """(predictions, labels) waiting for their partner."""
        return len(self._predictions), len(self._labels)

    def add_predictions(
        self, event_ids: Sequence[str], predicted: npt.ArrayLike, versions: Sequence[str], event_times: Ints
    ) -> Joined:
        out: list[tuple[str, float, float, str, int]] = []
        waiting, labels = self._predictions, self._labels
        for event_id, p, v, t in zip(
            event_ids,
            np.asarray(predicted, dtype=np.float64).tolist(),
            versions,
            event_times.tolist(),
            strict=True,
        ):
            label = labels.pop(event_id, None)
            if label is None:
                waiting[event_id] = (p, v, t)
            else:
                out.append((event_id, p, label[0], v, t))
        self._cap()
        return _joined(out)

    def add_labels(self, event_ids: Sequence[str], labels: npt.ArrayLike, event_times: Ints) -> Joined:
        out: list[tuple[str, float, float, str, int]] = []
        waiting, predictions = self._labels, self._predictions
        for event_id, y, t in zip(
            event_ids, np.asarray(labels, dtype=np.float64).tolist(), event_times.tolist(), strict=True
        ):
            prediction = predictions.pop(event_id, None)
            if prediction is None:
                waiting[event_id] = (y, t)
            else:
                out.append((event_id, prediction[0], y, prediction[1], prediction[2]))
        self._cap()
        return _joined(out)

    def expire(self, now_ms: int) -> int:
        """Drop entries whose event time is more than ``ttl_ms`` before ``now_ms``; return how many."""
        horizon, dropped = now_ms - self.ttl_ms, 0
        while self._predictions and next(iter(self._predictions.values()))[2] < horizon:
            self._predictions.popitem(last=False)
            dropped += 1
        while self._labels and next(iter(self._labels.values()))[1] < horizon:
            self._labels.popitem(last=False)
            dropped += 1
        self.expired += dropped
        return dropped

    def _cap(self) -> None:
        for buffer in (self._predictions, self._labels):
            while len(buffer) > self.max_pending:
                buffer.popitem(last=False)
                self.expired += 1


class RecentMean:
    """The mean of the last ``window`` values (a regression model's recent absolute error).

    >>> m = RecentMean(window=3)
    >>> m.add(np.array([1.0, 2.0])), m.add(np.array([3.0, 5.0]))
    (1.5, 3.3333333333333335)
    """

    def __init__(self, window: int) -> None:
        self._values: npt.NDArray[np.float64] = np.empty(0)
        self.window = window

    def add(self, values: npt.ArrayLike) -> float | None:
        """Add values; the mean of the last ``window`` (None while there are none)."""
        self._values = np.concatenate([self._values, np.asarray(values, dtype=np.float64)])[-self.window :]
        return float(self._values.mean()) if len(self._values) else None


def _joined(rows: list[tuple[str, float, float, str, int]]) -> Joined:
    if not rows:
        return Joined()
    ids, predicted, labels, versions, times = zip(*rows, strict=True)
    return Joined(
        list(ids),
        np.asarray(predicted, dtype=np.float64),
        np.asarray(labels, dtype=np.float64),
        list(versions),
        np.asarray(times, dtype=np.int64),
    )
