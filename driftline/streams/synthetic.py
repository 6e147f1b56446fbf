"""Labelled synthetic streams from River's generators, with an optional concept drift.

>>> data = generate("sea", count=5, seed=1)
>>> data.features, data.x.shape, data.y.dtype.name
(['x1', 'x2', 'x3'], (5, 3), 'int64')
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from river.datasets import synth


@dataclass(frozen=True)
class Generator:
    features: list[str]
    classes: list[str]
    before: Callable[[int], Any]
    """seed -> the stream before the drift."""
    after: Callable[[int], Any]
    """seed -> the stream after the drift (another concept)."""


AGRAWAL_FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"]

GENERATORS: dict[str, Generator] = {
    "agrawal": Generator(
        AGRAWAL_FEATURES,
        ["group A", "group B"],
        lambda seed: synth.Agrawal(classification_function=0, seed=seed),
        lambda seed: synth.Agrawal(classification_function=7, seed=seed),
    ),
    "sea": Generator(
        ["x1", "x2", "x3"],
        ["negative", "positive"],
        lambda seed: synth.SEA(variant=0, seed=seed),
        lambda seed: synth.SEA(variant=3, seed=seed),
    ),
}


@dataclass(frozen=True)
class LabelledData:
    features: list[str]
    classes: list[str]
    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]


def generate(
    name: str, count: int, seed: int = 42, drift_at: int | None = None, drift_width: int = 1
) -> LabelledData:
    """``count`` labelled rows; with ``drift_at``, the concept changes there (over ``drift_width`` rows)."""
    try:
        gen = GENERATORS[name]
    except KeyError:
        raise ValueError(f"Unknown generator {name!r}; choose one of {', '.join(GENERATORS)}.") from None
    before = itertools.islice(gen.before(seed), count)
    if drift_at is None or drift_at >= count:
        rows = list(before)
    else:
        # Abrupt (width 1) or linear gradual drift: row t comes from the new concept with
        # probability (t - drift_at + 1) / width. Both generators advance in lockstep.
        after = gen.after(seed + 1)
        mix = np.random.default_rng(seed)
        width = max(1, drift_width)
        rows = []
        for t, (old, new) in enumerate(zip(before, after, strict=False)):
            p_new = min(1.0, max(0.0, (t - drift_at + 1) / width))
            rows.append(new if p_new >= 1.0 or (p_new > 0.0 and mix.random() < p_new) else old)
    x = np.array([list(row[0].values()) for row in rows], dtype=np.float32).reshape(-1, len(gen.features))
    y = np.array([int(row[1]) for row in rows], dtype=np.int64)
    return LabelledData(gen.features, gen.classes, x, y)
