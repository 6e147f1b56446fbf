"""Kafka at the edge: the only module that imports confluent-kafka (ruff's banned-API rule keeps it so;
the bench's plain-Kafka and Faust contenders and the Schema Registry client are the named exceptions).

Every client gets the settings' bootstrap servers and extra librdkafka settings (security and the like),
then the role's own defaults, then the caller's overrides. Every reader passes what ``consume`` or
``poll`` returned through :func:`data_messages`, the one policy for message errors. The client types
the rest of Driftline names are re-exported from here.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from driftline.config import Settings
from driftline.errors import ConfigError, KafkaUnavailableError

# Nothing from driftline but config and errors, so that every package (models/ too) may import this.

__all__ = [
    "OFFSET_BEGINNING",
    "OFFSET_END",
    "Consumer",
    "KafkaError",
    "KafkaException",
    "Message",
    "Producer",
    "TopicPartition",
]

log = logging.getLogger(__name__)

MESSAGE_ERRORS: Counter[str] = Counter()
"""Non-fatal message errors every reader of this process has seen, by error name."""


class _Consumed(Protocol):
    def error(self) -> KafkaError | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...


M = TypeVar("M", bound=_Consumed)


def data_messages(messages: Sequence[M | None]) -> list[M]:
    """The data messages of what ``consume``/``poll`` returned: the one policy for message errors.

    A fatal error is raised (the client cannot go on); any other (a partition's end, a broker that
    went away and will be retried) is counted in :data:`MESSAGE_ERRORS` and logged, and reading
    goes on.
    """
    if all(m is not None and m.error() is None for m in messages):  # the common case
        return list(messages)  # type: ignore[arg-type]  # no None left
    good: list[M] = []
    for m in messages:
        if m is None:
            continue
        err = m.error()
        if err is None:
            good.append(m)
        elif err.fatal():
            raise KafkaException(err)
        else:
            MESSAGE_ERRORS[err.name()] += 1
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("reading %s[%s]: %s", m.topic(), m.partition(), err)
    return good


ANY_PARTITION = -1
"""``partition=`` meaning "the producer's partitioner decides" (librdkafka's RD_KAFKA_PARTITION_UA)."""


Header = tuple[str, str | bytes | None]
DeliveryCallback = Callable[[KafkaError | None, Any], None]


class Producing(Protocol):
    """The part of ``confluent_kafka.Producer`` that :func:`produce` uses (fakes have it too)."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        *,
        on_delivery: DeliveryCallback | None = ...,
        headers: list[Header] | None = ...,
        partition: int = ...,
    ) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...


def produce(
    producer: Producing,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    *,
    partition: int = ANY_PARTITION,
    on_delivery: DeliveryCallback | None = None,
    headers: list[Header] | None = None,
) -> None:
    """``producer.produce``, waiting while the local queue is full (serving delivery reports meanwhile)."""
    extra: dict[str, Any] = {"partition": partition}
    if on_delivery is not None:
        extra["on_delivery"] = on_delivery
    if headers is not None:
        extra["headers"] = headers
    while True:
        try:
            producer.produce(topic, value, key, **extra)
            return
        except BufferError:
            producer.poll(0.05)


def produce_batch(
    producer: Producing,
    topic: str,
    values: Sequence[bytes],
    keys: Sequence[bytes | None],
    partitions: Sequence[int],
) -> None:
    """One record per value, the hot path's loop: :func:`produce` only when the queue is full."""
    send = producer.produce
    for value, key, partition in zip(values, keys, partitions, strict=True):
        try:
            send(topic, value, key, partition=partition)
        except BufferError:
            produce(producer, topic, value, key, partition=partition)


CLIENT_DEFAULTS: dict[str, Any] = {
    # librdkafka backs off up to 10 s between reconnects by default: a broker that comes back after a
    # restart would wait that long for its clients. One second keeps the retry cheap and the return quick.
    "reconnect.backoff.max.ms": 1000,
}

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 500000,
    "compression.type": "lz4",
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 10,
    "queued.min.messages": 20000,
}


def producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer({**CLIENT_DEFAULTS, **settings.client_config(), **PRODUCER_DEFAULTS, **overrides})


def consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(
        {
            **CLIENT_DEFAULTS,
            **settings.client_config(),
            **CONSUMER_DEFAULTS,
            "group.id": group_id,
            **overrides,
        }
    )


