"""Media types, manifest/index parsing and validation, digests, and platform selection."""

from __future__ import annotations

import hashlib
import json
import platform as _platform
import re
from typing import Any, Dict, List, Optional, Union

from podpy.errors import PodpyError
from podpy.record import field, record

MAX_MANIFEST_SIZE = 4 * 1024 * 1024

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
SCHEMA1_TYPES = (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED)
# Sent as Accept on every manifest request, preferred first.
ACCEPT_MANIFEST_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

_COMPRESSION_BY_TYPE = {
    OCI_LAYER: "none",
    OCI_LAYER_ND: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ND_GZIP: "gzip",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_FOREIGN_LAYER: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_ND_ZSTD: "zstd",
    # Some tools push Docker-style uncompressed layers with this type.
    "application/vnd.docker.image.rootfs.diff.tar": "none",
}

_DIGEST_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")


class ManifestError(PodpyError):
    """A manifest, index or descriptor podpy cannot use."""


class DigestMismatch(PodpyError):
    """Content did not match the digest or size its descriptor promised."""


# --- digests ------------------------------------------------------------------------------


def validate_digest(digest: Any, what: str = "digest") -> str:
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise ManifestError(
            f"invalid {what} {digest!r}: expected sha256:<64 hex> or sha512:<128 hex>"
        )
    return digest


def new_hasher(digest: str) -> Any:
    """A hashlib object for the algorithm named in `digest`."""
    algorithm = digest.split(":", 1)[0]
    if algorithm not in ("sha256", "sha512"):
        raise ManifestError(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_bytes(
    data: bytes, digest: str, size: Optional[int] = None, what: str = "content"
) -> None:
    """Raise DigestMismatch unless `data` has this digest (and size, when one is known)."""
    if size is not None and len(data) != size:
        raise DigestMismatch(
            f"{what} {digest}: size mismatch: expected {size} bytes, got {len(data)}"
        )
    hasher = new_hasher(digest)
    hasher.update(data)
    actual = f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}"
    if actual != digest:
        raise DigestMismatch(f"{what}: digest mismatch: expected {digest}, got {actual}")


# --- platforms ----------------------------------------------------------------------------

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armhf": ("arm", "v7"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


@record(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


def normalize_arch(arch: str, variant: str = "") -> tuple:
    """uname/Go arch names to OCI (`x86_64`->`amd64`, `aarch64`->`arm64` `v8`)."""
    name, default_variant = _ARCH_ALIASES.get(arch.lower(), (arch.lower(), ""))
    return name, (variant or default_variant)


def host_platform() -> Platform:
    arch, variant = normalize_arch(_platform.machine())
    return Platform("linux", arch, variant)


def parse_platform(
    spec: Optional[str] = None,
    os_name: Optional[str] = None,
    arch: Optional[str] = None,
    variant: Optional[str] = None,
) -> Platform:
    """`--platform os/arch[/variant]`, overridden field by field by `--os/--arch/--variant`."""
    host = host_platform()
    wanted_os, wanted_arch, wanted_variant = host.os, host.architecture, ""
    explicit_arch = False
    if spec:
        parts = spec.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ManifestError(
                f'invalid platform "{spec}"',
                hint="use --platform os/arch[/variant], e.g. linux/arm64",
            )
        wanted_os, wanted_arch = parts[0], parts[1]
        wanted_variant = parts[2] if len(parts) == 3 else ""
        explicit_arch = True
    if os_name:
        wanted_os = os_name
    if arch:
        wanted_arch, explicit_arch = arch, True
    if variant:
        wanted_variant = variant
    if not explicit_arch and not wanted_variant:
        wanted_variant = host.variant
    norm_arch, norm_variant = normalize_arch(wanted_arch, wanted_variant)
    return Platform(wanted_os.lower(), norm_arch, norm_variant)


# --- descriptors and manifests ------------------------------------------------------------


@record(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple = ()
    annotations: Dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    platform: Optional[Platform] = None

    @classmethod
    def from_json(cls, data: Any, what: str = "descriptor") -> Descriptor:
        if not isinstance(data, dict):
            raise ManifestError(f"invalid {what}: expected an object")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"invalid {what}: size {size!r} is not a non-negative integer")
        plat = data.get("platform")
        parsed_platform = None
        if isinstance(plat, dict):
            parsed_platform = Platform(
                str(plat.get("os", "")),
                str(plat.get("architecture", "")),
                str(plat.get("variant", "") or ""),
            )
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=validate_digest(data.get("digest"), f"{what} digest"),
            size=size,
            urls=tuple(data.get("urls") or ()),
            annotations=dict(data.get("annotations") or {}),
            platform=parsed_platform,
        )

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            plat = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                plat["variant"] = self.platform.variant
            out["platform"] = plat
        return out


@record
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: List[Descriptor]
    annotations: Dict[str, str]
    raw: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.raw)


