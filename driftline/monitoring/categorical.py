"""Categorical drift: each categorical field's recent code shares against the reference's.

:class:`CategoryDrift` runs the same windowed two-sample G-test as
:class:`~driftline.monitoring.label_free.FeatureDrift` (every ``stride`` events, on the last ``window``),
one channel per categorical field, with the codes as the model sees them (0: unseen or null) as bins and
the reference shares of :class:`~driftline.monitoring.profile.FieldReference` as the other sample. The
threshold is the normal quantile at ``stride / (arl * fields)`` of the Wilson-Hilferty z-score (a
Bonferroni bound: fewer than one false alarm per ``arl`` events, 10^6 by default).

>>> from driftline.monitoring.profile import FieldReference
>>> rng = np.random.default_rng(0)
>>> ref = FieldReference.of_codes("country", rng.choice(4, 500, p=[0.05, 0.5, 0.3, 0.15]),
...                               np.zeros(500, bool), 3)
>>> drift = CategoryDrift([ref], n_reference=500)
>>> drift.update_batch(rng.choice(4, (3000, 1), p=[0.05, 0.5, 0.3, 0.15])) is None
True
>>> drift.update_batch(rng.choice(4, (3000, 1), p=[0.05, 0.2, 0.3, 0.45])) is not None
True
>>> drift.names[drift.worst]
'country'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from driftline.monitoring.label_free import _WindowedGTest
from driftline.monitoring.profile import FieldReference, Sketch

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]

CATEGORY_SHIFT = "category-shift"
"""An alert's ``issue`` when a categorical field's shares moved."""


class CategoryDrift(_WindowedGTest):
    """Windowed G-tests of every categorical field's code shares against the reference's.

    ``update(codes)`` takes one row of codes, ``update_batch`` an ``(n, fields)`` array.
    """

    def __init__(
        self,
        references: Sequence[FieldReference],
        n_reference: int,
        window: int = 1000,
        stride: int = 100,
        arl: float = 1e6,
    ) -> None:
        if not references or any(not r.codes for r in references):
            raise ValueError("need the reference code shares of at least one categorical field")
        self.references = tuple(references)
        self.n_reference = n_reference
        self.names = tuple(r.name for r in references)
        self._sizes = np.array([len(r.codes) for r in references])
        bins = [Sketch((), 0.0, 0.0, r.codes, ()) for r in references]  # only the shares are read
        super().__init__(bins, n_reference, window, stride, arl)

    def _reset(self) -> None:
        super()._reset()
        self._channels = np.zeros(len(self.names))

    def _rearm(self) -> None:
        channels = self._channels
        super()._rearm()
        self._channels = channels

    def _rows(self, xs: npt.ArrayLike) -> Floats:
        return np.asarray(xs, dtype=np.float64).reshape(-1, len(self.names))

    def _bins(self, rows: Floats) -> Ints:
        codes: Ints = np.clip(rows.astype(np.intp), 0, self._sizes - 1)
        return codes

    def _zscores(self, window_bins: Ints) -> Floats:
        z = super()._zscores(window_bins)
        self._channels = z
        return z

    @property
    def channel_statistics(self) -> list[float]:
        """Each field's z-score at the last test."""
        return [float(v) for v in self._channels]

    @property
    def worst(self) -> int:
        """The field with the largest z-score at the last test (the one an alarm names)."""
        return int(np.argmax(self._channels))
