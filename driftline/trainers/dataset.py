"""Training sets from Kafka: replay a window of events and of labels, and join them by event id.

A window is a list of ``DataWindow`` records (topic, partition, start offset, exclusive end offset).
Ends may lie in the future (a retraining request asks for the events *after* a drift): reading waits
for them until a timeout, then uses what arrived.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.config import Settings
from driftline.errors import DecodeError, DriftlineError
from driftline.models.spec import ModelSpec
from driftline.streams import kafka
from driftline.streams.features import FeatureExtractor
from driftline.streams.kafka import Message, TopicPartition
from driftline.streams.records import contract_schema, decode_rows, decoder_for, truth_of
from driftline.trainers.recipe import TrainingData

log = logging.getLogger(__name__)

Window = dict[str, Any]


WAIT_REPORT_S = 10.0
"""How often a trainer waiting for a window's data says so."""


class TrainingDataError(DriftlineError):
    """Not enough labelled data in the requested window."""


class TrainingInterruptedError(DriftlineError):
    """Asked to stop while waiting for data; nothing was published."""


@dataclass(frozen=True)
class TrainingSet:
    """Labelled rows in event order, and the windows they were read from."""

    x: npt.NDArray[np.float32]
    """Numeric and boolean inputs, raw (imputed, not standardised)."""
    y: npt.NDArray[Any]
    """Class indices (int64), or a regression model's targets (float64)."""
    event_times: npt.NDArray[np.int64]
    windows: list[Window] = field(default_factory=list)
    codes: npt.NDArray[np.int64] | None = None
    """Categorical inputs' codes (None: the model has none)."""
    unused: Mapping[str, int] = field(default_factory=dict)
    """Events and labels read but not used, by reason."""
    nulls: npt.NDArray[np.bool_] | None = None
    """Which input values were null (before imputation), ``(rows, inputs)`` in the spec's order (None:
    not known, a built-in model's rows)."""

    def __len__(self) -> int:
        return len(self.y)

    def recipe_data(self, spec: ModelSpec) -> TrainingData:
        """The rows as a training recipe receives them."""
        codes = self.codes if self.codes is not None else np.zeros((len(self.y), 0), dtype=np.int64)
        return TrainingData(spec, self.x, codes, self.y, self.event_times, list(self.windows))


def first_windows(settings: Settings, topic: str, rows: int) -> list[Window]:
    """The first ``rows`` records of ``topic``, as windows: what its partitions hold already (keys
    rarely spread evenly), and only what is missing from ``rows`` spread evenly as records to come."""
    marks = kafka.watermarks(settings, [topic])[topic]
    sizes = share_rows(rows, [high - low for low, high in marks.values()])
    return [_window(topic, p, low, low + n) for (p, (low, _)), n in zip(marks.items(), sizes, strict=True)]


