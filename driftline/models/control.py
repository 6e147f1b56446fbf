"""The registry on Kafka: writing signed ``ModelVersion`` records, publishing artifacts, and turning a
verified record back into a model directory. Reading the registry is
:class:`~driftline.models.follower.RegistryFollower`'s job.

Records are keyed ``<model>:<version>`` on a single-partition, compacted topic: the order of records
is the order of changes, and compaction keeps at least the latest record of every version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import fsspec

from driftline.config import Settings
from driftline.errors import ConfigError, DeliveryError, VerificationError
from driftline.models.artifact import load_config
from driftline.models.follower import RegistryFollower, encode_record, ignore_refusal
from driftline.models.packing import pack_artifact, sha256_hex, unpack_artifact
from driftline.models.registry import (
    Record,
    VersionLedger,
    promote_records,
    rollback_records,
    status_record,
)
from driftline.models.signing import key_id, public_key_of, sign_version
from driftline.models.transport import SCHEME, fetch_artifact, publish_artifact
from driftline.streams import kafka

PROFILE_FILE = "reference_profile.json"
"""A reference profile beside an artifact's two files; ``publish_version`` puts it in the record."""


# -- keys ----------------------------------------------------------------------------------------


def load_private_key(settings: Settings) -> bytes:
    path = settings.private_key_path()
    if not path.is_file():
        raise ConfigError(
            f"No signing key at {path}: create one with `driftline models keygen --out {path.parent}`, "
            "or point DRIFTLINE_SIGNING__PRIVATE_KEY at the trainers' key."
        )
    return path.read_bytes()


def load_trusted_keys(settings: Settings) -> dict[str, bytes]:
    """The public keys processors trust, by key id."""
    keys = {}
    for path in settings.public_key_paths():
        if not path.is_file():
            raise ConfigError(
                f"No trusted public key at {path}: copy the trainers' signing.pub there, or set "
                "DRIFTLINE_SIGNING__PUBLIC_KEYS='[\"/path/to/signing.pub\"]'."
            )
        pem = path.read_bytes()
        keys[key_id(pem)] = pem
    return keys


# -- records on the topic ------------------------------------------------------------------------


def record_key(record: Mapping[str, Any]) -> bytes:
    return f"{record['model_name']}:{record['version']}".encode()


def write_records(settings: Settings, records: Sequence[Mapping[str, Any]], timeout: float = 30.0) -> None:
    """Append signed records to the registry topic, in order, and wait for the broker's acknowledgement."""
    producer = kafka.producer(settings, **{"linger.ms": 0, "max.in.flight.requests.per.connection": 1})
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for record in records:
        producer.produce(
            settings.topics.model_versions, encode_record(record), record_key(record), on_delivery=delivered
        )
    if producer.flush(timeout) or errors:
        raise DeliveryError(f"the registry topic did not acknowledge the records: {errors or 'timeout'}")


# -- changes -------------------------------------------------------------------------------------


def signer_ledger(settings: Settings, private_key: bytes) -> VersionLedger:
    """The registry as the holder of ``private_key`` sees it: records its public key verifies."""
    public = public_key_of(private_key)
    follower = RegistryFollower.connect(settings, {key_id(public): public}, on_refused=ignore_refusal)
    try:
        follower.catch_up()
    finally:
        follower.close()
    return follower.ledger


def change(
    settings: Settings, private_key: bytes, plan: Callable[[VersionLedger, int], list[Record]]
) -> list[Record]:
    """Sign and write the records ``plan(ledger, now_ms)`` asks for; return them."""
    records = plan(signer_ledger(settings, private_key), int(time.time() * 1000))
    signed = [sign_version(r, private_key) for r in records]
    write_records(settings, signed)
    return signed


def promote(settings: Settings, private_key: bytes, name: str, version: str) -> list[Record]:
    return change(settings, private_key, lambda ledger, now: promote_records(ledger, name, version, now))


def rollback(settings: Settings, private_key: bytes, name: str) -> list[Record]:
    return change(settings, private_key, lambda ledger, now: rollback_records(ledger, name, now))


def set_status(settings: Settings, private_key: bytes, name: str, version: str, status: str) -> list[Record]:
    return change(
        settings,
        private_key,
        lambda ledger, now: [
            status_record(ledger.version(name, version), status, f"{status.lower()} at {now}")
        ],
    )


