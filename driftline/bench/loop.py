"""``driftline bench loop``: the closed loop on real labelled streams, River's adaptive learners beside it.

Streams are the datasets that ship inside the ``river`` wheel (nothing is downloaded), their rows in
their file order. None of them has a documented drift, so one is injected at a stated row:

* classification: from row ``floor(drift_at * rows)`` on, every label ``y`` becomes ``(y + 1) mod K``
  (binary streams: every label flipped). P(y|x) changes, P(x) does not: only labels can reveal it.
* regression: from that row on, the target is shifted by twice its standard deviation over the rows
  before it.

Each method sees the same rows after a warm-up prefix, test-then-train (prequential):

* ``driftline``: the closed loop as processes on a broker. The first version is trained on the warm-up
  rows (``train --once``, in process, like the demo); then ``serve``, ``monitor`` and ``train`` run while
  the rows arrive at ``rate`` events per second, each label right after its event; predictions are read
  back from Kafka. Regression: the first version is a linear regression fitted on the warm-up rows
  (inputs standardised with their warm-up mean and scale), exported with :func:`driftline.export`
  under a regression spec with the warm-up targets (its reference profile's MAE, the fit's own on
  those rows, is what the monitor's ErrorRise compares the live error with) and published LIVE; the
  rows go out as events in its contract with their targets as labels, ``train`` retrains with the
  default recipe (``driftline.trainers.recipes:mlp``, judged by MAE) and the predictions' ``value``
  is read back.
* ``never_retrained``: the first version applied in process to every row (regression: the same
  exported linear regression, run by the ONNX predictor serve runs it with).
* ``arf`` / ``hat``: River's ``ARFClassifier`` and ``HoeffdingAdaptiveTreeClassifier`` (for regression
  the regressors, behind River's ``StandardScaler``), warmed on the warm-up rows, then
  ``predict_one`` then ``learn_one`` per row, in process.

Recovery: rows after the drift until the accuracy over the last ``WINDOW`` rows (all after the drift)
is back within ``ACCURACY_TOLERANCE`` of the accuracy over the ``WINDOW`` rows before it (regression:
MAE within ``MAE_TOLERANCE`` of it, relatively); None ("never") when it does not come back.

>>> s = inject_drift(Stream("toy", ["a"], ["no", "yes"], np.zeros((4, 1), np.float32),
...                         np.array([0, 1, 0, 1])), at=2)
>>> s.y.tolist()
[0, 1, 1, 0]
>>> rows_to_recover(np.array([1.0] * 4 + [0.0] * 3 + [1.0] * 5), drift=4, window=2, higher_is_better=True)
5
"""

from __future__ import annotations

import functools
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.config import Settings
from driftline.errors import DriftlineError

Log = Callable[[str], None]
Array = npt.NDArray[Any]

WINDOW = 200
ACCURACY_TOLERANCE = 0.02
MAE_TOLERANCE = 0.10

STREAMS = {
    "phishing": "Phishing",
    "bananas": "Bananas",
    "imagesegments": "ImageSegments",
    "shuttle": "Shuttle",
    "trumpapproval": "TrumpApproval",
}
"""Bundled River datasets (``river.datasets``, shipped in the wheel): name -> class."""

RECIPE = "driftline.trainers.recipes:mlp"
"""How ``train`` retrains a regression stream's model (a model with a spec needs a recipe)."""


@dataclass(frozen=True)
class Stream:
    name: str
    features: list[str]
    classes: list[str] | None
    """Class names, None for regression."""
    x: npt.NDArray[np.float32]
    y: Array
    """Class indices (int64) or targets (float64)."""
    drift: str = "none"

    @property
    def regression(self) -> bool:
        return self.classes is None


@dataclass(frozen=True)
class LoopOptions:
    streams: tuple[str, ...] = ("phishing", "bananas", "trumpapproval")
    drift_at: float = 0.5
    """Where the injected drift starts (share of the rows); 0 injects none."""
    warmup: float = 0.2
    """Share of the rows the first version and River's learners are warmed on."""
    max_rows: int | None = None
    rate: float = 50.0
    """Events per second through Kafka."""
    retrain_events: int = 200
    epochs: int = 40
    min_rows: int = 100
    device: str = "cpu"
    train_args: tuple[str, ...] = ()
    """More ``driftline train`` options, passed through as they are (e.g. a training recipe's)."""
    monitor_args: tuple[str, ...] = ()
    """More ``driftline monitor`` options, passed through as they are (e.g. a retraining policy's)."""
    logs: Path | None = None
    timeout_s: float = 900.0
    """The whole run, all streams."""
    seed: int = 42


