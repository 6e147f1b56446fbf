"""``driftline serve``: the I/O shell around :class:`~driftline.streams.processor.BatchProcessor`.

One loop, one thread::

    consume (micro-batch by size and wait) -> [swap in a prepared version] -> process (decode, infer,
        encode) -> produce -> at-least-once: flush, then commit the batch's offsets
                           -> exactly-once:  one transaction per batch, offsets sent to it

New versions are prepared by a :class:`~driftline.streams.watcher.ModelWatcher` thread and swapped in
between two batches, so each batch is predicted by exactly one version and inference never waits for
a download or a load.

Offsets are committed only after every prediction and dead letter of the batch is acknowledged, so a
crash at any point replays events instead of losing them. On a partition revocation the in-flight
batch is finished and committed inside the callback; on a lost partition it is abandoned uncommitted.
SIGTERM/SIGINT (through ``stop``) finish the current batch, commit and leave the group.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import torch

from driftline.config import Settings
from driftline.errors import DeliveryError
from driftline.health import Health, Watchdog
from driftline.metrics import ServeMetrics
from driftline.models.runtime import Predictor, load_predictor
from driftline.options import ServeOptions
from driftline.schemas.wire import AvroDecoder, AvroEncoder, RegistryResolver, builtin_store
from driftline.streams import kafka
from driftline.streams.batching import Batch, MicroBatcher
from driftline.streams.deadletters import DeadLetterWriter, max_message_bytes
from driftline.streams.kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from driftline.streams.processor import BatchProcessor, BatchResult, SourceMessage
from driftline.streams.watcher import Handoff, ModelWatcher

log = logging.getLogger(__name__)


OffsetRanges = dict[tuple[str, int], tuple[int, int]]


def offset_ranges(messages: Sequence[SourceMessage]) -> OffsetRanges:
    """First and last offset of each partition in ``messages``."""
    ranges: OffsetRanges = {}
    for m in messages:  # consumed data messages always carry topic, partition and offset
        tp, offset = (cast(str, m.topic()), cast(int, m.partition())), cast(int, m.offset())
        ranges[tp] = (ranges.get(tp, (offset, offset))[0], offset)
    return ranges


def commit_positions(ranges: OffsetRanges) -> list[TopicPartition]:
    """Where to resume after handling the messages: one past the last of each partition."""
    return [TopicPartition(t, p, last + 1) for (t, p), (_, last) in ranges.items()]


def rewind_positions(ranges: OffsetRanges) -> list[TopicPartition]:
    """Where to resume to replay the messages: the first of each partition."""
    return [TopicPartition(t, p, first) for (t, p), (first, _) in ranges.items()]


class _KafkaSource:
    """Adapts ``Consumer.consume`` for the batcher: data messages only (:func:`kafka.data_messages`)."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        return kafka.data_messages(self._consumer.consume(num_messages, timeout))


