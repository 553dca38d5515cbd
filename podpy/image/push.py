"""Push an image to a registry: blob existence checks, cross-repo mounts, monolithic and
chunked uploads, format conversion (OCI or Docker v2s2, gzip layers) and the manifest PUT.

Blobs go first and the manifest last, so a failed push never publishes a tag that points at
missing content. Every response digest is checked against what was sent.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from podpy import log
from podpy.errors import PodpyError
from podpy.image import manifest as mf
from podpy.image.copy import (
    ImageSource,
    LayerBlob,
    RegistryOptions,
    build_manifest,
    gzip_layer,
    manifest_format,
    registry_client,
    retyped,
    scratch_dir,
)

if TYPE_CHECKING:
    from podpy.engine import Engine
    from podpy.image.pull import PullProgress

DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
CHUNK_SIZE_ENV = "PODPY_PUSH_CHUNK_SIZE"  # smaller values force chunked uploads (tests)
FORMATS = ("oci", "v2s2")
PARALLEL_UPLOADS = 3
COMPRESSIONS = ("gzip",)


class PushError(PodpyError):
    """The registry did not accept a blob or manifest as sent."""


def chunk_size() -> int:
    value = os.environ.get(CHUNK_SIZE_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_CHUNK_SIZE


def normalize_format(fmt: Optional[str]) -> Optional[str]:
    """`oci`, `v2s2` (also `docker`); `v2s1` is refused as podman 4 refuses to build it."""
    if fmt is None or fmt == "":
        return None
    lowered = fmt.lower()
    if lowered in ("docker", "v2s2"):
        return "v2s2"
    if lowered == "oci":
        return "oci"
    raise PodpyError(
        f'unsupported manifest format "{fmt}"', hint="use --format oci or --format v2s2"
    )


def check_compression(compression: Optional[str]) -> None:
    if compression and compression.lower() not in COMPRESSIONS:
        raise PodpyError(
            f'unsupported compression format "{compression}"',
            hint="podpy compresses layers with gzip only (--compression-format gzip)",
        )


def _with_query(location: str, **params: str) -> str:
    return location + ("&" if "?" in location else "?") + urllib.parse.urlencode(params)


class BlobUploader:
    """Uploads blobs into one repository through an authenticated RegistryClient."""

    def __init__(self, client: Any, repo: str, mount_from: List[str]):
        self.client = client
        self.repo = repo
        self.mount_from = mount_from
        self.scopes = [f"repository:{repo}:pull,push"]

    def _absolute(self, location: str) -> str:
        if not location:
            raise PushError(f"registry {self.client.host} sent no upload Location")
        return urllib.parse.urljoin(self.client.base_url() + "/", location)

    def exists(self, digest: str) -> bool:
        return self.client.head_blob(self.repo, digest, scopes=self.scopes) is not None

    def _start(self, digest: str) -> Tuple[Optional[str], int]:
        """Try each cross-repo mount, then open an upload session; (Location or None if
        mounted, minimum chunk length)."""
        for other in self.mount_from:
            response = self.client.request(
                "POST",
                f"/v2/{self.repo}/blobs/uploads/?"
                + urllib.parse.urlencode({"mount": digest, "from": other}),
                scopes=self.scopes + [f"repository:{other}:pull"],
                body=b"",
            )
            response.read_all(64 * 1024)
            if response.status == 201:
                log.debug(f"push: mounted {digest} from {other}")
                return None, 0
            if response.status == 202:
                return self._absolute(response.header("location")), _min_chunk(response)
        response = self.client.request(
            "POST", f"/v2/{self.repo}/blobs/uploads/", scopes=self.scopes, body=b""
        )
        if response.status != 202:
            self.client.raise_for(response, f"starting an upload to {self.client.host}/{self.repo}")
        response.read_all(64 * 1024)
        return self._absolute(response.header("location")), _min_chunk(response)

    def upload(self, digest: str, size: int, stream: Any, progress: Any = None) -> bool:
        """Upload unless the repository has it; True when it was skipped or mounted."""
        if self.exists(digest):
            return True
        location, min_chunk = self._start(digest)
        if location is None:
            return True
        step = max(chunk_size(), min_chunk)
        if size <= step:
            body = stream.read(size + 1)
            if len(body) != size:
                raise PushError(f"blob {digest}: expected {size} bytes, read {len(body)}")
            self._finish(location, digest, body)
        else:
            self._chunked(location, digest, size, stream, step, progress)
            return False
        if progress:
            progress(size)
        return False

    def _chunked(
        self, location: str, digest: str, size: int, stream: Any, step: int, progress: Any
    ) -> None:
        offset = 0
        while offset < size:
            chunk = stream.read(min(step, size - offset))
            if not chunk:
                raise PushError(f"blob {digest}: the source ended after {offset} of {size} bytes")
            end = offset + len(chunk) - 1
            response = self.client.request(
                "PATCH",
                location,
                scopes=self.scopes,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{end}",
                    "Content-Length": str(len(chunk)),
                },
                body=chunk,
            )
            if response.status != 202:
                self.client.raise_for(response, f"uploading a chunk of {digest}")
            response.read_all(64 * 1024)
            location = self._absolute(response.header("location") or location)
            offset = end + 1
            if progress:
                progress(len(chunk))
        if stream.read(1):
            raise PushError(f"blob {digest}: the source is larger than {size} bytes")
        self._finish(location, digest, b"")

    def _finish(self, location: str, digest: str, body: bytes) -> None:
        response = self.client.request(
            "PUT",
            _with_query(location, digest=digest),
            scopes=self.scopes,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))},
            body=body,
        )
        if response.status not in (201, 204):
            self.client.raise_for(response, f"uploading blob {digest}")
        response.read_all(64 * 1024)
        answered = response.header("docker-content-digest")
        if answered and answered != digest:
            raise PushError(
                f"blob {digest}: the registry stored it as {answered}",
                hint="the upload was corrupted in transit; push again",
            )

    def put_manifest(self, reference: str, raw: bytes, media_type: str) -> str:
        response = self.client.request(
            "PUT",
            f"/v2/{self.repo}/manifests/{reference}",
            scopes=self.scopes,
            headers={"Content-Type": media_type},
            body=raw,
        )
        if response.status not in (200, 201, 202):
            self.client.raise_for(
                response, f"writing manifest {reference} to {self.client.host}/{self.repo}"
            )
        response.read_all(64 * 1024)
        digest = mf.sha256_digest(raw)
        answered = response.header("docker-content-digest")
        if answered and answered != digest:
            raise PushError(f"manifest: the registry answered digest {answered}, expected {digest}")
        return digest


def _min_chunk(response: Any) -> int:
    value = response.header("oci-chunk-min-length")
    return int(value) if value.isdigit() else 0


def upload_layers(uploader: BlobUploader, layers: List[LayerBlob], progress: Any) -> None:
    """Upload distinct layers, a few at a time (as podman); the first failure wins."""
    from concurrent.futures import ThreadPoolExecutor

    unique = list({layer.digest: layer for layer in layers}.values())

    def one(layer: LayerBlob) -> None:
        if progress:
            progress.blob_start(layer.digest, layer.size, "blob")
        stream = layer.open()
        try:
            advance = (lambda n: progress.blob_advance(layer.digest, n)) if progress else None
            skipped = uploader.upload(layer.digest, layer.size, stream, advance)
        finally:
            stream.close()
        if progress:
            progress.blob_done(layer.digest, skipped=skipped)

    if len(unique) <= 1:
        for layer in unique:
            one(layer)
        return
    with ThreadPoolExecutor(max_workers=min(PARALLEL_UPLOADS, len(unique))) as pool:
        futures = [pool.submit(one, layer) for layer in unique]
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err


def plan_layers(
    source: ImageSource, fmt: Optional[str], tmp_dir: str
) -> Tuple[bytes, str, List[LayerBlob]]:
    """(manifest bytes, its media type, the layer blobs it names) for pushing `source`.

    The original manifest is kept when the format matches and every layer is already
    compressed (so the digest users know survives); otherwise layers are gzip-compressed
    and a manifest is built in the wanted format.
    """
    current = manifest_format(source.manifest_type)
    wanted = fmt or current
    all_gzip = all(layer.compression == "gzip" for layer in source.layers)
    if source.manifest_raw is not None and wanted == current and all_gzip:
        return source.manifest_raw, source.manifest_type, source.layers
    layers = [retyped(gzip_layer(layer, tmp_dir, wanted), wanted) for layer in source.layers]
    media_type = mf.DOCKER_MANIFEST if wanted == "v2s2" else mf.OCI_MANIFEST
    return build_manifest(source.config_raw, layers, wanted), media_type, layers


def push_image(
    eng: Engine,
    source: ImageSource,
    destination: str,
    options: RegistryOptions,
    fmt: Optional[str] = None,
    progress: Optional[PullProgress] = None,
) -> str:
    """Push `source` to `destination` (`host/repo[:tag]`); returns the manifest digest."""
    from podpy.image import reference as refs

    ref = refs.parse_qualified(destination)
    if ref.digest:
        raise PodpyError(
            f'cannot push to "{destination}": the destination must be a tag, not a digest'
        )
    ref = ref.with_default_tag()
    client = registry_client(eng, ref.domain, ref.path, options)
    tmp_dir = scratch_dir(eng)
    try:
        manifest_raw, media_type, layers = plan_layers(source, normalize_format(fmt), tmp_dir)
        mounts = []
        for repository in source.repositories:
            host, _, path = repository.partition("/")
            if host == ref.domain and path and path != ref.path:
                mounts.append(path)
        uploader = BlobUploader(client, ref.path, mounts)
        upload_layers(uploader, layers, progress)
        config_digest = source.config_digest
        if progress:
            progress.blob_start(config_digest, len(source.config_raw), "config")
        import io

        uploader.upload(config_digest, len(source.config_raw), io.BytesIO(source.config_raw))
        if progress:
            progress.blob_done(config_digest)
            progress.message("Writing manifest to image destination")
        return uploader.put_manifest(ref.tag or refs.DEFAULT_TAG, manifest_raw, media_type)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
