"""``driftline demo``: the whole loop on one machine, watched live.

1. A broker (the named cluster, a running local one, or one started for the run), topics scoped to
   the run, a signing key pair.
2. A labelled warm-up stream, and the first version trained from it (``train --once``, in process).
3. ``serve``, ``monitor`` and ``train`` as separate processes, exactly as an operator runs them.
4. A labelled stream with an abrupt concept drift part-way through (River's Agrawal generator, a
   few events corrupt to show the dead-letter path): the monitor alerts and asks for retraining, the
   trainer trains on the events after the drift and promotes the better version, ``serve`` swaps it
   in, accuracy recovers.
5. A summary and a PNG chart of accuracy over time with the drift, the alert and the swap marked.

Every process it starts is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftline.config import Settings
from driftline.demo_report import Seen, Tracker, draw_chart, joined, live_figures
from driftline.models.signing import write_key_pair
from driftline.options import TrainOptions
from driftline.schemas import AvroEncoder, builtin_store
from driftline.services import MONITOR_READY, SERVE_READY, service
from driftline.streams import kafka
from driftline.streams.produce import event_id, produce_stream
from driftline.streams.synthetic import GENERATORS, LabelledData, generate
from driftline.trainers.retrain import Outcome
from driftline.trainers.service import train_once

Log = Callable[[str], None]
View = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class DemoOptions:
    events: int = 60_000
    warmup: int = 8_000
    rate: float = 2_000.0
    drift_at: float = 0.4
    """Where the concept changes, as a share of the stream."""
    malformed_every: int = 1000
    generator: str = "agrawal"
    device: str = "auto"
    retrain_events: int = 8_000
    epochs: int = 10
    chart: Path = Path("driftline-demo.png")
    logs: Path | None = None
    """Where to keep the services' logs (default: a temporary folder, removed at the end)."""
    timeout_s: float = 240.0


def run_demo(settings: Settings, opts: DemoOptions, log: Log, view: View | None = None) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="driftline-demo-") as tmp:
        workdir = Path(tmp)
        settings = scoped_settings(settings, f"demo-{run}", "demo", workdir / "keys")
        kafka.create_topics(settings)
        first = first_version(
            settings, workdir / "keys", opts.generator, opts.warmup, f"{run}w", opts.epochs, opts.device, log
        )
        drift = int(opts.events * opts.drift_at)
        stream = generate(opts.generator, 2 * opts.events, seed=2, drift_at=drift)
        tracker = Tracker(settings).start()
        with ExitStack() as stack:
            for name, args, ready in service_commands(opts.device, opts.retrain_events, opts.epochs):
                log(f"starting {name}")
                logs = opts.logs or workdir
                logs.mkdir(parents=True, exist_ok=True)
                stack.enter_context(service(settings, logs / f"{name}.log", *args, ready=ready))
            log(f"all up; {opts.events:,} events at {opts.rate:,.0f}/s, the concept changes at {drift:,}")
            produced: list[int] = []
            producer = threading.Thread(
                target=send_stream,
                args=(settings, stream, opts, f"{run}m", produced, lambda: _recovered(tracker, opts, first)),
                daemon=True,
            )
            producer.start()
            deadline = time.monotonic() + opts.timeout_s
            while time.monotonic() < deadline:
                with tracker.lock:
                    figures = _progress(tracker.seen, opts.warmup + sum(produced))
                if view is not None:
                    view(figures)
                if not producer.is_alive() and figures["accounted"] >= figures["expected"]:
                    break
                time.sleep(0.25)
            producer.join(5)
        tracker.stop()
        summary = summarise(tracker.seen, run, opts, drift, str(first.record["version"]), sum(produced))
        log(f"chart: {summary['chart']}")
        return summary


SEGMENT = 2000
"""Events per produce call (the stream is sent in segments so that it can be extended)."""


def send_stream(
    settings: Settings,
    stream: LabelledData,
    opts: DemoOptions,
    run_id: str,
    produced: list[int],
    recovered: Callable[[], bool],
) -> None:
    """Send ``opts.events`` events, and more (up to twice as many) while the new version has not yet
    predicted a tenth of that: a slow machine still shows the recovery."""
    store = builtin_store()
    events = AvroEncoder.single_object(store.latest("io.driftline.InputEvent"))
    labels = AvroEncoder.single_object(store.latest("io.driftline.Label"))
    at = 0
    while at < len(stream.y) and (at < opts.events or not recovered()):
        part = LabelledData(
            stream.features, stream.classes, stream.x[at : at + SEGMENT], stream.y[at : at + SEGMENT]
        )
        produce_stream(
            settings,
            part,
            events,
            labels,
            run_id=run_id,
            rate=opts.rate,
            malformed_every=opts.malformed_every,
            chunk_size=50,
            first_index=at,
        )
        at += len(part.y)
        produced.append(len(part.y))


def _recovered(tracker: Tracker, opts: DemoOptions, first: Any) -> bool:
    with tracker.lock:
        newer = sum(1 for p in tracker.seen.predictions.values() if p[0] != str(first.record["version"]))
    return newer >= opts.events // 10


def scoped_settings(settings: Settings, scope: str, model_name: str, keys: Path) -> Settings:
    """``settings`` with topics of their own (``<scope>.<role>``), ``model_name``, and a fresh signing
    key pair written to ``keys`` (the run's services trust it, the trainer signs with it)."""
    private, public = write_key_pair(keys)
    scoped = settings.model_copy(update={"topics": settings.topics.scoped(scope), "model_name": model_name})
    return scoped.signed_with([public], private)


