"""A user's own model end to end: a custom module (an embedding for a categorical field and a residual
MLP), trained here in seconds, exported to ONNX, published and served by a running `serve` from the
user's own record schema with business field types; every prediction equals the module run in
process. A regression model is served from events in its contract, sent by the Python client."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import driftline
from driftline.config import Settings
from driftline.errors import DriftlineError
from driftline.models import control
from driftline.options import TrainOptions
from driftline.schemas import AvroEncoder, AvroSchema
from driftline.services import MONITOR_READY, SERVE_READY, service
from driftline.streams import kafka
from driftline.trainers.service import answer_request
from tests.helpers import DECODER, dlq_headers, read_topic

pytestmark = pytest.mark.kafka

COUNTRIES = ("DE", "FR", "IT")
SPEC = driftline.ModelSpec(
    inputs=[
        driftline.InputField(name="amount", unit="EUR", mean=50.0, scale=30.0),
        driftline.InputField(name="tip", nullable=True, impute=0.0, unit="EUR"),
        driftline.InputField(name="card_present", kind="boolean"),
        driftline.InputField(name="country", kind="categorical", categories=COUNTRIES),
    ],
    event_id="payment_id",
    event_time=driftline.EventTime(field="paid_at", unit="micros"),
    task=driftline.Classification(classes=("ok", "fraud")),
)
PAYMENT = {
    "type": "record",
    "name": "Payment",
    "namespace": "com.acme.payments",
    "fields": [
        {"name": "payment_id", "type": "string"},
        {"name": "paid_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "tip", "type": ["null", "double"], "default": None},
        {"name": "card_present", "type": ["null", "boolean"], "default": None},
        {"name": "country", "type": "string"},
        {"name": "merchant", "type": "string"},
    ],
}


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.layer = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.layer(x))


class FraudNet(nn.Module):
    """What a data scientist writes in a notebook: not one of Driftline's architectures."""

    def __init__(self) -> None:
        super().__init__()
        self.country = nn.Embedding(len(COUNTRIES) + 1, 3)
        self.inp = nn.Linear(3 + 3, 16)
        self.blocks = nn.Sequential(Residual(16), Residual(16))
        self.out = nn.Linear(16, 2)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        h = torch.cat([numeric, self.country(categorical[:, 0])], dim=1)
        out: torch.Tensor = self.out(self.blocks(torch.relu(self.inp(h))))
        return out


