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
    """The embedded Apache Kafka (KRaft), built from Maven Central jars, run with Java 17+: one node,
    or a small cluster with `broker start --nodes 3`.

    Its data lives under --home (broker/): a stop keeps every topic and record, and the next start
    resumes them at the same address. Only `broker start --fresh` wipes them.
    """


def _local_broker(
    settings: Settings, heap_mb: int | None = None, nodes: int | None = None, secure: bool | None = None
) -> LocalBroker:
    from driftline.broker import LocalBroker

    return LocalBroker(
        settings.home,
        settings.cache_dir,
        heap_mb=heap_mb,
        partitions=settings.topics.partitions,
        log=lambda m: click.echo(m, err=True),
        nodes=nodes,
        secure=secure,
    )


def _start(b: LocalBroker, timeout: float, fresh: bool = False) -> None:
    info = b.start(timeout=timeout, fresh=fresh)
    pids = ", ".join(str(n.pid) for n in info.nodes)
    click.echo(f"Kafka serves at {info.bootstrap_servers} (pid {pids}, data {info.data_dir}).")
    if info.credentials is not None:
        click.echo(
            f"Secure: {info.security} with ACLs; the passwords of admin, serve, monitor and train are in "
            f"{info.credentials}. Connect with -X security.protocol=SASL_PLAINTEXT "
            "-X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=NAME -X sasl.password=...; "
            "`driftline acl apply` grants each service its rights."
        )
    click.echo("Stop it with `driftline broker stop`; the next `driftline broker start` resumes its data.")


def local_admin_settings(settings: Settings) -> Settings:
    """``settings`` on the cluster (see :func:`cluster_settings`), authenticated as the secure local
    broker's ``admin`` when that broker is the cluster and no ``sasl.username`` is configured."""
    named = bool(settings.bootstrap_servers)
    settings = cluster_settings(settings)
    if named or "sasl.username" in settings.kafka:
        return settings
    from driftline.broker.security import OPERATOR

    credentials = _local_broker(settings).credentials()
    if credentials is None:
        return settings
    return settings.model_copy(update={"kafka": {**settings.kafka, **credentials.client_config(OPERATOR)}})


HEAP_MB = click.option(
    "--heap-mb", type=int, help="JVM heap of each node [default: 512 for one node, 256 for a cluster]."
)
TIMEOUT = click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait until it serves.")


@broker.command("start")
@HEAP_MB
@TIMEOUT
@click.option(
    "--fresh",
    is_flag=True,
    help="Wipe the broker's data (every topic and record) and start a new one on new ports.",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    help="Nodes of a new broker (default 1). 3: a cluster for trying failover, with replication "
    "factor 3 and min.insync.replicas 2. A saved broker resumes with the nodes it has.",
)
@click.option(
    "--secure",
    is_flag=True,
    default=None,
    help="A new broker with SASL/SCRAM-SHA-512 and ACLs (one node): principals admin (super user), "
    "serve, monitor, train, their random passwords in <home>/broker/credentials.json (mode 600). "
    "A saved broker resumes as it was formatted.",
)
@click.pass_obj
def broker_start(
    settings: Settings,
    heap_mb: int | None,
    timeout: float,
    fresh: bool,
    nodes: int | None,
    secure: bool | None,
) -> None:
    """Start the local broker in the background and wait until it serves.

    The first start formats a new broker under --home (broker/) on free ports. Every later start
    resumes it: the same topics and records, the same cluster id, the same address, so running
    clients reconnect by themselves. If another process took one of its ports meanwhile, the start
    fails and says which; stop that process, or use --fresh.

    With --nodes 3 every node is a broker and a controller voter on 127.0.0.1, and the cluster's
    defaults are 3 replicas and min.insync.replicas=2: `topics create` takes them, and so do the
    offsets and transaction logs. One node can go down (`broker kill-node 2`) while producers with
    acks=all go on.

    With --secure, clients authenticate (SASL_PLAINTEXT, SCRAM-SHA-512) and Kafka's
    StandardAuthorizer allows nothing that no ACL allows: `driftline acl apply` grants serve, monitor
    and train their rights; admin is a super user (operators: topics, models publish and promote).
    """
    _start(_local_broker(settings, heap_mb, nodes, secure), timeout, fresh)


@broker.command("restart")
@HEAP_MB
@TIMEOUT
@click.pass_obj
def broker_restart(settings: Settings, heap_mb: int | None, timeout: float) -> None:
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
    """Say whether the local broker runs, and where: every node, with its pid and whether it runs;
    its security (PLAINTEXT, or SASL_PLAINTEXT/SCRAM-SHA-512 with the credentials file). Exit code 1
    if no node runs."""
    b = _local_broker(settings)
    info = b.status()
    if info is None:
        click.echo(f"No local broker is running (data dir {b.data_dir}).")
        sys.exit(1)
    click.echo(json.dumps(asdict(info), indent=2))


@broker.command("kill-node")
@click.argument("node_id", type=int)
@click.pass_obj
def broker_kill_node(settings: Settings, node_id: int) -> None:
    """SIGKILL node NODE_ID of the running local cluster, as a crash would: for trying failover.
    `broker start-node NODE_ID` brings it back on its data."""
    killed = _local_broker(settings).kill_node(node_id)
    click.echo(f"Killed node {node_id}." if killed else f"Node {node_id} was not running.")


@broker.command("start-node")
@click.argument("node_id", type=int)
@TIMEOUT
@click.pass_obj
def broker_start_node(settings: Settings, node_id: int, timeout: float) -> None:
    """Start node NODE_ID of the running local cluster again, on its data and ports."""
    node = _local_broker(settings).start_node(node_id, timeout=timeout)
    click.echo(f"Node {node_id} serves at {node.bootstrap_servers} (pid {node.pid}).")


# -- topics ------------------------------------------------------------------------------------


@main.group()
def topics() -> None:
    """Driftline's topics."""


@topics.command("create")
@click.pass_obj
def topics_create(settings: Settings) -> None:
    """Create every topic Driftline uses that does not exist yet (idempotent). On the secure local
    broker with no -X sasl.* given, as its admin."""
    from driftline.streams.kafka import create_topics

    settings = local_admin_settings(settings)
    created = create_topics(settings)
    for name in settings.topics.all_names():
        click.echo(f"{name}: {'created' if name in created else 'exists'}")
