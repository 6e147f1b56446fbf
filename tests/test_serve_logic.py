"""serve's Kafka bookkeeping on fake clients, in milliseconds: a rebalance in the middle of a batch, an
aborted transaction, a lost partition. The broker tests (test_serve.py) prove the same on the real thing."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, Producer

from driftline.config import Settings, Topics
from driftline.models import ModelConfig, TorchPredictor, build_module
from driftline.options import ServeOptions
from driftline.schemas import AvroDecoder, AvroEncoder, builtin_store
from driftline.streams.processor import BatchProcessor
from driftline.streams.serve import StreamProcessor
from driftline.testing import FakeCluster, FakeGroupConsumer, FakeProducer

STORE = builtin_store()
EVENTS = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
DECODER = AvroDecoder(STORE)
TOPICS = Topics()
COUNT = 400


def cluster_with_events(count: int = COUNT) -> FakeCluster:
    cluster = FakeCluster({TOPICS.events: 3})
    for i in range(count):
        value = EVENTS.encode(
            {"event_id": f"e{i}", "event_time": 1, "features": [float(i % 7), 1.0], "source": None}
        )
        cluster.append(TOPICS.events, value, f"e{i}".encode(), partition=i % 3)
    return cluster


def processor(
    cluster: FakeCluster, consumer: FakeGroupConsumer, producer: FakeProducer, exactly_once: bool = False
) -> StreamProcessor:
    config = ModelConfig(
        name="m", version="1", architecture="logistic", features=["a", "b"], classes=["n", "y"]
    )
    core = BatchProcessor(
        AvroDecoder(STORE),
        TorchPredictor(config, build_module(config), "cpu"),
        AvroEncoder.single_object(STORE.latest("io.driftline.Prediction")),
    )
    options = ServeOptions(group_id="g", max_batch=50, max_wait_ms=200.0, exactly_once=exactly_once)
    settings = Settings(bootstrap_servers="fake:9092")
    return StreamProcessor(
        settings,
        core,
        options,
        consumer=cast(Consumer, consumer),
        producer=cast(Producer, producer),
    )


def serve_until_handled(proc: StreamProcessor, count: int) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=proc.run, args=(stop,))
    thread.start()
    try:
        thread.join(timeout=0.05)
        deadline = 600  # * 0.05 s: generous for a busy machine
        while proc.handled < count and thread.is_alive() and deadline:
            thread.join(timeout=0.05)
            deadline -= 1
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def prediction_ids(cluster: FakeCluster) -> Counter[str]:
    values = [m.value() for m in cluster.messages(TOPICS.predictions)]
    return Counter(str(DECODER.decode(v)["event_id"]) for v in values)


def committed_total(cluster: FakeCluster) -> int:
    return sum(cluster.committed.get("g", {}).values())


@pytest.mark.parametrize("call", [3, 4, 7])
def test_a_rebalance_mid_batch_finishes_and_commits_the_batch_before_the_partitions_go(call: int) -> None:
    cluster = cluster_with_events()
    consumer = FakeGroupConsumer(cluster, "g", rebalances={call: "revoke"}, per_call=20)
    proc = processor(cluster, consumer, FakeProducer(cluster=cluster))
    at_revoke: list[tuple[int, int, int]] = []
    finish_and_commit = proc._on_revoke

    def revoked(c: Any, partitions: Any) -> None:
        pending = len(proc._pending)
        finish_and_commit(c, partitions)
        at_revoke.append((pending, proc.handled, committed_total(cluster)))

    proc._on_revoke = revoked  # type: ignore[method-assign,assignment]
    serve_until_handled(proc, COUNT)
    [(pending, handled, committed)] = at_revoke
    assert pending > 0  # the revocation came in the middle of a batch
    assert committed == handled  # which was finished and committed before the partitions went
    got = prediction_ids(cluster)
    assert set(got) == {f"e{i}" for i in range(COUNT)}
    assert max(got.values()) == 1  # so the next owner replays nothing
    assert committed_total(cluster) == COUNT


def test_an_aborted_transaction_is_replayed_and_published_once() -> None:
    cluster = cluster_with_events()
    producer = FakeProducer(cluster=cluster)
    producer.fail_commits = 2
    proc = processor(cluster, FakeGroupConsumer(cluster, "g"), producer, exactly_once=True)
    serve_until_handled(proc, COUNT)
    got = prediction_ids(cluster)
    assert producer.aborted == 2
    assert set(got) == {f"e{i}" for i in range(COUNT)}
    assert max(got.values()) == 1  # nothing of the aborted transactions is visible
    assert committed_total(cluster) == COUNT  # offsets committed inside the transactions


def test_a_lost_partition_abandons_the_batch_uncommitted_and_it_is_replayed() -> None:
    cluster = cluster_with_events()
    consumer = FakeGroupConsumer(cluster, "g", rebalances={3: "lose"}, per_call=20)
    proc = processor(cluster, consumer, FakeProducer(cluster=cluster))
    serve_until_handled(proc, COUNT)
    got = prediction_ids(cluster)
    assert set(got) == {f"e{i}" for i in range(COUNT)}  # nothing lost
    assert committed_total(cluster) == COUNT


def test_outputs_go_to_the_partition_number_of_their_event_when_co_partitioned() -> None:
    cluster = cluster_with_events()  # events placed by index, not by the key's hash
    for topic in (TOPICS.predictions, TOPICS.dead_letters):
        cluster.topics[topic] = [[], [], []]
    cluster.append(TOPICS.events, b"junk", b"bad", partition=2)
    consumer = FakeGroupConsumer(cluster, "g")
    config = ModelConfig(
        name="m", version="1", architecture="logistic", features=["a", "b"], classes=["n", "y"]
    )
    core = BatchProcessor(
        AvroDecoder(STORE),
        TorchPredictor(config, build_module(config), "cpu"),
        AvroEncoder.single_object(STORE.latest("io.driftline.Prediction")),
    )
    proc = StreamProcessor(
        Settings(bootstrap_servers="fake:9092"),
        core,
        ServeOptions(group_id="g", max_batch=50, max_wait_ms=200.0),
        consumer=cast(Consumer, consumer),
        producer=cast(Producer, FakeProducer(cluster=cluster)),
        copartitioned=True,
    )
    serve_until_handled(proc, COUNT + 1)
    event_partition = {m.key(): m.partition() for m in cluster.messages(TOPICS.events)}
    predictions = cluster.messages(TOPICS.predictions)
    assert len(predictions) == COUNT
    assert all(m.partition() == event_partition[m.key()] for m in predictions)
    [dead] = cluster.messages(TOPICS.dead_letters)
    assert dead.partition() == 2
