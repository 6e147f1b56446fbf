"""Train a candidate from Kafka, judge it against the live version, publish it, maybe promote it.

The training area's one job, used by ``driftline train --once`` (the first model) and by the
trainer service (one run per retraining request):

1. rows: events and labels of the window, joined, in event-time order;
2. the most recent ``eval_fraction`` of them are held out; the candidate trains on the rest (its own
   validation tail gives the reference profile for the drift monitor);
3. candidate and live version are scored on the held-out rows; the candidate is published (signed,
   with its lineage: parent, data windows, metrics, code version, request id) and promoted only if it
   beats the live version by ``margin``, else the record says why not.

Publishing writes the artifact first and the record last, and the promotion after that; a crash at
any point leaves either nothing, or a complete candidate whose record says whether to promote it
(:func:`finish_pending` promotes it on the retry).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.config import Settings
from driftline.models import control
from driftline.models.artifact import load_config, save_artifact
from driftline.models.exported import OnnxPredictor, export, weights
from driftline.models.registry import Record, VersionLedger
from driftline.models.runtime import TorchPredictor, load_predictor
from driftline.models.spec import ModelSpec
from driftline.monitoring.build_profile import reference_profile
from driftline.options import TrainOptions
from driftline.trainers.challenger import IN_ROUND, challenge
from driftline.trainers.dataset import TrainingDataError, TrainingInterruptedError, TrainingSet
from driftline.trainers.fit import fit_classifier
from driftline.trainers.recipe import Recipe, Trained, TrainingContext, TrainingData, load_recipe, run_recipe
from driftline.trainers.scoring import Metric, advantage_confidence, better, metric_for, score

log = logging.getLogger(__name__)

PROMOTING = "promoting"
NOT_PROMOTED = "not promoted"
SHADOWING = "shadowing"


@dataclass(frozen=True)
class Outcome:
    record: Record
    promoted: bool
    candidate_accuracy: float
    """The candidate's score on the held-out rows, in ``metric`` (accuracy unless a recipe's run
    judged by another)."""
    live_accuracy: float | None
    metric: str = "accuracy"
    unused: Mapping[str, int] = field(default_factory=dict)
    """Events and labels of the window that were not used, by reason."""


def next_version(ledger: VersionLedger, name: str) -> str:
    numbers = [int(v) for v in ledger.state(name).versions if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def answered(ledger: VersionLedger, name: str, request_id: str) -> Record | None:
    """The version already trained for ``request_id``, if any (a trainer trains once per request)."""
    for record in ledger.state(name).versions.values():
        if record.get("request_id") == request_id:
            return record
    return None


def finish_pending(
    settings: Settings,
    private_key: bytes,
    record: Record,
    opts: TrainOptions | None = None,
    stop: Callable[[], bool] | None = None,
) -> str | None:
    """Finish what a crash left of an answered request: promote a candidate whose record decided so,
    or judge again on live traffic a challenger whose round did not end (with ``opts``, when its
    parent is still live). Returns what was done, if anything."""
    name, version = str(record["model_name"]), str(record["version"])
    ledger = control.signer_ledger(settings, private_key)
    current = ledger.version(name, version)
    reason = str(current.get("reason", ""))
    if current["status"] == "CANDIDATE" and reason.startswith(PROMOTING):
        control.promote(settings, private_key, name, version)
        return "promoted it now"
    judging = current["status"] == "SHADOW" and reason.startswith(IN_ROUND)
    if not (judging or (current["status"] == "CANDIDATE" and reason.startswith(SHADOWING))):
        return None
    live = ledger.live(name)
    parent = str(current.get("parent_version"))
    why_not = (
        f"v{parent} is no longer live"
        if live is None or str(live["version"]) != parent
        else "this trainer runs without --shadow-events"
        if opts is None or not opts.shadow_events
        else "its record has no spec"
        if not current.get("spec")
        else None
    )
    if why_not is not None or opts is None:
        log.warning(
            "%s v%s was left in the middle of its shadow round against v%s; not judged again, as %s "
            "(promote or retire it with `driftline models`)",
            name,
            version,
            parent,
            why_not,
        )
        return None
    metric = next(k.removeprefix("candidate_") for k in current["metrics"] if k.startswith("candidate_"))
    spec = ModelSpec.model_validate_json(str(current["spec"]))
    promoted, _ = challenge(
        settings,
        private_key,
        current,
        parent,
        spec,
        metric,
        labelled_events=opts.shadow_events,
        timeout=opts.shadow_timeout_s,
        margin=opts.margin,
        stop=stop,
    )
    _interrupted(settings, private_key, name, version, stop)
    return "judged its shadow round again: " + ("promoted" if promoted else "not promoted")


def _interrupted(
    settings: Settings, private_key: bytes, name: str, version: str, stop: Callable[[], bool] | None
) -> None:
    """A shadow round cut short by a stop is not an answer: the request stays uncommitted, so the next
    trainer judges the challenger again."""
    if stop is not None and stop():
        status = control.signer_ledger(settings, private_key).version(name, version)["status"]
        if status == "SHADOW":
            raise TrainingInterruptedError(f"stopped while judging shadow v{version}")


def train_and_publish(
    settings: Settings,
    private_key: bytes,
    name: str,
    data: TrainingSet,
    classes: list[str],
    features: list[str],
    opts: TrainOptions,
    *,
    request_id: str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> Outcome:
    if len(data) < opts.min_rows:
        raise TrainingDataError(f"only {len(data)} labelled rows in the window, {opts.min_rows} needed")
    ledger = control.signer_ledger(settings, private_key)
    live = ledger.live(name)
    version = next_version(ledger, name)
    split = int(len(data) * (1 - opts.eval_fraction))
    x_eval, y_eval = data.x[split:], data.y[split:]
    tried: list[tuple[float, int, Any, npt.NDArray[np.float32]]] = []
    for start in recent_starts(split, opts.recent_shares):
        fit = fit_classifier(
            data.x[start:split],
            data.y[start:split],
            features=features,
            classes=classes,
            name=name,
            version=version,
            architecture=opts.architecture,
            epochs=opts.epochs,
            device=opts.device,
            on_epoch=on_epoch,
        )
        outputs = TorchPredictor(fit.config, fit.module, opts.device).predict_batch(x_eval)
        tried.append((score("accuracy", y_eval, outputs), start, fit, outputs))
    candidate_accuracy, start, fit, outputs = max(tried, key=lambda t: (t[0], -t[1]))
    live_outputs = None if live is None else _live_outputs(settings, live, x_eval, opts.device)
    live_accuracy = None if live_outputs is None else score("accuracy", y_eval, live_outputs)
    sure = None if live_outputs is None else advantage_confidence("accuracy", y_eval, outputs, live_outputs)
    promote = _wins("accuracy", candidate_accuracy, live_accuracy, sure, opts)
    verdict = _verdict(promote, candidate_accuracy, live, live_accuracy, opts.margin)
    verdict += _sureness(sure, opts.confidence, len(y_eval))
    metrics = {
        "candidate_accuracy": candidate_accuracy,
        "train_rows": float(split - start),
        **_window_choice(split, start, len(tried)),
        "eval_rows": float(len(y_eval)),
        "margin": opts.margin,
        **({} if live_accuracy is None else {"live_accuracy": live_accuracy}),
    }
    with tempfile.TemporaryDirectory(prefix="driftline-train-") as tmp:
        artifact = save_artifact(Path(tmp), fit.config, fit.module)
        record = control.publish_version(
            settings,
            artifact,
            private_key,
            parent_version=None if live is None else str(live["version"]),
            training_data=data.windows,
            metrics=metrics,
            reference_profile=fit.reference_profile,
            reason=verdict,
            request_id=request_id,
        )
    log.info("%s v%s: %s", name, version, verdict)
    if promote:
        control.promote(settings, private_key, name, version)
    return Outcome(record, promote, candidate_accuracy, live_accuracy, unused=data.unused)


def train_recipe_and_publish(
    settings: Settings,
    private_key: bytes,
    name: str,
    data: TrainingSet,
    spec: ModelSpec,
    recipe: str,
    opts: TrainOptions,
    *,
    request_id: str | None = None,
    progress: Callable[[float, str], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Train with the team's recipe, then what Driftline does for every recipe: export to ONNX (the
    parity check included), judge candidate and live version on the same held-out rows by the task's
    metric, build the reference profile, publish the signed version with its lineage, and promote it
    only if it wins by ``opts.margin``.

    With ``opts.shadow_events`` > 0, a candidate that wins on the held-out rows is not promoted yet:
    it runs as the shadow on live traffic and is promoted only if it also wins there, on that many
    labelled events (:func:`driftline.trainers.challenger.challenge`); ``stop`` ends that wait."""
    if len(data) < opts.min_rows:
        why = ", ".join(f"{n} {reason}" for reason, n in data.unused.items()) or "none"
        raise TrainingDataError(
            f"only {len(data)} labelled rows in the window, {opts.min_rows} needed (not used: {why})"
        )
    metric = metric_for(opts.metric, spec.is_regression)
    ledger = control.signer_ledger(settings, private_key)
    live = ledger.live(name)
    version = next_version(ledger, name)
    rows = data.recipe_data(spec)
    split = int(len(rows) * (1 - opts.eval_fraction))
    fitting, held_out = rows.slice(0, split), rows.slice(split)
    with tempfile.TemporaryDirectory(prefix="driftline-train-") as tmp:
        live_dir = None if live is None else control.materialize(settings, live, Path(tmp) / "live")
        context = TrainingContext(
            name,
            version,
            opts.device,
            opts.seed,
            None if live is None else str(live["version"]),
            {} if live_dir is None else weights(live_dir),
            progress or (lambda _fraction, _message: None),
        )
        trained, start = _best_recent(load_recipe(recipe), fitting, held_out, context, metric, opts)
        fitting = fitting.slice(start)
        sample = {k: v[:256] for k, v in fitting.inputs().items()}
        artifact = export(
            trained.module, spec, sample, Path(tmp) / "candidate", name=name, version=version, quiet=True
        )
        outputs = OnnxPredictor.from_artifact(artifact, "cpu").predict_batch(held_out.numeric, held_out.codes)
        candidate = score(metric.name, held_out.targets, outputs)
        live_outputs = None if live_dir is None else _live_outputs_of(live_dir, spec, held_out)
        live_score = None if live_outputs is None else score(metric.name, held_out.targets, live_outputs)
        sure = (
            None
            if live_outputs is None
            else advantage_confidence(metric.name, held_out.targets, outputs, live_outputs)
        )
        promote = _wins(metric.name, candidate, live_score, sure, opts)
        verdict = _recipe_verdict(promote, metric, candidate, live, live_score, opts.margin, len(held_out))
        verdict += _sureness(sure, opts.confidence, len(held_out))
        shadowing = opts.shadow_events > 0 and promote and live is not None and live_score is not None
        if shadowing:  # never "promoting: ...", which finish_pending would promote after a crash
            verdict = f"{SHADOWING}: {verdict.removeprefix(PROMOTING + ': ')}; to be judged on live traffic"
        metrics = {
            f"candidate_{metric.name}": candidate,
            **({} if live_score is None else {f"live_{metric.name}": live_score}),
            "train_rows": float(len(fitting)),
            "eval_rows": float(len(held_out)),
            **_window_choice(split, start, len(recent_starts(split, opts.recent_shares))),
            "margin": opts.margin,
            **{f"recipe_{k}": v for k, v in trained.metrics.items()},
        }
        profile = _profile(spec, held_out, outputs, None if data.nulls is None else data.nulls[split:])
        record = control.publish_version(
            settings,
            artifact,
            private_key,
            parent_version=None if live is None else str(live["version"]),
            training_data=data.windows,
            metrics=metrics,
            reference_profile=profile,
            reason=verdict,
            request_id=request_id,
        )
    log.info("%s v%s (recipe %s): %s", name, version, recipe, verdict)
    if shadowing and live is not None:
        promote, record = challenge(
            settings,
            private_key,
            record,
            str(live["version"]),
            spec,
            metric.name,
            labelled_events=opts.shadow_events,
            timeout=opts.shadow_timeout_s,
            margin=opts.margin,
            stop=stop,
        )
        _interrupted(settings, private_key, name, version, stop)
    elif promote:
        control.promote(settings, private_key, name, version)
    return Outcome(record, promote, candidate, live_score, metric.name, data.unused)


