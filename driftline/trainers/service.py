"""``driftline train``: the training area as a service (retraining requests from Kafka) or once.

The service consumes ``RetrainRequest`` records in its own consumer group, one at a time, and
commits a request only after it was answered (a candidate published, promoted or not, or the
request found unanswerable), so a crash retrains on restart. The same request twice trains once:
versions carry the id of the request they answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from driftline.config import Settings
from driftline.errors import DecodeError, DriftlineError
from driftline.health import Health
from driftline.metrics import TrainMetrics
from driftline.models import control
from driftline.models.spec import Classification, InputField, ModelSpec
from driftline.options import TrainOptions
from driftline.schemas.wire import AvroDecoder, builtin_store
from driftline.streams import kafka
from driftline.trainers.dataset import TrainingInterruptedError, first_windows, labelled_rows
from driftline.trainers.retrain import (
    Outcome,
    answered,
    finish_pending,
    live_classes_and_features,
    train_and_publish,
    train_recipe_and_publish,
)

DEFAULT_RECIPE = "driftline.trainers.recipes:mlp"

log = logging.getLogger(__name__)
_DECODER = AvroDecoder(builtin_store())

Progress = Callable[[str, int, int], None]
"""(stage, done, total): "data" in records read, "train" in epochs."""


def train_once(
    settings: Settings,
    private_key: bytes,
    name: str,
    rows: int,
    features: list[str],
    classes: list[str],
    opts: TrainOptions,
    progress: Progress | None = None,
    spec: ModelSpec | None = None,
) -> Outcome:
    """Train on the first ``rows`` labelled events of the topics (the first model, or a manual run);
    with a ``spec`` (the team's contract) or a recipe in ``opts``, with the recipe (default: Driftline's
    MLP for any spec). The outcome's ``unused`` says which events and labels were not used, and why."""
    t = settings.topics
    if opts.recipe and spec is None:
        spec = live_spec({}, classes, features)
    data = labelled_rows(
        settings,
        first_windows(settings, t.events, rows),
        first_windows(settings, t.labels, rows),
        spec or features,
        schemas=opts.schemas,
        timeout=opts.data_timeout_s,
        on_progress=None if progress is None else lambda done, total: progress("data", done, total),
    )
    if spec is not None:
        recipe = opts.recipe or DEFAULT_RECIPE
        report = None if progress is None else lambda f, _m: progress("train", round(100 * f), 100)
        return train_recipe_and_publish(
            settings, private_key, name, data, spec, recipe, opts, progress=report
        )
    return train_and_publish(
        settings,
        private_key,
        name,
        data,
        classes,
        features,
        opts,
        on_epoch=None if progress is None else lambda e, _loss: progress("train", e + 1, opts.epochs),
    )


def answer_request(
    settings: Settings,
    private_key: bytes,
    name: str,
    request: Mapping[str, Any],
    opts: TrainOptions,
    stop: Callable[[], bool] | None = None,
) -> Outcome | None:
    """Train for one request, unless it was answered already (then finish what a crash left)."""
    request_id = str(request["request_id"])
    ledger = control.signer_ledger(settings, private_key)
    done = answered(ledger, name, request_id)
    if done is not None:
        finished = finish_pending(settings, private_key, done, opts, stop)
        then = f"; {finished}" if finished else ""
        log.info("request %s was answered by v%s already%s", request_id, done["version"], then)
        return None
    live = ledger.live(name)
    if live is None:
        raise DriftlineError(f"{name} has no live version: train the first one with `driftline train --once`")
    asked_for = request.get("model_version")
    if asked_for is not None and str(asked_for) != str(live["version"]):
        log.warning(
            "request %s is for %s v%s, but v%s is live now: dropped (the monitor asks again if v%s drifts)",
            request_id,
            name,
            asked_for,
            live["version"],
            live["version"],
        )
        return None
    if live.get("spec") and not opts.recipe:  # never replace a team's own model with the built-in MLP
        raise DriftlineError(
            f"{name} v{live['version']} is your own exported model: the built-in trainer fits only its "
            "MLP, so this request is not answered. Give train your training function with --recipe "
            "package.module:function (or --recipe driftline.trainers.recipes:mlp for Driftline's MLP)."
        )
    classes, features = live_classes_and_features(settings, live)
    spec = live_spec(live, classes, features) if opts.recipe else None
    t = settings.topics
    windows = list(request["training_data"])
    data = labelled_rows(
        settings,
        [w for w in windows if w["topic"] == t.events],
        [w for w in windows if w["topic"] == t.labels],
        spec or features,
        schemas=opts.schemas,
        timeout=opts.data_timeout_s,
        stop=stop,
    )
    log.info(
        "request %s (%s): training v-next of %s on %d labelled rows",
        request_id,
        request["reason"],
        name,
        len(data),
    )
    if spec is not None and opts.recipe:
        return train_recipe_and_publish(
            settings, private_key, name, data, spec, opts.recipe, opts, request_id=request_id, stop=stop
        )
    return train_and_publish(
        settings, private_key, name, data, classes, features, opts, request_id=request_id
    )


