"""A model's reference profile: what its inputs and scores looked like on held-out data.

The trainer builds it once per model version from held-out rows (not the rows the model was fitted on:
on those the model is over-confident) and stores ``to_json()`` in the version record's
``reference_profile`` field; the monitor rebuilds its label-free detectors from it.

Every quantity is summarised by a :class:`Sketch`: quantile bins of the reference values plus one bin
below and one above the reference support, the reference share of events in each bin and the model's
reference error rate in each bin (measured with labels, or the expected error ``1 - confidence`` without),
shrunk towards the overall rate by how much the bins really differ.

>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2000, 2)).astype(np.float32)
>>> p1 = 1 / (1 + np.exp(-4 * x[:, 0]))
>>> labels = (rng.random(2000) < p1).astype(np.int64)
>>> prof = ReferenceProfile.from_training(x, p1, ["a", "b"], labels)
>>> [round(w, 2) for w in prof.importance]
[1.0, 0.0]
>>> ReferenceProfile.from_json(prof.to_json()) == prof
True

A model with a spec also keeps, per input field, its null rate and (categorical fields) the share of
each code on the reference rows (:class:`FieldReference`); profiles without them (older ones, the
built-in architectures') load and serialise as before.

>>> ref = FieldReference.of_codes("country", np.array([1, 2, 2, 0]), np.array([0, 0, 0, 1]), 2)
>>> ref.codes, ref.null_rate, ref.unseen_rate
((0.25, 0.25, 0.5), 0.25, 0.0)

A regression model's profile (:class:`RegressionProfile`) keeps its mean absolute error on the
reference rows, a sketch of its predicted values and the same field references; its JSON says
``"task": "regression"``, and :func:`load_profile` reads either kind.

>>> predicted = rng.normal(30, 5, 1000)
>>> reg = RegressionProfile.from_training(predicted, predicted + rng.normal(0, 2, 1000))
>>> round(reg.mae, 1), round(reg.rmse, 1)
(1.7, 2.1)
>>> load_profile(reg.to_json()) == reg, load_profile(prof.to_json()) == prof
(True, True)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Sketch:
    """Binned reference distribution of one quantity.

    Bin 0 holds values below ``low``, bin ``len(edges) + 2`` values above ``high``, the bins between
    them are cut at ``edges``. ``probs`` and ``error`` have one entry per bin.
    """

    edges: tuple[float, ...]
    low: float
    high: float
    probs: tuple[float, ...]
    error: tuple[float, ...]

    def bin(self, values: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """The bin of every value."""
        v = np.asarray(values, dtype=np.float64)
        inner = 1 + np.searchsorted(np.asarray(self.edges), v, side="left")
        return np.where(v < self.low, 0, np.where(v > self.high, len(self.edges) + 2, inner))

    @classmethod
    def build(
        cls, values: Floats, errors: Floats, edges: Floats, out_error: tuple[float | None, float | None]
    ) -> Sketch:
        """Count ``values`` into bins cut at ``edges``.

        ``out_error`` is the error assumed below and above the reference support (``None``: the
        nearest bin's).
        """
        n = len(values)
        low, high = float(values.min()), float(values.max())
        draft = cls(tuple(float(e) for e in edges), low, high, (), ())
        index = draft.bin(values)
        size = len(edges) + 3
        counts = np.bincount(index, minlength=size).astype(np.float64)
        error = shrunk_means(index, errors, counts)
        below, above = out_error
        error[0] = error[1] if below is None else below
        error[-1] = error[-2] if above is None else above
        # A new value from the same distribution falls outside the sample's range with probability 1/(n+1).
        probs = np.maximum(counts / n * (1 - 2 / (n + 1)), 0.5 / n)
        probs[0] = probs[-1] = 1 / (n + 1)
        probs /= probs.sum()
        return cls(draft.edges, low, high, tuple(probs.tolist()), tuple(error.tolist()))

    @property
    def mean_error(self) -> float:
        """The reference mean of the per-event error proxy ``error[bin(x)]``."""
        return float(np.dot(np.asarray(self.probs), np.asarray(self.error)))


def shrunk_means(index: npt.NDArray[np.intp], values: Floats, counts: Floats) -> Floats:
    """Per-bin means shrunk towards the overall mean by how much the bins really differ (empirical Bayes).

    A bin's raw mean is noisy (a few hundred events); bins of a feature the error does not depend on
    all get the overall mean instead of their noise.
    """
    overall = float(values.mean())
    used = counts > 0
    raw = np.full(len(counts), overall)
    raw[used] = np.bincount(index, weights=values, minlength=len(counts))[used] / counts[used]
    within = float(((values - raw[index]) ** 2).mean())
    n = len(values)
    between = float((counts * (raw - overall) ** 2).sum()) / n - (used.sum() - 1) * within / n
    tau2 = max(between, 0.0)
    noise = within / np.maximum(counts, 1.0)
    weight = np.where(used, tau2 / (tau2 + noise + 1e-300), 0.0)
    out: Floats = overall + weight * (raw - overall)
    return out


def quantile_edges(values: Floats, bins: int) -> Floats:
    """Distinct inner quantile cut points (fewer than ``bins - 1`` where values tie)."""
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def as_probabilities(scores: npt.ArrayLike) -> Floats:
    """``(n,)`` positive-class probabilities or ``(n, classes)`` class probabilities, as ``(n, classes)``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        return np.stack([1 - s, s], axis=1)
    if s.ndim != 2:
        raise ValueError(f"scores must be (n,) or (n, classes), not {s.shape}")
    return s


def score_dependence(column: npt.NDArray[np.intp], probs: Floats) -> float:
    """Share of the score variance explained by one binned feature (correlation ratio), bias-corrected."""
    n = len(column)
    counts = np.bincount(column).astype(np.float64)
    used = counts > 0
    means = np.stack([np.bincount(column, weights=p) for p in probs.T])[:, used] / counts[used]
    between = float((counts[used] * (means - probs.mean(axis=0)[:, None]) ** 2).sum())
    total = float(((probs - probs.mean(axis=0)) ** 2).sum())
    if total <= 0:
        return 0.0
    chance = float(used.sum() - 1) / max(n - 1, 1)
    return max(0.0, (between / total - chance) / (1 - chance))


@dataclass(frozen=True)
class FieldReference:
    """One input field on the reference rows: how often it was null and, for a categorical field, how
    often each code came up."""

    name: str
    kind: str
    """``numeric``, ``boolean`` or ``categorical`` (as the model's spec says)."""
    null_rate: float = 0.0
    codes: tuple[float, ...] = ()
    """Categorical: the share of each code as the model saw it (0: unseen or null; ``k``: the ``k``-th
    category)."""
    unseen_rate: float = 0.0
    """Categorical: the share of values that were not null and not in the vocabulary."""
    low: float | None = None
    """Numeric: the smallest value that was not null (None: not known)."""
    high: float | None = None
    """Numeric: the largest value that was not null."""

    @classmethod
    def of_values(
        cls, name: str, kind: str, nulls: npt.ArrayLike, values: npt.ArrayLike | None = None
    ) -> FieldReference:
        """A numeric or boolean field from which values were null and (numeric) the values."""
        null = np.asarray(nulls, dtype=np.bool_).ravel()
        rate = float(null.mean()) if null.size else 0.0
        seen = None if values is None else np.asarray(values, dtype=np.float64).ravel()
        if seen is not None and null.size == seen.size:
            seen = seen[~null]
        if kind != "numeric" or seen is None or not seen.size:
            return cls(name, kind, rate)
        return cls(name, kind, rate, low=float(seen.min()), high=float(seen.max()))

    @classmethod
    def of_codes(
        cls, name: str, codes: npt.ArrayLike, nulls: npt.ArrayLike, n_categories: int
    ) -> FieldReference:
        """A categorical field from its codes (``0..n_categories``) and which values were null."""
        c = np.asarray(codes, dtype=np.int64)
        null = np.asarray(nulls, dtype=np.bool_).reshape(len(c)) if np.size(nulls) else np.zeros(len(c), bool)
        n = max(len(c), 1)
        counts = np.bincount(np.clip(c, 0, n_categories), minlength=n_categories + 1)
        return cls(
            name,
            "categorical",
            float(null.sum() / n),
            tuple((counts / n).tolist()),
            float(((c == 0) & ~null).sum() / n),
        )


@dataclass(frozen=True)
class ReferenceProfile:
    """The reference summary the label-free detectors compare production batches with."""

    feature_names: tuple[str, ...]
    n: int
    n_classes: int
    features: tuple[Sketch, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    importance: tuple[float, ...]
    """How much the scores depend on each feature, scaled so the largest is 1."""
    confidence: Sketch
    """The top class probability; its ``error`` is the calibration map confidence -> error rate."""
    predicted: Sketch
    """The predicted class (bins cut between class indices)."""
    whitening: tuple[tuple[float, ...], ...]
    """Inverse correlation matrix of the standardised features, for the joint (Mahalanobis) distance."""
    distance: Sketch
    """The squared Mahalanobis distance of each reference row."""
    reference_error: float | None
    """Error rate on the reference rows when labels were given."""
    expected_error: float
    """Mean calibrated expected error (``confidence.mean_error``)."""
    fields: tuple[FieldReference, ...] = ()
    """Per input field of a model with a spec (in the spec's order): null rates, category shares."""

    @classmethod
    def from_training(
        cls,
        features: npt.ArrayLike,
        scores: npt.ArrayLike,
        feature_names: Sequence[str],
        labels: npt.ArrayLike | None = None,
        bins: int = 16,
    ) -> ReferenceProfile:
        """Summarise held-out rows, the model's scores on them and, when known, their labels."""
        x = np.asarray(features, dtype=np.float64)
        probs = as_probabilities(scores)
        if x.ndim != 2 or x.shape[1] != len(feature_names) or len(x) != len(probs) or len(x) < 2 * bins:
            raise ValueError(f"need (n, {len(feature_names)}) features and n scores with n >= {2 * bins}")
        confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
        errors = 1.0 - confidence if labels is None else (predicted != np.asarray(labels)).astype(np.float64)
        n_classes = probs.shape[1]
        chance = 1.0 - 1.0 / n_classes
        conf = Sketch.build(confidence, errors, quantile_edges(confidence, bins), (chance, None))
        mean_err = float(errors.mean())
        columns = [quantile_edges(col, bins) for col in x.T]
        dependence = np.array(
            [
                score_dependence(Sketch((*e,), -np.inf, np.inf, (), ()).bin(col), probs)
                for e, col in zip(columns, x.T, strict=True)
            ]
        )
        importance = dependence / dependence.max() if dependence.max() > 0 else dependence
        sketches = tuple(
            Sketch.build(col, errors, e, (out, out))
            for col, e, out in zip(x.T, columns, mean_err + importance * (chance - mean_err), strict=True)
        )
        mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-9)
        z = (x - mean) / std
        d = x.shape[1]
        inv = np.linalg.inv(np.cov(z, rowvar=False).reshape(d, d) + 1e-3 * np.eye(d))
        d2 = np.einsum("ij,jk,ik->i", z, inv, z)
        return cls(
            feature_names=tuple(feature_names),
            n=len(x),
            n_classes=n_classes,
            features=sketches,
            means=tuple(mean.tolist()),
            stds=tuple(std.tolist()),
            importance=tuple(importance.tolist()),
            confidence=conf,
            predicted=Sketch.build(
                predicted.astype(np.float64), errors, np.arange(n_classes - 1) + 0.5, (chance, chance)
            ),
            whitening=tuple(tuple(row) for row in inv.tolist()),
            distance=Sketch.build(d2, errors, quantile_edges(d2, bins), (mean_err, mean_err)),
            reference_error=None if labels is None else mean_err,
            expected_error=conf.mean_error,
        )

    def mahalanobis(self, features: npt.ArrayLike) -> Floats:
        """Squared Mahalanobis distance of each row to the reference mean."""
        z = (np.asarray(features, dtype=np.float64) - np.asarray(self.means)) / np.asarray(self.stds)
        out: Floats = np.einsum("ij,jk,ik->i", z, np.asarray(self.whitening), z)
        return out

    def field(self, name: str) -> FieldReference | None:
        """The reference of input field ``name``, when the profile has one."""
        return next((f for f in self.fields if f.name == name), None)

    def to_json(self) -> str:
        """Compact JSON (a few kB for ten features), exact to float64. ``fields`` is written only when
        there are some, so a profile without them reads in monitors that predate it."""
        data = asdict(self)
        if not self.fields:
            del data["fields"]
        return json.dumps({"version": 1, **data}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        data: dict[str, Any] = json.loads(text)
        if data.get("task") == "regression":
            raise ValueError("this is a regression model's profile: read it with load_profile")
        if data.pop("version", None) != 1:
            raise ValueError("unknown reference profile version; rebuild it with this Driftline version")
        for key in ("confidence", "predicted", "distance"):
            data[key] = _sketch(data[key])
        data["features"] = tuple(_sketch(s) for s in data["features"])
        data["whitening"] = tuple(tuple(row) for row in data["whitening"])
        for key in ("feature_names", "means", "stds", "importance"):
            data[key] = tuple(data[key])
        data["fields"] = _fields(data.get("fields", ()))
        return cls(**data)


@dataclass(frozen=True)
class RegressionProfile:
    """A regression model's reference: its error and its predicted values on held-out rows."""

    n: int
    mae: float
    """Mean absolute error on the reference rows (the ``ErrorRise`` detector's reference)."""
    rmse: float
    values: Sketch
    """The predicted values; each bin's ``error`` is the absolute error there (shrunk mean)."""
    fields: tuple[FieldReference, ...] = ()
    """Per input field (in the spec's order): null rates, category shares."""

    @classmethod
    def from_training(
        cls, predicted: npt.ArrayLike, targets: npt.ArrayLike, bins: int = 16
    ) -> RegressionProfile:
        """Summarise the model's predictions on held-out rows and their true targets."""
        p = np.asarray(predicted, dtype=np.float64).ravel()
        t = np.asarray(targets, dtype=np.float64).ravel()
        if len(p) != len(t) or len(p) < 2 * bins:
            raise ValueError(f"need as many predictions as targets, at least {2 * bins}: {len(p)}, {len(t)}")
        if not (np.isfinite(p).all() and np.isfinite(t).all()):
            raise ValueError("predictions and targets must be finite")
        errors = np.abs(p - t)
        values = Sketch.build(p, errors, quantile_edges(p, bins), (None, None))
        return cls(len(p), float(errors.mean()), float(np.sqrt((errors**2).mean())), values)

    def field(self, name: str) -> FieldReference | None:
        """The reference of input field ``name``, when the profile has one."""
        return next((f for f in self.fields if f.name == name), None)

    def to_json(self) -> str:
        return json.dumps({"version": 1, "task": "regression", **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RegressionProfile:
        data: dict[str, Any] = json.loads(text)
        if data.pop("version", None) != 1 or data.pop("task", None) != "regression":
            raise ValueError("not a regression reference profile of a known version; rebuild it")
        return cls(
            int(data["n"]),
            float(data["mae"]),
            float(data["rmse"]),
            _sketch(data["values"]),
            _fields(data["fields"]),
        )


Profile = ReferenceProfile | RegressionProfile
"""A model version's reference profile, of either task."""


def load_profile(text: str) -> Profile:
    """A version record's ``reference_profile``, of whichever task it was written for."""
    if json.loads(text).get("task") == "regression":
        return RegressionProfile.from_json(text)
    return ReferenceProfile.from_json(text)


def _fields(data: Sequence[dict[str, Any]]) -> tuple[FieldReference, ...]:
    return tuple(FieldReference(**{**f, "codes": tuple(f.get("codes", ()))}) for f in data)


def _sketch(data: dict[str, Any]) -> Sketch:
    return Sketch(tuple(data["edges"]), data["low"], data["high"], tuple(data["probs"]), tuple(data["error"]))