def recent_starts(rows: int, shares: Sequence[float], fewest: int = 20) -> list[int]:
    """Where the training rows start for each share of the ``rows`` most recent ones (the whole set
    first; shares leaving fewer than ``fewest`` rows are not tried).

    >>> recent_starts(1000, (1.0, 0.5, 0.25)), recent_starts(60, (1.0, 0.25))
    ([0, 500, 750], [0])
    """
    starts = [rows - max(1, round(rows * share)) for share in shares]
    kept = sorted({s for s in starts if rows - s >= min(fewest, rows)})
    return kept or [0]


def _window_choice(split: int, start: int, tried: int) -> dict[str, float]:
    """Metrics saying which share of the training rows the candidate was fitted on, when several were."""
    return {} if tried < 2 else {"recent_share": (split - start) / split, "recent_shares_tried": float(tried)}


def _best_recent(
    recipe: Recipe,
    fitting: TrainingData,
    held_out: TrainingData,
    context: TrainingContext,
    metric: Metric,
    opts: TrainOptions,
) -> tuple[Trained, int]:
    """The recipe run on each recent share of ``fitting``; the module that scores best on ``held_out``
    (in torch: only the winner is exported), and where its rows start."""
    starts = recent_starts(len(fitting), opts.recent_shares)
    if len(starts) == 1:
        return run_recipe(recipe, fitting, context), starts[0]
    import torch

    best: tuple[float, int, Trained] | None = None
    for start in starts:
        trained = run_recipe(recipe, fitting.slice(start), context)
        with torch.no_grad():
            outputs = trained.module.eval()(*held_out.tensors()).float().numpy()
        value = score(metric.name, held_out.targets, outputs)
        value = value if metric.higher_is_better else -value
        log.info("trained on the most recent %d rows: %s %.4f", len(fitting) - start, metric.name, abs(value))
        if best is None or value > best[0]:
            best = (value, start, trained)
    assert best is not None
    return best[2], best[1]


