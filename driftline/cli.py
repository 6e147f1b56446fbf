"""The ``driftline`` command line. Every command explains itself with ``--help``."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from driftline.config import Settings, load_settings
from driftline.errors import DriftlineError

log = logging.getLogger("driftline")


def _parse_kv(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (example: -X security.protocol=SASL_SSL)")
        out[key.strip()] = value.strip()
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML configuration file (also DRIFTLINE_CONFIG).",
)
@click.option(
    "--bootstrap-servers",
    "-b",
    metavar="HOST:PORT[,...]",
    help="Use this Kafka cluster (also DRIFTLINE_BOOTSTRAP_SERVERS). "
    "Default: the local broker started by `driftline broker start`.",
)
@click.option(
    "-X",
    "kafka_options",
    multiple=True,
    callback=_parse_kv,
    metavar="KEY=VALUE",
    help="Extra librdkafka client setting, repeatable (security.protocol, sasl.*, ssl.*).",
)
@click.option(
    "--schema-registry-url",
    metavar="URL",
    help="Confluent Schema Registry: events use Confluent framing. Default: Avro single-object encoding.",
)
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the local broker keeps its data and state (also DRIFTLINE_HOME).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.version_option(package_name="driftline")
@click.pass_context
def main(
    ctx: click.Context,
    config: Path | None,
    bootstrap_servers: str | None,
    kafka_options: dict[str, str],
    schema_registry_url: str | None,
    home: Path | None,
    verbose: bool,
) -> None:
    """Driftline: PyTorch models in production on Kafka.

    \b
    Quick start (embedded local broker, nothing else needed):
      driftline demo                 # the whole path, with a summary
    Step by step:
      driftline broker start
      driftline topics create
      driftline models bootstrap --out ./model
      driftline serve --model ./model &
      driftline produce --count 10000 --rate 2000
      driftline tail driftline.predictions --max 5
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "schema_registry_url": schema_registry_url,
        "home": home,
    }
    settings = load_settings(config, **overrides)
    if kafka_options:
        settings = settings.model_copy(update={"kafka": {**settings.kafka, **kafka_options}})
    ctx.obj = settings


def cluster_settings(settings: Settings) -> Settings:
    """Settings with bootstrap servers filled in from the running local broker when none are named."""
    if settings.bootstrap_servers:
        return settings
    from driftline.broker import LocalBroker

    info = LocalBroker(settings.home, settings.cache_dir).status()
    if info is None:
        raise click.UsageError(
            "No Kafka cluster: start the local one with `driftline broker start`, or name one with "
            "--bootstrap-servers / DRIFTLINE_BOOTSTRAP_SERVERS."
        )
    return settings.model_copy(update={"bootstrap_servers": info.bootstrap_servers})


SCHEMA_OPTION = click.option(
    "--schema",
    "schemas",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Extra .avsc writer schema(s) of user records to accept, oldest version first.",
)


# -- broker ------------------------------------------------------------------------------------


@main.group()
def broker() -> None:
    """The embedded single-node Apache Kafka (KRaft), built from Maven Central jars, run with Java 17+."""


@broker.command("start")
@click.option("--heap-mb", default=512, show_default=True, help="JVM heap of the broker.")
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait until it serves.")
@click.pass_obj
def broker_start(settings: Settings, heap_mb: int, timeout: float) -> None:
    """Start a fresh local broker in the background (data under --home) and wait until it serves."""
    from driftline.broker import LocalBroker

    b = LocalBroker(
        settings.home,
        settings.cache_dir,
        heap_mb=heap_mb,
        partitions=settings.topics.partitions,
        log=lambda m: click.echo(m, err=True),
    )
    info = b.start(timeout=timeout)
    click.echo(f"Kafka serves at {info.bootstrap_servers} (pid {info.pid}, data {info.data_dir}).")
    click.echo("Stop it with `driftline broker stop`.")


@broker.command("stop")
@click.pass_obj
def broker_stop(settings: Settings) -> None:
    """Stop the local broker (SIGTERM, then SIGKILL after 30 s)."""
    from driftline.broker import LocalBroker

    stopped = LocalBroker(settings.home, settings.cache_dir).stop()
    click.echo("Stopped the local broker." if stopped else "No local broker was running.")


@broker.command("status")
@click.pass_obj
def broker_status(settings: Settings) -> None:
    """Say whether the local broker runs, and where. Exit code 1 if it does not."""
    from driftline.broker import LocalBroker

    info = LocalBroker(settings.home, settings.cache_dir).status()
    if info is None:
        click.echo("No local broker is running.")
        sys.exit(1)
    click.echo(json.dumps(asdict(info), indent=2))


