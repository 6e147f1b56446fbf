"""Artifacts as bytes: a deterministic tar of ``config.json`` and the model's
files (:data:`~driftline.models.artifact.LAYOUTS`), its SHA-256,
and chunks small enough for Kafka records.

The same artifact always packs to the same bytes (fixed order, times and owners), so its hash names
it. Unpacking accepts one layout's regular files and nothing else: no links, no paths, no extra members.

>>> import tempfile
>>> from driftline.models.artifact import ModelConfig, build_module, save_artifact
>>> cfg = ModelConfig(name="m", version="1", architecture="logistic", features=["a"], classes=["x", "y"])
>>> with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as dst:
...     data = pack_artifact(save_artifact(Path(src), cfg, build_module(cfg)))
...     parts = split(data, chunk_bytes=256)
...     restored = unpack_artifact(join(parts, sha256_hex(data)), Path(dst))
...     sorted(p.name for p in restored.iterdir())
['config.json', 'model.safetensors']
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

from driftline.errors import VerificationError
from driftline.models.artifact import LAYOUTS, layout_of

CHUNK_BYTES = 512 * 1024
"""Default chunk size: well under Kafka's default 1 MiB record limit."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack_artifact(directory: Path) -> bytes:
    """The artifact folder as deterministic tar bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in layout_of(directory):
            content = (directory / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def unpack_artifact(data: bytes, directory: Path) -> Path:
    """Write the artifact's files into ``directory``; refuse anything else in the archive."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
            names = sorted(m.name for m in members)
            layouts = [sorted(layout) for layout in LAYOUTS]
            if names not in layouts or not all(m.isreg() for m in members):
                raise VerificationError(
                    "bad-artifact", f"an artifact holds exactly one of {layouts}, this one {names}"
                )
            directory.mkdir(parents=True, exist_ok=True)
            for member in members:
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has content
                (directory / member.name).write_bytes(source.read())
    except tarfile.TarError as exc:
        raise VerificationError("bad-artifact", f"not an artifact archive: {exc}") from exc
    return directory


def split(data: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    """``data`` in chunks of at most ``chunk_bytes`` (at least one chunk, even for empty data)."""
    return [data[i : i + chunk_bytes] for i in range(0, max(len(data), 1), chunk_bytes)]


def join(chunks: Sequence[bytes], expected_sha256: str) -> bytes:
    """Reassemble chunks and check them against the version's SHA-256."""
    data = b"".join(chunks)
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise VerificationError(
            "sha256-mismatch", f"the artifact hashes to {actual}, the version says {expected_sha256}"
        )
    return data
