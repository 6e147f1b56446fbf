"""The drift monitor's logic, without Kafka: detectors per live version, alerts, retraining requests.

Batches go in (input features, prediction scores, joined label errors); records come out
(``DriftAlert`` and ``RetrainRequest`` as dicts ready for Avro). One model, one live version at a time:
when a new version goes live its detectors start afresh (as in the drift benchmark's episodes) and the
old version's open alerts are resolved.

Detectors and what they raise:

=========================  ===========  ===========================================  ========
detector                   kind         input                                        alerts
=========================  ===========  ===========================================  ========
``BernoulliGLR``           CONCEPT      0/1 errors of labelled predictions           CRITICAL
``ExpectedErrorDrift``     PREDICTION   scores, mapped to the reference error rate   WARNING
``FeatureImpactDrift``     DATA         features, mapped to the reference error rate WARNING
``FeatureDrift``           DATA         features against reference bins (G-tests)    gauges
``ScoreDrift``             PREDICTION   scores against reference bins (G-tests)      gauges
``ValueDrift``             PREDICTION   a regression's values against reference bins gauges
``ErrorRise``              CONCEPT      absolute errors of a regression model        CRITICAL
``CategoryDrift``          DATA         categorical codes against reference shares   WARNING
``NullRate``               DATA_QUALITY which values were null, per field            WARNING
``OutOfRange``             DATA_QUALITY values outside the reference range           WARNING
``UnseenCategory``         DATA_QUALITY categories outside the vocabulary            WARNING
=========================  ===========  ===========================================  ========

The last four need a model with a spec (:mod:`driftline.monitoring.fields`) and alert per field: each
field has its own alert (``field`` names it, ``issue`` says what went wrong), and a data-quality alert
is ``RESOLVED`` as soon as its field's rate is back near its reference level.

The distribution tests see every shift, harmless ones too, so they feed gauges and not alerts; the
alerting label-free detectors alarm only when the shift moves events to where the model was worse.

Repeated evidence does not flood users: the first alarm of a kind opens an alert (``OPEN``), later
alarms of that kind send at most one ``UPDATE`` per ``update_interval_ms``, and a new live version
closes it (``RESOLVED``). A retraining request goes out when an alert of a kind in ``retrain_on``
opens, and again on a later alarm of the same alert once ``cooldown_ms`` has passed (the drift went
on, or the first retraining did not produce a better version); its id is derived from the alert and
its alarm count, so a replay produces the same id. With a continuous policy, requests also go out
every so many labelled events or seconds, on a sliding window of the latest data; when and on which
windows is :mod:`driftline.monitoring.retraining`'s part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.models.spec import ModelSpec
from driftline.monitoring.categorical import CATEGORY_SHIFT, CategoryDrift
from driftline.monitoring.detectors import (
    BernoulliGLR,
    ExpectedErrorDrift,
    FeatureDrift,
    FeatureImpactDrift,
    ScoreDrift,
    ValueDrift,
)
from driftline.monitoring.fields import FieldChecks
from driftline.monitoring.profile import Profile, ReferenceProfile, RegressionProfile
from driftline.monitoring.quality import NULLS, OUT_OF_RANGE, FieldRates
from driftline.monitoring.regression import ErrorRise
from driftline.monitoring.retraining import RequestPlanner, RetrainPolicy
from driftline.monitoring.state import detector_state, load_detector_state, runtime_copy, runtime_fields

Positions = dict[str, dict[int, tuple[int, int]]]
"""topic -> partition -> (offset, event time ms) of a position in the input."""


@dataclass(frozen=True)
class MonitorPolicy:
    """When the monitor speaks up."""

    update_interval_ms: int = 30_000
    retrain: RetrainPolicy = field(default_factory=RetrainPolicy)


@dataclass
class _Alert:
    alert_id: str
    kind: str
    detector: str
    opened_ms: int
    last_sent_ms: int
    alarms: int = 1
    field: str = ""
    """The input field of a per-field alert ("" for the others)."""
    issue: str = ""
    """What went wrong with that field."""

    @property
    def key(self) -> str:
        """One open alert per kind, and per field for the per-field ones."""
        return f"{self.kind}:{self.field}" if self.field else self.kind


@dataclass
class _Channel:
    """One detector, what it is called in alerts and metrics, and how loudly it speaks."""

    name: str
    kind: str
    detector: Any
    severity: str | None
    """None: gauges only."""
    features: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    """The detector's runtime state fields (found on first use)."""


_RATE_DETECTORS = {NULLS: "NullRate", OUT_OF_RANGE: "OutOfRange"}