# -- streams -----------------------------------------------------------------------------------


def load_stream(name: str, max_rows: int | None = None) -> Stream:
    """The rows of a bundled River dataset, in order (features as float32, in the file's order)."""
    from river import datasets

    if name not in STREAMS:
        raise DriftlineError(f"unknown stream {name!r}; choose from {', '.join(STREAMS)}")
    dataset = getattr(datasets, STREAMS[name])()
    rows = list(dataset if max_rows is None else _take(dataset, max_rows))
    names = list(rows[0][0])
    x = np.array([[float(r[0][k]) for k in names] for r in rows], dtype=np.float32)
    features = [_field_name(k) for k in names]
    if dataset.task == "Regression":
        return Stream(name, features, None, x, np.array([float(r[1]) for r in rows]))
    labels = [r[1] for r in rows]
    classes = sorted({str(v) for v in labels})
    return Stream(name, features, classes, x, np.array([classes.index(str(v)) for v in labels]))


def _take(dataset: Any, n: int) -> list[Any]:
    out: list[Any] = []
    for row in dataset:
        if len(out) == n:
            break
        out.append(row)
    return out


def _field_name(name: str) -> str:
    clean = re.sub(r"\W", "_", name)
    return clean if re.match(r"[A-Za-z_]", clean) else f"f{clean}"


def inject_drift(stream: Stream, at: int) -> Stream:
    """The stated drift from row ``at`` on (see the module docstring)."""
    y = stream.y.copy()
    if stream.classes is not None:
        y[at:] = (y[at:] + 1) % len(stream.classes)
        what = f"labels y -> (y+1) mod {len(stream.classes)} from row {at}"
    else:
        shift = 2.0 * float(np.std(y[:at]))
        y[at:] = y[at:] + shift
        what = f"target + {shift:.3f} (2 sd of the rows before) from row {at}"
    return replace(stream, y=y, drift=what)


# -- figures -----------------------------------------------------------------------------------


def rows_to_recover(scores: Array, drift: int, window: int = WINDOW, *, higher_is_better: bool) -> int | None:
    """Rows after ``drift`` until the mean of the last ``window`` per-row scores (all after the drift)
    is back near its level over the ``window`` rows before the drift; None if it never is."""
    before = scores[max(0, drift - window) : drift]
    after = scores[drift:]
    if not len(before) or len(after) < window:
        return None
    level = float(before.mean())
    rolling = np.convolve(after, np.ones(window) / window, mode="valid")
    ok = rolling >= level - ACCURACY_TOLERANCE if higher_is_better else rolling <= level * (1 + MAE_TOLERANCE)
    hits = np.flatnonzero(ok)
    return int(hits[0]) + window if len(hits) else None


def method_figures(scores: Array, drift: int | None, *, regression: bool) -> dict[str, Any]:
    """Prequential accuracy (or MAE) overall, before and after the drift, and rows to recover."""
    metric = "mae" if regression else "accuracy"
    out: dict[str, Any] = {"metric": metric, "rows": len(scores), "overall": _mean(scores)}
    if drift is not None:
        out["before_drift"] = _mean(scores[:drift])
        out["after_drift"] = _mean(scores[drift:])
        out["rows_to_recover"] = rows_to_recover(scores, drift, higher_is_better=not regression)
    return out


def _mean(a: Array) -> float:
    return float(a.mean()) if len(a) else float("nan")


def _scores(predicted: Array, y: Array, regression: bool) -> Array:
    if regression:
        return np.abs(predicted.astype(np.float64) - y).astype(np.float64)
    return np.asarray(predicted == y, dtype=np.float64)


# -- River, in process -------------------------------------------------------------------------


def river_predictions(stream: Stream, warmup: int, kind: str, seed: int) -> Array:
    """Warm a River learner on the first ``warmup`` rows, then predict-then-learn every later row."""
    from river import forest, preprocessing, tree

    if stream.regression:  # scaled: the trees' linear leaf models diverge on raw dates and the like
        learner = (
            forest.ARFRegressor(seed=seed)
            if kind == "arf"
            else tree.HoeffdingAdaptiveTreeRegressor(seed=seed)
        )
        model: Any = preprocessing.StandardScaler() | learner
    else:
        model = (
            forest.ARFClassifier(seed=seed)
            if kind == "arf"
            else tree.HoeffdingAdaptiveTreeClassifier(seed=seed)
        )
    rows = [dict(zip(stream.features, r, strict=True)) for r in stream.x.tolist()]
    targets = stream.y.tolist()
    for x, y in zip(rows[:warmup], targets[:warmup], strict=True):
        model.learn_one(x, y)
    out = []
    for x, y in zip(rows[warmup:], targets[warmup:], strict=True):
        p = model.predict_one(x)
        out.append((0.0 if p is None else p) if stream.regression else (-1 if p is None else p))
        model.learn_one(x, y)
    return np.array(out)