def admin(settings: Settings) -> AdminClient:
    return AdminClient({**CLIENT_DEFAULTS, **settings.client_config()})


def read_topic(
    settings: Settings,
    topic: str,
    expected: int,
    timeout: float = 60.0,
    *,
    read_committed: bool = False,
    settle: float = 0.0,
) -> list[Message]:
    """Read ``topic`` from the beginning with a fresh group until ``expected`` records arrived (then
    ``settle`` more seconds, to catch extras) or ``timeout`` passed; return what was read."""
    reader = consumer(
        settings,
        f"driftline-reader-{uuid.uuid4().hex[:8]}",
        **{"isolation.level": "read_committed" if read_committed else "read_uncommitted"},
    )
    reader.subscribe([topic])
    out: list[Message] = []
    now = time.monotonic()
    deadline, settle_until = now + timeout, None
    try:
        while now < deadline and (settle_until is None or now < settle_until):
            out += data_messages(reader.consume(1000, 0.2))
            now = time.monotonic()
            if settle_until is None and len(out) >= expected:
                settle_until = now + settle
    finally:
        reader.close()
    return out


def read_to_end(
    settings: Settings, topic: str, timeout: float = 30.0, *, read_committed: bool = True
) -> list[Message]:
    """Every record of ``topic`` up to the end it had when called (all partitions)."""
    reader = consumer(
        settings,
        f"driftline-reader-{uuid.uuid4().hex[:8]}",
        **{"isolation.level": "read_committed" if read_committed else "read_uncommitted"},
    )
    try:
        metadata = reader.list_topics(topic, timeout=timeout).topics[topic]
        ends = {}
        deadline = time.monotonic() + timeout
        for p in metadata.partitions:
            low, high = _watermarks(reader, TopicPartition(topic, p), deadline)
            if high > low:
                ends[p] = high
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out: list[Message] = []
        while ends and time.monotonic() < deadline:
            out += data_messages(reader.consume(1000, 0.2))
            positions = reader.position([TopicPartition(topic, p) for p in ends])
            ends = {tp.partition: ends[tp.partition] for tp in positions if tp.offset < ends[tp.partition]}
        if ends:
            raise KafkaUnavailableError(f"reading {topic} to its end timed out after {timeout:.0f}s")
        return out
    finally:
        reader.close()


def watermarks(
    settings: Settings, topics: Iterable[str], timeout: float = 30.0
) -> dict[str, dict[int, tuple[int, int]]]:
    """Each partition's low and high watermarks, per topic (asked again while a leader settles)."""
    reader = consumer(settings, f"driftline-offsets-{uuid.uuid4().hex[:8]}")
    try:
        deadline = time.monotonic() + timeout
        out: dict[str, dict[int, tuple[int, int]]] = {}
        for topic in topics:
            partitions = reader.list_topics(topic, timeout=timeout).topics[topic].partitions
            out[topic] = {
                p: _watermarks(reader, TopicPartition(topic, p), deadline) for p in sorted(partitions)
            }
        return out
    finally:
        reader.close()


def partition_counts(settings: Settings, topics: Iterable[str], timeout: float = 30.0) -> dict[str, int]:
    """How many partitions each of ``topics`` has (0 for a topic that does not exist)."""
    metadata = admin(settings).list_topics(timeout=timeout).topics
    return {t: len(metadata[t].partitions) if t in metadata else 0 for t in topics}


