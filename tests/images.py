"""Build small, real container images from the host's static busybox, in pure Python.

Tests and benches need images without internet access. Everything here is deterministic (fixed
mtimes, sorted JSON, gzip without a timestamp), so the same options always give the same
digests. Output formats: an OCI image layout directory and a docker-archive tarball.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

BUSYBOX = "/bin/busybox"
# Fixed timestamp for every tar entry and the config's `created`: reproducible digests.
EPOCH = 1700000000
CREATED = "2023-11-14T22:13:20Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "bob:x:1000:1000:Bob:/home/bob:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ntty:x:5:\nbob:x:1000:\nnobody:x:65534:\n"

# What the multi-layer image looks like once its layers are applied in order: tests assert these.
MULTILAYER_FILES = {
    "/data/hello.txt": "hello from layer 3\n",
    "/data/kept.txt": "kept from layer 2\n",
    "/data/opaque/new.txt": "new in layer 3\n",
    "/data/link-to-kept": "kept from layer 2\n",  # symlink -> kept.txt
    "/data/hardlink-to-kept": "kept from layer 2\n",  # hardlink of kept.txt
}
MULTILAYER_ABSENT = ("/data/removed.txt", "/data/opaque/old.txt", "/bin/vi")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_architecture() -> str:
    """The OCI architecture name of this machine (uname -m mapped to Go's GOARCH)."""
    machine = platform.machine()
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "arm",
        "i686": "386",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(machine, machine)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class TarBuilder:
    """Writes one layer changeset (uncompressed tar) with fixed mtimes and explicit owners."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buffer, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, path: str, kind: bytes, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.strip("/"))
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = EPOCH
        return info

    def directory(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self._tar.addfile(self._info(path, tarfile.DIRTYPE, mode, uid, gid))

    def file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        info = self._info(path, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))

    def symlink(self, path: str, target: str) -> None:
        info = self._info(path, tarfile.SYMTYPE, 0o777, 0, 0)
        info.linkname = target
        self._tar.addfile(info)

    def hardlink(self, path: str, existing: str) -> None:
        """A hard link to an entry written earlier in this same layer."""
        info = self._info(path, tarfile.LNKTYPE, 0o644, 0, 0)
        info.linkname = existing.strip("/")
        self._tar.addfile(info)

    def whiteout(self, path: str) -> None:
        """Delete `path` from the lower layers (an empty `.wh.NAME` file)."""
        parent, name = os.path.split(path.strip("/"))
        self.file(os.path.join(parent, ".wh." + name), b"", mode=0o600)

    def opaque(self, directory: str) -> None:
        """Hide every lower-layer child of `directory` (the `.wh..wh..opq` marker)."""
        self.file(os.path.join(directory.strip("/"), ".wh..wh..opq"), b"", mode=0o600)

    def close(self) -> bytes:
        self._tar.close()
        return self._buffer.getvalue()


@dataclass(frozen=True)
class Layer:
    """One uncompressed layer tar plus the history line that describes it."""

    tar: bytes
    created_by: str

    @property
    def diff_id(self) -> str:
        return sha256_digest(self.tar)

    def gzipped(self) -> bytes:
        # mtime=0 keeps the gzip header (and so the blob digest) reproducible.
        return gzip.compress(self.tar, compresslevel=6, mtime=0)


def busybox_applets(busybox: str = BUSYBOX) -> List[str]:
    """Every applet name the host busybox provides (`busybox --list`)."""
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} is missing: install the busybox-static package")
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    return sorted(name for name in out.split() if name and name != "busybox" and "/" not in name)


def busybox_layer(busybox: str = BUSYBOX) -> Layer:
    """A runnable root filesystem: /bin/busybox, a symlink per applet, users, and the usual dirs."""
    with open(busybox, "rb") as f:
        binary = f.read()
    tar = TarBuilder()
    for directory, mode in (
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ):
        tar.directory(directory, mode)
    tar.directory("home/bob", 0o755, uid=1000, gid=1000)
    tar.file("bin/busybox", binary, mode=0o755)
    for applet in busybox_applets(busybox):
        tar.symlink(f"bin/{applet}", "busybox")
    tar.file("etc/passwd", PASSWD.encode())
    tar.file("etc/group", GROUP.encode())
    tar.file("etc/shadow", b"root:*:19000:0:99999:7:::\n", mode=0o640)
    tar.file("home/bob/.profile", b"export PS1='$ '\n", uid=1000, gid=1000)
    return Layer(tar.close(), f"ADD file:busybox-{hashlib.sha256(binary).hexdigest()[:12]} in /")


def files_layer(
    files: Mapping[str, bytes],
    *,
    whiteouts: Sequence[str] = (),
    opaque_dirs: Sequence[str] = (),
    symlinks: Mapping[str, str] = {},  # noqa: B006 - read-only default
    hardlinks: Mapping[str, str] = {},  # noqa: B006 - read-only default
    created_by: str = "COPY files /",
) -> Layer:
    """A layer with the given regular files (parents created), whiteouts and links."""
    tar = TarBuilder()
    made: set = set()

    def parents(path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth])
            if directory not in made:
                made.add(directory)
                tar.directory(directory)

    for directory in opaque_dirs:
        parents(directory.strip("/") + "/x")
        tar.opaque(directory)
    for path in whiteouts:
        parents(path)
        tar.whiteout(path)
    for path in sorted(files):
        parents(path)
        tar.file(path, files[path])
    for path in sorted(symlinks):
        parents(path)
        tar.symlink(path, symlinks[path])
    for path in sorted(hardlinks):
        parents(path)
        tar.hardlink(path, hardlinks[path])
    return Layer(tar.close(), created_by)


def many_files_layer(count: int, size: int = 64, per_dir: int = 1000) -> Layer:
    """`count` small files of `size` bytes under /many/dNNN/ (for pull/unpack benches)."""
    tar = TarBuilder()
    tar.directory("many")
    for index in range(count):
        bucket = f"many/d{index // per_dir:03d}"
        if index % per_dir == 0:
            tar.directory(bucket)
        body = f"file {index}\n".encode()
        tar.file(f"{bucket}/f{index:06d}", body.ljust(size, b"."))
    return Layer(tar.close(), f"RUN make {count} files of {size} bytes")


def multilayer_layers(base: Layer) -> List[Layer]:
    """Base + two layers whose end result is MULTILAYER_FILES, without MULTILAYER_ABSENT."""
    second = files_layer(
        {
            "data/hello.txt": b"hello from layer 2\n",
            "data/kept.txt": b"kept from layer 2\n",
            "data/removed.txt": b"removed by layer 3\n",
            "data/opaque/old.txt": b"hidden by layer 3\n",
        },
        symlinks={"data/link-to-kept": "kept.txt"},
        hardlinks={"data/hardlink-to-kept": "data/kept.txt"},
        created_by="COPY data /data",
    )
    third = files_layer(
        {"data/hello.txt": b"hello from layer 3\n", "data/opaque/new.txt": b"new in layer 3\n"},
        whiteouts=["data/removed.txt", "bin/vi"],
        opaque_dirs=["data/opaque"],
        created_by="RUN rm /data/removed.txt /bin/vi && rewrite /data",
    )
    return [base, second, third]


def image_config(
    layers: Sequence[Layer], overrides: Optional[Mapping[str, Any]] = None
) -> Dict[str, Any]:
    """The OCI image config: host architecture, `Cmd ["sh"]`, PATH, diff_ids and history."""
    container_config: Dict[str, Any] = {"Env": [DEFAULT_PATH], "Cmd": ["sh"]}
    container_config.update(overrides or {})
    return {
        "created": CREATED,
        "architecture": host_architecture(),
        "os": "linux",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": CREATED, "created_by": layer.created_by} for layer in layers],
    }


@dataclass
class BuiltImage:
    """Where an image was written and the digests a test can compare against."""

    layout: Path
    tag: str
    manifest_digest: str
    config_digest: str
    layer_digests: List[str]
    diff_ids: List[str]
    architecture: str
    config: Dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def image_id(self) -> str:
        """podman's image ID: the hex of the config digest."""
        return self.config_digest.split(":", 1)[1]

    @property
    def oci_ref(self) -> str:
        """The skopeo/podman transport reference (`oci:DIR:TAG`)."""
        return f"oci:{self.layout}:{self.tag}"


def _write_blob(layout: Path, data: bytes) -> Tuple[str, int]:
    digest = sha256_digest(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return digest, len(data)


def write_oci_layout(
    layout: Path,
    layers: Sequence[Layer],
    *,
    tag: str = "latest",
    config_overrides: Optional[Mapping[str, Any]] = None,
    compress: bool = True,
) -> BuiltImage:
    """Add one image to an OCI layout dir (created if needed); an existing `tag` is replaced."""
    layout = Path(layout)
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layer_descriptors = []
    for layer in layers:
        blob = layer.gzipped() if compress else layer.tar
        digest, size = _write_blob(layout, blob)
        media_type = MT_OCI_LAYER_GZIP if compress else MT_OCI_LAYER_TAR
        layer_descriptors.append({"mediaType": media_type, "digest": digest, "size": size})
    config = image_config(layers, config_overrides)
    config_digest, config_size = _write_blob(layout, canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layer_descriptors,
    }
    manifest_digest, manifest_size = _write_blob(layout, canonical_json(manifest))
    index_path = layout / "index.json"
    index = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
    )
    index["manifests"] = [
        entry
        for entry in index["manifests"]
        if entry.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
    ]
    index["manifests"].append(
        {
            "mediaType": MT_OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {REF_NAME_ANNOTATION: tag},
        }
    )
    tmp = index_path.with_name("index.json.tmp")
    tmp.write_bytes(canonical_json(index))
    os.replace(tmp, index_path)
    return BuiltImage(
        layout=layout,
        tag=tag,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        layer_digests=[d["digest"] for d in layer_descriptors],
        diff_ids=[layer.diff_id for layer in layers],
        architecture=config["architecture"],
        config=config,
    )


def write_docker_archive(
    path: Path,
    layers: Sequence[Layer],
    *,
    repo_tags: Sequence[str] = ("localhost/busybox:latest",),
    config_overrides: Optional[Mapping[str, Any]] = None,
) -> str:
    """Write a `docker save`-style tarball (uncompressed layers); returns the config digest."""
    config_bytes = canonical_json(image_config(layers, config_overrides))
    config_digest = sha256_digest(config_bytes)
    config_name = config_digest.split(":", 1)[1] + ".json"
    layer_names = [layer.diff_id.split(":", 1)[1] + ".tar" for layer in layers]
    manifest = [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_names}]
    tmp = Path(str(path) + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as archive:
        entries = [(config_name, config_bytes), ("manifest.json", canonical_json(manifest))]
        entries += [(name, layer.tar) for name, layer in zip(layer_names, layers)]
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, EPOCH
            archive.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)
    return config_digest


def build_busybox_image(
    layout: Path,
    *,
    tag: str = "latest",
    multilayer: bool = False,
    many_files: int = 0,
    config_overrides: Optional[Mapping[str, Any]] = None,
) -> BuiltImage:
    """The busybox test image as an OCI layout.

    multilayer: add two layers on top (files, a symlink, a hardlink, whiteouts, an opaque dir);
    the result is described by MULTILAYER_FILES / MULTILAYER_ABSENT.
    many_files: add one layer with that many small files under /many (for benches).
    """
    layers = [busybox_layer()]
    if multilayer:
        layers = multilayer_layers(layers[0])
    if many_files:
        layers.append(many_files_layer(many_files))
    return write_oci_layout(layout, layers, tag=tag, config_overrides=config_overrides)
