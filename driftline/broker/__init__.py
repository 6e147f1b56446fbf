"""The embedded local broker: a single-node Apache Kafka (KRaft) built from Maven Central jars."""

from driftline.broker.local import BrokerInfo, LocalBroker

__all__ = ["BrokerInfo", "LocalBroker"]
