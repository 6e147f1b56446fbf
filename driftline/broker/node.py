"""One node of the local cluster: where it listens, its ``server.properties``, its JVM process.

Every node is a combined broker and controller on 127.0.0.1, and every node is a controller voter.
The controllers find each other through ``controller.quorum.bootstrap.servers`` (Kafka 4's dynamic
quorum); the storage tool writes the initial voters when it formats each node's storage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from driftline.broker.records import NodeInfo, NodePorts
from driftline.broker.security import PROTOCOL, Credentials
from driftline.errors import BrokerError

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.bootstrap.servers={controllers}
listeners={client}://127.0.0.1:{bport},CONTROLLER://127.0.0.1:{cport}
advertised.listeners={client}://127.0.0.1:{bport},CONTROLLER://127.0.0.1:{cport}
inter.broker.listener.name={client}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:{controller},{client}:{client}
log.dirs={data}
num.partitions={partitions}
default.replication.factor={replicas}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=1
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=2
"""


def replication(nodes: int) -> tuple[int, int]:
    """The cluster's default replication factor and ``min.insync.replicas`` for ``nodes`` nodes: a
    replica on every node up to three, one fewer in sync (at least one), so that acks=all writes go
    on while one node is down.

    >>> [replication(n) for n in (1, 2, 3, 5)]
    [(1, 1), (2, 1), (3, 2), (3, 2)]
    """
    replicas = min(nodes, 3)
    return replicas, max(1, replicas - 1)


def server_properties(
    node: NodePorts,
    cluster: Sequence[NodePorts],
    data: Path,
    partitions: int,
    credentials: Credentials | None = None,
) -> str:
    """The ``server.properties`` of ``node`` in ``cluster`` (every node, ``node`` included); with
    ``credentials``, SASL on both listeners and the StandardAuthorizer (see
    :mod:`driftline.broker.security`)."""
    replicas, min_isr = replication(len(cluster))
    protocol = "PLAINTEXT" if credentials is None else PROTOCOL
    props = SERVER_PROPERTIES.format(
        client=protocol,
        controller=protocol,
        node_id=node.node_id,
        controllers=",".join(n.controller for n in cluster),
        bport=node.broker_port,
        cport=node.controller_port,
        data=data,
        partitions=partitions,
        replicas=replicas,
        min_isr=min_isr,
    )
    return props if credentials is None else props + credentials.server_properties()


def format_arguments(cluster: Sequence[NodePorts], directory_ids: Sequence[str]) -> list[str]:
    """The StorageTool flags that name the initial controller voters: ``--standalone`` for one node,
    else ``--initial-controllers id@host:port:directory-id,...`` (the same on every node).

    >>> format_arguments([NodePorts(1, 9001, 9002), NodePorts(2, 9003, 9004)], ["dir-id-1", "dir-id-2"])
    ['--initial-controllers', '1@127.0.0.1:9002:dir-id-1,2@127.0.0.1:9004:dir-id-2']
    """
    if len(cluster) == 1:
        return ["--standalone"]
    voters = ",".join(f"{n.node_id}@{n.controller}:{d}" for n, d in zip(cluster, directory_ids, strict=True))
    return ["--initial-controllers", voters]


# -- processes ---------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs (macOS) or it just went: trust the signal
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has exited, its parent did not reap it


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_taken(port: int) -> bool:
    """Whether another socket holds ``port`` on 127.0.0.1 (connections left in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def launch(jvm: list[str], props: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """Start ``kafka.Kafka`` in its own process session, its output to ``log_file``."""
    with log_file.open("wb") as out:
        return subprocess.Popen(
            [*jvm, "kafka.Kafka", str(props)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _serves(address: str, node_id: int, brokers: int, client: Mapping[str, str]) -> bool:
    """Whether the node at ``address`` answers metadata that lists itself among ``brokers`` or more."""
    from driftline.config import Settings
    from driftline.streams import kafka

    # model_construct: these settings name this node only, whatever the environment says
    settings = Settings.model_construct(bootstrap_servers=address, kafka=dict(client))
    try:
        meta = kafka.admin(settings).list_topics(timeout=5)
    except Exception:  # not serving metadata yet
        return False
    return node_id in meta.brokers and len(meta.brokers) >= brokers


def wait_ready(
    proc: subprocess.Popen[bytes],
    node: NodeInfo,
    brokers: int,
    deadline: float,
    name: str,
    client: Mapping[str, str] | None = None,
) -> None:
    """Wait until ``node`` serves and sees ``brokers`` brokers; raise, with its log's tail, if the JVM
    dies or the deadline (``time.monotonic()``) passes. ``name`` says which node in the message;
    ``client`` holds the librdkafka settings that authenticate the check (a secure broker)."""
    port = int(node.bootstrap_servers.rsplit(":", 1)[1])
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise BrokerError(
                f"{name} exited with code {code} while starting. Log tail:\n{tail(Path(node.log_file))}"
            )
        serves = port_open("127.0.0.1", port) and _serves(
            node.bootstrap_servers, node.node_id, brokers, client or {}
        )
        if serves:
            return
        time.sleep(0.2)
    raise BrokerError(
        f"{name} did not serve before the start timed out. Log tail:\n{tail(Path(node.log_file))}"
    )


def signal_pid(pid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to ``pid``; ``False`` if it is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """Wait up to ``timeout`` for ``pid`` to exit (reaping it when it is our child); ``True`` if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None if proc is not None else not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def terminate(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; ``False`` if it was gone already."""
    if not signal_pid(pid, signal.SIGTERM):
        return False
    if not wait_gone(pid, proc, timeout):
        kill(pid, proc)
    return True


def kill(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    """SIGKILL and wait until it is gone; ``False`` if it was gone already."""
    killed = signal_pid(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    else:
        wait_gone(pid, None, 10)
    return killed