# -- topics ------------------------------------------------------------------------------------


@main.group()
def topics() -> None:
    """Driftline's topics."""


@topics.command("create")
@click.pass_obj
def topics_create(settings: Settings) -> None:
    """Create every topic Driftline uses that does not exist yet (idempotent)."""
    from driftline.streams.kafka import create_topics

    settings = cluster_settings(settings)
    created = create_topics(settings)
    for name in settings.topics.all_names():
        click.echo(f"{name}: {'created' if name in created else 'exists'}")


# -- models ------------------------------------------------------------------------------------


@main.group()
def models() -> None:
    """Model artifacts (safetensors weights + JSON config naming a known architecture)."""


@models.command("bootstrap")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory to write the artifact to.",
)
@click.option("--generator", type=click.Choice(["agrawal", "sea"]), default="agrawal", show_default=True)
@click.option("--count", default=20000, show_default=True, help="Training rows.")
@click.option("--seed", default=7, show_default=True)
@click.option("--epochs", default=10, show_default=True)
@click.option("--architecture", type=click.Choice(["mlp", "logistic"]), default="mlp", show_default=True)
@click.option("--name", default=None, help="Model name (default: the generator's name).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def models_bootstrap(
    out: Path,
    generator: str,
    count: int,
    seed: int,
    epochs: int,
    architecture: str,
    name: str | None,
    device: str,
) -> None:
    """Train a first model on River's synthetic stream and write it as an artifact."""
    from rich.progress import Progress

    from driftline.trainers import bootstrap_model

    with Progress(transient=True) as progress:
        task = progress.add_task("training", total=epochs)
        config = bootstrap_model(
            out,
            generator,
            count=count,
            seed=seed,
            epochs=epochs,
            architecture=architecture,
            name=name,
            device=device,
            on_epoch=lambda _e, _l: progress.advance(task),
        )
    accuracy = config.metrics.get("holdout_accuracy", float("nan"))
    click.echo(f"Wrote {out} ({config.name} v{config.version}, holdout accuracy {accuracy:.3f}).")


