"""`driftline produce --from FILE`: CSV and Parquet rows as events of a model's contract.

The pure tests convert files written here with pyarrow; the Kafka test sends a CSV through the CLI
and reads the events back the way serve does (the written schema, the model's feature extractor)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
import pytest
from click.testing import CliRunner

from driftline.cli.stream import produce
from driftline.config import Settings
from driftline.errors import ConfigError
from driftline.models.artifact import load_config
from driftline.models.spec import Classification, EventTime, InputField, ModelSpec, Regression
from driftline.schemas import AvroDecoder, AvroEncoder, AvroSchema, builtin_store
from driftline.streams.features import FeatureExtractor
from driftline.streams.from_file import FileBatch, FileSource, label_writer, now_in, parse_mapping
from driftline.streams.records import contract_schema, decode_rows
from driftline.testing import FakeMessage
from tests.helpers import read_topic

SPEC = ModelSpec(
    inputs=(
        InputField(name="amount", unit="EUR", mean=10.0, scale=5.0),
        InputField(name="tip", nullable=True, impute=0.0),
        InputField(name="online", kind="boolean"),
        InputField(name="country", kind="categorical", categories=("DE", "FR"), nullable=True),
    ),
    task=Classification(classes=("ok", "fraud")),
)
JAN_1 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in epoch ms


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def one_batch(source: FileSource, limit: int | None = None) -> FileBatch:
    batches = list(source.batches(limit))
    assert len(batches) == 1
    return batches[0]


def accepted(spec: ModelSpec, records: list[dict[str, Any]]) -> None:
    """Every record goes through the contract's Avro schema and the model's feature extractor."""
    schema = AvroSchema.from_dict(spec.avro_schema())
    encoder = AvroEncoder.single_object(schema)
    store = builtin_store()
    store.add(schema)
    stamp = now_in(spec.event_time.unit, JAN_1)
    field = spec.event_time.field
    sent = [{**r, field: stamp} if field and r[field] is None else r for r in records]
    messages = [FakeMessage(encoder.encode(r), _offset=i) for i, r in enumerate(sent)]
    rows, dead = decode_rows(messages, AvroDecoder(store), FeatureExtractor(spec))
    assert [(d.reason, d.detail) for d in dead] == []
    assert len(rows) == len(records)


# -- conversion --------------------------------------------------------------------------------


def test_csv_rows_become_the_contracts_records(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "sales.csv",
        "event_id,event_time,amount,tip,online,country,outcome,extra\n"
        "a1,2024-01-01T00:00:00Z,12.50,,true,FR,fraud,x\n"
        ",2024-01-01T01:00:00+01:00,3,1.5,no,,0,y\n"
        "a3,2024-01-01 00:00:01,-0.25,NaN,1,NA,1,z\n"
        "a4,,1e3,2,F,IT,,w\n",
    )
    batch = one_batch(FileSource(path, SPEC, label_column="outcome"))
    assert batch.event_ids == ["a1", "sales-2", "a3", "a4"]
    assert batch.event_millis == [JAN_1, JAN_1, JAN_1 + 1000, None]
    assert [r["amount"] for r in batch.records] == [12.5, 3.0, -0.25, 1000.0]
    assert [r["tip"] for r in batch.records] == [None, 1.5, None, 2.0]
    assert [r["online"] for r in batch.records] == [True, False, True, False]
    assert [r["country"] for r in batch.records] == ["FR", None, "NA", "IT"]  # "NA" is a category
    assert [r["event_time"] for r in batch.records] == [JAN_1, JAN_1, JAN_1 + 1000, None]
    assert batch.labels == [1, 0, 1, None]
    assert all("extra" not in r and "outcome" not in r for r in batch.records)
    accepted(SPEC, batch.records)


def test_parquet_in_batches_with_decimals_timestamps_and_limit(tmp_path: Path) -> None:
    n = 25
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    table = pa.table(
        {
            "id": pa.array([f"p{i}" if i % 5 else None for i in range(n)], pa.string()),
            "when": pa.array([start + dt.timedelta(seconds=i) for i in range(n)], pa.timestamp("us", "UTC")),
            "amount_eur": pa.array([decimal.Decimal(f"{i}.25") for i in range(n)], pa.decimal128(10, 2)),
            "tip": pa.array([None if i % 2 else float(i) for i in range(n)], pa.float64()),
            "online": pa.array([i % 3 == 0 for i in range(n)], pa.bool_()),
            "country": pa.array([[7, None, 9][i % 3] for i in range(n)], pa.int32()),
            "label": pa.array([i % 2 for i in range(n)], pa.int64()),
        }
    )
    path = tmp_path / "sales.parquet"
    pq.write_table(table, path, row_group_size=10)
    spec = SPEC.model_copy(update={"event_id": "id", "event_time": EventTime(field="when", unit="micros")})
    source = FileSource(
        path,
        spec,
        mapping=parse_mapping(["amount_eur=amount"]),
        label_column="label",
        batch_rows=4,
    )
    assert source.row_count() == n
    batches = list(source.batches(limit=22))
    assert [b.first_row for b in batches] == [1, 5, 9, 13, 17, 21]  # 4 rows each, the last cut at 22
    records = [r for b in batches for r in b.records]
    assert len(records) == 22
    assert [r["id"] for r in records[:6]] == ["sales-1", "p1", "p2", "p3", "p4", "sales-6"]
    assert records[3]["when"] == (JAN_1 + 3000) * 1000  # micros, the spec's unit
    assert [b.event_millis[0] for b in batches[:2]] == [JAN_1, JAN_1 + 4000]
    assert [r["amount"] for r in records[:3]] == [0.25, 1.25, 2.25]
    assert [r["country"] for r in records[:3]] == ["7", None, "9"]
    assert [label for b in batches for label in b.labels or []] == [i % 2 for i in range(22)]
    accepted(spec, records)


def test_time_units(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "amount,online,t\n1,1,1704067200\n2,0,2024-01-01T00:00:00.5Z\n")
    seconds = SPEC.model_copy(update={"event_time": EventTime(field="t", unit="seconds")})
    batch = one_batch(FileSource(path, seconds))
    assert [r["t"] for r in batch.records] == [JAN_1 // 1000, JAN_1 // 1000]
    assert batch.event_millis == [JAN_1, JAN_1 + 500]
    iso = SPEC.model_copy(update={"event_time": EventTime(field="t", unit="iso8601")})
    with pytest.raises(ConfigError, match=r"row 1 is '1704067200': not an ISO-8601 time"):
        list(FileSource(path, iso).batches())
    path = write_csv(tmp_path / "u.csv", "amount,online,t\n1,1,2024-01-01T00:00:00Z\n")
    batch = one_batch(FileSource(path, iso))
    assert batch.records[0]["t"] == "2024-01-01T00:00:00Z"
    assert batch.event_millis == [JAN_1]
    accepted(iso, batch.records)


def test_no_time_or_id_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bare.csv", "amount,online\n1,true\n")
    source = FileSource(path, SPEC)
    batch = one_batch(source)
    assert batch.records == [
        {
            "event_id": "bare-1",
            "event_time": None,
            "amount": 1.0,
            "tip": None,
            "online": True,
            "country": None,
        }
    ]
    assert any("'event_time'" in note for note in source.notes)
    assert any("'tip'" in note for note in source.notes)  # nullable, absent: null everywhere
    accepted(SPEC, batch.records)


def test_a_missing_required_column_is_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "short.csv", "amount,country,colour\n1,FR,red\n")
    with pytest.raises(ConfigError) as caught:
        FileSource(path, SPEC)
    message = str(caught.value)
    assert "online" in message
    assert "amount, country, colour" in message
    assert "--map" in message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("amount,online\n,true\n", r"short.csv, column 'amount', row 1 is empty.*not nullable"),
        ("amount,online\n1,true\n2,\n", r"column 'online', row 2 is empty"),
        ("amount,online\n1,maybe\n", r"row 1 is 'maybe': a boolean is"),
        ("amount,online\n1,2\n", r"row 1 is '2': a boolean"),
        ("amount,online\nabc,1\n", r"short.csv.*amount.*abc"),
        ("amount,online\ninf,1\n", r"row 1 is inf: field 'amount' needs a finite number"),
        (
            "amount,online,outcome\n1,1,maybe\n",
            r"row 1 is 'maybe': a label is one of ok, fraud or an index 0-1",
        ),
        ("amount,online,outcome\n1,1,2\n", r"a label is one of ok, fraud"),
    ],
)
def test_bad_values_are_reported_with_their_row(tmp_path: Path, text: str, error: str) -> None:
    path = write_csv(tmp_path / "short.csv", text)
    label = "outcome" if "outcome" in text else None
    with pytest.raises(ConfigError, match=error):
        list(FileSource(path, SPEC, label_column=label).batches())


def test_unreadable_unknown_and_mismapped_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown file type.*CSV.*Parquet"):
        FileSource(write_csv(tmp_path / "data.json", "{}"), SPEC)
    with pytest.raises(ConfigError, match=r"cannot read .*broken.parquet as PARQUET"):
        FileSource(write_csv(tmp_path / "broken.parquet", "not parquet at all"), SPEC)
    with pytest.raises(ConfigError, match="does not exist"):
        FileSource(tmp_path / "absent.csv", SPEC)
    path = write_csv(tmp_path / "ok.csv", "amount,online,label\n1,1,ok\n")
    with pytest.raises(ConfigError, match=r"no field 'colour'"):
        FileSource(path, SPEC, mapping={"amount": "colour"})
    with pytest.raises(ConfigError, match=r"has no column 'amt'"):
        FileSource(path, SPEC, mapping={"amt": "amount"})
    with pytest.raises(ConfigError, match=r"--label-column outcome.*amount, online, label"):
        FileSource(path, SPEC, label_column="outcome")
    with pytest.raises(ConfigError, match="COLUMN=FIELD"):
        parse_mapping(["amount"])


def test_labels_in_the_label_schema() -> None:
    encoder = AvroEncoder.single_object(builtin_store().latest("io.driftline.Label"))
    decoder = AvroDecoder(builtin_store())
    label = decoder.decode(label_writer(encoder, SPEC)("e1", JAN_1, 1))
    assert (label["event_id"], label["event_time"], label["label"]) == ("e1", JAN_1, 1)
    if "class_name" in encoder.schema.field_names:
        assert label["class_name"] == "fraud"
    regression = ModelSpec(inputs=(InputField(name="x"),), task=Regression(target="price", unit="EUR"))
    if "target" in encoder.schema.field_names:
        assert decoder.decode(label_writer(encoder, regression)("e1", JAN_1, 2.5))["target"] == 2.5
    else:
        with pytest.raises(ConfigError, match="Label v2 schema"):
            label_writer(encoder, regression)


def test_the_cli_keeps_synthetic_and_file_options_apart(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", "amount\n1\n")
    result = CliRunner().invoke(produce, ["--from", str(path), "--count", "5"], obj=Settings())
    assert result.exit_code == 2
    assert "--count: only for synthetic events" in result.output
    result = CliRunner().invoke(produce, ["--map", "a=b"], obj=Settings())
    assert result.exit_code == 2
    assert "--map: only with --from FILE" in result.output
    help_text = CliRunner().invoke(produce, ["--help"]).output
    assert "--from FILE" in help_text
    assert "--write-schema" in help_text
    assert "--schema" in help_text


# -- on the broker -----------------------------------------------------------------------------


@pytest.mark.kafka
def test_produce_a_csv_and_read_it_back_as_serve_does(
    settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    """The CLI sends every row as an event of the model's contract and each label as its class index."""
    config = load_config(model_dir)
    spec = config.input_spec
    features = [f.name for f in spec.inputs]
    rows = 30
    header = ["ref", "event_time", *(f"col_{features[0]}" if k == 0 else f for k, f in enumerate(features))]
    lines = [",".join([*header, "outcome"])]
    for i in range(rows):
        values = [f"{(i + 1) * (k + 1)}.5" for k in range(len(features))]
        outcome = config.classes[i % 2] if i % 3 else str(i % 2)  # names and indices both
        lines.append(",".join([f"row{i}", f"2024-01-01T00:00:{i:02d}Z", *values, outcome]))
    path = write_csv(tmp_path / "loans.csv", "\n".join(lines) + "\n")
    schema_path = tmp_path / "loans.avsc"
    result = CliRunner().invoke(
        produce,
        [
            "--from", str(path),
            "--model-dir", str(model_dir),
            "--label-column", "outcome",
            "--map", f"col_{features[0]}={features[0]}",
            "--map", "ref=event_id",
            "--rate", "200",
            "--limit", "25",
            "--write-schema", str(schema_path),
        ],
        obj=settings,
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Produced 25 events and 25 labels from loans.csv" in result.output

    schema = AvroSchema.from_json(schema_path.read_text())
    assert schema.raw == contract_schema("agrawal", spec).raw  # what serve of that model knows unasked
    decoder = AvroDecoder(builtin_store())
    decoder.learn(contract_schema("agrawal", spec))
    events = read_topic(settings, settings.topics.events, 25, 60)
    assert len(events) == 25
    decoded, dead = decode_rows(events, decoder, FeatureExtractor(spec))
    assert dead == []
    assert len(decoded) == 25
    assert {m.key() for m in events} == {f"row{i}".encode() for i in range(25)}
    assert sorted(decoded.event_times.tolist()) == [JAN_1 + 1000 * i for i in range(25)]
    first = next(i for i, m in enumerate(events) if m.key() == b"row0")
    row = int(decoded.rows.tolist().index(first))
    assert decoded.features[row].tolist() == [(k + 1) + 0.5 for k in range(len(features))]

    labels = read_topic(settings, settings.topics.labels, 25, 60)
    decoder = AvroDecoder(builtin_store())
    by_id = {str(r["event_id"]): r for r in (decoder.decode(m.value()) for m in labels)}
    assert by_id.keys() == {f"row{i}" for i in range(25)}
    assert all(by_id[f"row{i}"]["label"] == i % 2 for i in range(25))
    assert by_id["row3"]["event_time"] == JAN_1 + 3000
    assert json.loads(schema_path.read_text())["name"] == "Event"
