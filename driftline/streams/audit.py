"""The audit topic: what each service did with model versions (``AuditEvent`` records, Avro).

Writing is fire-and-forget with a bounded wait at close: the audit trail must never stall serving.
"""

from __future__ import annotations

import logging
import time

from driftline.config import Settings
from driftline.schemas.wire import AvroEncoder, builtin_store
from driftline.streams import kafka
from driftline.streams.kafka import KafkaError, Message

log = logging.getLogger(__name__)

_ENCODER = AvroEncoder.single_object(builtin_store().latest("io.driftline.AuditEvent"))


class AuditLog:
    """Writes ``AuditEvent`` records for one service instance."""

    def __init__(self, settings: Settings, service: str, instance: str) -> None:
        self._topic = settings.topics.audit
        self._service, self._instance = service, instance
        self._producer = kafka.producer(settings, on_delivery=self._delivered)

    def record(
        self, action: str, model: str, version: str, reason: str, detail: str, control_offset: int
    ) -> None:
        event = {
            "time": int(time.time() * 1000),
            "service": self._service,
            "instance": self._instance,
            "action": action,
            "model_name": model,
            "version": version,
            "reason": reason,
            "detail": detail,
            "control_offset": control_offset,
        }
        self._producer.produce(self._topic, _ENCODER.encode(event), f"{model}:{version}".encode())
        self._producer.poll(0)

    def close(self, timeout: float = 10.0) -> None:
        if self._producer.flush(timeout):
            log.warning("some audit records were not acknowledged within %.0fs", timeout)

    @staticmethod
    def _delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            log.warning("audit record not delivered: %s", err)
