"""Commands for the infrastructure: the local broker, topics, model artifacts."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

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
