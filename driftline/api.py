"""Driftline from a notebook: export your own module, publish it, send events, read predictions.

A trained ``torch.nn.Module`` and a :class:`~driftline.models.spec.ModelSpec` that names the event
fields it reads become an artifact with :func:`export`; :func:`publish` signs it onto the registry
(where every running ``driftline serve`` of that model picks it up without a restart); a
:class:`Client` sends events (dicts or a data frame, in the model's contract) and labels, and reads
predictions and drift alerts back.

Everything here runs where the user is (a notebook, a script); serving runs elsewhere and loads only
the exported graph, never this code.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.config import Settings
from driftline.errors import ConfigError, ModelError
from driftline.models.spec import Classification, ModelSpec
from driftline.schemas.wire import AvroDecoder, AvroEncoder, builtin_store
from driftline.streams.records import contract_schema

log = logging.getLogger(__name__)

Records = Sequence[Mapping[str, Any]]


def records_of(data: Any) -> list[dict[str, Any]]:
    """Rows as dicts from a list of dicts, a pandas DataFrame or a pyarrow Table."""
    if hasattr(data, "to_pylist"):  # pyarrow.Table / RecordBatch
        rows: list[dict[str, Any]] = data.to_pylist()
        return rows
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame
        frame_rows: list[dict[str, Any]] = data.to_dict("records")
        return frame_rows
    return [dict(r) for r in data]


def _model_inputs(spec: ModelSpec, sample: Any) -> dict[str, npt.NDArray[Any]]:
    """The sample as the model's tensors: given so already, or records encoded by the spec."""
    if isinstance(sample, Mapping) and set(sample) == set(spec.tensor_names):
        return {k: np.asarray(v) for k, v in sample.items()}
    rows = records_of(sample)
    encoded = spec.encode(rows)
    if encoded.rejected:
        i, (reason, detail) = next(iter(encoded.rejected.items()))
        raise ModelError(f"sample row {i} does not fit the spec: {reason}: {detail}")
    return spec.model_inputs(encoded.numeric, encoded.codes)


def export(
    module: Any,
    spec: ModelSpec,
    sample: Any,
    path: str | Path,
    *,
    name: str,
    version: str,
    labels: Sequence[Any] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Export ``module`` to an artifact folder at ``path``, checked as a processor will check it.

    ``sample``: a few hundred representative rows, as records in the spec's fields (list of dicts or a
    data frame) or as the model's tensors (``{"numeric": ..., "categorical": ...}``). It becomes the
    parity sample (ONNX Runtime must reproduce the module on it) and, with at least 32 rows, the
    reference profile the drift monitor compares live traffic with: a classifier's (``labels``, class
    names or indices, make its error estimates exact), or a regression model's when ``labels`` gives
    the rows' true targets (its error on them is the reference the monitor's error-rise test uses).
    """
    from driftline.models.control import PROFILE_FILE
    from driftline.models.exported import export as export_graph

    directory = Path(path)
    inputs = _model_inputs(spec, sample)
    rows = len(next(iter(inputs.values())))
    if labels is not None and len(labels) != rows:
        raise ModelError(f"{len(labels)} labels for {rows} sample rows: give one per row")
    export_graph(module, spec, inputs, directory, name=name, version=version, metrics=metrics, quiet=True)
    why_not = _why_no_profile(spec, rows, labels)
    if why_not:
        log.warning("%s v%s has no reference profile (%s): %s", name, version, why_not, _LABELS_ONLY)
        return directory
    from driftline.models.exported import OnnxPredictor
    from driftline.monitoring.build_profile import reference_profile

    numeric = spec.numeric_fields
    standardised = inputs.get("numeric", np.zeros((rows, 0), np.float32))
    raw = standardised * np.asarray([f.scale for f in numeric]) + np.asarray([f.mean for f in numeric])
    codes = inputs.get("categorical", np.zeros((rows, 0), np.int64))
    predictor = OnnxPredictor.from_artifact(directory, device="cpu")
    outputs = predictor.predict_batch(raw.astype(np.float32), codes)
    task = spec.task
    targets = None
    if labels is not None:
        targets = (
            np.array([task.classes.index(v) if isinstance(v, str) else int(v) for v in labels])
            if isinstance(task, Classification)
            else np.asarray(labels, dtype=np.float64)
        )
    profile = reference_profile(spec, raw, codes, outputs, targets, _sample_nulls(spec, sample, rows))
    (directory / PROFILE_FILE).write_text(profile.to_json())
    return directory


_LABELS_ONLY = "the drift monitor will alert on labels only"


def _why_no_profile(spec: ModelSpec, rows: int, labels: Sequence[Any] | None) -> str:
    """Why ``export`` writes no reference profile ("": it writes one)."""
    if rows < 32:
        return f"{rows} sample rows, 32 needed"
    if spec.is_regression and labels is None:
        return "a regression model's profile needs labels=, the sample rows' true targets"
    if not spec.is_regression and not spec.numeric_fields:
        return "a classifier's profile needs numeric inputs"
    return ""


def _sample_nulls(spec: ModelSpec, sample: Any, rows: int) -> npt.NDArray[np.bool_] | None:
    """Which values of the sample's records were null (None when it came as tensors)."""
    if isinstance(sample, Mapping) and set(sample) == set(spec.tensor_names):
        return None
    nulls = spec.encode(records_of(sample)).nulls
    return None if nulls is None or len(nulls) != rows else nulls


