"""Hot swap across architectures and specs: a running `serve` of the built-in Agrawal MLP (v1, numeric
features) is given, under load, an exported ONNX version (v2) of another architecture that reads other
fields (an embedding of a categorical ``region`` next to a small MLP on three numeric features). The
events are business records carrying every field of both versions, except a known set that lacks
``region``: v1 predicts those, v2 dead-letters them naming the field and its version. Every event gets
exactly one outcome, each partition changes version once, at a batch boundary, and v2's scores equal
its module run here. Rolling back to v1 under load keeps the same guarantees."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from confluent_kafka import Message
from torch import nn

import driftline
from driftline.config import Settings
from driftline.models import control
from driftline.models.runtime import load_predictor
from driftline.models.spec import ModelSpec
from driftline.schemas import AvroEncoder, AvroSchema
from driftline.services import SERVE_READY, service
from driftline.streams import kafka
from driftline.streams.synthetic import generate
from tests.helpers import DECODER, MODEL, dlq_headers, versioned

pytestmark = pytest.mark.kafka

AGRAWAL = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
CLASSES = ("group A", "group B")
REGIONS = ("north", "south", "east", "west")
SEEN_REGIONS = (*REGIONS, "islands")  # "islands": a region v2 never saw, read as its unseen bucket
V2_NUMERIC = ("salary", "age", "hvalue")
MISSING_EVERY = 50
"""Every 50th event lacks ``region``."""

_EVENT_FIELDS: list[dict[str, Any]] = [
    {"name": "event_id", "type": "string"},
    {"name": "event_time", "type": "long"},
    *({"name": name, "type": "double"} for name in AGRAWAL),
]
LOAN = {
    "type": "record",
    "name": "LoanApplication",
    "namespace": "com.example.loans",
    "fields": [*_EVENT_FIELDS, {"name": "region", "type": "string"}],
}
LOAN_NO_REGION = {
    "type": "record",
    "name": "LoanApplicationWithoutRegion",
    "namespace": "com.example.loans",
    "fields": _EVENT_FIELDS,
}


class RegionNet(nn.Module):
    """Not one of Driftline's architectures: a region embedding beside a small MLP on three features."""

    def __init__(self) -> None:
        super().__init__()
        self.region = nn.Embedding(len(REGIONS) + 1, 4)
        self.hidden = nn.Linear(len(V2_NUMERIC) + 4, 12)
        self.out = nn.Linear(12, len(CLASSES))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        h = torch.cat([numeric, self.region(categorical[:, 0])], dim=1)
        out: torch.Tensor = self.out(torch.tanh(self.hidden(h)))
        return out


def loan_records(count: int, seed: int, run_id: str) -> list[dict[str, Any]]:
    """Agrawal rows as business records, with a region; every 50th lacks it."""
    data = generate("agrawal", count, seed=seed)
    assert tuple(data.features) == AGRAWAL
    now = int(time.time() * 1000)
    rows: list[dict[str, Any]] = []
    for i, x in enumerate(data.x.tolist()):
        row: dict[str, Any] = {"event_id": f"{run_id}-{i:06d}", "event_time": now + i}
        row.update(zip(AGRAWAL, (float(v) for v in x), strict=True))
        if i % MISSING_EVERY != MISSING_EVERY - 1:
            row["region"] = SEEN_REGIONS[int(x[AGRAWAL.index("zipcode")]) % len(SEEN_REGIONS)]
        rows.append(row)
    return rows