class StreamProcessor:
    """A consumer-group member that turns input events into predictions."""

    def __init__(
        self,
        settings: Settings,
        core: BatchProcessor,
        options: ServeOptions,
        metrics: ServeMetrics | None = None,
        watcher: ModelWatcher | None = None,
        health: Health | None = None,
        *,
        consumer: Consumer | None = None,
        producer: Producer | None = None,
        copartitioned: bool = False,
    ) -> None:
        """``consumer`` and ``producer`` are built from ``settings`` unless given (tests give the fakes
        of :mod:`driftline.testing.kafka`)."""
        self.settings = settings
        self.health = health or Health()
        self.core = core
        self.options = options
        self.metrics = metrics or ServeMetrics()
        self.watcher = watcher
        self._awaiting_first: Handoff | None = None
        """The version swapped in last, until its first prediction is acknowledged."""
        self._batcher = MicroBatcher(options.max_batch, options.max_wait_ms / 1000.0)
        self._pending: Batch[Message] = Batch()
        self._delivery_errors: list[KafkaError] = []
        self._owns_clients = consumer is None and producer is None
        self._same_partition = copartitioned
        self._consumer = consumer if consumer is not None else self._make_consumer()
        self._producer = producer if producer is not None else self._make_producer()
        self._source = _KafkaSource(self._consumer)
        self._dead_letters = DeadLetterWriter(
            self._producer,
            settings.topics.dead_letters,
            max_message_bytes(settings.client_config()),
            on_reduced=lambda why: self.metrics.dead_letters_reduced.labels(why).inc(),
        )
        self._dead_letters.same_partition = copartitioned
        self._next_lag = 0.0
        self._on_ready: Callable[[], None] | None = None
        self._uncertain: dict[tuple[str, int], TopicPartition] = {}
        """Positions committed without waiting for the broker's answer."""
        self.handled = 0
        """Events handled (predicted or dead-lettered) and committed so far."""
        self.first_arrival: float | None = None
        self.last_commit: float | None = None
        """Monotonic times of the first event's arrival and of the latest commit."""

    def _copartitioned(self) -> bool:
        t = self.settings.topics
        outputs = [t.predictions, t.dead_letters] + ([t.shadow_predictions] if self.watcher else [])
        counts = kafka.partition_counts(self.settings, [t.events, *outputs])
        if len(set(counts.values())) == 1:
            return True
        log.warning(
            "the outputs are not co-partitioned with %s (%s): predictions and dead letters go by key, "
            "not to their event's partition number; give the topics the same partition count",
            t.events,
            counts,
        )
        return False

    def _make_consumer(self) -> Consumer:
        return kafka.consumer(
            self.settings,
            self.options.group_id,
            **self.health.client_settings(),
            **{"session.timeout.ms": self.options.session_timeout_ms},
            **({"isolation.level": "read_committed"} if self.options.exactly_once else {}),
        )

    def _make_producer(self) -> Producer:
        extra: dict[str, object] = {
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            "message.timeout.ms": int(self.options.delivery_timeout_s * 1000),
        }
        if self.options.exactly_once:
            extra["transactional.id"] = f"{self.options.group_id}.{self.options.instance_id}"
            extra["transaction.timeout.ms"] = 60000
        return kafka.producer(self.settings, **extra)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(err)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until ``stop`` is set, then finish the in-flight batch and leave the group."""
        config = self.core.predictor.config
        self.metrics.set_model(config.name, config.version)
        self.health.set("model", True, f"{config.name} v{config.version}")
        self.health.set("group", False, f"joining group {self.options.group_id}")
        if self.options.exactly_once:
            self._producer.init_transactions(self.options.delivery_timeout_s)
        if self._owns_clients:  # the topic's own limit and partitioning, from the cluster
            self._same_partition = self._copartitioned()
            self._dead_letters.same_partition = self._same_partition
            self._dead_letters.limit = max_message_bytes(
                self.settings.client_config(),
                kafka.topic_max_message_bytes(self.settings, self.settings.topics.dead_letters),
            )
        self._on_ready = on_ready
        self._consumer.subscribe(
            [self.settings.topics.events],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        watchdog = Watchdog(self.health, stop, grace_s=self.options.delivery_timeout_s + 30).start()
        try:
            while not stop.is_set():
                self.health.beat()
                self._batcher.fill(self._source, self._pending, idle_timeout=0.1)
                self._apply_handoffs()
                if self._pending:
                    self._handle(self._pending.take())
                self._report_lag()
            if self._pending:
                self._handle(self._pending.take(), final=True)
            self._settle_commits()
        finally:
            try:
                self._close()
            finally:
                watchdog.close()

    def _close(self) -> None:
        try:
            self._consumer.close()
        finally:
            self._producer.flush(self.options.delivery_timeout_s)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The first assignment means the group has let us in: we are serving."""
        self.health.set("group", True, f"{len(partitions)} partitions assigned")
        if self._on_ready is not None:
            self._on_ready()
            self._on_ready = None

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.health.set("group", False, "rebalancing")
        if self._pending:
            log.info("rebalance: finishing the in-flight batch of %d events", len(self._pending))
            self._handle(self._pending.take(), final=True)
        self._settle_commits()
        self.metrics.lag.clear()  # reported again for whatever is assigned next

    def _settle_commits(self) -> None:
        """Commit the latest handled positions and wait for the answer (before partitions go)."""
        if self._uncertain and not self.options.exactly_once:
            self._consumer.commit(offsets=list(self._uncertain.values()), asynchronous=False)
        self._uncertain.clear()

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.health.set("group", False, "partitions lost: rejoining")
        if self._pending:
            log.warning(
                "partitions lost: abandoning %d uncommitted events; their new owner replays them",
                len(self._pending),
            )
            self._pending.take()
        self._uncertain.clear()  # those partitions are no longer ours to commit
        self.metrics.lag.clear()

    # -- model versions ------------------------------------------------------------------------

    def _apply_handoffs(self) -> None:
        """Swap in whatever the watcher has prepared: between two batches, never inside one."""
        if self.watcher is None:
            return
        for handoff in self.watcher.take():
            if handoff.role == "live":
                self._swap_live(handoff)
            else:
                self._swap_shadow(handoff)

    def _swap_live(self, handoff: Handoff) -> None:
        assert handoff.predictor is not None  # live handoffs always carry a model
        old, new = self.core.predictor.config, handoff.predictor.config
        self.core.predictor = handoff.predictor
        shadow = self.core.shadow
        if shadow is not None and shadow.config.input_spec.columns != new.input_spec.columns:
            log.warning(
                "shadow v%s expects other features than live v%s: shadowing stops",
                shadow.config.version,
                new.version,
            )
            self.core.shadow = None
        self.metrics.set_model(new.name, new.version)
        self.metrics.swaps.labels("live").inc()
        self._awaiting_first = handoff
        age = time.time() - handoff.control_time_ms / 1000.0
        log.info(
            "swapped %s v%s -> v%s between batches (prepared in %.2fs, %.2fs after its registry record)",
            new.name,
            old.version,
            new.version,
            handoff.load_seconds,
            age,
        )
        self._audit_swap("SWAPPED", handoff, f"replaced v{old.version}")

    def _swap_shadow(self, handoff: Handoff) -> None:
        predictor, live = handoff.predictor, self.core.predictor.config
        if predictor is None:
            if self.core.shadow is not None:
                log.info("shadowing of v%s ended", self.core.shadow.config.version)
            self.core.shadow = None
            return
        if predictor.config.input_spec.columns != live.input_spec.columns:
            assert self.watcher is not None
            self.watcher.refuse(
                handoff.control_offset,
                predictor.config.version,
                "feature-mismatch",
                f"a shadow takes the live input fields {[f.name for f in live.input_spec.inputs]} of the "
                f"same kinds and categories, not {[f.name for f in predictor.config.input_spec.inputs]}",
            )
            return
        self.core.shadow = predictor
        self.metrics.swaps.labels("shadow").inc()
        log.info("shadowing %s v%s next to live v%s", live.name, predictor.config.version, live.version)
        self._audit_swap("SHADOWING", handoff, f"live is v{live.version}")

    def _audit_swap(self, action: str, handoff: Handoff, detail: str) -> None:
        assert self.watcher is not None
        assert handoff.predictor is not None
        config = handoff.predictor.config
        self.watcher.audit.record(action, config.name, config.version, "ok", detail, handoff.control_offset)

    # -- one batch ------------------------------------------------------------------------------

    def _handle(self, batch: Batch[Message], final: bool = False) -> None:
        """Process, produce, confirm delivery, commit. ``final``: wait for the commit too (the
        partitions are about to go); otherwise the commit is sent without waiting for its answer,
        which is safe because it is only sent after every output of the batch was acknowledged."""
        result = self.core.process(batch.messages, batch.arrivals)
        ranges = offset_ranges(batch.messages)
        offsets = commit_positions(ranges)
        if self.options.exactly_once:
            if not self._transact(result, offsets, ranges):
                return
        else:
            self._produce(result)
            self._await_delivery()
            if final:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            for tp in offsets:  # an asynchronous commit is settled by _settle_commits
                self._uncertain[(tp.topic, tp.partition)] = tp
        self._record(batch, result)

    def _transact(self, result: BatchResult, offsets: list[TopicPartition], ranges: OffsetRanges) -> bool:
        """One transaction for the batch; ``False`` if it was aborted and rewound for replay."""
        timeout = self.options.delivery_timeout_s
        try:
            self._producer.begin_transaction()
            self._produce(result)
            self._producer.send_offsets_to_transaction(
                offsets, self._consumer.consumer_group_metadata(), timeout
            )
            self._producer.commit_transaction(timeout)
            return True
        except KafkaException as exc:
            if not exc.args[0].txn_requires_abort():
                raise
            log.warning("transaction aborted (%s); replaying the batch", exc)
            self._producer.abort_transaction(timeout)
            self._producer.poll(0)  # delivery reports: refused dead letters are written reduced next time
            self._dead_letters.discard_pending()
            for tp in rewind_positions(ranges):  # the loop replays the batch from here
                self._consumer.seek(tp)
            return False

    def _produce(self, result: BatchResult) -> None:
        """Every output goes to the partition number of the event it answers (when the topics are
        co-partitioned), whatever partitioner wrote the event: a Java producer's murmur2 included."""
        n, t = len(result.keys), self.settings.topics
        partitions = result.partitions if self._same_partition else [kafka.ANY_PARTITION] * n
        kafka.produce_batch(self._producer, t.predictions, result.values, result.keys, partitions)
        if result.shadow_values:
            shadow_partitions = (
                result.shadow_partitions
                if self._same_partition
                else [kafka.ANY_PARTITION] * len(result.shadow_keys)
            )
            kafka.produce_batch(
                self._producer,
                t.shadow_predictions,
                result.shadow_values,
                result.shadow_keys,
                shadow_partitions,
            )
        self._dead_letters.write_batch(result.dead_letters)
        self._producer.poll(0)

    def _await_delivery(self) -> None:
        remaining = self._producer.flush(self.options.delivery_timeout_s)
        if not remaining and self._dead_letters.rewrite_refused():
            remaining = self._producer.flush(self.options.delivery_timeout_s)
        failures = [*map(str, self._delivery_errors), *self._dead_letters.failures()]
        if remaining or failures:
            errors, self._delivery_errors = failures[:3], []
            raise DeliveryError(
                f"{remaining} records unacknowledged and delivery errors {errors}; "
                "no offsets were committed, the batch will be replayed on restart."
            )

    def _record(self, batch: Batch[Message], result: BatchResult) -> None:
        self.handled += len(batch)
        self.last_commit = time.monotonic()
        if self.first_arrival is None:
            self.first_arrival = batch.arrivals[0]
        m = self.metrics
        m.events.inc(len(batch))
        m.batch_size.observe(len(batch))
        m.predictions.inc(len(result.values))
        m.shadow_predictions.inc(len(result.shadow_values))
        if self._awaiting_first is not None and result.values:
            seconds = time.time() - self._awaiting_first.control_time_ms / 1000.0
            m.swap_seconds.observe(seconds)
            log.info(
                "first prediction of v%s %.2fs after its registry record",
                self.core.predictor.config.version,
                seconds,
            )
            self._awaiting_first = None
        m.inference_seconds.observe(result.inference_seconds)
        for dead in result.dead_letters:
            m.dead_letters.labels(dead.reason).inc()
        if len(result.event_times_ms):
            now_ms = time.time() * 1000.0  # event times are wall-clock
            m.end_to_end_seconds.observe_batch((now_ms - result.event_times_ms) / 1000.0)

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + self.options.lag_interval_s
        assigned = self._consumer.assignment()
        if not assigned:
            return
        for tp in self._consumer.position(assigned):
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset))


