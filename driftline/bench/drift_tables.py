"""The drift benchmark's comparison tables (markdown), from ``run_drift_bench``'s results.

>>> print(table(["a", "b"], [["1", "2"]]))
| a | b |
|---|---|
| 1 | 2 |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _cell(stats: dict[str, Any]) -> str:
    return f"{num(stats['delay'])} ({num(stats['mdr_pct'])}%)"


def track_a(results: dict[str, Any]) -> str:
    a = results["track_a"]
    conditions = list(a["conditions"])
    detectors = results["label_based_detectors"]
    stationary = a["stationary"]
    header = ["detector", *conditions, "FA/1e5 pre-change", *[f"FA/1e5 stationary {s}" for s in stationary]]
    rows = []
    for det in detectors:
        pre = [a["conditions"][c][det] for c in conditions]
        fa_pre = sum(s["fa_per_1e5"] * s["episodes"] for s in pre) / max(sum(s["episodes"] for s in pre), 1)
        rows.append(
            [det, *[_cell(s) for s in pre], num(fa_pre, 2), *[num(stationary[s][det], 2) for s in stationary]]
        )
    n = a["conditions"][conditions[0]][detectors[0]]["episodes"] if conditions else 0
    title = f"Track A: mean delay in events (missed %), {n} episodes per condition"
    return f"{title}\n\n{table(header, rows)}"


def track_b(results: dict[str, Any]) -> str:
    b = results["track_b"]
    detectors = results["label_based_detectors"]
    avg = b["average"]
    rows = [
        [
            det,
            num(avg[det]["delay"]),
            num(avg[det]["mdr_pct"], 1),
            num(avg[det]["mdr_pct_harmful"], 1),
            num(avg[det]["fa_pre"], 2),
            num(avg[det]["fa_stationary"], 2),
            num(avg[det]["fa_all"], 2),
        ]
        for det in detectors
    ]
    header = [
        "detector",
        "delay",
        "MDR % (all)",
        "MDR % (error rose)",
        "FA/1e5 pre-change",
        "FA/1e5 stationary",
        "FA/1e5 all",
    ]
    title = (
        f"Track B, averaged over the {len(b['streams'])} streams (delay: over the {len(avg['delay_streams'])}"
        f" streams every detector detected; MDR: over all, and over the {len(b['harmful_streams'])} whose"
        " error rose by 0.03 or more)"
    )
    parts = [f"{title}\n\n{table(header, rows)}"]
    rows = []
    for stream, per_det in b["streams"].items():
        info = b["stream_info"][stream]
        error = f"{num(info['error_before'], 3)} -> {num(info['error_after'], 3)}"
        harmful = num(info["harmful_pct"])
        rows.append([stream, error, harmful, *[_cell(per_det[d]) for d in detectors]])
    header = ["stream", "model error", "harmful %", *[f"{d} delay (MDR)" for d in detectors]]
    parts.append(f"Track B per stream\n\n{table(header, rows)}")
    stat_rows = [
        [name, num(v["rate"], 3), str(v["events"]), *[num(v[d], 2) for d in detectors]]
        for name, v in b["stationary"].items()
    ]
    parts.append(
        "Track B stationary streams (false alarms per 1e5)\n\n"
        + table(["stream", "error rate", "events", *detectors], stat_rows)
    )
    return "\n\n".join(parts)


def track_c(results: dict[str, Any]) -> str:
    c = results["track_c"]
    title = (
        f"Track C (label-free): {c['episodes']} episodes, {c['harmful']} harmful"
        f" (error +{c['harm_threshold']} or more),"
        f" {c['harmful_with_input_change']} of them with an input change;"
        f" recall ceiling for label-free monitors {num(c['recall_ceiling'], 2)}"
    )
    header = [
        "detector",
        "precision",
        "strict precision",
        "recall (all harmful)",
        "recall (input change)",
        "true/false alerts",
        "episodes with pre-change alarm",
        "FA/1e5 pre-change",
        "delay",
    ]
    rows = [
        [
            det,
            num(v["precision"], 2),
            num(v["strict_precision"], 2),
            num(v["recall"], 2),
            num(v["recall_input_change"], 2),
            f"{v['true_alerts']}/{v['false_alerts']}",
            str(v["episodes_with_pre_change_alarm"]),
            num(v["fa_per_1e5"], 1),
            num(v["delay"]),
        ]
        for det, v in c["detectors"].items()
    ]
    detectors = list(c["detectors"])
    cond_rows = [
        [
            name,
            "yes" if v["input_change"] else "no",
            num(v["harmful_pct"]),
            *[num(v["alert_pct"][d]) for d in detectors],
        ]
        for name, v in c["conditions"].items()
    ]
    per_condition = table(["condition", "P(x) changes", "harmful %", *detectors], cond_rows)
    return f"{title}\n\n{table(header, rows)}\n\nTrack C alert rate per condition (%)\n\n{per_condition}"


def format_tables(results: dict[str, Any]) -> str:
    """Markdown tables: Track A per condition, Track B averages and per stream, Track C alerting."""
    s = results["settings"]
    head = (
        f"Drift benchmark ({results['mode']}): {s['seeds']} seeds per Track B/C stream,"
        f" {s['track_a_seeds']} per Track A condition, stationary streams of {s['stationary_events']} events"
    )
    return "\n\n".join([head, track_a(results), track_b(results), track_c(results)]) + "\n"
