"""The faust-streaming contender of the benchmark: a faust agent used the obvious way.

It measures how fast a plain faust app scores a topic of Driftline events: one agent reads the input
topic from the beginning with its own fresh consumer group, takes batches with
``stream.take_events(batch_size, within=within_s)`` (the variant of ``stream.take`` that yields the
events, so the outputs keep the input key exactly like :class:`~driftline.streams.processor.BatchProcessor`),
runs each batch through :class:`~driftline.streams.processor.BatchProcessor` (the same decode,
``TorchPredictor.predict_batch`` and encode that ``serve`` runs, so only the framework differs) and
``await``\\ s ``topic.send()`` for each prediction.

The clock starts when faust's consumer received the first event (``event.message.time_in``, stamped by
faust's own monitor) and stops when the broker has acknowledged the last of the ``n_events`` outputs.
App start-up (group join, partition assignment) is outside that window and logged separately.

Everything is faust's default except what the task needs (raw serializers, no web server, in-memory
store, a temporary datadir, ``earliest`` offsets, a unique app id): producer linger, acks, compression
and commit intervals are faust's own. Run from the command line::

    python -m driftline.bench.faust_agent --bootstrap-servers H:P --in-topic T --out-topic U \\
        --events N --model DIR

which prints ``{"events": n, "seconds": s, "eps": n / s}`` as one JSON line on stdout (logs go to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, cast

import faust
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from driftline.headers import Headers
from driftline.models.runtime import TorchPredictor
from driftline.schemas.wire import AvroDecoder, AvroEncoder, builtin_store
from driftline.streams.processor import BatchProcessor

log = logging.getLogger("driftline.bench.faust")

STOP_TIMEOUT_S = 30.0
"""Longest wait for faust to shut down (commit, leave the group, flush the producer)."""
ADMIN_TIMEOUT_S = 10.0
"""Longest wait for each metadata or clean-up request to the broker."""


class _FaustMessage:
    """A faust event's message seen through the :class:`SourceMessage` protocol."""

    __slots__ = ("_m",)

    def __init__(self, message: Any) -> None:
        self._m = message

    def value(self) -> bytes | None:
        return cast(bytes | None, self._m.value)

    def key(self) -> bytes | None:
        return cast(bytes | None, self._m.key)

    def topic(self) -> str | None:
        return cast(str, self._m.topic)

    def partition(self) -> int | None:
        return cast(int, self._m.partition)

    def offset(self) -> int | None:
        return cast(int, self._m.offset)

    def timestamp(self) -> tuple[int, int]:
        return (1, int(self._m.timestamp * 1000))

    def headers(self) -> Headers | None:
        return cast(Headers | None, self._m.headers)


class Scorer:
    """Exactly the work ``serve`` does per batch (:class:`BatchProcessor`), so only the framework differs."""

    def __init__(self, model_dir: Path) -> None:
        store = builtin_store()
        self.predictor = TorchPredictor.from_artifact(model_dir)
        self.predictor.warm_up()
        encoder = AvroEncoder.single_object(store.latest("io.driftline.Prediction"))
        self._core = BatchProcessor(AvroDecoder(store), self.predictor, encoder)

    def score(self, events: Sequence[Any]) -> list[tuple[bytes | None, bytes]]:
        """One output per usable event; unusable events are skipped (and logged)."""
        now = time.monotonic()
        arrivals = [e.message.time_in or now for e in events]
        result = self._core.process([_FaustMessage(e.message) for e in events], arrivals)
        if result.dead_letters:
            log.warning("skipping %d unusable events", len(result.dead_letters))
        return list(zip(result.keys, result.values, strict=True))


