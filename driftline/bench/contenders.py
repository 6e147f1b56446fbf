"""Benchmark contenders that run in their own process and print one JSON line.

``passthrough``: the limit. A plain confluent-kafka loop that consumes the same events and produces
the same number of records of the same size as ``serve`` (a fixed payload the size of a prediction),
with the same delivery discipline (flush, then an asynchronous commit, per batch) and no decoding or
inference.

``serve``: Driftline's :class:`~driftline.streams.serve.StreamProcessor`, as ``driftline serve`` runs it.

Both time from the first event's arrival to the commit after the last event's outputs were
acknowledged, so process start-up and model loading are not counted.

    python -m driftline.bench.contenders serve -b 127.0.0.1:9092 --in-topic T --out-topic U \\
        --events 100000 --model ./model
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import KafkaError, TopicPartition

from driftline.config import Settings, Topics, load_settings
from driftline.options import ServeOptions
from driftline.schemas import AvroEncoder, builtin_store
from driftline.streams import kafka
from driftline.streams.serve import StreamProcessor, build_processor


def prediction_sized_payload(n_classes: int) -> bytes:
    """Bytes as long as a typical prediction record, for the passthrough to produce."""
    encoder = AvroEncoder.single_object(builtin_store().latest("io.driftline.Prediction"))
    return encoder.encode(
        {
            "event_id": "run0000-000000001",
            "event_time": 1_795_000_000_000,
            "model_name": "agrawal",
            "model_version": "1",
            "scores": [0.5] * n_classes,
            "predicted_class": 0,
            "processing_ms": 1.0,
        }
    )


def run_passthrough(settings: Settings, n_events: int, max_batch: int, timeout_s: float) -> dict[str, float]:
    consumer = kafka.consumer(settings, f"bench-pass-{uuid.uuid4().hex[:8]}")
    errors: list[KafkaError] = []
    # The same producer settings as serve's: only failed deliveries are reported back.
    producer = kafka.producer(
        settings, **{"delivery.report.only.error": True, "on_delivery": lambda err, _m: errors.append(err)}
    )
    consumer.subscribe([settings.topics.events])
    payload, out_topic = prediction_sized_payload(2), settings.topics.predictions
    seen, first, deadline = 0, None, time.monotonic() + timeout_s
    try:
        while seen < n_events and time.monotonic() < deadline:
            messages = [m for m in consumer.consume(max_batch, 0.1) if m.error() is None]
            if not messages:
                continue
            first = first or time.monotonic()
            for m in messages:
                producer.produce(out_topic, payload, m.key())
            if producer.flush(60) != 0 or errors:
                raise RuntimeError("passthrough: records not acknowledged")
            consumer.commit(asynchronous=True)  # as serve does: sent only after the batch was acknowledged
            seen += len(messages)
        end = time.monotonic()
    finally:
        consumer.close()
    return _report(seen, n_events, first, end)


def run_serve(
    settings: Settings,
    n_events: int,
    model_dir: Path,
    max_batch: int,
    timeout_s: float,
    device: str,
    exactly_once: bool = False,
) -> dict[str, float]:
    group = f"bench-serve-{uuid.uuid4().hex[:8]}"
    options = ServeOptions(group_id=group, instance_id=group, max_batch=max_batch, exactly_once=exactly_once)
    processor = build_processor(settings, model_dir, options, device=device)
    run_until_handled(processor, n_events, timeout_s)
    return _report(processor.handled, n_events, processor.first_arrival, processor.last_commit)


def run_until_handled(processor: StreamProcessor, n_events: int, timeout_s: float) -> None:
    """Run ``processor`` on a thread of its own until it has handled ``n_events`` events, the
    timeout passes or it stops; then stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while processor.handled < n_events and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.005)
    finally:
        stop.set()
        thread.join(60)


def run_monitor(
    settings: Settings, n_events: int, model_name: str, timeout_s: float, stride: int = 1
) -> dict[str, float]:
    """``driftline monitor`` over the events, their predictions and their labels (3 records per event;
    with ``stride`` > 1, the 1/stride sample of partitions), timed from the first record read to the
    checkpoint after the last. ``eps`` counts the events read; ``stream_eps`` the stream's events
    per second that the sample stands for."""
    from driftline.models.control import load_trusted_keys
    from driftline.options import MonitorOptions
    from driftline.streams.monitor_service import MonitorService

    fresh = f"{settings.topics.monitor_state}.{uuid.uuid4().hex[:8]}"  # no checkpoint of an earlier run
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"monitor_state": fresh})}
    )
    kafka.create_topics(settings, [fresh])
    service = MonitorService(
        settings, model_name, load_trusted_keys(settings), MonitorOptions(partition_stride=stride)
    )
    t = settings.topics
    probe = kafka.consumer(settings, f"bench-probe-{uuid.uuid4().hex[:8]}")
    target = dict.fromkeys(("events", "predictions", "labels"), 0)
    for tp in service.assignment([t.events, t.predictions, t.labels]):
        role = next(r for r in target if getattr(t, r) == tp.topic)
        target[role] += probe.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
    probe.close()
    deadline = time.monotonic() + timeout_s
    first: list[float] = []

    def done() -> bool:
        read = service.records_read()
        if not first and any(read.values()):
            first.append(time.monotonic())
        return all(read[r] >= target[r] for r in target) or time.monotonic() > deadline

    service.run(done)
    end = time.monotonic()
    seen = min(service.records_read().values())
    report = _report(seen, target["events"], first[0] if first else None, end)
    return {**report, "records": 3.0 * seen, "stream_eps": n_events / report["seconds"]}


def _report(seen: int, wanted: int, first: float | None, end: float | None) -> dict[str, float]:
    if seen < wanted or first is None or end is None:
        raise RuntimeError(f"only {seen} of {wanted} events were handled before the timeout")
    seconds = end - first
    return {"events": float(seen), "seconds": seconds, "eps": seen / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("contender", choices=["passthrough", "serve", "monitor"])
    parser.add_argument("-b", "--bootstrap-servers", required=True)
    parser.add_argument("--in-topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--max-batch", type=int, default=2000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--exactly-once", action="store_true")
    parser.add_argument("--scope", help="monitor: the prefix of the run's other topics (Topics.scoped)")
    parser.add_argument("--trusted-key", type=Path, help="monitor: the public key of the registry")
    parser.add_argument("--model-name", default="bench")
    parser.add_argument("--stride", type=int, default=1, help="monitor: read every Nth partition")
    args = parser.parse_args(argv)
    topics = Topics(events=args.in_topic, predictions=args.out_topic, dead_letters=f"{args.out_topic}.dlq")
    if args.scope:
        topics = (
            Topics()
            .scoped(args.scope)
            .model_copy(update={"events": args.in_topic, "predictions": args.out_topic})
        )
    settings = load_settings(bootstrap_servers=args.bootstrap_servers).model_copy(update={"topics": topics})
    if args.trusted_key:
        settings = settings.signed_with([args.trusted_key])
    if args.contender == "passthrough":
        report = run_passthrough(settings, args.events, args.max_batch, args.timeout)
    elif args.contender == "monitor":
        report = run_monitor(settings, args.events, args.model_name, args.timeout, args.stride)
    else:
        report = run_serve(
            settings, args.events, args.model, args.max_batch, args.timeout, args.device, args.exactly_once
        )
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
