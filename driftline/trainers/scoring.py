"""Judging a model by its task's metric: accuracy, log loss or ROC AUC for classification; MAE or RMSE
for regression. Pure numpy.

>>> y = np.array([0, 1, 1, 0])
>>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
>>> round(score("accuracy", y, p), 3), round(score("log_loss", y, p), 3), score("roc_auc", y, p)
(0.75, 0.4, 1.0)
>>> score("mae", np.array([1.0, 2.0]), np.array([[1.5], [2.0]]))
0.25
>>> better("log_loss", 0.30, than=0.35, margin=0.01), better("accuracy", 0.80, than=0.80, margin=0.01)
(True, False)

How sure a win is: a paired test over the same rows. Here the candidate is right on all 8 rows and
the live version wrong on 3 of them; on 1 of 8 the win would be chance-level:

>>> truth = np.array([0, 1, 1, 0, 1, 0, 1, 0])
>>> right, wrong = np.eye(2)[truth], np.eye(2)[1 - truth]
>>> live = np.where(np.arange(8)[:, None] < 3, wrong, right)
>>> round(advantage_confidence("accuracy", truth, right, live), 3)
0.98
>>> once = np.where(np.arange(8)[:, None] < 1, wrong, right)
>>> round(advantage_confidence("accuracy", truth, right, once), 3)
0.841
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    task: str
    """``classification`` or ``regression``."""
    how: str
    """How it is computed, in words (written into the version record's reason)."""
    compute: Callable[[Array, Array], float]


def _accuracy(y: Array, out: Array) -> float:
    return float((out.argmax(axis=1) == y).mean())


def _log_loss(y: Array, out: Array) -> float:
    p = np.clip(out[np.arange(len(y)), y.astype(np.int64)], 1e-15, 1.0)
    return float(-np.log(p).mean())


def _binary_auc(positive: Array, score_: Array) -> float:
    """Mann-Whitney U: the chance that a random positive outscores a random negative (ties count half)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score_, kind="mergesort")
    ranks = np.empty(len(score_), dtype=np.float64)
    sorted_scores = score_[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _roc_auc(y: Array, out: Array) -> float:
    labels = y.astype(np.int64)
    if out.shape[1] == 2:
        return _binary_auc(labels == 1, out[:, 1])
    aucs = [_binary_auc(labels == k, out[:, k]) for k in range(out.shape[1])]
    present = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(present)) if present else float("nan")


def _values(out: Array) -> Array:
    return np.asarray(out, dtype=np.float64).reshape(len(out), -1)[:, 0]


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", True, "classification", "share of rows whose top class is the label", _accuracy),
        Metric(
            "log_loss",
            False,
            "classification",
            "mean negative log of the probability given to the label (clipped at 1e-15)",
            _log_loss,
        ),
        Metric(
            "roc_auc",
            True,
            "classification",
            "ROC AUC of the positive class's score (multiclass: mean of one-vs-rest AUCs)",
            _roc_auc,
        ),
        Metric(
            "mae",
            False,
            "regression",
            "mean absolute error, in the target's unit",
            lambda y, o: float(np.abs(_values(o) - y).mean()),
        ),
        Metric(
            "rmse",
            False,
            "regression",
            "root mean squared error, in the target's unit",
            lambda y, o: float(np.sqrt(((_values(o) - y) ** 2).mean())),
        ),
    )
}


def metric_for(name: str | None, regression: bool) -> Metric:
    """The named metric (checked against the task), or the task's default: accuracy or MAE."""
    task = "regression" if regression else "classification"
    if name is None:
        return METRICS["mae" if regression else "accuracy"]
    metric = METRICS.get(name)
    if metric is None or metric.task != task:
        names = ", ".join(m.name for m in METRICS.values() if m.task == task)
        raise ValueError(f"{name!r} is not a {task} metric; choose one of {names}")
    return metric


def score(name: str, truth: Array, outputs: Array) -> float:
    """``outputs``: class probabilities ``(n, classes)``, or predicted values ``(n,)`` / ``(n, 1)``."""
    metric = METRICS[name]
    if not len(truth):
        return float("nan")
    return metric.compute(np.asarray(truth), np.asarray(outputs, dtype=np.float64).reshape(len(truth), -1))


def better(name: str, candidate: float, *, than: float, margin: float) -> bool:
    """Whether ``candidate`` beats ``than`` by at least ``margin`` in the metric's direction."""
    if np.isnan(candidate):
        return False
    if np.isnan(than):
        return True
    if METRICS[name].higher_is_better:
        return candidate >= than + margin
    return candidate <= than - margin


def row_losses(name: str, truth: Array, outputs: Array) -> Array | None:
    """Each row's loss under the metric (0/1 error, negative log-likelihood, absolute or squared
    error), whose mean orders models as the metric does; None for ROC AUC (not a mean over rows)."""
    y = np.asarray(truth)
    out = np.asarray(outputs, dtype=np.float64).reshape(len(y), -1)
    if name == "accuracy":
        return np.asarray(out.argmax(axis=1) != y, dtype=np.float64)
    if name == "log_loss":
        return -np.log(np.clip(out[np.arange(len(y)), y.astype(np.int64)], 1e-15, 1.0))
    if name == "mae":
        return np.asarray(np.abs(_values(out) - y), dtype=np.float64)
    if name == "rmse":
        return np.asarray((_values(out) - y) ** 2, dtype=np.float64)
    return None


def advantage_confidence(name: str, truth: Array, candidate: Array, live: Array) -> float | None:
    """The one-sided confidence that the candidate's loss is lower than the live version's on rows like
    these: a paired z-test of the per-row loss differences (the normal approximation; rows are many).
    None where the metric has no per-row loss (ROC AUC) or there are fewer than 2 rows."""
    ours, theirs = row_losses(name, truth, candidate), row_losses(name, truth, live)
    if ours is None or theirs is None or len(ours) < 2:
        return None
    gain = theirs - ours
    mean, spread = float(gain.mean()), float(gain.std(ddof=1))
    if spread == 0.0:
        return 1.0 if mean > 0 else 0.0 if mean < 0 else 0.5
    return NormalDist().cdf(mean / (spread / np.sqrt(len(gain))))