def linear_baseline(stream: Stream, warmup: int, directory: Path) -> Array:
    """A linear regression fitted on the warm-up, exported with :func:`driftline.export` and run by
    the processors' ONNX predictor on every later row: regression's never-retrained version."""
    return onnx_values(linear_version(stream, warmup, directory, stream.name), stream.x[warmup:])


def onnx_values(artifact: Path, x: npt.NDArray[np.float32]) -> Array:
    """A numeric-only regression artifact's values on raw rows, as serve computes them."""
    from driftline.models.exported import OnnxPredictor

    predictor = OnnxPredictor.from_artifact(artifact, device="cpu")
    return predictor.predict_batch(x, np.zeros((len(x), 0), np.int64)).reshape(-1)


def linear_version(stream: Stream, warmup: int, directory: Path, name: str) -> Path:
    """Version 1 of ``name``: a least-squares linear regression on the warm-up rows, its inputs the
    stream's features standardised with their warm-up mean and scale, exported to ``directory``."""
    import torch

    from driftline import export
    from driftline.models.spec import InputField, ModelSpec, Regression

    x, y = stream.x[:warmup].astype(np.float64), stream.y[:warmup]
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    design = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    module = torch.nn.Linear(x.shape[1], 1)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(coef[None, :-1], dtype=torch.float32))
        module.bias.copy_(torch.tensor(coef[-1:], dtype=torch.float32))
    fields = [
        InputField(name=f, mean=float(m), scale=float(s))
        for f, m, s in zip(stream.features, mean, scale, strict=True)
    ]
    spec = ModelSpec(inputs=tuple(fields), task=Regression(target="y"))
    sample = [dict(zip(stream.features, r, strict=True)) for r in x.tolist()]
    # the targets let export write a reference profile where it builds one for regression
    return export(module, spec, sample, directory, name=name, version="1", labels=y.tolist())


# -- Driftline's loop, as processes ------------------------------------------------------------


@dataclass
class LoopRun:
    """What the closed loop did on one stream's rows after the warm-up."""

    predicted: Array
    """Predicted class per row, -1 where no prediction came back (regression: value, NaN)."""
    versions: list[str | None]
    event_ms: list[int | None]
    first_version_predicted: Array
    alerts: int
    retrain_requests: int
    published: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class FirstVersion:
    """The loop's first version, live: its own predictions on the rows after the warm-up (the
    never-retrained method), those rows' event ids, and what sends them (each label after its event)."""

    frozen: Array
    ids: list[str]
    send: Callable[[], object]


def run_driftline(settings: Settings, stream: Stream, warmup: int, opts: LoopOptions, log: Log) -> LoopRun:
    from driftline.demo import scoped_settings
    from driftline.demo_report import Tracker
    from driftline.models import control
    from driftline.services import service
    from driftline.streams import kafka

    run = uuid.uuid4().hex[:6]
    deadline = time.monotonic() + opts.timeout_s
    with tempfile.TemporaryDirectory(prefix="driftline-loop-") as tmp:
        workdir = Path(tmp)
        settings = scoped_settings(settings, f"loop-{run}", f"loop-{stream.name}", workdir / "keys")
        kafka.create_topics(settings)
        start = first_regression if stream.regression else first_classifier
        first = start(settings, stream, warmup, opts, workdir, run, log)
        ids = first.ids
        tracker = Tracker(settings).start()
        try:
            with ExitStack() as stack:
                logs = opts.logs or workdir
                logs.mkdir(parents=True, exist_ok=True)
                for name, args, ready in loop_commands(opts, regression=stream.regression):
                    stack.enter_context(
                        service(settings, logs / f"{stream.name}-{name}.log", *args, ready=ready)
                    )
                log(f"{stream.name}: serve, monitor, train up; {len(ids):,} rows at {opts.rate:g}/s")
                sender = threading.Thread(target=first.send, daemon=True)
                sender.start()
                _wait_for_predictions(tracker, ids, sender, deadline, log)
        finally:
            tracker.stop()
        seen = tracker.seen
        rows = [seen.predictions.get(i) for i in ids]
        private = (workdir / "keys" / "signing.key").read_bytes()
        ledger = control.signer_ledger(settings, private).state(settings.model_name).versions
        predicted = (
            np.array([seen.values.get(i, np.nan) for i in ids], dtype=np.float64)
            if stream.regression
            else np.array([-1 if r is None else r[1] for r in rows])
        )
        return LoopRun(
            predicted=predicted,
            versions=[None if r is None else r[0] for r in rows],
            event_ms=[None if r is None else r[2] for r in rows],
            first_version_predicted=first.frozen,
            alerts=sum(1 for a in seen.alerts if a["status"] == "OPEN"),
            retrain_requests=len(seen.requests),
            published=[
                {"version": v, "status": r.get("status"), "reason": r.get("reason")}
                for v, r in sorted(ledger.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)
            ],
        )


