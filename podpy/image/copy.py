"""Copy images between transports (Skopeo's job): a neutral image model, the local store and
registry ends, transport-name parsing, and the copy that ties sources to destinations.

An image travels as an `ImageSource`: the exact config bytes (so the image ID survives every
copy), its layers as blobs that can be opened as streams, and, when the blobs are unchanged,
the original manifest bytes (so a registry digest survives too). Archive formats live in
podpy.image.archive, registry pushes in podpy.image.push.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Dict, List, Optional, Tuple

from podpy.errors import PodpyError
from podpy.image import manifest as mf
from podpy.record import field, record

if TYPE_CHECKING:
    from podpy.engine import Engine
    from podpy.image.pull import PullProgress

CHUNK = 1024 * 1024
TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive", "dir", "containers-storage")


class CopyError(PodpyError):
    """An image that cannot be read from a source or written to a destination."""


@record
class LayerBlob:
    """One layer as a blob: `digest`/`size`/`media_type` describe the bytes `open()` returns."""

    digest: str
    size: int
    media_type: str
    diff_id: str
    opener: Callable[[], BinaryIO]

    def open(self) -> BinaryIO:
        return self.opener()

    @property
    def compression(self) -> str:
        return mf.layer_compression(self.media_type)

    def descriptor(self) -> Dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@record
class ImageSource:
    """An image ready to be written anywhere (see the module docstring)."""

    config_raw: bytes
    layers: List[LayerBlob]
    manifest_raw: Optional[bytes] = None
    manifest_type: str = mf.OCI_MANIFEST
    names: List[str] = field(default_factory=list)
    # Fully qualified repositories known to hold these blobs (cross-repo mount candidates).
    repositories: List[str] = field(default_factory=list)
    cleanups: List[Callable[[], None]] = field(default_factory=list)

    @property
    def config_digest(self) -> str:
        return mf.sha256_digest(self.config_raw)

    @property
    def image_id(self) -> str:
        return self.config_digest.split(":", 1)[1]

    @property
    def config(self) -> Dict[str, Any]:
        return json.loads(self.config_raw)

    def close(self) -> None:
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except OSError:
                pass


def check_layers_match_config(config_raw: bytes, layer_count: int, what: str) -> mf.ImageConfig:
    config = mf.parse_config(config_raw)
    if len(config.diff_ids) != layer_count:
        raise CopyError(
            f"{what}: the manifest lists {layer_count} layers but the config has "
            f"{len(config.diff_ids)} diff_ids",
            hint="the image is corrupt",
        )
    return config


# --- manifests ----------------------------------------------------------------------------------

LAYER_TYPES = {
    ("oci", "gzip"): mf.OCI_LAYER_GZIP,
    ("oci", "none"): mf.OCI_LAYER,
    ("v2s2", "gzip"): mf.DOCKER_LAYER_GZIP,
    ("v2s2", "none"): "application/vnd.docker.image.rootfs.diff.tar",
}


def manifest_format(media_type: str) -> str:
    return "v2s2" if media_type == mf.DOCKER_MANIFEST else "oci"


def build_manifest(config_raw: bytes, layers: List[LayerBlob], fmt: str) -> bytes:
    """A schema-2 manifest for `config_raw` + `layers` in `fmt` (`oci` or `v2s2`)."""
    docker = fmt == "v2s2"
    data: Dict[str, Any] = {"schemaVersion": 2}
    data["mediaType"] = mf.DOCKER_MANIFEST if docker else mf.OCI_MANIFEST
    data["config"] = {
        "mediaType": mf.DOCKER_CONFIG if docker else mf.OCI_CONFIG,
        "digest": mf.sha256_digest(config_raw),
        "size": len(config_raw),
    }
    data["layers"] = [
        {
            "mediaType": LAYER_TYPES[(fmt, layer.compression)],
            "digest": layer.digest,
            "size": layer.size,
        }
        for layer in layers
    ]
    return json.dumps(data, indent=2).encode()


def retyped(layer: LayerBlob, fmt: str) -> LayerBlob:
    """The same blob described with `fmt`'s media type."""
    return LayerBlob(
        layer.digest,
        layer.size,
        LAYER_TYPES[(fmt, layer.compression)],
        layer.diff_id,
        layer.opener,
    )


