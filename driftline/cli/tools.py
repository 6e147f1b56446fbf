"""The whole path at once: demo and bench."""

from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from driftline.cli import main
from driftline.config import Settings

LOGS_OPTION = click.option(
    "--logs",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep serve's, monitor's and train's logs in this folder (default: removed at the end).",
)
DEVICE_OPTION = click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")

# -- demo / bench ------------------------------------------------------------------------------


def _stop_cleanly_on_signals() -> None:
    """Turn SIGTERM (and SIGINT, even if the parent ignored it) into exceptions, so that the
    ``finally`` blocks of commands that start processes stop them."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def _narrator(quiet: bool) -> Callable[[str], None]:
    """Progress lines on stderr, or nothing when the output is JSON."""

    def say(message: str) -> None:
        if not quiet:
            click.echo(f"» {message}", err=True)

    return say


def _print_table(title: str, rows: list[tuple[str, str]], as_json: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    if as_json is not None:
        click.echo(json.dumps(as_json, indent=2))
        return
    table = Table(title=title, show_header=False)
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


@main.command()
@click.option("--events", default=60000, show_default=True, help="Events in the main stream.")
@click.option(
    "--warmup", default=8000, show_default=True, help="Labelled events the first version learns from."
)
@click.option("--rate", default=2000.0, show_default=True, help="Events per second.")
@click.option(
    "--drift-at", default=0.4, show_default=True, help="Where the concept changes (share of the stream)."
)
@click.option("--malformed-every", default=1000, show_default=True, help="Corrupt every Nth event (0: none).")
@click.option(
    "--retrain-events", default=8000, show_default=True, help="Events after the alert to retrain on."
)
@click.option("--epochs", default=10, show_default=True, help="Training epochs per version.")
@click.option(
    "--chart",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("driftline-demo.png"),
    show_default=True,
    help="Where to write the PNG chart of accuracy over time.",
)
@LOGS_OPTION
@DEVICE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (no live view).")
@click.pass_obj
def demo(
    settings: Settings,
    events: int,
    warmup: int,
    rate: float,
    drift_at: float,
    malformed_every: int,
    retrain_events: int,
    epochs: int,
    chart: Path,
    logs: Path | None,
    device: str,
    as_json: bool,
) -> None:
    """Watch the whole system adapt: drift arrives, the monitor alerts, a trainer retrains, the new
    version goes live, accuracy recovers.

    Uses --bootstrap-servers when given, else a running local broker, else starts one for the run.
    Topics and keys are scoped to the run. serve, monitor and train run as separate processes and
    are stopped at the end, also on Ctrl-C. Ends with a summary and a PNG chart (--chart).
    """
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from driftline.broker import named_or_local_cluster
    from driftline.demo import DemoOptions, run_demo

    _stop_cleanly_on_signals()
    say = _narrator(quiet=as_json)
    opts = DemoOptions(
        events=events,
        warmup=warmup,
        rate=rate,
        drift_at=drift_at,
        malformed_every=malformed_every,
        retrain_events=retrain_events,
        epochs=epochs,
        chart=chart,
        logs=logs,
        device=device,
    )

    def table(figures: dict[str, Any]) -> Table:
        view = Table(title="driftline demo (live)", show_header=False, min_width=60)
        for key, value in figures.items():
            if key not in ("accounted", "expected"):
                view.add_row(
                    key,
                    f"{value:,.3f}"
                    if isinstance(value, float)
                    else f"{value:,}"
                    if isinstance(value, int)
                    else str(value),
                )
        return view

    with (
        named_or_local_cluster(settings.bootstrap_servers, settings.home, settings.cache_dir, say) as servers,
        Live(Table(), console=Console(stderr=True), refresh_per_second=4, transient=True) as live,
    ):
        summary = run_demo(
            settings.model_copy(update={"bootstrap_servers": servers}),
            opts,
            say,
            view=None if as_json else lambda figures: live.update(table(figures)),
        )

    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None or math.isnan(value) else format(value, spec)

    _print_table(
        "Driftline demo",
        [
            (
                "events / predictions / dead letters",
                f"{summary['events']:,} / {summary['predictions']:,} / {summary['dead_letters']:,}",
            ),
            ("drift alerts / retraining requests", f"{summary['alerts']} / {summary['retrain_requests']}"),
            ("versions", ", ".join(f"v{v}" for v in summary["versions"])),
            ("accuracy before drift", fmt(summary["accuracy_before_drift"], ".3f")),
            ("accuracy after drift (old version)", fmt(summary["accuracy_after_drift"], ".3f")),
            ("accuracy after the swap", fmt(summary["accuracy_after_swap"], ".3f")),
            ("drift -> alert", fmt(summary["seconds_drift_to_alert"], ".1f") + " s"),
            ("alert -> new version serving", fmt(summary["seconds_alert_to_swap"], ".1f") + " s"),
            (
                "latency p50 / p99",
                f"{fmt(summary['latency_p50_ms'], '.0f')} / {fmt(summary['latency_p99_ms'], '.0f')} ms",
            ),
            ("chart", summary["chart"]),
        ],
        summary if as_json else None,
    )
    if summary["unaccounted"]:
        sys.exit(1)


@main.group(invoke_without_command=True)
@click.option("--events", default=100000, show_default=True, help="Events for passthrough and serve.")
@click.option("--faust-events", default=20000, show_default=True, help="Events for the (slow) faust agent.")
@click.option(
    "--quix-events",
    default=10000,
    show_default=True,
    help="Events for the Quix Streams app (one message at a time, slow); 0 leaves it out.",
)
@click.option("--latency-seconds", default=10.0, show_default=True, help="Length of the latency run.")
@click.option("--max-batch", default=2000, show_default=True)
@DEVICE_OPTION
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Model artifact (default: a freshly trained bootstrap MLP).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.pass_context
def bench(
    ctx: click.Context,
    events: int,
    faust_events: int,
    quix_events: int,
    latency_seconds: float,
    max_batch: int,
    device: str,
    model_dir: Path | None,
    as_json: bool,
) -> None:
    """Measure serve against the passthrough limit, a faust agent and a Quix Streams app, side by side,
    plus latency.

    Every contender reads the same events from the same broker in its own process; throughput runs
    from the first event consumed to the last output acknowledged. The faust agent and the Quix app
    decode, score and encode with serve's own code, so only the framework differs: faust in batches
    (stream.take_events), Quix one message per sdf.apply, the way Quix processes. Latency is measured
    with events offered at half of serve's saturated rate (prediction produced minus event time), at a
    quarter, and at half rate again while a new model version goes live every second (hot swap). The
    drift monitor reads the same events with their predictions and labels.

    Quix Streams pins an older confluent-kafka than Driftline's, so it runs from its own virtualenv,
    <cache>/quix-venv-<key> (cache: $DRIFTLINE_CACHE_DIR, default ~/.cache/driftline; key: the pinned
    quixstreams release, the interpreter and Driftline's virtualenv, which it sees after its own). The
    first bench builds it with pip (a minute or so; needs PyPI or your pip index once), later runs
    reuse it. --quix-events 0 leaves Quix out.

    `driftline bench drift` judges the drift detectors instead (no broker); `driftline bench model`
    measures serve with a compute-heavy exported model against the model's own batch throughput.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings: Settings = ctx.obj
    import tempfile

    from driftline.bench.runner import BenchOptions, run_bench
    from driftline.broker import named_or_local_cluster
    from driftline.trainers import bootstrap_model

    _stop_cleanly_on_signals()
    say = _narrator(quiet=as_json)
    opts = BenchOptions(
        events=events,
        faust_events=faust_events,
        quix_events=quix_events,
        latency_seconds=latency_seconds,
        max_batch=max_batch,
        device=device,
    )
    with (
        named_or_local_cluster(settings.bootstrap_servers, settings.home, settings.cache_dir, say) as servers,
        tempfile.TemporaryDirectory(prefix="driftline-bench-model-") as tmp,
    ):
        if model_dir is None:
            say("training the bootstrap model")
            model_dir = Path(tmp)
            bootstrap_model(model_dir, device=device)
        r = run_bench(settings.model_copy(update={"bootstrap_servers": servers}), model_dir, opts, say)
    verdict = {True: "meets the bar", False: "BELOW the bar"}
    quix_rows = (
        [
            ("Quix Streams app", f"{r['quix_eps']:,.0f} events/s (quixstreams {r['quixstreams_version']})"),
            ("serve / quix", f"{r['serve_vs_quix']:.1f}x  ({verdict[r['serve_vs_quix'] >= 3]}: 3x)"),
        ]
        if r["quix_eps"]
        else []
    )
    _print_table(
        "driftline bench",
        [
            ("passthrough limit", f"{r['passthrough_eps']:,.0f} events/s"),
            ("serve", f"{r['serve_eps']:,.0f} events/s"),
            ("serve --exactly-once", f"{r['serve_exactly_once_eps']:,.0f} events/s"),
            ("faust agent", f"{r['faust_eps']:,.0f} events/s"),
            *quix_rows[:1],
            (
                "monitor (event + prediction + label)",
                f"{r['monitor_eps']:,.0f} events/s ({r['monitor_vs_serve']:.2f}x serve)",
            ),
            (
                "monitor, 50% partition sample",
                f"{r['monitor_half_sample_stream_eps']:,.0f} stream events/s"
                f" ({r['monitor_half_sample_vs_serve']:.2f}x serve)",
            ),
            (
                "serve / passthrough",
                f"{r['serve_vs_passthrough']:.2f}  ({verdict[r['serve_vs_passthrough'] >= 0.5]}: 0.5)",
            ),
            ("serve / faust", f"{r['serve_vs_faust']:.1f}x  ({verdict[r['serve_vs_faust'] >= 10]}: 10x)"),
            *quix_rows[1:],
            (
                "latency p50 / p99, half rate",
                f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms at {r['latency_rate_eps']:,.0f} events/s",
            ),
            (
                "latency p50 / p99, quarter rate",
                f"{r['quarter_p50_ms']:.0f} / {r['quarter_p99_ms']:.0f} ms"
                f" at {r['quarter_rate_eps']:,.0f} events/s",
            ),
            (
                "p99 during hot swaps / steady",
                f"{r['swap_p99_ms']:.0f} / {r['steady_p99_ms']:.0f} ms ({r['swap_vs_steady_p99']:.2f}x;"
                f" {r['swaps']:.0f} swaps at {r['swap_rate_eps']:,.0f} events/s)",
            ),
        ],
        r if as_json else None,
    )


@bench.command("soak")
@click.option("--minutes", type=float, default=10.0, show_default=True, help="How long the stream runs.")
@click.option(
    "--share",
    type=click.FloatRange(0.0, min_open=True),
    default=0.5,
    show_default=True,
    help="Offered rate as a share of serve's saturated rate.",
)
@click.option("--interval-s", type=float, default=10.0, show_default=True, help="Seconds between samples.")
@click.option(
    "--saturation-events", default=30000, show_default=True, help="Events of the burst that finds saturation."
)
@click.option(
    "--saturation-eps",
    type=float,
    default=None,
    help="Skip the burst: take this as serve's saturated events/s (e.g. from driftline bench).",
)
@click.option(
    "--warmup", default=4000, show_default=True, help="Labelled events the first version learns from."
)
@click.option("--malformed-every", default=1000, show_default=True, help="Corrupt every Nth event (0: none).")
@DEVICE_OPTION
@click.option(
    "--chart",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a PNG of RSS, lag and latency over time here.",
)
@LOGS_OPTION
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary and every sample as one JSON object."
)
@click.pass_obj
def bench_soak(
    settings: Settings,
    minutes: float,
    share: float,
    interval_s: float,
    saturation_events: int,
    saturation_eps: float | None,
    warmup: int,
    malformed_every: int,
    device: str,
    chart: Path | None,
    logs: Path | None,
    as_json: bool,
) -> None:
    """Run serve, monitor and train for --minutes at --share of saturation; report RSS, lag and latency.

    \b
    1. Uses driftline -b when given, else a running local broker, else starts one for the
       run; topics and keys are scoped to the run; a first version is trained on a warm-up stream.
    2. Saturation: serve (the bench's contender, same model) drains --saturation-events at once
       (or --saturation-eps gives the figure).
    3. serve, monitor and train run as processes (--metrics-port on 127.0.0.1) while a labelled
       stream arrives at --share x that rate for --minutes (less where the producer cannot keep
       up: the summary shows the rate achieved).
    4. Every --interval-s, one line on stderr: RSS of each process, serve's consumer lag, events/s,
       dead letters and end-to-end latency p50/p99 over the interval (from its histogram), the
       monitor's lag (its inputs' records not yet read), and who is not ready (/readyz).
    5. A summary: RSS start/end/max and slope in MB/hour per process, lag max, latency p99 max and
       median of samples, not-ready samples, and whether every event was predicted or dead-lettered.
    A benchmark, not a test: it exits 1 only when events were lost. Every process is stopped at the
    end, also on Ctrl-C or SIGTERM.
    """
    from driftline.bench.soak import SoakOptions, run_soak
    from driftline.bench.soak_report import format_header, format_sample, jsonable, summary_rows
    from driftline.broker import named_or_local_cluster

    _stop_cleanly_on_signals()
    say = _narrator(quiet=as_json)
    opts = SoakOptions(
        minutes=minutes,
        share=share,
        interval_s=interval_s,
        saturation_events=saturation_events,
        saturation_eps=saturation_eps,
        warmup=warmup,
        malformed_every=malformed_every,
        device=device,
        chart=chart,
        logs=logs,
    )
    header: list[str] = []

    def line(sample: Any) -> None:
        if not header:
            header.append(format_header())
            click.echo(header[0], err=True)
        click.echo(format_sample(sample), err=True)

    with named_or_local_cluster(
        settings.bootstrap_servers, settings.home, settings.cache_dir, say
    ) as servers:
        r = run_soak(settings.model_copy(update={"bootstrap_servers": servers}), opts, say, on_sample=line)
    _print_table("driftline bench soak", summary_rows(r), jsonable(r) if as_json else None)
    if r["lost"]:
        sys.exit(1)


