"""``driftline bench``: throughput and latency, measured side by side in one run.

1. Produce ``events`` Agrawal events once to an input topic (same data for every contender).
2. Each contender runs in its own process, consumes that topic with a fresh group and writes its own
   output topic: the passthrough limit, ``serve``, a faust-streaming agent and a Quix Streams app (on
   the interpreter of its own cached virtualenv, :mod:`driftline.bench.quix_env`).
3. ``serve`` runs again as ``driftline serve`` on a fresh topic while events arrive at half its
   saturated rate, then at a quarter; latency is each prediction's broker timestamp (set when
   ``serve`` produced it) minus its event time. The load generator and the broker share the machine.
4. Hot swap: ``serve`` follows a registry topic at half rate while a new version goes live every
   second. Events whose event time falls within a second after a promotion record (fetch, verify,
   load, warm-up and swap all happen then) are the swap window; the others are steady state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.bench import quix_env
from driftline.config import Settings
from driftline.models.artifact import copy_as_version
from driftline.schemas import AvroDecoder, AvroEncoder, builtin_store
from driftline.services import SERVE_READY, service
from driftline.streams import kafka
from driftline.streams.kafka import Message
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import generate

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    events: int = 100_000
    faust_events: int = 20_000
    quix_events: int = 10_000
    """Events for the Quix Streams app (one message at a time, so slow); 0 leaves it out."""
    latency_seconds: float = 10.0
    max_batch: int = 2000
    device: str = "auto"
    timeout_s: float = 300.0


def _contender(
    args: list[str], timeout_s: float, python: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, float]:
    """Run ``python -m ARGS`` (this interpreter by default) and return the JSON line it printed last;
    the process is killed on timeout and on Ctrl-C."""
    done = subprocess.run(
        [str(python or sys.executable), "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s + 120,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def prepare_quix(settings: Settings, opts: BenchOptions, log: Log) -> Path | None:
    """The Quix Streams venv's interpreter (built on first use), checked to import quixstreams and its
    confluent-kafka from its own site-packages; ``None`` when the bench leaves Quix out."""
    if opts.quix_events < 1:
        return None
    python = quix_env.ensure_venv(settings.cache_dir, log)
    versions = quix_env.check(python)
    log(
        f"Quix Streams {versions['quixstreams']} on confluent-kafka {versions['confluent_kafka']}"
        f" (librdkafka {versions['librdkafka']}) from {python.parent.parent}"
    )
    return python


def measure_throughput(
    settings: Settings,
    model_dir: Path,
    opts: BenchOptions,
    run: str,
    log: Log,
    quix_python: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Each contender's ``{"events", "seconds", "eps"}`` on the same events; ``quix`` only with
    ``quix_python`` (from :func:`prepare_quix`)."""
    base = settings.model_copy(update={"topics": settings.topics.scoped(f"bench-{run}.tput")})
    names = ("passthrough", "serve", "serve_eos", "faust", "quix")
    outs = {name: f"{base.topics.events}.{name}" for name in names}
    kafka.create_topics(base)
    kafka.create_topics(base, list(outs.values()))
    data = generate("agrawal", opts.events, seed=11)
    store = builtin_store()
    encoder = AvroEncoder.single_object(store.latest("io.driftline.InputEvent"))
    labels = AvroEncoder.single_object(store.latest("io.driftline.Label"))
    log(f"producing {opts.events:,} events (and their labels) to {base.topics.events}")
    produce_stream(base, data, encoder, labels, run_id=run)
    common = [
        "-b",
        str(base.bootstrap_servers),
        "--in-topic",
        base.topics.events,
        "--timeout",
        str(opts.timeout_s),
    ]
    results = {}
    log("passthrough (confluent-kafka, no decoding or inference)")
    results["passthrough"] = _contender(
        [
            "driftline.bench.contenders",
            "passthrough",
            *common,
            "--out-topic",
            outs["passthrough"],
            "--events",
            str(opts.events),
            "--max-batch",
            str(opts.max_batch),
        ],
        opts.timeout_s,
    )
    serve = [
        "driftline.bench.contenders",
        "serve",
        *common,
        "--events",
        str(opts.events),
        "--model",
        str(model_dir),
        "--max-batch",
        str(opts.max_batch),
        "--device",
        opts.device,
    ]
    log("serve (Driftline's processor)")
    results["serve"] = _contender([*serve, "--out-topic", outs["serve"]], opts.timeout_s)
    log("serve --exactly-once (one transaction per batch)")
    results["serve_eos"] = _contender(
        [*serve, "--out-topic", outs["serve_eos"], "--exactly-once"], opts.timeout_s
    )
    monitor_args = _registry_for_monitor(base, model_dir, run)
    log("monitor (events, serve's predictions and labels: 3 records per event)")
    results["monitor"] = _contender(
        [
            "driftline.bench.contenders",
            "monitor",
            *common,
            "--out-topic",
            outs["serve"],
            "--events",
            str(opts.events),
            *monitor_args,
        ],
        opts.timeout_s,
    )
    log("monitor on every 2nd partition (a 50% sample: events with their predictions and labels)")
    results["monitor_half"] = _contender(
        [
            "driftline.bench.contenders",
            "monitor",
            *common,
            "--out-topic",
            outs["serve"],
            "--events",
            str(opts.events),
            "--stride",
            "2",
            *monitor_args,
        ],
        opts.timeout_s,
    )
    n_faust = min(opts.faust_events, opts.events)
    log(f"faust agent (stream.take batching) on the first {n_faust:,} events")
    results["faust"] = _contender(
        [
            "driftline.bench.faust_agent",
            "--bootstrap-servers",
            str(base.bootstrap_servers),
            "--in-topic",
            base.topics.events,
            "--out-topic",
            outs["faust"],
            "--events",
            str(n_faust),
            "--model",
            str(model_dir),
            "--timeout",
            str(opts.timeout_s),
        ],
        opts.timeout_s,
    )
    if quix_python is not None:
        n_quix = min(opts.quix_events, opts.events)
        log(f"Quix Streams app (one message per sdf.apply) on the first {n_quix:,} events")
        results["quix"] = _contender(
            [
                "driftline.bench.quix_agent",
                "--bootstrap-servers",
                str(base.bootstrap_servers),
                "--in-topic",
                base.topics.events,
                "--out-topic",
                outs["quix"],
                "--events",
                str(n_quix),
                "--model",
                str(model_dir),
                "--timeout",
                str(opts.timeout_s),
            ],
            opts.timeout_s,
            python=quix_python,
            env=quix_env.agent_env(),
        )
    return results


