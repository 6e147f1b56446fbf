"""``driftline bench drift``: our drift detectors against River's, on the same episodes, in one run.

The protocol is ``shared/reference/drift-benchmark.md``'s; what is measured:

* **Track A** (model-free): Bernoulli error streams ``p0 -> p1`` (abrupt, or a 2000-event sigmoid).
* **Track B** (label-based): a model (the product's MLP) is fitted once per generator and seed on
  pre-change rows and frozen; its 0/1 errors on each episode feed the detectors (see
  :mod:`driftline.bench.drift_streams` for the nine River streams and how they are mixed).
* **Tracks A and B report** per detector: mean delay (first alarm in the detection window minus the
  change, over detected episodes), missed-detection rate, and false alarms per 10^5 events before the
  change (fresh detector per episode) and on stationary streams (i.i.d. Bernoulli at the stream's
  pre-change error rate, which is exactly what a frozen model's errors on an i.i.d. stream are).
* **Track C** (label-free): the detectors see features and scores only, on the same streams plus benign
  shifts (sub-population of an irrelevant feature, of a relevant feature away from the boundary, a
  class-prior change), harmful feature noise and a stationary control, on SEA and Agrawal. An episode
  is *harmful* when the model's error after the change (``[end, window end)``) exceeds its pre-change
  error by at least 0.03, whatever the condition's intent. Precision = alerted harmful episodes / all
  alerted episodes (an episode is alerted by an alarm in its detection window); "strict" precision also
  counts every episode with a pre-change alarm as a false alert. Recall is given over all harmful
  episodes and over the harmful episodes whose inputs change (P(x), hence the scores, by construction).
  Pure concept drift (SEA, Agrawal, STAGGER, Sine, Hyperplane) leaves P(x) unchanged: no label-free
  monitor can see it, so recall over all harmful episodes is at most the **ceiling** reported beside
  it (the share of harmful episodes with an input change).

Our GLR runs at its default threshold and at a stricter one (13, calibrated to at most ~0.06 false
alarms per 10^5 on simulated streams), so that it can be compared at River's own false-alarm levels.
River's ADWIN, PageHinkley and HDDM_A (defaults) run on the same errors; ADWIN, PageHinkley and KSWIN on
the score (top-class probability) and one ADWIN per feature run on the same Track C episodes. KSWIN
(0.25 ms per event) starts 1000 events before the change; it remembers only 100, so this changes
nothing but its pre-change false alarms are counted over those 1000 events.

Results are deterministic given the seed counts; the library prints nothing.

>>> from driftline.bench.drift_streams import CONDITIONS
>>> len([c for c in CONDITIONS if c.track_b]), len(CONDITIONS)
(9, 19)
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from driftline.bench.drift_eval import (
    LABEL_BASED,
    base_records,
    bernoulli_episode,
    label_based,
    stationary_alarms,
)
from driftline.bench.drift_report import summarise
from driftline.bench.drift_streams import BASES, CONDITIONS, GRADUAL, PRE, WINDOW
from driftline.bench.drift_tables import format_tables

__all__ = ["TRACK_A", "BenchSettings", "format_tables", "run_drift_bench"]

Progress = Callable[[str, int, int], None]
TRACK_A: list[tuple[str, float, float, int]] = [
    (".20->.25 abrupt", 0.20, 0.25, 0),
    (".20->.30 abrupt", 0.20, 0.30, 0),
    (".20->.40 abrupt", 0.20, 0.40, 0),
    (".20->.30 gradual", 0.20, 0.30, GRADUAL),
    (".05->.10 abrupt", 0.05, 0.10, 0),
]


@dataclass(frozen=True)
class BenchSettings:
    seeds: int
    """Seeds per Track B/C generator."""
    track_a_seeds: int
    stationary_events: int
    kswin: bool
    workers: int


def settings_for(
    quick: bool,
    seeds: int | None = None,
    track_a_seeds: int | None = None,
    stationary_events: int | None = None,
    kswin: bool | None = None,
    workers: int = 2,
) -> BenchSettings:
    """Quick: 3 seeds, 10 per Track A condition, 2*10^5-event stationary streams. Full: 20, 50, 10^6."""
    n = seeds if seeds is not None else (3 if quick else 20)
    return BenchSettings(
        seeds=n,
        track_a_seeds=track_a_seeds if track_a_seeds is not None else (10 if quick else 50),
        stationary_events=stationary_events
        if stationary_events is not None
        else (200_000 if quick else 10**6),
        kswin=kswin if kswin is not None else True,
        workers=workers,
    )


def _track_a(index: int, seeds: int) -> list[dict[str, Any]]:
    name, p0, p1, gradual = TRACK_A[index]
    out = []
    for seed in range(seeds):
        errors = bernoulli_episode(p0, p1, gradual, 10_000 * index + seed, PRE, WINDOW) > 0.5
        out.append({"condition": name, "seed": seed, "label_based": label_based(errors, PRE, len(errors))})
    return out


def _stationary(key: str, rate: float, events: int, seed: int) -> dict[str, Any]:
    return {"stream": key, "rate": rate, "events": events, "alarms": stationary_alarms(rate, events, seed)}


def _run_task(task: tuple[Any, ...]) -> Any:
    kind, *args = task
    if kind == "A":
        return _track_a(*args)
    if kind == "BC":
        return base_records(*args)
    return _stationary(*args)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _map(tasks: list[tuple[Any, ...]], workers: int, stage: str, progress: Progress | None) -> list[Any]:
    results: list[Any] = []
    report = progress or (lambda *_: None)
    report(stage, 0, len(tasks))
    if workers <= 1:
        _init_worker()
        mapped: Iterable[Any] = map(_run_task, tasks)
        for result in mapped:
            results.append(result)
            report(stage, len(results), len(tasks))
        return results
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        for result in pool.imap(_run_task, tasks):
            results.append(result)
            report(stage, len(results), len(tasks))
    return results


def run_drift_bench(
    quick: bool = True,
    seeds: int | None = None,
    progress: Progress | None = None,
    *,
    track_a_seeds: int | None = None,
    stationary_events: int | None = None,
    kswin: bool | None = None,
    workers: int = 2,
) -> dict[str, Any]:
    """Run Tracks A, B and C; return JSON-serialisable results (see :func:`format_tables`).

    ``progress(stage, done, total)`` is called as work units finish.
    """
    cfg = settings_for(quick, seeds, track_a_seeds, stationary_events, kswin, workers)
    episodes: list[tuple[Any, ...]] = [
        ("BC", base, seed, cfg.kswin) for seed in range(cfg.seeds) for base in BASES
    ]
    episodes.sort(key=lambda t: t[1] != "agrawal")  # the slowest generator first, for balance
    tasks = episodes + [("A", i, cfg.track_a_seeds) for i in range(len(TRACK_A))]
    tasks += [
        ("S", name, p0, cfg.stationary_events, 500 + i)
        for i, (name, p0) in enumerate([("p=.20", 0.2), ("p=.05", 0.05)])
    ]
    done = _map(tasks, cfg.workers, "episodes", progress)
    records = [r for batch in done[: len(episodes)] for r in batch]
    order = {c.name: i for i, c in enumerate(CONDITIONS)}
    records.sort(key=lambda r: (order[r["condition"]], r["seed"]))
    track_a = [r for batch in done[len(episodes) : len(episodes) + len(TRACK_A)] for r in batch]
    stationary_a = done[len(episodes) + len(TRACK_A) :]
    streams = [c.name for c in CONDITIONS if c.track_b]
    rates = {s: float(np.mean([r["error_before"] for r in records if r["condition"] == s])) for s in streams}
    stationary_b = _map(
        [("S", s, rates[s], cfg.stationary_events, 700 + i) for i, s in enumerate(streams)],
        cfg.workers,
        "stationary streams",
        progress,
    )
    return {
        "mode": "quick" if quick else "full",
        "settings": asdict(cfg),
        "label_based_detectors": LABEL_BASED,
        **summarise(track_a, stationary_a, records, stationary_b, [t[0] for t in TRACK_A], streams),
    }
