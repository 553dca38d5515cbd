"""Manifest parsing, platform selection, chain IDs and blob verification."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import BinaryIO, List, Tuple

import pytest

from podpy.image import manifest as mf
from podpy.storage.blobs import BlobStore, TransientFetchError


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, platform: dict = None) -> dict:
    out = {"mediaType": media_type, "digest": digest(data), "size": len(data)}
    if platform:
        out["platform"] = platform
    return out


def index_of(*platforms: dict) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_INDEX,
            "manifests": [
                descriptor(mf.OCI_MANIFEST, json.dumps(p).encode(), platform=p) for p in platforms
            ],
        }
    ).encode()


def test_parse_oci_and_docker_manifests() -> None:
    config = b"{}"
    layer = b"layer"
    for media_type, layer_type in (
        (mf.OCI_MANIFEST, mf.OCI_LAYER_GZIP),
        (mf.DOCKER_MANIFEST, mf.DOCKER_LAYER_GZIP),
    ):
        raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": descriptor(mf.OCI_CONFIG, config),
                "layers": [descriptor(layer_type, layer)],
            }
        ).encode()
        parsed = mf.parse_manifest(raw, "application/json")
        assert isinstance(parsed, mf.ImageManifest)
        assert parsed.media_type == media_type
        assert parsed.layers[0].digest == digest(layer)
        assert mf.layer_compression(parsed.layers[0].media_type) == "gzip"
        assert parsed.digest == digest(raw)


def test_media_type_can_come_from_the_shape() -> None:
    raw = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert isinstance(mf.parse_manifest(raw, None), mf.ImageIndex)


def test_schema1_is_refused_clearly() -> None:
    raw = json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode()
    with pytest.raises(mf.ManifestError, match="schema 1"):
        mf.parse_manifest(raw, mf.DOCKER_SCHEMA1_SIGNED)


def test_oversized_manifest_is_refused() -> None:
    raw = b" " * (mf.MAX_MANIFEST_SIZE + 1)
    with pytest.raises(mf.ManifestError, match="limit"):
        mf.parse_manifest(raw, mf.OCI_MANIFEST)


@pytest.mark.parametrize(
    "bad",
    [
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_MANIFEST,
            "config": {"digest": "sha256:x", "size": 1},
            "layers": [],
        },
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_MANIFEST,
            "config": {"digest": "sha256:" + "a" * 64, "size": -1},
            "layers": [],
        },
        {"schemaVersion": 2, "mediaType": "application/x-unknown"},
        {"schemaVersion": 3},
    ],
)
def test_invalid_manifests(bad: dict) -> None:
    with pytest.raises(mf.ManifestError):
        mf.parse_manifest(json.dumps(bad).encode(), None)


def test_zstd_layers_are_not_supported() -> None:
    with pytest.raises(mf.ManifestError, match="zstd"):
        mf.layer_compression(mf.OCI_LAYER_ZSTD)
    assert mf.layer_compression(mf.OCI_LAYER) == "none"


def test_platform_parsing_and_arch_aliases() -> None:
    assert mf.normalize_arch("x86_64") == ("amd64", "")
    assert mf.normalize_arch("aarch64") == ("arm64", "v8")
    assert mf.normalize_arch("armv7l") == ("arm", "v7")
    assert mf.parse_platform("linux/arm64") == mf.Platform("linux", "arm64", "v8")
    assert mf.parse_platform("linux/arm/v6") == mf.Platform("linux", "arm", "v6")
    assert mf.parse_platform(None, arch="aarch64") == mf.Platform("linux", "arm64", "v8")
    assert mf.parse_platform("linux/amd64", arch="s390x").architecture == "s390x"
    with pytest.raises(mf.ManifestError):
        mf.parse_platform("linux")


def test_select_first_match_and_prefer_exact_variant() -> None:
    raw = index_of(
        {"os": "unknown", "architecture": "unknown"},
        {"os": "linux", "architecture": "arm", "variant": "v6"},
        {"os": "linux", "architecture": "arm64"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "amd64", "variant": "v3"},
    )
    index = mf.parse_manifest(raw, None)
    assert isinstance(index, mf.ImageIndex)

    def chosen(platform: mf.Platform) -> mf.Platform:
        found = mf.select_manifest(index, platform)
        assert found.platform is not None
        return found.platform

    assert chosen(mf.Platform("linux", "amd64", "")) == mf.Platform("linux", "amd64", "")
    assert chosen(mf.Platform("linux", "arm", "v7")).variant == "v7"
    assert chosen(mf.Platform("linux", "arm64", "v8")).architecture == "arm64"
    with pytest.raises(mf.ManifestError, match="no image found in manifest list") as info:
        mf.select_manifest(index, mf.Platform("linux", "riscv64", ""))
    assert "linux/amd64" in (info.value.hint or "") and "unknown" not in (info.value.hint or "")
    with pytest.raises(mf.ManifestError):
        mf.select_manifest(index, mf.Platform("windows", "amd64", ""))


def test_chain_ids_follow_the_spec() -> None:
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    chains = mf.chain_ids([a, b])
    assert chains[0] == a
    assert chains[1] == digest(f"{a} {b}".encode())


def test_config_requires_diff_ids() -> None:
    with pytest.raises(mf.ManifestError, match="diff_ids"):
        mf.parse_config(b'{"rootfs": {}}')
    good = mf.parse_config(json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode())
    assert good.diff_ids == []


def test_verify_bytes() -> None:
    mf.verify_bytes(b"abc", digest(b"abc"), 3)
    with pytest.raises(mf.DigestMismatch, match="size"):
        mf.verify_bytes(b"abc", digest(b"abc"), 4)
    with pytest.raises(mf.DigestMismatch, match="digest mismatch"):
        mf.verify_bytes(b"abd", digest(b"abc"), 3)


# --- blob store ---------------------------------------------------------------------------


class Source:
    """Serves `data`, breaking off after `break_at` bytes on the first `breaks` fetches."""

    def __init__(self, data: bytes, breaks: int = 0, break_at: int = 0, honour_range: bool = True):
        self.data = data
        self.breaks = breaks
        self.break_at = break_at
        self.honour_range = honour_range
        self.offsets: List[int] = []

    def __call__(self, offset: int) -> Tuple[BinaryIO, int]:
        self.offsets.append(offset)
        start = offset if self.honour_range else 0
        body = self.data[start:]
        if self.breaks:
            self.breaks -= 1
            return _Breaking(body[: self.break_at]), start
        return io.BytesIO(body), start


class _Breaking(io.BytesIO):
    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        chunk = super().read(n)
        if not chunk:
            raise TransientFetchError("connection reset")
        return chunk


def test_blob_ingest_verifies_and_publishes(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    data = b"x" * 3_000_000
    path = store.ingest(digest(data), len(data), Source(data))
    assert Path(path).read_bytes() == data
    assert store.has(digest(data), len(data))


def test_blob_mismatch_stores_nothing(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    data = b"hello world"
    with pytest.raises(mf.DigestMismatch):
        store.ingest(digest(b"other content"), len(data), Source(data))
    with pytest.raises(mf.DigestMismatch, match="more than"):
        store.ingest(digest(data), len(data) - 1, Source(data))
    assert list((tmp_path / "blobs").iterdir()) == []


def test_blob_resume_uses_the_offset(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    data = bytes(range(256)) * 8000
    source = Source(data, breaks=2, break_at=100_000)
    store.ingest(digest(data), len(data), source)
    assert source.offsets == [0, 100_000, 200_000]
    assert store.read(digest(data)) == data


def test_blob_restarts_when_range_is_ignored(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    data = bytes(range(256)) * 4000
    source = Source(data, breaks=1, break_at=50_000, honour_range=False)
    store.ingest(digest(data), len(data), source)
    assert store.read(digest(data)) == data


def test_blob_gives_up_after_attempts(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    data = b"y" * 10_000
    with pytest.raises(Exception, match="reset|transfer"):
        store.ingest(digest(data), len(data), Source(data, breaks=99, break_at=0), attempts=3)
    assert list((tmp_path / "blobs").iterdir()) == []


# --- registry client helpers ----------------------------------------------------------------


def test_parse_www_authenticate() -> None:
    from podpy.image.registry import parse_challenge

    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull",error="insufficient_scope"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
        "error": "insufficient_scope",
    }
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


def test_credentials_are_looked_up_by_repository() -> None:
    import base64

    from podpy.image.registry import RegistryClient, static_credentials

    seen: List[str] = []

    def lookup(key: str) -> Tuple[str, str]:
        seen.append(key)
        return ("user", "pa:ss")

    client = RegistryClient("reg.example:5000", credentials=lookup)
    header = client._basic_header(["repository:ns/app:pull,push"])
    assert seen == ["reg.example:5000/ns/app"]
    assert header == "Basic " + base64.b64encode(b"user:pa:ss").decode()
    creds = static_credentials("bob:secret:x")
    assert creds is not None and creds("any") == ("bob", "secret:x")
    assert static_credentials(None) is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2024-01-02T03:04:05Z", 1704164645.0),
        ("2024-01-02T03:04:05.123456789Z", 1704164645.123456),
        ("2024-01-02T03:04:05.5Z", 1704164645.5),
        ("2024-01-02T04:04:05+01:00", 1704164645.0),
        ("2024-01-01T20:04:05-07:00", 1704164645.0),
        ("", 0.0),
        ("yesterday", 0.0),
    ],
)
def test_created_timestamps(text: str, expected: float) -> None:
    from podpy.storage.images import parse_created

    assert parse_created(text) == pytest.approx(expected)