class Run:
    """The agent's state for one measured run: counts, send futures, clock and outcome."""

    def __init__(self, scorer: Scorer, n_events: int, batch_size: int, within_s: float) -> None:
        self.scorer = scorer
        self.n_events = n_events
        self.batch_size = batch_size
        self.within_s = within_s
        self.consumed = 0
        self.pending: list[Awaitable[Any]] = []
        self.worker_started: float | None = None
        self.worker_ready: float | None = None
        self.first_in: float | None = None
        self.last_ack: float | None = None
        self.error: BaseException | None = None
        self.finished = asyncio.Event()

    async def handle(self, events: Sequence[Any], sink: Any) -> None:
        """Score one batch and send its outputs; after the last event, wait for every acknowledgement."""
        if self.finished.is_set():
            return  # the topic holds more than n_events: leave the rest alone
        batch = events[: self.n_events - self.consumed]
        if self.first_in is None:
            self.first_in = batch[0].message.time_in or time.monotonic()
        try:
            for key, value in self.scorer.score(batch):
                self.pending.append(await sink.send(key=key, value=value))
            self.consumed += len(batch)
            if self.consumed >= self.n_events:
                await asyncio.gather(*self.pending)
                self.last_ack = time.monotonic()
                self.finished.set()
        except Exception as exc:  # reported by run_faust_agent, not swallowed by faust's supervisor
            self.error = exc
            self.finished.set()

    def acked(self) -> int:
        return sum(1 for f in self.pending if isinstance(f, asyncio.Future) and f.done())


def topic_partitions(bootstrap_servers: str, topic: str) -> int:
    """How many partitions ``topic`` has; raises if the broker does not know it."""
    client = AdminClient({"bootstrap.servers": bootstrap_servers})
    meta = client.list_topics(topic=topic, timeout=ADMIN_TIMEOUT_S).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise RuntimeError(f"Topic {topic!r} does not exist at {bootstrap_servers}; create it first.")
    return len(meta.partitions)


def build_app(app_id: str, bootstrap_servers: str, partitions: int, datadir: Path) -> faust.App:
    """A faust app configured as its documentation shows, with nothing tuned."""
    return faust.App(
        app_id,
        broker=f"kafka://{bootstrap_servers}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        store="memory://",
        datadir=str(datadir),
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
    )


def add_agent(app: faust.App, in_topic: str, out_topic: str, run: Run) -> None:
    """The scoring agent: batches from ``in_topic``, predictions to ``out_topic``."""
    source = app.topic(in_topic)
    sink = app.topic(out_topic)

    async def score(stream: Any) -> None:
        async for events in stream.take_events(run.batch_size, within=run.within_s):
            await run.handle(events, sink)

    app.agent(source, name="driftline-score")(score)


async def _serve(app: faust.App, run: Run, timeout_s: float) -> None:
    """Start a faust worker for ``app``, wait until the run is done, and stop it whatever happened."""
    deadline = time.monotonic() + timeout_s
    worker = faust.Worker(
        app,
        loop=asyncio.get_running_loop(),
        daemon=False,  # start() returns once the app runs; the default blocks until stopped
        override_logging=False,  # the caller owns logging
        redirect_stdouts=False,  # stdout is for the result
        stdout=sys.stderr,
        quiet=True,
    )
    worker.spinner = None  # no terminal escapes in the logs
    run.worker_started = time.monotonic()
    try:
        try:
            await asyncio.wait_for(worker.start(), timeout=timeout_s)
        except TimeoutError:
            raise TimeoutError(f"faust did not start within {timeout_s:.0f}s") from None
        run.worker_ready = time.monotonic()
        await _wait_finished(worker, run, deadline - time.monotonic(), timeout_s)
    finally:
        await _stop(worker)


