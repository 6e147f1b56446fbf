"""Every service's Prometheus metrics (serve, monitor, train), recorded per batch.

:class:`BatchHistogram` is a histogram that takes a whole array of observations at once
(``np.searchsorted`` + ``np.bincount``) instead of one Python call per event, exposed through
prometheus-client's public collector API.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> reg = CollectorRegistry()
>>> h = BatchHistogram("lat_seconds", "latency", buckets=(0.1, 1.0), registry=reg)
>>> h.observe_batch(np.array([0.05, 0.5, 5.0]))
>>> b'lat_seconds_bucket{le="1.0"} 2.0' in generate_latest(reg)
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from driftline.health import Health, serve_endpoints

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SWAP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


class BatchHistogram(Collector):
    """A label-less histogram fed with arrays."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name, self._doc = name, documentation
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_batch(self, values: npt.NDArray[np.floating]) -> None:
        if len(values) == 0:
            return
        index = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(index, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        bounds = [str(float(b)) for b in self._bounds] + ["+Inf"]
        family = HistogramMetricFamily(self._name, self._doc)
        family.add_metric([], list(zip(bounds, cumulative, strict=True)), total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self._name, self._doc)


class ServiceMetrics:
    """One registry per service instance, served on ``/metrics``; ``model`` (when a service has one)
    names the version in use."""

    model: Gauge

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()

    def set_model(self, name: str, version: str) -> None:
        self.model.clear()
        self.model.labels(name, version).set(1)

    def serve_http(self, port: int, host: str = "127.0.0.1", health: Health | None = None) -> None:
        """Expose ``/metrics`` (and ``/livez``, ``/readyz`` with ``health``) on ``host:port`` (port 0:
        off)."""
        if port:
            serve_endpoints(port, host, self.registry, health)


class ServeMetrics(ServiceMetrics):
    """Everything ``driftline serve`` reports; one registry per processor instance."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.events = Counter("driftline_events_consumed", "Events consumed.", registry=r)
        self.predictions = Counter(
            "driftline_predictions_produced", "Predictions produced and acknowledged.", registry=r
        )
        self.dead_letters = Counter(
            "driftline_dead_letters", "Events sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.dead_letters_reduced = Counter(
            "driftline_dead_letters_reduced",
            "Dead letters written in reduced form (position, sizes, a prefix), by why.",
            ["why"],
            registry=r,
        )
        self.batch_size = Histogram(
            "driftline_batch_size", "Events per micro-batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.inference_seconds = Histogram(
            "driftline_inference_seconds", "Model time per batch.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.end_to_end_seconds = BatchHistogram(
            "driftline_end_to_end_latency_seconds",
            "Event time to prediction acknowledged by the broker, per event.",
            LATENCY_BUCKETS,
            r,
        )
        self.lag = Gauge(
            "driftline_consumer_lag", "Events not yet consumed.", ["topic", "partition"], registry=r
        )
        self.model = Gauge(
            "driftline_model_info", "The model version in use (value 1).", ["model", "version"], registry=r
        )

        self.swaps = Counter(
            "driftline_model_swaps", "Model versions swapped in between batches.", ["role"], registry=r
        )
        self.refused = Counter(
            "driftline_model_versions_refused",
            "Model versions refused (signature, hash, artifact), by reason.",
            ["reason"],
            registry=r,
        )
        self.swap_seconds = Histogram(
            "driftline_swap_seconds",
            "From the registry record that made a version live to its first acknowledged prediction.",
            buckets=SWAP_BUCKETS,
            registry=r,
        )
        self.shadow_predictions = Counter(
            "driftline_shadow_predictions_produced", "Predictions of the shadow version.", registry=r
        )


class MonitorMetrics(ServiceMetrics):
    """Everything ``driftline monitor`` reports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.consumed = Counter("driftline_monitor_records", "Records read, by input.", ["input"], registry=r)
        self.dead_letters = Counter(
            "driftline_monitor_dead_letters", "Records the monitor dead-lettered.", ["reason"], registry=r
        )
        self.dead_letters_reduced = Counter(
            "driftline_monitor_dead_letters_reduced",
            "Dead letters the monitor wrote in reduced form (position, sizes, a prefix), by why.",
            ["why"],
            registry=r,
        )
        self.joined = Counter(
            "driftline_monitor_labels_joined", "Labels joined with their prediction.", registry=r
        )
        self.join_expired = Counter(
            "driftline_monitor_join_expired", "Predictions or labels expired unmatched.", registry=r
        )
        self.label_mae = Gauge(
            "driftline_monitor_label_mae",
            "A regression model's mean absolute error over its last 1,000 labelled predictions.",
            registry=r,
        )
        self.predicted_mean = Gauge(
            "driftline_monitor_predicted_mean",
            "A regression model's mean predicted value over its last 1,000 predictions.",
            registry=r,
        )
        self.field_null_rate = Gauge(
            "driftline_field_null_rate",
            "Per input field: the share of the last 1,000 events whose value was null (before imputation).",
            ["field"],
            registry=r,
        )
        self.field_out_of_range_rate = Gauge(
            "driftline_field_out_of_range_rate",
            "Per numeric field: the share of the last 1,000 events outside the reference profile's range.",
            ["field"],
            registry=r,
        )
        self.field_unseen_rate = Gauge(
            "driftline_field_unseen_rate",
            "Per categorical field: the share of the last 1,000 events whose category is not in the "
            "model's vocabulary (nulls not counted).",
            ["field"],
            registry=r,
        )
        self.join_pending = Gauge(
            "driftline_monitor_join_pending", "Predictions and labels waiting for their partner.", registry=r
        )
        self.statistic = Gauge(
            "driftline_drift_statistic",
            "Each detector's current statistic.",
            ["kind", "detector"],
            registry=r,
        )
        self.threshold = Gauge(
            "driftline_drift_threshold",
            "The statistic above which a detector alarms.",
            ["kind", "detector"],
            registry=r,
        )
        self.feature_statistic = Gauge(
            "driftline_feature_drift_statistic",
            "Per feature: the feature-impact detector's CUSUM (estimated error rise from that feature).",
            ["feature"],
            registry=r,
        )
        self.alerts = Counter(
            "driftline_drift_alerts", "Alert records published.", ["kind", "status"], registry=r
        )
        self.retrain_requests = Counter(
            "driftline_retrain_requests", "Retraining requests published.", registry=r
        )
        self.refused = Counter(
            "driftline_monitor_versions_refused",
            "Registry records refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "driftline_monitor_checkpoint_seconds",
            "Time per checkpoint transaction.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model = Gauge(
            "driftline_monitor_model_info",
            "The live version being monitored (value 1).",
            ["model", "version"],
            registry=r,
        )


class TrainMetrics(ServiceMetrics):
    """Everything ``driftline train`` reports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.requests = Counter(
            "driftline_train_requests",
            "Retraining requests handled, by outcome (promoted, not-promoted, duplicate, failed).",
            ["outcome"],
            registry=r,
        )
        self.seconds = Histogram(
            "driftline_train_seconds",
            "Time to answer a request: data, training, evaluation, publishing.",
            buckets=(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
            registry=r,
        )
        self.accuracy = Gauge(
            "driftline_train_heldout_accuracy",
            "Held-out accuracy of the latest candidate and of the live version it was judged against.",
            ["model"],
            registry=r,
        )