def _live_outputs_of(
    live_dir: Path, spec: ModelSpec, held_out: TrainingData
) -> npt.NDArray[np.float32] | None:
    """The live version's outputs on the same rows, when it reads the same columns (else None: a
    candidate with other inputs is judged on its own)."""
    predictor = load_predictor(live_dir, "cpu")
    if predictor.config.input_spec.columns != spec.columns:
        log.warning("the live version reads other input fields: the candidate is not compared with it")
        return None
    return predictor.predict_batch(held_out.numeric, held_out.codes)


def _wins(metric: str, candidate: float, live: float | None, sure: float | None, opts: TrainOptions) -> bool:
    """The promotion gate: nothing comparable is live, or the candidate beats it by ``opts.margin``
    and the paired test is ``opts.confidence`` sure of it (where the metric has one)."""
    if live is None:
        return True
    sure_enough = sure is None or sure >= opts.confidence
    return better(metric, candidate, than=live, margin=opts.margin) and sure_enough


def _sureness(sure: float | None, needed: float, rows: int) -> str:
    """How sure the comparison with the live version is, for the record's reason."""
    if sure is None or needed == 0:
        return ""
    return f" (paired test over the {rows} held-out rows: {sure:.2f} sure it is better; {needed:g} needed)"


def _profile(
    spec: ModelSpec,
    held_out: TrainingData,
    outputs: npt.NDArray[np.float32],
    nulls: npt.NDArray[np.bool_] | None,
) -> str | None:
    """The candidate's reference profile from the held-out rows, with each input field's null rate
    there (None with too few rows, or a classifier without numeric inputs)."""
    if len(held_out) < 32 or not (spec.is_regression or spec.numeric_fields):
        return None
    targets = held_out.targets if spec.is_regression else held_out.targets.astype(np.int64)
    profile = reference_profile(spec, held_out.numeric, held_out.codes, outputs, targets, nulls=nulls)
    return profile.to_json()


