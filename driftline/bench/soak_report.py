"""The figures of ``driftline bench soak``: what a ``/metrics`` scrape says, latency quantiles from
histogram deltas, the summary, the lines and the chart. Pure functions; :mod:`driftline.bench.soak`
does the I/O.

A latency quantile over an interval comes from the difference of two scrapes of a cumulative
histogram, interpolated within its bucket as Prometheus' ``histogram_quantile`` does:

>>> before = {0.1: 0.0, 1.0: 0.0, float("inf"): 0.0}
>>> after = {0.1: 0.0, 1.0: 10.0, float("inf"): 10.0}
>>> round(interval_quantile(before, after, 0.5), 3)
0.55
>>> interval_quantile(after, after, 0.5) is None  # nothing observed in between
True
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

SERVICES = ("serve", "monitor", "train")

Buckets = dict[float, float]
"""Upper bound (``le``) to cumulative count."""


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` page: every sample summed over its labels, and the histograms' buckets."""

    sums: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, Buckets] = field(default_factory=dict)

    def get(self, name: str) -> float:
        return self.sums.get(name, 0.0)


def parse_metrics(text: str) -> Scrape:
    """
    >>> page = 'driftline_consumer_lag{topic="e",partition="0"} 3.0\\n'
    >>> page += 'driftline_consumer_lag{topic="e",partition="1"} 4.0\\n'
    >>> parse_metrics(page).get("driftline_consumer_lag")
    7.0
    """
    sums: dict[str, float] = defaultdict(float)
    buckets: dict[str, Buckets] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket") and "le" in sample.labels:
                histogram = buckets[sample.name.removesuffix("_bucket")]
                le = float(sample.labels["le"])
                histogram[le] = histogram.get(le, 0.0) + sample.value
            else:
                sums[sample.name] += sample.value
    return Scrape(dict(sums), dict(buckets))


def interval_quantile(before: Buckets, after: Buckets, q: float) -> float | None:
    """The ``q`` quantile of what was observed between two scrapes (None when nothing was)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    below, lower = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower  # as Prometheus: the highest finite bound
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        below, lower = count, bound
    return lower


@dataclass(frozen=True)
class Sample:
    """The services at one moment of the soak (figures over the interval since the previous one)."""

    t_s: float
    """Seconds since the stream started."""
    sent: int
    """Events of the stream produced so far."""
    sent_per_s: float
    served_per_s: float
    """``serve``'s events consumed per second."""
    predictions: int
    dead_letters: int
    serve_lag: float | None
    """``driftline_consumer_lag`` summed over partitions."""
    monitor_lag: float | None
    """Records of events, predictions and labels not yet read by the monitor."""
    p50_ms: float | None
    p99_ms: float | None
    """``serve``'s end-to-end latency (event time to prediction acknowledged)."""
    rss_mb: dict[str, float]
    ready: dict[str, bool]


def format_header() -> str:
    rss = "/".join(SERVICES)
    return (
        f"{'t (s)':>7} {'sent/s':>8} {'served/s':>9} {'lag serve':>10} {'lag mon':>10}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'dead':>6}  RSS MB {rss:<20} not ready"
    )


def format_sample(s: Sample) -> str:
    rss = "/".join(_num(s.rss_mb.get(n), ".0f") for n in SERVICES)
    down = ",".join(n for n in SERVICES if not s.ready.get(n, False)) or "-"
    return (
        f"{s.t_s:7.0f} {s.sent_per_s:8,.0f} {s.served_per_s:9,.0f} {_num(s.serve_lag, ',.0f'):>10}"
        f" {_num(s.monitor_lag, ',.0f'):>10} {_num(s.p50_ms, '.0f'):>7} {_num(s.p99_ms, '.0f'):>7}"
        f" {s.dead_letters:6,}         {rss:<20} {down}"
    )


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def slope_per_hour(t_s: list[float], values: list[float]) -> float | None:
    """The least-squares slope of ``values`` per hour (None with fewer than two finite points).

    >>> slope_per_hour([0.0, 1800.0, 3600.0], [100.0, 110.0, 120.0])
    20.0
    """
    points = [(t, v) for t, v in zip(t_s, values, strict=True) if math.isfinite(v)]
    if len({t for t, _ in points}) < 2:
        return None
    hours = np.array([t for t, _ in points]) / 3600.0
    return round(float(np.polyfit(hours, np.array([v for _, v in points]), 1)[0]), 3)