# -- artifacts -----------------------------------------------------------------------------------


def publish_version(
    settings: Settings,
    artifact_dir: Path,
    private_key: bytes,
    *,
    status: str = "CANDIDATE",
    uri: str | None = None,
    parent_version: str | None = None,
    training_data: Sequence[Mapping[str, Any]] = (),
    metrics: Mapping[str, float] | None = None,
    reference_profile: str | None = None,
    reason: str = "published",
    request_id: str | None = None,
) -> Record:
    """Upload an artifact (to the artifacts topic, or to ``uri`` through fsspec), then sign and write
    its version record. The record is written last, so a crash never leaves a version without its
    artifact."""
    config = load_config(artifact_dir)
    if reference_profile is None and (artifact_dir / PROFILE_FILE).is_file():
        reference_profile = (artifact_dir / PROFILE_FILE).read_text()
    data = pack_artifact(artifact_dir)
    if uri is None:
        artifact_uri = publish_artifact(settings, settings.topics.artifacts, data)
    else:
        with fsspec.open(uri, "wb") as sink:
            sink.write(data)
        artifact_uri = uri
    record: Record = {
        "model_name": config.name,
        "version": config.version,
        "status": status,
        "artifact_uri": artifact_uri,
        "sha256": sha256_hex(data),
        "created_at": int(time.time() * 1000),
        "parent_version": parent_version,
        "training_data": [dict(w) for w in training_data],
        "metrics": {k: float(v) for k, v in {**config.metrics, **(metrics or {})}.items()},
        "features": list(config.features),
        "reference_profile": reference_profile,
        "reason": reason,
        "request_id": request_id,
        "code_version": _code_version(),
        "spec": None if config.spec is None else config.spec.model_dump_json(),
        "key_id": "",
        "signature": b"",
    }
    signed = sign_version(record, private_key)
    write_records(settings, [signed])
    return signed


def publish_as(
    settings: Settings, artifact_dir: Path, private_key: bytes, status: str = "CANDIDATE", **options: Any
) -> Record:
    """Publish an artifact as a candidate, or straight to ``LIVE`` or ``SHADOW``; returns the record
    that gives it that status. ``options`` go to :func:`publish_version`."""
    record = publish_version(settings, artifact_dir, private_key, **options)
    name, version = str(record["model_name"]), str(record["version"])
    if status == "LIVE":
        written = promote(settings, private_key, name, version)
        return next(r for r in written if r["version"] == version and r["status"] == "LIVE")
    if status == "SHADOW":
        shadowed = sign_version(status_record(record, "SHADOW", "published as shadow"), private_key)
        write_records(settings, [shadowed])
        return shadowed
    return record


def _code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"driftline {version('driftline')}"
    except PackageNotFoundError:
        return "driftline (not installed)"


def fetch_bytes(settings: Settings, record: Mapping[str, Any], timeout: float = 60.0) -> bytes:
    """The artifact's bytes, checked against the record's SHA-256."""
    uri, sha = str(record["artifact_uri"]), str(record["sha256"])
    if uri.startswith(SCHEME):
        return fetch_artifact(settings, uri, sha, timeout)
    try:
        with fsspec.open(uri, "rb") as source:
            data: bytes = source.read()
    except (OSError, ValueError, ImportError) as exc:
        raise VerificationError("unreachable", f"cannot read {uri}: {exc}") from exc
    actual = sha256_hex(data)
    if actual != sha:
        raise VerificationError("sha256-mismatch", f"{uri} hashes to {actual}, the version says {sha}")
    return data


def materialize(settings: Settings, record: Mapping[str, Any], directory: Path) -> Path:
    """Fetch, check and unpack a version's artifact into ``directory``; the artifact's own config must
    name the same model, version and features as the record."""
    unpack_artifact(fetch_bytes(settings, record), directory)
    config = load_config(directory)
    claimed = (record["model_name"], record["version"], list(record["features"]))
    actual = (config.name, config.version, list(config.features))
    if actual != claimed:
        raise VerificationError("mismatch", f"the artifact is {actual}, the version record says {claimed}")
    return directory
