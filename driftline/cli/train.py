"""``driftline train``: the training area (separate processes, GPU when present)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from driftline.cli import (
    METRICS_PORT_HELP,
    SCHEMA_OPTION,
    cluster_settings,
    main,
    setting_option,
    stop_on_signals,
    with_flags,
)
from driftline.config import Settings
from driftline.health import Health
from driftline.options import TrainOptions

log = logging.getLogger("driftline")


@main.command()
@click.option("--model-name", default=None, help="The model to train [default: the configured model_name].")
@click.option(
    "--once", is_flag=True, help="Train one version from the first --rows labelled events, then exit."
)
@click.option("--rows", default=20000, show_default=True, help="With --once: labelled events to read.")
@click.option(
    "--generator",
    type=click.Choice(["agrawal", "sea"]),
    default="agrawal",
    show_default=True,
    help="With --once and no live version: the stream whose feature and class names to use.",
)
@setting_option(TrainOptions, "architecture", type=click.Choice(["mlp", "logistic"]))
@setting_option(TrainOptions, "epochs", type=int)
@setting_option(TrainOptions, "margin", type=float)
@setting_option(TrainOptions, "eval_fraction", type=float)
@setting_option(TrainOptions, "min_rows", type=int)
@setting_option(TrainOptions, "recent_shares", type=str)
@setting_option(TrainOptions, "data_timeout_s", type=float)
@setting_option(TrainOptions, "device")
@setting_option(TrainOptions, "recipe")
@setting_option(TrainOptions, "metric", type=click.Choice(["accuracy", "log_loss", "roc_auc", "mae", "rmse"]))
@setting_option(TrainOptions, "seed", type=int)
@setting_option(TrainOptions, "shadow_events", type=int)
@setting_option(TrainOptions, "shadow_timeout_s", type=float)
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="With --once and no live version: the model's contract (a ModelSpec as JSON, e.g. "
    "`driftline models contract NAME --spec`), trained with --recipe (default: Driftline's MLP).",
)
@SCHEMA_OPTION
@click.option("--metrics-port", default=0, show_default=True, help=METRICS_PORT_HELP)
@click.pass_obj
def train(
    settings: Settings,
    /,
    model_name: str | None,
    once: bool,
    rows: int,
    generator: str,
    schemas: tuple[Path, ...],
    spec_file: Path | None,
    metrics_port: int,
    **flags: Any,
) -> None:
    """Train model versions from Kafka: once (--once), or for every retraining request.

    \b
    \b
    Your own training code: --recipe package.module:function (see driftline.trainers.recipe) gets the
    rows shaped by the model's spec and returns a torch module; Driftline exports it to ONNX, checks
    it, judges it against the live version by --metric on the held-out rows, signs, publishes and
    promotes it. A model with a spec (your own) is retrained only with a recipe;
    driftline.trainers.recipes:mlp is Driftline's MLP for any spec.

    \b
    For each request (io.driftline.RetrainRequest on the retrain-requests topic):
      1. replay the events and labels of its window from Kafka and join them by event id;
      2. hold out the most recent --eval-fraction, train the candidate on the rest;
      3. score candidate and live version on the held-out rows;
      4. publish the candidate, signed, with its lineage and reference profile; promote it only if
         it beats the live version by --margin (the record says why, either way);
      5. with --shadow-events N (recipes), a winner first runs as the shadow next to the live version
         and is promoted only if it also wins on N labelled live events (else it is retired).
    The same request twice trains once; a request is committed only once answered, so a crash
    retrains it. Events are read like serve reads them (give it the same --schema files). Needs
    the private signing key. Stop with SIGTERM or Ctrl-C.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from driftline.models import control
    from driftline.models.spec import Classification, ModelSpec
    from driftline.streams.kafka import require_topics, wait_for_cluster
    from driftline.streams.synthetic import GENERATORS
    from driftline.trainers.retrain import live_classes_and_features
    from driftline.trainers.service import live_spec, serve_requests, train_once

    settings = cluster_settings(settings)
    wait_for_cluster(settings)
    t = settings.topics
    require_topics(settings, [t.events, t.labels, t.model_versions, t.artifacts, t.retrain_requests])
    private = control.load_private_key(settings)
    name = model_name or settings.model_name
    opts = with_flags(settings.train, schemas=schemas, **flags)
    if once:
        live = control.signer_ledger(settings, private).live(name)
        spec = None
        if spec_file is not None:
            if live is not None:
                raise click.UsageError(
                    f"{name} has a live version already: its contract is used, drop --spec"
                )
            spec = ModelSpec.model_validate_json(spec_file.read_text())
        if live is not None:
            classes, features = live_classes_and_features(settings, live)
            if live.get("spec") or opts.recipe:
                spec = live_spec(live, classes, features)
                if not opts.recipe and live.get("spec"):
                    raise click.UsageError(
                        f"{name} v{live['version']} is your own model: give --recipe (your training "
                        "function, or driftline.trainers.recipes:mlp)"
                    )
        elif spec is not None:
            classes = list(spec.task.classes) if isinstance(spec.task, Classification) else []
            features = [f.name for f in spec.numeric_fields]
        else:
            classes, features = GENERATORS[generator].classes, GENERATORS[generator].features
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True) as bar:
            tasks: dict[str, object] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task({"data": "reading", "train": "training"}[stage], total=total)
                bar.update(tasks[stage], completed=done, total=total)  # type: ignore[arg-type]

            outcome = train_once(
                settings, private, name, rows, list(features), list(classes), opts, progress, spec=spec
            )
        unused = ", ".join(f"{n} {why}" for why, n in outcome.unused.items()) or "none"
        click.echo(f"not used: {unused}")
        record = outcome.record
        click.echo(
            f"{name} v{record['version']}: {'LIVE' if outcome.promoted else 'CANDIDATE'} ({record['reason']})"
        )
        return
    from driftline.metrics import TrainMetrics

    metrics, health = TrainMetrics(), Health.from_settings(settings.http)
    metrics.serve_http(metrics_port, settings.http.host, health)
    stop = stop_on_signals()
    serve_requests(
        settings,
        private,
        name,
        opts,
        stop.is_set,
        on_ready=lambda: log.info("training %s on requests from %s", name, t.retrain_requests),
        metrics=metrics,
        health=health,
    )
    log.info("stopped cleanly")
