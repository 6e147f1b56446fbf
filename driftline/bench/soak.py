"""``driftline bench soak``: serve, monitor and train for a while under steady load, watched.

1. Topics scoped to the run, a signing key pair, a labelled warm-up stream and the first version
   trained from it, as ``driftline demo`` does (:func:`driftline.demo.first_version`).
2. Saturation: ``saturation_events`` events are produced at once, and the bench's ``serve``
   contender (:func:`driftline.bench.contenders.run_serve`, the same model) drains them with a
   fresh group; its events per second are the saturated rate.
3. ``serve``, ``monitor`` and ``train`` run as processes with ``--metrics-port`` on loopback while
   a labelled stream arrives at ``share`` times that rate for ``minutes`` (rows of a generated pool,
   sent again under new event ids).
4. Every ``interval_s``: each process's RSS (``/proc/PID/status``), ``serve``'s consumer lag,
   events per second, dead letters and end-to-end latency p50/p99 over the interval (from its
   ``/metrics``), the monitor's lag (the inputs' high watermarks minus its
   ``driftline_monitor_records_total``), and every service's ``/readyz``.
5. After the stream, until ``serve`` has accounted for every event and the monitor has read
   everything (at most ``drain_timeout_s``), a last sample, then the summary
   (:func:`driftline.bench.soak_report.summarise`).

Every process is stopped at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import socket
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

from driftline.bench.soak_probe import Probe, Sampler, drained
from driftline.bench.soak_report import Sample, draw_chart, summarise
from driftline.config import Settings
from driftline.demo import first_version, scoped_settings, service_commands
from driftline.schemas import AvroEncoder, builtin_store
from driftline.services import Service, service
from driftline.streams import kafka
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import LabelledData, generate

Log = Callable[[str], None]
OnSample = Callable[[Sample], None]

POOL = 20_000
"""Rows generated for the stream; sent again and again under new event ids."""


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = 10.0
    share: float = 0.5
    """The offered rate as a share of serve's saturated rate."""
    interval_s: float = 10.0
    saturation_events: int = 30_000
    saturation_eps: float | None = None
    """Take this as serve's saturated rate instead of measuring it."""
    warmup: int = 4_000
    """Labelled events the first version learns from (``serve`` predicts them too)."""
    generator: str = "agrawal"
    malformed_every: int = 1000
    """Corrupt every Nth event of each one-second segment (0: none), for the dead-letter path."""
    device: str = "auto"
    epochs: int = 5
    retrain_events: int = 8_000
    chart: Path | None = None
    logs: Path | None = None
    """Where to keep the services' logs (default: a temporary folder, removed at the end)."""
    drain_timeout_s: float = 120.0
    saturation_timeout_s: float = 300.0


def run_soak(
    settings: Settings, opts: SoakOptions, log: Log, on_sample: OnSample | None = None
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="driftline-soak-") as tmp:
        workdir = Path(tmp)
        settings = scoped_settings(settings, f"soak-{run}", "soak", workdir / "keys")
        kafka.create_topics(settings)
        first = first_version(
            settings, workdir / "keys", opts.generator, opts.warmup, f"{run}w", opts.epochs, opts.device, log
        )
        pool = generate(opts.generator, max(POOL, opts.saturation_events), seed=2)
        saturation = opts.saturation_eps or measure_saturation(
            settings, first.record, pool, opts, run, workdir, log
        )
        rate = opts.share * saturation
        with ExitStack() as stack:
            running = start_services(stack, settings, opts, opts.logs or workdir, log)
            probe = Probe(settings, {n: port for n, (_, port) in running.items()})
            stack.callback(probe.close)
            if not wait_until(lambda: alive(running) and drained(probe, opts.warmup), opts.drain_timeout_s):
                log(f"the services had not caught up with the warm-up after {opts.drain_timeout_s:.0f}s")
            sent, stop = Sent(), threading.Event()
            seconds = opts.minutes * 60.0
            log(f"all up; {rate:,.0f} events/s ({opts.share:g} x {saturation:,.0f}) for {seconds:,.0f} s")
            producer = threading.Thread(
                target=send_at_rate,
                args=(settings, pool, rate, seconds, f"{run}m", opts.malformed_every, stop, sent),
                daemon=True,
            )
            producer.start()
            stack.callback(producer.join, 60)
            stack.callback(stop.set)
            samples = watch(probe, running, producer, sent, opts, on_sample)
        if sent.error is not None:
            raise sent.error
    if sent.events < 0.9 * rate * sent.seconds:
        log(
            f"the producer sent {sent.events / max(sent.seconds, 1e-9):,.0f} events/s of the {rate:,.0f}"
            " offered: this machine, not serve alone, set the pace"
        )
    return report(samples, sent, opts, saturation, rate, run)


