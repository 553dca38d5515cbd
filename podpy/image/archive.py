"""Image archives and directories: docker-archive, oci-archive, OCI layout dirs and skopeo's `dir:`.

Readers validate everything that names a file (no absolute paths, no `..`, members that
exist) and the JSON they parse before anything is stored; writers publish a file or
directory only once it is complete (temp sibling + rename), so a failure leaves nothing.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import posixpath
import shutil
import sys
import tarfile
import tempfile
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple

from podpy.errors import PodpyError
from podpy.image import manifest as mf
from podpy.image.copy import (
    CHUNK,
    CopyError,
    ImageSource,
    LayerBlob,
    build_manifest,
    check_layers_match_config,
    gzip_layer,
    spool_uncompressed,
)

MAX_JSON = 8 * 1024 * 1024
REF_NAME = "org.opencontainers.image.ref.name"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
DIR_VERSION = b"Directory Transport Version: 1.1\n"


class ArchiveError(CopyError):
    """An archive or layout that is malformed or unsafe."""


# --- safe file sets ---------------------------------------------------------------------------


def safe_member_name(name: str, where: str) -> str:
    """`./a/b` -> `a/b`; refuse absolute names and any `..` component."""
    cleaned = name
    while cleaned.startswith("./"):
        cleaned = cleaned[2:]
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise ArchiveError(
            f'{where}: unsafe path "{name}" (absolute or with "..")',
            hint="the archive is malformed or hostile; nothing was stored",
        )
    return "/".join(parts)


class FileSet:
    """Named files inside a directory or a tar archive, read-only."""

    where = ""

    def names(self) -> List[str]:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def read_small(self, name: str, what: str) -> bytes:
        if not self.exists(name):
            raise ArchiveError(f"{self.where}: {what} {name} is missing")
        if self.size(name) > MAX_JSON:
            raise ArchiveError(f"{self.where}: {what} {name} is larger than {MAX_JSON} bytes")
        with self.open(name) as f:
            return f.read()

    def read_json(self, name: str, what: str) -> Any:
        raw = self.read_small(name, what)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise ArchiveError(
                f"{self.where}: {what} {name} is not valid JSON: {err}",
                hint="the archive is corrupt; nothing was stored",
            ) from err

    def close(self) -> None:
        pass


class DirFiles(FileSet):
    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise ArchiveError(f"{root}: no such directory")
        self.root = root
        self.where = root

    def _path(self, name: str) -> str:
        return os.path.join(self.root, safe_member_name(name, self.where))

    def names(self) -> List[str]:
        out = []
        for current, _dirs, files in os.walk(self.root):
            for f in files:
                out.append(os.path.relpath(os.path.join(current, f), self.root))
        return out

    def exists(self, name: str) -> bool:
        path = self._path(name)
        return os.path.isfile(path) and not os.path.islink(path)

    def size(self, name: str) -> int:
        return os.path.getsize(self._path(name))

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")  # noqa: SIM115 - the caller closes it


class TarFiles(FileSet):
    """Members of a seekable, uncompressed tar; every member name is checked on open."""

    def __init__(self, path: str, label: Optional[str] = None):
        self.where = label or path
        try:
            self.tar = tarfile.open(path, "r:")
        except (tarfile.TarError, OSError) as err:
            raise ArchiveError(f"{self.where}: not a tar archive: {err}") from err
        self.members: Dict[str, tarfile.TarInfo] = {}
        try:
            for member in self.tar.getmembers():
                name = safe_member_name(member.name, self.where)
                self.members[name] = member
        except tarfile.TarError as err:
            self.tar.close()
            raise ArchiveError(f"{self.where}: corrupt tar archive: {err}") from err
        except BaseException:
            self.tar.close()
            raise

    def _resolve(self, name: str) -> tarfile.TarInfo:
        """The regular-file member for `name`, following in-archive symlinks (podman's legacy
        `<id>/layer.tar -> ../<diffid>.tar`) without ever leaving the archive."""
        current = safe_member_name(name, self.where)
        for _ in range(16):
            member = self.members.get(current)
            if member is None:
                raise ArchiveError(f"{self.where}: {name} is missing from the archive")
            if member.isfile():
                return member
            if member.issym():
                target = posixpath.normpath(
                    posixpath.join(posixpath.dirname(current), member.linkname)
                )
                current = safe_member_name(target, self.where)
                continue
            if member.islnk():
                current = safe_member_name(member.linkname, self.where)
                continue
            raise ArchiveError(f"{self.where}: {name} is not a regular file")
        raise ArchiveError(f"{self.where}: too many links resolving {name}")

    def names(self) -> List[str]:
        return list(self.members)

    def exists(self, name: str) -> bool:
        try:
            self._resolve(name)
        except ArchiveError:
            return False
        return True

    def size(self, name: str) -> int:
        return self._resolve(name).size

    def open(self, name: str) -> BinaryIO:
        stream = self.tar.extractfile(self._resolve(name))
        assert stream is not None
        return stream  # type: ignore[return-value]

    def close(self) -> None:
        self.tar.close()


def _blob_name(digest: str) -> str:
    algorithm, hex_part = mf.validate_digest(digest).split(":", 1)
    return f"blobs/{algorithm}/{hex_part}"


def _sniff(files: FileSet, name: str) -> str:
    with files.open(name) as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def _hash_member(files: FileSet, name: str) -> str:
    import hashlib

    hasher = hashlib.sha256()
    with files.open(name) as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


# --- opening archives -------------------------------------------------------------------------


def spool_input(stream: BinaryIO, tmp_dir: str) -> str:
    """Copy a (possibly gzip-compressed) archive stream to a plain temp file; returns its path."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
    head = buffered.peek(4)[:4]  # type: ignore[union-attr]
    if head == b"\x28\xb5\x2f\xfd":
        raise ArchiveError(
            "zstd-compressed archives are not supported", hint="decompress it first (unzstd)"
        )
    reader: BinaryIO = buffered  # type: ignore[assignment]
    if head[:2] == b"\x1f\x8b":
        reader = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
    fd, path = tempfile.mkstemp(prefix=".podpy-load-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(reader, out, CHUNK)
    except (OSError, EOFError, gzip.BadGzipFile) as err:  # type: ignore[attr-defined]
        _unlink(path)
        raise ArchiveError(f"reading the archive: {err}") from err
    except BaseException:
        _unlink(path)
        raise
    return path


def open_archive(path: str, tmp_dir: str) -> Tuple[FileSet, List[str]]:
    """A FileSet for an archive file (gzip'd archives are decompressed to a temp file first);
    also returns the temp files to delete afterwards."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise ArchiveError(f"opening {path}: {err.strerror}") from err
    temps: List[str] = []
    plain = path
    if head[:2] == b"\x1f\x8b" or head == b"\x28\xb5\x2f\xfd":
        with open(path, "rb") as f:
            plain = spool_input(f, tmp_dir)  # type: ignore[arg-type]
        temps.append(plain)
    try:
        return TarFiles(plain, label=path), temps
    except BaseException:
        for temp in temps:
            _unlink(temp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def archive_kind(files: FileSet) -> str:
    if files.exists("manifest.json"):
        return "docker-archive"
    if files.exists("index.json"):
        return "oci-archive"
    raise ArchiveError(
        f"{files.where}: not a docker-archive or oci-archive (no manifest.json or index.json)",
        hint="podpy load reads the output of podman/docker save",
    )


# --- docker-archive ---------------------------------------------------------------------------


def _docker_entries(files: FileSet) -> List[Dict[str, Any]]:
    data = files.read_json("manifest.json", "manifest")
    where = f"{files.where}: manifest.json"
    if not isinstance(data, list) or not data:
        raise ArchiveError(f"{where}: expected a non-empty list of images")
    entries = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ArchiveError(f"{where}: entry {i} is not an object")
        config = item.get("Config")
        layers = item.get("Layers")
        tags = item.get("RepoTags") or []
        if not isinstance(config, str) or not config:
            raise ArchiveError(f"{where}: entry {i} has no Config file")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise ArchiveError(f"{where}: entry {i} has no Layers list")
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            raise ArchiveError(f"{where}: entry {i} has an invalid RepoTags list")
        for name in [config] + layers:
            safe_member_name(name, where)
            if not files.exists(name):
                raise ArchiveError(f"{where}: entry {i} refers to {name}, which is missing")
        entries.append({"config": config, "layers": layers, "tags": tags})
    return entries


def _docker_image(files: FileSet, entry: Dict[str, Any]) -> ImageSource:
    config_raw = files.read_small(entry["config"], "config")
    where = f"{files.where}: {entry['config']}"
    try:
        config = check_layers_match_config(config_raw, len(entry["layers"]), where)
    except mf.ManifestError as err:
        raise ArchiveError(f"{where}: {err.message}") from err
    layers = []
    for name, diff_id in zip(entry["layers"], config.diff_ids):
        compression = _sniff(files, name)
        if compression == "zstd":
            raise ArchiveError(f"{files.where}: layer {name} is zstd-compressed (not supported)")
        media = mf.OCI_LAYER_GZIP if compression == "gzip" else mf.OCI_LAYER
        # A plain layer's blob digest is its diff ID (verified when it is stored).
        digest = diff_id if compression == "none" else _hash_member(files, name)
        layers.append(
            LayerBlob(digest, files.size(name), media, diff_id, lambda n=name: files.open(n))
        )
    return ImageSource(config_raw=config_raw, layers=layers, names=list(entry["tags"]))


def read_docker_archive(files: FileSet) -> List[ImageSource]:
    """Every image of a docker-archive (validated up front; no data is copied yet)."""
    return [_docker_image(files, entry) for entry in _docker_entries(files)]


def _pick(images: List[ImageSource], reference: Optional[str], where: str) -> ImageSource:
    if reference is None:
        if len(images) != 1:
            raise ArchiveError(
                f"{where} holds {len(images)} images",
                hint="name one: docker-archive:FILE:NAME:TAG or docker-archive:FILE:@INDEX",
            )
        return images[0]
    if reference.startswith("@") and reference[1:].isdigit():
        index = int(reference[1:])
        if index >= len(images):
            raise ArchiveError(f"{where}: no image at index {index}")
        return images[index]
    from podpy.image import reference as refs

    wanted = {reference}
    try:
        wanted.add(refs.parse_local_name(reference).tagged_name)
        wanted.add(refs.parse_qualified(reference).with_default_tag().tagged_name)
    except PodpyError:
        pass
    for image in images:
        for name in image.names:
            if name in wanted:
                image.names = [name]
                return image
    raise ArchiveError(f'{where}: no image named "{reference}"')


def read_docker_archive_image(path: str, reference: Optional[str]) -> ImageSource:
    files, temps = open_archive(path, tempfile.gettempdir())
    try:
        image = _pick(read_docker_archive(files), reference, path)
    except BaseException:
        files.close()
        for temp in temps:
            _unlink(temp)
        raise
    image.cleanups.append(files.close)
    image.cleanups.extend(lambda t=t: _unlink(t) for t in temps)
    return image


# --- OCI layouts --------------------------------------------------------------------------------


def _oci_manifest_image(
    files: FileSet, desc: mf.Descriptor, platform: Optional[mf.Platform]
) -> Tuple[ImageSource, mf.ImageManifest]:
    raw = files.read_small(_blob_name(desc.digest), "manifest")
    mf.verify_bytes(raw, desc.digest, desc.size, what=f"{files.where}: manifest")
    parsed = mf.parse_manifest(raw, desc.media_type)
    if isinstance(parsed, mf.ImageIndex):
        chosen = mf.select_manifest(parsed, platform or mf.host_platform())
        return _oci_manifest_image(files, chosen, platform)
    assert isinstance(parsed, mf.ImageManifest)
    config_raw = files.read_small(_blob_name(parsed.config.digest), "config")
    mf.verify_bytes(config_raw, parsed.config.digest, parsed.config.size, what="image config")
    config = check_layers_match_config(config_raw, len(parsed.layers), files.where)
    layers = []
    for layer_desc, diff_id in zip(parsed.layers, config.diff_ids):
        mf.layer_compression(layer_desc.media_type)
        name = _blob_name(layer_desc.digest)
        if not files.exists(name):
            raise ArchiveError(f"{files.where}: layer blob {layer_desc.digest} is missing")
        if files.size(name) != layer_desc.size:
            raise ArchiveError(
                f"{files.where}: layer blob {layer_desc.digest} has {files.size(name)} bytes, "
                f"the manifest says {layer_desc.size}"
            )
        layers.append(
            LayerBlob(
                layer_desc.digest,
                layer_desc.size,
                layer_desc.media_type,
                diff_id,
                lambda n=name: files.open(n),
            )
        )
    source = ImageSource(
        config_raw=config_raw,
        layers=layers,
        manifest_raw=raw,
        manifest_type=parsed.media_type,
    )
    return source, parsed


def _ref_name_to_image_name(ref_name: str) -> Optional[str]:
    """podman writes full names (`localhost/app:v1`); skopeo's `oci:DIR:TAG` only a tag."""
    if "/" not in ref_name and ":" not in ref_name:
        return None
    from podpy.image import reference as refs

    try:
        return refs.parse_local_name(ref_name).tagged_name
    except PodpyError:
        return None


def read_oci_images(
    files: FileSet, reference: Optional[str] = None, platform: Optional[mf.Platform] = None
) -> List[ImageSource]:
    """The images of an OCI layout (all of them, or the one whose ref name is `reference`)."""
    if not files.exists("oci-layout"):
        raise ArchiveError(f"{files.where}: not an OCI layout (oci-layout is missing)")
    index = files.read_json("index.json", "index")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ArchiveError(f"{files.where}: index.json has no manifests list")
    descriptors = [mf.Descriptor.from_json(d, "index.json entry") for d in index["manifests"]]
    if reference is not None:
        descriptors = [
            d
            for d in descriptors
            if d.annotations.get(REF_NAME) == reference
            or _ref_name_to_image_name(d.annotations.get(REF_NAME, "")) == reference
        ]
        if not descriptors:
            raise ArchiveError(f'{files.where}: no image with the reference name "{reference}"')
    if not descriptors:
        raise ArchiveError(f"{files.where}: the layout holds no images")
    images = []
    for desc in descriptors:
        source, _ = _oci_manifest_image(files, desc, platform)
        name = _ref_name_to_image_name(desc.annotations.get(REF_NAME, ""))
        source.names = [name] if name else []
        images.append(source)
    return images


def read_oci_layout_image(directory: str, reference: Optional[str]) -> ImageSource:
    images = read_oci_images(DirFiles(directory), reference)
    if len(images) != 1:
        raise ArchiveError(
            f"{directory} holds {len(images)} images", hint="name one: oci:DIR:REFERENCE"
        )
    return images[0]


def read_oci_archive_image(path: str, reference: Optional[str]) -> ImageSource:
    files, temps = open_archive(path, tempfile.gettempdir())
    try:
        images = read_oci_images(files, reference)
        if len(images) != 1:
            raise ArchiveError(
                f"{path} holds {len(images)} images", hint="name one: oci-archive:FILE:REFERENCE"
            )
    except BaseException:
        files.close()
        for temp in temps:
            _unlink(temp)
        raise
    image = images[0]
    image.cleanups.append(files.close)
    image.cleanups.extend(lambda t=t: _unlink(t) for t in temps)
    return image


# --- skopeo's dir: --------------------------------------------------------------------------------


def read_dir_image(directory: str) -> ImageSource:
    files = DirFiles(directory)
    raw = files.read_small("manifest.json", "manifest")
    parsed = mf.parse_manifest(raw)
    if not isinstance(parsed, mf.ImageManifest):
        raise ArchiveError(f"{directory}: manifest.json is an index; podpy copies single images")

    def blob(digest: str) -> str:
        return mf.validate_digest(digest).split(":", 1)[1]

    config_raw = files.read_small(blob(parsed.config.digest), "config")
    mf.verify_bytes(config_raw, parsed.config.digest, parsed.config.size, what="image config")
    config = check_layers_match_config(config_raw, len(parsed.layers), directory)
    layers = []
    for desc, diff_id in zip(parsed.layers, config.diff_ids):
        name = blob(desc.digest)
        if not files.exists(name):
            raise ArchiveError(f"{directory}: layer blob {desc.digest} is missing")
        layers.append(
            LayerBlob(
                desc.digest, desc.size, desc.media_type, diff_id, lambda n=name: files.open(n)
            )
        )
    return ImageSource(
        config_raw=config_raw, layers=layers, manifest_raw=raw, manifest_type=parsed.media_type
    )


# --- writers ------------------------------------------------------------------------------------


class _Sink:
    """Where an archive's files go: a directory or a tar stream."""

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, len(data), io.BytesIO(data))

    def add_stream(self, name: str, size: int, stream: BinaryIO) -> None:
        raise NotImplementedError

    def has(self, name: str) -> bool:
        raise NotImplementedError

    def add_symlink(self, name: str, target: str) -> None:
        raise NotImplementedError


