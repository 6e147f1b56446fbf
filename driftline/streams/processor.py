"""The processor's pure core: one batch of raw events in, predictions and dead letters out.

No Kafka here: the input is anything shaped like ``confluent_kafka.Message`` and the output is plain
records for the I/O shell (:mod:`driftline.streams.serve`) to produce. Every input event ends up in
exactly one of the two outputs.

Work is per batch. Events become rows through :func:`~driftline.streams.records.decode_rows`, the
record path that the monitor and the trainer share; predictions are written for the whole batch at
once by :func:`~driftline.schemas.columnar.encode_predictions`.

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
from typing import cast

import numpy as np
import numpy.typing as npt

from driftline.errors import SchemaError
from driftline.models.artifact import ModelConfig
from driftline.models.runtime import Predictor
from driftline.schemas.columnar import encode_predictions
from driftline.schemas.wire import AvroDecoder, AvroEncoder, load_schema
from driftline.streams.features import FeatureExtractor
from driftline.streams.records import DeadLetter, Rows, SourceMessage, contract_schema, decode_rows

__all__ = ["BatchProcessor", "BatchResult", "DeadLetter", "SourceMessage"]


@dataclass
class BatchResult:
    """Predictions (as ``keys[i]``, ``values[i]`` pairs, in input order) and dead letters of one batch."""

    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    """The partition each prediction's event came from: outputs go to the same partition number."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    event_times_ms: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """Event time of each prediction, for end-to-end latency metrics."""
    inference_seconds: float = 0.0
    shadow_values: list[bytes] = field(default_factory=list)
    """The shadow version's predictions of the same events, when one is set (keys and partitions in
    ``shadow_keys`` and ``shadow_partitions``: a shadow output that is not finite is left out)."""
    shadow_keys: list[bytes | None] = field(default_factory=list)
    shadow_partitions: list[int] = field(default_factory=list)


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
        config = predictor.config
        self._features = FeatureExtractor(config.input_spec, f"model {config.name} version {config.version}")
        if config.spec is not None:  # events in the model's contract need no --schema file
            self._decoder.learn(contract_schema(config.name, config.spec))
        self._regression = config.input_spec.is_regression

    def process(self, messages: Sequence[SourceMessage], arrivals: Sequence[float]) -> BatchResult:
        result = BatchResult()
        rows, result.dead_letters = decode_rows(messages, self._decoder, self._features)
        started = self._clock()
        scores = self._predictor.predict_batch(rows.features, rows.codes)
        result.inference_seconds = self._clock() - started
        config = self._predictor.config
        finite = np.isfinite(scores).all(axis=1)
        if not finite.all():  # never published: a NaN score would poison every consumer downstream
            for i in rows.rows[~finite].tolist():
                result.dead_letters.append(
                    DeadLetter(
                        messages[i],
                        "non-finite-output",
                        f"model {config.name} version {config.version} returned NaN or infinity here",
                    )
                )
            rows = rows.take(np.flatnonzero(finite))
            scores = scores[finite]
        waited = self._clock() - np.asarray(arrivals, dtype=np.float64)[rows.rows]
        result.values = self._encode(rows, config, scores, waited)
        kept = [messages[i] for i in rows.rows.tolist()]
        result.keys = [m.key() for m in kept]
        result.partitions = [cast(int, m.partition()) for m in kept]  # consumed: always set
        result.event_times_ms = rows.event_times
        if self.shadow is not None:
            shadow_scores = self.shadow.predict_batch(rows.features, rows.codes)
            # a shadow's NaN is its own problem: those rows get no shadow prediction, the live ones stand
            keep = np.flatnonzero(np.isfinite(shadow_scores).all(axis=1))
            result.shadow_values = self._encode(
                rows.take(keep), self.shadow.config, shadow_scores[keep], waited[keep]
            )
            result.shadow_keys = [result.keys[k] for k in keep.tolist()]
            result.shadow_partitions = [result.partitions[k] for k in keep.tolist()]
        return result

    def _encode(
        self,
        rows: Rows,
        config: ModelConfig,
        scores: npt.NDArray[np.float32],
        waited: npt.NDArray[np.float64],
    ) -> list[bytes]:
        regression = config.input_spec.is_regression
        return encode_predictions(
            self._header,
            rows.event_ids,
            rows.event_times,
            config.name,
            config.version,
            np.zeros((len(scores), 0), dtype=np.float32) if regression else scores,
            (waited * 1000.0).astype(np.float32),
            classes=config.classes,
            values=scores[:, 0].astype(np.float64) if regression else None,
        )
