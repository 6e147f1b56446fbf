"""Artifacts through Kafka: a processor on any machine needs nothing but Kafka access.

An artifact (packed by :mod:`driftline.models.packing`) is written as chunks to an artifacts topic
meant to be compacted: each chunk is keyed ``<sha256>:<index>`` (so compaction keeps every chunk)
and all chunks of one artifact go to the partition chosen by its hash, so a reader scans one
partition. The version's ``artifact_uri`` is ``kafka:<topic>``; what comes back is checked against
the version's SHA-256 before anything uses it.
"""

from __future__ import annotations

import time
import uuid
import zlib

from driftline.config import Settings
from driftline.errors import DeliveryError, VerificationError
from driftline.headers import header_list
from driftline.models.packing import CHUNK_BYTES, join, sha256_hex, split
from driftline.streams import kafka
from driftline.streams.kafka import TopicPartition

SCHEME = "kafka:"
CHUNKS_HEADER = "driftline.artifact.chunks"


def artifact_partition(sha256: str, partitions: int) -> int:
    """The partition that holds every chunk of the artifact with this hash."""
    return zlib.crc32(sha256.encode()) % partitions


def _partitions(settings: Settings, topic: str) -> int:
    meta = kafka.admin(settings).list_topics(topic, timeout=30).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise VerificationError(
            "no-artifacts-topic", f"topic {topic} does not exist: run `driftline topics create`"
        )
    return len(meta.partitions)


def publish_artifact(settings: Settings, topic: str, data: bytes, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Write ``data`` as chunks to ``topic``; return the ``artifact_uri`` for the version record."""
    sha = sha256_hex(data)
    partition = artifact_partition(sha, _partitions(settings, topic))
    chunks = split(data, chunk_bytes)
    producer = kafka.producer(settings, **{"message.max.bytes": max(1_000_000, chunk_bytes + 4096)})
    for index, chunk in enumerate(chunks):
        producer.produce(
            topic,
            chunk,
            f"{sha}:{index}".encode(),
            partition=partition,
            headers=[(CHUNKS_HEADER, str(len(chunks)).encode())],
        )
    if producer.flush(60):
        raise DeliveryError(f"the artifact {sha} was not fully acknowledged by the broker")
    return SCHEME + topic


def fetch_artifact(settings: Settings, uri: str, sha256: str, timeout: float = 60.0) -> bytes:
    """Read an artifact's chunks back and check them against ``sha256``."""
    if not uri.startswith(SCHEME):
        raise VerificationError("unsupported-uri", f"{uri!r}: only kafka:<topic> artifacts are supported yet")
    topic = uri.removeprefix(SCHEME)
    partition = artifact_partition(sha256, _partitions(settings, topic))
    consumer = kafka.consumer(settings, f"driftline-artifact-{uuid.uuid4().hex[:8]}")
    tp = TopicPartition(topic, partition)
    _, high = consumer.get_watermark_offsets(tp, timeout=10)
    consumer.assign([TopicPartition(topic, partition, 0)])
    chunks: dict[int, bytes] = {}
    expected: int | None = None
    deadline = time.monotonic() + timeout
    try:
        position = 0
        while position < high and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                if message.error() is not None:
                    continue
                position = (message.offset() or 0) + 1
                key = (message.key() or b"").decode(errors="replace")
                digest, _, index = key.partition(":")
                if digest == sha256 and index.isdigit():
                    chunks[int(index)] = (
                        message.value() or b""
                    )  # a later record of a chunk wins, as compaction does
                    count = dict(header_list(message.headers())).get(CHUNKS_HEADER)
                    if isinstance(count, bytes | str):
                        expected = int(count)
    finally:
        consumer.close()
    if expected is None or sorted(chunks) != list(range(expected)):
        raise VerificationError("missing-chunks", f"artifact {sha256} is incomplete on {topic}[{partition}]")
    return join([chunks[i] for i in range(expected)], sha256)