async def _wait_finished(worker: Any, run: Run, left_s: float, timeout_s: float) -> None:
    """Return when the run is done; raise if faust stopped first (signal or crash) or time ran out."""
    done = asyncio.ensure_future(run.finished.wait())
    stopped = asyncio.ensure_future(worker.wait_until_stopped())
    try:
        await asyncio.wait({done, stopped}, timeout=max(0.0, left_s), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (done, stopped):
            fut.cancel()
    if run.error is not None:
        raise run.error
    if run.finished.is_set():
        return
    if worker.should_stop:
        crash: BaseException | None = worker.crash_reason or worker.app.crash_reason
        if crash is not None:
            raise RuntimeError(f"faust crashed: {crash!r}") from crash
        raise KeyboardInterrupt("faust was stopped by a signal before the run finished")
    raise TimeoutError(
        f"faust consumed {run.consumed}/{run.n_events} events and got {run.acked()} acknowledgements "
        f"within the {timeout_s:g}s time limit"
    )


async def _stop(worker: Any) -> None:
    """Stop the worker and with it the app (commit, leave the group, flush), bounded.

    After SIGINT/SIGTERM faust's worker is already stopping in a task of its own; wait for that one,
    as ``mode.Worker.stop_and_shutdown`` does, since a second ``stop()`` returns at once.
    """
    stopping = worker._signal_stop_future
    try:
        await asyncio.wait_for(stopping if stopping is not None else worker.stop(), timeout=STOP_TIMEOUT_S)
    except TimeoutError:
        log.error("faust did not stop within %.0fs; its tasks are cancelled", STOP_TIMEOUT_S)


def cleanup_broker(bootstrap_servers: str, app_id: str) -> None:
    """Delete what faust left on the broker for this run: its internal topics and its consumer group."""
    client = AdminClient({"bootstrap.servers": bootstrap_servers})
    try:
        topics = [t for t in client.list_topics(timeout=ADMIN_TIMEOUT_S).topics if t.startswith(app_id)]
        futures = list(client.delete_consumer_groups([app_id], request_timeout=ADMIN_TIMEOUT_S).values())
        if topics:
            futures += client.delete_topics(topics, operation_timeout=ADMIN_TIMEOUT_S).values()
        for future in futures:
            future.result(timeout=ADMIN_TIMEOUT_S)
    except (KafkaException, TimeoutError) as exc:
        log.warning("could not delete faust's leftovers for %s: %s", app_id, exc)


def run_faust_agent(
    bootstrap_servers: str,
    in_topic: str,
    out_topic: str,
    n_events: int,
    model_dir: Path,
    batch_size: int = 1000,
    within_s: float = 0.02,
    timeout_s: float = 300.0,
) -> dict[str, float]:
    """Consume ``n_events`` from ``in_topic`` with a fresh faust app, score them, produce to ``out_topic``.

    Returns ``{"events": n, "seconds": s, "eps": n / s}``, ``s`` running from the first event consumed
    to the broker's acknowledgement of the last output. The app is stopped on success, failure and
    Ctrl-C; raises :class:`TimeoutError` when the run does not finish within ``timeout_s`` (start-up
    included).
    """
    if n_events < 1:
        raise ValueError("n_events must be at least 1")
    run = Run(Scorer(model_dir), n_events, batch_size, within_s)
    app_id = f"driftline-bench-faust-{uuid.uuid4().hex[:12]}"
    partitions = topic_partitions(bootstrap_servers, in_topic)
    with tempfile.TemporaryDirectory(prefix="driftline-faust-") as datadir:
        app = build_app(app_id, bootstrap_servers, partitions, Path(datadir))
        add_agent(app, in_topic, out_topic, run)
        try:
            asyncio.run(_serve(app, run, timeout_s))
        finally:
            cleanup_broker(bootstrap_servers, app_id)
    return _result(run)


def _result(run: Run) -> dict[str, float]:
    """The measured figures; logs faust's start-up times beside them."""
    if run.worker_started is None or run.worker_ready is None or run.first_in is None or run.last_ack is None:
        raise RuntimeError("the run finished without its timestamps")  # unreachable after a clean finish
    log.info(
        "faust start-up: worker ready %.2fs, first event consumed %.2fs after Worker.start()",
        run.worker_ready - run.worker_started,
        run.first_in - run.worker_started,
    )
    seconds = run.last_ack - run.first_in
    return {"events": run.consumed, "seconds": seconds, "eps": run.consumed / seconds}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT")
    parser.add_argument("--in-topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--model", type=Path, required=True, metavar="DIR")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--within", type=float, default=0.02, metavar="SECONDS")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log faust's own INFO messages too.")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log.setLevel(logging.INFO)
    try:
        result = run_faust_agent(
            args.bootstrap_servers,
            args.in_topic,
            args.out_topic,
            args.events,
            args.model,
            args.batch_size,
            args.within,
            args.timeout,
        )
    except KeyboardInterrupt:
        log.warning("interrupted: faust was stopped before the run finished")
        return 130
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