class VersionDetectors:
    """The detectors of one live version (``spec``: its contract, when it has one). A classifier's
    :class:`ReferenceProfile` brings the label-free detectors; a :class:`RegressionProfile` brings
    ``ErrorRise`` its reference MAE (without one it estimates it from the version's first errors)."""

    def __init__(self, profile: Profile | None, spec: ModelSpec | None = None) -> None:
        self.profile = profile
        regression = spec is not None and spec.is_regression
        mae = profile.mae if isinstance(profile, RegressionProfile) and profile.mae > 0 else None
        self.concept = (
            _Channel("ErrorRise", "CONCEPT", ErrorRise(reference_mae=mae), "CRITICAL")
            if regression
            else _Channel("BernoulliGLR", "CONCEPT", BernoulliGLR(), "CRITICAL")
        )
        self.label_free: list[_Channel] = []
        self.fields = FieldChecks.build(spec, profile) if spec is not None else None
        self.rates: list[tuple[str, _Channel]] = []
        """(issue, channel) of each data-quality detector, in the order of ``fields.rates``."""
        self.categories: _Channel | None = None
        if self.fields is not None:
            self.rates = [
                (issue, _Channel(_RATE_DETECTORS.get(issue, "UnseenCategory"), "DATA_QUALITY", r, "WARNING"))
                for issue, r in self.fields.rates
            ]
            if self.fields.categories is not None:
                c = self.fields.categories
                self.categories = _Channel("CategoryDrift", "DATA", c, "WARNING", [*c.names])
        if isinstance(profile, ReferenceProfile):
            names = list(profile.feature_names)
            self.expected = _Channel(
                "ExpectedErrorDrift", "PREDICTION", ExpectedErrorDrift(profile), "WARNING"
            )
            self.impact = _Channel(
                "FeatureImpactDrift", "DATA", FeatureImpactDrift(profile), "WARNING", names
            )
            self.features = _Channel("FeatureDrift", "DATA", FeatureDrift(profile), None, names)
            self.scores = _Channel("ScoreDrift", "PREDICTION", ScoreDrift(profile), None)
            self.label_free = [self.expected, self.impact, self.features, self.scores]
        self.values: _Channel | None = None
        if isinstance(profile, RegressionProfile):
            self.values = _Channel("ValueDrift", "PREDICTION", ValueDrift(profile), None)
            self.label_free = [self.values]

    @property
    def channels(self) -> list[_Channel]:
        categories = [self.categories] if self.categories is not None else []
        return [self.concept, *self.label_free, *(c for _, c in self.rates), *categories]


