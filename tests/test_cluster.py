"""A local three-node cluster: topics with three replicas and min.insync.replicas=2, a broker killed
(SIGKILL) while `driftline serve` runs loses nothing, and the cluster resumes across stop/start.

One cluster serves the whole module, in a temporary home (not the session's broker). Three JVMs on a
busy 2-core machine start slowly, and a killed node first recovers its logs: timeouts are generous,
and no test asserts on wall-clock time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from driftline.broker import LocalBroker
from driftline.cli import main
from driftline.config import Settings, Topics, load_settings
from driftline.schemas import AvroEncoder
from driftline.streams import kafka
from driftline.streams.produce import produce_stream
from driftline.streams.synthetic import generate
from tests.helpers import STORE, prediction_ids, produce_events, read_topic, serving

pytestmark = pytest.mark.kafka

START_TIMEOUT = 240.0
READ_TIMEOUT = 240.0
NODES = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker(
        tmp_path_factory.mktemp("cluster"), load_settings().cache_dir, partitions=3, nodes=NODES
    )
    broker.start(timeout=START_TIMEOUT)
    try:
        yield broker
    finally:
        broker.stop()


def _settings(cluster: LocalBroker) -> Settings:
    info = cluster.status()
    assert info is not None
    topics = Topics().scoped(f"c{uuid.uuid4().hex[:10]}", partitions=3)
    return load_settings(bootstrap_servers=info.bootstrap_servers).model_copy(update={"topics": topics})


def _victim(settings: Settings) -> int:
    """A node that leads a partition of the events and is not the group coordinator.

    Not the group coordinator: when the node that coordinates both the group and the transaction
    dies, librdkafka 2.16's ``send_offsets_to_transaction`` can block past its timeout, for good
    (confluentinc/librdkafka#5456, #5511); ``serve --exactly-once`` then stops serving.
    """
    meta = kafka.admin(settings).list_topics(timeout=30).topics
    coordinator = meta["__consumer_offsets"].partitions[0].leader  # offsets.topic.num.partitions=1
    leaders = {p.leader for p in meta[settings.topics.events].partitions.values()}
    return min((leaders - {coordinator}) or set(range(1, NODES + 1)) - {coordinator})


def _leaders(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> leader node (-1 while it has none)."""
    meta = kafka.admin(settings).list_topics(topic, timeout=30).topics[topic]
    return {p: m.leader for p, m in meta.partitions.items()}


def _min_insync_replicas(settings: Settings, topic: str) -> str:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = kafka.admin(settings)
    entries = client.describe_configs([resource], request_timeout=30)[resource].result(timeout=30)
    return str(entries["min.insync.replicas"].value)


def _wait_until(condition: str, check: Callable[[], bool], timeout: float = READ_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {condition} within {timeout:.0f}s"
        time.sleep(0.5)


class _Producer(threading.Thread):
    """``driftline produce``'s loop at a steady rate, in the background; keeps its error if it fails."""

    def __init__(self, settings: Settings, count: int, rate: float, run_id: str) -> None:
        super().__init__()
        self.settings, self.count, self.rate, self.run_id = settings, count, rate, run_id
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        data = generate("agrawal", self.count, seed=5)
        encoder = AvroEncoder.single_object(STORE.latest("io.driftline.InputEvent"))
        try:
            produce_stream(
                self.settings, data, encoder, None, run_id=self.run_id, rate=self.rate, timeout=READ_TIMEOUT
            )
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def ids(self) -> set[str]:
        return {f"{self.run_id}-{i:09d}" for i in range(self.count)}


def test_the_cli_cluster_has_three_nodes_and_topics_with_three_replicas(cluster: LocalBroker) -> None:
    runner = CliRunner(env={"DRIFTLINE_BOOTSTRAP_SERVERS": None})
    home = ["--home", str(cluster.home)]
    status = runner.invoke(main, [*home, "broker", "status"])
    assert status.exit_code == 0, status.output
    nodes = json.loads(status.output)["nodes"]
    assert [(n["node_id"], n["running"]) for n in nodes] == [(1, True), (2, True), (3, True)]

    created = runner.invoke(main, [*home, "topics", "create"])  # finds the local cluster by itself
    assert created.exit_code == 0, created.output
    assert "driftline.events: created" in created.output
    settings = load_settings(bootstrap_servers=json.loads(status.output)["bootstrap_servers"])
    meta = kafka.admin(settings).list_topics(timeout=30).topics
    for name in settings.topics.all_names():
        partitions = meta[name].partitions.values()
        assert all(sorted(p.replicas) == [1, 2, 3] for p in partitions), name
    assert _min_insync_replicas(settings, settings.topics.events) == "2"


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_a_broker_killed_mid_stream_loses_nothing(
    cluster: LocalBroker, model_dir: Path, tmp_path: Path, exactly_once: bool
) -> None:
    """SIGKILL a node leading a partition of the events while events flow in (acks=all), bring it
    back, produce more: every event has a prediction; read_committed, exactly one with --exactly-once."""
    assert kafka.PRODUCER_DEFAULTS["enable.idempotence"], "idempotence implies acks=all"
    settings = _settings(cluster)
    kafka.create_topics(settings)
    events = settings.topics.events
    args = ["--group", "g-fault", "--instance-id", "one", "--max-batch", "200", "--max-wait-ms", "5"]
    if exactly_once:
        args.append("--exactly-once")
    with serving(settings, model_dir, tmp_path / "serve.log", *args) as running:
        producer = _Producer(settings, 6000, rate=1500, run_id="during")
        try:
            read_topic(settings, settings.topics.predictions, expected=1000, settle=0, timeout=READ_TIMEOUT)
            victim = _victim(settings)
            assert cluster.kill_node(victim)
            _wait_until("leader moved", lambda: victim not in _leaders(settings, events).values())
            cluster.start_node(victim, timeout=START_TIMEOUT)
        finally:
            producer.join(READ_TIMEOUT)
        assert producer.error is None, repr(producer.error)
        after = produce_events(settings, 1000, run_id="after", seed=2)
        expected = producer.ids() | set(after)
        predictions = read_topic(
            settings,
            settings.topics.predictions,
            expected=len(expected),
            read_committed=exactly_once,
            timeout=READ_TIMEOUT,
        )
        assert running.proc.poll() is None, running.output()[-3000:]
    got = Counter(prediction_ids(predictions))
    assert set(got) == expected, f"{len(expected - set(got))} events without a prediction"
    if exactly_once:
        assert max(got.values()) == 1, "a read_committed view must hold no duplicate"


def test_a_stopped_cluster_resumes_its_nodes_topics_and_records(cluster: LocalBroker) -> None:
    record = cluster.saved()
    settings = _settings(cluster)
    topic = settings.topics.events
    kafka.create_topics(settings, [topic])
    keys = produce_events(settings, 300, run_id="kept")
    assert cluster.stop()

    again = cluster.start(timeout=START_TIMEOUT)
    assert again.bootstrap_servers == settings.bootstrap_servers
    assert cluster.saved() == record  # same cluster id and ports, not formatted again
    kept = kafka.read_to_end(settings, topic, timeout=READ_TIMEOUT)
    assert sorted(prediction_ids(kept)) == sorted(keys)