# --- re-encoding layers -----------------------------------------------------------------------


def uncompressed_stream(layer: LayerBlob) -> BinaryIO:
    from podpy.storage.layers import open_uncompressed

    return open_uncompressed(layer.open())


def spool_uncompressed(layer: LayerBlob, tmp_dir: str) -> Tuple[str, int]:
    """The layer as a plain tar in a temp file (diff ID checked); returns (path, size)."""
    fd, path = tempfile.mkstemp(prefix=".podpy-layer-", dir=tmp_dir)
    hasher = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            stream = uncompressed_stream(layer)
            try:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            finally:
                stream.close()
        actual = "sha256:" + hasher.hexdigest()
        if actual != layer.diff_id:
            raise mf.DigestMismatch(
                f"layer {layer.digest}: uncompressed content {actual} does not match "
                f"its diff_id {layer.diff_id}",
                hint="the image is corrupt",
            )
    except BaseException:
        _unlink(path)
        raise
    return path, size


def gzip_layer(layer: LayerBlob, tmp_dir: str, fmt: str = "oci") -> LayerBlob:
    """The layer gzip-compressed (a temp file the caller removes via the returned opener's
    path in `cleanup_paths`); already-gzip layers are returned unchanged."""
    if layer.compression == "gzip":
        return layer
    fd, path = tempfile.mkstemp(prefix=".podpy-gz-", dir=tmp_dir)
    hasher = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as raw_out:
            counting = _HashingWriter(raw_out, hasher)
            # mtime=0 and no file name: the same layer always compresses to the same digest.
            with gzip.GzipFile(filename="", mode="wb", fileobj=counting, mtime=0) as out:
                stream = layer.open()
                try:
                    shutil.copyfileobj(stream, out, CHUNK)
                finally:
                    stream.close()
        size = counting.count
    except BaseException:
        _unlink(path)
        raise
    return LayerBlob(
        "sha256:" + hasher.hexdigest(),
        size,
        LAYER_TYPES[(fmt, "gzip")],
        layer.diff_id,
        lambda: open(path, "rb"),  # noqa: SIM115 - the reader closes it
    )


