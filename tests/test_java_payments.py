"""Business types and JSON events end to end, from Java: a custom module trained here on synthetic
payments is exported, published LIVE and served from the Java example's own ``Payment`` schema; the
Java producer writes Avro payments (decimal, nullable double, string, boolean, timestamp-micros),
the same payments as JSON objects (ISO-8601 event time) and bad JSON; every good payment is answered
exactly once on its event's partition with the module's scores, the bad JSON is dead-lettered with
its reason, and the Java consumer's summary agrees."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import driftline
from driftline.config import Settings, load_settings
from driftline.models import control
from driftline.schemas import AvroDecoder, AvroSchema, builtin_store
from driftline.services import SERVE_READY, service
from driftline.testing.java_example import EXAMPLE_DIR, build_jar, run_jar, summary
from tests.helpers import DECODER, dlq_headers, read_topic

pytestmark = pytest.mark.kafka

SCHEMA_FILE = EXAMPLE_DIR / "src/main/avro/payment.avsc"
PAYMENT = AvroSchema.from_json(SCHEMA_FILE.read_text())
JAVA_COUNTRIES = ("DE", "FR", "US", "GB", "JP", "BR", "IN", "NL")  # Produce.COUNTRIES
COUNTRIES = JAVA_COUNTRIES[:-1]  # NL stays unseen: its payments take the unseen bucket
SPEC = driftline.ModelSpec(
    inputs=[
        driftline.InputField(name="amount", unit="EUR", mean=5000.0, scale=2900.0),
        driftline.InputField(name="tip", nullable=True, impute=0.0, unit="EUR", mean=7.5, scale=6.0),
        driftline.InputField(name="card_present", kind="boolean"),
        driftline.InputField(name="country", kind="categorical", categories=COUNTRIES),
    ],
    # One unit for both wire forms: Avro's timestamp-micros arrive as datetimes (converted whatever the
    # unit), JSON's ISO-8601 strings are read as the unit says.
    event_time=driftline.EventTime(field="event_time", unit="iso8601"),
    task=driftline.Classification(classes=("ok", "fraud")),
)
AVRO, JSON_COUNT = 300, 200
BAD_JSON = {  # key suffix: (reason, what the detail says: one of these)
    "badjson-invalid": ("undecodable", ("invalid JSON",)),
    # decode_record takes only "{" for JSON, so an array is read as Avro: no known framing
    "badjson-array": ("undecodable", ("a JSON event must be an object", "framing")),
    "badjson-amount-text": ("bad-type", ("field 'amount' must be numeric",)),
    "badjson-no-card-present": ("missing-field", ("no field 'card_present'",)),
}
DLQ_HEADERS = ("reason", "detail", "topic", "partition", "offset", "timestamp")
ISO_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class PaymentNet(nn.Module):
    """A country embedding beside the numeric inputs, and a small MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.country = nn.Embedding(len(COUNTRIES) + 1, 3)
        self.mlp = nn.Sequential(nn.Linear(3 + 3, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(torch.cat([numeric, self.country(categorical[:, 0])], dim=1))
        return out


def synthetic(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Payments like the Java producer's (amount 0.01-9999.99, a quarter without tip), labelled by a rule."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(n):
        amount = int(rng.integers(1, 1_000_000)) / 100
        card = bool(rng.random() < 0.5)
        country = str(rng.choice(JAVA_COUNTRIES))
        tip = None if i % 4 == 0 else round(float(rng.random()) * 20, 2)
        rows.append(
            {
                "event_id": f"train-{i}",
                "event_time": "2026-12-01T00:00:00.000000Z",
                "amount": amount,
                "tip": tip,
                "card_present": card,
                "country": country,
            }
        )
        labels.append(int((amount > 6000 and not card) or (country == "BR" and amount > 3000)))
    return rows, labels


def model_inputs(rows: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    encoded = SPEC.encode(rows)
    assert not encoded.rejected, encoded.rejected
    inputs = SPEC.model_inputs(encoded.numeric, encoded.codes)
    return torch.from_numpy(inputs["numeric"]), torch.from_numpy(inputs["categorical"])


def trained() -> tuple[nn.Module, list[dict[str, Any]]]:
    torch.manual_seed(0)
    module = PaymentNet()
    rows, labels = synthetic(1000, seed=5)
    x, c = model_inputs(rows)
    y = torch.tensor(labels)
    optimiser = torch.optim.Adam(module.parameters(), lr=0.03)
    for _ in range(80):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(module(x, c), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return module.eval(), rows


def scores(module: nn.Module, rows: list[dict[str, Any]]) -> np.ndarray:
    with torch.inference_mode():
        return torch.softmax(module(*model_inputs(rows)), dim=1).numpy()


@pytest.fixture(scope="module")
def jar() -> Path:
    return build_jar(load_settings().cache_dir)


def java(jar: Path, *args: str, timeout: float = 90.0) -> dict[str, Any]:
    """Run one command of the example with ``--json``; its summary (it must have exited 0)."""
    done = run_jar(jar, *args, "--json", timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return summary(done)


def millis(value: object) -> int:
    """An event time as the prediction carries it: epoch milliseconds (floor)."""
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


def test_java_payments_avro_and_json_are_served_by_a_custom_model(
    registry: Settings, tmp_path: Path, keys: Path, jar: Path
) -> None:
    module, sample = trained()
    artifact = driftline.export(
        module, SPEC, sample[:400], tmp_path / "pay-1", name=registry.model_name, version="1"
    )
    control.publish_as(registry, artifact, (keys / "signing.key").read_bytes(), "LIVE")

    topics = registry.topics
    server = ["--bootstrap-servers", str(registry.bootstrap_servers)]
    produced = java(
        jar, "produce-payments", *server, "--topic", topics.events, "--run-id", "jp",
        *("--count", str(AVRO), "--json-count", str(JSON_COUNT), "--bad-json"),
    )  # fmt: skip
    assert (produced["payments"], produced["json_payments"]) == (AVRO, JSON_COUNT)
    assert produced["json_event_time"] == "iso8601"
    bad = {f"jp-{k}": v for k, v in BAD_JSON.items()}
    assert produced["bad_json"] == {k: reason for k, (reason, _) in bad.items()}

    consume = [
        *server, "--events-topic", topics.events, "--predictions-topic", topics.predictions,
        *("--dead-letters-topic", topics.dead_letters, "--timeout-s", "60"),
    ]  # fmt: skip
    with service(registry, tmp_path / "serve.log", "serve", "--schema", str(SCHEMA_FILE), ready=SERVE_READY):
        started = time.monotonic()
        seen = java(jar, "consume", *consume)
        assert time.monotonic() - started < 60
        predictions = read_topic(registry, topics.predictions, expected=AVRO + JSON_COUNT, settle=0.5)
        dead = read_topic(registry, topics.dead_letters, expected=len(bad), settle=0)

    # The events as written, read back: the exact values the model was given.
    store = builtin_store()
    store.add(PAYMENT)
    decoder = AvroDecoder(store)
    events = read_topic(registry, topics.events, expected=AVRO + JSON_COUNT + len(bad), settle=0)
    where = {(m.key() or b"").decode(): m for m in events}
    assert len(where) == len(events) == AVRO + JSON_COUNT + len(bad)
    good: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for key, m in where.items():
        if key in bad:
            continue
        value = m.value() or b""
        if value[:1] == b"{":
            record = json.loads(value)
            assert ISO_MICROS.match(record["event_time"]), record["event_time"]
            assert type(record["amount"]) is float  # a JSON number (Java: BigDecimal, scale 2)
            assert record["tip"] is None or isinstance(record["tip"], float)
            assert isinstance(record["card_present"], bool)
            kinds[key] = "json"
        else:
            record = decoder.decode(value)
            assert isinstance(record["event_time"], dt.datetime)  # timestamp-micros, converted
            kinds[key] = "avro"
        assert record["event_id"] == key
        good[key] = record
    assert Counter(kinds.values()) == {"avro": AVRO, "json": JSON_COUNT}
    assert {r["country"] for r in good.values()} <= set(JAVA_COUNTRIES)
    assert any(r["country"] == "NL" for r in good.values())  # the unseen bucket is exercised
    assert any(r["tip"] is None for r in good.values() if kinds[r["event_id"]] == "json")

    # Every good payment answered exactly once, on its event's partition, with the module's scores.
    decoded = [(m, DECODER.decode(m.value())) for m in predictions]
    assert Counter(str(p["event_id"]) for _, p in decoded) == Counter(good.keys())
    by_id = {str(p["event_id"]): p for _, p in decoded}
    for m, p in decoded:
        assert m.partition() == where[str(p["event_id"])].partition()
        assert (m.key() or b"").decode() == p["event_id"]
    ids = sorted(good)
    want = scores(module, [good[i] for i in ids])
    got = np.array([by_id[i]["scores"] for i in ids])
    assert float(np.abs(got - want).max()) <= 1e-4
    for i, expected in zip(ids, want, strict=True):
        p = by_id[i]
        assert p["predicted_label"] == SPEC.task.classes[int(expected.argmax())]  # type: ignore[union-attr]
        assert p["event_time"] == millis(good[i]["event_time"])  # micros / 1000, or the ISO time's ms
        assert p["model_version"] == "1"
    assert len({p["predicted_label"] for p in by_id.values()}) == 2  # the model says both things

    # The bad JSON, dead-lettered with its reason, the documented headers, its key and bytes.
    assert sorted((m.key() or b"").decode() for m in dead) == sorted(bad)
    for m in dead:
        key = (m.key() or b"").decode()
        source = where[key]
        h = dlq_headers(m)
        reason, details = bad[key]
        assert {f"driftline.dlq.{n}" for n in DLQ_HEADERS} <= set(h)
        assert h["driftline.dlq.reason"] == reason, h
        assert any(d in h["driftline.dlq.detail"] for d in details), h
        assert h["driftline.dlq.topic"] == topics.events
        assert (int(h["driftline.dlq.partition"]), int(h["driftline.dlq.offset"])) == (
            source.partition(),
            source.offset(),
        )
        assert int(h["driftline.dlq.timestamp"]) == source.timestamp()[1]
        assert m.partition() == source.partition()
        assert (m.value() or b"") == (source.value() or b"")
        assert h["example.expect-reason"] == reason

    # The Java consumer saw the same.
    assert seen["ok"], seen["problems"]
    assert seen["answered_exactly_once"]
    assert seen["events"] == AVRO + JSON_COUNT + len(bad)
    # kinds as the consumer tells them: the cut-off text and the array are no JSON object ("other")
    assert seen["events_by_kind"] == {"input_event": 0, "payment": AVRO, "json": JSON_COUNT + 2, "other": 2}
    assert seen["predicted_by_kind"] == {"input_event": 0, "payment": AVRO, "json": JSON_COUNT, "other": 0}
    assert seen["dead_lettered_by_kind"] == {"input_event": 0, "payment": 0, "json": 2, "other": 2}
    assert seen["predictions"] == seen["predicted_events"] == AVRO + JSON_COUNT
    assert seen["dead_letters"] == seen["dead_lettered_events"] == len(bad)
    assert seen["predictions_on_event_partition"]
    assert seen["dead_letters_as_documented"]
    assert seen["dead_letter_reasons"] == dict(Counter(reason for reason, _ in bad.values()))