def topic_max_message_bytes(settings: Settings, topic: str, timeout: float = 10.0) -> int | None:
    """The topic's ``max.message.bytes`` (the largest record batch the broker takes), or ``None``
    when the cluster does not say (no right to describe configs, say)."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        client = admin(settings)  # kept referenced until the answer is in: a collected client cancels it
        futures = client.describe_configs([resource], request_timeout=timeout)
        entries = futures[resource].result(timeout=timeout)
        return int(entries["max.message.bytes"].value)
    except (KafkaException, KeyError, ValueError, TypeError, TimeoutError):
        return None


def _watermarks(reader: Consumer, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    """A partition's low and high watermarks, asked again while the broker cannot say yet (a leader
    that has just been elected or restarted answers OFFSET_NOT_AVAILABLE until it has caught up)."""
    while True:
        try:
            low, high = reader.get_watermark_offsets(
                partition, timeout=max(0.5, min(5.0, deadline - time.monotonic()))
            )
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0]
            settling = err.retriable() or err.code() == KafkaError.OFFSET_NOT_AVAILABLE
            if not settling or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def wait_for_cluster(settings: Settings, timeout: float = 30.0) -> None:
    """Return once the cluster answers a metadata request, or raise :class:`KafkaUnavailableError`."""
    client = admin(settings)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            # short slices: a signal is handled between two of them, not after a 5 s C call
            client.list_topics(timeout=min(1.0, max(0.5, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            last = exc
    raise KafkaUnavailableError(
        f"No Kafka cluster answered at {settings.bootstrap_servers} within {timeout:.0f}s ({last}). "
        "Start the local one with `driftline broker start` or check --bootstrap-servers."
    )


def require_topics(settings: Settings, names: Iterable[str], timeout: float = 30.0) -> None:
    """Raise :class:`ConfigError`, naming the fix, if any of ``names`` does not exist on the cluster."""
    existing = set(admin(settings).list_topics(timeout=timeout).topics)
    missing = [n for n in names if n not in existing]
    if missing:
        raise ConfigError(
            f"Topic(s) {', '.join(missing)} do not exist on {settings.bootstrap_servers}: create them with "
            "`driftline topics create`, or point Driftline at yours (DRIFTLINE_TOPICS__EVENTS, ...)."
        )


def create_topics(settings: Settings, names: Iterable[str] | None = None, timeout: float = 30.0) -> list[str]:
    """Create Driftline's topics that do not exist yet; return the names created (idempotent)."""
    client = admin(settings)
    specs = {spec.name: spec for spec in settings.topics.specs()}
    wanted = list(names) if names is not None else list(specs)
    existing = set(client.list_topics(timeout=timeout).topics)
    missing = [n for n in wanted if n not in existing]
    if not missing:
        return []
    replication = settings.topics.replication_factor
    futures = client.create_topics(
        [
            NewTopic(n, s.partitions, replication, config=s.config)
            if (s := specs.get(n))
            else NewTopic(n, settings.topics.partitions, replication)
            for n in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    _wait_for_leaders(client, missing, time.monotonic() + timeout)
    return created


def _wait_for_leaders(client: AdminClient, names: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        meta = client.list_topics(timeout=5).topics
        if all(
            n in meta and meta[n].partitions and all(p.leader >= 0 for p in meta[n].partitions.values())
            for n in names
        ):
            return
        time.sleep(0.1)


# -- ACLs ----------------------------------------------------------------------------------------


class AclEntry(Protocol):
    """One ALLOW rule from any host, by names: ``resource`` TOPIC, GROUP or TRANSACTIONAL_ID;
    ``pattern`` LITERAL or PREFIXED; ``operation`` READ, WRITE, ... (``driftline.acls.Binding``)."""

    @property
    def principal(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def pattern(self) -> str: ...
    @property
    def operation(self) -> str: ...


def describe_acls(settings: Settings, timeout: float = 30.0) -> set[tuple[str, str, str, str, str]]:
    """Every ALLOW rule from any host on the cluster, as (principal, resource, name, pattern,
    operation); needs DESCRIBE on the cluster (a super user has it)."""
    from confluent_kafka.admin._acl import AclBindingFilter, AclOperation, AclPermissionType
    from confluent_kafka.admin._resource import ResourcePatternType

    any_: Any = None  # the filter's "any name, principal, host" (typed as str in the stubs)
    match_all = AclBindingFilter(
        ResourceType.ANY, any_, ResourcePatternType.ANY, any_, any_, AclOperation.ANY, AclPermissionType.ANY
    )
    client = admin(settings)
    found = client.describe_acls(match_all, request_timeout=timeout).result(timeout=timeout)
    return {
        (b.principal, b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name)
        for b in found
        if b.permission_type == AclPermissionType.ALLOW and b.host == "*"
    }


def create_acls(settings: Settings, entries: Iterable[AclEntry], timeout: float = 30.0) -> None:
    """Create ALLOW rules from any host (a rule that exists already stays as it is); needs ALTER on the
    cluster (a super user has it). Raises :class:`KafkaException` on the first refused rule."""
    from confluent_kafka.admin._acl import AclBinding, AclPermissionType

    rules = [
        AclBinding(e.resource, e.name, e.pattern, e.principal, "*", e.operation, AclPermissionType.ALLOW)
        for e in entries
    ]
    if not rules:
        return
    client = admin(settings)
    for future in client.create_acls(rules, request_timeout=timeout).values():
        future.result(timeout=timeout)