def first_classifier(
    settings: Settings, stream: Stream, warmup: int, opts: LoopOptions, workdir: Path, run: str, log: Log
) -> FirstVersion:
    """The warm-up rows produced as InputEvents with labels and the first version trained on them
    (``train --once``, in process); the other rows go out the same way."""
    from driftline.models import control
    from driftline.models.runtime import TorchPredictor
    from driftline.options import TrainOptions
    from driftline.schemas import AvroEncoder, builtin_store
    from driftline.streams.produce import event_id, produce_stream
    from driftline.streams.synthetic import LabelledData
    from driftline.trainers.service import train_once

    assert stream.classes is not None
    store = builtin_store()
    events = AvroEncoder.single_object(store.latest("io.driftline.InputEvent"))
    labels = AvroEncoder.single_object(store.latest("io.driftline.Label"))

    def part(lo: int, hi: int | None) -> LabelledData:
        return LabelledData(stream.features, stream.classes or [], stream.x[lo:hi], stream.y[lo:hi])

    produce_stream(settings, part(0, warmup), events, labels, run_id=f"{run}w")
    private = (workdir / "keys" / "signing.key").read_bytes()
    # first_windows asks each partition for ceil(rows / partitions) records; keyed events are not
    # spread evenly, so the read ends at its timeout: keep that short, every warm-up row is there.
    train_opts = TrainOptions(
        epochs=opts.epochs, device=opts.device, min_rows=min(opts.min_rows, warmup), data_timeout_s=10
    )
    first = train_once(
        settings, private, settings.model_name, warmup, stream.features, stream.classes, train_opts
    )
    log(f"{stream.name}: v{first.record['version']} live (held-out accuracy {first.candidate_accuracy:.3f})")
    main = part(warmup, None)
    with tempfile.TemporaryDirectory(prefix="driftline-first-") as first_dir:
        frozen = TorchPredictor.from_artifact(
            control.materialize(settings, first.record, Path(first_dir)), "cpu"
        )
        first_scores = frozen.predict_batch(np.ascontiguousarray(main.x)).argmax(axis=1)
    send = functools.partial(
        produce_stream, settings, main, events, labels, run_id=f"{run}m", rate=opts.rate, chunk_size=10
    )
    return FirstVersion(first_scores, [event_id(f"{run}m", i) for i in range(len(main.y))], send)


def first_regression(
    settings: Settings, stream: Stream, warmup: int, opts: LoopOptions, workdir: Path, run: str, log: Log
) -> FirstVersion:
    """The linear regression on the warm-up rows (:func:`linear_version`) published LIVE; the other
    rows go out as events in its contract, each target as a label right after."""
    from driftline.api import publish
    from driftline.streams.produce import event_id

    artifact = linear_version(stream, warmup, workdir / "v1", settings.model_name)
    record = publish(artifact, live=True, settings=settings)
    log(f"{stream.name}: v{record['version']} live (linear regression on the {warmup:,} warm-up rows)")
    rest = stream.x[warmup:]
    ids = [event_id(f"{run}m", i) for i in range(len(rest))]
    send = functools.partial(
        send_contract_rows, settings, artifact, stream.features, rest, stream.y[warmup:], ids, opts.rate
    )
    return FirstVersion(onnx_values(artifact, rest), ids, send)


