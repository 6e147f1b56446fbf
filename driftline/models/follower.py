"""Following the registry topic: the one reader of signed ``ModelVersion`` records.

A :class:`RegistryFollower` owns a consumer assigned to partition 0 of the registry topic (one
partition: the order of records is the order of changes). It reads from the beginning, decodes each
record, verifies its signature against the trusted keys and folds the verified ones into a
:class:`~driftline.models.registry.VersionLedger`. Every record it leaves out is reported to
``on_refused`` as a :class:`Refusal`; the default logs it. ``catch_up`` reads to the end the topic
had when called; ``read`` folds whatever arrived since (call it in a loop to follow).

Services use it through :meth:`RegistryFollower.connect`; tests hand it any consumer:

>>> from driftline.models.signing import example_version, generate_keys, key_id, sign_version
>>> from driftline.testing import FakeConsumer
>>> private, public = generate_keys()
>>> live = sign_version(example_version(model_name="m", version="1", status="LIVE"), private)
>>> consumer = FakeConsumer([encode_record(live), encode_record({**live, "version": "2"})])
>>> refused: list[Refusal] = []
>>> follower = RegistryFollower(consumer, "registry", {key_id(public): public}, on_refused=refused.append)
>>> follower.catch_up()
>>> follower.ledger.live("m")["version"], [(r.offset, r.reason) for r in refused]
('1', [(1, 'bad-signature')])
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from driftline.config import Settings
from driftline.errors import DecodeError, DeliveryError, VerificationError
from driftline.models.registry import Record, VersionLedger
from driftline.models.signing import verify_version
from driftline.schemas.wire import AvroDecoder, AvroEncoder, builtin_store
from driftline.streams import kafka
from driftline.streams.kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

__all__ = [
    "RecordOrigin",
    "Refusal",
    "RegistryFollower",
    "decode_record",
    "encode_record",
    "ignore_refusal",
    "log_refusal",
    "logged",
]

log = logging.getLogger(__name__)

_STORE = builtin_store()
_ENCODER = AvroEncoder.single_object(_STORE.latest("io.driftline.ModelVersion"))
_DECODER = AvroDecoder(_STORE)


def encode_record(record: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode(record)


def decode_record(value: bytes | None) -> Record:
    record = _DECODER.decode(value)
    if not isinstance(record, dict) or "model_name" not in record or "signature" not in record:
        raise DecodeError("unknown-schema", "not a ModelVersion record")
    return record


# -- what is left out --------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A registry record left out of the ledger, and why."""

    offset: int
    reason: str
    detail: str
    record: Record | None = None
    """The decoded record; ``None`` when the bytes are not a ModelVersion record."""

    @property
    def version(self) -> str:
        return "?" if self.record is None else str(self.record["version"])


def log_refusal(refusal: Refusal) -> None:
    """The default report: an ``ERROR`` line starting ``REFUSED`` (a ``WARNING`` for a record that
    is not a ModelVersion at all)."""
    if refusal.record is None:
        log.warning(
            "registry record at offset %d is not a ModelVersion (%s: %s); skipped",
            refusal.offset,
            refusal.reason,
            refusal.detail,
        )
        return
    log.error(
        "REFUSED %s registry record at offset %d: %s: %s",
        refusal.record["model_name"],
        refusal.offset,
        refusal.reason,
        refusal.detail,
    )


def ignore_refusal(_refusal: Refusal) -> None:
    """For readers that expect to leave records out (a signer reading only its own records)."""


def logged(report: Callable[[Refusal], None]) -> Callable[[Refusal], None]:
    """A report that logs the refusal as :func:`log_refusal` does, then calls ``report``."""

    def both(refusal: Refusal) -> None:
        log_refusal(refusal)
        report(refusal)

    return both


# -- the follower --------------------------------------------------------------------------------


class RegistryMessage(Protocol):
    """The parts of a consumed registry record the follower reads."""

    def error(self) -> KafkaError | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def value(self) -> bytes | None: ...


class RegistryConsumer(Protocol):
    """The consumer calls the follower makes (``confluent_kafka.Consumer`` has them)."""

    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def consume(self, num_messages: int = 1, timeout: float = -1) -> Sequence[RegistryMessage]: ...
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...
    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class RecordOrigin:
    """Where a record in the ledger came from on the topic."""

    offset: int
    timestamp_ms: int
    """The broker's timestamp (wall-clock milliseconds)."""


