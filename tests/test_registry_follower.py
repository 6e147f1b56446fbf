"""The registry follower without a broker: decode, verify, fold, report what it leaves out."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from driftline.errors import DeliveryError
from driftline.models.follower import Refusal, RegistryFollower, encode_record, logged
from driftline.models.registry import Record
from driftline.models.signing import example_version, generate_keys, key_id, sign_version
from driftline.testing import FakeConsumer

PRIVATE, PUBLIC = generate_keys()
TRUSTED = {key_id(PUBLIC): PUBLIC}


def signed(version: str, status: str, model: str = "m", **fields: object) -> Record:
    return sign_version(example_version(model_name=model, version=version, status=status, **fields), PRIVATE)


def follower_of(
    *records: Record | bytes, model_name: str | None = "m", trusted: dict[str, bytes] | None = TRUSTED
) -> tuple[RegistryFollower, FakeConsumer, list[Refusal]]:
    consumer = FakeConsumer([r if isinstance(r, bytes) else encode_record(r) for r in records])
    refused: list[Refusal] = []
    follower = RegistryFollower(
        consumer, "registry", trusted, model_name=model_name, on_refused=refused.append
    )
    return follower, consumer, refused


def test_verified_records_are_folded_and_the_others_reported_with_why() -> None:
    other_private, _ = generate_keys()
    forged = {**sign_version(example_version(model_name="m", version="3"), other_private), "key_id": ""}
    follower, _, refused = follower_of(
        signed("1", "LIVE"),
        {**signed("2", "LIVE"), "signature": b""},  # unsigned
        {**signed("2", "LIVE"), "reason": "altered"},  # changed after signing
        forged,
        b"not avro at all",
        signed("2", "SHADOW"),
    )
    follower.catch_up()
    assert follower.position == 6
    assert follower.ledger.live("m")["version"] == "1"  # type: ignore[index]
    assert follower.ledger.shadow("m")["version"] == "2"  # type: ignore[index]
    assert [(r.offset, r.reason, r.version) for r in refused] == [
        (1, "unsigned", "2"),
        (2, "bad-signature", "2"),
        (3, "unknown-key", "3"),
        (4, "undecodable", "?"),
    ]
    assert refused[-1].record is None


def test_it_follows_records_written_after_the_catch_up() -> None:
    follower, consumer, _ = follower_of(signed("1", "LIVE"))
    follower.catch_up()
    assert follower.poll()["version"] == "1"  # type: ignore[index]
    assert follower.poll() is None  # unchanged since the last call
    consumer.append(encode_record(signed("2", "LIVE")), timestamp_ms=1234)
    assert follower.poll()["version"] == "2"  # type: ignore[index]
    assert follower.version("1")["status"] == "LIVE"  # type: ignore[index]
    assert follower.version("9") is None
    origin = follower.origin(follower.ledger.live("m"))  # type: ignore[arg-type]
    assert (origin.offset, origin.timestamp_ms) == (1, 1234)


def test_a_follower_of_one_model_ignores_the_others_records() -> None:
    unsigned_other = {**signed("1", "LIVE", model="other"), "signature": b""}
    follower, _, refused = follower_of(signed("1", "LIVE"), unsigned_other, signed("2", "LIVE", "other"))
    follower.catch_up()
    assert follower.ledger.names() == ["m"]
    assert refused == []


def test_a_follower_of_every_model_keeps_them_all() -> None:
    follower, _, _ = follower_of(signed("1", "LIVE"), signed("1", "LIVE", "other"), model_name=None)
    follower.catch_up()
    assert follower.ledger.names() == ["m", "other"]
    with pytest.raises(TypeError, match="model_name"):
        follower.poll()


def test_without_trusted_keys_records_are_shown_unverified() -> None:
    follower, _, refused = follower_of({**signed("1", "LIVE"), "signature": b""}, b"junk", trusted=None)
    follower.catch_up()
    assert follower.ledger.live("m")["version"] == "1"  # type: ignore[index]
    assert [r.reason for r in refused] == ["undecodable"]


class Stalled(FakeConsumer):
    """A partition whose end lies past what it ever delivers."""

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self.messages) + 1


def test_catching_up_with_a_topic_that_does_not_deliver_times_out() -> None:
    follower = RegistryFollower(Stalled([encode_record(signed("1", "LIVE"))]), "registry", TRUSTED)
    with pytest.raises(DeliveryError, match="timed out"):
        follower.catch_up(timeout=0.05)
    assert follower.position == 1


def test_the_default_report_is_a_refused_log_line(caplog: pytest.LogCaptureFixture) -> None:
    counted: list[str] = []
    consumer = FakeConsumer([encode_record({**signed("1", "LIVE"), "signature": b""})])
    on_refused = logged(lambda r: counted.append(r.reason))
    follower = RegistryFollower(consumer, "registry", TRUSTED, model_name="m", on_refused=on_refused)
    with caplog.at_level(logging.WARNING, logger="driftline.models.follower"):
        follower.catch_up()
    assert counted == ["unsigned"]
    assert "REFUSED m registry record at offset 0: unsigned:" in caplog.text


def test_the_consumer_is_closed_with_the_follower() -> None:
    follower, consumer, _ = follower_of()
    follower.catch_up()  # an empty registry is read at once
    follower.close()
    assert consumer.closed


def test_models_list_shows_the_refused_records_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from driftline.cli import main
    from driftline.models import control

    records = [signed("1", "LIVE"), {**signed("2", "LIVE"), "signature": b""}]
    consumer = FakeConsumer([encode_record(r) for r in records])

    def connect(_settings: object, trusted: dict[str, bytes] | None, **kw: Any) -> RegistryFollower:
        return RegistryFollower(consumer, "registry", trusted, **kw)

    monkeypatch.setattr(RegistryFollower, "connect", connect)
    monkeypatch.setattr(control, "load_trusted_keys", lambda _s: TRUSTED)
    shown = CliRunner().invoke(main, ["-b", "127.0.0.1:1", "models", "list"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "refused record at offset 1: unsigned: m v2 carries no signature" in shown.output
    assert consumer.closed
