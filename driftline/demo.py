"""``driftline demo``: the whole path on one machine, with a summary.

Starts the local broker unless a cluster is named, creates run-scoped topics, trains a bootstrap
model, runs ``driftline serve`` as its own process, produces labelled events (a few of them corrupt,
to show the dead-letter path), waits until every event is accounted for, and summarises:
events, predictions, dead letters, throughput, latency p50/p99 and accuracy against the labels.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftline.config import Settings
from driftline.schemas import AvroDecoder, AvroEncoder, builtin_store
from driftline.services import SERVE_READY, service
from driftline.streams import kafka
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import generate
from driftline.trainers import bootstrap_model

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    events: int = 20_000
    rate: float = 5_000.0
    malformed_every: int = 500
    generator: str = "agrawal"
    device: str = "auto"
    timeout_s: float = 180.0


def run_demo(settings: Settings, opts: DemoOptions, log: Log) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    topics = settings.topics.scoped(f"demo-{run}")
    settings = settings.model_copy(update={"topics": topics})
    kafka.create_topics(settings)
    with tempfile.TemporaryDirectory(prefix="driftline-demo-") as tmp:
        workdir = Path(tmp)
        log("training the bootstrap model")
        config = bootstrap_model(workdir / "model", opts.generator, epochs=8, device=opts.device)
        accuracy = config.metrics["holdout_accuracy"]
        log(f"model {config.name} v{config.version}: holdout accuracy {accuracy:.3f}")
        data = generate(opts.generator, opts.events, seed=2024)
        store = builtin_store()
        events = AvroEncoder.single_object(store.latest("io.driftline.InputEvent"))
        labels = AvroEncoder.single_object(store.latest("io.driftline.Label"))
        serve_args = [
            "serve",
            "--model",
            str(workdir / "model"),
            "--device",
            opts.device,
            "--group",
            f"demo-{run}",
        ]
        with service(settings, workdir / "serve.log", *serve_args, ready=SERVE_READY):
            log(f"serve is up; producing {opts.events:,} events at {opts.rate:,.0f}/s")
            report = produce_stream(
                settings,
                data,
                events,
                labels,
                run_id=run,
                rate=opts.rate,
                malformed_every=opts.malformed_every,
                chunk_size=50,
            )
            deadline = time.monotonic() + opts.timeout_s
            dead = kafka.read_topic(
                settings, topics.dead_letters, report.malformed, deadline - time.monotonic()
            )
            predictions = kafka.read_topic(
                settings, topics.predictions, opts.events - len(dead), deadline - time.monotonic()
            )
            truth = kafka.read_topic(settings, topics.labels, report.labels, deadline - time.monotonic())
    return summarise(predictions, dead, truth, report.events)


def summarise(predictions: list[Any], dead: list[Any], labels: list[Any], events: int) -> dict[str, Any]:
    """Counts, latency, and accuracy of the predictions against the labels read back from Kafka
    (joined by event id)."""
    decoder = AvroDecoder(builtin_store())
    truth = {r["event_id"]: r["label"] for r in (decoder.decode(m.value()) for m in labels)}
    records = [decoder.decode(m.value()) for m in predictions]
    labelled = [(r["predicted_class"], truth[r["event_id"]]) for r in records if r["event_id"] in truth]
    stamps = np.array([m.timestamp()[1] for m in predictions], dtype=np.float64)
    latency = stamps - np.array([r["event_time"] for r in records], dtype=np.float64)
    span = (stamps.max() - stamps.min()) / 1000.0 if len(stamps) > 1 else float("nan")
    return {
        "events": events,
        "predictions": len(records),
        "dead_letters": len(dead),
        "unaccounted": events - len(records) - len(dead),
        "throughput_eps": len(records) / span if span > 0 else float("nan"),
        "latency_p50_ms": float(np.percentile(latency, 50)) if len(latency) else float("nan"),
        "latency_p99_ms": float(np.percentile(latency, 99)) if len(latency) else float("nan"),
        "labelled": len(labelled),
        "accuracy": float(np.mean([p == t for p, t in labelled])) if labelled else float("nan"),
    }
