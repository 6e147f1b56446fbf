"""A real single-node Apache Kafka 4.x (KRaft), run with the machine's Java 17+.

The broker's runtime jars are resolved once with Maven from the ``pom.xml`` beside this module and
cached under ``cache_dir/kafka-jars/<hash of the pom>``. Everything else lives under ``home/broker``:

- ``broker.json``: the cluster id and the two ports, written once the storage is formatted; it stays
  across stops, so a later start resumes the same data at the same address;
- ``data/``: the topics and their records (Kafka's ``log.dirs``, with its ``meta.properties``);
- ``server.properties``, ``log4j2.properties``, ``broker.log``, ``logs/``: written on each start;
- ``state.json``: the running JVM's pid and address, removed on stop.

The first start (or ``start(fresh=True)``) wipes ``home/broker``, picks two free ports and formats the
storage; every later start reuses them, and fails with a :class:`BrokerError` if another process took
one of its ports meanwhile. A start waits until the broker answers metadata requests; if the JVM dies,
the error carries the tail of its log.

>>> broker = LocalBroker(home=Path("/tmp/dl"), cache_dir=Path("/tmp/dl-cache"))
>>> broker.data_dir
PosixPath('/tmp/dl/broker')
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType

from driftline.errors import BrokerError

STARTED_LINE = "Kafka Server started"

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{bport},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{bport},CONTROLLER://127.0.0.1:{cport}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=2
"""


@dataclass(frozen=True)
class BrokerInfo:
    """A running local broker, as written to ``state.json``."""

    bootstrap_servers: str
    pid: int
    data_dir: str
    log_file: str


@dataclass(frozen=True)
class BrokerRecord:
    """What a formatted broker keeps across stops, as written to ``broker.json``.

    >>> BrokerRecord("q1Sh-9_ISia_zwGINzRvyQ", 40123, 40124).bootstrap_servers
    '127.0.0.1:40123'
    """

    cluster_id: str
    broker_port: int
    controller_port: int

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.broker_port}"


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