def first_version(
    settings: Settings,
    keys: Path,
    generator: str,
    warmup: int,
    run_id: str,
    epochs: int,
    device: str,
    log: Log,
) -> Outcome:
    """Produce ``warmup`` labelled events and train, publish and promote the first version on them."""
    store = builtin_store()
    events = AvroEncoder.single_object(store.latest("io.driftline.InputEvent"))
    labels = AvroEncoder.single_object(store.latest("io.driftline.Label"))
    gen = GENERATORS[generator]
    log(f"warm-up: {warmup:,} labelled events, then the first version from them")
    produce_stream(settings, generate(generator, warmup, seed=1), events, labels, run_id=run_id)
    first = train_once(
        settings,
        (keys / "signing.key").read_bytes(),
        settings.model_name,
        warmup,
        gen.features,
        gen.classes,
        TrainOptions(epochs=epochs, device=device, min_rows=min(1000, warmup // 2)),
    )
    log(f"v{first.record['version']} is live: held-out accuracy {first.candidate_accuracy:.3f}")
    return first


def service_commands(device: str, retrain_events: int, epochs: int) -> list[tuple[str, list[str], str]]:
    """``serve``, ``monitor`` and ``train`` as the demo runs them: (name, arguments, ready log line)."""
    return [
        ("serve", ["serve", "--device", device, "--max-wait-ms", "20"], SERVE_READY),
        (
            "monitor",
            [
                "monitor",
                "--retrain-events",
                str(retrain_events),
                "--update-interval-s",
                "5",
                "--label-ttl-s",
                "120",
                "--cooldown-s",
                "20",
            ],
            MONITOR_READY,
        ),
        (
            "train",
            ["train", "--epochs", str(epochs), "--device", device, "--data-timeout-s", "60"],
            TRAIN_READY,
        ),
    ]


TRAIN_READY = "training "
"""What ``driftline train`` logs once it has joined its group and waits for requests."""


def _progress(seen: Seen, expected: int) -> dict[str, Any]:
    opened = [a for a in seen.alerts if a["status"] == "OPEN"]
    versions = sorted({p[0] for p in seen.predictions.values()}, key=lambda v: (len(v), v))
    return {
        **live_figures(seen),
        "predictions": len(seen.predictions),
        "dead letters": seen.dead_letters,
        "accounted": len(seen.predictions) + seen.dead_letters,
        "expected": expected,
        "alerts": ", ".join(f"{a['kind']} on v{a['model_version']}" for a in opened) or "none",
        "retraining requests": len(seen.requests),
        "versions serving": ", ".join(f"v{v}" for v in versions),
    }


def summarise(
    seen: Seen, run: str, opts: DemoOptions, drift: int, first_version: str, produced: int
) -> dict[str, Any]:
    """The figures the issue asks for, from what the tracker read back from Kafka."""
    main = [event_id(f"{run}m", i) for i in range(produced)]
    rows = [
        (i, seen.predictions[eid], seen.labels.get(eid))
        for i, eid in enumerate(main)
        if eid in seen.predictions
    ]
    origin = min((p[2] for _, p, _ in rows), default=0)

    def accuracy(keep: Callable[[int, str], bool]) -> float:
        hits = [p[1] == y for i, p, y in rows if y is not None and keep(i, p[0])]
        return float(np.mean(hits)) if hits else float("nan")

    onset = next((p[2] for i, p, _ in rows if i >= drift), None)
    opened = sorted((a for a in seen.alerts if a["status"] == "OPEN"), key=lambda a: a["time"])
    alert_ms = opened[0]["time"] if opened else None
    new = [p[3] for _, p, _ in rows if p[0] != first_version]
    swap_ms = min(new) if new else None
    j = joined(seen)
    versions = sorted({p[0] for p in seen.predictions.values()}, key=lambda v: (len(v), v))
    marks = {
        "drift onset": None if onset is None else (onset - origin) / 1000.0,
        "drift alert": None if alert_ms is None else (alert_ms - origin) / 1000.0,
        "new version live": None if swap_ms is None else (swap_ms - origin) / 1000.0,
    }
    chart = draw_chart(
        opts.chart.resolve(),
        _only(j, origin),
        origin,
        marks,
        f"Driftline demo: {opts.generator}, drift at event {drift:,}",
    )
    latency = np.array([p[3] - p[2] for _, p, _ in rows], dtype=np.float64)  # the main stream's
    return {
        "events": opts.warmup + produced,
        "predictions": len(seen.predictions),
        "dead_letters": seen.dead_letters,
        "unaccounted": opts.warmup + produced - len(seen.predictions) - seen.dead_letters,
        "alerts": len(opened),
        "alert_records": len(seen.alerts),
        "retrain_requests": len(seen.requests),
        "versions": versions,
        "accuracy_before_drift": accuracy(lambda i, v: i < drift),
        "accuracy_after_drift": accuracy(lambda i, v: i >= drift and v == first_version),
        "accuracy_after_swap": accuracy(lambda i, v: v != first_version),
        "seconds_drift_to_alert": None if onset is None or alert_ms is None else (alert_ms - onset) / 1000.0,
        "seconds_alert_to_swap": None
        if alert_ms is None or swap_ms is None
        else (swap_ms - alert_ms) / 1000.0,
        "latency_p50_ms": float(np.percentile(latency, 50)) if len(latency) else float("nan"),
        "latency_p99_ms": float(np.percentile(latency, 99)) if len(latency) else float("nan"),
        "chart": str(chart),
    }


def _only(j: Any, origin: int) -> Any:
    """The main stream's rows (the warm-up ran before ``origin``)."""
    keep = j.times >= origin
    return type(j)(
        j.times[keep],
        j.predicted_at[keep],
        j.correct[keep],
        [v for v, k in zip(j.versions, keep, strict=True) if k],
    )
