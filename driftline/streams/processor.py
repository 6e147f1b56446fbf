"""The processor's pure core: one batch of raw events in, predictions and dead letters out.

No Kafka here: the input is anything shaped like ``confluent_kafka.Message`` and the output is plain
records for the I/O shell (:mod:`driftline.streams.serve`) to produce. Every input event ends up in
exactly one of the two outputs.

Work is per batch. Driftline's own ``InputEvent`` in single-object framing (the common case) is read
for the whole batch at once by :func:`~driftline.schemas.columnar.decode_input_events`; every other
event (user record schemas, Confluent framing, anything malformed) goes through fastavro one by one,
which also names what is wrong with a bad event. Predictions are written for the whole batch at once
by :func:`~driftline.schemas.columnar.encode_predictions`.

>>> from driftline.testing import FakeMessage
>>> from driftline.schemas import AvroDecoder, AvroEncoder, builtin_store
>>> from driftline.models import ModelConfig, TorchPredictor, build_module
>>> store = builtin_store()
>>> cfg = ModelConfig(name="m", version="1", architecture="logistic", features=["a", "b"], classes=["n", "y"])
>>> core = BatchProcessor(AvroDecoder(store), TorchPredictor(cfg, build_module(cfg), "cpu"),
...                       AvroEncoder.single_object(store.latest("io.driftline.Prediction")))
>>> good = AvroEncoder.single_object(store.latest("io.driftline.InputEvent")).encode(
...     {"event_id": "e1", "event_time": 0, "features": [1.0, 2.0], "source": None})
>>> result = core.process([FakeMessage(good), FakeMessage(b"junk", _offset=1)], arrivals=[0.0, 0.0])
>>> len(result.values), [(d.message.offset(), d.reason) for d in result.dead_letters]
(1, [(1, 'undecodable')])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from driftline.errors import DecodeError, SchemaError
from driftline.models.runtime import Predictor
from driftline.schemas.columnar import INPUT_EVENT_WRITERS, decode_input_events, encode_predictions
from driftline.schemas.wire import AvroDecoder, AvroEncoder, load_schema
from driftline.streams.features import FeatureExtractor

Headers = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]
"""Kafka headers as confluent-kafka accepts and returns them."""


def header_list(headers: Headers | None) -> list[tuple[str, str | bytes | None]]:
    """Headers as a list of pairs, whichever form they came in."""
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


class SourceMessage(Protocol):
    """The parts of a consumed Kafka message the processor reads."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> Headers | None: ...


@dataclass(frozen=True)
class DeadLetter:
    """An event that could not be handled, with why."""

    message: SourceMessage
    reason: str
    detail: str


@dataclass
class BatchResult:
    """Predictions (as ``keys[i]``, ``values[i]`` pairs, in input order) and dead letters of one batch."""

    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    event_times_ms: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """Event time of each prediction, for end-to-end latency metrics."""
    inference_seconds: float = 0.0
    shadow_values: list[bytes] = field(default_factory=list)
    """The shadow version's predictions of the same events (same keys), when one is set."""


@dataclass
class _Rows:
    """Decoded, valid rows of a batch: where they were and what the model needs of them."""

    rows: npt.NDArray[np.int64]
    event_ids: list[bytes]
    event_times: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]


def fallback_event_id(message: SourceMessage) -> str:
    """An id for events whose schema has none: their position in Kafka."""
    return f"{message.topic()}/{message.partition()}/{message.offset()}"