def _pid_alive(pid: int) -> bool:
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


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _port_taken(port: int) -> bool:
    """Whether another socket holds ``port`` on 127.0.0.1 (connections left in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalBroker:
    """Build, start, inspect and stop the local broker. Also a context manager (start/stop)."""

    def __init__(
        self,
        home: Path,
        cache_dir: Path,
        heap_mb: int = 512,
        partitions: int = 4,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.home = home
        self.cache_dir = cache_dir
        self.heap_mb = heap_mb
        self.partitions = partitions
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

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
    def _props_file(self) -> Path:
        return self.data_dir / "server.properties"

    # -- jars ---------------------------------------------------------------------------------

    def jars(self) -> Path:
        """The folder of runtime jars, resolved with Maven on first use and cached by pom hash."""
        pom = resources.files("driftline.broker").joinpath("pom.xml").read_bytes()
        lib = self.cache_dir / "kafka-jars" / hashlib.sha256(pom).hexdigest()[:16]
        if (lib / ".complete").exists():
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (`mvn`) is needed once to fetch the Kafka jars: install it "
                "(apt-get install maven), or pass --bootstrap-servers to use an existing cluster."
            )
        self._log(f"Resolving Apache Kafka jars from Maven Central into {lib} (once)...")
        staging = lib.with_name(lib.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / "pom.xml").write_bytes(pom)
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(staging / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging / 'lib'}",
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError("Maven took over 15 minutes to fetch the Kafka jars; try again.") from exc
        if done.returncode != 0:
            raise BrokerError(
                f"Maven could not fetch the Kafka jars:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
            )
        (staging / "lib" / ".complete").touch()
        if lib.exists():  # another process won the race
            shutil.rmtree(staging, ignore_errors=True)
        else:
            (staging / "lib").rename(lib)
            shutil.rmtree(staging, ignore_errors=True)
        return lib

    @staticmethod
    def check_java() -> str:
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "Java 17+ is needed to run the local broker: install a JDK "
                "(apt-get install openjdk-17-jre-headless), or pass --bootstrap-servers."
            )
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
        match = re.search(r'version "(\d+)', out)
        if match is None or int(match.group(1)) < 17:
            raise BrokerError(f"Kafka 4 needs Java 17 or newer; `java -version` says: {out.strip()}")
        return java

    # -- lifecycle ----------------------------------------------------------------------------

    def status(self) -> BrokerInfo | None:
        """The running broker started from this home, or ``None``."""
        try:
            info = BrokerInfo(**json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        host, port = info.bootstrap_servers.rsplit(":", 1)
        if _pid_alive(info.pid) and _port_open(host, int(port)):
            return info
        return None

    def saved(self) -> BrokerRecord | None:
        """The broker formatted under ``home/broker`` (running or not); ``None`` if there is none yet."""
        meta = self.data_dir / "data" / "meta.properties"
        fix = f"`driftline broker start --fresh` wipes {self.data_dir} and formats a new broker"
        if not self._record_file.exists():
            if meta.exists():
                raise BrokerError(
                    f"{self.data_dir} holds Kafka data but no broker.json with its cluster id and ports "
                    f"(an older Driftline wrote it): {fix}."
                )
            return None
        try:
            record = BrokerRecord(**json.loads(self._record_file.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise BrokerError(f"{self._record_file} is unreadable ({exc}): {fix}.") from exc
        if not meta.exists():
            raise BrokerError(f"{meta} is missing, so the broker's data is gone or damaged: {fix}.")
        return record

    def start(self, timeout: float = 90.0, *, fresh: bool = False) -> BrokerInfo:
        """Start the broker formatted under ``home/broker`` again, with the same data, cluster id and
        address; format a new one (wiping ``home/broker``, new ports) on the first start or if ``fresh``.
        Wait until it serves; return its address."""
        running = self.status()
        if running is not None:
            raise BrokerError(
                f"A local broker already runs at {running.bootstrap_servers} (pid {running.pid}); "
                "stop it with `driftline broker stop` first."
            )
        record = None if fresh else self.saved()
        if record is not None:
            self._check_ports_free(record)
        java = self.check_java()
        lib = self.jars()
        if record is None:
            self._wipe(fresh)
            record = BrokerRecord(_cluster_id(), _free_port(), _free_port())
            jvm = self._configure(java, lib, record)
            self._format(jvm, record)
        else:
            self._log(f"Resuming the local broker in {self.data_dir} at {record.bootstrap_servers}...")
            jvm = self._configure(java, lib, record)
        return self._launch(jvm, record, timeout)

    def _check_ports_free(self, record: BrokerRecord) -> None:
        for role, port in (("broker", record.broker_port), ("controller", record.controller_port)):
            if _port_taken(port):
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

    def _configure(self, java: str, lib: Path, record: BrokerRecord) -> list[str]:
        """Write this start's configuration files; return the JVM command without its main class."""
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._props_file.write_text(
            SERVER_PROPERTIES.format(
                bport=record.broker_port,
                cport=record.controller_port,
                data=self.data_dir / "data",
                partitions=self.partitions,
            )
        )
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_bytes(resources.files("driftline.broker").joinpath("log4j2.properties").read_bytes())
        return [
            java,
            f"-Xms{self.heap_mb}m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            f"{lib}/*",
        ]

    def _format(self, jvm: list[str], record: BrokerRecord) -> None:
        """Format the storage for ``record``'s cluster id, then write ``broker.json``."""
        tool = [*jvm, "kafka.tools.StorageTool", "format", "--standalone"]
        fmt = subprocess.run(
            [*tool, "-t", record.cluster_id, "-c", str(self._props_file)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"Formatting the broker's storage failed:\n{fmt.stdout}{fmt.stderr}")
        self._record_file.write_text(json.dumps(asdict(record)))

    def _launch(self, jvm: list[str], record: BrokerRecord, timeout: float) -> BrokerInfo:
        log_file = self.data_dir / "broker.log"
        with log_file.open("wb") as out:
            proc = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(self._props_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        info = BrokerInfo(record.bootstrap_servers, proc.pid, str(self.data_dir), str(log_file))
        try:
            self._wait_ready(proc, info, timeout)
        except BaseException:
            self._terminate(proc.pid, proc)
            raise
        self._state_file.write_text(json.dumps(asdict(info)))
        self._proc = proc
        return info

    def _wait_ready(self, proc: subprocess.Popen[bytes], info: BrokerInfo, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        port = int(info.bootstrap_servers.rsplit(":", 1)[1])
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise BrokerError(
                    f"The broker exited with code {code} while starting. Log tail:\n"
                    f"{_tail(Path(info.log_file))}"
                )
            if _port_open("127.0.0.1", port):
                try:
                    AdminClient({"bootstrap.servers": info.bootstrap_servers}).list_topics(timeout=5)
                    return
                except Exception:  # not serving metadata yet: keep polling until the deadline
                    pass
            time.sleep(0.2)
        raise BrokerError(
            f"The broker did not serve within {timeout:.0f}s. Log tail:\n{_tail(Path(info.log_file))}"
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker started from this home; ``False`` if none was running."""
        try:
            info = BrokerInfo(**json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return False
        proc = self._proc if self._proc is not None and self._proc.pid == info.pid else None
        stopped = self._terminate(info.pid, proc, timeout) if _pid_alive(info.pid) else False
        self._state_file.unlink(missing_ok=True)
        self._proc = None
        return stopped

    @staticmethod
    def _terminate(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> bool:
        """SIGTERM, wait up to ``timeout``, then SIGKILL."""
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return True
            if proc is None and not _pid_alive(pid):
                return True
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if proc is not None:
            proc.wait(timeout=10)
        return True

    def __enter__(self) -> BrokerInfo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


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