@bench.command("model")
@click.option("--events", default=40000, show_default=True, help="Events serve handles end to end.")
@click.option("--max-batch", default=2000, show_default=True, help="serve's and the direct call's batch.")
@click.option("--width", default=1024, show_default=True, help="Width of the residual MLP.")
@click.option("--blocks", default=4, show_default=True, help="Residual blocks (two width x width layers).")
@click.option(
    "--threads",
    default=1,
    show_default=True,
    help="ONNX Runtime intra-op threads in serve and in the direct call (DRIFTLINE_ONNX_THREADS), "
    "torch threads for the eager reference.",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="cuda: also measure the GPU path (ONNX Runtime's CUDA provider or torch.cuda); skipped without one.",
)
@click.option("--seconds", default=5.0, show_default=True, help="Length of each direct measurement.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.pass_obj
def bench_model(
    settings: Settings,
    events: int,
    max_batch: int,
    width: int,
    blocks: int,
    threads: int,
    device: str,
    seconds: float,
    as_json: bool,
) -> None:
    """serve with a user-style exported model against the model's own batch throughput.

    \b
    1. Builds a compute-heavy residual MLP (numeric fields and a categorical embedding; MFLOP per
       event printed) and exports it with driftline.export, as a user would.
    2. The model's own throughput: ONNX Runtime's session.run, the session serve builds, on pre-built
       tensors at --max-batch; eager torch on the same module beside it.
    3. serve end to end on the broker (-b, else the running local one, else one started for the run):
       events in the model's contract produced beforehand, then consumed, decoded, inferred and
       their predictions produced and acknowledged, in serve's own process.
    4. Where serve's time goes: its loop's stages timed during the run, and the parts of one
       process() call (decode, spec.encode, model_inputs, session.run, encoding) on its largest batch.
    Both sides use --threads ONNX Runtime threads; the broker shares the machine during serve's run
    only. --device cuda adds the GPU path (CUDA provider against serve --device cuda), or says why not.
    """
    import tempfile

    from driftline.bench.model_bench import ModelBenchOptions, run_model_bench, summary_rows
    from driftline.broker import named_or_local_cluster

    _stop_cleanly_on_signals()
    say = _narrator(quiet=as_json)
    opts = ModelBenchOptions(
        events=events,
        max_batch=max_batch,
        width=width,
        blocks=blocks,
        threads=threads,
        device=device,
        seconds=seconds,
    )
    with (
        named_or_local_cluster(settings.bootstrap_servers, settings.home, settings.cache_dir, say) as servers,
        tempfile.TemporaryDirectory(prefix="driftline-bench-model-") as tmp,
    ):
        r = run_model_bench(settings.model_copy(update={"bootstrap_servers": servers}), opts, Path(tmp), say)
    _print_table("driftline bench model", summary_rows(r), r if as_json else None)


@bench.command("drift")
@click.option(
    "--full",
    is_flag=True,
    help="The whole protocol (about 6 minutes on 2 cores); default: quick mode (1 minute).",
)
@click.option(
    "--seeds", type=int, default=None, help="Seeds per Track B/C stream (default: 3 quick, 20 full)."
)
@click.option("--workers", default=2, show_default=True, help="Worker processes.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
def bench_drift(full: bool, seeds: int | None, workers: int, as_json: bool) -> None:
    """Judge the drift detectors on River's generators, River's detectors beside them in the same run.

    \b
    Track A: Bernoulli error streams (p0 -> p1), label-based detectors.
    Track B: a frozen model's 0/1 errors on SEA, Agrawal, STAGGER, Sine, LED, Hyperplane, RandomRBF.
    Track C: no labels; the same streams plus harmless input shifts, harmful feature noise and
             stationary controls; precision and recall of label-free alerts.
    Delay, missed detections and false alarms per 10^5 events are reported side by side, so every
    claim is made at a matched false-alarm budget (see ../shared/reference/drift-benchmark.md).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from driftline.bench.drift import format_tables, run_drift_bench

    _stop_cleanly_on_signals()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=as_json) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        results = run_drift_bench(quick=not full, seeds=seeds, progress=progress, workers=workers)
    click.echo(json.dumps(results, indent=2) if as_json else format_tables(results))


@bench.command("loop")
@click.option(
    "--stream",
    "streams",
    multiple=True,
    type=click.Choice(["phishing", "bananas", "imagesegments", "shuttle", "trumpapproval"]),
    help="A stream bundled with River (repeatable) [default: phishing, bananas, trumpapproval].",
)
@click.option(
    "--drift-at",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.5,
    show_default=True,
    help="Inject the drift at this share of the rows (0: none).",
)
@click.option(
    "--warmup",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of the rows the first version and River's learners learn from first.",
)
@click.option("--max-rows", type=int, default=None, help="Use only the first N rows of each stream.")
@click.option("--rate", default=50.0, show_default=True, help="Events per second through Kafka.")
@click.option(
    "--retrain-events", default=200, show_default=True, help="Events after an alert the trainer learns from."
)
@click.option("--epochs", default=40, show_default=True, help="Training epochs per version.")
@click.option("--min-rows", default=100, show_default=True, help="Fewest labelled rows to train a version.")
@click.option(
    "--train-arg",
    "train_args",
    multiple=True,
    help="One more argument for the `driftline train` process, as is (repeatable; e.g. a recipe's).",
)
@click.option(
    "--monitor-arg",
    "monitor_args",
    multiple=True,
    help="One more argument for the `driftline monitor` process, as is (repeatable; e.g. a retraining "
    "policy's).",
)
@click.option("--timeout-s", default=900.0, show_default=True, help="Bound on the whole run.")
@LOGS_OPTION
@click.option("--device", default="cpu", show_default=True, help="auto, cpu or cuda.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as one JSON object.")
@click.pass_obj
def bench_loop(
    settings: Settings,
    streams: tuple[str, ...],
    drift_at: float,
    warmup: float,
    max_rows: int | None,
    rate: float,
    retrain_events: int,
    epochs: int,
    min_rows: int,
    train_args: tuple[str, ...],
    monitor_args: tuple[str, ...],
    timeout_s: float,
    logs: Path | None,
    device: str,
    as_json: bool,
) -> None:
    """The closed loop on real labelled streams against River's ARF and Hoeffding adaptive tree.

    \b
    Streams ship inside the river wheel (nothing is downloaded); rows in their file order. None has
    a documented drift, so one is injected from row floor(--drift-at x rows): classification labels
    y -> (y+1) mod K, regression targets + 2 sd (of the rows before).
    Driftline: first version from the --warmup rows (train --once), then serve, monitor and train as
    processes while the other rows arrive at --rate, each label right after its event; predictions
    are read back from Kafka. In the same run, in process, on the same rows after the warm-up:
    River's ARF and Hoeffding adaptive tree (warmed on the warm-up rows, then test-then-train) and
    the never-retrained first version. Regression: the first version is a linear regression on the
    warm-up rows under a regression spec (published live, events in its contract, targets as
    labels), retrained by train --recipe driftline.trainers.recipes:mlp --metric mae.
    Prints prequential accuracy (MAE) overall, before and after the drift, rows (and seconds) to
    recover within 0.02 (MAE: 10%) of the 200-row pre-drift level, alerts, versions, and the gap
    Driftline - ARF. Use --train-arg and --monitor-arg to pass more options to those processes.
    Exits 1 when Driftline left a row unanswered.
    """
    import dataclasses

    from driftline.bench.loop import LoopOptions, format_tables, run_loop_bench
    from driftline.broker import named_or_local_cluster

    _stop_cleanly_on_signals()
    say = _narrator(quiet=as_json)
    opts = LoopOptions(
        drift_at=drift_at,
        warmup=warmup,
        max_rows=max_rows,
        rate=rate,
        retrain_events=retrain_events,
        epochs=epochs,
        min_rows=min_rows,
        device=device,
        train_args=train_args,
        monitor_args=monitor_args,
        logs=logs,
        timeout_s=timeout_s,
    )
    if streams:
        opts = dataclasses.replace(opts, streams=streams)
    with named_or_local_cluster(
        settings.bootstrap_servers, settings.home, settings.cache_dir, say
    ) as servers:
        results = run_loop_bench(settings.model_copy(update={"bootstrap_servers": servers}), opts, say)
    click.echo(json.dumps(results, indent=2) if as_json else format_tables(results))
    loop = [s["methods"]["driftline"] for s in results["streams"] if "driftline" in s["methods"]]
    if any(m["answered"] < m["rows"] for m in loop):
        sys.exit(1)
