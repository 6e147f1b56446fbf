"""Data quality per input field: the share of recent events whose value was null, out of the reference
range, or an unseen category, and whether it rose clearly above its reference level.

:class:`FieldRates` takes one 0/1 flag per event and field (``update_batch`` of an ``(n, fields)``
array) and keeps the last ``window`` events. After each batch, with at least ``min_events`` events at
hand, a field is *raised* when its recent rate ``r`` is clearly above ``limit = reference + margin``:
the one-sided binomial log-likelihood ratio ``n * KL(r || limit)`` exceeds ``threshold`` (nats; by
Chernoff's bound a field whose true rate stays at or below ``limit`` passes it with probability at most
``exp(-threshold)`` per test). A raised field stays raised (one open alert, no storm) until its rate
falls back to ``reference + margin / 2`` or below (it *clears*).

:func:`quality_flags` turns a batch of rows (raw numeric columns, categorical codes, which values were
null) into the three flag matrices.

>>> rates = FieldRates(["tip", "amount"], reference=[0.3, 0.0])
>>> rng = np.random.default_rng(0)
>>> rates.update_batch(np.column_stack([rng.random(1000) < 0.3, np.zeros(1000, bool)])) is None
True
>>> rates.update_batch(np.ones((300, 2), dtype=bool))  # every value null from now on
299
>>> rates.raised.tolist(), rates.rates.round(2).tolist()
([True, True], [0.5, 0.3])
>>> rates.update_batch(np.zeros((1000, 2), dtype=bool)) is None, rates.raised.tolist()
(True, [False, False])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driftline.monitoring.base import DetectorState

Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]

NULLS, OUT_OF_RANGE, UNSEEN = "null", "out-of-range", "unseen-category"
"""What went wrong with a field (an alert's ``issue``)."""


def _kl(rate: Floats, limit: Floats) -> Floats:
    """Bernoulli ``KL(rate || limit)`` (nats), 0 where ``rate <= limit`` or ``limit`` is 0 or 1."""
    r = np.clip(rate, 1e-12, 1 - 1e-12)
    p = np.clip(limit, 1e-12, 1 - 1e-12)
    out: Floats = np.where(
        (rate > limit) & (limit < 1), r * np.log(r / p) + (1 - r) * np.log((1 - r) / (1 - p)), 0.0
    )
    return out


class FieldRates(DetectorState):
    """The recent rate of a per-field flag and which fields rose clearly above their reference rate.

    Follows the detectors' contract (``update``, ``update_batch``, ``drift_detected``, ``statistic``,
    ``threshold``, ``_reset``) but decides once per batch, on the last ``window`` events; the runtime
    state (the recent flags, the raised fields) goes into checkpoints like any detector's.

    Parameters
    ----------
    names
        The fields, one flag column each.
    reference
        Each field's rate on the reference rows (0 where unknown).
    margin
        How far above its reference a field's rate must clearly be to raise it.
    window, min_events
        The recent events the rates are taken over, and the fewest that decide.
    threshold
        Log-likelihood ratio (nats) of "the rate is above ``reference + margin``" that raises a field.
    """

    def __init__(
        self,
        names: Sequence[str],
        reference: Sequence[float],
        margin: float = 0.05,
        window: int = 1000,
        min_events: int = 200,
        threshold: float = 10.0,
    ) -> None:
        if len(names) != len(reference) or not 0 < min_events <= window or margin <= 0:
            raise ValueError("need one reference rate per field, 0 < min_events <= window and margin > 0")
        self.names = tuple(names)
        self.reference = tuple(float(r) for r in reference)
        self.margin, self.window, self.min_events = margin, window, min_events
        self._threshold = threshold
        self._limit = np.minimum(np.asarray(self.reference) + margin, 1.0)
        self._clear = np.asarray(self.reference) + margin / 2
        self._reset()

    def _reset(self) -> None:
        """Also ``statistic`` (the largest field statistic after the last batch) and ``drift_detected``
        (whether the last batch raised a field)."""
        super()._reset()
        self._recent = np.zeros((0, len(self.names)), dtype=np.bool_)
        self._raised = np.zeros(len(self.names), dtype=np.bool_)

    @property
    def raised(self) -> Flags:
        """Which fields are raised (until they clear)."""
        return self._raised.copy()

    @property
    def events(self) -> int:
        """How many recent events the rates are taken over."""
        return len(self._recent)

    @property
    def rates(self) -> Floats:
        """Each field's rate over the recent events (NaN before any)."""
        if not len(self._recent):
            return np.full(len(self.names), np.nan)
        out: Floats = self._recent.mean(axis=0)
        return out

    @property
    def channel_statistics(self) -> Floats:
        """Each field's ``n * KL(rate || reference + margin)`` (0 where the rate is within it)."""
        if len(self._recent) < self.min_events:
            return np.zeros(len(self.names))
        out: Floats = len(self._recent) * _kl(self.rates, self._limit)
        return out

    def update(self, x: npt.ArrayLike) -> None:
        self.update_batch(np.asarray(x, dtype=np.bool_).reshape(1, -1))

    def update_batch(self, xs: npt.ArrayLike) -> int | None:
        """Add a batch of flags; return its last index if it raised a field, else ``None``."""
        flags = np.asarray(xs, dtype=np.bool_).reshape(-1, len(self.names))
        self._recent = np.concatenate([self._recent, flags])[-self.window :]
        self._drift_detected = False
        if len(self._recent) < self.min_events or not len(flags):
            return None
        stats = self.channel_statistics
        self._statistic = float(stats.max(initial=0.0))
        newly = (stats > self._threshold) & ~self._raised
        self._raised = (self._raised | newly) & ~(self.rates <= self._clear)
        self._drift_detected = bool(newly.any())
        return len(flags) - 1 if self._drift_detected else None


@dataclass(frozen=True)
class QualityFlags:
    """One batch's flags per field: null (every input field), out of range (numeric fields with a
    reference range) and unseen (categorical fields)."""

    nulls: Flags
    out_of_range: Flags
    unseen: Flags


def quality_flags(
    numeric: npt.ArrayLike,
    codes: npt.ArrayLike,
    nulls: npt.ArrayLike | None,
    numeric_inputs: Sequence[int],
    categorical_inputs: Sequence[int],
    ranged: Sequence[int],
    low: Sequence[float],
    high: Sequence[float],
) -> QualityFlags:
    """The flags of a batch of rows.

    ``numeric`` ``(n, numeric fields)`` and ``codes`` ``(n, categorical fields)`` are the rows as the
    model's spec encodes them; ``nulls`` ``(n, inputs)`` (or ``None``: none known) which values were
    null. ``numeric_inputs`` and ``categorical_inputs`` are the input index of each numeric and each
    categorical column; ``ranged`` the numeric columns checked against ``[low, high]`` (a null value,
    imputed, is never out of range).
    """
    x = np.asarray(numeric, dtype=np.float64)
    c = np.asarray(codes, dtype=np.int64)
    n = len(x) if x.ndim == 2 and x.shape[1] else len(c)
    width = len(numeric_inputs) + len(categorical_inputs)
    null = np.zeros((n, width), np.bool_) if nulls is None else np.asarray(nulls, dtype=np.bool_)
    columns = x[:, list(ranged)] if len(ranged) else np.zeros((n, 0))
    imputed = null[:, [numeric_inputs[j] for j in ranged]] if len(ranged) else np.zeros((n, 0), np.bool_)
    outside = ((columns < np.asarray(low)) | (columns > np.asarray(high))) & ~imputed
    unseen = (c == 0) & ~null[:, list(categorical_inputs)] if len(categorical_inputs) else c[:, :0] == 0
    return QualityFlags(null, outside, unseen)