class BatchProcessor:
    """Decode, validate, infer and encode one batch."""

    def __init__(
        self,
        decoder: AvroDecoder,
        predictor: Predictor,
        encoder: AvroEncoder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if encoder.schema.fingerprint != load_schema("prediction.avsc").fingerprint:
            raise SchemaError("Predictions are written with Driftline's io.driftline.Prediction schema.")
        self._decoder = decoder
        self._header = encoder.header
        self._clock = clock
        self.predictor = predictor
        self.shadow: Predictor | None = None
        """A second model that scores the same rows; its predictions go to the shadow topic."""

    @property
    def predictor(self) -> Predictor:
        return self._predictor

    @predictor.setter
    def predictor(self, predictor: Predictor) -> None:
        """Swap the model; takes effect from the next batch."""
        self._predictor = predictor
        self._features = FeatureExtractor(predictor.config.features)

    def process(self, messages: Sequence[SourceMessage], arrivals: Sequence[float]) -> BatchResult:
        result = BatchResult()
        rows = self._decode(messages, result.dead_letters)
        started = self._clock()
        scores = self._predictor.predict_batch(rows.features)
        result.inference_seconds = self._clock() - started
        waited = self._clock() - np.asarray(arrivals, dtype=np.float64)[rows.rows]
        config = self._predictor.config
        result.values = encode_predictions(
            self._header,
            rows.event_ids,
            rows.event_times,
            config.name,
            config.version,
            scores,
            (waited * 1000.0).astype(np.float32),
        )
        result.keys = [messages[i].key() for i in rows.rows.tolist()]
        result.event_times_ms = rows.event_times
        if self.shadow is not None:
            shadow = self.shadow.config
            result.shadow_values = encode_predictions(
                self._header,
                rows.event_ids,
                rows.event_times,
                shadow.name,
                shadow.version,
                self.shadow.predict_batch(rows.features),
                (waited * 1000.0).astype(np.float32),
            )
        return result

    def _decode(self, messages: Sequence[SourceMessage], dead: list[DeadLetter]) -> _Rows:
        payloads = [m.value() or b"" for m in messages]
        fast = decode_input_events(payloads, INPUT_EVENT_WRITERS, len(self._features.feature_names))
        finite = np.asarray(np.isfinite(fast.features).all(axis=1), dtype=np.bool_)
        for i in fast.rows[~finite].tolist():
            dead.append(DeadLetter(messages[i], "non-finite", "a feature value is NaN or infinite"))
        slow_rows = np.setdiff1d(np.arange(len(messages), dtype=np.int64), fast.rows, assume_unique=True)
        slow = self._decode_one_by_one(messages, slow_rows.tolist(), dead)
        if not len(slow.rows) and finite.all():  # the common case: every event took the columnar path
            return _Rows(fast.rows, fast.event_ids, fast.event_times, fast.features)
        rows = np.concatenate([fast.rows[finite], slow.rows])
        order = np.argsort(rows, kind="stable")  # input order, so per-key order holds
        kept_fast: list[bool] = finite.tolist()
        ids = [*(b for b, ok in zip(fast.event_ids, kept_fast, strict=True) if ok), *slow.event_ids]
        return _Rows(
            rows=rows[order],
            event_ids=[ids[k] for k in order.tolist()],
            event_times=np.concatenate([fast.event_times[finite], slow.event_times])[order],
            features=np.concatenate([fast.features[finite], slow.features])[order],
        )

    def _decode_one_by_one(
        self, messages: Sequence[SourceMessage], rows: list[int], dead: list[DeadLetter]
    ) -> _Rows:
        """The general path: fastavro per event, any known schema, a precise reason for every failure."""
        positions: list[int] = []
        records: list[dict[str, Any]] = []
        for i in rows:
            try:
                records.append(self._decoder.decode(messages[i].value()))
                positions.append(i)
            except DecodeError as exc:
                dead.append(DeadLetter(messages[i], exc.reason, exc.detail))
        matrix, rejected = self._features.extract(records)
        for j, (reason, detail) in rejected.items():
            dead.append(DeadLetter(messages[positions[j]], reason, detail))
        kept = [j for j in range(len(records)) if j not in rejected]
        ids, times = [], []
        for j in kept:
            message, record = messages[positions[j]], records[j]
            ids.append(str(record.get("event_id") or fallback_event_id(message)).encode())
            event_time = record.get("event_time")
            times.append(event_time if isinstance(event_time, int) else message.timestamp()[1])
        return _Rows(
            np.asarray([positions[j] for j in kept], dtype=np.int64),
            ids,
            np.asarray(times, dtype=np.int64),
            matrix,
        )