# -- serve -------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Model artifact directory.",
)
@click.option(
    "--group",
    default="driftline-serve",
    show_default=True,
    help="Consumer group; run more processes with the same group to scale out.",
)
@click.option(
    "--instance-id",
    default=socket.gethostname(),
    show_default=True,
    help="Stable id of this instance (unique within the group when --exactly-once).",
)
@click.option("--max-batch", default=2000, show_default=True, help="Largest micro-batch, in events.")
@click.option(
    "--max-wait-ms",
    default=20.0,
    show_default=True,
    help="Latency budget: a batch closes this long after its first event at the latest.",
)
@click.option(
    "--exactly-once",
    is_flag=True,
    help="One Kafka transaction per batch; downstream consumers read with read_committed.",
)
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
@click.option("--metrics-port", default=0, show_default=True, help="Prometheus /metrics port (0: off).")
@click.option(
    "--torch-threads",
    default=1,
    show_default=True,
    help="PyTorch CPU threads (1 suits small models; raise it for large ones on many cores).",
)
@SCHEMA_OPTION
@click.pass_obj
def serve(
    settings: Settings,
    model_dir: Path,
    group: str,
    instance_id: str,
    max_batch: int,
    max_wait_ms: float,
    exactly_once: bool,
    device: str,
    metrics_port: int,
    torch_threads: int,
    schemas: tuple[Path, ...],
) -> None:
    """Consume events, predict in micro-batches, publish one prediction per event.

    Offsets are committed only after the batch's predictions and dead letters are acknowledged
    (at-least-once), or inside the batch's transaction (--exactly-once). Bad events go to the
    dead-letter topic with their original bytes and the reason. Stop with SIGTERM or Ctrl-C.
    """
    from driftline.monitoring import ServeMetrics
    from driftline.streams.kafka import require_topics, wait_for_cluster
    from driftline.streams.serve import ServeOptions, build_processor

    settings = cluster_settings(settings)
    wait_for_cluster(settings)
    t = settings.topics
    require_topics(settings, [t.events, t.predictions, t.dead_letters])
    options = ServeOptions(
        group_id=group,
        instance_id=instance_id,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        exactly_once=exactly_once,
    )
    metrics = ServeMetrics()
    processor = build_processor(
        settings,
        model_dir,
        options,
        device=device,
        torch_threads=torch_threads,
        schemas=schemas,
        metrics=metrics,
    )
    metrics.serve_http(metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cfg = processor.core.predictor.config
    processor.run(
        stop,
        on_ready=lambda: log.info(
            "serving %s v%s from %s to %s (group %s, %s)",
            cfg.name,
            cfg.version,
            settings.topics.events,
            settings.topics.predictions,
            group,
            "exactly-once" if exactly_once else "at-least-once",
        ),
    )
    log.info("stopped cleanly")


# -- produce / tail ----------------------------------------------------------------------------


@main.command()
@click.option("--generator", type=click.Choice(["agrawal", "sea"]), default="agrawal", show_default=True)
@click.option("--count", default=10000, show_default=True, help="Events to send (the loop is bounded).")
@click.option("--rate", default=0.0, show_default=True, help="Events per second (0: as fast as possible).")
@click.option("--seed", default=42, show_default=True)
@click.option("--drift-at", type=int, default=None, help="Event index where the concept changes.")
@click.option(
    "--drift-width", default=1, show_default=True, help="1: abrupt; more: gradual over that many events."
)
@click.option(
    "--labels/--no-labels", default=True, show_default=True, help="Also publish ground-truth labels."
)
@click.option(
    "--malformed-every",
    default=0,
    show_default=True,
    help="Corrupt every Nth event (to see the dead-letter path).",
)
@click.option("--run-id", default=None, help="Prefix of event ids (default: random).")
@click.pass_obj
def produce(
    settings: Settings,
    generator: str,
    count: int,
    rate: float,
    seed: int,
    drift_at: int | None,
    drift_width: int,
    labels: bool,
    malformed_every: int,
    run_id: str | None,
) -> None:
    """Send labelled synthetic events (River's Agrawal or SEA) as a business system would."""
    from rich.progress import Progress

    from driftline.schemas import AvroEncoder, RegistryResolver, builtin_store
    from driftline.streams.kafka import require_topics
    from driftline.streams.produce import produce_stream
    from driftline.streams.synthetic import generate

    settings = cluster_settings(settings)
    require_topics(settings, [settings.topics.events, *([settings.topics.labels] if labels else [])])
    store = builtin_store()
    registry = RegistryResolver.from_config(settings.registry_config())
    events = AvroEncoder.for_settings(
        store.latest("io.driftline.InputEvent"), registry, f"{settings.topics.events}-value"
    )
    label_enc = (
        AvroEncoder.for_settings(
            store.latest("io.driftline.Label"), registry, f"{settings.topics.labels}-value"
        )
        if labels
        else None
    )
    data = generate(generator, count, seed=seed, drift_at=drift_at, drift_width=drift_width)
    with Progress(transient=True) as progress:
        task = progress.add_task("producing", total=count)
        report = produce_stream(
            settings,
            data,
            events,
            label_enc,
            run_id=run_id or uuid.uuid4().hex[:8],
            rate=rate or None,
            malformed_every=malformed_every,
            on_progress=lambda n: progress.advance(task, n),
        )
    click.echo(
        f"Produced {report.events} events ({report.malformed} malformed) and {report.labels} labels "
        f"in {report.seconds:.1f}s ({report.events / max(report.seconds, 1e-9):,.0f} events/s)."
    )


@main.command("tail")
@click.argument("topic")
@click.option("--max", "max_records", type=int, default=None, help="Stop after this many records.")
@click.option("--timeout", type=float, default=None, help="Stop after this many idle seconds.")
@click.option("--latest", is_flag=True, help="Only new records (default: from the beginning).")
@click.option("--read-committed", is_flag=True, help="Hide records of aborted/open transactions.")
@SCHEMA_OPTION
@click.pass_obj
def tail_cmd(
    settings: Settings,
    topic: str,
    max_records: int | None,
    timeout: float | None,
    latest: bool,
    read_committed: bool,
    schemas: tuple[Path, ...],
) -> None:
    """Print a topic's records decoded, one JSON object per line (dead letters show their headers)."""
    from driftline.schemas import AvroDecoder, RegistryResolver, builtin_store
    from driftline.streams.tail import tail

    settings = cluster_settings(settings)
    store = builtin_store()
    store.add_files(schemas)
    decoder = AvroDecoder(store, RegistryResolver.from_config(settings.registry_config()))
    tail(
        settings,
        topic,
        decoder,
        click.echo,
        from_beginning=not latest,
        max_records=max_records,
        idle_timeout=timeout,
        read_committed=read_committed,
    )


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
@click.option("--events", default=20000, show_default=True, help="Events to produce.")
@click.option("--rate", default=5000.0, show_default=True, help="Events per second.")
@click.option("--malformed-every", default=500, show_default=True, help="Corrupt every Nth event (0: none).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_obj
def demo(
    settings: Settings, events: int, rate: float, malformed_every: int, device: str, as_json: bool
) -> None:
    """Run the whole path: local broker, topics, a bootstrap model, `serve`, events, and a summary.

    Uses --bootstrap-servers when given, else a running local broker, else starts one for the run
    (and stops it after, also on Ctrl-C). Topics are scoped to the run.
    """
    from driftline.broker import named_or_local_cluster
    from driftline.demo import DemoOptions, run_demo

    _stop_cleanly_on_signals()
    say = _narrator(quiet=as_json)
    with named_or_local_cluster(
        settings.bootstrap_servers, settings.home, settings.cache_dir, say
    ) as servers:
        summary = run_demo(
            settings.model_copy(update={"bootstrap_servers": servers}),
            DemoOptions(events=events, rate=rate, malformed_every=malformed_every, device=device),
            say,
        )
    _print_table(
        "Driftline demo",
        [
            ("events produced", f"{summary['events']:,}"),
            ("predictions", f"{summary['predictions']:,}"),
            ("dead letters", f"{summary['dead_letters']:,}"),
            ("unaccounted", f"{summary['unaccounted']:,}"),
            ("throughput", f"{summary['throughput_eps']:,.0f} events/s (at the offered rate)"),
            ("latency p50 / p99", f"{summary['latency_p50_ms']:.1f} / {summary['latency_p99_ms']:.1f} ms"),
            ("accuracy vs labels", f"{summary['accuracy']:.3f}"),
        ],
        summary if as_json else None,
    )
    if summary["unaccounted"]:
        sys.exit(1)


@main.command()
@click.option("--events", default=100000, show_default=True, help="Events for passthrough and serve.")
@click.option("--faust-events", default=20000, show_default=True, help="Events for the (slow) faust agent.")
@click.option("--latency-seconds", default=10.0, show_default=True, help="Length of the latency run.")
@click.option("--max-batch", default=2000, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Model artifact (default: a freshly trained bootstrap MLP).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.pass_obj
def bench(
    settings: Settings,
    events: int,
    faust_events: int,
    latency_seconds: float,
    max_batch: int,
    device: str,
    model_dir: Path | None,
    as_json: bool,
) -> None:
    """Measure serve against the passthrough limit and a faust agent, side by side, plus latency.

    Every contender reads the same events from the same broker in its own process; throughput runs
    from the first event consumed to the last output acknowledged. Latency is measured with events
    offered at half of serve's saturated rate (prediction produced minus event time).
    """
    import tempfile

    from driftline.bench.runner import BenchOptions, run_bench
    from driftline.broker import named_or_local_cluster
    from driftline.trainers import bootstrap_model

    _stop_cleanly_on_signals()
    say = _narrator(quiet=as_json)
    opts = BenchOptions(
        events=events,
        faust_events=faust_events,
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
    _print_table(
        "driftline bench",
        [
            ("passthrough limit", f"{r['passthrough_eps']:,.0f} events/s"),
            ("serve", f"{r['serve_eps']:,.0f} events/s"),
            ("serve --exactly-once", f"{r['serve_exactly_once_eps']:,.0f} events/s"),
            ("faust agent", f"{r['faust_eps']:,.0f} events/s"),
            (
                "serve / passthrough",
                f"{r['serve_vs_passthrough']:.2f}  ({verdict[r['serve_vs_passthrough'] >= 0.5]}: 0.5)",
            ),
            ("serve / faust", f"{r['serve_vs_faust']:.1f}x  ({verdict[r['serve_vs_faust'] >= 10]}: 10x)"),
            (
                "latency p50 / p99, half rate",
                f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms at {r['latency_rate_eps']:,.0f} events/s",
            ),
            (
                "latency p50 / p99, quarter rate",
                f"{r['quarter_p50_ms']:.0f} / {r['quarter_p99_ms']:.0f} ms"
                f" at {r['quarter_rate_eps']:,.0f} events/s",
            ),
        ],
        r if as_json else None,
    )


def run() -> None:
    """Entry point: Driftline's own errors become one clear line and exit code 2."""
    try:
        main(standalone_mode=True)
    except DriftlineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