def _recipe_verdict(
    promote: bool,
    metric: Metric,
    candidate: float,
    live: Record | None,
    live_score: float | None,
    margin: float,
    rows: int,
) -> str:
    direction = "higher" if metric.higher_is_better else "lower"
    how = f"{metric.name} ({metric.how}; {direction} is better) on the {rows} most recent labelled rows"
    if live is None or live_score is None:
        return f"{PROMOTING}: {metric.name} {candidate:.4f}; {how}; nothing comparable is live"
    versus = f"live v{live['version']} ({live_score:.4f}) by {margin}"
    if promote:
        return f"{PROMOTING}: {metric.name} {candidate:.4f} beats {versus}; {how}"
    return f"{NOT_PROMOTED}: {metric.name} {candidate:.4f} does not beat {versus}; {how}"


def _verdict(
    promote: bool, candidate: float, live: Record | None, live_accuracy: float | None, margin: float
) -> str:
    if live is None or live_accuracy is None:
        return f"{PROMOTING}: the first version (held-out accuracy {candidate:.4f})"
    versus = f"live v{live['version']} ({live_accuracy:.4f}) by {margin}"
    if promote:
        return f"{PROMOTING}: held-out accuracy {candidate:.4f} beats {versus}"
    return f"{NOT_PROMOTED}: held-out accuracy {candidate:.4f} does not beat {versus}"


def live_classes_and_features(settings: Settings, live: Record) -> tuple[list[str], list[str]]:
    with tempfile.TemporaryDirectory(prefix="driftline-live-") as tmp:
        config = load_config(control.materialize(settings, live, Path(tmp)))
    return list(config.classes), list(config.features)


def _live_outputs(settings: Settings, live: Record, x: Any, device: str) -> npt.NDArray[np.float32]:
    with tempfile.TemporaryDirectory(prefix="driftline-live-") as tmp:
        predictor = TorchPredictor.from_artifact(control.materialize(settings, live, Path(tmp)), device)
    return predictor.predict_batch(np.ascontiguousarray(x))
