"""Decoded records to a model's inputs, with a reason for every record that cannot be used.

Two record shapes are accepted:

* Driftline's ``InputEvent``: a ``features`` array holding the values in the model's order (only for
  models whose inputs are all numeric or boolean);
* any user record with the fields the model's :class:`~driftline.models.spec.ModelSpec` names, of the
  kinds it declares (real business events: decimals, nullable fields, strings, timestamps).

>>> fx = FeatureExtractor.numeric(["a", "b"])
>>> out = fx.extract([{"features": [1.0, 2.0]}, {"a": 3, "b": 4.5}, {"a": 1}, {"features": [1.0]}])
>>> out.numeric.tolist()
[[1.0, 2.0], [3.0, 4.5]]
>>> [(i, r) for i, (r, _) in out.rejected.items()]
[(2, 'missing-field'), (3, 'wrong-length')]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from driftline.models.spec import Encoded, ModelSpec


class FeatureExtractor:
    """Builds a model's input columns from decoded records, per batch."""

    def __init__(self, spec: ModelSpec, model: str = "the model") -> None:
        self.spec = spec
        self.feature_names = [f.name for f in spec.numeric_fields]
        self._model = model
        self.accepts_arrays = not spec.categorical_fields
        self._width = len(self.feature_names)

    @classmethod
    def numeric(cls, feature_names: Sequence[str]) -> FeatureExtractor:
        """For a model of numeric features only (Driftline's built-in architectures)."""
        return cls(ModelSpec.numeric(feature_names, ["0", "1"]))

    def extract(self, records: Sequence[Mapping[str, Any]]) -> Encoded:
        """The usable records' columns (in input order) and the rejected records' reasons."""
        arrays = [i for i, r in enumerate(records) if isinstance(r.get("features"), list)]
        if not arrays:
            return self._named(records)
        named = [i for i, r in enumerate(records) if not isinstance(r.get("features"), list)]
        parts = [self._from_arrays(records, arrays), self._named([records[i] for i in named])]
        for part, index in zip(parts, (arrays, named), strict=True):
            positions = np.asarray(index, dtype=np.int64)
            part.kept = positions[part.kept] if len(part.kept) else part.kept
            part.rejected = {index[i]: why for i, why in part.rejected.items()}
        order = np.argsort(np.concatenate([p.kept for p in parts]), kind="stable")
        ids = [*parts[0].event_ids, *parts[1].event_ids]
        times = [*parts[0].event_times, *parts[1].event_times]
        return Encoded(
            np.concatenate([p.kept for p in parts])[order],
            np.concatenate([p.numeric for p in parts])[order],
            np.concatenate([p.codes for p in parts])[order],
            [ids[k] for k in order.tolist()],
            [times[k] for k in order.tolist()],
            dict(sorted({**parts[0].rejected, **parts[1].rejected}.items())),
            np.concatenate([p.nulls for p in parts if p.nulls is not None])[order],
        )

    def _named(self, records: Sequence[Mapping[str, Any]]) -> Encoded:
        out = self.spec.encode(records)
        if out.nulls is None:
            out.nulls = np.zeros((len(out.kept), len(self.spec.inputs)), dtype=np.bool_)
        if out.rejected and self._model != "the model":
            out.rejected = {i: (r, f"{d} (needed by {self._model})") for i, (r, d) in out.rejected.items()}
        return out

    def _from_arrays(self, records: Sequence[Mapping[str, Any]], index: list[int]) -> Encoded:
        """``InputEvent``-shaped records: the values arrive in the model's order."""
        rejected: dict[int, tuple[str, str]] = {}
        if not self.accepts_arrays:
            names = ", ".join(repr(f.name) for f in self.spec.categorical_fields)
            why = (
                "wrong-shape",
                f"a features array cannot carry the categorical fields {names} of {self._model}; "
                "send records with the model's fields (`driftline models contract NAME`)",
            )
            rejected = dict.fromkeys(range(len(index)), why)
        vectors = [records[i]["features"] for i in index]
        for j, vector in enumerate(vectors):
            if j not in rejected and len(vector) != self._width:
                rejected[j] = (
                    "wrong-length",
                    f"features has {len(vector)} values, {self._model} needs {self._width}",
                )
        kept = [j for j in range(len(index)) if j not in rejected]
        matrix = np.asarray([vectors[j] for j in kept], dtype=np.float32).reshape(len(kept), self._width)
        finite = np.isfinite(matrix).all(axis=1)
        for j in np.flatnonzero(~finite).tolist():
            rejected[kept[j]] = ("non-finite", "a feature value is NaN or infinite")
        kept_rows = np.asarray(kept, dtype=np.int64)[finite]
        times_field = self.spec.event_time.field or "event_time"
        id_field = self.spec.event_id or "event_id"
        chosen = [records[index[j]] for j in kept_rows.tolist()]
        return Encoded(
            kept_rows,
            matrix[finite],
            np.zeros((len(kept_rows), len(self.spec.categorical_fields)), dtype=np.int64),
            [None if r.get(id_field) is None else str(r.get(id_field)) for r in chosen],
            [t if isinstance(t := r.get(times_field), int) else None for r in chosen],
            rejected,
            np.zeros((len(kept_rows), len(self.spec.inputs)), dtype=np.bool_),  # arrays carry no nulls
        )