class RegistryFollower:
    """The registry as the verified records of partition 0 of ``topic`` say, kept current by ``read``.

    With ``model_name`` it keeps that model's records only. ``trusted_keys=None`` folds records
    without verifying them: for showing the topic's content, never for acting on it.
    """

    def __init__(
        self,
        consumer: RegistryConsumer,
        topic: str,
        trusted_keys: Mapping[str, bytes] | None,
        *,
        model_name: str | None = None,
        on_refused: Callable[[Refusal], None] = log_refusal,
    ) -> None:
        self.topic = topic
        self.model_name = model_name
        self._trusted = None if trusted_keys is None else dict(trusted_keys)
        self._on_refused = on_refused
        self._consumer = consumer
        self._ledger = VersionLedger()
        self._origins: dict[tuple[str, str], RecordOrigin] = {}
        self._position = 0
        self._reported: tuple[str, str] | None = None
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    @classmethod
    def connect(
        cls,
        settings: Settings,
        trusted_keys: Mapping[str, bytes] | None,
        *,
        model_name: str | None = None,
        on_refused: Callable[[Refusal], None] = log_refusal,
        group_id: str | None = None,
    ) -> RegistryFollower:
        """A follower of ``settings.topics.model_versions`` with a consumer of its own."""
        consumer = kafka.consumer(settings, group_id or f"driftline-registry-{uuid.uuid4().hex[:8]}")
        return cls(
            consumer,
            settings.topics.model_versions,
            trusted_keys,
            model_name=model_name,
            on_refused=on_refused,
        )

    @property
    def ledger(self) -> VersionLedger:
        """The registry state so far (apply nothing to it: the follower owns it)."""
        return self._ledger

    @property
    def position(self) -> int:
        """The offset of the next record to read."""
        return self._position

    def catch_up(self, timeout: float = 30.0) -> None:
        """Read every record written before this call, or raise :class:`DeliveryError`."""
        _, end = self._consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=timeout)
        deadline = time.monotonic() + timeout
        while self._position < end:
            if time.monotonic() > deadline:
                raise DeliveryError(
                    f"reading {self.topic} to offset {end} timed out at {self._position} after {timeout:.0f}s"
                )
            self.read(0.2)

    def read(self, timeout: float = 0.0) -> int:
        """Fold the records that arrive within ``timeout``; return how many were read."""
        messages = kafka.data_messages(self._consumer.consume(500, timeout))
        for message in messages:
            self._fold(message)
        if not messages:  # past a compacted or aborted tail, the consumer's position says where
            at = self._consumer.position([TopicPartition(self.topic, 0)])[0].offset
            self._position = max(self._position, at)
        return len(messages)

    def origin(self, record: Mapping[str, Any]) -> RecordOrigin:
        """Offset and timestamp of the latest record of ``record``'s version."""
        return self._origins[(str(record["model_name"]), str(record["version"]))]

    def close(self) -> None:
        self._consumer.close()

    # -- one model's view (needs ``model_name``) ---------------------------------------------------

    def poll(self) -> Record | None:
        """Read what arrived; the live record when it changed since the last call (else ``None``)."""
        self.read(0)
        live = self._ledger.live(self._model())
        identity = None if live is None else (str(live["version"]), str(live["sha256"]))
        if identity is None or identity == self._reported:
            return None
        self._reported = identity
        return live

    def version(self, version: str) -> Record | None:
        return self._ledger.state(self._model()).versions.get(version)

    def _model(self) -> str:
        if self.model_name is None:
            raise TypeError("this follower reads every model: give model_name to follow one")
        return self.model_name

    def _fold(self, message: RegistryMessage) -> None:
        offset = message.offset() or 0
        self._position = offset + 1
        try:
            record = decode_record(message.value())
        except DecodeError as exc:
            self._on_refused(Refusal(offset, exc.reason, exc.detail))
            return
        if self.model_name is not None and record["model_name"] != self.model_name:
            return
        if self._trusted is not None:
            try:
                verify_version(record, self._trusted)
            except VerificationError as exc:
                self._on_refused(Refusal(offset, exc.reason, exc.detail, record))
                return
        origin = RecordOrigin(offset, message.timestamp()[1])
        self._origins[(str(record["model_name"]), str(record["version"]))] = origin
        self._ledger.apply(record, offset)
