"""Fakes of confluent-kafka's clients for unit tests of the services' Kafka logic (no broker).

:class:`FakeCluster` holds topics (partitions of :class:`~driftline.testing.FakeMessage`) and each
group's committed offsets. :class:`FakeGroupConsumer` is one member of a group over it, with the
rebalance callbacks served inside ``consume`` as librdkafka serves them, and a script of rebalances
to inject; :class:`FakeProducer` writes to it, with transactions whose commit can be made to fail.
:class:`FakeConsumer` is a single assigned partition (the registry's reader).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftline.streams.kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, TopicPartition
from driftline.testing import FakeMessage


class FakeConsumer:
    """One partition of one topic, as an assigned ``confluent_kafka.Consumer`` reads it.

    ``values`` are the records at offsets 0, 1, ...; ``append`` writes more, as a producer would.
    ``consume`` returns what lies past the position (at most ``num_messages``) without waiting.

    >>> c = FakeConsumer([b"a"]); c.assign([TopicPartition("t", 0, 0)]); c.append(b"b")
    >>> [m.value() for m in c.consume(10, 0)], c.get_watermark_offsets(TopicPartition("t", 0))
    ([b'a', b'b'], (0, 2))
    """

    def __init__(self, values: Sequence[bytes | None] = (), topic: str = "topic") -> None:
        self.topic = topic
        self.messages: list[FakeMessage] = []
        self.closed = False
        self._position = -1001  # librdkafka's OFFSET_INVALID until something was read
        for value in values:
            self.append(value)

    def append(self, value: bytes | None, timestamp_ms: int = 0) -> None:
        offset = len(self.messages)
        self.messages.append(FakeMessage(value, None, self.topic, 0, offset, timestamp_ms or offset))

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.topic = partitions[0].topic
        self._position = max(partitions[0].offset, 0)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if self._position < 0:  # not assigned
            return []
        taken = self.messages[self._position : self._position + num_messages]
        self._position += len(taken)
        return taken

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self.messages)

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, self._position) for p in partitions]

    def close(self) -> None:
        self.closed = True


@dataclass
class ProducedRecord:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, str | bytes | None]]
    partition: int = -1
    """-1: chosen by the partitioner (here: from the key)."""


class FakeProducer:
    """``produce``/``poll``/``flush`` like ``confluent_kafka.Producer``, into a list.

    Records over ``max_message_bytes`` are refused at ``produce()`` with ``MSG_SIZE_TOO_LARGE``, as
    librdkafka does; ``broker_refuses`` decides, per record, the error its delivery report carries
    (the broker's answer), served on the next ``poll``/``flush``. Refused records are not kept.

    >>> p = FakeProducer(max_message_bytes=10)
    >>> p.produce("t", b"small"); p.flush(); [r.value for r in p.records]
    0
    [b'small']
    """

    def __init__(
        self,
        max_message_bytes: int = 1_000_000,
        broker_refuses: Callable[[ProducedRecord], KafkaError | None] = lambda _r: None,
        cluster: FakeCluster | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.broker_refuses = broker_refuses
        self.cluster = cluster
        self.records: list[ProducedRecord] = []
        """Records written (and, in transactions, committed), in order."""
        self.fail_commits = 0
        """How many of the next ``commit_transaction`` calls fail, as an abortable error would."""
        self.aborted = 0
        self._reports: list[tuple[Callable[[KafkaError | None, Any], None] | None, KafkaError | None]] = []
        self._transactional = False
        self._txn: list[ProducedRecord] | None = None
        self._txn_offsets: tuple[str, list[TopicPartition]] | None = None

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        partition: int = -1,
    ) -> None:
        record = ProducedRecord(topic, value, key, list(headers or []), partition)
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v or b"") for k, v in record.headers)
        if size > self.max_message_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
        if self._transactional and self._txn is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "produce outside a transaction"))
        err = self.broker_refuses(record)
        if err is None:
            self._write(record)
        self._reports.append((on_delivery, err))

    def _write(self, record: ProducedRecord) -> None:
        if self._txn is not None:
            self._txn.append(record)
            return
        self.records.append(record)
        if self.cluster is not None:
            where = None if record.partition < 0 else record.partition
            self.cluster.append(record.topic, record.value, record.key, partition=where)

    # -- transactions, as far as Driftline's services use them -----------------------------------

    def init_transactions(self, timeout: float = -1) -> None:
        self._transactional = True

    def begin_transaction(self) -> None:
        if self._txn is not None:
            raise KafkaException(KafkaError(KafkaError._STATE, "a transaction is already open"))
        self._txn, self._txn_offsets = [], None

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group: Any, timeout: float = -1
    ) -> None:
        self._txn_offsets = (str(group), list(offsets))

    def commit_transaction(self, timeout: float = -1) -> None:
        if self._txn is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "no open transaction"))
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise KafkaException(KafkaError(KafkaError._STATE, "injected failure", txn_requires_abort=True))
        staged, offsets = self._txn, self._txn_offsets
        self._txn = None
        for record in staged:
            self._write(record)
        if offsets is not None and self.cluster is not None:
            self.cluster.commit(offsets[0], offsets[1])

    def abort_transaction(self, timeout: float = -1) -> None:
        self._txn, self._txn_offsets = None, None
        self.aborted += 1

    def poll(self, timeout: float = 0.0) -> int:
        reports, self._reports = self._reports, []
        for callback, err in reports:
            if callback is not None:
                callback(err, None)
        return len(reports)

    def flush(self, timeout: float = 0.0) -> int:
        self.poll()
        return 0


class FakeCluster:
    """Topics of partitions of messages, and each group's committed offsets.

    >>> cluster = FakeCluster({"events": 2})
    >>> cluster.append("events", b"a", partition=1).offset()
    0
    >>> cluster.end_offsets("events")
    {0: 0, 1: 1}
    """

    def __init__(self, topics: dict[str, int]) -> None:
        self.topics: dict[str, list[list[FakeMessage]]] = {
            t: [[] for _ in range(n)] for t, n in topics.items()
        }
        self.committed: dict[str, dict[tuple[str, int], int]] = {}

    def append(
        self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None
    ) -> FakeMessage:
        partitions = self.topics.setdefault(topic, [[]])
        if partition is None:
            partition = (sum(key) if key else sum(len(p) for p in partitions)) % len(partitions)
        log = partitions[partition]
        message = FakeMessage(value, key, topic, partition, len(log), len(log))
        log.append(message)
        return message

    def messages(self, topic: str) -> list[FakeMessage]:
        return [m for partition in self.topics.get(topic, []) for m in partition]

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {p: len(log) for p, log in enumerate(self.topics[topic])}

    def partition_counts(self, topics: Sequence[str]) -> dict[str, int]:
        """How many partitions each of ``topics`` has, as the cluster's metadata says."""
        return {t: len(self.topics[t]) for t in topics}

    def commit(self, group: str, offsets: Sequence[TopicPartition]) -> None:
        done = self.committed.setdefault(group, {})
        for tp in offsets:
            done[(tp.topic, tp.partition)] = tp.offset


Callback = Callable[[Any, list[TopicPartition]], None]


@dataclass
class FakeGroupConsumer:
    """The only member of ``group_id`` over ``cluster``: it is assigned every partition of the topics
    it subscribes to, from the group's committed offsets (else the beginning). ``assign`` reads the
    partitions given instead, from their offsets, without the group (as the monitor does).

    ``rebalances`` scripts what happens inside the n-th ``consume`` call (1-based), before it reads:
    ``"revoke"`` (partitions revoked, then assigned again on the next call, as in a cooperative
    hand-back) or ``"lose"`` (partitions lost, then assigned again). Rebalance callbacks run inside
    ``consume``, as librdkafka runs them.
    """

    cluster: FakeCluster
    group_id: str
    rebalances: dict[int, str] = field(default_factory=dict)
    per_call: int = 0
    """At most this many messages per ``consume`` (0: as many as asked), to make batches span calls."""
    consume_calls: int = 0
    closed: bool = False
    _topics: list[str] = field(default_factory=list)
    _callbacks: dict[str, Callback | None] = field(default_factory=dict)
    _positions: dict[tuple[str, int], int] = field(default_factory=dict)
    _assign_next: bool = False

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callback | None = None,
        on_revoke: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:
        self._topics = list(topics)
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self._assign_next = True

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read exactly ``partitions``, each from its offset (``OFFSET_BEGINNING``: 0, ``OFFSET_END``:
        the partition's end), leaving the group's subscription.

        >>> cluster = FakeCluster({"t": 2}); _ = cluster.append("t", b"a", partition=1)
        >>> c = FakeGroupConsumer(cluster, "g"); c.assign([TopicPartition("t", 1, OFFSET_BEGINNING)])
        >>> [m.value() for m in c.consume(10)], c.position([TopicPartition("t", 1)])[0].offset
        ([b'a'], 1)
        """
        self._assign_next = False
        self._positions = {(tp.topic, tp.partition): self._start(tp) for tp in partitions}

    def _start(self, tp: TopicPartition) -> int:
        if tp.offset == OFFSET_BEGINNING:
            return 0
        if tp.offset == OFFSET_END:
            return len(self.cluster.topics[tp.topic][tp.partition])
        if tp.offset < 0:
            raise ValueError(f"assign takes an offset, OFFSET_BEGINNING or OFFSET_END, not {tp.offset}")
        return int(tp.offset)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self.consume_calls += 1
        event = self.rebalances.pop(self.consume_calls, None)
        if event is not None and self._positions:
            self._call("revoke" if event == "revoke" else "lost", self.assignment())
            self._positions.clear()
            self._assign_next = True
            return []
        if self._assign_next:
            self._assign_next = False
            committed = self.cluster.committed.get(self.group_id, {})
            self._positions = {
                (t, p): committed.get((t, p), 0)
                for t in self._topics
                for p in range(len(self.cluster.topics[t]))
            }
            self._call("assign", self.assignment())
        out: list[FakeMessage] = []
        if self.per_call:
            num_messages = min(num_messages, self.per_call)
        for (topic, partition), position in sorted(self._positions.items()):
            log = self.cluster.topics[topic][partition]
            taken = log[position : position + num_messages - len(out)]
            self._positions[(topic, partition)] = position + len(taken)
            out += taken
        return out

    def _call(self, which: str, partitions: list[TopicPartition]) -> None:
        callback = self._callbacks.get(which)
        if callback is not None:
            callback(self, partitions)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in sorted(self._positions)]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self._positions[(tp.topic, tp.partition)])
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self.cluster.topics[partition.topic][partition.partition])

    def seek(self, partition: TopicPartition) -> None:
        self._positions[(partition.topic, partition.partition)] = partition.offset

    def commit(
        self, offsets: list[TopicPartition] | None = None, asynchronous: bool = True, **_: Any
    ) -> None:
        self.cluster.commit(self.group_id, offsets or [])

    def consumer_group_metadata(self) -> str:
        return self.group_id

    def close(self) -> None:
        self.closed = True