def send_contract_rows(
    settings: Settings,
    model: Path,
    features: Sequence[str],
    x: npt.NDArray[np.float32],
    targets: Array,
    ids: Sequence[str],
    rate: float,
    chunk: int = 10,
) -> None:
    """Each row as an event in ``model``'s contract (:class:`driftline.Client`), its target as a
    label right after it, ``rate`` events per second."""
    from driftline.api import Client
    from driftline.streams.produce import Pacer, chunks

    pacer = Pacer(rate)
    with Client(model, settings=settings) as client:
        for rows in chunks(len(ids), chunk):
            pacer.wait(rows.start)
            events = [{"event_id": ids[i], **dict(zip(features, x[i].tolist(), strict=True))} for i in rows]
            client.send(events, flush=False)
            client.send_labels((ids[i], float(targets[i])) for i in rows)


def _wait_for_predictions(
    tracker: Any, ids: list[str], sender: threading.Thread, deadline: float, log: Log
) -> None:
    """Until every row has its prediction, or the deadline (then the figures show the rows missing)."""
    done = 0
    while time.monotonic() < deadline:
        with tracker.lock:
            done = sum(1 for i in ids if i in tracker.seen.predictions)
        if done == len(ids) and not sender.is_alive():
            return
        time.sleep(0.25)
    log(f"the run's timeout passed with {len(ids) - done} of {len(ids)} rows unanswered")


MONITOR_ARGS = ("--update-interval-s", "2", "--label-ttl-s", "60", "--cooldown-s", "10")
TRAIN_ARGS = ("--data-timeout-s", "30")


def loop_commands(opts: LoopOptions, *, regression: bool = False) -> list[tuple[str, list[str], str]]:
    """``serve``, ``monitor`` and ``train`` as this bench runs them: (name, arguments, ready line);
    a regression model is retrained with :data:`RECIPE`, judged by MAE."""
    from driftline.demo import TRAIN_READY
    from driftline.services import MONITOR_READY, SERVE_READY

    return [
        ("serve", ["serve", "--device", opts.device, "--max-wait-ms", "20"], SERVE_READY),
        (
            "monitor",
            ["monitor", "--retrain-events", str(opts.retrain_events), *MONITOR_ARGS, *opts.monitor_args],
            MONITOR_READY,
        ),
        (
            "train",
            [
                "train",
                "--epochs",
                str(opts.epochs),
                "--device",
                opts.device,
                *TRAIN_ARGS,
                "--min-rows",
                str(opts.min_rows),
                *(("--recipe", RECIPE, "--metric", "mae") if regression else ()),
                *opts.train_args,
            ],
            TRAIN_READY,
        ),
    ]


# -- one stream, all methods -------------------------------------------------------------------


def bench_stream(settings: Settings | None, name: str, opts: LoopOptions, log: Log) -> dict[str, Any]:
    """Every method on one stream's rows; ``settings`` None leaves Driftline's loop out."""
    stream = load_stream(name, opts.max_rows)
    n = len(stream.y)
    warmup = int(n * opts.warmup)
    at = int(n * opts.drift_at) if opts.drift_at > 0 else None
    if at is not None:
        if not warmup < at < n:
            raise DriftlineError(f"{name}: the drift (row {at}) must come after the warm-up ({warmup} rows)")
        stream = inject_drift(stream, at)
    drift = None if at is None else at - warmup
    y = stream.y[warmup:]
    reg = stream.regression
    predictions: dict[str, Array] = {}
    notes: list[str] = []
    loop: LoopRun | None = None
    if settings is None:
        notes.append("Driftline's side not run (no broker)")
        if reg:
            with tempfile.TemporaryDirectory(prefix="driftline-linear-") as tmp:
                predictions["never_retrained"] = linear_baseline(stream, warmup, Path(tmp))
    else:
        loop = run_driftline(settings, stream, warmup, opts, log)
        predictions["driftline"] = loop.predicted
        predictions["never_retrained"] = loop.first_version_predicted
    for kind in ("arf", "hat"):
        log(f"{name}: River {kind}, in process")
        predictions[kind] = river_predictions(stream, warmup, kind, opts.seed)
    methods = {m: method_figures(_scores(p, y, reg), drift, regression=reg) for m, p in predictions.items()}
    out: dict[str, Any] = {
        "stream": name,
        "task": "regression" if reg else "classification",
        "rows": n,
        "warmup_rows": warmup,
        "evaluated_rows": len(y),
        "drift_row": at,
        "drift": stream.drift if at is not None else "none injected (no documented drift in this dataset)",
        "rate_eps": opts.rate,
        "methods": methods,
        "notes": notes,
    }
    if loop is not None:
        recovered = methods["driftline"].get("rows_to_recover")
        methods["driftline"].update(_loop_figures(loop, drift, recovered))
        for key in ("overall", "after_drift"):
            if key in methods["driftline"]:
                out[f"gap_{key}"] = methods["driftline"][key] - methods["arf"][key]
    return out