def build_processor(
    settings: Settings,
    model: Path | Predictor,
    options: ServeOptions,
    *,
    device: str = "auto",
    torch_threads: int = 1,
    schemas: Sequence[Path] = (),
    registry: RegistryResolver | None = None,
    metrics: ServeMetrics | None = None,
    watcher: ModelWatcher | None = None,
    health: Health | None = None,
) -> StreamProcessor:
    """Wire a processor from configuration: schemas, registry, model (a directory, loaded and warmed
    up here, or a ready predictor), codecs, and the watcher that brings new versions.

    ``torch_threads`` bounds PyTorch's CPU threads. One is the right default for the small models of a
    stream processor: more threads spin between batches and take CPU from the Kafka client.
    """
    torch.set_num_threads(torch_threads)
    store = builtin_store()
    store.add_files(schemas)
    if registry is None:
        registry = RegistryResolver.from_config(settings.registry_config())
    if isinstance(model, Path):
        loaded = load_predictor(model, device)
        loaded.warm_up()
        predictor: Predictor = loaded
    else:
        predictor = model
    encoder = AvroEncoder.for_settings(
        store.latest("io.driftline.Prediction"), registry, f"{settings.topics.predictions}-value"
    )
    core = BatchProcessor(AvroDecoder(store, registry), predictor, encoder)
    return StreamProcessor(settings, core, options, metrics, watcher, health)