class DriftMonitor:
    """Drift statistics, alerts and retraining requests for one model."""

    def __init__(self, model_name: str, policy: MonitorPolicy | None = None) -> None:
        self.model_name = model_name
        self.policy = policy or MonitorPolicy()
        self.version: str | None = None
        self.since_ms: int | None = None
        """Errors count for the live version only on events from this time on (the version's creation):
        replays of the data it was trained on would make its error look lower than it is."""
        self.detectors = VersionDetectors(None)
        self._alerts: dict[str, _Alert] = {}
        self._since: Positions = {}
        """Where the current version's evidence starts, per input topic partition."""
        self._latest: Positions = {}
        self._planner = RequestPlanner(self.policy.retrain)
        self._outbox: list[tuple[str, dict[str, Any]]] = []
        self.counts = {"inputs": 0, "predictions": 0, "errors": 0}

    # -- inputs ---------------------------------------------------------------------------------

    def set_version(
        self,
        version: str,
        profile: Profile | None,
        now_ms: int,
        since_ms: int | None = None,
        spec: ModelSpec | None = None,
    ) -> None:
        """A new live version: resolve the old version's alerts, start its detectors afresh."""
        if version == self.version:
            return
        for alert in self._alerts.values():
            self._emit_alert(alert, "RESOLVED", None, now_ms, f"v{version} went live")
        self._alerts.clear()
        self.version = version
        self.since_ms = since_ms
        self.detectors = VersionDetectors(profile, spec)
        self._since = {}
        self.counts = dict.fromkeys(self.counts, 0)
        self._planner.new_version(now_ms)

    def advance(self, starts: Positions, ends: Positions) -> None:
        """Record where a batch of input began and ended (the evidence windows run from the first
        start after a version went live to the latest end)."""
        for topic, parts in ends.items():
            self._latest.setdefault(topic, {}).update(parts)
        self._planner.observe(self._latest)
        for topic, parts in starts.items():
            since = self._since.setdefault(topic, {})
            for partition, position in parts.items():
                since.setdefault(partition, position)

    def observe_inputs(self, features: npt.NDArray[np.float32], now_ms: int) -> None:
        d = self.detectors
        if (
            not isinstance(d.profile, ReferenceProfile)
            or not len(features)
            or features.shape[1] != len(d.profile.feature_names)
        ):
            return
        self.counts["inputs"] += len(features)
        for channel in (d.impact, d.features):
            self._update(channel, features, now_ms)

    def observe_fields(
        self,
        numeric: npt.NDArray[np.float32],
        codes: npt.NDArray[np.int64],
        nulls: npt.NDArray[np.bool_] | None,
        now_ms: int,
    ) -> None:
        """A batch of rows of a model with a spec: raw numeric columns, categorical codes and which
        values were null (``(n, inputs)``, spec order; ``None``: none known)."""
        d = self.detectors
        n = len(numeric) if numeric.ndim == 2 and numeric.shape[1] else len(codes)
        if d.fields is None or not n:
            return
        for (issue, channel), flags in zip(d.rates, d.fields.flags(numeric, codes, nulls), strict=True):
            self._update_rates(channel, issue, flags, now_ms)
        if d.categories is not None:
            self._update(d.categories, codes, now_ms)

    def _update_rates(self, channel: _Channel, issue: str, flags: npt.NDArray[np.bool_], now_ms: int) -> None:
        """Open an alert for every field the batch raised; resolve those of the fields that cleared."""
        rates: FieldRates = channel.detector
        before = rates.raised
        rates.update_batch(flags)
        after, stats, recent = rates.raised, rates.channel_statistics, rates.rates
        for j in np.flatnonzero(after & ~before).tolist():
            name = rates.names[j]
            alert = _Alert("", "DATA_QUALITY", channel.name, now_ms, now_ms, field=name, issue=issue)
            alert.alert_id = self._alert_id(channel, name)
            self._alerts[alert.key] = alert
            summary = (
                f"data-quality on {self.model_name} v{self.version}: field {name!r} {issue} rate "
                f"{recent[j]:.1%} over the last {rates.events} events, its reference "
                f"{rates.reference[j]:.1%}"
            )
            self._emit_alert(alert, "OPEN", channel, now_ms, summary, float(stats[j]))
            self._maybe_request(alert, now_ms)
        for j in np.flatnonzero(before & ~after).tolist():
            cleared = self._alerts.pop(f"DATA_QUALITY:{rates.names[j]}", None)
            if cleared is not None:
                note = f"field {rates.names[j]!r} {issue} rate back to {recent[j]:.1%}"
                self._emit_alert(cleared, "RESOLVED", None, now_ms, note)

    def observe_predictions(self, scores: npt.NDArray[np.float32], versions: list[str], now_ms: int) -> None:
        d = self.detectors
        mine = _of_version(versions, self.version)
        if not isinstance(d.profile, ReferenceProfile) or not mine.any():
            return
        self.counts["predictions"] += int(mine.sum())
        for channel in (d.expected, d.scores):
            self._update(channel, scores[mine], now_ms)

    def observe_values(self, values: npt.NDArray[np.float64], versions: list[str], now_ms: int) -> None:
        """A regression model's predicted values, against its profile's (gauges only)."""
        channel = self.detectors.values
        mine = _of_version(versions, self.version) & np.isfinite(values)
        if channel is None or not mine.any():
            return
        self.counts["predictions"] += int(mine.sum())
        self._update(channel, values[mine], now_ms)

    def observe_errors(
        self,
        errors: npt.NDArray[np.bool_] | npt.NDArray[np.float64],
        versions: list[str],
        now_ms: int,
        event_times: npt.NDArray[np.int64] | None = None,
    ) -> None:
        mine = _of_version(versions, self.version)
        if self.since_ms is not None and event_times is not None:
            mine &= event_times >= self.since_ms
        if not mine.any():
            return
        self.counts["errors"] += int(mine.sum())
        self._update(self.detectors.concept, errors[mine].astype(np.float64), now_ms)
        reason = self._planner.labelled(int(mine.sum()), now_ms)
        if reason is not None:
            self._request(
                f"retrain-{self.model_name}-v{self.version}-scheduled-{self._planner.scheduled + 1}",
                None,
                reason,
                now_ms,
                back_share=1.0,
            )

    def observe_abs_errors(
        self,
        abs_errors: npt.NDArray[np.float64],
        versions: list[str],
        now_ms: int,
        event_times: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """A regression model's absolute errors, for its ``ErrorRise`` detector (a version without a
        regression spec has none: they are ignored)."""
        if isinstance(self.detectors.concept.detector, ErrorRise):
            self.observe_errors(abs_errors, versions, now_ms, event_times)

    # -- outputs --------------------------------------------------------------------------------

    def take_outputs(self) -> list[tuple[str, dict[str, Any]]]:
        """(``"alert"`` or ``"request"``, record) pairs produced since the last call."""
        out, self._outbox = self._outbox, []
        return out

    def open_alerts(self) -> list[str]:
        return list(self._alerts)

    def _update(self, channel: _Channel, values: npt.NDArray[Any], now_ms: int) -> None:
        statistic = self._alarm_statistic(channel, values)
        if statistic is None or channel.severity is None:
            return
        field = ""
        if isinstance(channel.detector, CategoryDrift):
            field = channel.detector.names[channel.detector.worst]
        key = f"{channel.kind}:{field}" if field else channel.kind
        alert = self._alerts.get(key)
        if alert is None:
            alert = _Alert(
                self._alert_id(channel, field),
                channel.kind,
                channel.name,
                now_ms,
                now_ms,
                1,
                field,
                CATEGORY_SHIFT if field else "",
            )
            self._alerts[key] = alert
            self._emit_alert(alert, "OPEN", channel, now_ms, None, statistic)
            self._maybe_request(alert, now_ms)
            return
        alert.alarms += 1
        if now_ms - alert.last_sent_ms >= self.policy.update_interval_ms:
            alert.last_sent_ms = now_ms
            self._emit_alert(alert, "UPDATE", channel, now_ms, None, statistic)
        self._maybe_request(alert, now_ms)  # the drift goes on (or got worse) after the cooldown

    @staticmethod
    def _alarm_statistic(channel: _Channel, values: npt.NDArray[Any]) -> float | None:
        """Feed ``values``; on an alarm, the statistic at the alarm (the detector re-arms and goes on
        with the rest of the batch, so it is replayed up to the alarm to read it)."""
        detector = channel.detector
        if not channel.fields:
            channel.fields = runtime_fields(detector)
        saved = runtime_copy(detector, channel.fields) if channel.severity else None
        first = detector.update_batch(values)
        if first is None:
            return None
        if saved is None or first == len(values) - 1:
            return float(detector.statistic)
        load_detector_state(detector, saved)
        detector.update_batch(values[: first + 1])
        statistic = float(detector.statistic)
        detector.update_batch(values[first + 1 :])
        return statistic

    def _alert_id(self, channel: _Channel, field: str = "") -> str:
        start = ",".join(
            f"{t}/{p}@{o}" for t, parts in sorted(self._since.items()) for p, (o, _) in sorted(parts.items())
        )
        kind = f"{channel.kind}|{field}" if field else channel.kind
        digest = hashlib.sha256(f"{self.model_name}|{self.version}|{kind}|{start}".encode())
        name = channel.kind.lower().replace("_", "-") + (f"-{field}" if field else "")
        return f"{self.model_name}-v{self.version}-{name}-{digest.hexdigest()[:12]}"

    def _emit_alert(
        self,
        alert: _Alert,
        status: str,
        channel: _Channel | None,
        now_ms: int,
        note: str | None,
        statistic: float = 0.0,
    ) -> None:
        detector = channel.detector if channel is not None else None
        threshold = float(detector.threshold) if detector is not None else 0.0
        severity = channel.severity if channel is not None and channel.severity else "INFO"
        summary = note or (
            f"{alert.kind.lower()} drift on {self.model_name} v{self.version}: {alert.detector} statistic "
            f"{statistic:.2f} above its threshold {threshold:.2f}"
            f"{'' if alert.alarms == 1 else f' ({alert.alarms} alarms since it opened)'}"
        )
        self._outbox.append(
            (
                "alert",
                {
                    "alert_id": alert.alert_id,
                    "status": status,
                    "time": now_ms,
                    "model_name": self.model_name,
                    "model_version": self.version or "",
                    "kind": alert.kind,
                    "detector": alert.detector,
                    "statistic": statistic,
                    "threshold": threshold,
                    "features": [alert.field] if alert.field else self._features_involved(channel),
                    "field": alert.field or None,
                    "issue": alert.issue or None,
                    "window": self._window(),
                    "severity": severity,
                    "summary": summary,
                },
            )
        )

    def _features_involved(self, channel: _Channel | None) -> list[str]:
        if channel is None or not channel.features:
            return []
        stats = getattr(channel.detector, "channel_statistics", None)
        if stats is None:
            return list(channel.features)
        values = list(stats)[: len(channel.features)]
        ranked = sorted(zip(values, channel.features, strict=True), reverse=True)
        return [name for value, name in ranked if value > 0] or list(channel.features)

    def _window(self) -> list[dict[str, Any]]:
        return [
            {
                "topic": topic,
                "partition": partition,
                "start_offset": start,
                "end_offset": self._latest.get(topic, {}).get(partition, (start, start_time))[0],
                "start_time": start_time,
                "end_time": self._latest.get(topic, {}).get(partition, (start, start_time))[1],
            }
            for topic, parts in sorted(self._since.items())
            for partition, (start, start_time) in sorted(parts.items())
        ]

    def _maybe_request(self, alert: _Alert, now_ms: int) -> None:
        if not self._planner.drift_due(alert.kind, now_ms):
            return
        self._request(
            f"retrain-{alert.alert_id}" + ("" if alert.alarms == 1 else f"-{alert.alarms}"),
            alert.alert_id,
            f"{alert.kind.lower()} drift detected by {alert.detector}",
            now_ms,
            back_share=self.policy.retrain.lookback,
        )

    def _request(
        self, request_id: str, alert_id: str | None, reason: str, now_ms: int, back_share: float
    ) -> None:
        window, slow = self._planner.window(self._latest, back_share)
        self._planner.requested(now_ms, scheduled=alert_id is None)
        if slow is not None:
            wanted, rate = slow
            reason += (
                f"; at the stream's recent {rate:.3g} records/s its {wanted:,} records after now take "
                f"~{wanted / max(rate, 1e-9):.0f} s, over --retrain-wait-s "
                f"{self.policy.retrain.wait_ms / 1000:g} s: the trainer trains on what came by its "
                "--data-timeout-s (a smaller --retrain-events, or --retrain-lookback, fits this stream)"
            )
        self._outbox.append(
            (
                "request",
                {
                    "request_id": request_id,
                    "time": now_ms,
                    "model_name": self.model_name,
                    "model_version": self.version or "",
                    "alert_id": alert_id or "",
                    "reason": reason,
                    "training_data": window,
                },
            )
        )

    # -- checkpoints ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to resume (the profile comes back from the registry)."""
        return {
            "version": self.version,
            "since_ms": self.since_ms,
            "alerts": [vars(a) for a in self._alerts.values()],
            "since": _positions_out(self._since),
            "latest": _positions_out(self._latest),
            "retraining": self._planner.state(),
            "counts": self.counts,
            "detectors": {c.name: detector_state(c.detector) for c in self.detectors.channels},
        }

    def restore(
        self, state: Mapping[str, Any], profile: Profile | None, spec: ModelSpec | None = None
    ) -> None:
        self.version = state["version"]
        self.since_ms = state.get("since_ms")
        self.detectors = VersionDetectors(profile, spec)
        for channel in self.detectors.channels:
            saved = state["detectors"].get(channel.name)
            if saved is not None:
                load_detector_state(channel.detector, saved)
        alerts = [_Alert(**a) for a in state["alerts"]]
        self._alerts = {a.key: a for a in alerts}
        self._since = _positions_in(state["since"])
        self._latest = _positions_in(state["latest"])
        self._planner.restore(state.get("retraining", {"last_drift_ms": state.get("last_request_ms")}))
        self.counts = dict(state["counts"])

    def feature_gauges(self) -> list[tuple[str, float]]:
        """(feature, statistic) of the feature-impact detector's per-feature channels."""
        d = self.detectors
        if not isinstance(d.profile, ReferenceProfile):
            return []
        return list(zip(d.impact.features, map(float, d.impact.detector.channel_statistics), strict=False))

    def field_gauges(self) -> list[tuple[str, str, float]]:
        """(issue, field, recent rate) per input field of a model with a spec."""
        fields = self.detectors.fields
        return fields.gauges() if fields is not None else []

    def gauges(self) -> list[tuple[str, str, float, float]]:
        """(kind, detector, statistic, threshold) of every detector, for Prometheus."""
        return [
            (c.kind, c.name, float(c.detector.statistic), float(c.detector.threshold))
            for c in self.detectors.channels
        ]


def _of_version(versions: list[str], version: str | None) -> npt.NDArray[np.bool_]:
    return np.fromiter((v == version for v in versions), dtype=np.bool_, count=len(versions))


def _positions_out(positions: Positions) -> dict[str, dict[str, list[int]]]:
    return {t: {str(p): list(v) for p, v in parts.items()} for t, parts in positions.items()}


def _positions_in(raw: Mapping[str, Mapping[str, list[int]]]) -> Positions:
    return {t: {int(p): (int(v[0]), int(v[1])) for p, v in parts.items()} for t, parts in raw.items()}
