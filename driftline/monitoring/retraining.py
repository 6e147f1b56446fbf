"""When the monitor asks for retraining, and on which data: the request side of the drift monitor.

Two triggers, one window rule:

* **drift**: an alert of a kind in ``retrain_on`` opens (or alarms again after ``cooldown_ms``);
* **continuous**: ``every_labels`` labelled predictions of the live version, or ``every_ms`` of
  record time with at least one, since the last request (0 turns each off).

A request names its training data as windows of the input topics around the trigger: ``events`` records
in all, ``lookback`` of them before it (a drift request; ``0``: only what comes after the alert) and the
rest after it. A continuous request looks back only: its window is the most recent ``events`` records,
a sliding window of labelled data. When the part after the trigger would take longer than ``wait_ms``
to come at the stream's recent rate (measured in record time, so a replay does not inflate it), the
request says so, and so does the monitor's log: the trainer waits its data timeout and trains on what
came. (The rate only warns: an estimate that spans a pause in the stream is too low, and cutting the
window by it would leave the trainer too few rows.)

>>> planner = RequestPlanner(RetrainPolicy(events=1000, lookback=0.25, wait_ms=10_000))
>>> for second in range(0, 31, 5):  # 20 events a second on each of 2 partitions
...     planner.observe({"in": {0: (20 * second, 1000 * second), 1: (20 * second, 1000 * second)}})
>>> planner.rate("in")
40.0
>>> window, slow = planner.window({"in": {0: (600, 30_000), 1: (600, 30_000)}}, back_share=0.25)
>>> [(w["start_offset"], w["end_offset"]) for w in window], slow
([(475, 975), (475, 975)], (750, 40.0))
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Positions = dict[str, dict[int, tuple[int, int]]]
"""topic -> partition -> (offset, record time ms)."""

RATE_SAMPLE_MS = 5_000
"""A rate sample is kept at most this often (record time)."""
RATE_SPAN_MS = 60_000
"""The recent rate is measured over about this much record time."""


@dataclass(frozen=True)
class RetrainPolicy:
    """When to ask for retraining and on how much data (see the module's docstring)."""

    retrain_on: tuple[str, ...] = ("CONCEPT", "PREDICTION", "DATA")
    cooldown_ms: int = 600_000
    events: int = 20_000
    """Records per input topic (over all partitions) a request's window holds at most."""
    lookback: float = 0.0
    """Share of a drift request's window taken from before the alert."""
    wait_ms: int = 120_000
    """A request whose part after its trigger takes longer than this to come says so."""
    every_labels: int = 0
    every_ms: int = 0

    def describe(self) -> str:
        """One line for the monitor's start-up log."""
        drift = (
            f"on {', '.join(self.retrain_on)} alerts (again after {self.cooldown_ms / 1000:g} s)"
            if self.retrain_on
            else "never on alerts"
        )
        every = [f"{self.every_labels:,} labelled events"] if self.every_labels else []
        every += [f"{self.every_ms / 1000:g} s"] if self.every_ms else []
        return (
            f"retraining {drift}, on windows of {self.events:,} events per input topic "
            f"({self.lookback:.0%} before the alert; a warning when the rest takes over "
            f"{self.wait_ms / 1000:g} s to come); continuous: "
            + (f"every {' or '.join(every)} on the latest {self.events:,}" if every else "off")
        )


class RequestPlanner:
    """The stream's recent rate, the continuous trigger's counters and the windows of a request.

    Its counters are part of the monitor's checkpoint (:meth:`state`); the rate is measured again after
    a restart (until then no request warns).
    """

    def __init__(self, policy: RetrainPolicy) -> None:
        self.policy = policy
        self.last_drift_ms: int | None = None
        """When the last drift request went out (the cooldown counts from it; continuous requests
        neither start nor hold it off)."""
        self.labelled_since = 0
        """Labelled predictions of the live version since the last request (or since it went live)."""
        self.clock_ms: int | None = None
        """When the continuous clock last started (a request, or a version going live)."""
        self.scheduled = 0
        """Continuous requests for the live version so far (they number the requests' ids)."""
        self._samples: dict[str, deque[tuple[int, dict[int, int]]]] = {}

    # -- the stream's rate -----------------------------------------------------------------------

    def observe(self, latest: Positions) -> None:
        """Where each input topic is now (after a batch): a rate sample every ``RATE_SAMPLE_MS``."""
        for topic, parts in latest.items():
            now = max(t for _, t in parts.values())
            samples = self._samples.setdefault(topic, deque())
            if samples and now - samples[-1][0] < RATE_SAMPLE_MS:
                continue
            samples.append((now, {p: o for p, (o, _) in parts.items()}))
            while len(samples) > 2 and now - samples[1][0] >= RATE_SPAN_MS:
                samples.popleft()

    def rate(self, topic: str) -> float | None:
        """Records per second of ``topic`` (record time), None until a few seconds were seen."""
        samples = self._samples.get(topic)
        if not samples or len(samples) < 2:
            return None
        (t0, first), (t1, last) = samples[0], samples[-1]
        shared = first.keys() & last.keys()
        if t1 - t0 < RATE_SAMPLE_MS or not shared:
            return None
        return 1000.0 * sum(last[p] - first[p] for p in shared) / (t1 - t0)

    # -- triggers --------------------------------------------------------------------------------

    def new_version(self, now_ms: int) -> None:
        self.labelled_since, self.clock_ms, self.scheduled = 0, now_ms, 0

    def drift_due(self, kind: str, now_ms: int) -> bool:
        p = self.policy
        if kind not in p.retrain_on:
            return False
        return self.last_drift_ms is None or now_ms - self.last_drift_ms >= p.cooldown_ms

    def labelled(self, count: int, now_ms: int) -> str | None:
        """Count labelled predictions of the live version; the reason when a continuous request is due."""
        p = self.policy
        self.labelled_since += count
        if self.clock_ms is None:
            self.clock_ms = now_ms
        if p.every_labels and self.labelled_since >= p.every_labels:
            return f"scheduled: {self.labelled_since:,} labelled events since the last request"
        if p.every_ms and self.labelled_since and now_ms - self.clock_ms >= p.every_ms:
            return f"scheduled: {(now_ms - self.clock_ms) / 1000:.0f} s since the last request"
        return None

    def requested(self, now_ms: int, *, scheduled: bool) -> None:
        self.clock_ms, self.labelled_since = now_ms, 0
        if scheduled:
            self.scheduled += 1
        else:
            self.last_drift_ms = now_ms

    # -- windows ---------------------------------------------------------------------------------

    def window(
        self, latest: Positions, back_share: float
    ) -> tuple[list[dict[str, Any]], tuple[int, float] | None]:
        """Windows of every input topic around ``latest`` (``back_share`` of ``events`` before it), and
        (records wanted after it, the slowest topic's recent rate) when they take over ``wait_ms``."""
        p = self.policy
        back = round(p.events * back_share)
        after = p.events - back
        slow: tuple[int, float] | None = None
        out: list[dict[str, Any]] = []
        for topic, parts in sorted(latest.items()):
            rate = self.rate(topic)
            if after and rate is not None and rate * p.wait_ms / 1000 < after:
                slow = (after, rate if slow is None else min(rate, slow[1]))
            back_each, after_each = -(-back // len(parts)), -(-after // len(parts))
            for partition, (offset, time_ms) in sorted(parts.items()):
                out.append(
                    {
                        "topic": topic,
                        "partition": partition,
                        "start_offset": max(0, offset - back_each),
                        "end_offset": offset + after_each,
                        "start_time": time_ms if back_each == 0 else None,
                        "end_time": time_ms if after_each == 0 else None,
                    }
                )
        return out, slow

    # -- checkpoints -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "last_drift_ms": self.last_drift_ms,
            "labelled_since": self.labelled_since,
            "clock_ms": self.clock_ms,
            "scheduled": self.scheduled,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.last_drift_ms = state.get("last_drift_ms")
        self.labelled_since = int(state.get("labelled_since", 0))
        self.clock_ms = state.get("clock_ms")
        self.scheduled = int(state.get("scheduled", 0))