def _registry_for_monitor(settings: Settings, model_dir: Path, run: str) -> list[str]:
    """Publish the bench model (with its reference profile when it has one) as the live version of
    the run's registry; return the monitor contender's arguments."""
    from driftline.models import control
    from driftline.models.artifact import load_config
    from driftline.models.signing import write_key_pair

    private_file, key_file = write_key_pair(Path(tempfile.mkdtemp(prefix="driftline-bench-keys-")))
    private = private_file.read_bytes()
    name = load_config(model_dir).name
    record = control.publish_version(settings, model_dir, private)
    control.promote(settings, private, name, record["version"])
    return ["--scope", f"bench-{run}.tput", "--trusted-key", str(key_file), "--model-name", name]


WARM_UP_S = 2.0
"""Seconds of events at the measured rate that are sent first and left out of the figures
(group join, first fetch, JIT warm-up of the broker)."""


def measure_latency(
    settings: Settings, model_dir: Path, opts: BenchOptions, rate: float, run: str, workdir: Path, log: Log
) -> dict[str, float]:
    s = settings.model_copy(update={"topics": settings.topics.scoped(f"bench-{run}.latency")})
    kafka.create_topics(s, [s.topics.events, s.topics.predictions, s.topics.dead_letters])
    warm_up, count = int(rate * WARM_UP_S), max(1000, int(rate * opts.latency_seconds))
    data = generate("agrawal", warm_up + count, seed=12)
    encoder = AvroEncoder.single_object(builtin_store().latest("io.driftline.InputEvent"))
    serve_args = ["serve", "--model", str(model_dir), "--device", opts.device, "--group", f"bench-lat-{run}"]
    with service(s, workdir / "serve-latency.log", *serve_args, ready=SERVE_READY):
        log(f"latency: {count:,} events at {rate:,.0f}/s after {WARM_UP_S:.0f}s of warm-up")
        produce_stream(s, data, encoder, None, run_id=run, rate=rate, chunk_size=20)
        latencies = _prediction_latencies(s, warm_up + count, opts.timeout_s)[warm_up:]
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"rate": rate, "events": float(count), "p50_ms": float(p50), "p99_ms": float(p99)}


