"""What the local broker writes down: ``broker.json`` (a formatted broker, kept across stops) and
``state.json`` (the running JVMs, removed on stop)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from driftline.errors import BrokerError


@dataclass(frozen=True)
class NodePorts:
    """Where one node listens, as kept in ``broker.json``.

    >>> NodePorts(2, 40123, 40124).address
    '127.0.0.1:40123'
    """

    node_id: int
    broker_port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def controller(self) -> str:
        return f"127.0.0.1:{self.controller_port}"


@dataclass(frozen=True)
class NodeInfo:
    """One started node, as written to ``state.json``; ``running`` is checked when read back."""

    node_id: int
    bootstrap_servers: str
    pid: int
    log_file: str
    running: bool = True


@dataclass(frozen=True)
class BrokerInfo:
    """The running local broker, every node of it, as written to ``state.json``."""

    bootstrap_servers: str
    data_dir: str
    nodes: tuple[NodeInfo, ...]
    security: str = "PLAINTEXT"
    """``PLAINTEXT`` (anyone may do anything), or ``SASL_PLAINTEXT/SCRAM-SHA-512`` with ACLs."""
    credentials: str | None = None
    """The file of every principal's password, for a secure broker."""

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BrokerInfo:
        if "nodes" not in raw:  # written by a Driftline that ran one node only
            only = NodeInfo(1, raw["bootstrap_servers"], raw["pid"], raw["log_file"])
            return cls(raw["bootstrap_servers"], raw["data_dir"], (only,))
        nodes = tuple(NodeInfo(**n) for n in raw["nodes"])
        security = str(raw.get("security", "PLAINTEXT"))
        return cls(raw["bootstrap_servers"], raw["data_dir"], nodes, security, raw.get("credentials"))


@dataclass(frozen=True)
class BrokerRecord:
    """What a formatted broker keeps across stops, as written to ``broker.json``.

    >>> one = BrokerRecord("q1Sh-9_ISia_zwGINzRvyQ", (NodePorts(1, 40123, 40124),))
    >>> one.bootstrap_servers
    '127.0.0.1:40123'
    >>> one.to_json()  # the form a single-node Driftline wrote
    {'cluster_id': 'q1Sh-9_ISia_zwGINzRvyQ', 'broker_port': 40123, 'controller_port': 40124}
    >>> three = BrokerRecord("q1Sh", tuple(NodePorts(i, 9000 + i, 9100 + i) for i in (1, 2, 3)))
    >>> three.bootstrap_servers
    '127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003'
    >>> secure = BrokerRecord("q1Sh", one.nodes, secure=True)
    >>> [BrokerRecord.from_json(r.to_json()) == r for r in (one, three, secure)]
    [True, True, True]
    """

    cluster_id: str
    nodes: tuple[NodePorts, ...]
    secure: bool = False
    """Formatted with SCRAM credentials and run with SASL and ACLs (see ``driftline.broker.security``)."""

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(n.address for n in self.nodes)

    def node(self, node_id: int) -> NodePorts:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise BrokerError(f"The local broker has nodes {[n.node_id for n in self.nodes]}, no node {node_id}.")

    def to_json(self) -> dict[str, Any]:
        """One node keeps the flat form that a single-node Driftline reads; ``secure`` is written
        only when set."""
        out: dict[str, Any]
        if len(self.nodes) == 1:
            only = self.nodes[0]
            out = {
                "cluster_id": self.cluster_id,
                "broker_port": only.broker_port,
                "controller_port": only.controller_port,
            }
        else:
            out = {"cluster_id": self.cluster_id, "nodes": [asdict(n) for n in self.nodes]}
        return {**out, "secure": True} if self.secure else out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BrokerRecord:
        secure = bool(raw.get("secure", False))
        if "nodes" in raw:
            return cls(raw["cluster_id"], tuple(NodePorts(**n) for n in raw["nodes"]), secure)
        return cls(raw["cluster_id"], (NodePorts(1, raw["broker_port"], raw["controller_port"]),), secure)