@dataclass(frozen=True)
class V2:
    artifact: Path
    module: RegionNet
    spec: ModelSpec

    def expected(self, rows: Sequence[dict[str, Any]]) -> npt.NDArray[np.float32]:
        encoded = self.spec.encode(rows)
        assert not encoded.rejected
        inputs = self.spec.model_inputs(encoded.numeric, encoded.codes)
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(inputs["numeric"]), torch.from_numpy(inputs["categorical"]))
        scores: npt.NDArray[np.float32] = torch.softmax(logits, dim=1).numpy()
        return scores


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> V2:
    """v2 of the test model: RegionNet, trained for a moment and exported to ONNX with its spec."""
    torch.manual_seed(7)
    rows = [r for r in loan_records(2000, seed=11, run_id="train") if "region" in r]
    labels = generate("agrawal", 2000, seed=11).y.tolist()
    labels = [y for i, y in enumerate(labels) if i % MISSING_EVERY != MISSING_EVERY - 1]
    columns = np.asarray([[r[f] for f in V2_NUMERIC] for r in rows])
    spec = driftline.ModelSpec(
        inputs=[
            *(
                driftline.InputField(name=name, mean=float(m), scale=float(s))
                for name, m, s in zip(V2_NUMERIC, columns.mean(axis=0), columns.std(axis=0), strict=True)
            ),
            driftline.InputField(name="region", kind="categorical", categories=REGIONS),
        ],
        task=driftline.Classification(classes=CLASSES),
    )
    module = RegionNet()
    encoded = spec.encode(rows)
    inputs = spec.model_inputs(encoded.numeric, encoded.codes)
    x, c = torch.from_numpy(inputs["numeric"]), torch.from_numpy(inputs["categorical"])
    y = torch.tensor(labels)
    optimiser = torch.optim.Adam(module.parameters(), lr=0.05)
    for _ in range(40):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(module(x, c), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    artifact = driftline.export(
        module, spec, rows[:400], tmp_path_factory.mktemp("regionnet") / "v2", name=MODEL, version="2"
    )
    return V2(artifact, module.eval(), spec)


class SteadyProducer(threading.Thread):
    """Sends a bounded list of records at a steady rate, in the record's own schema."""

    def __init__(self, settings: Settings, rows: list[dict[str, Any]], rate: float) -> None:
        super().__init__(name="steady-producer", daemon=True)
        self._settings, self._rows, self._rate = settings, rows, rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with_region = AvroEncoder.single_object(AvroSchema.from_dict(LOAN))
            without = AvroEncoder.single_object(AvroSchema.from_dict(LOAN_NO_REGION))
            producer = kafka.producer(self._settings, **{"linger.ms": 5})
            started = time.monotonic()
            for i, row in enumerate(self._rows):
                encoder = with_region if "region" in row else without
                kafka.produce(
                    producer, self._settings.topics.events, encoder.encode(row), row["event_id"].encode()
                )
                self.sent = i + 1
                if i % 20 == 19:
                    ahead = started + (i + 1) / self._rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                    producer.poll(0)
            assert producer.flush(30) == 0, "the events were not all acknowledged"
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"the producer did not finish within {timeout:.0f}s"
        if self.error is not None:
            raise self.error


def wait_for_sent(producer: SteadyProducer, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while producer.sent < count:
        assert producer.is_alive() or producer.error is None, producer.error
        assert time.monotonic() < deadline, f"only {producer.sent} events sent within {timeout:.0f}s"
        time.sleep(0.05)


@dataclass
class Outcomes:
    predictions: list[Message]
    dead: list[Message]


def read_outcomes(settings: Settings, count: int, timeout: float = 90.0, settle: float = 1.5) -> Outcomes:
    """Predictions and dead letters until they number ``count``, then ``settle`` seconds more (to catch
    a doubled outcome)."""
    topics = settings.topics
    deadline = time.monotonic() + timeout
    while True:
        predictions = kafka.read_to_end(settings, topics.predictions, read_committed=False)
        dead = kafka.read_to_end(settings, topics.dead_letters, read_committed=False)
        if len(predictions) + len(dead) >= count:
            break
        assert time.monotonic() < deadline, (
            f"{len(predictions)} predictions and {len(dead)} dead letters of {count} within {timeout:.0f}s"
        )
        time.sleep(0.5)
    time.sleep(settle)
    return Outcomes(
        kafka.read_to_end(settings, topics.predictions, read_committed=False),
        kafka.read_to_end(settings, topics.dead_letters, read_committed=False),
    )


def runs(sequence: Sequence[str]) -> list[str]:
    """The sequence without consecutive repeats: [1, 1, 2, 2, 1] -> [1, 2, 1]."""
    return [v for i, v in enumerate(sequence) if i == 0 or sequence[i - 1] != v]


def swap_under_load(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path, v2: V2, *, rollback: bool
) -> None:
    private = (keys / "signing.key").read_bytes()
    v1_dir = versioned(model_dir, tmp_path, "1")
    control.publish_as(registry, v1_dir, private, "LIVE")
    count, rate = (6000, 400.0) if not rollback else (5000, 400.0)
    rows = loan_records(count, seed=5, run_id="swap")
    missing = {r["event_id"] for r in rows if "region" not in r}
    schemas = []
    for schema in (LOAN, LOAN_NO_REGION):
        path = tmp_path / f"{schema['name']}.avsc"
        path.write_text(json.dumps(schema))
        schemas += ["--schema", str(path)]
    args = ["serve", "--group", "g-arch", "--max-batch", "200", "--max-wait-ms", "10", *schemas]
    started = time.monotonic()
    with service(registry, tmp_path / "serve.log", *args, ready=SERVE_READY) as running:
        producer = SteadyProducer(registry, rows, rate)
        producer.start()
        try:
            wait_for_sent(producer, int(rate * 3))  # three seconds of v1 under load
            control.publish_as(registry, v2.artifact, private, "LIVE")
            if rollback:  # once v2 serves, two more seconds of load, then back to v1
                running.wait_for("swapped agrawal v1 -> v2", timeout=20)
                wait_for_sent(producer, producer.sent + int(rate * 2))
                assert producer.sent < count - rate * 2, "v2 went live too late to roll back under load"
                control.rollback(registry, private, MODEL)
            producer.finish(60)
            outcomes = read_outcomes(registry, count)
            log = running.output()
        finally:
            producer.join(60)
    print(
        f"\n{count} events through a swap{' and a rollback' if rollback else ''} in "
        f"{time.monotonic() - started:.1f}s"
    )

    # Exactly one outcome per event.
    predicted = [DECODER.decode(m.value()) for m in outcomes.predictions]
    dead_ids = [(m.key() or b"").decode() for m in outcomes.dead]
    answered = Counter([str(p["event_id"]) for p in predicted] + dead_ids)
    assert set(answered) == {r["event_id"] for r in rows}, "an event was lost (or an unknown one answered)"
    doubled = {k: n for k, n in answered.items() if n > 1}
    assert not doubled, f"events answered twice: {sorted(doubled)[:5]}"

    # Dead letters: only events without region, answered by v2, naming the field and the version.
    for message in outcomes.dead:
        headers = dlq_headers(message)
        assert (message.key() or b"").decode() in missing
        assert headers["driftline.dlq.reason"] == "missing-field", headers
        detail = headers["driftline.dlq.detail"]
        assert "'region'" in detail, detail
        assert "version 2" in detail, detail

    # Which version answered each event (a dead letter is v2's: v1 reads no region), in input order.
    by_id = {str(p["event_id"]): p for p in predicted}
    version = {i: str(p["model_version"]) for i, p in by_id.items()} | dict.fromkeys(dead_ids, "2")
    events = kafka.read_to_end(registry, registry.topics.events, read_committed=False)
    assert len(events) == count
    per_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for m in events:
        per_partition[m.partition() or 0].append((m.offset() or 0, (m.key() or b"").decode()))
    position = {(m.key() or b"").decode(): (m.partition(), m.offset()) for m in events}
    for message in outcomes.dead:  # a dead letter says where its event was, and lies beside it
        headers = dlq_headers(message)
        where = (int(headers["driftline.dlq.partition"]), int(headers["driftline.dlq.offset"]))
        assert where == position[(message.key() or b"").decode()]
        assert message.partition() == where[0]
    expected_runs = ["1", "2", "1"] if rollback else ["1", "2"]
    for partition, entries in sorted(per_partition.items()):
        ids = [event_id for _, event_id in sorted(entries)]
        seen = runs([version[i] for i in ids])
        assert seen == expected_runs, f"partition {partition} went {seen}"
        stretch = Counter(version[i] for i in ids)
        print(f"partition {partition}: {len(ids)} events, by version {dict(stretch)}")
        # Events without region in each version's stretch: v1 predicted them, v2 dead-lettered them.
        stretches = {v: [i for i in ids if i in missing and version[i] == v] for v in ("1", "2")}
        assert stretches["1"], f"partition {partition}: no event without region before the swap"
        assert stretches["2"], f"partition {partition}: no event without region after the swap"
        assert all(i in by_id for i in stretches["1"])
        assert not any(i in by_id for i in stretches["2"])
    # The outputs follow their events' partitions: each predictions partition changes version too.
    out: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for m, p in zip(outcomes.predictions, predicted, strict=True):
        out[m.partition() or 0].append((m.offset() or 0, str(p["model_version"])))
    for partition, entries in out.items():
        seen = runs([v for _, v in sorted(entries)])
        assert seen == expected_runs, f"predictions partition {partition} went {seen}"

    # Each version's scores are its own model's on the same values.
    answered_by = {
        v: [r for r in rows if by_id.get(r["event_id"], {}).get("model_version") == v] for v in ("1", "2")
    }
    got2 = np.asarray([by_id[r["event_id"]]["scores"] for r in answered_by["2"]], dtype=np.float32)
    assert float(np.abs(got2 - v2.expected(answered_by["2"])).max()) <= 1e-4
    v1_spec = ModelSpec.numeric(AGRAWAL, CLASSES)
    v1_rows = v1_spec.encode(answered_by["1"])
    want1 = load_predictor(v1_dir, "cpu").predict_batch(v1_rows.numeric)
    got1 = np.asarray([by_id[r["event_id"]]["scores"] for r in answered_by["1"]], dtype=np.float32)
    assert float(np.abs(got1 - want1).max()) <= 1e-4
    assert all(p["predicted_label"] in CLASSES for p in predicted)

    # The swap is in the log and on the audit topic.
    assert "swapped agrawal v1 -> v2 between batches" in log, log[-3000:]
    audit = [DECODER.decode(m.value()) for m in kafka.read_to_end(registry, registry.topics.audit)]
    swaps = [(r["action"], r["version"], r["detail"]) for r in audit if r["action"] == "SWAPPED"]
    want = [("SWAPPED", "2", "replaced v1")] + ([("SWAPPED", "1", "replaced v2")] if rollback else [])
    assert swaps == want, audit
    if rollback:
        assert "swapped agrawal v2 -> v1 between batches" in log, log[-3000:]


def test_another_architecture_with_other_fields_goes_live_under_load(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path, v2: V2
) -> None:
    swap_under_load(registry, model_dir, tmp_path, keys, v2, rollback=False)


def test_rolling_back_across_architectures_under_load_keeps_the_guarantees(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path, v2: V2
) -> None:
    swap_under_load(registry, model_dir, tmp_path, keys, v2, rollback=True)
