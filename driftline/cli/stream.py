"""Commands on the event stream: serve, produce, tail."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from driftline.models.spec import ModelSpec

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


_SYNTHETIC_ONLY = (
    "generator",
    "count",
    "seed",
    "drift_at",
    "drift_width",
    "labels",
    "malformed_every",
    "run_id",
)
_FILE_ONLY = ("model_dir", "model_name", "label_column", "mappings", "limit", "write_schema")


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
@click.option(
    "--from",
    "from_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Send the rows of this CSV (.csv, .tsv, .csv.gz) or Parquet (.parquet, .pq) file as events "
    "of a model's contract instead of synthetic ones.",
)
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="With --from: take the contract from this artifact directory.",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    help="With --from: take the contract from this model's live version in the registry "
    "[default: the configured model_name].",
)
@click.option(
    "--label-column",
    default=None,
    metavar="COLUMN",
    help="With --from: also send this column as labels (class names or indices) to the labels topic.",
)
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="With --from: read the contract's FIELD from the file's COLUMN (repeatable).",
)
@click.option("--limit", type=int, default=None, help="With --from: send at most this many rows.")
@click.option(
    "--write-schema",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="With --from: also write the events' Avro schema (.avsc) here, for other producers and tools.",
)
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
    from_file: Path | None,
    model_dir: Path | None,
    model_name: str | None,
    label_column: str | None,
    mappings: tuple[str, ...],
    limit: int | None,
    write_schema: Path | None,
) -> None:
    """Send events as a business system would: synthetic ones (River's Agrawal or SEA, labelled), or
    the rows of a file with --from.

    \b
    From a file (--from FILE):
      driftline produce --from sales.parquet --model-dir ./model --label-column outcome --rate 500
      driftline serve --model ./model
    Each row becomes one event of the model's contract (its input fields, event id and event time),
    taken from --model-dir, or from the live version of --model in the registry. Columns are named
    like the fields (rename with --map COLUMN=FIELD; other columns are ignored). Numeric fields take
    numbers (decimals too), boolean ones true/false, yes/no or 1/0, categorical ones text; an empty
    cell is a null, allowed only where the contract says nullable. The event time column is read in
    the contract's unit, or as ISO-8601 / Parquet timestamps; without one, events carry the time they
    are sent. The event id column is optional too (ids are then <file stem>-<row>). Events are keyed
    by event id and written with the contract's Avro schema (single-object encoding, or Confluent
    framing with --schema-registry-url): the schema `driftline models contract NAME` prints, which
    serve and the monitor of that model know without --schema. --label-column sends each labelled row's
    class (a class name or index, written as the index) to the labels topic. --rate paces the
    events; --limit stops early. Large files are read a batch at a time.
    """
    ctx = click.get_current_context()
    flag = {p.name: p.opts[0] for p in ctx.command.params if p.name}
    given = {
        name
        for name in (*_SYNTHETIC_ONLY, *_FILE_ONLY)
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    if from_file is not None:
        wrong = sorted(given & set(_SYNTHETIC_ONLY))
        if wrong:
            raise click.UsageError(
                f"{', '.join(flag[n] for n in wrong)}: only for synthetic events, not with --from "
                "(use --limit to send fewer rows)"
            )
        _produce_from_file(
            settings,
            from_file,
            model_dir=model_dir,
            model_name=model_name,
            label_column=label_column,
            mappings=mappings,
            rate=rate,
            limit=limit,
            write_schema=write_schema,
        )
        return
    if given & set(_FILE_ONLY):
        names = ", ".join(flag[n] for n in sorted(given & set(_FILE_ONLY)))
        raise click.UsageError(f"{names}: only with --from FILE")
    from rich.progress import Progress

    from driftline.schemas import AvroEncoder, RegistryResolver, builtin_store
    from driftline.streams.kafka import require_topics, wait_for_cluster
    from driftline.streams.produce import produce_stream
    from driftline.streams.synthetic import generate

    settings = cluster_settings(settings)
    wait_for_cluster(settings)
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


def _registry_contract(settings: Settings, name: str) -> tuple[ModelSpec, tuple[str, ...] | None]:
    """The contract of ``name``'s live version on the registry topic (and its class names, where known).

    The records are read without verifying signatures: the contract only shapes the events sent."""
    from driftline.models.follower import RegistryFollower, ignore_refusal
    from driftline.models.spec import ModelSpec
    from driftline.streams.kafka import require_topics, wait_for_cluster

    wait_for_cluster(settings)
    require_topics(settings, [settings.topics.model_versions])
    follower = RegistryFollower.connect(settings, None, model_name=name, on_refused=ignore_refusal)
    try:
        follower.catch_up()
    finally:
        follower.close()
    record = follower.ledger.live(name)
    if record is None:
        raise click.ClickException(
            f"{name} has no live version in {settings.topics.model_versions}; name a model with a live "
            "version (--model NAME, see `driftline models list`) or an artifact (--model-dir DIR)."
        )
    if record.get("spec"):
        return ModelSpec.model_validate_json(record["spec"]), None
    # A built-in model: numeric features; its class names are not on the record, so labels are indices.
    return ModelSpec.numeric(list(record["features"]), ["0", "1"]), ()


def _produce_from_file(
    settings: Settings,
    path: Path,
    *,
    model_dir: Path | None,
    model_name: str | None,
    label_column: str | None,
    mappings: tuple[str, ...],
    rate: float,
    limit: int | None,
    write_schema: Path | None,
) -> None:
    import json

    from rich.progress import Progress

    from driftline.models.artifact import load_config
    from driftline.schemas import AvroEncoder, RegistryResolver, builtin_store
    from driftline.streams.from_file import FileSource, label_writer, parse_mapping, produce_file
    from driftline.streams.kafka import require_topics, wait_for_cluster
    from driftline.streams.records import contract_schema

    if model_dir is not None and model_name is not None:
        raise click.UsageError("--model-dir and --model both name the contract: give one")
    if limit is not None and limit < 0:
        raise click.UsageError("--limit must be 0 or more")
    classes: tuple[str, ...] | None = None
    if model_dir is not None:
        config = load_config(model_dir)
        spec, name = config.input_spec, config.name
    else:
        settings = cluster_settings(settings)
        name = model_name or settings.model_name
        spec, classes = _registry_contract(settings, name)
    source = FileSource(
        path, spec, mapping=parse_mapping(mappings), label_column=label_column, classes=classes
    )
    schema = contract_schema(name, spec)  # the model's contract: serve and the monitor know it already
    if write_schema is not None:
        write_schema.write_text(json.dumps(schema.raw, indent=2) + "\n")
        click.echo(f"Wrote the events' schema to {write_schema} (for other producers and tools).")
    settings = cluster_settings(settings)
    wait_for_cluster(settings)
    t = settings.topics
    require_topics(settings, [t.events, *([t.labels] if label_column else [])])
    registry = RegistryResolver.from_config(settings.registry_config())
    events = AvroEncoder.for_settings(schema, registry, f"{t.events}-value")
    writer = None
    if label_column is not None:
        label_schema = builtin_store().latest("io.driftline.Label")
        writer = label_writer(
            AvroEncoder.for_settings(label_schema, registry, f"{t.labels}-value"), spec, classes
        )
    for note in source.notes:
        click.echo(f"Note: {note}.")
    known = source.row_count()
    total = known if limit is None else limit if known is None else min(known, limit)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"producing {path.name}", total=total)
        report = produce_file(
            settings,
            source,
            events,
            writer,
            rate=rate or None,
            limit=limit,
            on_progress=lambda n: progress.advance(task, n),
        )
    click.echo(
        f"Produced {report.events} events and {report.labels} labels from {path.name} "
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
@setting_option(MonitorOptions, "retrain_lookback", type=float)
@setting_option(MonitorOptions, "retrain_wait_s", type=float)
@setting_option(MonitorOptions, "retrain_every_labels", type=int)
@setting_option(MonitorOptions, "retrain_every_s", type=float)
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
    alarm of it after --cooldown-s; with --retrain-every-labels or --retrain-every-s also
    continuously, on a sliding window of the latest --retrain-events events. A request whose events
    after now take longer than --retrain-wait-s to come at the stream's recent rate says so.
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