class _HashingWriter:
    def __init__(self, out: BinaryIO, hasher: Any):
        self.out = out
        self.hasher = hasher
        self.count = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.hasher.update(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def scratch_dir(eng: Optional[Engine]) -> str:
    """A temp dir on the store's filesystem when there is a store (big layers), else /tmp."""
    base = None
    if eng is not None:
        base = eng.paths.tmp_dir
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
        except OSError:
            base = None
    return tempfile.mkdtemp(prefix="podpy-copy-", dir=base)


# --- the local store ---------------------------------------------------------------------------


def resolve_local(eng: Engine, text: str) -> Tuple[Any, Optional[str]]:
    """(image record, the name the user meant or None when given an ID)."""
    from podpy.engine.images import store
    from podpy.image import reference as refs

    st = store(eng)
    image = st.lookup(text)
    bare = text[len("sha256:") :] if text.startswith("sha256:") else text
    if refs.is_id_like(text) and image.id.startswith(bare):
        return image, None
    try:
        ref = refs.parse(text).with_default_tag()
    except refs.ReferenceError:
        return image, None
    for candidate in refs.local_name_candidates(ref, st._search_registries()):
        if candidate.tagged_name in image.names:
            return image, candidate.tagged_name
    for name in image.names:
        repo, tag = refs.split_name(name)
        if tag == ref.tag and (repo == ref.name or repo.endswith("/" + ref.path)):
            return image, name
    return image, (image.names[0] if image.names else None)


def store_source(eng: Engine, text: str) -> ImageSource:
    """A local image as an ImageSource (its stored compressed or plain layer blobs)."""
    from podpy.engine.images import store

    st = store(eng)
    image, name = resolve_local(eng, text)
    blobs = st.blobs
    config_raw = blobs.read("sha256:" + image.id)
    rows = st.layer_rows(image)
    manifest_layers = list((image.manifest or {}).get("layers") or [])
    diff_ids = list((image.config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(image.layer_chain):
        raise CopyError(f"image {image.id[:12]}: its layer records are incomplete")
    layers: List[LayerBlob] = []
    original = True
    for i, diff_id in enumerate(diff_ids):
        desc = manifest_layers[i] if i < len(manifest_layers) else None
        chosen = None
        if desc and blobs.has(desc["digest"], desc.get("size")):
            chosen = (desc["digest"], int(desc["size"]), desc["mediaType"])
        else:
            original = False
            row = rows[i] if i < len(rows) else {}
            digest = row.get("compressed_digest")
            if digest and blobs.has(digest):
                media = (row.get("metadata") or {}).get("media_type") or _sniff_type(blobs, digest)
                chosen = (digest, blobs.size(digest), media)
        if chosen is None:
            raise CopyError(
                f"image {image.id[:12]}: the blob of layer {diff_id} is missing from the store",
                hint="pull or load the image again",
            )
        digest = chosen[0]
        layers.append(
            LayerBlob(digest, chosen[1], chosen[2], diff_id, lambda d=digest: blobs.open(d))
        )
    manifest_raw = None
    if original and image.digest and blobs.has(image.digest):
        manifest_raw = blobs.read(image.digest)
    return ImageSource(
        config_raw=config_raw,
        layers=layers,
        manifest_raw=manifest_raw,
        manifest_type=image.metadata.get("manifest_type") or mf.OCI_MANIFEST,
        names=[name] if name else [],
        repositories=_known_repositories(image),
    )


def _known_repositories(image: Any) -> List[str]:
    """Repositories the image was pulled from or named after (cross-repo mount candidates)."""
    from podpy.image import reference as refs

    names = list(image.names) + list(image.metadata.get("names_history") or [])
    repositories = [refs.split_name(n)[0] for n in names]
    repositories += list(image.metadata.get("repos") or [])
    return list(dict.fromkeys(repositories))


def _sniff_type(blobs: Any, digest: str) -> str:
    with blobs.open(digest) as f:
        head = f.read(2)
    return mf.OCI_LAYER_GZIP if head == b"\x1f\x8b" else mf.OCI_LAYER


def store_image(
    eng: Engine,
    source: ImageSource,
    names: List[str],
    progress: Optional[PullProgress] = None,
) -> str:
    """Write `source` into the local store under `names`; returns the image ID.

    Blobs are verified against their digests as they are stored and layers against their
    diff IDs as they are unpacked; on any failure the blobs this call added are removed
    and no image record is written.
    """
    from podpy.engine.images import store

    st = store(eng)
    # Held shared like a pull, so `rmi`/`prune` (exclusive) never delete a layer this
    # store is about to reuse; stores without the lock (older layouts) skip it.
    lock = getattr(st, "lock", None)
    with lock(False) if lock is not None else contextlib.nullcontext():
        return _store_image_locked(st, source, names, progress)


def _store_image_locked(
    st: Any, source: ImageSource, names: List[str], progress: Optional[PullProgress]
) -> str:
    config = check_layers_match_config(source.config_raw, len(source.layers), "image")
    chains = mf.chain_ids(config.diff_ids)
    added: List[str] = []
    try:
        for layer in source.layers:
            if progress:
                progress.blob_start(layer.digest, layer.size, "blob")
            if not st.blobs.has(layer.digest, layer.size):
                stream = layer.open()
                try:
                    digest, size = st.blobs.put_stream(stream, layer.digest)
                except mf.DigestMismatch as err:
                    raise mf.DigestMismatch(
                        f"layer {layer.diff_id}: {err.message}",
                        hint="the source is corrupt; this image was not stored",
                    ) from err
                finally:
                    stream.close()
                if size != layer.size:
                    raise mf.DigestMismatch(
                        f"layer {layer.digest}: size {size} does not match the {layer.size} "
                        "bytes its descriptor promised"
                    )
                added.append(digest)
            if progress:
                progress.blob_done(layer.digest)
        if progress:
            progress.blob_start(source.config_digest, len(source.config_raw), "config")
            progress.blob_done(source.config_digest)
        if source.manifest_raw is not None:
            manifest_raw = source.manifest_raw
        else:
            manifest_raw = build_manifest(source.config_raw, source.layers, "oci")
        parsed = mf.parse_manifest(manifest_raw)
        if not isinstance(parsed, mf.ImageManifest):
            raise CopyError("the image's manifest is an index, not an image manifest")
        jobs = []
        present = st.complete_layers()
        for i, layer in enumerate(source.layers):
            chain_hex = chains[i].split(":", 1)[1]
            if chain_hex in present and st.layers.exists(chains[i]):
                continue
            jobs.append(
                {
                    "blob": st.blobs.path(layer.digest),
                    "chain_id": chains[i],
                    "diff_id": layer.diff_id,
                }
            )
        unique = list({job["chain_id"]: job for job in jobs}.values())
        sizes = st.unpack(unique) if unique else {}
        if progress:
            progress.message("Writing manifest to image destination")
        manifest_digest = st.blobs.put_bytes(manifest_raw)
        config_digest = st.blobs.put_bytes(source.config_raw)
        added += [manifest_digest, config_digest]
        layer_rows = [
            {
                "chain_id": chains[i],
                "diff_id": layer.diff_id,
                "parent": chains[i - 1] if i else None,
                "compressed_digest": layer.digest,
                "compressed_size": layer.size,
                "size": sizes.get(chains[i]),
                "media_type": layer.media_type,
            }
            for i, layer in enumerate(source.layers)
        ]
        first_repo = None
        if names:
            from podpy.image import reference as refs

            first_repo = refs.split_name(names[0])[0]
        image_id, _new = st.commit_image(
            config=config,
            manifest=parsed,
            manifest_digest=manifest_digest,
            digests=[manifest_digest],
            repo_name=first_repo,
            name=names[0] if names else None,
            layers=layer_rows,
        )
    except BaseException:
        for digest in added:
            if not _referenced(st, digest):
                st.blobs.remove(digest)
        raise
    for extra in names[1:]:
        st.add_name(image_id, extra)
    return image_id


def _referenced(st: Any, digest: str) -> bool:
    """Does any recorded image or layer already use this blob (so a failed load keeps it)?"""
    rows = st.db.query("SELECT id FROM layers WHERE compressed_digest = ? LIMIT 1", (digest,))
    if rows:
        return True
    rows = st.db.query(
        "SELECT id FROM images WHERE digest = ? OR id = ? LIMIT 1", (digest, digest.split(":")[-1])
    )
    return bool(rows)


# --- registries --------------------------------------------------------------------------------


@record
class RegistryOptions:
    tls_verify: Optional[bool] = None  # None: registries.conf decides
    creds: Optional[str] = None
    authfile: Optional[str] = None
    cert_dir: Optional[str] = None
    platform: Optional[mf.Platform] = None


def registry_client(eng: Engine, host: str, repository: str, options: RegistryOptions) -> Any:
    """A RegistryClient for `host` with credentials (--creds or auth files) and TLS settings."""
    from podpy.image.auth import credential_lookup
    from podpy.image.registry import RegistryClient
    from podpy.paths import config_home

    insecure = False
    try:
        insecure = eng.config.registries.is_insecure(host)
    except AttributeError:
        insecure = False
    cert_dirs = [
        os.path.join(config_home(eng.options.env), "containers", "certs.d"),
        "/etc/containers/certs.d",
        "/etc/docker/certs.d",
    ]
    tls_verify = options.tls_verify
    return RegistryClient(
        host,
        insecure=insecure if tls_verify is None else False,
        tls_verify=True if tls_verify is None else tls_verify,
        credentials=credential_lookup(options.creds, options.authfile, eng.options.env, repository),
        cert_dirs=cert_dirs,
        cert_dir=options.cert_dir,
    )


@record
class RemoteImage:
    """What `image inspect docker://` shows: the chosen manifest, its digest, the config."""

    reference: Any
    raw_manifest: bytes  # the top-level manifest or index, exactly as served
    manifest: mf.ImageManifest
    digest: str  # of the top-level manifest (what `podman pull` records)
    config_raw: bytes
    tags: List[str]
    client: Any


def fetch_remote(
    eng: Engine, text: str, options: RegistryOptions, with_tags: bool = False
) -> RemoteImage:
    from podpy.image import reference as refs

    ref = refs.parse_qualified(text).with_default_tag()
    client = registry_client(eng, ref.domain, ref.path, options)
    repo = ref.path
    raw, content_type, _ = client.get_manifest(repo, ref.remote_reference)
    top_raw = raw
    digest = mf.sha256_digest(raw)
    if ref.digest and digest != ref.digest:
        raise mf.DigestMismatch(f"manifest {ref}: digest mismatch: got {digest}")
    parsed = mf.parse_manifest(raw, content_type)
    if isinstance(parsed, mf.ImageIndex):
        chosen = mf.select_manifest(parsed, options.platform or mf.host_platform())
        raw, content_type, _ = client.get_manifest(repo, chosen.digest)
        mf.verify_bytes(raw, chosen.digest, chosen.size, what=f"manifest of {ref}")
        parsed = mf.parse_manifest(raw, content_type)
        if not isinstance(parsed, mf.ImageManifest):
            raise mf.ManifestError(f"{ref}: an index entry points at another index")
    assert isinstance(parsed, mf.ImageManifest)
    config_raw = client.get_blob_bytes(repo, parsed.config.digest, 8 * 1024 * 1024)
    mf.verify_bytes(config_raw, parsed.config.digest, parsed.config.size, what="image config")
    tags: List[str] = []
    if with_tags:
        tags = list_tags(client, repo)
    image = RemoteImage(ref, top_raw, parsed, digest, config_raw, tags, client)
    return image


def list_tags(client: Any, repo: str) -> List[str]:
    response = client.request("GET", f"/v2/{repo}/tags/list", scopes=client.pull_scope(repo))
    if response.status != 200:
        response.close()
        return []
    try:
        return list(json.loads(response.read_all(4 * 1024 * 1024)).get("tags") or [])
    except ValueError:
        return []


def registry_source(eng: Engine, text: str, options: RegistryOptions) -> ImageSource:
    remote = fetch_remote(eng, text, options)
    check_layers_match_config(remote.config_raw, len(remote.manifest.layers), str(remote.reference))
    diff_ids = mf.parse_config(remote.config_raw).diff_ids
    client, repo = remote.client, remote.reference.path
    layers = []
    for desc, diff_id in zip(remote.manifest.layers, diff_ids):
        mf.layer_compression(desc.media_type)

        def opener(d: str = desc.digest, size: int = desc.size) -> BinaryIO:
            return _VerifiedRemoteBlob(client, repo, d, size)

        layers.append(LayerBlob(desc.digest, desc.size, desc.media_type, diff_id, opener))
    return ImageSource(
        config_raw=remote.config_raw,
        layers=layers,
        manifest_raw=remote.manifest.raw,
        manifest_type=remote.manifest.media_type,
        names=[remote.reference.tagged_name] if remote.reference.tag else [],
    )


class _VerifiedRemoteBlob:
    """A registry blob stream that raises at EOF unless size and digest matched."""

    def __init__(self, client: Any, repo: str, digest: str, size: int):
        self.stream, start = client.open_blob(repo, digest)
        self.digest = digest
        self.size = size
        self.hasher = mf.new_hasher(digest)
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        if data:
            self.hasher.update(data)
            self.count += len(data)
            if self.count > self.size:
                raise mf.DigestMismatch(f"blob {self.digest}: more than {self.size} bytes")
        elif n != 0:
            actual = f"{self.digest.split(':', 1)[0]}:{self.hasher.hexdigest()}"
            if self.count != self.size or actual != self.digest:
                raise mf.DigestMismatch(
                    f"blob {self.digest}: digest or size mismatch ({self.count} bytes)"
                )
        return data

    def close(self) -> None:
        self.stream.close()


# --- transport names ---------------------------------------------------------------------------


@record
class Endpoint:
    """A parsed `TRANSPORT:REFERENCE` (`containers-storage` for a plain local name)."""

    transport: str
    path: str  # registry reference, directory, archive file or local name
    reference: Optional[str] = None  # tag / image name inside an archive or layout

    def __str__(self) -> str:
        text = f"{self.transport}:{self.path}"
        return f"{text}:{self.reference}" if self.reference else text


def parse_endpoint(text: str) -> Endpoint:
    """`docker://ref`, `oci:DIR[:TAG]`, `oci-archive:FILE[:REF]`, `docker-archive:FILE[:REF]`,
    `dir:DIR`, `containers-storage:NAME`, or a plain local image name."""
    if text.startswith("docker://"):
        rest = text[len("docker://") :]
        if not rest:
            raise CopyError(f'invalid image name "{text}": missing reference after docker://')
        return Endpoint("docker", rest)
    transport, sep, rest = text.partition(":")
    if sep and transport in ("oci", "oci-archive", "docker-archive"):
        if not rest:
            raise CopyError(f'invalid image name "{text}": missing path after {transport}:')
        path, sep2, ref = rest.partition(":")
        return Endpoint(transport, path, ref if sep2 and ref else None)
    if sep and transport == "dir":
        if not rest:
            raise CopyError(f'invalid image name "{text}": missing directory after dir:')
        return Endpoint("dir", rest)
    if sep and transport == "containers-storage":
        if rest.startswith("["):
            rest = rest.split("]", 1)[-1]  # [driver@root+runroot] store specs are ignored
        return Endpoint("containers-storage", rest)
    if sep and transport == "docker":
        raise CopyError(f'invalid image name "{text}": use docker://REFERENCE')
    # Anything else must be a local image name (`name:tag` is not a transport).
    from podpy.image import reference as refs

    try:
        refs.parse(text)
    except refs.ReferenceError as err:
        raise CopyError(
            f'invalid image name "{text}": neither a known transport nor a local image name',
            hint="use one of: " + ", ".join(f"{t}:" for t in TRANSPORTS) + " or NAME[:TAG]",
        ) from err
    return Endpoint("containers-storage", text)


def open_source(eng: Engine, endpoint: Endpoint, options: RegistryOptions) -> ImageSource:
    from podpy.image import archive

    if endpoint.transport == "docker":
        return registry_source(eng, endpoint.path, options)
    if endpoint.transport == "containers-storage":
        return store_source(eng, endpoint.path)
    if endpoint.transport == "oci":
        return archive.read_oci_layout_image(endpoint.path, endpoint.reference)
    if endpoint.transport == "oci-archive":
        return archive.read_oci_archive_image(endpoint.path, endpoint.reference)
    if endpoint.transport == "docker-archive":
        return archive.read_docker_archive_image(endpoint.path, endpoint.reference)
    if endpoint.transport == "dir":
        return archive.read_dir_image(endpoint.path)
    raise CopyError(f"unsupported source transport {endpoint.transport}")


@record
class CopyResult:
    image_id: str
    manifest_digest: Optional[str]


def write_destination(
    eng: Engine,
    source: ImageSource,
    endpoint: Endpoint,
    options: RegistryOptions,
    fmt: Optional[str] = None,
    progress: Optional[PullProgress] = None,
    digestfile: Optional[str] = None,
) -> CopyResult:
    """Write one image to `endpoint`; returns the image ID and the written manifest digest."""
    from podpy.image import archive

    manifest_digest: Optional[str] = None
    if endpoint.transport == "docker":
        from podpy.image.push import push_image

        manifest_digest = push_image(eng, source, endpoint.path, options, fmt, progress)
    elif endpoint.transport == "containers-storage":
        from podpy.image import reference as refs

        name = refs.parse_local_name(endpoint.path).tagged_name
        store_image(eng, source, [name], progress)
    elif endpoint.transport == "oci":
        manifest_digest = archive.write_oci_layout(
            endpoint.path, [(source, endpoint.reference)], fmt
        )
    elif endpoint.transport == "oci-archive":
        archive.write_oci_archive(endpoint.path, [(source, endpoint.reference)], fmt)
    elif endpoint.transport == "docker-archive":
        tags = [endpoint.reference] if endpoint.reference else list(source.names)
        archive.write_docker_archive(endpoint.path, [(source, tags)])
    elif endpoint.transport == "dir":
        manifest_digest = archive.write_dir(endpoint.path, source, fmt)
    else:
        raise CopyError(f"unsupported destination transport {endpoint.transport}")
    if digestfile and manifest_digest:
        from podpy.atomic import write_atomic

        write_atomic(digestfile, manifest_digest.encode())
    return CopyResult(source.image_id, manifest_digest)


def copy(
    eng: Engine,
    src: str,
    dst: str,
    options: RegistryOptions,
    dest_options: Optional[RegistryOptions] = None,
    fmt: Optional[str] = None,
    progress: Optional[PullProgress] = None,
    digestfile: Optional[str] = None,
) -> CopyResult:
    """`podpy image copy SRC DST`: read the source once, write it to the destination."""
    src_end = parse_endpoint(src)
    dst_end = parse_endpoint(dst)
    if src_end.transport == "docker" and dst_end.transport == "containers-storage":
        # A pull is the same copy, with parallel downloads and layer reuse.
        from podpy.image import reference as refs
        from podpy.image.pull import Puller, PullOptions

        pull_options = PullOptions(
            tls_verify=options.tls_verify,
            credentials=None,
            cert_dir=options.cert_dir,
        )
        ref = refs.parse_qualified(src_end.path).with_default_tag()
        from podpy.image.auth import credential_lookup

        pull_options.credentials = credential_lookup(
            options.creds, options.authfile, eng.options.env, ref.path
        )
        if options.platform is not None:
            pull_options.platform = options.platform
        from podpy.engine.images import store

        st = store(eng)
        had_name = bool(st.db.query("SELECT 1 FROM image_names WHERE name = ?", (ref.tagged_name,)))
        result = Puller(eng, pull_options, progress).pull_reference(ref)
        wanted = refs.parse_local_name(dst_end.path).tagged_name
        if wanted != result.name:
            st.add_name(result.image_id, wanted)
            if result.name and not had_name:
                st.remove_name(result.image_id, result.name)  # only the name asked for
        return CopyResult(result.image_id, None)
    source = open_source(eng, src_end, options)
    try:
        if progress:
            progress.message("Getting image source signatures")
        result = write_destination(
            eng, source, dst_end, dest_options or options, fmt, progress, digestfile
        )
        if progress:
            progress.message("Storing signatures")
        return result
    finally:
        source.close()