SWAP_WINDOW_MS = 1000.0
SWAP_MIN_SECONDS = 5.0
"""The swap phase runs at least this long, so that several promotions fall inside it."""


def measure_swap(
    settings: Settings, model_dir: Path, opts: BenchOptions, rate: float, run: str, workdir: Path, log: Log
) -> dict[str, float]:
    """Latency while versions go live once a second, against the same run's steady state."""
    from driftline.models import control
    from driftline.models.signing import write_key_pair

    private_file, public_file = write_key_pair(workdir / "keys")
    private = private_file.read_bytes()
    s = settings.model_copy(
        update={"topics": settings.topics.scoped(f"bench-{run}.swap"), "model_name": "bench"}
    ).signed_with([public_file])
    kafka.create_topics(s)
    versions = [copy_as_version(model_dir, workdir / f"v{v}", str(v), name="bench") for v in (1, 2, 3)]
    for directory in versions:
        control.publish_version(s, directory, private)
    control.promote(s, private, "bench", "1")
    seconds = max(opts.latency_seconds, SWAP_MIN_SECONDS)
    warm_up, count = int(rate * WARM_UP_S), max(1000, int(rate * seconds))
    data = generate("agrawal", warm_up + count, seed=13)
    encoder = AvroEncoder.single_object(builtin_store().latest("io.driftline.InputEvent"))
    swaps: list[float] = []
    stop = threading.Event()

    def promote_every_second() -> None:
        stop.wait(WARM_UP_S + 0.5)
        version = 1
        while not stop.wait(1.0):
            version = 2 if version != 2 else 3
            control.promote(s, private, "bench", str(version))
            swaps.append(time.time() * 1000.0)

    serve_args = ["serve", "--device", opts.device, "--group", f"bench-swap-{run}"]
    with service(s, workdir / "serve-swap.log", *serve_args, ready=SERVE_READY) as running:
        log(f"hot swap: {count:,} events at {rate:,.0f}/s, a new live version every second")
        promoter = threading.Thread(target=promote_every_second, daemon=True)
        promoter.start()
        try:
            produce_stream(s, data, encoder, None, run_id=run, rate=rate, chunk_size=20)
        finally:
            stop.set()
            promoter.join(30)
        predictions = kafka.read_topic(s, s.topics.predictions, warm_up + count, opts.timeout_s)
        swapped = running.output().count("swapped bench")
    latencies, event_times = _latencies_and_times(predictions, warm_up + count)
    latencies, event_times = latencies[warm_up:], event_times[warm_up:]
    in_window = np.zeros(len(event_times), dtype=bool)
    for t in swaps:
        in_window |= (event_times >= t) & (event_times < t + SWAP_WINDOW_MS)
    if not in_window.any() or in_window.all():
        raise RuntimeError(f"no usable swap windows ({len(swaps)} promotions, {swapped} swaps)")
    swap_p50, swap_p99 = np.nanpercentile(latencies[in_window], [50, 99])
    steady_p50, steady_p99 = np.nanpercentile(latencies[~in_window], [50, 99])
    return {
        "rate": rate,
        "promotions": float(len(swaps)),
        "swaps": float(swapped),
        "swap_events": float(in_window.sum()),
        "swap_p50_ms": float(swap_p50),
        "swap_p99_ms": float(swap_p99),
        "steady_p50_ms": float(steady_p50),
        "steady_p99_ms": float(steady_p99),
    }


