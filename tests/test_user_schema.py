"""One record path: events written in a user's own record schema are served, monitored and trained
on, with `--schema` given to each service; none of them dead-letters a good event."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from driftline.config import Settings
from driftline.models import control
from driftline.options import TrainOptions
from driftline.schemas import AvroEncoder, AvroSchema
from driftline.services import MONITOR_READY, SERVE_READY, service
from driftline.streams import kafka
from driftline.streams.synthetic import GENERATORS, generate
from driftline.trainers.service import train_once
from tests.helpers import MODEL, STORE, prediction_ids, read_topic, versioned

pytestmark = pytest.mark.kafka

AGRAWAL = GENERATORS["agrawal"]
LABELS = AvroEncoder.single_object(STORE.latest("io.driftline.Label"))
COUNT = 3000


def loan_schema() -> dict[str, Any]:
    """A business event: its own name, its own id and time fields, the model's features by name."""
    return {
        "type": "record",
        "name": "LoanApplication",
        "namespace": "com.acme.loans",
        "fields": [
            {"name": "application_id", "type": "string"},
            {"name": "event_id", "type": "string"},
            {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            *({"name": f, "type": "double"} for f in AGRAWAL.features),
        ],
    }


def produce_loans(settings: Settings, schema: AvroSchema) -> list[str]:
    data = generate("agrawal", COUNT, seed=41)
    encoder = AvroEncoder.single_object(schema)
    producer = kafka.producer(settings)
    now = int(time.time() * 1000)
    ids = [f"loan-{i:05d}" for i in range(COUNT)]
    for eid, row, label in zip(ids, data.x.tolist(), data.y.tolist(), strict=True):
        record = {"application_id": f"A{eid}", "event_id": eid, "event_time": now}
        record.update(zip(AGRAWAL.features, row, strict=True))
        producer.produce(settings.topics.events, encoder.encode(record), eid.encode())
        label_record = {"event_id": eid, "event_time": now, "label": int(label)}
        producer.produce(settings.topics.labels, LABELS.encode(label_record), eid.encode())
        producer.poll(0)
    assert producer.flush(60) == 0
    return ids


def test_serve_monitor_and_train_read_a_user_record_schema(
    registry: Settings, model_dir: Path, tmp_path: Path, keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    private = (keys / "signing.key").read_bytes()
    control.publish_version(registry, versioned(model_dir, tmp_path, "1"), private)
    control.promote(registry, private, MODEL, "1")
    schema_file = tmp_path / "loan.avsc"
    schema_file.write_text(json.dumps(loan_schema()))
    ids = produce_loans(registry, AvroSchema.from_dict(loan_schema()))
    schema = ["--schema", str(schema_file)]

    with service(registry, tmp_path / "serve.log", "serve", *schema, ready=SERVE_READY):
        predictions = read_topic(registry, registry.topics.predictions, expected=COUNT, timeout=120)
    assert sorted(prediction_ids(predictions)) == ids  # the record's own event_id field

    with service(registry, tmp_path / "monitor.log", "monitor", *schema, ready=MONITOR_READY) as monitor:
        monitor.wait_for(f"read to events {COUNT}", 90)
    assert kafka.read_to_end(registry, registry.topics.dead_letters) == []  # neither dead-lettered one

    options = TrainOptions(epochs=2, device="cpu", min_rows=500, schemas=(schema_file,))
    with caplog.at_level("INFO", logger="driftline.trainers.dataset"):
        outcome = train_once(registry, private, MODEL, COUNT, AGRAWAL.features, AGRAWAL.classes, options)
    metrics = outcome.record["metrics"]
    assert metrics["train_rows"] + metrics["eval_rows"] == COUNT  # every loan was a training row
    assert "not used: none" in caplog.text