def share_rows(rows: int, available: Sequence[int]) -> list[int]:
    """How many records to take from each partition for ``rows`` in all: fill from what each holds,
    as evenly as possible, then spread any shortfall evenly (those records are waited for).

    >>> share_rows(2400, [1223, 1177]), share_rows(100, [1000, 10]), share_rows(10, [0, 2])
    ([1223, 1177], [90, 10], [4, 6])
    """
    taken = [0] * len(available)
    left = rows
    open_ = [i for i, n in enumerate(available) if n > 0]
    while left > 0 and open_:
        even = max(1, left // len(open_))
        for i in list(open_):
            step = min(even, available[i] - taken[i], left)
            taken[i] += step
            left -= step
            if taken[i] >= available[i]:
                open_.remove(i)
            if left == 0:
                break
    for k in range(left):  # records still to come
        taken[k % len(taken)] += 1
    return taken


def _window(topic: str, partition: int, start: int, end: int) -> Window:
    return {
        "topic": topic,
        "partition": partition,
        "start_offset": start,
        "end_offset": end,
        "start_time": None,
        "end_time": None,
    }


def read_windows(
    settings: Settings,
    windows: Sequence[Mapping[str, Any]],
    timeout: float,
    on_progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> tuple[list[Message], list[Window]]:
    """The records of the windows, and the windows as actually read (ends cut to what arrived)."""
    consumer = kafka.consumer(settings, f"driftline-train-{uuid.uuid4().hex[:8]}")
    wanted = {(w["topic"], w["partition"]): (w["start_offset"], w["end_offset"]) for w in windows}
    reached = {tp: start for tp, (start, _) in wanted.items()}
    total = sum(end - start for start, end in wanted.values())
    out: list[Message] = []
    try:
        consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _) in wanted.items()])
        started = time.monotonic()
        deadline, next_report = started + timeout, started + WAIT_REPORT_S
        while any(reached[tp] < end for tp, (_, end) in wanted.items()) and time.monotonic() < deadline:
            if time.monotonic() >= next_report:
                next_report += WAIT_REPORT_S
                log.info(
                    "waiting for the window's data: %d of %d records read, %.0f s left of %.0f s",
                    len(out),
                    total,
                    deadline - time.monotonic(),
                    timeout,
                )
            for m in kafka.data_messages(consumer.consume(2000, 0.05)):
                tp, offset = (m.topic(), m.partition()), m.offset() or 0
                if tp in wanted and offset < wanted[tp][1]:
                    out.append(m)
                    reached[tp] = offset + 1
                elif tp in wanted:
                    reached[tp] = max(reached[tp], wanted[tp][1])
            if on_progress is not None:
                on_progress(len(out), total)
            if stop is not None and stop():
                raise TrainingInterruptedError("stopped while waiting for the window's data")
    finally:
        consumer.close()
    read = [_window(t, p, start, reached[(t, p)]) for (t, p), (start, _) in wanted.items()]
    if len(out) < total:
        log.warning(
            "the window did not fill within %.0f s: training on the %d of %d records that came",
            timeout,
            len(out),
            total,
        )
    return out, read


def labelled_rows(
    settings: Settings,
    event_windows: Sequence[Mapping[str, Any]],
    label_windows: Sequence[Mapping[str, Any]],
    features: Sequence[str] | ModelSpec,
    *,
    schemas: Sequence[Path] = (),
    timeout: float = 120.0,
    on_progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> TrainingSet:
    """Replay both windows and keep the events that have a label, in event-time order.

    Events are read by the record path serve uses (:func:`~driftline.streams.records.decode_rows`):
    any wire format, user record schemas (``schemas``, the registry), the model's contract when
    ``features`` is its spec; the log (and the set's ``unused``) says how many events and labels were
    not used and why."""
    spec = features if isinstance(features, ModelSpec) else None
    extractor = FeatureExtractor(spec) if spec is not None else FeatureExtractor.numeric(features)  # type: ignore[arg-type]
    decoder = decoder_for(settings, schemas)
    if spec is not None:
        decoder.learn(contract_schema(str(settings.model_name), spec))
    labels_read, label_span = read_windows(settings, label_windows, timeout, on_progress, stop)
    truth: dict[bytes, float] = {}
    unused: Counter[str] = Counter()
    for m in labels_read:
        try:
            record = decoder.decode(m.value())
            truth[str(record["event_id"]).encode()] = truth_of(record, spec)
        except DecodeError as exc:
            unused[f"label {exc.reason}"] += 1  # the monitor dead-letters bad labels; training skips them
        except (KeyError, TypeError, ValueError):
            unused["label bad-type"] += 1
    events_read, event_span = read_windows(settings, event_windows, timeout, on_progress, stop)
    rows, dead = decode_rows(events_read, decoder, extractor)
    keep = [i for i, eid in enumerate(rows.event_ids) if eid in truth]
    regression = spec is not None and spec.is_regression
    y = np.array([truth[rows.event_ids[i]] for i in keep], dtype=np.float64 if regression else np.int64)
    x, times, codes = rows.features[keep], rows.event_times[keep], rows.codes[keep]
    nulls = None if rows.nulls is None or spec is None else rows.nulls[keep]
    order = np.argsort(times, kind="stable")
    unused.update(d.reason for d in dead)
    unused["no label"] = len(rows) - len(keep)
    log.info(
        "training set: %d labelled rows of %d events and %d labels read; not used: %s",
        len(keep),
        len(events_read),
        len(labels_read),
        ", ".join(f"{n} {why}" for why, n in sorted(unused.items()) if n) or "none",
    )
    return TrainingSet(
        x[order],
        y[order],
        times[order],
        [*event_span, *label_span],
        codes[order],
        {why: n for why, n in sorted(unused.items()) if n},
        None if nulls is None else nulls[order],
    )
