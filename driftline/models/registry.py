"""The model registry as a fold over the control topic's records: pure logic, no Kafka.

Every change is a new, signed ``ModelVersion`` record; the registry state is what those records
say when read in order. For each model it keeps the latest record of every version, the live and the
shadow version, and the *live stack*: the versions that went live, in order. Making a version live
that is already on the stack goes back to it (a rollback), so ``rollback`` always means "the version
that was live before this one".

>>> ledger = VersionLedger()
>>> for v in ("1", "2", "3"):
...     ledger.apply(example_version(model_name="m", version=v, status="LIVE"))
>>> ledger.state("m").live_stack, ledger.previous_live("m")
(['1', '2', '3'], '2')
>>> [(r["version"], r["status"]) for r in rollback_records(ledger, "m", now_ms=0)]
[('2', 'LIVE'), ('3', 'RETIRED')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftline.errors import ModelError
from driftline.models.signing import example_version

__all__ = [
    "ModelState",
    "VersionLedger",
    "example_version",
    "promote_records",
    "rollback_records",
    "status_record",
]

Record = dict[str, Any]
STATUSES = ("CANDIDATE", "SHADOW", "LIVE", "RETIRED")


@dataclass
class ModelState:
    """What the records say about one model."""

    versions: dict[str, Record] = field(default_factory=dict)
    """The latest record of each version, in the order versions first appeared."""
    live: Record | None = None
    shadow: Record | None = None
    live_stack: list[str] = field(default_factory=list)
    history: list[tuple[int, Record]] = field(default_factory=list)
    """Every record applied, with its offset on the control topic."""


class VersionLedger:
    """The registry state, built by applying (already verified) records in topic order."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._models: dict[str, ModelState] = {}
        for record in records:
            self.apply(record)

    def apply(self, record: Mapping[str, Any], offset: int = -1) -> None:
        rec = dict(record)
        state = self._models.setdefault(str(rec["model_name"]), ModelState())
        version, status = str(rec["version"]), str(rec["status"])
        state.versions.pop(version, None)
        state.versions[version] = rec
        state.history.append((offset, rec))
        if status == "LIVE":
            state.live = rec
            if version in state.live_stack:  # going back to an earlier live version
                del state.live_stack[state.live_stack.index(version) + 1 :]
            else:
                state.live_stack.append(version)
        elif state.live is not None and state.live["version"] == version:
            state.live = None  # the live version was retired or demoted: nothing is live
        if status == "SHADOW":
            state.shadow = rec
        elif state.shadow is not None and state.shadow["version"] == version:
            state.shadow = None

    def names(self) -> list[str]:
        return list(self._models)

    def state(self, name: str) -> ModelState:
        return self._models.get(name) or ModelState()

    def live(self, name: str) -> Record | None:
        return self.state(name).live

    def shadow(self, name: str) -> Record | None:
        return self.state(name).shadow

    def version(self, name: str, version: str) -> Record:
        try:
            return self.state(name).versions[version]
        except KeyError:
            known = ", ".join(self.state(name).versions) or "none"
            raise ModelError(
                f"{name} has no version {version!r} on the registry (versions: {known})."
            ) from None

    def previous_live(self, name: str) -> str | None:
        stack = self.state(name).live_stack
        return stack[-2] if len(stack) >= 2 else None


def status_record(record: Mapping[str, Any], status: str, reason: str) -> Record:
    """An unsigned copy of ``record`` with a new status and the reason for it (sign it before use)."""
    if status not in STATUSES:
        raise ModelError(f"Unknown status {status!r}; choose one of {', '.join(STATUSES)}.")
    return {**record, "status": status, "reason": reason, "key_id": "", "signature": b""}


def promote_records(ledger: VersionLedger, name: str, version: str, now_ms: int) -> list[Record]:
    """Records that make ``version`` live and retire the version it replaces (unsigned).

    The new live record comes first, so a reader never sees a moment with nothing live.
    """
    target = ledger.version(name, version)
    current = ledger.live(name)
    if current is not None and current["version"] == version:
        raise ModelError(f"{name} v{version} is already live.")
    replaced = f", replacing v{current['version']}" if current else ""
    records = [status_record(target, "LIVE", f"promoted at {now_ms}{replaced}")]
    if current is not None:
        records.append(status_record(current, "RETIRED", f"replaced by v{version} at {now_ms}"))
    return records


def rollback_records(ledger: VersionLedger, name: str, now_ms: int) -> list[Record]:
    """Records that make the previously live version live again and retire the current one."""
    current, previous = ledger.live(name), ledger.previous_live(name)
    if current is None or previous is None:
        raise ModelError(f"{name} has no earlier live version to roll back to.")
    return [
        status_record(
            ledger.version(name, previous), "LIVE", f"rollback from v{current['version']} at {now_ms}"
        ),
        status_record(current, "RETIRED", f"rolled back to v{previous} at {now_ms}"),
    ]
