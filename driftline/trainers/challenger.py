"""Champion-challenger: a candidate runs as the shadow on live traffic and is judged against the live
version on the same labelled events, by the task's metric, before it is promoted.

The pure core: a :class:`Scoreboard` joins the live version's predictions, the shadow's predictions and
the labels by event id and keeps the events that all three reached (only events both versions
answered count), and :func:`judge` turns it into a :class:`Verdict`. The Kafka shell:
:func:`shadow_start` takes the end offsets of the three topics just before a version goes into shadow,
:func:`judge_shadow` reads from there until enough labelled events are in (or the time is up), and
:func:`challenge` runs the whole round for a published candidate and writes its outcome to the registry.

>>> board = Scoreboard(wanted=3)
>>> board.add_live(["a", "b", "c"], np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]))
>>> board.add_challenger(["b", "c", "d"], np.array([[0.1, 0.9], [0.2, 0.8], [0.5, 0.5]]))
>>> board.add_labels(["a", "b", "c", "d"], np.array([0, 1, 1, 0]))
>>> len(board), board.scores("accuracy")
(2, (1.0, 0.5))
>>> v = judge(board, "accuracy", margin=0.01, challenger="3", live="2", min_events=2)
>>> v.decided, v.promote, v.events
(True, True, 2)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.config import Settings
from driftline.errors import DecodeError
from driftline.models import control
from driftline.models.registry import Record, VersionLedger, promote_records, status_record
from driftline.models.spec import ModelSpec
from driftline.schemas.columnar_outputs import (
    LABEL_WRITERS,
    PREDICTION_WRITERS,
    decode_labels,
    decode_predictions,
)
from driftline.schemas.wire import AvroDecoder, builtin_store
from driftline.streams import kafka
from driftline.streams.records import SourceMessage, truth_of
from driftline.trainers.scoring import METRICS, better, score

log = logging.getLogger(__name__)

IN_ROUND = "shadowing next to live"
"""How the SHADOW record of a challenger whose round is under way begins (a crash may leave it so)."""

Offsets = dict[str, dict[int, int]]
"""topic -> partition -> offset."""

_DECODER = AvroDecoder(builtin_store())


# -- the pure core -------------------------------------------------------------------------------


class Scoreboard:
    """The first ``wanted`` events that the live version, the challenger and a label all reached.

    Unmatched entries wait in insertion order, at most ``max_pending`` of each kind (the oldest go
    first). A duplicate (a replayed prediction) replaces a waiting one and is ignored once joined.
    """

    def __init__(self, wanted: int, max_pending: int = 1_000_000) -> None:
        self.wanted = wanted
        self.max_pending = max_pending
        self._waiting: tuple[OrderedDict[str, Any], ...] = (OrderedDict(), OrderedDict(), OrderedDict())
        """Live outputs, challenger outputs, truths, by event id."""
        self._joined: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]] = {}

    def __len__(self) -> int:
        return len(self._joined)

    @property
    def full(self) -> bool:
        return len(self._joined) >= self.wanted

    def add_live(self, event_ids: Sequence[str], outputs: npt.ArrayLike) -> None:
        """The live version's outputs: class probabilities ``(n, classes)`` or values ``(n,)``."""
        self._add(0, event_ids, _rows(outputs, len(event_ids)))

    def add_challenger(self, event_ids: Sequence[str], outputs: npt.ArrayLike) -> None:
        self._add(1, event_ids, _rows(outputs, len(event_ids)))

    def add_labels(self, event_ids: Sequence[str], truths: npt.ArrayLike) -> None:
        """Class indices, or regression targets."""
        self._add(2, event_ids, np.asarray(truths, dtype=np.float64).tolist())

    def scores(self, metric: str) -> tuple[float, float]:
        """(challenger, live) in ``metric`` on the joined events (NaN while there are none)."""
        if not self._joined:
            return float("nan"), float("nan")
        live, challenger, truth = zip(*self._joined.values(), strict=True)
        y = np.asarray(truth)
        return score(metric, y, np.stack(challenger)), score(metric, y, np.stack(live))

    def _add(self, side: int, event_ids: Sequence[str], values: Sequence[Any]) -> None:
        waiting = self._waiting
        for event_id, value in zip(event_ids, values, strict=True):
            if event_id in self._joined or self.full:
                continue
            waiting[side][event_id] = value
            if all(event_id in w for w in waiting):
                live, challenger, truth = (w.pop(event_id) for w in waiting)
                self._joined[event_id] = (live, challenger, truth)
        while len(waiting[side]) > self.max_pending:
            waiting[side].popitem(last=False)


def _rows(outputs: npt.ArrayLike, n: int) -> list[npt.NDArray[np.float64]]:
    return list(np.asarray(outputs, dtype=np.float64).reshape(n, -1))


@dataclass(frozen=True)
class Verdict:
    decided: bool
    """False: too few labelled events were answered by both; the challenger stays in shadow."""
    promote: bool
    events: int
    metric: str
    challenger_score: float
    live_score: float
    reason: str


