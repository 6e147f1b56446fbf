"""The registry fold: live, shadow and the live stack follow the records, whatever their order."""

from __future__ import annotations

import pytest

from driftline.errors import ModelError
from driftline.models.registry import (
    VersionLedger,
    example_version,
    promote_records,
    rollback_records,
    status_record,
)


def ledger_of(*changes: tuple[str, str]) -> VersionLedger:
    return VersionLedger(example_version(model_name="m", version=v, status=s) for v, s in changes)


def test_promotion_retires_the_replaced_version_after_the_new_one_is_live() -> None:
    ledger = ledger_of(("1", "LIVE"), ("2", "CANDIDATE"))
    records = promote_records(ledger, "m", "2", now_ms=5)
    assert [(r["version"], r["status"]) for r in records] == [("2", "LIVE"), ("1", "RETIRED")]
    assert all(r["signature"] == b"" for r in records)  # unsigned until the caller signs them
    for r in records:
        ledger.apply(r)
        assert ledger.live("m") is not None  # never a moment with nothing live
    assert ledger.live("m")["version"] == "2"  # type: ignore[index]
    assert ledger.state("m").live_stack == ["1", "2"]


def test_rollbacks_walk_back_the_live_stack() -> None:
    ledger = ledger_of(("1", "LIVE"), ("2", "LIVE"), ("3", "LIVE"))
    for expected in ("2", "1"):
        for r in rollback_records(ledger, "m", now_ms=0):
            ledger.apply(r)
        assert ledger.live("m")["version"] == expected  # type: ignore[index]
    assert ledger.state("m").live_stack == ["1"]
    with pytest.raises(ModelError, match="no earlier live version"):
        rollback_records(ledger, "m", now_ms=0)


def test_promoting_again_after_a_rollback_pushes_the_version_back() -> None:
    ledger = ledger_of(("1", "LIVE"), ("2", "LIVE"), ("1", "LIVE"), ("2", "LIVE"))
    assert ledger.state("m").live_stack == ["1", "2"]
    assert ledger.previous_live("m") == "1"


def test_shadow_ends_when_its_version_changes_status() -> None:
    ledger = ledger_of(("1", "LIVE"), ("2", "SHADOW"))
    assert ledger.shadow("m")["version"] == "2"  # type: ignore[index]
    ledger.apply(status_record(ledger.version("m", "2"), "LIVE", "promoted"))
    assert ledger.shadow("m") is None
    assert ledger.live("m")["version"] == "2"  # type: ignore[index]


def test_retiring_the_live_version_leaves_nothing_live() -> None:
    ledger = ledger_of(("1", "LIVE"), ("1", "RETIRED"))
    assert ledger.live("m") is None


def test_models_are_independent_and_unknown_versions_are_named() -> None:
    ledger = ledger_of(("1", "LIVE"))
    ledger.apply(example_version(model_name="other", version="9", status="LIVE"))
    assert ledger.names() == ["m", "other"]
    assert ledger.live("m")["version"] == "1"  # type: ignore[index]
    with pytest.raises(ModelError, match=r"versions: 1\)"):
        promote_records(ledger, "m", "7", now_ms=0)
    with pytest.raises(ModelError, match="already live"):
        promote_records(ledger, "m", "1", now_ms=0)
    with pytest.raises(ModelError, match="Unknown status"):
        status_record(ledger.version("m", "1"), "GONE", "")