@record
class ImageIndex:
    media_type: str
    manifests: List[Descriptor]
    raw: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.raw)


def layer_compression(media_type: str) -> str:
    """`none`, `gzip`; zstd and unknown types are refused with a clear message."""
    compression = _COMPRESSION_BY_TYPE.get(media_type)
    if compression == "zstd":
        raise ManifestError(
            f"layer media type {media_type} (zstd) is not supported",
            hint="podpy has no zstd decoder; ask for a gzip variant of the image",
        )
    if compression is None:
        raise ManifestError(f"unsupported layer media type {media_type!r}")
    return compression


def _refuse_schema1() -> None:
    raise ManifestError(
        "Docker schema 1 manifests are not supported",
        hint="the image is in a legacy format; re-push it with a current docker, podman or skopeo",
    )


def parse_manifest(
    raw: bytes, content_type: Optional[str] = None
) -> Union[ImageManifest, ImageIndex]:
    """Parse a manifest or index; the JSON `mediaType` wins over the HTTP Content-Type."""
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ManifestError(
            f"manifest is {len(raw)} bytes, larger than the {MAX_MANIFEST_SIZE} byte limit"
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ManifestError(f"manifest is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ManifestError("manifest is not a JSON object")
    header_type = (content_type or "").split(";", 1)[0].strip()
    media_type = data.get("mediaType") or header_type
    schema = data.get("schemaVersion")
    if schema == 1 or media_type in SCHEMA1_TYPES:
        _refuse_schema1()
    if schema != 2:
        raise ManifestError(f"unsupported manifest schemaVersion {schema!r}")
    if not media_type or media_type in ("application/json", "text/plain"):
        # OCI allows omitting mediaType: tell index from manifest by shape.
        media_type = OCI_INDEX if "manifests" in data else OCI_MANIFEST
    if media_type in INDEX_TYPES:
        entries = data.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError("image index has no manifests list")
        return ImageIndex(
            media_type,
            [Descriptor.from_json(e, "index entry") for e in entries],
            raw,
        )
    if media_type in MANIFEST_TYPES:
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise ManifestError("image manifest has no layers list")
        return ImageManifest(
            media_type,
            Descriptor.from_json(data.get("config"), "config descriptor"),
            [Descriptor.from_json(layer, "layer descriptor") for layer in layers],
            dict(data.get("annotations") or {}),
            raw,
        )
    raise ManifestError(f"unsupported manifest media type {media_type!r}")


def _platform_matches(candidate: Platform, wanted: Platform) -> bool:
    if candidate.os != wanted.os:
        return False
    arch, variant = normalize_arch(candidate.architecture, candidate.variant)
    return arch == wanted.architecture and (
        not variant or not wanted.variant or variant == wanted.variant
    )


def select_manifest(index: ImageIndex, wanted: Platform) -> Descriptor:
    """The first entry for `wanted`, preferring an exact variant; attestations are skipped."""
    usable = [
        d
        for d in index.manifests
        if d.platform is not None
        and d.platform.os != "unknown"
        and d.platform.architecture != "unknown"
        and d.media_type not in INDEX_TYPES
    ]
    matches = [
        d for d in usable if d.platform is not None and _platform_matches(d.platform, wanted)
    ]
    for d in matches:
        assert d.platform is not None
        if normalize_arch(d.platform.architecture, d.platform.variant)[1] == wanted.variant:
            return d
    if matches:
        return matches[0]
    available = ", ".join(sorted({str(d.platform) for d in usable if d.platform})) or "none"
    variant = wanted.variant or '""'
    raise ManifestError(
        f"no image found in manifest list for architecture {wanted.architecture}, "
        f"variant {variant}, OS {wanted.os}",
        hint=f"available platforms: {available}; choose one with --platform",
    )


@record
class ImageConfig:
    """The parts of an image config JSON podpy reads; `raw` keeps the exact bytes."""

    data: Dict[str, Any]
    raw: bytes

    @property
    def diff_ids(self) -> List[str]:
        rootfs = self.data.get("rootfs") or {}
        return list(rootfs.get("diff_ids") or [])

    @property
    def digest(self) -> str:
        return sha256_digest(self.raw)


def parse_config(raw: bytes) -> ImageConfig:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ManifestError(f"image config is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ManifestError("image config is not a JSON object")
    rootfs = data.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise ManifestError("image config has no rootfs.diff_ids")
    for diff_id in rootfs["diff_ids"]:
        validate_digest(diff_id, "rootfs diff_id")
    return ImageConfig(data, raw)


def chain_ids(diff_ids: List[str]) -> List[str]:
    """OCI ChainIDs: chain(n) = sha256(chain(n-1) + " " + diff_id(n)); names each layer stack."""
    out: List[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(sha256_digest(f"{out[-1]} {diff_id}".encode()))
    return out
