"""The model contract's pure parts: field kinds, nulls, categories, time units, JSON events, and the
registry record that carries the spec (no broker)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from driftline.errors import VerificationError
from driftline.models.signing import example_version, generate_keys, key_id, sign_version, verify_version
from driftline.models.spec import Classification, EventTime, InputField, ModelSpec, Regression
from driftline.schemas import AvroDecoder, AvroEncoder, AvroSchema, builtin_store
from driftline.streams.features import FeatureExtractor
from driftline.streams.records import contract_schema, decode_rows
from driftline.testing import FakeMessage

SPEC = ModelSpec(
    inputs=[
        InputField(name="amount", mean=10.0, scale=2.0),
        InputField(name="tip", nullable=True, impute=-1.0),
        InputField(name="card", kind="boolean"),
        InputField(name="country", kind="categorical", categories=("DE", "FR"), nullable=True),
    ],
    event_time=EventTime(field="at", unit="micros"),
    task=Classification(classes=("ok", "fraud")),
)
GOOD = {"event_id": "e", "at": 1_700_000_000_000_000, "amount": 12, "tip": 1.5, "card": True, "country": "FR"}


def test_each_kind_becomes_its_column_and_nulls_their_imputation() -> None:
    rows = [
        GOOD,
        {**GOOD, "amount": decimal.Decimal("7.25"), "tip": None, "card": False, "country": None},
        {**GOOD, "country": "XX"},  # unseen: the bucket
    ]
    out = SPEC.encode(rows)
    assert out.rejected == {}
    assert out.numeric.tolist() == [[12.0, 1.5, 1.0], [7.25, -1.0, 0.0], [12.0, 1.5, 1.0]]
    assert out.codes.tolist() == [[2], [0], [0]]
    assert out.event_times == [1_700_000_000_000] * 3  # micros -> millis
    inputs = SPEC.model_inputs(out.numeric, out.codes)
    assert inputs["numeric"][0].tolist() == [1.0, 1.5, 1.0]  # (12 - 10) / 2; the others as they are


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ({"amount": "12"}, "bad-type", "'amount' must be numeric"),
        ({"amount": None}, "null-value", "'amount' is null"),
        ({"amount": math.inf}, "non-finite", "'amount'"),
        ({"amount": 1e39}, "non-finite", "float32"),
        ({"amount": True}, "bad-type", "not bool"),
        ({"card": 1}, "bad-type", "'card' must be a boolean"),
        ({"country": 3}, "bad-type", "'country' must be a string or enum symbol or null"),
        ({"at": "2026-01-01T00:00:00Z"}, "bad-time", "'at'"),
        ({"at": 1_700_000_000_000_000_000_000}, "bad-time", "outside 1970-2200"),
    ],
)
def test_every_bad_value_is_rejected_naming_its_field(
    change: dict[str, object], reason: str, words: str
) -> None:
    out = SPEC.encode([GOOD, {**GOOD, **change}])
    assert out.kept.tolist() == [0]
    assert out.rejected[1][0] == reason
    assert words in out.rejected[1][1]


def test_a_missing_field_names_the_field_and_what_it_needs() -> None:
    record = {k: v for k, v in GOOD.items() if k != "card"}
    assert SPEC.encode([record]).rejected == {
        0: ("missing-field", "the record has no field 'card' (a boolean)")
    }


@pytest.mark.parametrize(
    ("unit", "value", "millis"),
    [
        ("millis", 1_700_000_000_123, 1_700_000_000_123),
        ("seconds", 1_700_000_000, 1_700_000_000_000),
        ("nanos", 1_700_000_000_123_456_789, 1_700_000_000_123),
        ("iso8601", "2023-11-14T22:13:20.5+00:00", 1_700_000_000_500),
        ("millis", dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC), 1_700_000_000_000),
    ],
)
def test_event_times_are_read_in_their_unit(unit: str, value: object, millis: int) -> None:
    spec = SPEC.model_copy(update={"event_time": EventTime(field="at", unit=unit)})
    assert spec.encode([{**GOOD, "at": value}]).event_times == [millis]


def test_specs_that_contradict_themselves_are_refused() -> None:
    with pytest.raises(ValidationError, match="needs impute"):
        InputField(name="x", nullable=True)
    with pytest.raises(ValidationError, match="needs its categories"):
        InputField(name="x", kind="categorical")
    with pytest.raises(ValidationError, match="named twice"):
        ModelSpec(inputs=[InputField(name="x"), InputField(name="x")], task=Regression(target="y"))


def test_json_events_take_the_same_path_and_bad_ones_are_dead_lettered() -> None:
    extractor = FeatureExtractor(SPEC, "model m version 3")
    good = json.dumps({**GOOD, "event_id": "j1"}).encode()
    messages = [
        FakeMessage(good),
        FakeMessage(b'{"event_id": "j2", "amount": "a lot"}', _offset=1),
        FakeMessage(b"{not json", _offset=2),
        FakeMessage(b"[1, 2]", _offset=3),
    ]
    rows, dead = decode_rows(messages, AvroDecoder(builtin_store()), extractor)
    assert rows.event_ids == [b"j1"]
    assert rows.codes.tolist() == [[2]]
    reasons = {d.message.offset(): (d.reason, d.detail) for d in dead}
    assert reasons[1][0] == "bad-type"
    assert "needed by model m version 3" in reasons[1][1]
    assert reasons[2] == ("undecodable", reasons[2][1])
    assert "invalid JSON" in reasons[2][1]
    assert reasons[3][0] == "undecodable"


def test_events_in_the_contract_schema_decode_once_the_decoder_knows_it() -> None:
    schema = contract_schema("fraud model", SPEC)
    assert schema.name == "io.driftline.user.fraud_model.Event"
    event = AvroEncoder.single_object(schema).encode({**GOOD, "amount": 12.0})
    decoder = AvroDecoder(builtin_store())
    rows, dead = decode_rows([FakeMessage(event)], decoder, FeatureExtractor(SPEC))
    assert [d.reason for d in dead] == ["unknown-schema"]
    decoder.learn(schema)
    rows, dead = decode_rows([FakeMessage(event)], decoder, FeatureExtractor(SPEC))
    assert (len(rows), dead) == (1, [])


def test_a_users_decimal_and_timestamp_micros_are_read_with_their_logical_types() -> None:
    schema = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "Payment",
            "namespace": "com.acme",
            "fields": [
                {"name": "event_id", "type": "string"},
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {
                    "name": "amount",
                    "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
                },
                {"name": "tip", "type": ["null", "double"]},
                {"name": "card", "type": "boolean"},
                {"name": "country", "type": {"type": "enum", "name": "Country", "symbols": ["DE", "FR"]}},
            ],
        }
    )
    when = dt.datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=dt.UTC)
    record = {
        "event_id": "p",
        "at": when,
        "amount": decimal.Decimal("19.99"),
        "tip": None,
        "card": True,
        "country": "DE",
    }
    store = builtin_store()
    store.add(schema)
    rows, dead = decode_rows(
        [FakeMessage(AvroEncoder.single_object(schema).encode(record))],
        AvroDecoder(store),
        FeatureExtractor(SPEC),
    )
    assert dead == []
    assert rows.features.tolist() == [[pytest.approx(19.99), -1.0, 1.0]]
    assert rows.event_times.tolist() == [int(when.timestamp() * 1000)]


def test_a_version_with_a_spec_signs_it_and_older_records_still_verify() -> None:
    private, public = generate_keys()
    trusted = {key_id(public): public}
    old = sign_version(example_version(), private)  # no spec: signed as schema version 1
    verify_version(old, trusted)
    with_spec = sign_version(example_version(spec=SPEC.model_dump_json()), private)
    verify_version(with_spec, trusted)
    tampered = {**with_spec, "spec": SPEC.model_copy(update={"event_id": "other"}).model_dump_json()}
    with pytest.raises(VerificationError, match="does not match"):
        verify_version(tampered, trusted)
    with pytest.raises(VerificationError, match="does not match"):
        verify_version({**with_spec, "spec": None}, trusted)


def test_a_spec_round_trips_through_json_and_gives_its_avro_contract() -> None:
    assert ModelSpec.model_validate_json(SPEC.model_dump_json()) == SPEC
    fields = {f["name"]: f["type"] for f in SPEC.avro_schema()["fields"]}
    assert fields == {
        "event_id": "string",
        "at": {"type": "long", "logicalType": "timestamp-micros"},
        "amount": "double",
        "tip": ["null", "double"],
        "card": "boolean",
        "country": ["null", "string"],
    }
    assert np.isclose(SPEC.inputs[0].mean, 10.0)


def test_publishing_with_a_schema_registry_registers_the_contract() -> None:
    from driftline.api import register_contract
    from driftline.config import Settings

    settings = Settings(schema_registry_url="mock://contract-test")
    assert register_contract(settings.model_copy(update={"schema_registry_url": None}), "fraud", SPEC) is None
    schema_id = register_contract(settings, "fraud", SPEC)
    assert schema_id is not None
    assert register_contract(settings, "fraud", SPEC) == schema_id  # the same contract: the same id


def test_models_contract_prints_the_schema_and_the_spec_of_an_artifact(tmp_path: Path) -> None:
    import torch
    from click.testing import CliRunner

    from driftline.api import export
    from driftline.cli import main

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(3, 2)
            self.linear = torch.nn.Linear(5, 2)

        def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.linear(torch.cat([numeric, self.embedding(categorical[:, 0])], dim=1))
            return out

    artifact = export(Net(), SPEC, [GOOD] * 8, tmp_path / "fraud", name="fraud", version="1")
    printed = CliRunner().invoke(main, ["models", "contract", "--model-dir", str(artifact)])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == contract_schema("fraud", SPEC).raw
    spec = CliRunner().invoke(main, ["models", "contract", "--model-dir", str(artifact), "--spec"])
    assert ModelSpec.model_validate_json(spec.output) == SPEC
