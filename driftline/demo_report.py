"""What the demo shows: a tracker that reads the outputs back from Kafka (predictions, labels, alerts,
retraining requests, dead letters), the live terminal view, the summary and the PNG chart.

The tracker is a user of the system like any other: it only subscribes to topics.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.config import Settings
from driftline.schemas import AvroDecoder, builtin_store
from driftline.streams import kafka
from driftline.streams.kafka import Message

WINDOW = 1000
"""Events per point of the accuracy curve and of the live view's recent figures."""


@dataclass
class Seen:
    """Everything the tracker has read so far."""

    predictions: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)
    """event id -> (version, predicted class, event time ms, prediction time ms)."""
    values: dict[str, float] = field(default_factory=dict)
    """event id -> predicted value, for a regression model's predictions."""
    labels: dict[str, int] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: int = 0


class Tracker:
    """Reads the demo's output topics in a thread until stopped."""

    def __init__(self, settings: Settings) -> None:
        t = settings.topics
        self._topics = {
            t.predictions: self._prediction,
            t.labels: self._label,
            t.drift_alerts: self._alert,
            t.retrain_requests: self._request,
            t.dead_letters: self._dead_letter,
        }
        self._consumer = kafka.consumer(settings, f"driftline-demo-view-{uuid.uuid4().hex[:8]}")
        self._decoder = AvroDecoder(builtin_store())
        self.seen = Seen()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-tracker", daemon=True)

    def start(self) -> Tracker:
        self._consumer.subscribe(list(self._topics))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = kafka.data_messages(self._consumer.consume(2000, 0.2))
            with self.lock:
                for m in messages:
                    self._topics[m.topic() or ""](m)

    def _prediction(self, m: Message) -> None:
        r = self._decoder.decode(m.value())
        self.seen.predictions[r["event_id"]] = (
            r["model_version"],
            r["predicted_class"],
            r["event_time"],
            m.timestamp()[1],
        )
        if r.get("value") is not None:
            self.seen.values[r["event_id"]] = r["value"]

    def _label(self, m: Message) -> None:
        r = self._decoder.decode(m.value())
        self.seen.labels[r["event_id"]] = r["label"]

    def _alert(self, m: Message) -> None:
        self.seen.alerts.append(self._decoder.decode(m.value()))

    def _request(self, m: Message) -> None:
        self.seen.requests.append(self._decoder.decode(m.value()))

    def _dead_letter(self, m: Message) -> None:
        headers = dict(m.headers() or [])
        if "driftline.dlq.service" not in headers:  # the monitor's copies of the same bad events
            self.seen.dead_letters += 1


@dataclass(frozen=True)
class Joined:
    """Predictions with labels, in event-time order."""

    times: npt.NDArray[np.int64]
    predicted_at: npt.NDArray[np.int64]
    correct: npt.NDArray[np.bool_]
    versions: list[str]


def joined(seen: Seen) -> Joined:
    rows = sorted(
        (t, at, predicted == seen.labels[eid], version)
        for eid, (version, predicted, t, at) in seen.predictions.items()
        if eid in seen.labels
    )
    return Joined(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.bool_),
        [r[3] for r in rows],
    )


def live_figures(seen: Seen) -> dict[str, Any]:
    """Recent throughput, latency and accuracy, for the terminal view."""
    recent = sorted(seen.predictions.values(), key=lambda p: p[3])[-5 * WINDOW :]
    if not recent:
        return {}
    at = np.array([p[3] for p in recent], dtype=np.float64)
    latency = at - np.array([p[2] for p in recent], dtype=np.float64)
    last = recent[-WINDOW:]
    span = (at[-1] - at[0]) / 1000.0
    ids = list(seen.predictions)[-WINDOW:]
    labelled = [seen.predictions[i][1] == seen.labels[i] for i in ids if i in seen.labels]
    return {
        "events/s": len(recent) / span if span > 0 else float("nan"),
        "latency p50 / p99 ms": f"{np.percentile(latency, 50):.0f} / {np.percentile(latency, 99):.0f}",
        "accuracy (last 1000)": float(np.mean(labelled)) if labelled else float("nan"),
        "version": last[-1][0],
    }


def accuracy_curve(j: Joined, origin_ms: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(seconds since ``origin_ms``, accuracy) per block of ``WINDOW`` events."""
    blocks = max(1, len(j.correct) // WINDOW)
    times = np.array([b.mean() for b in np.array_split(j.times.astype(np.float64), blocks)])
    accuracy = np.array([b.mean() for b in np.array_split(j.correct.astype(np.float64), blocks)])
    return (times - origin_ms) / 1000.0, accuracy


def draw_chart(path: Path, j: Joined, origin_ms: int, marks: dict[str, float | None], title: str) -> Path:
    """Accuracy over time with the drift onset, the alert and the swap marked (seconds since start)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    seconds, accuracy = accuracy_curve(j, origin_ms)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=120)
    ax.plot(seconds, accuracy, color="#1f4e79", linewidth=2, label=f"accuracy per {WINDOW} events")
    styles = {
        "drift onset": ("#c0392b", "--"),
        "drift alert": ("#e67e22", "-."),
        "new version live": ("#27ae60", ":"),
    }
    for name, at in marks.items():
        if at is not None:
            color, style = styles.get(name, ("gray", "--"))
            ax.axvline(at, color=color, linestyle=style, linewidth=2, label=f"{name} ({at:.1f} s)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("seconds since the stream started")
    ax.set_ylabel("accuracy against late labels")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
