"""The one detector implementation of River's contract: ``update``, ``update_batch`` (one numpy pass
per chunk, returning the first alarm), read-only ``drift_detected``, ``statistic``, ``threshold``, and
``_reset``. After an alarm a detector re-arms and goes on with the next row, so ``update_batch(xs)``
leaves the same state as ``update`` on every element."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
CHUNK = 4096


class DetectorState:
    """What every detector reports: ``drift_detected`` (after the last update), ``statistic`` and
    ``threshold``, read-only, and ``_reset``."""

    _threshold: float

    def __init__(self) -> None:
        self._statistic = 0.0
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    @property
    def statistic(self) -> float:
        return self._statistic

    @property
    def threshold(self) -> float:
        return self._threshold

    def _reset(self) -> None:
        self._statistic = 0.0
        self._drift_detected = False


class BatchDetector(DetectorState):
    """State, properties and the batch loop shared by every detector; subclasses implement ``_rows``
    (the input as a float array) and ``_advance`` (a chunk in, the statistic after each row out), and
    may override ``_rearm`` (what an alarm resets; by default everything)."""

    def _rows(self, xs: npt.ArrayLike) -> Floats:
        raise NotImplementedError

    def _advance(self, rows: Floats) -> Floats:
        """Take rows in; return the statistic after each (``-inf`` where none was computed)."""
        raise NotImplementedError

    def update(self, x: npt.ArrayLike) -> None:
        self.update_batch(np.asarray(x, dtype=np.float64)[None, ...])

    def update_batch(self, xs: npt.ArrayLike) -> int | None:
        rows = self._rows(xs)
        first: int | None = None
        start = 0
        while start < len(rows):
            chunk = rows[start : start + CHUNK]
            stats = self._advance(chunk)
            hits = np.flatnonzero(stats > self._threshold)
            if len(hits) == 0:
                start += len(chunk)
                continue
            first = start + int(hits[0]) if first is None else first
            self._rearm()
            self._statistic = float(stats[hits[0]])
            start += int(hits[0]) + 1
        self._drift_detected = first is not None
        return first

    def _rearm(self) -> None:
        self._reset()