def payments(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    rows, labels = [], []
    for i in range(n):
        amount = round(float(rng.gamma(2.0, 25.0)), 2)
        country = str(rng.choice([*COUNTRIES, "ES"]))  # ES: a category the model never saw
        card = bool(rng.random() < 0.6)
        tip = None if rng.random() < 0.3 else round(float(rng.random() * 5), 2)
        rows.append(
            {
                "payment_id": f"pay-{seed}-{i:05d}",
                "paid_at": start + dt.timedelta(microseconds=int(rng.integers(0, 10**12))),
                "amount": decimal.Decimal(f"{amount:.2f}"),
                "tip": tip,
                "card_present": card,
                "country": country,
                "merchant": f"m{i % 7}",
            }
        )
        labels.append(int((amount > 80 and not card) or (country == "IT" and amount > 120)))
    return rows, labels


def train(module: nn.Module, rows: list[dict[str, Any]], labels: list[int]) -> None:
    encoded = SPEC.encode(rows)
    assert not encoded.rejected
    inputs = SPEC.model_inputs(encoded.numeric, encoded.codes)
    x, c = torch.from_numpy(inputs["numeric"]), torch.from_numpy(inputs["categorical"])
    y = torch.tensor(labels)
    optimiser = torch.optim.Adam(module.parameters(), lr=0.02)
    for _ in range(60):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(module(x, c), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()


def expected_scores(module: nn.Module, rows: list[dict[str, Any]]) -> np.ndarray:
    encoded = SPEC.encode(rows)
    inputs = SPEC.model_inputs(encoded.numeric, encoded.codes)
    with torch.inference_mode():
        logits = module(torch.from_numpy(inputs["numeric"]), torch.from_numpy(inputs["categorical"]))
    return torch.softmax(logits, dim=1).numpy()


def test_a_custom_module_is_served_from_business_events(
    registry: Settings, tmp_path: Path, keys: Path
) -> None:
    torch.manual_seed(0)
    module = FraudNet()
    rows, labels = payments(1500, seed=1)
    train(module, rows, labels)
    artifact = driftline.export(
        module, SPEC, rows[:400], tmp_path / "fraud-1", name=registry.model_name, version="1"
    )
    assert (artifact / "reference_profile.json").is_file()
    private = (keys / "signing.key").read_bytes()
    record = control.publish_as(registry, artifact, private, "LIVE")
    assert json.loads(record["spec"])["event_time"] == {"field": "paid_at", "unit": "micros"}

    live, _ = payments(600, seed=2)
    bad = [
        {**live[0], "payment_id": "bad-null", "card_present": None},  # the spec says not nullable
        {**live[1], "payment_id": "bad-late", "paid_at": dt.datetime(2400, 1, 1, tzinfo=dt.UTC)},
    ]
    schema_file = tmp_path / "payment.avsc"
    schema_file.write_text(json.dumps(PAYMENT))
    encoder = AvroEncoder.single_object(AvroSchema.from_dict(PAYMENT))
    producer = kafka.producer(registry)
    for row in [*live, *bad]:
        kafka.produce(producer, registry.topics.events, encoder.encode(row), row["payment_id"].encode())
    assert producer.flush(60) == 0

    with service(registry, tmp_path / "serve.log", "serve", "--schema", str(schema_file), ready=SERVE_READY):
        messages = read_topic(registry, registry.topics.predictions, expected=len(live), timeout=120)
        dead = read_topic(registry, registry.topics.dead_letters, expected=len(bad), timeout=60)

    predictions = {p["event_id"]: p for p in (DECODER.decode(m.value()) for m in messages)}
    assert sorted(predictions) == sorted(r["payment_id"] for r in live)  # exactly one each
    want = expected_scores(module, live)
    got = np.array([predictions[r["payment_id"]]["scores"] for r in live])
    assert float(np.abs(got - want).max()) <= 1e-4
    for row, scores in zip(live, want, strict=True):
        p = predictions[row["payment_id"]]
        assert p["predicted_label"] == SPEC.task.classes[int(scores.argmax())]  # type: ignore[union-attr]
        assert p["event_time"] == (row["paid_at"] - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
            milliseconds=1
        )  # microseconds became milliseconds
        assert p["model_version"] == "1"

    headers = [dlq_headers(m) for m in dead]
    reasons = {h["driftline.dlq.reason"]: h["driftline.dlq.detail"] for h in headers}
    assert set(reasons) == {"null-value", "bad-time"}
    assert "'card_present'" in reasons["null-value"]
    assert "version 1" in reasons["null-value"]
    assert "'paid_at'" in reasons["bad-time"]

    # the built-in trainer never replaces a team's own model with its MLP on some of the fields
    request = {"request_id": "r1", "model_name": registry.model_name, "training_data": []}
    with pytest.raises(DriftlineError, match="your own exported model"):
        answer_request(registry, private, registry.model_name, request, TrainOptions())


REGRESSION = driftline.ModelSpec(
    inputs=[driftline.InputField(name="distance_km", unit="km"), driftline.InputField(name="stops")],
    task=driftline.Regression(target="minutes", unit="min"),
)


def scrape(port: int, metric: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(metric + " ")]
    return values[0] if values else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_regression_model_is_served_and_monitored_with_numeric_labels(
    registry: Settings, tmp_path: Path, keys: Path
) -> None:
    torch.manual_seed(1)
    module = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    rows = [
        {"distance_km": float(d), "stops": float(s)} for d, s in zip(range(40), range(40, 0, -1), strict=True)
    ]
    artifact = driftline.export(
        module, REGRESSION, rows, tmp_path / "eta-1", name=registry.model_name, version="1"
    )
    control.publish_as(registry, artifact, (keys / "signing.key").read_bytes(), "LIVE")

    with (
        service(registry, tmp_path / "serve.log", "serve", ready=SERVE_READY),  # no --schema: the contract
        driftline.Client(registry.model_name, settings=registry) as client,
    ):
        ids = client.send(rows)
        predictions = client.predictions(len(rows), timeout=120)

    assert sorted(p["event_id"] for p in predictions) == sorted(ids)
    by_id = {p["event_id"]: p["value"] for p in predictions}
    with torch.inference_mode():
        want = module(torch.tensor([[r["distance_km"], r["stops"]] for r in rows])).numpy()[:, 0]
    got = np.array([by_id[i] for i in ids])
    assert float(np.abs(got - want).max()) <= 1e-4
    assert all(p["scores"] == [] for p in predictions)

    # late ground truth: each target off by a known amount, so the monitor's MAE is known exactly
    offsets = np.linspace(0.5, 1.5, len(ids))
    port = free_port()
    with (
        driftline.Client(registry.model_name, settings=registry) as client,
        service(
            registry, tmp_path / "monitor.log", "monitor", "--metrics-port", str(port), ready=MONITOR_READY
        ),
    ):
        client.send_labels((i, float(v) + d) for i, v, d in zip(ids, got, offsets, strict=True))
        deadline = time.monotonic() + 90
        while (scrape(port, "driftline_monitor_labels_joined_total") or 0) < len(ids):
            assert time.monotonic() < deadline, "the monitor did not join every label within 90 s"
            time.sleep(0.5)
        mae = scrape(port, "driftline_monitor_label_mae")
    assert mae == pytest.approx(float(offsets.mean()), abs=1e-4)
    assert all(p["predicted_class"] == -1 for p in predictions)