def summarise(samples: list[Sample]) -> dict[str, Any]:
    """RSS start, end, max and slope per service (over all samples, and over the later half, once
    start-up growth is over), lag and latency extremes, and samples where a service was not ready."""
    t = [s.t_s for s in samples]
    late = len(samples) // 2
    rss: dict[str, dict[str, float | None]] = {}
    for name in SERVICES:
        mb = [s.rss_mb.get(name, math.nan) for s in samples]
        finite = [v for v in mb if math.isfinite(v)]
        rss[name] = {
            "start_mb": finite[0] if finite else None,
            "end_mb": finite[-1] if finite else None,
            "max_mb": max(finite) if finite else None,
            "slope_mb_per_hour": slope_per_hour(t, mb),
            "late_slope_mb_per_hour": slope_per_hour(t[late:], mb[late:]),
        }
    p99 = [s.p99_ms for s in samples if s.p99_ms is not None]
    p50 = [s.p50_ms for s in samples if s.p50_ms is not None]
    return {
        "rss": rss,
        "serve_lag_max": _max([s.serve_lag for s in samples]),
        "monitor_lag_max": _max([s.monitor_lag for s in samples]),
        "p99_ms_max": max(p99, default=None),
        "p99_ms_median": statistics.median(p99) if p99 else None,
        "p50_ms_median": statistics.median(p50) if p50 else None,
        "not_ready_samples": {n: sum(not s.ready.get(n, False) for s in samples) for n in SERVICES},
    }


def _max(values: list[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


def jsonable(value: Any) -> Any:
    """Samples as plain data, with non-finite floats as None (strict JSON)."""
    if isinstance(value, Sample):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary as (name, value) rows for a table."""
    s = report["summary"]
    rows = [
        (
            "serve saturated / offered",
            f"{report['saturation_eps']:,.0f} / {report['target_eps']:,.0f} events/s",
        ),
        (
            "sent (achieved rate)",
            f"{report['sent']:,} in {report['sent_seconds']:.0f} s ({report['sent_eps']:,.0f}/s,"
            f" {report['sent_share']:.2f} x saturation)",
        ),
        (
            "events / predictions / dead letters / lost",
            " / ".join(f"{report[k]:,}" for k in ("events", "predictions", "dead_letters", "lost")),
        ),
    ]
    for name in SERVICES:
        r = s["rss"][name]
        rows.append(
            (
                f"RSS {name}: start / end / max",
                f"{_num(r['start_mb'], '.0f')} / {_num(r['end_mb'], '.0f')} / {_num(r['max_mb'], '.0f')} MB,"
                f" slope {_num(r['slope_mb_per_hour'], '+.1f')} MB/h"
                f" (later half {_num(r['late_slope_mb_per_hour'], '+.1f')})",
            )
        )
    rows += [
        (
            "lag max: serve / monitor",
            f"{_num(s['serve_lag_max'], ',.0f')} / {_num(s['monitor_lag_max'], ',.0f')}",
        ),
        (
            "latency p99: max / median of samples",
            f"{_num(s['p99_ms_max'], '.0f')} / {_num(s['p99_ms_median'], '.0f')} ms"
            f" (p50 median {_num(s['p50_ms_median'], '.0f')} ms)",
        ),
        ("samples not ready", ", ".join(f"{n} {c}" for n, c in s["not_ready_samples"].items())),
        ("samples", f"{len(report['samples'])} every {report['interval_s']:g} s"),
    ]
    if report.get("chart"):
        rows.append(("chart", str(report["chart"])))
    return rows


def draw_chart(path: Path, samples: list[Sample], title: str) -> Path:
    """RSS per service, lag, and latency p50/p99 over time, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    minutes = [s.t_s / 60.0 for s in samples]
    fig, (rss, lag, latency) = plt.subplots(3, 1, sharex=True, figsize=(10, 8), dpi=120)
    for name in SERVICES:
        rss.plot(minutes, [s.rss_mb.get(name, math.nan) for s in samples], marker=".", label=name)
    rss.set_ylabel("RSS (MB)")
    lag.plot(minutes, [_nan(s.serve_lag) for s in samples], marker=".", label="serve (events)")
    lag.plot(minutes, [_nan(s.monitor_lag) for s in samples], marker=".", label="monitor (records)")
    lag.set_ylabel("consumer lag")
    latency.plot(minutes, [_nan(s.p50_ms) for s in samples], marker=".", label="p50")
    latency.plot(minutes, [_nan(s.p99_ms) for s in samples], marker=".", label="p99")
    latency.set_ylabel("serve end-to-end (ms)")
    latency.set_xlabel("minutes since the stream started")
    for ax in (rss, lag, latency):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    rss.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _nan(value: float | None) -> float:
    return math.nan if value is None else value
