"""Commands for the infrastructure: the local broker, topics, model artifacts."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from driftline.cli import cluster_settings, main
from driftline.config import Settings

if TYPE_CHECKING:
    from driftline.broker import LocalBroker

# -- broker ------------------------------------------------------------------------------------


@main.group()
def broker() -> None:
    """The embedded single-node Apache Kafka (KRaft), built from Maven Central jars, run with Java 17+.

    Its data lives under --home (broker/): a stop keeps every topic and record, and the next start
    resumes them at the same address. Only `broker start --fresh` wipes them.
    """


def _local_broker(settings: Settings, heap_mb: int = 512) -> LocalBroker:
    from driftline.broker import LocalBroker

    return LocalBroker(
        settings.home,
        settings.cache_dir,
        heap_mb=heap_mb,
        partitions=settings.topics.partitions,
        log=lambda m: click.echo(m, err=True),
    )


def _start(b: LocalBroker, timeout: float, fresh: bool = False) -> None:
    info = b.start(timeout=timeout, fresh=fresh)
    click.echo(f"Kafka serves at {info.bootstrap_servers} (pid {info.pid}, data {info.data_dir}).")
    click.echo("Stop it with `driftline broker stop`; the next `driftline broker start` resumes its data.")


HEAP_MB = click.option("--heap-mb", default=512, show_default=True, help="JVM heap of the broker.")
TIMEOUT = click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait until it serves.")


@broker.command("start")
@HEAP_MB
@TIMEOUT
@click.option(
    "--fresh",
    is_flag=True,
    help="Wipe the broker's data (every topic and record) and start a new one on new ports.",
)
@click.pass_obj
def broker_start(settings: Settings, heap_mb: int, timeout: float, fresh: bool) -> None:
    """Start the local broker in the background and wait until it serves.

    The first start formats a new broker under --home (broker/) on two free ports. Every later start
    resumes it: the same topics and records, the same cluster id, the same address, so running
    clients reconnect by themselves. If another process took one of its ports meanwhile, the start
    fails and says which; stop that process, or use --fresh.
    """
    _start(_local_broker(settings, heap_mb), timeout, fresh)


@broker.command("restart")
@HEAP_MB
@TIMEOUT
@click.pass_obj
def broker_restart(settings: Settings, heap_mb: int, timeout: float) -> None:
    """Stop the local broker, then start it again on the same data and address.

    Clients such as `driftline serve` keep running and reconnect once it serves again. Starts the
    broker if none was running.
    """
    b = _local_broker(settings, heap_mb)
    click.echo("Stopped the local broker." if b.stop() else "No local broker was running.")
    _start(b, timeout)


@broker.command("stop")
@click.pass_obj
def broker_stop(settings: Settings) -> None:
    """Stop the local broker (SIGTERM, then SIGKILL after 30 s). Its data stays for the next start."""
    stopped = _local_broker(settings).stop()
    click.echo("Stopped the local broker." if stopped else "No local broker was running.")


@broker.command("status")
@click.pass_obj
def broker_status(settings: Settings) -> None:
    """Say whether the local broker runs, and where. Exit code 1 if it does not."""
    b = _local_broker(settings)
    info = b.status()
    if info is None:
        click.echo(f"No local broker is running (data dir {b.data_dir}).")
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
