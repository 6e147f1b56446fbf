"""The processor's pure core: one batch of raw events in, predictions and dead letters out.

No Kafka here: the input is anything shaped like ``confluent_kafka.Message`` and the output is plain
records for the I/O shell (:mod:`driftline.streams.serve`) to produce. Every input event ends up in
exactly one of the two outputs.

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
>>> len(result.outputs), [(d.message.offset(), d.reason) for d in result.dead_letters]
(1, [(1, 'undecodable')])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from driftline.errors import DecodeError
from driftline.models.runtime import Predictor
from driftline.schemas.wire import AvroDecoder, AvroEncoder
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
class Output:
    """One record to produce."""

    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class DeadLetter:
    """An event that could not be handled, with why."""

    message: SourceMessage
    reason: str
    detail: str


@dataclass
class BatchResult:
    outputs: list[Output] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    event_times_ms: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """Event time of each output, for end-to-end latency metrics."""
    inference_seconds: float = 0.0


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
        self._decoder = decoder
        self._encoder = encoder
        self._clock = clock
        self.predictor = predictor

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
        decoded: list[dict[str, Any]] = []
        positions: list[int] = []
        for i, message in enumerate(messages):
            try:
                decoded.append(self._decoder.decode(message.value()))
                positions.append(i)
            except DecodeError as exc:
                result.dead_letters.append(DeadLetter(message, exc.reason, exc.detail))
        matrix, rejected = self._features.extract(decoded)
        for j, (reason, detail) in rejected.items():
            result.dead_letters.append(DeadLetter(messages[positions[j]], reason, detail))
        kept = [positions[j] for j in range(len(decoded)) if j not in rejected]
        records = [decoded[j] for j in range(len(decoded)) if j not in rejected]
        started = self._clock()
        scores = self._predictor.predict_batch(matrix)
        result.inference_seconds = self._clock() - started
        result.outputs, result.event_times_ms = self._encode(messages, kept, records, scores, arrivals)
        return result

    def _encode(
        self,
        messages: Sequence[SourceMessage],
        kept: list[int],
        records: list[dict[str, Any]],
        scores: npt.NDArray[np.float32],
        arrivals: Sequence[float],
    ) -> tuple[list[Output], npt.NDArray[np.int64]]:
        config = self._predictor.config
        classes = scores.argmax(axis=1).tolist() if len(scores) else []
        score_rows = scores.tolist()
        now = self._clock()
        encode = self._encoder.encode
        outputs: list[Output] = []
        times: list[int] = []
        for n, i in enumerate(kept):
            message, record = messages[i], records[n]
            event_time = record.get("event_time")
            if not isinstance(event_time, int):
                event_time = message.timestamp()[1]
            times.append(event_time)
            value = encode(
                {
                    "event_id": str(record.get("event_id") or fallback_event_id(message)),
                    "event_time": event_time,
                    "model_name": config.name,
                    "model_version": config.version,
                    "scores": score_rows[n],
                    "predicted_class": classes[n],
                    "processing_ms": (now - arrivals[i]) * 1000.0,
                }
            )
            outputs.append(Output(message.key(), value))
        return outputs, np.asarray(times, dtype=np.int64)
