"""The embedded local broker: a single-node Apache Kafka (KRaft) built from Maven Central jars."""

from driftline.broker.local import BrokerInfo, LocalBroker, named_or_local_cluster

__all__ = ["BrokerInfo", "LocalBroker", "named_or_local_cluster"]