def measure_saturation(
    settings: Settings,
    record: dict[str, Any],
    pool: LabelledData,
    opts: SoakOptions,
    run: str,
    workdir: Path,
    log: Log,
) -> float:
    """``serve``'s events per second on a burst of ``saturation_events`` already in their topic."""
    from driftline.bench.contenders import run_serve
    from driftline.models.control import materialize

    s = settings.model_copy(update={"topics": settings.topics.scoped(f"soak-{run}.saturation")})
    kafka.create_topics(s, [s.topics.events, s.topics.predictions, s.topics.dead_letters])
    n = opts.saturation_events
    burst = LabelledData(pool.features, pool.classes, pool.x[:n], pool.y[:n])
    encoder = AvroEncoder.single_object(builtin_store().latest("io.driftline.InputEvent"))
    log(f"saturation: {n:,} events at once, drained by serve with v{record['version']}")
    produce_stream(s, burst, encoder, None, run_id=f"{run}s")
    model = materialize(settings, record, workdir / "model")
    result = run_serve(s, n, model, max_batch=2000, timeout_s=opts.saturation_timeout_s, device=opts.device)
    eps = result["eps"]
    log(f"serve saturates at {eps:,.0f} events/s")
    return eps


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_services(
    stack: ExitStack, settings: Settings, opts: SoakOptions, logs: Path, log: Log
) -> dict[str, tuple[Service, int]]:
    """Start the three together, then wait for each to say it is ready; stopped when ``stack`` closes."""
    logs.mkdir(parents=True, exist_ok=True)
    running: dict[str, tuple[Service, int]] = {}
    commands = service_commands(opts.device, opts.retrain_events, opts.epochs)
    for name, args, _ in commands:
        port = free_port()
        log(f"starting {name} (metrics on 127.0.0.1:{port})")
        started = service(settings, logs / f"{name}.log", *args, "--metrics-port", str(port))
        running[name] = (stack.enter_context(started), port)
    for name, _, ready in commands:
        running[name][0].wait_for(ready, 120.0)
    return running


@dataclass
class Sent:
    """What the producer thread has sent (read by the sampler)."""

    events: int = 0
    malformed: int = 0
    seconds: float = 0.0
    error: BaseException | None = None


def send_at_rate(
    settings: Settings,
    pool: LabelledData,
    rate: float,
    seconds: float,
    run_id: str,
    malformed_every: int,
    stop: threading.Event,
    sent: Sent,
) -> None:
    """Send labelled events at ``rate`` for ``seconds`` in one-second segments paced from one start
    time: each segment aims to end when it is due, so time lost encoding or waiting for
    acknowledgements is caught up on by the next. A producer that cannot keep up sends fewer events,
    never for longer. Ends early when ``stop`` is set."""
    store = builtin_store()
    events = AvroEncoder.single_object(store.latest("io.driftline.InputEvent"))
    labels = AvroEncoder.single_object(store.latest("io.driftline.Label"))
    total, per = int(rate * seconds), max(1, int(rate))
    start = time.monotonic()
    try:
        while sent.events < total and time.monotonic() < start + seconds:
            if stop.wait(max(0.0, start + sent.events / rate - time.monotonic())):
                break
            rows = np.arange(sent.events, min(total, sent.events + per)) % len(pool.y)
            due = start + (sent.events + len(rows)) / rate
            part = LabelledData(pool.features, pool.classes, pool.x[rows], pool.y[rows])
            done = produce_stream(
                settings,
                part,
                events,
                labels,
                run_id=run_id,
                rate=len(rows) / max(due - time.monotonic(), 0.05),
                malformed_every=malformed_every,
                chunk_size=50,
                first_index=sent.events,
            )
            sent.malformed += done.malformed
            sent.events += done.events
    except BaseException as exc:  # handed to the main thread, which raises it
        sent.error = exc
    finally:
        sent.seconds = time.monotonic() - start


def watch(
    probe: Probe,
    running: dict[str, tuple[Service, int]],
    producer: threading.Thread,
    sent: Sent,
    opts: SoakOptions,
    on_sample: OnSample | None,
) -> list[Sample]:
    """Sample every ``interval_s`` while the stream runs, then until everything is accounted for
    (or ``drain_timeout_s``), and once more at the end."""
    sampler = Sampler(probe, {name: s.proc.pid for name, (s, _) in running.items()})
    samples: list[Sample] = []

    def take() -> None:
        samples.append(sampler.sample(sent.events))
        if on_sample is not None:
            on_sample(samples[-1])

    next_at, drain_until = sampler.started + opts.interval_s, None
    while True:
        now = time.monotonic()
        if not producer.is_alive():
            drain_until = drain_until or now + opts.drain_timeout_s
            if sent.error is not None or drained(probe, opts.warmup + sent.events) or now > drain_until:
                break
        if now >= next_at:
            take()
            next_at += opts.interval_s
        alive(running)
        time.sleep(min(0.5, max(0.05, next_at - time.monotonic())))
    take()
    return samples


def alive(running: dict[str, tuple[Service, int]]) -> bool:
    """True, or a RuntimeError with the log's tail of a service that exited."""
    for name, (s, _) in running.items():
        if s.proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {s.proc.returncode}:\n{s.output()[-3000:]}")
    return True


def wait_until(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def report(
    samples: list[Sample], sent: Sent, opts: SoakOptions, saturation: float, rate: float, run: str
) -> dict[str, Any]:
    last = samples[-1]
    events = opts.warmup + sent.events
    chart = None
    if opts.chart is not None:
        title = (
            f"driftline bench soak, {opts.minutes:g} min: {rate:,.0f} events/s offered ({opts.share:g} x"
            f" saturation), {sent.events / max(sent.seconds, 1e-9):,.0f}/s sent"
        )
        chart = str(draw_chart(opts.chart.resolve(), samples, title))
    return {
        "run": run,
        "minutes": opts.minutes,
        "share": opts.share,
        "interval_s": opts.interval_s,
        "saturation_eps": saturation,
        "target_eps": rate,
        "sent": sent.events,
        "seconds": last.t_s,
        "sent_seconds": sent.seconds,
        "sent_eps": sent.events / max(sent.seconds, 1e-9),
        "sent_share": sent.events / max(sent.seconds, 1e-9) / saturation,
        "malformed_sent": sent.malformed,
        "warmup": opts.warmup,
        "events": events,
        "predictions": last.predictions,
        "dead_letters": last.dead_letters,
        "lost": events - last.predictions - last.dead_letters,
        "summary": summarise(samples),
        "samples": samples,
        "chart": chart,
    }
