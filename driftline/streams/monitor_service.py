"""``driftline monitor``: the Kafka shell around :class:`~driftline.monitoring.monitor.DriftMonitor`.

One loop, one thread::

    registry (live version + reference profile) ─┐
    events ──decode──▶ features ─────────────────┤
    predictions ──decode──▶ scores ─┬────────────┼─▶ DriftMonitor ─▶ alerts, retrain requests
    labels ──decode──▶ LabelJoin ◀──┘ errors ────┘
                                       every checkpoint: one transaction =
                                       alerts + requests + dead letters + the checkpoint record

The checkpoint record (on the compacted monitor-state topic, keyed by model) holds the detectors'
state, the alert state and the input positions. Because outputs and checkpoint commit together, a
monitor killed at any point resumes from its last checkpoint and re-emits exactly what that
checkpoint had not yet covered: no alert is lost or doubled. The transactional id is
``driftline-monitor.<model>``: a second monitor for the same model fences the first, which stops
(a hand-over, not a split of the statistics).

Not in the checkpoint: predictions and labels waiting in the join (a restart drops them; their
partners then expire unmatched, counted in ``driftline_monitor_join_expired_total``).

A model with a spec is also watched per input field (:mod:`driftline.monitoring.fields`): which values
were null before imputation, out of the reference range or unseen categories, and categorical shares.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.config import Settings
from driftline.errors import ConfigError, DecodeError
from driftline.health import Health
from driftline.metrics import MonitorMetrics
from driftline.models.follower import RegistryFollower, logged
from driftline.models.spec import Classification, ModelSpec
from driftline.monitoring.join import Joined, LabelJoin, RecentMean
from driftline.monitoring.monitor import DriftMonitor, MonitorPolicy, Positions
from driftline.monitoring.profile import Profile, ReferenceProfile, load_profile
from driftline.monitoring.retraining import RetrainPolicy
from driftline.options import MonitorOptions
from driftline.schemas.columnar_outputs import (
    LABEL_WRITERS,
    PREDICTION_WRITERS,
    decode_labels,
    decode_predictions,
)
from driftline.schemas.wire import AvroEncoder, builtin_store
from driftline.streams import kafka
from driftline.streams.deadletters import DeadLetterWriter, max_message_bytes
from driftline.streams.features import FeatureExtractor
from driftline.streams.kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from driftline.streams.records import DeadLetter, SourceMessage, contract_schema, decode_rows, decoder_for

log = logging.getLogger(__name__)

_STORE = builtin_store()
_ALERTS = AvroEncoder.single_object(_STORE.latest("io.driftline.DriftAlert"))
_REQUESTS = AvroEncoder.single_object(_STORE.latest("io.driftline.RetrainRequest"))


def policy_of(options: MonitorOptions) -> MonitorPolicy:
    """The drift logic's policy (milliseconds, as event times are) from the monitor's options."""
    return MonitorPolicy(
        update_interval_ms=int(options.update_interval_s * 1000),
        retrain=RetrainPolicy(
            retrain_on=options.retrain_on,
            cooldown_ms=int(options.cooldown_s * 1000),
            events=options.retrain_events,
            lookback=options.retrain_lookback,
            wait_ms=int(options.retrain_wait_s * 1000),
            every_labels=options.retrain_every_labels,
            every_ms=int(options.retrain_every_s * 1000),
        ),
    )


class MonitorService:
    def __init__(
        self,
        settings: Settings,
        model_name: str,
        trusted_keys: dict[str, bytes],
        options: MonitorOptions | None = None,
        metrics: MonitorMetrics | None = None,
        health: Health | None = None,
        *,
        consumer: Consumer | None = None,
        producer: Producer | None = None,
        registry: RegistryFollower | None = None,
        read_to_end: Callable[[str], Sequence[Message]] | None = None,
        partition_counts: Callable[[Sequence[str]], Mapping[str, int]] | None = None,
    ) -> None:
        """The Kafka clients are built from ``settings`` unless given (tests give the fakes of
        :mod:`driftline.testing.kafka`): ``consumer`` reads the inputs, ``producer`` writes the
        checkpoint transactions, ``registry`` follows the model's versions, ``read_to_end`` returns a
        topic's records up to its end (the checkpoints) and ``partition_counts`` the number of
        partitions of each of the topics given."""
        self.settings = settings
        self.options = options or MonitorOptions()
        self.metrics = metrics or MonitorMetrics()
        self.health = health or Health()
        self.health.set("state", False, "restoring the checkpoint")
        self.monitor = DriftMonitor(model_name, policy_of(self.options))
        self.join = LabelJoin(int(self.options.label_ttl_s * 1000), self.options.join_max_pending)
        self._registry = registry if registry is not None else self._connect_registry(trusted_keys)
        self._decoder = decoder_for(settings, self.options.schemas)
        self._owns_clients = consumer is None and producer is None
        self._consumer = consumer if consumer is not None else self._make_consumer()
        self._producer = producer if producer is not None else self._make_producer()
        self._read_to_end = read_to_end or (lambda topic: kafka.read_to_end(settings, topic))
        self._partition_counts = partition_counts or (lambda topics: kafka.partition_counts(settings, topics))
        self._positions: dict[str, dict[int, int]] = defaultdict(dict)
        self._dead: list[DeadLetter] = []
        self._dead_letters = DeadLetterWriter(
            self._producer,
            settings.topics.dead_letters,
            max_message_bytes(settings.client_config()),
            service="monitor",
            on_reduced=lambda why: self.metrics.dead_letters_reduced.labels(why).inc(),
        )
        self._profile: Profile | None = None
        self._spec: ModelSpec | None = None
        """The live version's contract, when it has one (a user's own model)."""
        self._abs_errors = RecentMean(window=1000)
        self._values = RecentMean(window=1000)
        self._features: FeatureExtractor | None = None
        self._next_checkpoint = 0.0
        self._next_status = 0.0
        self._reported: dict[str, int] = {}
        self.fenced = False

    def _connect_registry(self, trusted_keys: dict[str, bytes]) -> RegistryFollower:
        return RegistryFollower.connect(
            self.settings,
            trusted_keys,
            model_name=self.monitor.model_name,
            on_refused=logged(lambda r: self.metrics.refused.labels(r.reason).inc()),
        )

    def _make_consumer(self) -> Consumer:
        return kafka.consumer(
            self.settings,
            f"driftline-monitor-{self.monitor.model_name}",
            **self.health.client_settings(),
            **{"isolation.level": "read_committed"},
        )

    def _make_producer(self) -> Producer:
        return kafka.producer(
            self.settings,
            **{
                "transactional.id": f"driftline-monitor.{self.monitor.model_name}",
                "transaction.timeout.ms": 60000,
            },
        )

    # -- life -------------------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool], on_ready: Callable[[], None] | None = None) -> None:
        t = self.settings.topics
        try:
            self._producer.init_transactions(30)
            if self._owns_clients:
                self._dead_letters.limit = max_message_bytes(
                    self.settings.client_config(),
                    kafka.topic_max_message_bytes(self.settings, t.dead_letters),
                )
            self._registry.catch_up()
            self._restore()
            log.info("%s", self.monitor.policy.retrain.describe())
            self._assign([t.events, t.predictions, t.labels])
            self.health.set("state", True, "restored; reading")
            if on_ready is not None:
                on_ready()
            while not stop():
                self.health.beat()
                self._follow_registry()
                messages = kafka.data_messages(self._consumer.consume(self.options.batch, 0.2))
                if messages:
                    self._handle(messages)
                if time.monotonic() >= self._next_checkpoint:
                    self._checkpoint()
            self._checkpoint()
        except KafkaException as exc:
            if not _fenced(exc):
                raise
            self.fenced = True
            log.warning("another monitor for %s took over (fenced); stopping", self.monitor.model_name)
        finally:
            self.close()

    def close(self) -> None:
        """Release the Kafka clients (``run`` does so when it ends)."""
        self._consumer.close()
        self._registry.close()

    def _assign(self, topics: Sequence[str]) -> None:
        self._consumer.assign(self.assignment(topics))

    def assignment(self, topics: Sequence[str]) -> list[TopicPartition]:
        """The input partitions this monitor reads, at their checkpointed (or starting) positions.

        With a partition stride, every Nth partition of events and predictions (co-partitioned), and
        every partition of labels: a label joins its prediction whichever partition it was written
        to, and labels of events outside the sample expire unjoined (counted)."""
        counts = self._partition_counts(topics)
        labels = self.settings.topics.labels
        sampled = [topic for topic in topics if topic != labels]
        sizes = sorted({counts[topic] for topic in sampled})
        stride = self.options.partition_stride
        if stride > 1 and len(sizes) > 1:
            raise ConfigError(
                f"--partition-stride {stride} needs co-partitioned events and predictions, but "
                f"{', '.join(sampled)} have {sizes} partitions; give them the same count or read every "
                "partition."
            )
        default = OFFSET_END if self.options.start_from_end else OFFSET_BEGINNING
        return [
            TopicPartition(topic, partition, self._positions[topic].get(partition, default))
            for topic in topics
            for partition in range(counts[topic])
            if partition % stride == 0 or topic == labels
        ]

    def records_read(self) -> dict[str, int]:
        """Records read so far per input (events, predictions, labels), over all partitions."""
        t = self.settings.topics
        return {
            role: sum(self._positions.get(getattr(t, role), {}).values())
            for role in ("events", "predictions", "labels")
        }

    # -- the registry -----------------------------------------------------------------------------

    def _follow_registry(self) -> None:
        record = self._registry.poll()
        if record is None or record["version"] == self.monitor.version:
            return
        self._use_profile(record)
        self.monitor.set_version(
            str(record["version"]), self._profile, _now_ms(), int(record["created_at"]), self._spec
        )
        self.metrics.set_model(self.monitor.model_name, str(record["version"]))
        log.info(
            "monitoring %s v%s%s",
            record["model_name"],
            record["version"],
            "" if self._profile else " (no reference profile: labels only)",
        )

    def _use_profile(self, record: dict[str, Any]) -> None:
        text = record.get("reference_profile")
        self._profile = load_profile(text) if text else None
        spec = record.get("spec")
        self._spec = ModelSpec.model_validate_json(spec) if spec else None
        if self._spec is not None:  # a user's model: its own fields, kinds and units
            self._features = FeatureExtractor(self._spec)
            self._decoder.learn(contract_schema(str(record["model_name"]), self._spec))
        else:
            profile = self._profile
            names = profile.feature_names if isinstance(profile, ReferenceProfile) else record["features"]
            self._features = FeatureExtractor.numeric(list(names))

    # -- one batch --------------------------------------------------------------------------------

    def _handle(self, messages: list[Message]) -> None:
        t = self.settings.topics
        by_topic: dict[str, list[Message]] = defaultdict(list)
        for m in messages:
            by_topic[m.topic() or ""].append(m)
        now = _now_ms()
        starts: Positions = defaultdict(dict)
        ends: Positions = defaultdict(dict)
        for topic, batch in by_topic.items():
            first: dict[int, Message] = {}
            last: dict[int, Message] = {}
            for m in batch:
                partition = m.partition() or 0
                first.setdefault(partition, m)
                last[partition] = m
            for partition, m in first.items():
                starts[topic][partition] = (m.offset() or 0, m.timestamp()[1])
            for partition, m in last.items():
                self._positions[topic][partition] = (m.offset() or 0) + 1
                ends[topic][partition] = ((m.offset() or 0) + 1, m.timestamp()[1])
            self.metrics.consumed.labels(_role(t, topic)).inc(len(batch))
        self.monitor.advance(starts, ends)
        if by_topic.get(t.events):
            self._inputs(by_topic[t.events], now)
        if by_topic.get(t.predictions):
            self._predictions(by_topic[t.predictions], now)
        if by_topic.get(t.labels):
            self._labels(by_topic[t.labels], now)
        self.metrics.join_expired.inc(self.join.expire(now))
        self.metrics.join_pending.set(sum(self.join.pending))
        for kind, detector, statistic, threshold in self.monitor.gauges():
            self.metrics.statistic.labels(kind, detector).set(statistic)
            self.metrics.threshold.labels(kind, detector).set(threshold)
        for feature, statistic in self.monitor.feature_gauges():
            self.metrics.feature_statistic.labels(feature).set(statistic)
        rates = self.metrics
        gauges = {"null": rates.field_null_rate, "out-of-range": rates.field_out_of_range_rate}
        for issue, name, rate in self.monitor.field_gauges():
            gauges.get(issue, rates.field_unseen_rate).labels(name).set(rate)

    def _inputs(self, messages: list[Message], now: int) -> None:
        """The record path serve uses: the same rows, and the same dead letters for the rest."""
        if self._features is None:
            return
        features = self._features
        rows, dead = decode_rows(messages, self._decoder, features)
        for d in dead:
            self._dead_letter(d.message, d.reason, d.detail)
        self.monitor.observe_inputs(rows.features, now)
        if self._spec is not None and rows.nulls is not None:  # per-field checks: models with a spec
            self.monitor.observe_fields(rows.features, rows.codes, rows.nulls, now)

    def _predictions(self, messages: list[Message], now: int) -> None:
        """Canonical predictions are read for the whole batch at once; any other goes through
        fastavro, which names the reason when one is bad."""
        payloads = [m.value() or b"" for m in messages]
        regression = self._spec is not None and self._spec.is_regression
        profile = self._profile
        n_classes = 0 if regression else profile.n_classes if isinstance(profile, ReferenceProfile) else 2
        fast = decode_predictions(payloads, PREDICTION_WRITERS, n_classes)
        ids, versions = fast.event_ids, fast.versions
        predicted: npt.NDArray[Any] = fast.values if regression else fast.predicted
        times, scores = fast.event_times, fast.scores
        rest = np.setdiff1d(np.arange(len(messages)), fast.rows)
        if len(rest):
            slow = [self._decode_prediction(messages[i]) for i in rest.tolist()]
            good = [r for r in slow if r is not None]
            ids = [*ids, *(r["event_id"] for r in good)]
            versions = [*versions, *(r["model_version"] for r in good)]
            field = "value" if regression else "predicted_class"
            predicted = np.concatenate(
                [predicted, np.array([np.nan if r.get(field) is None else r[field] for r in good])]
            )
            times = np.concatenate([times, np.array([r["event_time"] for r in good], dtype=np.int64)])
            same = [r["scores"] for r in good if len(r["scores"]) == n_classes]
            if len(same) == len(good):  # scores of another width cannot feed the score detectors
                scores = np.concatenate([scores, np.array(same, dtype=np.float32).reshape(-1, n_classes)])
            else:
                scores = scores[:0]
        if not ids:
            return
        if len(scores) == len(ids) and not regression:
            self.monitor.observe_predictions(scores, versions, now)
        if regression:
            self.monitor.observe_values(predicted, versions, now)
            mean = self._values.add(predicted[np.isfinite(predicted)])
            if mean is not None:
                self.metrics.predicted_mean.set(mean)
        self._errors(self.join.add_predictions(ids, predicted, versions, times), now)

    def _decode_prediction(self, message: Message) -> dict[str, Any] | None:
        try:
            record = self._decoder.decode(message.value())
            if not {"event_id", "model_version", "predicted_class", "event_time", "scores"} <= set(record):
                raise DecodeError("unknown-schema", "not a Prediction record")
            return record
        except DecodeError as exc:
            self._dead_letter(message, exc.reason, exc.detail)
            return None

    def _labels(self, messages: list[Message], now: int) -> None:
        payloads = [m.value() or b"" for m in messages]
        fast = decode_labels(payloads, LABEL_WRITERS)
        ids, times = fast.event_ids, fast.event_times
        labels: npt.NDArray[Any] = fast.labels
        rest = np.setdiff1d(np.arange(len(messages)), fast.rows)
        if self._spec is not None and self._spec.is_regression:  # class indices are no regression truth
            rest = np.arange(len(messages))
            ids, labels, times = [], labels[:0], times[:0]
        extra_ids, extra_labels, extra_times = [], [], []
        for i in rest.tolist():
            try:
                r = self._decoder.decode(payloads[i])
                extra_labels.append(self._truth(r))
                extra_ids.append(str(r["event_id"]))
                extra_times.append(int(r["event_time"]))
            except (DecodeError, KeyError, TypeError, ValueError) as exc:
                self._dead_letter(messages[i], getattr(exc, "reason", "bad-type"), str(exc))
        if extra_ids:
            ids = [*ids, *extra_ids]
            labels = np.concatenate([labels, np.array(extra_labels, dtype=np.float64)])
            times = np.concatenate([times, np.array(extra_times, dtype=np.int64)])
        if ids:
            self._errors(self.join.add_labels(ids, labels, times), now)

    def _truth(self, record: Mapping[str, Any]) -> float:
        """A label record's truth: a class index, or a regression target."""
        spec = self._spec
        if spec is not None and spec.is_regression:
            if record.get("target") is None:
                raise DecodeError(
                    "no-target", f"a label of regression model {spec.task} needs a target value"
                )
            return float(record["target"])
        name = record.get("class_name")
        if name is None:
            return float(int(record["label"]))
        classes = spec.task.classes if spec is not None and isinstance(spec.task, Classification) else ()
        if name not in classes:
            raise DecodeError(
                "unknown-class", f"class_name {name!r} is not one of the model's classes {list(classes)}"
            )
        return float(classes.index(name))

    def _errors(self, joined: Joined, now: int) -> None:
        if not len(joined):
            return
        self.metrics.joined.inc(len(joined))
        if self._spec is not None and self._spec.is_regression:
            mae = self._abs_errors.add(joined.abs_errors)
            if mae is not None:
                self.metrics.label_mae.set(mae)
            self.monitor.observe_abs_errors(joined.abs_errors, joined.versions, now, joined.event_times)
            return
        self.monitor.observe_errors(joined.errors, joined.versions, now, joined.event_times)

    def _dead_letter(self, message: SourceMessage, reason: str, detail: str) -> None:
        self._dead.append(DeadLetter(message, reason, detail))
        self.metrics.dead_letters.labels(reason).inc()

    # -- checkpoints ------------------------------------------------------------------------------

    def _checkpoint(self) -> None:
        """One transaction: what the monitor decided since the last checkpoint, and the checkpoint.

        If the broker refuses a dead letter, the transaction is aborted and written once more, with
        that dead letter in reduced form (the monitor's state has not moved, so the same outputs and
        checkpoint are still right)."""
        self._next_checkpoint = time.monotonic() + self.options.checkpoint_interval_s
        started = time.monotonic()
        outputs = list(self.monitor.take_outputs())
        checkpoint = json.dumps(
            {
                "monitor": self.monitor.state(),
                "positions": {k: {str(pp): o for pp, o in v.items()} for k, v in self._positions.items()},
            }
        ).encode()
        dead, self._dead = self._dead, []
        try:
            self._transact(outputs, dead, checkpoint)
        except KafkaException as exc:
            if not exc.args[0].txn_requires_abort():
                raise
            log.warning("checkpoint transaction aborted (%s); writing it once more", exc)
            self._producer.abort_transaction(30)
            self._producer.poll(0)  # delivery reports: refused dead letters are written reduced
            self._dead_letters.discard_pending()
            self._transact(outputs, dead, checkpoint)
        for what, record in outputs:
            if what == "alert":
                self.metrics.alerts.labels(record["kind"], record["status"]).inc()
                log.warning("ALERT %s %s: %s", record["status"], record["alert_id"], record["summary"])
            else:
                self.metrics.retrain_requests.inc()
                log.warning("RETRAIN requested: %s (%s)", record["request_id"], record["reason"])
        self.metrics.checkpoint_seconds.observe(time.monotonic() - started)
        self._report_progress()

    def _transact(
        self, outputs: Sequence[tuple[str, dict[str, Any]]], dead: Sequence[DeadLetter], checkpoint: bytes
    ) -> None:
        t, p = self.settings.topics, self._producer
        p.begin_transaction()
        for what, record in outputs:
            key = f"{record['model_name']}:{record['model_version']}".encode()
            if what == "alert":
                p.produce(t.drift_alerts, _ALERTS.encode(record), key)
            else:
                p.produce(t.retrain_requests, _REQUESTS.encode(record), key)
        self._dead_letters.write_batch(dead)
        p.produce(t.monitor_state, checkpoint, self.monitor.model_name.encode())
        p.commit_transaction(30)

    def _report_progress(self) -> None:
        """An INFO line when the inputs moved, at most every ``status_interval_s``."""
        now = time.monotonic()
        totals = self.records_read()
        if totals == self._reported or now < self._next_status:
            return
        self._reported, self._next_status = totals, now + self.options.status_interval_s
        open_alerts = ", ".join(self.monitor.open_alerts()) or "none"
        log.info(
            "read to events %d, predictions %d, labels %d; %d labels joined, %d pending; open alerts: %s",
            totals["events"],
            totals["predictions"],
            totals["labels"],
            self.monitor.counts["errors"],
            sum(self.join.pending),
            open_alerts,
        )

    def _restore(self) -> None:
        t = self.settings.topics
        latest = None
        for m in self._read_to_end(t.monitor_state):
            if m.key() == self.monitor.model_name.encode():
                latest = m.value()
        live = self._registry.poll()
        if live is not None:
            self._use_profile(live)
        if latest is None:
            if live is not None:
                self.monitor.set_version(
                    str(live["version"]), self._profile, _now_ms(), int(live["created_at"]), self._spec
                )
            log.info(
                "no checkpoint for %s: starting from %s",
                self.monitor.model_name,
                "the end" if self.options.start_from_end else "the beginning",
            )
            return
        checkpoint = json.loads(latest)
        saved_version = checkpoint["monitor"]["version"]
        record = self._registry.version(saved_version) if saved_version else None
        profile, spec = None, None
        if record is not None and record.get("reference_profile"):
            profile = load_profile(record["reference_profile"])
        if record is not None and record.get("spec"):
            spec = ModelSpec.model_validate_json(record["spec"])
        self.monitor.restore(checkpoint["monitor"], profile, spec)
        for topic, parts in checkpoint["positions"].items():
            self._positions[topic] = {int(pp): int(o) for pp, o in parts.items()}
        if live is not None and live["version"] != saved_version:
            self.monitor.set_version(
                str(live["version"]), self._profile, _now_ms(), int(live["created_at"]), self._spec
            )
        log.info(
            "restored the checkpoint of %s v%s at %s",
            self.monitor.model_name,
            saved_version,
            dict(self._positions),
        )


def _role(topics: Any, topic: str) -> str:
    for role in ("events", "predictions", "labels"):
        if getattr(topics, role) == topic:
            return role
    return "other"


def _fenced(exc: KafkaException) -> bool:
    err = exc.args[0]
    return bool(err.fatal()) or "fenced" in str(err).lower()


def _now_ms() -> int:
    return int(time.time() * 1000)
