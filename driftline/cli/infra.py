"""Commands for the infrastructure: the local broker, topics, model artifacts."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from driftline.cli import cluster_settings, main
from driftline.config import Settings

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


@models.command("keygen")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory for signing.key (private, mode 600) and signing.pub.",
)
def models_keygen(out: Path) -> None:
    """Create an Ed25519 key pair for signing model versions.

    Trainers keep signing.key; processors get signing.pub only, and refuse versions it does not verify.
    """
    import os

    from driftline.models.signing import generate_keys, key_id

    private, public = generate_keys()
    out.mkdir(parents=True, exist_ok=True)
    key_file = out / "signing.key"
    if key_file.exists():
        raise click.UsageError(f"{key_file} exists; remove it first if you really mean to replace the key.")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as sink:
        sink.write(private)
    (out / "signing.pub").write_bytes(public)
    click.echo(
        f"Wrote {key_file} (keep it with the trainers) and {out / 'signing.pub'} (key id {key_id(public)})."
    )
