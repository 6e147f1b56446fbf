"""A real Apache Kafka 4.x (KRaft) on 127.0.0.1, one node or a small cluster, run with Java 17+.

The runtime jars come from Maven Central (see :mod:`driftline.broker.jars`). Everything else lives
under ``home/broker``:

- ``broker.json``: the cluster id and every node's two ports, written once the storage is formatted;
  it stays across stops, so a later start resumes the same data at the same addresses;
- the node's files: ``data/`` (Kafka's ``log.dirs``, with its ``meta.properties``), and, written on
  each start, ``server.properties``, ``log4j2.properties``, ``broker.log`` and ``logs/``. One node
  keeps them in ``home/broker`` itself; a cluster keeps them per node in ``home/broker/node-<id>``;
- ``state.json``: the running JVMs' pids and addresses, removed on stop;
- ``credentials.json`` (mode 600), for a broker formatted with ``secure=True`` only: every
  principal's password (see :mod:`driftline.broker.security`). A secure broker stays secure across
  stops and starts; ``start(fresh=True)`` formats a new one, secure or not.

The first start (or ``start(fresh=True)``) wipes ``home/broker``, picks free ports and formats the
storage of ``nodes`` nodes (every one a broker and a controller voter); every later start resumes
the broker as it was formatted, and fails with a :class:`BrokerError` if another process took one
of its ports meanwhile. A start waits until every node serves; if a JVM dies, the error carries the
tail of its log. For fault tests, :meth:`LocalBroker.kill_node` SIGKILLs one node of a running
cluster and :meth:`LocalBroker.start_node` brings it back on its data and ports.

>>> broker = LocalBroker(home=Path("/tmp/dl"), cache_dir=Path("/tmp/dl-cache"))
>>> broker.data_dir
PosixPath('/tmp/dl/broker')
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path
from types import TracebackType

from driftline.broker import node as nodes_
from driftline.broker.jars import check_java, resolve_jars
from driftline.broker.records import BrokerInfo, BrokerRecord, NodeInfo, NodePorts
from driftline.broker.security import MECHANISM, OPERATOR, PROTOCOL, Credentials
from driftline.errors import BrokerError


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cluster_id() -> str:
    """16 random bytes, base64url without padding, not starting with '-' (Kafka's own rule)."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _new_record(count: int, secure: bool) -> BrokerRecord:
    """A new cluster id and ``count`` nodes on distinct free ports (broker, then controller)."""
    ports: list[int] = []
    while len(ports) < 2 * count:
        if (port := _free_port()) not in ports:
            ports.append(port)
    nodes = tuple(NodePorts(i + 1, ports[2 * i], ports[2 * i + 1]) for i in range(count))
    return BrokerRecord(_cluster_id(), nodes, secure)


class LocalBroker:
    """Build, start, inspect and stop the local broker. Also a context manager (start/stop).

    ``nodes`` applies when a new broker is formatted (default one); a saved broker resumes with the
    nodes it was formatted with. ``heap_mb`` is per node (default 512 for one node, 256 for more).
    ``secure`` likewise applies when a new broker is formatted (default ``False``): SASL/SCRAM and
    ACLs, one node only.
    """

    def __init__(
        self,
        home: Path,
        cache_dir: Path,
        heap_mb: int | None = None,
        partitions: int = 4,
        log: Callable[[str], None] = lambda _: None,
        nodes: int | None = None,
        secure: bool | None = None,
    ) -> None:
        self.home = home
        self.cache_dir = cache_dir
        self.heap_mb = heap_mb
        self.partitions = partitions
        self.nodes = nodes
        self.secure = secure
        self._log = log
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def data_dir(self) -> Path:
        return self.home / "broker"

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def _record_file(self) -> Path:
        return self.data_dir / "broker.json"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials.json"

    def credentials(self) -> Credentials | None:
        """Every principal's password if the saved broker is secure; ``None`` if it is not (or there
        is none)."""
        record = self.saved()
        return self._credentials(record) if record is not None else None

    def _credentials(self, record: BrokerRecord) -> Credentials | None:
        return Credentials.load(self.credentials_file) if record.secure else None

    def _node_dir(self, record: BrokerRecord, node_id: int) -> Path:
        return self.data_dir if len(record.nodes) == 1 else self.data_dir / f"node-{node_id}"

    def jars(self) -> Path:
        """The folder of runtime jars, resolved with Maven on first use and cached by pom hash."""
        return resolve_jars(self.cache_dir, self._log)

    check_java = staticmethod(check_java)

    # -- state --------------------------------------------------------------------------------

    def _started(self) -> BrokerInfo | None:
        try:
            return BrokerInfo.from_json(json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def status(self) -> BrokerInfo | None:
        """The running broker started from this home, each node marked running or not; ``None`` if
        no node runs."""
        info = self._started()
        if info is None:
            return None
        nodes = tuple(replace(n, running=_serving(n)) for n in info.nodes)
        return replace(info, nodes=nodes) if any(n.running for n in nodes) else None

    def saved(self) -> BrokerRecord | None:
        """The broker formatted under ``home/broker`` (running or not); ``None`` if there is none yet."""
        fix = f"`driftline broker start --fresh` wipes {self.data_dir} and formats a new broker"
        if not self._record_file.exists():
            if any(any(self.data_dir.glob(f"{d}/meta.properties")) for d in ("data", "node-*/data")):
                raise BrokerError(
                    f"{self.data_dir} holds Kafka data but no broker.json with its cluster id and ports "
                    f"(an older Driftline wrote it): {fix}."
                )
            return None
        try:
            record = BrokerRecord.from_json(json.loads(self._record_file.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BrokerError(f"{self._record_file} is unreadable ({exc}): {fix}.") from exc
        for n in record.nodes:
            meta = self._node_dir(record, n.node_id) / "data" / "meta.properties"
            if not meta.exists():
                raise BrokerError(f"{meta} is missing, so the broker's data is gone or damaged: {fix}.")
        return record

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0, *, fresh: bool = False) -> BrokerInfo:
        """Start the broker formatted under ``home/broker`` again, with the same data, cluster id and
        addresses; format a new one (wiping ``home/broker``, new ports) on the first start or if
        ``fresh``. Wait until every node serves; return the addresses."""
        running = self.status()
        if running is not None:
            raise BrokerError(
                f"A local broker already runs at {running.bootstrap_servers} "
                f"(pid {', '.join(str(n.pid) for n in running.nodes)}); "
                "stop it with `driftline broker stop` first."
            )
        record = None if fresh else self.saved()
        if record is not None:
            self._check_size(record)
            self._check_security(record)
            for n in record.nodes:
                self._check_ports_free(n)
        elif self.secure and (self.nodes or 1) > 1:
            raise BrokerError(
                "--secure runs one node only: start a secure broker without --nodes, or a cluster "
                "without --secure."
            )
        java, lib = check_java(), self.jars()
        if record is None:
            self._wipe(fresh)
            record = _new_record(self.nodes or 1, bool(self.secure))
            credentials = Credentials.generate() if record.secure else None
            if credentials is not None:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                credentials.save(self.credentials_file)
            jvms = {n.node_id: self._configure(java, lib, record, n, credentials) for n in record.nodes}
            self._format(jvms, record, credentials)
        else:
            self._log(f"Resuming the local broker in {self.data_dir} at {record.bootstrap_servers}...")
            credentials = self._credentials(record)
            jvms = {n.node_id: self._configure(java, lib, record, n, credentials) for n in record.nodes}
        return self._launch(jvms, record, timeout, credentials)

    def _check_size(self, record: BrokerRecord) -> None:
        if self.nodes is not None and self.nodes != len(record.nodes):
            raise BrokerError(
                f"{self.data_dir} holds a local broker of {len(record.nodes)} node(s), not {self.nodes}: "
                "start it without --nodes to resume it, or run "
                f"`driftline broker start --fresh --nodes {self.nodes}` to wipe it and format a new one."
            )

    def _check_security(self, record: BrokerRecord) -> None:
        if self.secure is not None and self.secure != record.secure:
            kind = "a secure" if record.secure else "a plaintext (not --secure)"
            want = "--secure" if self.secure else "without --secure"
            raise BrokerError(
                f"{self.data_dir} holds {kind} local broker: start it without --secure to resume it as "
                f"it is, or run `driftline broker start --fresh {want}` to wipe it and format a new one."
            )

    def _check_ports_free(self, node: NodePorts) -> None:
        for role, port in (("broker", node.broker_port), ("controller", node.controller_port)):
            if nodes_.port_taken(port):
                raise BrokerError(
                    f"Port {port} on 127.0.0.1, the {role} port of the local broker in {self.data_dir}, "
                    f"is taken by another process (`ss -ltnp 'sport = :{port}'` names it). Stop that "
                    "process and start again to keep the broker's data and address, or run "
                    "`driftline broker start --fresh` to wipe its data and pick new ports."
                )

    def _wipe(self, fresh: bool) -> None:
        if fresh and self.data_dir.exists():
            self._log(f"Wiping {self.data_dir} (--fresh): every topic and record of the local broker goes.")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _configure(
        self, java: str, lib: Path, record: BrokerRecord, node: NodePorts, credentials: Credentials | None
    ) -> list[str]:
        """Write the node's configuration files; return its JVM command without the main class."""
        here = self._node_dir(record, node.node_id)
        (here / "logs").mkdir(parents=True, exist_ok=True)
        props = nodes_.server_properties(node, record.nodes, here / "data", self.partitions, credentials)
        server = here / "server.properties"
        server.unlink(missing_ok=True)  # it holds the broker's password when secure: owner only
        server.touch(mode=0o600)
        server.write_text(props)
        log4j = here / "log4j2.properties"
        log4j.write_bytes(resources.files("driftline.broker").joinpath("log4j2.properties").read_bytes())
        heap = self.heap_mb or (512 if len(record.nodes) == 1 else 256)
        return [
            java,
            f"-Xms{heap}m",
            f"-Xmx{heap}m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={here / 'logs'}",
            "-cp",
            f"{lib}/*",
        ]

    def _format(
        self, jvms: dict[int, list[str]], record: BrokerRecord, credentials: Credentials | None
    ) -> None:
        """Format every node's storage with ``record``'s cluster id (and the principals' SCRAM
        credentials when secure), then write ``broker.json``."""
        voters = nodes_.format_arguments(record.nodes, [_cluster_id() for _ in record.nodes])
        if credentials is not None:
            voters += credentials.format_arguments()
        for n in record.nodes:
            props = self._node_dir(record, n.node_id) / "server.properties"
            tool = [*jvms[n.node_id], "kafka.tools.StorageTool", "format", *voters]
            fmt = subprocess.run(
                [*tool, "-t", record.cluster_id, "-c", str(props)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if fmt.returncode != 0:
                for done in record.nodes:  # no half-formatted cluster left behind
                    shutil.rmtree(self._node_dir(record, done.node_id) / "data", ignore_errors=True)
                raise BrokerError(f"Formatting the broker's storage failed:\n{fmt.stdout}{fmt.stderr}")
        self._record_file.write_text(json.dumps(record.to_json()))

    def _spawn(self, jvm: list[str], record: BrokerRecord, node: NodePorts) -> NodeInfo:
        here = self._node_dir(record, node.node_id)
        log_file = here / "broker.log"
        proc = nodes_.launch(jvm, here / "server.properties", log_file)
        self._procs[node.node_id] = proc
        return NodeInfo(node.node_id, node.address, proc.pid, str(log_file))

    def _launch(
        self,
        jvms: dict[int, list[str]],
        record: BrokerRecord,
        timeout: float,
        credentials: Credentials | None,
    ) -> BrokerInfo:
        deadline = time.monotonic() + timeout
        started: list[NodeInfo] = []
        try:
            started += [self._spawn(jvms[n.node_id], record, n) for n in record.nodes]
            for n in started:
                self._wait_ready(n, len(record.nodes), deadline, credentials)
        except BaseException:
            self._stop_nodes(started)
            raise
        info = BrokerInfo(record.bootstrap_servers, str(self.data_dir), tuple(started))
        if credentials is not None:
            info = replace(info, security=f"{PROTOCOL}/{MECHANISM}", credentials=str(self.credentials_file))
        self._write_state(info)
        return info

    def _wait_ready(
        self, node: NodeInfo, brokers: int, deadline: float, credentials: Credentials | None
    ) -> None:
        name = f"Node {node.node_id} of the local broker" if brokers > 1 else "The broker"
        client = credentials.client_config(OPERATOR) if credentials is not None else None
        nodes_.wait_ready(self._procs[node.node_id], node, brokers, deadline, name, client)

    def _write_state(self, info: BrokerInfo) -> None:
        self._state_file.write_text(json.dumps(asdict(info)))

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every node started from this home; ``False`` if none was running."""
        info = self._started()
        if info is None:
            return False
        stopped = self._stop_nodes(info.nodes, timeout)
        self._state_file.unlink(missing_ok=True)
        return stopped

    def _stop_nodes(self, nodes: Sequence[NodeInfo], timeout: float = 30.0) -> bool:
        """SIGTERM every live node at once (a lone survivor would wait for a controller quorum that
        is gone), wait up to ``timeout`` for all, then SIGKILL the rest; ``True`` if any was live."""
        live = [n for n in nodes if nodes_.pid_alive(n.pid)]
        live = [n for n in live if nodes_.signal_pid(n.pid, signal.SIGTERM)]
        deadline = time.monotonic() + timeout
        for n in live:
            proc = self._own(n)
            if not nodes_.wait_gone(n.pid, proc, max(0.0, deadline - time.monotonic())):
                nodes_.kill(n.pid, proc)
        for n in nodes:
            self._procs.pop(n.node_id, None)
        return bool(live)

    def _own(self, node: NodeInfo) -> subprocess.Popen[bytes] | None:
        proc = self._procs.get(node.node_id)
        return proc if proc is not None and proc.pid == node.pid else None

    # -- one node, for fault tests ------------------------------------------------------------

    def kill_node(self, node_id: int) -> bool:
        """SIGKILL one node of the running broker, as a crash would (for fault tests); its data and
        ports stay for :meth:`start_node`. ``False`` if that node was not running."""
        record = self.saved()
        if record is not None:
            record.node(node_id)  # raises, naming the nodes there are
        info = self._started()
        node = next((n for n in info.nodes if n.node_id == node_id), None) if info else None
        if node is None or not nodes_.pid_alive(node.pid):
            return False
        killed = nodes_.kill(node.pid, self._own(node))
        self._procs.pop(node_id, None)
        return killed

    def start_node(self, node_id: int, timeout: float = 90.0) -> NodeInfo:
        """Start one stopped node of the running broker again on its data and ports (for fault
        tests, after :meth:`kill_node`); wait until it serves and sees every running node."""
        info = self.status()
        record = self.saved()
        if info is None or record is None:
            raise BrokerError("No local broker is running: start it with `driftline broker start`.")
        ports = record.node(node_id)
        if any(n.node_id == node_id and n.running for n in info.nodes):
            raise BrokerError(f"Node {node_id} of the local broker already runs.")
        self._check_ports_free(ports)
        credentials = self._credentials(record)
        jvm = self._configure(check_java(), self.jars(), record, ports, credentials)
        started = self._spawn(jvm, record, ports)
        brokers = 1 + sum(n.running for n in info.nodes if n.node_id != node_id)
        try:
            self._wait_ready(started, brokers, time.monotonic() + timeout, credentials)
        except BaseException:
            self._stop_nodes([started])
            raise
        kept = tuple(started if n.node_id == node_id else n for n in info.nodes)
        self._write_state(replace(info, nodes=kept))
        return started

    def __enter__(self) -> BrokerInfo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _serving(node: NodeInfo) -> bool:
    host, port = node.bootstrap_servers.rsplit(":", 1)
    return nodes_.pid_alive(node.pid) and nodes_.port_open(host, int(port))


@contextlib.contextmanager
def named_or_local_cluster(
    bootstrap_servers: str | None, home: Path, cache_dir: Path, log: Callable[[str], None] = lambda _: None
) -> Iterator[str]:
    """Yield bootstrap servers: the named cluster, else the running local broker, else a local broker
    started for the duration of the block (and stopped after it, also on errors and Ctrl-C)."""
    if bootstrap_servers:
        yield bootstrap_servers
        return
    running = LocalBroker(home, cache_dir).status()
    if running is not None:
        yield running.bootstrap_servers
        return
    with tempfile.TemporaryDirectory(prefix="driftline-broker-") as tmp:
        broker = LocalBroker(Path(tmp), cache_dir, log=log)
        log("Starting a local Kafka broker for this run...")
        info = broker.start()
        try:
            yield info.bootstrap_servers
        finally:
            broker.stop()