class _DirSink(_Sink):
    def __init__(self, root: str):
        self.root = root

    def has(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.root, name))

    def add_stream(self, name: str, size: int, stream: BinaryIO) -> None:
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        written = 0
        with open(path, "wb") as out:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                written += len(chunk)
        if written != size:
            raise CopyError(f"writing {name}: expected {size} bytes, got {written}")


class _TarSink(_Sink):
    def __init__(self, fileobj: BinaryIO):
        # Streaming mode: works on pipes (stdout) as well as files.
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self.names: set = set()
        self.dirs: set = set()

    def has(self, name: str) -> bool:
        return name in self.names

    def _dirs_for(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            directory = "/".join(parts[:i])
            if directory not in self.dirs:
                info = tarfile.TarInfo(directory)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                self.tar.addfile(info)
                self.dirs.add(directory)

    def add_stream(self, name: str, size: int, stream: BinaryIO) -> None:
        self._dirs_for(name)
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        self.tar.addfile(info, _ExactReader(stream, size, name))
        self.names.add(name)

    def add_symlink(self, name: str, target: str) -> None:
        self._dirs_for(name)
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        self.tar.addfile(info)
        self.names.add(name)

    def close(self) -> None:
        self.tar.close()


class _ExactReader:
    """Fails loudly if a stream is shorter than the size written in its tar header."""

    def __init__(self, stream: BinaryIO, size: int, name: str):
        self.stream = stream
        self.left = size
        self.name = name

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.stream.read(self.left if n < 0 else min(n, self.left))
        if not data:
            raise CopyError(f"writing {self.name}: the source ended {self.left} bytes early")
        self.left -= len(data)
        return data


def _publish_file(path: str, writer: Any) -> None:
    """Run `writer(fileobj)` into a temp sibling of `path`, then rename it into place."""
    from podpy.atomic import temp_sibling

    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise CopyError(f"{path} is a directory", hint="give a file name for the archive")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise CopyError(f"cannot write {path}: directory {parent} does not exist")
    tmp = temp_sibling(target)
    try:
        with open(tmp, "wb") as out:
            writer(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise


def _write_docker_entries(
    sink: _Sink, images: Sequence[Tuple[ImageSource, List[str]]], tmp_dir: str
) -> None:
    entries = []
    repositories: Dict[str, Dict[str, str]] = {}
    for source, tags in images:
        config_name = f"{source.image_id}.json"
        if not sink.has(config_name):
            sink.add_bytes(config_name, source.config_raw)
        layer_names = []
        for layer in source.layers:
            name = f"{layer.diff_id.split(':', 1)[1]}.tar"
            if not sink.has(name):
                if layer.compression == "none":
                    stream = layer.open()
                    try:
                        sink.add_stream(name, layer.size, stream)
                    finally:
                        stream.close()
                else:
                    spooled, size = spool_uncompressed(layer, tmp_dir)
                    try:
                        with open(spooled, "rb") as f:
                            sink.add_stream(name, size, f)  # type: ignore[arg-type]
                    finally:
                        _unlink(spooled)
            layer_names.append(name)
        top_id = _write_legacy_layers(sink, source, layer_names)
        for tag in tags:
            repo, _, tag_name = tag.rpartition(":")
            if repo and "/" not in tag_name and top_id:
                repositories.setdefault(repo, {})[tag_name] = top_id
        entries.append({"Config": config_name, "RepoTags": list(tags), "Layers": layer_names})
    sink.add_bytes("manifest.json", json.dumps(entries).encode())
    if repositories:
        sink.add_bytes("repositories", json.dumps(repositories).encode())


# The top layer's legacy `json` repeats these fields of the image config (containers/image).
_LEGACY_CONFIG_FIELDS = (
    "architecture",
    "config",
    "container",
    "container_config",
    "created",
    "docker_version",
    "os",
)


def _write_legacy_layers(sink: _Sink, source: ImageSource, layer_names: List[str]) -> str:
    """podman's pre-1.10 docker layout beside manifest.json: `<v1 id>/{VERSION, json,
    layer.tar -> ../<diff id>.tar}` per layer, v1 IDs being chain-ID hexes (containers/image)
    so a layer repeated in one image never makes a parent loop. Returns the top v1 ID."""
    config = json.loads(source.config_raw)
    chain = ""
    parent = ""
    for index, (layer, name) in enumerate(zip(source.layers, layer_names)):
        chain = (
            layer.diff_id if not chain else mf.sha256_digest(f"{chain} {layer.diff_id}".encode())
        )
        layer_id = chain.split(":", 1)[1]
        legacy: Dict[str, Any] = {"id": layer_id}
        if parent:
            legacy["parent"] = parent
        if index == len(source.layers) - 1:
            for key in _LEGACY_CONFIG_FIELDS:
                legacy[key] = config.get(key)
        if not sink.has(f"{layer_id}/json"):
            sink.add_bytes(f"{layer_id}/VERSION", b"1.0")
            sink.add_bytes(f"{layer_id}/json", json.dumps(legacy, sort_keys=True).encode())
            sink.add_symlink(f"{layer_id}/layer.tar", f"../{name}")
        parent = layer_id
    return parent


def write_docker_archive(
    target: Any, images: Sequence[Tuple[ImageSource, List[str]]], tmp_dir: Optional[str] = None
) -> None:
    """A docker-archive of `images` ((source, RepoTags) pairs) to a path or a binary stream."""
    tmp = tmp_dir or tempfile.gettempdir()

    def write(fileobj: BinaryIO) -> None:
        sink = _TarSink(fileobj)
        _write_docker_entries(sink, images, tmp)
        sink.close()

    if isinstance(target, str):
        _publish_file(target, write)
    else:
        write(target)
        target.flush()


def _oci_manifest(source: ImageSource, fmt: Optional[str]) -> Tuple[bytes, List[LayerBlob]]:
    """OCI layouts hold OCI manifests: keep the original bytes when they already are one."""
    if fmt == "v2s2":
        raise CopyError("an OCI layout cannot hold a Docker v2s2 manifest; use --format oci")
    if source.manifest_raw is not None and source.manifest_type == mf.OCI_MANIFEST:
        return source.manifest_raw, source.layers
    from podpy.image.copy import retyped

    layers = [retyped(layer, "oci") for layer in source.layers]
    return build_manifest(source.config_raw, layers, "oci"), layers


def _write_oci_blobs(
    sink: _Sink, images: Sequence[Tuple[ImageSource, Optional[str]]], fmt: Optional[str]
) -> List[Dict[str, Any]]:
    entries = []
    for source, ref_name in images:
        manifest_raw, layers = _oci_manifest(source, fmt)
        for layer in layers:
            name = _blob_name(layer.digest)
            if not sink.has(name):
                stream = layer.open()
                try:
                    sink.add_stream(name, layer.size, stream)
                finally:
                    stream.close()
        for data in (source.config_raw, manifest_raw):
            name = _blob_name(mf.sha256_digest(data))
            if not sink.has(name):
                sink.add_bytes(name, data)
        entry: Dict[str, Any] = {
            "mediaType": mf.OCI_MANIFEST,
            "digest": mf.sha256_digest(manifest_raw),
            "size": len(manifest_raw),
        }
        name = ref_name or (source.names[0] if source.names else None)
        if name:
            entry["annotations"] = {REF_NAME: name}
        entries.append(entry)
    return entries


def _index(entries: List[Dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "manifests": entries}).encode()


def write_oci_archive(
    target: Any, images: Sequence[Tuple[ImageSource, Optional[str]]], fmt: Optional[str] = None
) -> None:
    def write(fileobj: BinaryIO) -> None:
        sink = _TarSink(fileobj)
        sink.add_bytes("oci-layout", OCI_LAYOUT)
        entries = _write_oci_blobs(sink, images, fmt)
        sink.add_bytes("index.json", _index(entries))
        sink.close()

    if isinstance(target, str):
        _publish_file(target, write)
    else:
        write(target)
        target.flush()


def write_oci_layout(
    directory: str, images: Sequence[Tuple[ImageSource, Optional[str]]], fmt: Optional[str] = None
) -> str:
    """Add `images` to the OCI layout at `directory` (created if needed); an existing entry
    with the same ref name is replaced, as skopeo does. Returns the last manifest digest."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CopyError(f"{directory} exists and is not a directory")
    os.makedirs(directory, exist_ok=True)
    sink = _DirSink(directory)
    existing: List[Dict[str, Any]] = []
    index_path = os.path.join(directory, "index.json")
    if os.path.exists(index_path):
        try:
            with open(index_path, "rb") as f:
                existing = list(json.load(f).get("manifests") or [])
        except (ValueError, AttributeError) as err:
            raise CopyError(f"{index_path} is not a valid OCI index: {err}") from err
    entries = _write_oci_blobs(sink, images, fmt)
    new_names = {(e.get("annotations") or {}).get(REF_NAME) for e in entries} - {None}
    kept = [e for e in existing if (e.get("annotations") or {}).get(REF_NAME) not in new_names]
    from podpy.atomic import write_atomic

    write_atomic(os.path.join(directory, "oci-layout"), OCI_LAYOUT)
    write_atomic(index_path, _index(kept + entries))
    return str(entries[-1]["digest"])


def write_dir(directory: str, source: ImageSource, fmt: Optional[str] = None) -> str:
    """skopeo's `dir:` layout: manifest.json, version, and blobs named by their hex digest."""
    from podpy.image.copy import manifest_format, retyped

    current = manifest_format(source.manifest_type)
    layers = source.layers
    if source.manifest_raw is not None and (fmt is None or fmt == current):
        manifest_raw = source.manifest_raw
    else:
        wanted = fmt or current
        layers = [retyped(layer, wanted) for layer in layers]
        manifest_raw = build_manifest(source.config_raw, layers, wanted)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CopyError(f"{directory} exists and is not a directory")
    os.makedirs(directory, exist_ok=True)
    sink = _DirSink(directory)
    for layer in layers:
        stream = layer.open()
        try:
            sink.add_stream(layer.digest.split(":", 1)[1], layer.size, stream)
        finally:
            stream.close()
    sink.add_bytes(source.config_digest.split(":", 1)[1], source.config_raw)
    sink.add_bytes("manifest.json", manifest_raw)
    sink.add_bytes("version", DIR_VERSION)
    return mf.sha256_digest(manifest_raw)


def write_docker_dir(directory: str, source: ImageSource, tmp_dir: str) -> str:
    """`podman save --format docker-dir`: a `dir:` layout with a v2s2 manifest (gzip layers);
    compressed copies go to `tmp_dir`, which the caller removes."""
    layers = [gzip_layer(layer, tmp_dir, "v2s2") for layer in source.layers]
    converted = ImageSource(
        config_raw=source.config_raw,
        layers=layers,
        manifest_raw=source.manifest_raw
        if source.manifest_type == mf.DOCKER_MANIFEST and layers == source.layers
        else None,
        manifest_type=mf.DOCKER_MANIFEST,
    )
    return write_dir(directory, converted, "v2s2")


def refuse_terminal() -> None:
    if sys.stdout.isatty():
        raise PodpyError(
            "refusing to save to terminal. Use -o flag or redirect",
            hint="podpy save -o FILE IMAGE, or podpy save IMAGE > FILE",
        )