def _settings(settings: Settings | None, bootstrap_servers: str | None) -> Settings:
    base = settings or Settings()
    if bootstrap_servers:
        return base.model_copy(update={"bootstrap_servers": bootstrap_servers})
    if base.bootstrap_servers:
        return base
    from driftline.broker import LocalBroker

    info = LocalBroker(base.home, base.cache_dir).status()
    if info is None:
        raise ConfigError(
            "No Kafka cluster: start the local one with `driftline broker start`, or pass "
            "bootstrap_servers= (or set DRIFTLINE_BOOTSTRAP_SERVERS)."
        )
    return base.model_copy(update={"bootstrap_servers": info.bootstrap_servers})


def register_contract(settings: Settings, model_name: str, spec: ModelSpec) -> int | None:
    """With a Schema Registry configured, register the model's contract schema under the events
    topic's subject (``<events topic>-value``), so producers using the registry find it; the registry
    checks it against the versions before (its compatibility rule) and refuses an incompatible one.
    Returns its schema id (None without a registry)."""
    from driftline.schemas.wire import RegistryResolver

    registry = RegistryResolver.from_config(settings.registry_config())
    if registry is None:
        return None
    try:
        return registry.register(f"{settings.topics.events}-value", contract_schema(model_name, spec))
    except Exception as exc:  # the registry client raises its own error types (409: incompatible)
        raise ConfigError(
            f"the Schema Registry refused {model_name}'s contract under {settings.topics.events}-value: {exc}"
        ) from exc


def publish(
    path: str | Path,
    *,
    live: bool = False,
    shadow: bool = False,
    settings: Settings | None = None,
    bootstrap_servers: str | None = None,
) -> dict[str, Any]:
    """Sign and publish the artifact at ``path`` (as a candidate, or ``live`` / ``shadow``); returns
    its registry record. Needs the trainers' signing key (``driftline models keygen``)."""
    from driftline.models.artifact import load_config
    from driftline.models.control import load_private_key, publish_as

    resolved = _settings(settings, bootstrap_servers)
    config = load_config(Path(path))
    if config.spec is not None:
        register_contract(resolved, config.name, config.spec)
    status = "LIVE" if live else "SHADOW" if shadow else "CANDIDATE"
    return publish_as(resolved, Path(path), load_private_key(resolved), status)


