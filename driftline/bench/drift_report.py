"""Aggregating the drift benchmark's episode records into metrics.

>>> stats = condition_stats([{"d": {"x": [1, 5000, 300]}}, {"d": {"x": [0, 5000, None]}}], "d", ["x"])
>>> stats["x"]
{'delay': 300.0, 'mdr_pct': 50.0, 'fa_per_1e5': 10.0, 'episodes': 2}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from driftline.bench.drift_eval import HARM, LABEL_BASED, OURS

Record = dict[str, Any]
LABEL_REFERENCES = {"GLR on errors (labels)": OURS, "ADWIN on errors (labels)": "ADWIN"}


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def condition_stats(records: Sequence[Record], key: str, detectors: Sequence[str]) -> dict[str, Any]:
    """Mean delay, missed-detection rate and pre-change false alarms per 10^5 events, per detector."""
    out = {}
    for det in detectors:
        outcomes = [r[key][det] for r in records]
        delays = [float(o[2]) for o in outcomes if o[2] is not None]
        pre_events = sum(o[1] for o in outcomes)
        out[det] = {
            "delay": _mean(delays),
            "mdr_pct": 100.0 * (len(outcomes) - len(delays)) / max(len(outcomes), 1),
            "fa_per_1e5": 1e5 * sum(o[0] for o in outcomes) / max(pre_events, 1),
            "episodes": len(outcomes),
        }
    return out


def _stationary(runs: Sequence[Record]) -> dict[str, Any]:
    return {
        r["stream"]: {"rate": r["rate"], "events": r["events"]}
        | {det: 1e5 * n / r["events"] for det, n in r["alarms"].items()}
        for r in runs
    }


def _track_b_average(
    streams: dict[str, Any], harmful: Sequence[str], records: Sequence[Record], runs: Sequence[Record]
) -> dict[str, Any]:
    """Delay: mean of the per-stream mean delays over ``delay_streams``, the streams where every detector
    detected something (so each detector is averaged over the same streams). MDR: mean over all streams,
    and over the streams whose error rose."""
    names = list(streams)
    common = [s for s in names if all(streams[s][d]["delay"] is not None for d in LABEL_BASED)]
    pre_alarms = {det: sum(r["label_based"][det][0] for r in records) for det in LABEL_BASED}
    pre_events = sum(r["label_based"][OURS][1] for r in records)
    stat_events = sum(r["events"] for r in runs)
    out: dict[str, Any] = {"delay_streams": common}
    for det in LABEL_BASED:
        stat_alarms = sum(r["alarms"][det] for r in runs)
        out[det] = {
            "delay": _mean([streams[s][det]["delay"] for s in common]),
            "mdr_pct": _mean([streams[s][det]["mdr_pct"] for s in names]),
            "mdr_pct_harmful": _mean([streams[s][det]["mdr_pct"] for s in harmful]),
            "fa_pre": 1e5 * pre_alarms[det] / max(pre_events, 1),
            "fa_stationary": 1e5 * stat_alarms / max(stat_events, 1),
            "fa_all": 1e5 * (pre_alarms[det] + stat_alarms) / max(pre_events + stat_events, 1),
        }
    return out


def _harmful_share(records: Sequence[Record]) -> float:
    return 100.0 * float(np.mean([r["harmful"] for r in records])) if records else 0.0


def track_b(records: Sequence[Record], runs: Sequence[Record], streams: Sequence[str]) -> dict[str, Any]:
    by_stream = {s: [r for r in records if r["condition"] == s] for s in streams}
    stats = {s: condition_stats(rs, "label_based", LABEL_BASED) for s, rs in by_stream.items()}
    info: dict[str, dict[str, Any]] = {
        s: {
            "harmful_pct": _harmful_share(rs),
            "error_before": _mean([r["error_before"] for r in rs]),
            "error_after": _mean([r["error_after"] for r in rs]),
        }
        for s, rs in by_stream.items()
    }
    harmful = [s for s in streams if info[s]["harmful_pct"] >= 50]
    pre = [r for r in records if r["condition"] in by_stream]
    return {
        "streams": stats,
        "stream_info": info,
        "stationary": _stationary(runs),
        "harmful_streams": harmful,
        "average": _track_b_average(stats, harmful, pre, runs),
    }


def _outcome(record: Record, det: str) -> list[Any]:
    if det in LABEL_REFERENCES:
        out: list[Any] = record["label_based"][LABEL_REFERENCES[det]]
        return out
    out = record["label_free"][det]
    return out


def _alerting(records: Sequence[Record], det: str) -> dict[str, Any]:
    outs = [_outcome(r, det) for r in records]
    alerted = np.array([o[2] is not None for o in outs], dtype=bool)
    harmful = np.array([r["harmful"] for r in records], dtype=bool)
    visible = harmful & np.array([r["input_change"] for r in records], dtype=bool)
    pre_flagged = int(sum(o[0] > 0 for o in outs))
    tp, fp = int((alerted & harmful).sum()), int((alerted & ~harmful).sum())
    delays = [float(o[2]) for o, h in zip(outs, harmful, strict=True) if h and o[2] is not None]
    return {
        "true_alerts": tp,
        "false_alerts": fp,
        "episodes_with_pre_change_alarm": pre_flagged,
        "precision": tp / (tp + fp) if tp + fp else None,
        "strict_precision": tp / (tp + fp + pre_flagged) if tp + fp + pre_flagged else None,
        "recall": tp / harmful.sum() if harmful.sum() else None,
        "recall_input_change": int((alerted & visible).sum()) / visible.sum() if visible.sum() else None,
        "fa_per_1e5": 1e5 * sum(o[0] for o in outs) / max(sum(o[1] for o in outs), 1),
        "delay": _mean(delays),
    }


def track_c(records: Sequence[Record]) -> dict[str, Any]:
    detectors = [*records[0]["label_free"], *LABEL_REFERENCES] if records else []
    harmful = sum(r["harmful"] for r in records)
    visible = sum(r["harmful"] and r["input_change"] for r in records)
    conditions = sorted({r["condition"] for r in records}, key=[r["condition"] for r in records].index)
    per_condition = {}
    for c in conditions:
        rs = [r for r in records if r["condition"] == c]
        per_condition[c] = {
            "input_change": rs[0]["input_change"],
            "harmful_pct": _harmful_share(rs),
            "alert_pct": {
                d: 100.0 * float(np.mean([_outcome(r, d)[2] is not None for r in rs])) for d in detectors
            },
        }
    return {
        "episodes": len(records),
        "harmful": int(harmful),
        "harmful_with_input_change": int(visible),
        "recall_ceiling": visible / harmful if harmful else None,
        "harm_threshold": HARM,
        "detectors": {d: _alerting(records, d) for d in detectors},
        "conditions": per_condition,
    }


def summarise(
    track_a: Sequence[Record],
    stationary_a: Sequence[Record],
    records: Sequence[Record],
    stationary_b: Sequence[Record],
    conditions_a: Sequence[str],
    streams: Sequence[str],
) -> dict[str, Any]:
    return {
        "track_a": {
            "conditions": {
                c: condition_stats([r for r in track_a if r["condition"] == c], "label_based", LABEL_BASED)
                for c in conditions_a
            },
            "stationary": _stationary(stationary_a),
        },
        "track_b": track_b([r for r in records if r["track_b"]], stationary_b, streams),
        "track_c": track_c(records),
    }
