"""Commands on the event stream: serve, produce, tail."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import click

from driftline.cli import (
    METRICS_PORT_HELP,
    SCHEMA_OPTION,
    TRUSTED_KEYS_OPTION,
    cluster_settings,
    main,
    setting_option,
    stop_on_signals,
    with_flags,
    with_trusted_keys,
)
from driftline.config import Settings
from driftline.health import Health
from driftline.options import MonitorOptions, ServeOptions

log = logging.getLogger("driftline")


# -- serve -------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Serve this local artifact directory and ignore the registry (no hot swap).",
)
@click.option(
    "--model-name",
    default=None,
    help="The model to serve from the registry topic [default: the configured model_name, 'driftline'].",
)
@TRUSTED_KEYS_OPTION
@setting_option(ServeOptions, "group_id", "--group")
@setting_option(ServeOptions, "instance_id")
@setting_option(ServeOptions, "max_batch", type=int)
@setting_option(ServeOptions, "max_wait_ms", type=float)
@setting_option(ServeOptions, "exactly_once", "--exactly-once/--at-least-once")
@setting_option(ServeOptions, "device")
@click.option("--metrics-port", default=0, show_default=True, help=METRICS_PORT_HELP)
@setting_option(ServeOptions, "torch_threads", type=int)
@SCHEMA_OPTION
@click.pass_obj
def serve(
    settings: Settings,
    /,
    model_dir: Path | None,
    model_name: str | None,
    trusted_keys: tuple[Path, ...],
    metrics_port: int,
    schemas: tuple[Path, ...],
    **flags: Any,
) -> None:
    """Consume events, predict in micro-batches, publish one prediction per event.

    The model comes from the registry topic: serve reads it from the beginning, loads the live
    version of --model-name, and keeps watching. A new live version is fetched, verified against the
    trusted keys, loaded and warmed up in the background, then swapped in between two batches; a
    shadow version scores the same batches to the shadow-predictions topic. Versions that fail
    verification are refused (log, metric, audit topic) and serving goes on. With --model, a local
    artifact is served instead and the registry is ignored.

    Offsets are committed only after the batch's predictions and dead letters are acknowledged
    (at-least-once), or inside the batch's transaction (--exactly-once). Bad events go to the
    dead-letter topic with their original bytes and the reason. Stop with SIGTERM or Ctrl-C.
    """
    from driftline.metrics import ServeMetrics
    from driftline.streams.app import serve_until_stopped
    from driftline.streams.kafka import require_topics, wait_for_cluster

    settings = with_trusted_keys(cluster_settings(settings), trusted_keys)
    wait_for_cluster(settings)
    t = settings.topics
    needed = [t.events, t.predictions, t.dead_letters]
    if model_dir is None:
        needed += [t.model_versions, t.artifacts, t.shadow_predictions, t.audit]
    require_topics(settings, needed)
    options = with_flags(settings.serve, **flags)
    metrics, health = ServeMetrics(), Health.from_settings(settings.http)
    metrics.serve_http(metrics_port, settings.http.host, health)
    stop = stop_on_signals()
    serve_until_stopped(
        settings,
        options,
        stop,
        model_dir=model_dir,
        model_name=model_name,
        device=options.device,
        torch_threads=options.torch_threads,
        schemas=schemas,
        metrics=metrics,
        health=health,
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


# -- monitor -----------------------------------------------------------------------------------


@main.command()
@click.option(
    "--model-name",
    default=None,
    help="The model to watch [default: the configured model_name, 'driftline'].",
)
@TRUSTED_KEYS_OPTION
@setting_option(MonitorOptions, "label_ttl_s", type=float)
@setting_option(MonitorOptions, "update_interval_s", type=float)
@setting_option(MonitorOptions, "cooldown_s", type=float)
@setting_option(MonitorOptions, "retrain_events", type=int)
@setting_option(MonitorOptions, "retrain_on", type=str)
@setting_option(MonitorOptions, "partition_stride", type=int)
@setting_option(MonitorOptions, "start_from_end", "--from-end/--from-checkpoint-or-beginning")
@SCHEMA_OPTION
@click.option("--metrics-port", default=0, show_default=True, help=METRICS_PORT_HELP)
@click.pass_obj
def monitor(
    settings: Settings,
    /,
    model_name: str | None,
    trusted_keys: tuple[Path, ...],
    schemas: tuple[Path, ...],
    metrics_port: int,
    **flags: Any,
) -> None:
    """Watch inputs, predictions and late labels for drift; publish alerts and retraining requests.

    \b
    - data drift: input features against the live version's reference profile;
    - prediction drift: the model's scores against the same profile;
    - concept drift: labels (keyed by event id, late, any order) joined with predictions, and the
      error stream through a likelihood-ratio test.
    Alerts (io.driftline.DriftAlert) go to the drift-alerts topic: one OPEN per drift, UPDATEs at
    most every --update-interval-s, RESOLVED when a new version goes live. Retraining requests
    (io.driftline.RetrainRequest) go to retrain-requests when an alert opens, and again on a later
    alarm of it after --cooldown-s.
    State is checkpointed with the outputs in one transaction, so a restart resumes where it was;
    a second monitor for the same model takes over from the first. Events are read like serve reads
    them (give it the same --schema files); bad ones go to the dead-letter topic. Stop with SIGTERM
    or Ctrl-C.
    """
    from driftline.metrics import MonitorMetrics
    from driftline.models.control import load_trusted_keys
    from driftline.streams.kafka import require_topics, wait_for_cluster
    from driftline.streams.monitor_service import MonitorService

    settings = with_trusted_keys(cluster_settings(settings), trusted_keys)
    wait_for_cluster(settings)
    t = settings.topics
    require_topics(
        settings,
        [
            t.events,
            t.predictions,
            t.labels,
            t.model_versions,
            t.drift_alerts,
            t.retrain_requests,
            t.monitor_state,
        ],
    )
    options = with_flags(settings.monitor, schemas=schemas, **flags)
    metrics, health = MonitorMetrics(), Health.from_settings(settings.http)
    metrics.serve_http(metrics_port, settings.http.host, health)
    stop = stop_on_signals()
    name = model_name or settings.model_name
    service = MonitorService(
        settings,
        name,
        load_trusted_keys(settings),
        options,
        metrics,
        health,
    )
    service.run(
        stop.is_set,
        on_ready=lambda: log.info(
            "watching %s for drift: %s, %s, %s", name, t.events, t.predictions, t.labels
        ),
    )
    log.info("stopped cleanly" if not service.fenced else "stopped: another monitor took over")
