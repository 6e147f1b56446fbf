"""Records to one float32 matrix, with a reason for every row that cannot be used.

A model declares its features by name. Two record shapes are accepted:

* Driftline's ``InputEvent``: a ``features`` array holding the values in the model's order;
* any user record that has a numeric field for each feature name (real business events).

>>> fx = FeatureExtractor(["a", "b"])
>>> m, bad = fx.extract([{"features": [1.0, 2.0]}, {"a": 3, "b": 4.5}, {"a": 1}, {"features": [1.0]}])
>>> m.tolist()
[[1.0, 2.0], [3.0, 4.5]]
>>> [(i, r) for i, (r, _) in bad.items()]
[(2, 'missing-field'), (3, 'wrong-length')]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
Rejections = dict[int, tuple[str, str]]
"""Row index to (reason, detail)."""


class FeatureExtractor:
    """Builds the model's input matrix from decoded records, per batch."""

    def __init__(self, feature_names: Sequence[str]) -> None:
        self.feature_names = list(feature_names)
        self._width = len(self.feature_names)

    def extract(self, records: Sequence[dict[str, Any]]) -> tuple[Matrix, Rejections]:
        """Return the matrix of usable rows (in input order) and the rejected rows' reasons."""
        rows: list[Any] = [None] * len(records)
        rejected: Rejections = {}
        for i, record in enumerate(records):
            vector = record.get("features")
            if isinstance(vector, list):
                if len(vector) != self._width:
                    rejected[i] = (
                        "wrong-length",
                        f"features has {len(vector)} values, the model needs {self._width}",
                    )
                else:
                    rows[i] = vector
            else:
                rows[i] = self._named(record, i, rejected)
        kept = [row for i, row in enumerate(rows) if i not in rejected]
        matrix = np.asarray(kept, dtype=np.float32).reshape(len(kept), self._width)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            kept_index = [i for i in range(len(records)) if i not in rejected]
            for j in np.flatnonzero(~finite):
                rejected[kept_index[j]] = ("non-finite", "a feature value is NaN or infinite")
            matrix = matrix[finite]
        return matrix, rejected

    def _named(self, record: dict[str, Any], i: int, rejected: Rejections) -> list[float] | None:
        try:
            return [float(record[name]) for name in self.feature_names]
        except KeyError as exc:
            rejected[i] = ("missing-field", f"the record has no field {exc.args[0]!r}")
        except (TypeError, ValueError) as exc:
            rejected[i] = ("bad-type", f"a feature is not numeric: {exc}")
        return None
