"""Episodes for the drift benchmark, from River's generators, mixed here (not with ``ConceptDriftStream``).

An episode is ``PRE`` events of the pre-change concept, then a change at ``start``: abrupt, a sigmoid
transition over ``GRADUAL`` events, an incremental drift switched on in the generator itself (Hyperplane's
``mag_change``, RandomRBFDrift's ``change_speed``), or a shift of the inputs (Track C: sub-populations,
class priors, feature noise; labels always come from the clean inputs). ``end`` is where the transition
is over; the detection window is ``[start, end + WINDOW)`` (``INCREMENTAL`` events for incremental drift).

Per generator and seed, one continuing pre-concept stream gives the model's training rows, then its
held-out reference rows, then every episode's pre-change part; post-change rows come from streams with
their own seeds, so no event is used twice.

>>> [c.name for c in CONDITIONS if c.track_b][:3]
['sea abrupt', 'sea gradual', 'agrawal abrupt']
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from river.datasets import synth

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
PRE, WINDOW, GRADUAL, INCREMENTAL = 5000, 2000, 2000, 3000
TRAIN, REFERENCE = 3000, 3000


@dataclass(frozen=True)
class Base:
    """A generator family: its pre-change concept, its post-change concept, or a drift to switch on."""

    pre: Callable[[int], Iterable[Any]]
    post: Callable[[int], Iterable[Any]] | None = None
    switch_on: Callable[[Any], None] | None = None


def _led(seed: int, drift: int) -> Any:
    return synth.LEDDrift(seed=seed, noise_percentage=0.1, irrelevant_features=True, n_drift_features=drift)


def _set(name: str, value: float) -> Callable[[Any], None]:
    return lambda dataset: setattr(dataset, name, value)


BASES: dict[str, Base] = {
    "sea": Base(lambda s: synth.SEA(variant=0, seed=s), lambda s: synth.SEA(variant=3, seed=s)),
    "agrawal": Base(
        lambda s: synth.Agrawal(classification_function=0, seed=s),
        lambda s: synth.Agrawal(classification_function=2, seed=s),
    ),
    "stagger": Base(
        lambda s: synth.STAGGER(classification_function=0, seed=s),
        lambda s: synth.STAGGER(classification_function=1, seed=s),
    ),
    "sine": Base(
        lambda s: synth.Sine(classification_function=0, seed=s),
        lambda s: synth.Sine(classification_function=2, seed=s),
    ),
    "led": Base(lambda s: _led(s, 0), lambda s: _led(s, 3)),
    "hyperplane": Base(lambda s: synth.Hyperplane(seed=s, mag_change=0.0), None, _set("mag_change", 1e-3)),
    "rbf": Base(
        lambda s: synth.RandomRBFDrift(seed_model=s, seed_sample=s, change_speed=0.0),
        None,
        _set("change_speed", 1e-3),
    ),
}

Shift = Callable[[Floats, Ints, np.random.Generator], tuple[Floats, Ints]]


def _keep(rule: Callable[[Floats, Ints, np.random.Generator], npt.NDArray[np.bool_]]) -> Shift:
    def shift(x: Floats, y: Ints, rng: np.random.Generator) -> tuple[Floats, Ints]:
        kept = rule(x, y, rng)
        return x[kept], y[kept]

    return shift


def _noise(columns: list[int], scale: float) -> Shift:
    def shift(x: Floats, y: Ints, rng: np.random.Generator) -> tuple[Floats, Ints]:
        noisy = x.copy()
        noisy[:, columns] += rng.normal(0.0, scale, size=(len(x), len(columns)))
        return noisy, y

    return shift


@dataclass(frozen=True)
class Condition:
    """One kind of episode. ``input_change``: whether P(x) changes, by construction."""

    name: str
    base: str
    kind: str
    """``abrupt``, ``gradual``, ``incremental``, ``shift`` (the pre concept, shifted) or ``none``."""
    input_change: bool
    track_b: bool = False
    shift: Shift | None = None


def _prior(x: Floats, y: Ints, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = (y == 0) | (rng.random(len(y)) < 0.35)
    return out


Region = tuple[int, Callable[[Floats], Any]]


def _shifts(
    base: str, irrelevant: Region, relevant: Region, noisy: list[int], scale: float
) -> list[Condition]:
    """Track C's benign shifts, harmful noise and a stationary control on one base.

    A sub-population keeps only the rows whose column lies in a region (30% of an irrelevant feature's
    range; a relevant feature's region far from the decision boundary); the class prior keeps every
    negative and 35% of the positives; the noise (sd: 10% of the range) is added after labelling.
    """
    return [
        Condition(f"{base} irrelevant subpop", base, "shift", True, shift=_keep(_inside(irrelevant))),
        Condition(f"{base} relevant subpop", base, "shift", True, shift=_keep(_inside(relevant))),
        Condition(f"{base} class prior", base, "shift", True, shift=_keep(_prior)),
        Condition(f"{base} feature noise", base, "shift", True, shift=_noise(noisy, scale)),
        Condition(f"{base} stationary", base, "none", False),
    ]


def _inside(region: Region) -> Callable[[Floats, Ints, np.random.Generator], npt.NDArray[np.bool_]]:
    column, rule = region
    return lambda x, y, rng: np.asarray(rule(x[:, column]), dtype=np.bool_)


CONDITIONS: list[Condition] = [
    Condition("sea abrupt", "sea", "abrupt", False, True),
    Condition("sea gradual", "sea", "gradual", False, True),
    Condition("agrawal abrupt", "agrawal", "abrupt", False, True),
    Condition("agrawal gradual", "agrawal", "gradual", False, True),
    Condition("stagger abrupt", "stagger", "abrupt", False, True),
    Condition("sine abrupt", "sine", "abrupt", False, True),
    Condition("led abrupt", "led", "abrupt", True, True),
    Condition("hyperplane incremental", "hyperplane", "incremental", False, True),
    Condition("rbf incremental", "rbf", "incremental", True, True),
    # SEA: y = x0 + x1 > 8, x2 is irrelevant; the relevant region x0 > 8 is always positive.
    *_shifts("sea", (2, lambda v: v < 3.0), (0, lambda v: v > 8.0), [0, 1], 1.0),
    # Agrawal function 0: y = age < 40 or age >= 60 (age is column 2, salary column 0); age < 35 is far
    # from both boundaries.
    *_shifts("agrawal", (0, lambda v: v > 111_000), (2, lambda v: v < 35), [2], 6.0),
]


@dataclass(frozen=True)
class Episode:
    condition: Condition
    seed: int
    x: Floats
    y: Ints
    start: int
    end: int

    @property
    def stop(self) -> int:
        return len(self.y)


class Rows:
    """A River dataset as consecutive numpy blocks."""

    def __init__(self, dataset: Iterable[Any]) -> None:
        self.dataset = dataset
        self._it: Iterator[Any] = iter(dataset)

    def take(self, n: int) -> tuple[Floats, Ints]:
        rows = list(itertools.islice(self._it, n))
        x = np.array([list(r[0].values()) for r in rows], dtype=np.float64)
        return x, np.array([int(r[1]) for r in rows], dtype=np.int64)

    def take_shifted(self, n: int, shift: Shift, rng: np.random.Generator) -> tuple[Floats, Ints]:
        xs, ys, got = [], [], 0
        while got < n:
            x, y = shift(*self.take(2000), rng)
            xs.append(x)
            ys.append(y)
            got += len(y)
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def transition(length: int, width: int) -> Floats:
    """P(new concept) over a ``width``-event sigmoid transition, ~0.007 at its start and ~0.993 at its end."""
    t = np.arange(length, dtype=np.float64)
    out: Floats = 1 / (1 + np.exp(-10 * (t - width / 2) / width))
    return out


def episodes_for(base_name: str, seed: int, pre: Rows) -> list[Episode]:
    """Every condition's episode on one base and seed (``pre``: past the training and reference rows)."""
    base = BASES[base_name]
    out = []
    for k, cond in enumerate(c for c in CONDITIONS if c.base == base_name):
        other = 1_000_003 * (k + 1) + seed
        rng = np.random.default_rng([seed, k])
        if cond.kind == "incremental":
            x0, y0 = pre.take(PRE)
            assert base.switch_on is not None
            base.switch_on(pre.dataset)
            x1, y1 = pre.take(INCREMENTAL)
            out.append(Episode(cond, seed, np.concatenate([x0, x1]), np.concatenate([y0, y1]), PRE, PRE))
            break  # the pre-concept stream has drifted: the incremental episode comes last
        width = GRADUAL if cond.kind == "gradual" else 0
        x0, y0 = pre.take(PRE + width)
        if cond.kind in ("abrupt", "gradual"):
            assert base.post is not None
            x1, y1 = Rows(base.post(other)).take(width + WINDOW)
        elif cond.kind == "shift":
            assert cond.shift is not None
            x1, y1 = Rows(base.pre(other)).take_shifted(width + WINDOW, cond.shift, rng)
        else:
            x1, y1 = Rows(base.pre(other)).take(width + WINDOW)
        if width:
            new = rng.random(width) < transition(width, width)
            x1[:width] = np.where(new[:, None], x1[:width], x0[PRE:])
            y1[:width] = np.where(new, y1[:width], y0[PRE:])
        x = np.concatenate([x0[:PRE], x1])
        out.append(Episode(cond, seed, x, np.concatenate([y0[:PRE], y1]), PRE, PRE + width))
    return out
