"""Ed25519 signatures on model versions: trainers hold the private key, processors only public keys.

A signature covers every field of a ``ModelVersion`` record but the signature itself, in a canonical
Avro encoding (map keys sorted), behind a domain label. Changing anything, the status included,
invalidates it.

>>> private, public = generate_keys()
>>> record = sign_version(example_version(), private)
>>> verify_version(record, {key_id(public): public})
>>> verify_version({**record, "status": "LIVE"}, {key_id(public): public})
Traceback (most recent call last):
...
driftline.errors.VerificationError: bad-signature: the signature of demo v2 does not match its fields
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastavro import schemaless_writer

from driftline.errors import VerificationError
from driftline.schemas.wire import load_schema

_V1 = load_schema("model_version.v1.avsc")
_V2 = load_schema("model_version.avsc")


def generate_keys() -> tuple[bytes, bytes]:
    """A new key pair as (private PEM, public PEM). Keep the private one with the trainers only."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def write_key_pair(directory: Path) -> tuple[Path, Path]:
    """A new key pair as ``signing.key`` (mode 600; never overwritten) and ``signing.pub`` in
    ``directory``; returns their paths."""
    private, public = generate_keys()
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / "signing.key", directory / "signing.pub"
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as sink:
        sink.write(private)
    public_path.write_bytes(public)
    return private_path, public_path


def key_id(public_pem: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of the SHA-256 of its raw bytes."""
    raw = _public_key(public_pem).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signing_payload(record: Mapping[str, Any]) -> bytes:
    """The exact bytes a signature covers: the record in the first schema version that holds all it
    says (records without a ``spec`` sign as before it existed, so their signatures stay valid),
    behind a label naming that version's fingerprint."""
    canonical = {**record, "signature": b"", "metrics": dict(sorted(record.get("metrics", {}).items()))}
    schema = _V1 if record.get("spec") is None else _V2
    out = io.BytesIO()
    out.write(b"driftline.ModelVersion.signature.v1\x00" + schema.fingerprint)
    schemaless_writer(out, schema.parsed, canonical)
    return out.getvalue()


def public_key_of(private_pem: bytes) -> bytes:
    """The public PEM that verifies what ``private_pem`` signs."""
    return (
        _private_key(private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _private_key(private_pem: bytes) -> Ed25519PrivateKey:
    private = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise VerificationError("bad-key", "the private key is not an Ed25519 key")
    return private


def sign_version(record: Mapping[str, Any], private_pem: bytes) -> dict[str, Any]:
    """A copy of ``record`` with ``key_id`` and ``signature`` filled in."""
    signed = {**record, "key_id": key_id(public_key_of(private_pem))}
    signed["signature"] = _private_key(private_pem).sign(signing_payload(signed))
    return signed


def verify_version(record: Mapping[str, Any], public_keys: Mapping[str, bytes]) -> None:
    """Raise :class:`VerificationError` unless a trusted key signed exactly these fields."""
    name = f"{record.get('model_name')} v{record.get('version')}"
    public_pem = public_keys.get(str(record.get("key_id")))
    if public_pem is None:
        raise VerificationError(
            "unknown-key", f"{name} is signed by key {record.get('key_id')!r}, not a trusted one"
        )
    signature = record.get("signature")
    if not signature:
        raise VerificationError("unsigned", f"{name} carries no signature")
    try:
        _public_key(public_pem).verify(bytes(signature), signing_payload(record))
    except InvalidSignature:
        raise VerificationError(
            "bad-signature", f"the signature of {name} does not match its fields"
        ) from None


def _public_key(public_pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise VerificationError("bad-key", "the public key is not an Ed25519 key")
    return key


def example_version(**fields: Any) -> dict[str, Any]:
    """A complete, unsigned ModelVersion record for docs and tests; ``fields`` override."""
    record: dict[str, Any] = {
        "model_name": "demo",
        "version": "2",
        "status": "CANDIDATE",
        "artifact_uri": "kafka:driftline.artifacts",
        "sha256": "0" * 64,
        "created_at": 1_795_000_000_000,
        "parent_version": "1",
        "training_data": [
            {
                "topic": "driftline.events",
                "partition": 0,
                "start_offset": 0,
                "end_offset": 100,
                "start_time": None,
                "end_time": None,
            }
        ],
        "metrics": {"accuracy": 0.9, "auc": 0.95},
        "features": ["a", "b"],
        "reference_profile": None,
        "reason": "published",
        "request_id": None,
        "code_version": None,
        "spec": None,
        "key_id": "",
        "signature": b"",
    }
    return {**record, **fields}