def _loop_figures(loop: LoopRun, drift: int | None, recovered: int | None) -> dict[str, Any]:
    first = loop.published[0]["version"] if loop.published else None
    later = [p for p in loop.published if p["version"] != first]
    return {
        "answered": sum(1 for v in loop.versions if v is not None),
        "alerts": loop.alerts,
        "retrain_requests": loop.retrain_requests,
        "versions_published": len(later),
        # a promoted version's latest record is its LIVE (or later RETIRED) status record
        "versions_promoted": sum(
            1
            for p in later
            if p.get("status") in ("LIVE", "RETIRED") or str(p["reason"]).startswith("promot")
        ),
        "versions_serving": sorted({v for v in loop.versions if v is not None}, key=lambda v: (len(v), v)),
        "seconds_to_recover": None
        if drift is None or recovered is None
        else seconds_between(loop.event_ms, drift, drift + recovered - 1),
        "published": loop.published,
    }


def seconds_between(event_ms: Sequence[int | None], start: int, end: int) -> float | None:
    a, b = event_ms[start], event_ms[end]
    return None if a is None or b is None else (b - a) / 1000.0


def run_loop_bench(settings: Settings | None, opts: LoopOptions, log: Log) -> dict[str, Any]:
    """Every stream of ``opts``; the figures as one JSON-ready dict."""
    started = time.monotonic()
    results = []
    for name in opts.streams:
        left = opts.timeout_s - (time.monotonic() - started)
        if left <= 0:
            raise DriftlineError(f"the run's timeout ({opts.timeout_s:.0f}s) passed before {name}")
        results.append(bench_stream(settings, name, replace(opts, timeout_s=left), log))
    return {"streams": results, "window": WINDOW, "seconds": time.monotonic() - started}


# -- report ------------------------------------------------------------------------------------

METHODS = {
    "driftline": "Driftline (serve+monitor+train)",
    "never_retrained": "never retrained (first version)",
    "arf": "River ARF",
    "hat": "River Hoeffding adaptive tree",
}


def format_tables(results: dict[str, Any]) -> str:
    """One plain-text table per stream."""
    return "\n\n".join(_table(s) for s in results["streams"])


def _table(s: dict[str, Any]) -> str:
    metric = next(iter(s["methods"].values()))["metric"]
    lines = [
        f"{s['stream']} ({s['task']}): {s['rows']:,} rows, warm-up {s['warmup_rows']:,}, "
        f"{s['evaluated_rows']:,} evaluated; drift: {s['drift']}; {s['rate_eps']:g} events/s",
        f"{'method':34} {metric + ' all':>12} {'before':>8} {'after':>8} {'recover':>12} "
        f"{'alerts':>6} {'promoted':>8}",
    ]
    for key, label in METHODS.items():
        m = s["methods"].get(key)
        if m is None:
            continue
        recover = m.get("rows_to_recover", "n/a") if "after_drift" in m else "n/a"
        recover = "never" if recover is None else str(recover)
        if m.get("seconds_to_recover") is not None:
            recover += f" ({m['seconds_to_recover']:.0f}s)"
        lines.append(
            f"{label:34} {_num(m['overall']):>12} {_num(m.get('before_drift')):>8} "
            f"{_num(m.get('after_drift')):>8} {recover:>12} {m.get('alerts', ''):>6} "
            f"{m.get('versions_promoted', ''):>8}"
        )
    if "gap_overall" in s:
        lines.append(
            f"gap Driftline - ARF: overall {s['gap_overall']:+.3f}, after the drift "
            f"{s.get('gap_after_drift', float('nan')):+.3f}"
        )
    if "driftline" in s["methods"]:
        d = s["methods"]["driftline"]
        lines.append(
            f"Driftline answered {d['answered']:,} of {d['rows']:,} rows; retraining requests "
            f"{d['retrain_requests']}, versions published {d['versions_published']}, serving "
            f"{', '.join('v' + v for v in d['versions_serving'])}"
        )
    lines += [f"note: {n}" for n in s["notes"]]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.3f}"