def judge(
    board: Scoreboard,
    metric: str,
    *,
    margin: float,
    challenger: str,
    live: str,
    min_events: int,
    waited: str = "",
) -> Verdict:
    """Decide on the events in ``board``: promote the challenger if it beats the live version by
    ``margin``; undecided with fewer than ``min_events``. ``waited`` says why the board is not full."""
    n, m = len(board), METRICS[metric]
    ours, theirs = board.scores(metric)
    short = f"only {n} of {board.wanted} labelled events came {waited}; " if n < board.wanted else ""
    if n < min_events:
        why = f"{short}too few to judge (at least {min_events}): v{challenger} stays in shadow"
        return Verdict(False, False, n, metric, ours, theirs, why)
    promote = better(metric, ours, than=theirs, margin=margin)
    direction = "higher" if m.higher_is_better else "lower"
    verb = "beats" if promote else "does not beat"
    reason = (
        f"{short}on live traffic, {metric} of shadow v{challenger} {ours:.4f} {verb} live v{live} "
        f"{theirs:.4f} by {margin} on the same {n} labelled events ({m.how}; {direction} is better)"
    )
    return Verdict(True, promote, n, metric, ours, theirs, reason)


# -- the Kafka shell -----------------------------------------------------------------------------


def shadow_start(settings: Settings, timeout: float = 30.0) -> Offsets:
    """The end offsets of the predictions, shadow predictions and labels topics: where the evidence
    about a shadow begins. Take them before the version's SHADOW record is written."""
    t = settings.topics
    marks = kafka.watermarks(settings, (t.predictions, t.shadow_predictions, t.labels), timeout)
    return {topic: {p: high for p, (_, high) in ends.items()} for topic, ends in marks.items()}


