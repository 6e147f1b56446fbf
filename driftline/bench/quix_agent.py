"""The Quix Streams contender of the benchmark: a Quix Streams application used the obvious way.

It measures how fast a plain Quix Streams app scores a topic of Driftline events: an ``Application``
with a fresh consumer group reads the input topic from the beginning (raw ``bytes`` serializers), one
``sdf.apply(score, metadata=True)`` scores each message through
:class:`~driftline.streams.processor.BatchProcessor` (the same decode, ``TorchPredictor.predict_batch``
and encode that ``serve`` runs, here on a batch of one), and ``sdf.to_topic`` produces the prediction
with the input's key. ``app.run(count=n_events)`` stops after the ``n_events``-th output and commits
its last checkpoint (the producer is flushed, so every output was acknowledged, then offsets are
committed) before it returns.

Quix processes one message at a time, and that is what a Quix user writes. It has no stateless
micro-batch operator: count windows (``sdf.tumbling_count_window(n).collect()``) are stateful
(RocksDB plus a changelog topic) and grouped by message key, so with one key per event, as here, they
never fill; ``BatchingSink`` batches writes to external systems at checkpoints, not to a Kafka topic.

The clock starts when the first event reaches the ``apply`` callback and stops when ``app.run``
returned (its final checkpoint, including the producer flush, done); app start-up (topic checks, group
join) is outside it. Everything is Quix's default except what the task needs (bytes serializers,
``earliest`` offsets, a unique consumer group, a temporary state directory, Quix's own log level).

Quix Streams pins an older confluent-kafka than Driftline's, so this module runs on the interpreter of
its own virtualenv (:mod:`driftline.bench.quix_env`); ``driftline bench`` starts it as::

    QUIX_VENV/bin/python -m driftline.bench.quix_agent --bootstrap-servers H:P --in-topic T \\
        --out-topic U --events N --model DIR

which prints ``{"events": n, "seconds": s, "eps": n / s}`` as one JSON line on stdout (logs go to
stderr). quixstreams is imported only when the app is built, so the module imports without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from driftline.headers import Headers
from driftline.models.runtime import TorchPredictor
from driftline.schemas.wire import AvroDecoder, AvroEncoder, builtin_store
from driftline.streams.processor import BatchProcessor

log = logging.getLogger("driftline.bench.quix")

ADMIN_TIMEOUT_S = 10.0
"""Longest wait for each metadata or clean-up request to the broker."""


class _QuixMessage:
    """One message as Quix hands it to ``apply(metadata=True)``, seen through :class:`SourceMessage`."""

    __slots__ = ("_context", "_headers", "_key", "_timestamp", "_value")

    def __init__(self, value: bytes | None, key: bytes | None, timestamp: int, headers: Any, context: Any):
        self._value, self._key, self._timestamp, self._headers = value, key, timestamp, headers
        self._context = context

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str | None:
        return cast(str, self._context.topic)

    def partition(self) -> int | None:
        return cast(int, self._context.partition)

    def offset(self) -> int | None:
        return cast(int, self._context.offset)

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)

    def headers(self) -> Headers | None:
        return cast(Headers | None, self._headers)


class Scorer:
    """Exactly the work ``serve`` does per batch (:class:`BatchProcessor`), on one event per call."""

    def __init__(self, model_dir: Path) -> None:
        store = builtin_store()
        self.predictor = TorchPredictor.from_artifact(model_dir)
        self.predictor.warm_up()
        encoder = AvroEncoder.single_object(store.latest("io.driftline.Prediction"))
        self._core = BatchProcessor(AvroDecoder(store), self.predictor, encoder)

    def score(self, message: _QuixMessage, arrival: float) -> bytes | None:
        """The prediction for one event, or ``None`` when the event is unusable."""
        result = self._core.process([message], [arrival])
        return result.values[0] if result.values else None


class Run:
    """The app's state for one measured run: counts and clock. ``context`` is Quix's
    ``message_context`` (the topic, partition and offset of the message being processed)."""

    def __init__(self, scorer: Scorer, n_events: int, context: Callable[[], Any]) -> None:
        self.scorer = scorer
        self.n_events = n_events
        self.context = context
        self.consumed = 0
        self.skipped = 0
        self.first_in: float | None = None

    def handle(self, value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> bytes | None:
        """The ``sdf.apply(..., metadata=True)`` callback: score one message."""
        now = time.monotonic()
        if self.first_in is None:
            self.first_in = now
        self.consumed += 1
        scored = self.scorer.score(_QuixMessage(value, key, timestamp, headers, self.context()), now)
        if scored is None:
            self.skipped += 1
        return scored


def topic_partitions(bootstrap_servers: str, topic: str) -> int:
    """How many partitions ``topic`` has; raises if the broker does not know it."""
    client = AdminClient({"bootstrap.servers": bootstrap_servers})
    meta = client.list_topics(topic=topic, timeout=ADMIN_TIMEOUT_S).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise RuntimeError(f"Topic {topic!r} does not exist at {bootstrap_servers}; create it first.")
    return len(meta.partitions)


def build_app(bootstrap_servers: str, group: str, state_dir: Path) -> Any:
    """A Quix Streams ``Application`` configured as its documentation shows, with nothing tuned."""
    from quixstreams import Application  # type: ignore[import-not-found]

    return Application(
        broker_address=bootstrap_servers,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=str(state_dir),
        loglevel=None,  # the caller owns logging
    )


def add_dataframe(app: Any, in_topic: str, out_topic: str, run: Run) -> None:
    """The scoring pipeline: each message of ``in_topic`` scored, its prediction to ``out_topic``."""
    source = app.topic(in_topic, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(out_topic, key_serializer="bytes", value_serializer="bytes")
    sdf = app.dataframe(source)
    sdf = sdf.apply(run.handle, metadata=True)
    sdf = sdf.filter(lambda value: value is not None)  # unusable events: no output (counted in run)
    sdf.to_topic(sink)


def cleanup_broker(bootstrap_servers: str, group: str) -> None:
    """Delete the consumer group the run left on the broker."""
    client = AdminClient({"bootstrap.servers": bootstrap_servers})
    try:
        for future in client.delete_consumer_groups([group], request_timeout=ADMIN_TIMEOUT_S).values():
            future.result(timeout=ADMIN_TIMEOUT_S)
    except (KafkaException, TimeoutError) as exc:
        log.warning("could not delete the Quix consumer group %s: %s", group, exc)


def run_quix_agent(
    bootstrap_servers: str,
    in_topic: str,
    out_topic: str,
    n_events: int,
    model_dir: Path,
    timeout_s: float = 300.0,
) -> dict[str, float]:
    """Consume ``n_events`` from ``in_topic`` with a fresh Quix app, score them, produce to ``out_topic``.

    Returns ``{"events": n, "seconds": s, "eps": n / s}``, ``s`` running from the first event scored to
    the end of the app's final checkpoint (outputs acknowledged, offsets committed). The app stops on
    success, failure, SIGTERM and Ctrl-C (Quix's own handlers); a watchdog stops it after ``timeout_s``
    (start-up included) and :class:`TimeoutError` is raised.
    """
    if n_events < 1:
        raise ValueError("n_events must be at least 1")
    from quixstreams import message_context

    run = Run(Scorer(model_dir), n_events, message_context)
    topic_partitions(bootstrap_servers, in_topic)  # fail fast, before Quix would create the topic
    group = f"driftline-bench-quix-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="driftline-quix-") as state_dir:
        app = build_app(bootstrap_servers, group, Path(state_dir))
        add_dataframe(app, in_topic, out_topic, run)
        timed_out = threading.Event()

        def time_out() -> None:
            timed_out.set()
            app.stop()

        watchdog = threading.Timer(timeout_s, time_out)
        watchdog.daemon = True
        started = time.monotonic()
        watchdog.start()
        try:
            app.run(count=n_events, collect=False)
            end = time.monotonic()
        finally:
            watchdog.cancel()
            cleanup_broker(bootstrap_servers, group)
    return _result(run, started, end, timed_out.is_set(), timeout_s)


def _result(run: Run, started: float, end: float, timed_out: bool, timeout_s: float) -> dict[str, float]:
    """The measured figures; logs Quix's start-up time beside them."""
    outputs = run.consumed - run.skipped
    if timed_out:
        raise TimeoutError(
            f"Quix scored {run.consumed}/{run.n_events} events ({run.skipped} unusable) "
            f"within the {timeout_s:g}s time limit"
        )
    if run.first_in is None or outputs < run.n_events:  # app.run returned early: SIGTERM or Ctrl-C
        raise KeyboardInterrupt(f"Quix was stopped after {outputs}/{run.n_events} outputs")
    if run.skipped:
        log.warning("skipped %d unusable events", run.skipped)
    log.info("Quix start-up: first event scored %.2fs after app.run()", run.first_in - started)
    seconds = end - run.first_in
    return {"events": float(outputs), "seconds": seconds, "eps": outputs / seconds}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT")
    parser.add_argument("--in-topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--model", type=Path, required=True, metavar="DIR")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log Quix's own INFO messages too.")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log.setLevel(logging.INFO)
    try:
        result = run_quix_agent(
            args.bootstrap_servers, args.in_topic, args.out_topic, args.events, args.model, args.timeout
        )
    except KeyboardInterrupt:
        log.warning("interrupted: the Quix app was stopped before the run finished")
        return 130
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