def _latencies_and_times(
    predictions: list[Message], expected: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per produced event (by index): prediction time minus event time, and the event time (ms)."""
    if len(predictions) < expected:
        raise RuntimeError(f"only {len(predictions)} of {expected} predictions arrived")
    decoder = AvroDecoder(builtin_store())
    latencies, times = np.full(expected, np.nan), np.full(expected, np.nan)
    for m in predictions:
        record = decoder.decode(m.value())
        index = int(record["event_id"].rsplit("-", 1)[1])
        latencies[index] = m.timestamp()[1] - record["event_time"]
        times[index] = record["event_time"]
    return latencies, times


def _prediction_latencies(settings: Settings, expected: int, timeout_s: float) -> npt.NDArray[np.float64]:
    """Prediction produced minus event time, per event, indexed like the produced events."""
    predictions = kafka.read_topic(settings, settings.topics.predictions, expected, timeout_s)
    return _latencies_and_times(predictions, expected)[0]


def run_bench(settings: Settings, model_dir: Path, opts: BenchOptions, log: Log) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    quix_python = prepare_quix(settings, opts, log)  # first: a venv that cannot be built fails fast
    tput = measure_throughput(settings, model_dir, opts, run, log, quix_python)
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        half = measure_latency(settings, model_dir, opts, tput["serve"]["eps"] / 2, f"{run}h", Path(tmp), log)
        quarter = measure_latency(
            settings, model_dir, opts, tput["serve"]["eps"] / 4, f"{run}q", Path(tmp), log
        )
        swap = measure_swap(settings, model_dir, opts, tput["serve"]["eps"] / 2, f"{run}s", Path(tmp), log)
    passthrough, serve, faust = (tput[k]["eps"] for k in ("passthrough", "serve", "faust"))
    quix = tput["quix"]["eps"] if "quix" in tput else None
    return {
        "events": opts.events,
        "faust_events": min(opts.faust_events, opts.events),
        "passthrough_eps": passthrough,
        "serve_eps": serve,
        "serve_exactly_once_eps": tput["serve_eos"]["eps"],
        "faust_eps": faust,
        "quix_events": int(tput["quix"]["events"]) if "quix" in tput else 0,
        "quix_eps": quix,
        "monitor_eps": tput["monitor"]["eps"],
        "monitor_vs_serve": tput["monitor"]["eps"] / serve,
        "monitor_half_sample_stream_eps": tput["monitor_half"]["stream_eps"],
        "monitor_half_sample_vs_serve": tput["monitor_half"]["stream_eps"] / serve,
        "serve_vs_passthrough": serve / passthrough,
        "serve_vs_faust": serve / faust,
        "serve_vs_quix": serve / quix if quix else None,
        "quixstreams_version": quix_env.QUIXSTREAMS_VERSION if quix else None,
        "latency_rate_eps": half["rate"],
        "p50_ms": half["p50_ms"],
        "p99_ms": half["p99_ms"],
        "quarter_rate_eps": quarter["rate"],
        "quarter_p50_ms": quarter["p50_ms"],
        "quarter_p99_ms": quarter["p99_ms"],
        "swap_rate_eps": swap["rate"],
        "swaps": swap["swaps"],
        "swap_events": swap["swap_events"],
        "swap_p50_ms": swap["swap_p50_ms"],
        "swap_p99_ms": swap["swap_p99_ms"],
        "steady_p50_ms": swap["steady_p50_ms"],
        "steady_p99_ms": swap["steady_p99_ms"],
        "swap_vs_steady_p99": swap["swap_p99_ms"] / swap["steady_p99_ms"],
        "cpus": os.cpu_count(),
        "max_batch": opts.max_batch,
    }