class Client:
    """Events in a model's contract to Kafka, and its predictions and drift alerts back.

    ``model`` is the model's name on the registry (its live version's contract is used) or an artifact
    folder. Events are written in the contract's schema (:func:`contract_schema`), keyed by event id.
    """

    def __init__(
        self, model: str | Path, *, settings: Settings | None = None, bootstrap_servers: str | None = None
    ) -> None:
        from driftline.streams import kafka

        self.settings = _settings(settings, bootstrap_servers)
        self.model_name, self.spec = self._contract(model)
        self._schema = contract_schema(self.model_name, self.spec)
        self._events = AvroEncoder.single_object(self._schema)
        store = builtin_store()
        store.add(self._schema)
        self._labels = AvroEncoder.single_object(store.latest("io.driftline.Label"))
        self._decoder = AvroDecoder(store)
        self._producer = kafka.producer(self.settings)
        self._group = f"driftline-client-{uuid.uuid4().hex[:8]}"

    def _contract(self, model: str | Path) -> tuple[str, ModelSpec]:
        path = Path(model)
        if path.is_dir():
            from driftline.models.artifact import load_config

            config = load_config(path)
            return config.name, config.input_spec
        from driftline.models.control import load_trusted_keys
        from driftline.models.follower import RegistryFollower

        follower = RegistryFollower.connect(
            self.settings, load_trusted_keys(self.settings), model_name=str(model)
        )
        try:
            follower.catch_up(timeout=30.0)
            record = follower.ledger.live(str(model))
        finally:
            follower.close()
        if record is None:
            raise ConfigError(f"{model} has no live version on the registry: publish one first")
        if record.get("spec"):
            return str(model), ModelSpec.model_validate_json(record["spec"])
        profile_classes = ["0", "1"]  # built-in models: numeric features, classes by index
        return str(model), ModelSpec.numeric(record["features"], profile_classes)

    @property
    def schema(self) -> dict[str, Any]:
        """The Avro schema events are written in (give it to other producers)."""
        return dict(self._schema.raw)

    def send(self, data: Any, *, flush: bool = True) -> list[str]:
        """Produce rows (dicts, a DataFrame or a pyarrow Table) as events; returns their event ids.
        Rows without an event id get a random one; rows without an event time get now."""
        from driftline.streams import kafka

        id_field, time_field = self.spec.event_id, self.spec.event_time.field
        ids: list[str] = []
        now = int(time.time() * 1000)
        for row in records_of(data):
            record = {f["name"]: row.get(f["name"]) for f in self._schema.raw["fields"]}
            if id_field and record.get(id_field) is None:
                record[id_field] = uuid.uuid4().hex
            if time_field and record.get(time_field) is None:
                record[time_field] = _now_in(self.spec.event_time.unit, now)
            event_id = str(record[id_field]) if id_field else uuid.uuid4().hex
            kafka.produce(
                self._producer, self.settings.topics.events, self._events.encode(record), event_id.encode()
            )
            ids.append(event_id)
        if flush:
            self._producer.flush(30.0)
        return ids

    def send_labels(self, labels: Iterable[tuple[str, Any]], *, event_time_ms: int | None = None) -> int:
        """Produce ``(event_id, truth)`` pairs: a class name or index (classification), or the target's
        value (regression)."""
        from driftline.streams import kafka

        task = self.spec.task
        n = 0
        for event_id, label in labels:
            record: dict[str, Any] = {
                "event_id": event_id,
                "event_time": event_time_ms or int(time.time() * 1000),
            }
            if not isinstance(task, Classification):
                record["target"] = float(label)
            elif isinstance(label, str):
                if label not in task.classes:
                    raise ModelError(f"{label!r} is not one of the model's classes {list(task.classes)}")
                record["label"] = task.classes.index(label)
            else:
                record["label"] = int(label)
            kafka.produce(
                self._producer, self.settings.topics.labels, self._labels.encode(record), event_id.encode()
            )
            n += 1
        self._producer.flush(30.0)
        return n

    def predictions(self, expected: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Predictions (decoded) from the start of the predictions topic, up to ``expected`` of them."""
        return self._read(self.settings.topics.predictions, expected, timeout)

    def alerts(self, expected: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Drift alerts (decoded) from the start of the alerts topic."""
        return self._read(self.settings.topics.drift_alerts, expected, timeout)

    def _read(self, topic: str, expected: int, timeout: float) -> list[dict[str, Any]]:
        from driftline.streams import kafka

        return [
            self._decoder.decode(m.value()) for m in kafka.read_topic(self.settings, topic, expected, timeout)
        ]

    def close(self) -> None:
        self._producer.flush(30.0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _now_in(unit: str, now_ms: int) -> Any:
    if unit == "iso8601":
        import datetime as dt

        return dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).isoformat()
    return {
        "millis": now_ms,
        "micros": now_ms * 1000,
        "nanos": now_ms * 1_000_000,
        "seconds": now_ms // 1000,
    }[unit]
