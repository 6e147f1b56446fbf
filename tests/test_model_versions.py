"""Model versions: signatures that hold only for the exact record, artifacts that pack, chunk and
check out (through a real broker too), and refusal of everything forged or tampered with."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from driftline.config import Settings
from driftline.errors import VerificationError
from driftline.models import ModelConfig, TorchPredictor, build_module, load_artifact, save_artifact
from driftline.models.packing import join, pack_artifact, sha256_hex, split, unpack_artifact
from driftline.models.signing import example_version, generate_keys, key_id, sign_version, verify_version
from driftline.models.transport import artifact_partition, fetch_artifact, publish_artifact
from driftline.schemas import AvroDecoder, AvroEncoder, builtin_store
from driftline.streams import kafka

PRIVATE, PUBLIC = generate_keys()
TRUSTED = {key_id(PUBLIC): PUBLIC}
CONFIG = ModelConfig(name="m", version="1", architecture="mlp", features=["a", "b"], classes=["x", "y"])


def test_a_signed_version_verifies_and_survives_the_wire() -> None:
    signed = sign_version(example_version(), PRIVATE)
    store = builtin_store()
    wire = AvroEncoder.single_object(store.latest("io.driftline.ModelVersion")).encode(signed)
    verify_version(AvroDecoder(store).decode(wire), TRUSTED)


def test_map_order_does_not_matter_to_the_signature() -> None:
    signed = sign_version(example_version(metrics={"a": 1.0, "b": 2.0}), PRIVATE)
    verify_version({**signed, "metrics": {"b": 2.0, "a": 1.0}}, TRUSTED)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "LIVE"}, "bad-signature"),
        ({"sha256": "f" * 64}, "bad-signature"),
        ({"artifact_uri": "file:///elsewhere"}, "bad-signature"),
        ({"metrics": {"accuracy": 0.99, "auc": 0.95}}, "bad-signature"),
        ({"signature": b""}, "unsigned"),
        ({"key_id": "0123456789abcdef"}, "unknown-key"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_any_change_to_a_signed_version_is_refused(change: dict[str, object], reason: str) -> None:
    signed = sign_version(example_version(), PRIVATE)
    with pytest.raises(VerificationError) as caught:
        verify_version({**signed, **change}, TRUSTED)
    assert caught.value.reason == reason


def test_a_version_signed_by_another_key_is_refused() -> None:
    other_private, _ = generate_keys()
    forged = sign_version(example_version(), other_private)
    with pytest.raises(VerificationError, match="unknown-key"):
        verify_version(forged, TRUSTED)
    with pytest.raises(VerificationError, match="bad-signature"):  # even when it claims our key id
        verify_version({**forged, "key_id": key_id(PUBLIC)}, TRUSTED)


def test_artifacts_pack_deterministically_and_round_trip(tmp_path: Path) -> None:
    source = save_artifact(tmp_path / "a", CONFIG, build_module(CONFIG))
    data = pack_artifact(source)
    assert pack_artifact(source) == data
    restored = unpack_artifact(join(split(data, chunk_bytes=1000), sha256_hex(data)), tmp_path / "b")
    for name in ("config.json", "model.safetensors"):
        assert (restored / name).read_bytes() == (source / name).read_bytes()


def test_a_tampered_or_incomplete_artifact_is_refused(tmp_path: Path) -> None:
    data = pack_artifact(save_artifact(tmp_path, CONFIG, build_module(CONFIG)))
    chunks = split(data, chunk_bytes=1000)
    tampered = [*chunks[:-1], chunks[-1][:-1] + bytes([chunks[-1][-1] ^ 1])]
    for bad in (tampered, chunks[:-1], [*chunks, b"x"]):
        with pytest.raises(VerificationError, match="sha256-mismatch"):
            join(bad, sha256_hex(data))


def _tar(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        if symlink is not None:
            link = tarfile.TarInfo(symlink)
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    return out.getvalue()


@pytest.mark.parametrize(
    "archive",
    [
        _tar({"config.json": b"{}", "../model.safetensors": b"x"}),
        _tar({"config.json": b"{}", "model.safetensors": b"x", "extra.py": b"import os"}),
        _tar({"config.json": b"{}"}, symlink="model.safetensors"),
        b"not a tar at all",
    ],
    ids=["path-traversal", "extra-member", "symlink", "garbage"],
)
def test_unpacking_refuses_anything_but_the_two_files(archive: bytes, tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="bad-artifact"):
        unpack_artifact(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.kafka
def test_artifacts_travel_through_kafka_and_tampering_is_caught(settings: Settings, tmp_path: Path) -> None:
    module = build_module(CONFIG)
    data = pack_artifact(save_artifact(tmp_path / "src", CONFIG, module))
    topic = settings.topics.labels  # any existing topic of this test serves as the artifacts topic
    uri = publish_artifact(settings, topic, data, chunk_bytes=700)
    assert uri == f"kafka:{topic}"
    assert len(split(data, 700)) > 3  # several chunks really travelled
    fetched = fetch_artifact(settings, uri, sha256_hex(data))
    config, loaded = load_artifact(unpack_artifact(fetched, tmp_path / "dst"))
    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    np.testing.assert_array_equal(
        TorchPredictor(config, loaded, "cpu").predict_batch(x),
        TorchPredictor(CONFIG, module, "cpu").predict_batch(x),
    )
    # A later record for chunk 1 with other bytes replaces it, as compaction would: the hash no longer holds.
    sha = sha256_hex(data)
    producer = kafka.producer(settings)
    producer.produce(
        topic,
        b"evil",
        f"{sha}:1".encode(),
        partition=artifact_partition(sha, settings.topics.partitions),
        headers=[("driftline.artifact.chunks", str(len(split(data, 700))).encode())],
    )
    assert producer.flush(30) == 0
    with pytest.raises(VerificationError, match="sha256-mismatch"):
        fetch_artifact(settings, uri, sha)
    with pytest.raises(VerificationError, match="missing-chunks"):
        fetch_artifact(settings, uri, "0" * 64)