def live_spec(live: Mapping[str, Any], classes: list[str], features: list[str]) -> ModelSpec:
    """The contract a recipe trains for: the live version's spec, or for a built-in model its numeric
    features and classes (a recipe's module returns logits)."""
    if live.get("spec"):
        return ModelSpec.model_validate_json(str(live["spec"]))
    return ModelSpec(
        inputs=tuple(InputField(name=f) for f in features),
        task=Classification(classes=tuple(classes), outputs="logits"),
    )


def serve_requests(
    settings: Settings,
    private_key: bytes,
    name: str,
    opts: TrainOptions,
    stop: Callable[[], bool],
    on_ready: Callable[[], None] | None = None,
    metrics: TrainMetrics | None = None,
    health: Health | None = None,
) -> None:
    metrics, health = metrics or TrainMetrics(), health or Health()
    consumer = kafka.consumer(
        settings,
        f"driftline-train-{name}",
        **health.client_settings(),
        **{"max.poll.interval.ms": 1_800_000},
    )
    health.set("group", False, f"joining group driftline-train-{name}")

    def assigned(*_: object) -> None:
        health.set("group", True, "joined")
        if on_ready is not None:
            on_ready()

    consumer.subscribe([settings.topics.retrain_requests], on_assign=assigned)
    try:
        while not stop():
            health.beat()
            batch = kafka.data_messages(consumer.consume(100, 0.5))
            requests: list[Mapping[str, Any] | None] = []
            for message in batch:
                try:
                    requests.append(_DECODER.decode(message.value()))
                except DecodeError as exc:
                    log.error(
                        "skipping an undecodable retraining request at offset %s: %s", message.offset(), exc
                    )
                    metrics.requests.labels("failed").inc()
                    requests.append(None)
            later = superseded(requests)
            for i, (message, request) in enumerate(zip(batch, requests, strict=True)):
                if request is not None and request.get("model_name") == name:
                    if i in later:
                        log.info("request %s is superseded by %s: skipped", request["request_id"], later[i])
                        metrics.requests.labels("superseded").inc()
                    elif not _answer(settings, private_key, name, request, opts, stop, metrics, health):
                        return  # stopped: not committed, so it is not lost
                consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()


def superseded(requests: Sequence[Mapping[str, Any] | None]) -> dict[int, str]:
    """Scheduled (continuous) requests that a later request for the same model version makes pointless
    (it trains on fresher data): their index, and the id of the last request that supersedes them.

    >>> r = lambda i, v, alert="": {"request_id": i, "model_name": "m", "model_version": v, "alert_id": alert}
    >>> superseded([r("s1", "1"), r("a1", "1", "drift"), r("s2", "1"), None, r("s3", "2")])
    {0: 's2'}
    """
    last: dict[tuple[str, str], str] = {}
    out: dict[int, str] = {}
    for i in range(len(requests) - 1, -1, -1):
        request = requests[i]
        if request is None:
            continue
        key = (str(request.get("model_name")), str(request.get("model_version")))
        if not request.get("alert_id") and key in last:
            out[i] = last[key]
        last.setdefault(key, str(request["request_id"]))
    return out


def _answer(
    settings: Settings,
    private_key: bytes,
    name: str,
    request: Mapping[str, Any],
    opts: TrainOptions,
    stop: Callable[[], bool],
    metrics: TrainMetrics,
    health: Health,
) -> bool:
    """Answer one request (or say why it cannot be); False when stopped before it was answered."""
    started = time.monotonic()
    try:
        with health.working(f"request {request.get('request_id')}"):
            outcome = answer_request(settings, private_key, name, request, opts, stop)
        _count(metrics, name, outcome, time.monotonic() - started)
    except TrainingInterruptedError:
        log.info("stopped before request %s was answered; a trainer takes it up again", request["request_id"])
        return False
    except DriftlineError as exc:  # not enough data, no live version: say so, do not retry forever
        log.error("could not answer request %s: %s", request.get("request_id"), exc)
        metrics.requests.labels("failed").inc()
    return True


def _count(metrics: TrainMetrics, name: str, outcome: Outcome | None, seconds: float) -> None:
    if outcome is None:
        metrics.requests.labels("duplicate").inc()
        return
    metrics.requests.labels("promoted" if outcome.promoted else "not-promoted").inc()
    metrics.seconds.observe(seconds)
    metrics.accuracy.labels(name).set(outcome.candidate_accuracy)