def judge_shadow(
    settings: Settings,
    name: str,
    challenger_version: str,
    live_version: str,
    labelled_events: int,
    metric: str,
    timeout: float,
    stop: Callable[[], bool] | None = None,
    *,
    start: Offsets,
    spec: ModelSpec,
    margin: float = 0.0,
    min_events: int | None = None,
    log_every_s: float = 5.0,
) -> Verdict:
    """Read the live version's predictions, the challenger's shadow predictions and the labels from
    ``start`` until ``labelled_events`` events are answered by both and labelled, ``timeout`` seconds
    pass or ``stop()`` says so; then judge on what came (undecided with fewer than ``min_events``,
    default half of ``labelled_events``)."""
    t = settings.topics
    board = Scoreboard(labelled_events)
    reader = kafka.consumer(
        settings, f"driftline-challenger-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"}
    )
    reader.assign([kafka.TopicPartition(topic, p, o) for topic, ps in start.items() for p, o in ps.items()])
    began = time.monotonic()
    deadline, next_log = began + timeout, began + log_every_s
    waited = f"within {timeout:.0f}s"
    try:
        while not board.full:
            if stop is not None and stop():
                waited = "before the trainer was stopped"
                break
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_log:
                _progress(board, name, challenger_version, live_version, metric, deadline - now)
                next_log = now + log_every_s
            by_topic: dict[str | None, list[kafka.Message]] = {}
            for message in kafka.data_messages(reader.consume(1000, 0.5)):
                by_topic.setdefault(message.topic(), []).append(message)
            for topic, messages in by_topic.items():
                if topic == t.labels:
                    board.add_labels(*labels_of(messages, spec))
                else:
                    want = live_version if topic == t.predictions else challenger_version
                    ids, outputs = predictions_of(messages, spec, want)
                    (board.add_live if topic == t.predictions else board.add_challenger)(ids, outputs)
    finally:
        reader.close()
    least = max(1, labelled_events // 2) if min_events is None else min_events
    verdict = judge(
        board,
        metric,
        margin=margin,
        challenger=challenger_version,
        live=live_version,
        min_events=least,
        waited=waited,
    )
    log.info(
        "%s shadow v%s after %.0fs: %s", name, challenger_version, time.monotonic() - began, verdict.reason
    )
    return verdict


def _progress(board: Scoreboard, name: str, challenger: str, live: str, metric: str, left: float) -> None:
    ours, theirs = board.scores(metric)
    log.info(
        "judging %s shadow v%s against live v%s: %d of %d labelled events answered by both "
        "(%s so far: shadow %.4f, live %.4f); waiting up to %.0fs more",
        name,
        challenger,
        live,
        len(board),
        board.wanted,
        metric,
        ours,
        theirs,
        left,
    )


def predictions_of(
    messages: Sequence[SourceMessage], spec: ModelSpec, version: str
) -> tuple[list[str], npt.NDArray[np.float64]]:
    """The event ids and outputs of ``version``'s predictions (canonical ones read as a batch, others
    through fastavro; undecodable ones are the monitor's to report, and are skipped here)."""
    regression = spec.is_regression
    n_classes = 0 if regression else len(spec.task.classes)  # type: ignore[union-attr]
    payloads = [m.value() or b"" for m in messages]
    fast = decode_predictions(payloads, PREDICTION_WRITERS, n_classes)
    ids, versions = list(fast.event_ids), list(fast.versions)
    outputs = [*(fast.values[:, None] if regression else fast.scores.astype(np.float64))]
    for i in np.setdiff1d(np.arange(len(payloads)), fast.rows).tolist():
        try:
            record = _DECODER.decode(payloads[i])
            out = [record["value"]] if regression else record["scores"]
            if out[0] is None or len(out) != max(n_classes, 1):
                continue
            ids.append(str(record["event_id"]))
            versions.append(str(record["model_version"]))
            outputs.append(np.asarray(out, dtype=np.float64))
        except (DecodeError, KeyError, TypeError):
            continue
    keep = [k for k, v in enumerate(versions) if v == version]
    width = max(n_classes, 1)
    rows = np.asarray([outputs[k] for k in keep], dtype=np.float64).reshape(len(keep), width)
    return [ids[k] for k in keep], rows


def labels_of(
    messages: Sequence[SourceMessage], spec: ModelSpec
) -> tuple[list[str], npt.NDArray[np.float64]]:
    payloads = [m.value() or b"" for m in messages]
    if spec.is_regression:  # class indices are no regression truth: every label goes through fastavro
        ids, truths, rest = [], [], list(range(len(payloads)))
    else:
        fast = decode_labels(payloads, LABEL_WRITERS)
        ids, truths = list(fast.event_ids), fast.labels.astype(np.float64).tolist()
        rest = np.setdiff1d(np.arange(len(payloads)), fast.rows).tolist()
    for i in rest:
        try:
            record = _DECODER.decode(payloads[i])
            truths.append(truth_of(record, spec))
            ids.append(str(record["event_id"]))
        except (DecodeError, KeyError, TypeError, ValueError):
            continue
    return ids, np.asarray(truths, dtype=np.float64)


# -- one round, on the registry ------------------------------------------------------------------


def challenge(
    settings: Settings,
    private_key: bytes,
    candidate: Record,
    live_version: str,
    spec: ModelSpec,
    metric: str,
    *,
    labelled_events: int,
    timeout: float,
    margin: float,
    stop: Callable[[], bool] | None = None,
) -> tuple[bool, Record]:
    """Put a published candidate into shadow, judge it on live traffic, then promote it (its LIVE
    record's reason and metrics give both scores), retire it (the reason says why), or leave it in
    shadow when too few labelled events came. Returns (promoted, the candidate's latest record)."""
    name, version = str(candidate["model_name"]), str(candidate["version"])
    start = shadow_start(settings)  # before the SHADOW record: every shadow prediction comes after it
    reason = f"{IN_ROUND} v{live_version} for {labelled_events} labelled events"
    control.change(settings, private_key, lambda _l, _n: [status_record(candidate, "SHADOW", reason)])
    log.info("%s v%s: %s", name, version, reason)
    verdict = judge_shadow(
        settings,
        name,
        version,
        live_version,
        labelled_events,
        metric,
        timeout,
        stop,
        start=start,
        spec=spec,
        margin=margin,
    )
    written = control.change(
        settings,
        private_key,
        lambda ledger, now: round_records(ledger, name, version, live_version, verdict, now),
    )
    mine = [r for r in written if r["version"] == version]
    promoted = bool(mine) and mine[0]["status"] == "LIVE"
    return promoted, mine[0] if mine else control.signer_ledger(settings, private_key).version(name, version)


def round_records(
    ledger: VersionLedger, name: str, version: str, live_version: str, verdict: Verdict, now: int
) -> list[Record]:
    """The records that end a round (unsigned), against the registry as it is now: nothing when the
    challenger left shadow meanwhile (an operator's call stands)."""
    current = ledger.version(name, version)
    if current["status"] != "SHADOW":
        log.warning(
            "%s v%s is %s now, not SHADOW: its round ends unrecorded", name, version, current["status"]
        )
        return []
    live = ledger.live(name)
    if verdict.promote and (live is None or str(live["version"]) != live_version):
        now_live = "nothing" if live is None else f"v{live['version']}"
        why = f"not promoted: {now_live} went live while v{version} was judged against v{live_version}"
        return [status_record(current, "RETIRED", f"{why}; {verdict.reason}")]
    measured = {
        **current["metrics"],
        f"live_traffic_candidate_{verdict.metric}": verdict.challenger_score,
        f"live_traffic_live_{verdict.metric}": verdict.live_score,
        "live_traffic_events": float(verdict.events),
    }
    scored = {**current, "metrics": measured}
    if not verdict.decided:
        return [status_record(scored, "SHADOW", f"still shadowing: {verdict.reason}")]
    if not verdict.promote:
        return [status_record(scored, "RETIRED", f"not promoted: {verdict.reason}")]
    ledger.apply(scored)
    records = promote_records(ledger, name, version, now)
    records[0]["reason"] = f"{records[0]['reason']}: {verdict.reason}"
    return records
