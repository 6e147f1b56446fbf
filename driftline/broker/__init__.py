"""The embedded local broker: Apache Kafka (KRaft) built from Maven Central jars, one node or a small
cluster on 127.0.0.1."""

from driftline.broker.local import LocalBroker, named_or_local_cluster
from driftline.broker.records import BrokerInfo, NodeInfo

__all__ = ["BrokerInfo", "LocalBroker", "NodeInfo", "named_or_local_cluster"]
