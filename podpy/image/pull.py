"""Pull orchestration: registry -> verified blobs -> unpacked layers -> image record.

Three phases keep it crash-safe and fork-safe: (1) manifests and config, then layer blobs
downloaded in parallel threads into the blob store (verified while streaming); (2) the
layers not yet in the store unpacked in a child that runs as root of the user namespace
(forked after the download threads are gone; it forks one worker per layer, a few at a
time, since layers are independent directories); each layer is built in a temporary dir and
renamed into place after its diff ID checked out; (3) one short DB transaction records
layers and the image and moves its name. A kill at any point leaves only temporaries
(removed by the next pull) or complete but unrecorded layer dirs and blobs (reused by the
next pull, swept by `image prune`); never a half layer or a half-recorded image.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Protocol, Tuple

from podpy import log
from podpy.errors import PodpyError
from podpy.image import manifest as mf
from podpy.image.reference import Reference, parse, short_name_candidates
from podpy.image.registry import (
    CredentialLookup,
    NotFound,
    RegistryClient,
    RegistryError,
    Unauthorized,
)
from podpy.record import field, record

DEFAULT_PARALLEL = 3
PARALLEL_ENV = "PODPY_MAX_PARALLEL_DOWNLOADS"
MAX_CONFIG_SIZE = 8 * 1024 * 1024


class PullProgress(Protocol):
    """How the engine reports a pull; the CLI draws it (rich bars on a TTY, lines otherwise)."""

    def message(self, text: str) -> None: ...

    def blob_start(self, digest: str, size: int, kind: str) -> None: ...

    def blob_advance(self, digest: str, nbytes: int) -> None: ...

    def blob_done(self, digest: str, skipped: bool = False) -> None: ...


class SilentProgress:
    def message(self, text: str) -> None:
        pass

    def blob_start(self, digest: str, size: int, kind: str) -> None:
        pass

    def blob_advance(self, digest: str, nbytes: int) -> None:
        pass

    def blob_done(self, digest: str, skipped: bool = False) -> None:
        pass


@record
class PullOptions:
    platform: mf.Platform = field(default_factory=mf.host_platform)
    tls_verify: Optional[bool] = None  # None: registries.conf decides
    credentials: Optional[CredentialLookup] = None
    parallel: int = 0  # 0: $PODPY_MAX_PARALLEL_DOWNLOADS or DEFAULT_PARALLEL
    cert_dir: Optional[str] = None


@record
class LayerPlan:
    descriptor: mf.Descriptor
    diff_id: str
    chain_id: str
    parent_chain_id: Optional[str]
    compression: str
    present: bool  # already unpacked in the store


@record
class FetchedImage:
    """Everything known about a remote image once its manifest and config are read."""

    reference: Reference  # what was pulled (fully qualified)
    manifest: mf.ImageManifest
    manifest_digest: str
    index_digest: Optional[str]
    config: mf.ImageConfig
    layers: List[LayerPlan]
    client: RegistryClient  # where the blobs come from (a mirror, possibly)
    repository: str  # the path on that registry


@record
class PullResult:
    image_id: str
    name: str
    new: bool


def parallel_downloads(requested: int) -> int:
    if requested > 0:
        return requested
    env = os.environ.get(PARALLEL_ENV, "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return DEFAULT_PARALLEL


class Puller:
    """Pulls one reference into the local store of an Engine."""

    def __init__(self, engine: Any, options: PullOptions, progress: Optional[PullProgress] = None):
        from podpy.storage.images import ImageStore

        self.engine = engine
        self.options = options
        self.progress: PullProgress = progress or SilentProgress()
        self.store = ImageStore(engine)
        self._clients: Dict[Tuple[str, bool], RegistryClient] = {}

    # --- registries -------------------------------------------------------------------------

    def client(self, host: str, insecure: bool) -> RegistryClient:
        tls_verify = self.options.tls_verify
        key = (host, insecure)
        if key not in self._clients:
            from podpy.paths import config_home

            cert_dirs: List[str] = []
            cert_dirs.append(
                os.path.join(config_home(self.engine.options.env), "containers", "certs.d")
            )
            cert_dirs.extend(["/etc/containers/certs.d", "/etc/docker/certs.d"])
            self._clients[key] = RegistryClient(
                host,
                insecure=insecure if tls_verify is None else False,
                tls_verify=True if tls_verify is None else tls_verify,
                credentials=self.options.credentials,
                cert_dirs=cert_dirs,
                cert_dir=self.options.cert_dir,
            )
        return self._clients[key]

    def _registries(self) -> Any:
        try:
            return self.engine.config.registries
        except AttributeError:
            return None

    def candidates(self, text: str) -> List[Reference]:
        ref = parse(text)
        registries = self._registries()
        search = list(getattr(registries, "search_registries", []) or [])
        aliases = dict(getattr(registries, "aliases", {}) or {})
        return [c.with_default_tag() for c in short_name_candidates(ref, search, aliases)]

    # --- phase 1: metadata ------------------------------------------------------------------

    def fetch_metadata(self, ref: Reference) -> FetchedImage:
        registries = self._registries()
        name = str(ref)
        if registries is not None and registries.is_blocked(name):
            raise PodpyError(
                f"registry {ref.domain} is blocked in registries.conf",
                hint="remove `blocked = true` for it, or pull from another registry",
            )
        sources = registries.pull_sources(name) if registries is not None else []
        if not sources:
            return self._fetch_from(ref, ref.domain, False)
        errors: List[str] = []
        for index, source in enumerate(sources):
            try:
                source_ref = parse(source.reference)
                fetched = self._fetch_from(source_ref, source_ref.domain, source.insecure)
                fetched.reference = ref
                return fetched
            except (RegistryError, PodpyError) as err:
                if index == len(sources) - 1:
                    if errors:
                        raise PodpyError(
                            f"{err.message} (mirrors tried: {'; '.join(errors)})", hint=err.hint
                        ) from err
                    raise
                errors.append(f"{source.endpoint}: {err.message}")
        raise AssertionError("unreachable")

    def _fetch_from(self, ref: Reference, host: str, insecure: bool) -> FetchedImage:
        client = self.client(host, insecure)
        repo = ref.path
        raw, content_type, header_digest = client.get_manifest(repo, ref.remote_reference)
        digest = mf.sha256_digest(raw)
        if ref.digest and ref.digest.startswith("sha256:") and digest != ref.digest:
            raise mf.DigestMismatch(
                f"manifest {ref}: digest mismatch: got {digest}",
                hint="the registry served content that does not match the requested digest",
            )
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            log.debug(f"registry digest header {header_digest} differs from content {digest}")
        parsed = mf.parse_manifest(raw, content_type)
        index_digest: Optional[str] = None
        if isinstance(parsed, mf.ImageIndex):
            index_digest = digest
            chosen = mf.select_manifest(parsed, self.options.platform)
            raw, content_type, _ = client.get_manifest(repo, chosen.digest)
            mf.verify_bytes(raw, chosen.digest, chosen.size, what=f"manifest of {ref}")
            parsed = mf.parse_manifest(raw, content_type)
            if not isinstance(parsed, mf.ImageManifest):
                raise mf.ManifestError(f"{ref}: an index entry points at another index")
            digest = chosen.digest
        assert isinstance(parsed, mf.ImageManifest)
        config_desc = parsed.config
        if config_desc.size > MAX_CONFIG_SIZE:
            raise mf.ManifestError(f"{ref}: image config of {config_desc.size} bytes is too large")
        blobs = self.store.blobs
        if blobs.has(config_desc.digest, config_desc.size):
            config_raw = blobs.read(config_desc.digest)
        else:
            config_raw = client.get_blob_bytes(repo, config_desc.digest, MAX_CONFIG_SIZE)
        mf.verify_bytes(config_raw, config_desc.digest, config_desc.size, what="image config")
        config = mf.parse_config(config_raw)
        if len(config.diff_ids) != len(parsed.layers):
            raise mf.ManifestError(
                f"{ref}: the manifest has {len(parsed.layers)} layers but the config lists "
                f"{len(config.diff_ids)} diff_ids"
            )
        chains = mf.chain_ids(config.diff_ids)
        present = self.store.complete_layers()
        layers = []
        for i, desc in enumerate(parsed.layers):
            compression = mf.layer_compression(desc.media_type)
            chain_hex = chains[i].split(":", 1)[1]
            layers.append(
                LayerPlan(
                    desc,
                    config.diff_ids[i],
                    chains[i],
                    chains[i - 1] if i else None,
                    compression,
                    chain_hex in present and self.store.layers.exists(chains[i]),
                )
            )
        return FetchedImage(ref, parsed, digest, index_digest, config, layers, client, repo)

    # --- phase 1b: blobs -------------------------------------------------------------------

    def download_layers(self, fetched: FetchedImage) -> None:
        client, repo = fetched.client, fetched.repository
        blobs = self.store.blobs
        wanted: Dict[str, mf.Descriptor] = {}
        for layer in fetched.layers:
            digest = layer.descriptor.digest
            if layer.present:
                self.progress.blob_start(digest, layer.descriptor.size, "blob")
                self.progress.blob_done(digest, skipped=True)
            elif digest not in wanted:
                wanted[digest] = layer.descriptor
        if not wanted:
            return
        errors: List[BaseException] = []
        cancel = threading.Event()

        def fetch_one(desc: mf.Descriptor) -> None:
            if cancel.is_set():
                return
            self.progress.blob_start(desc.digest, desc.size, "blob")
            try:
                blobs.ingest(
                    desc.digest,
                    desc.size,
                    lambda offset: client.open_blob(repo, desc.digest, offset),
                    progress=lambda n: self.progress.blob_advance(desc.digest, n),
                )
            except BaseException as err:
                cancel.set()
                errors.append(err)
                return
            self.progress.blob_done(desc.digest)

        workers = min(parallel_downloads(self.options.parallel), len(wanted))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pull") as pool:
            list(pool.map(fetch_one, wanted.values()))
        if errors:
            first = errors[0]
            if isinstance(first, PodpyError):
                raise first
            raise PodpyError(f"copying blobs of {fetched.reference}: {first}") from first

    # --- phase 2: unpack --------------------------------------------------------------------

    def unpack_layers(self, fetched: FetchedImage) -> Dict[str, int]:
        """Unpack missing layers inside the user namespace; returns chain id -> size."""
        todo = [layer for layer in fetched.layers if not layer.present]
        seen = set()
        unique = []
        for layer in todo:
            if layer.chain_id not in seen:
                seen.add(layer.chain_id)
                unique.append(layer)
        if not unique:
            return {}
        jobs = [
            {
                "blob": self.store.blobs.path(layer.descriptor.digest),
                "chain_id": layer.chain_id,
                "diff_id": layer.diff_id,
            }
            for layer in unique
        ]
        return self.store.unpack(jobs)

    # --- phase 3: record --------------------------------------------------------------------

    def record(self, fetched: FetchedImage, sizes: Dict[str, int]) -> PullResult:
        self.progress.message("Writing manifest to image destination")
        blobs = self.store.blobs
        blobs.put_bytes(fetched.manifest.raw, fetched.manifest_digest)
        blobs.put_bytes(fetched.config.raw, fetched.config.digest)
        name = (
            fetched.reference.tagged_name
            if not fetched.reference.digest or fetched.reference.tag
            else ""
        )
        digests = [fetched.manifest_digest]
        if fetched.index_digest:
            digests.append(fetched.index_digest)
        layer_rows = [
            {
                "chain_id": layer.chain_id,
                "diff_id": layer.diff_id,
                "parent": layer.parent_chain_id,
                "compressed_digest": layer.descriptor.digest,
                "compressed_size": layer.descriptor.size,
                "size": sizes.get(layer.chain_id),
                "media_type": layer.descriptor.media_type,
            }
            for layer in fetched.layers
        ]
        image_id, new = self.store.commit_image(
            config=fetched.config,
            manifest=fetched.manifest,
            manifest_digest=fetched.manifest_digest,
            digests=digests,
            # A digest-only pull leaves the image unnamed; remember its repository (podman
            # keeps `repo@digest` as a name) for RepoDigests and `podpy images`.
            repo_name=None if name else fetched.reference.name,
            name=name or None,
            layers=layer_rows,
        )
        return PullResult(image_id, name, new)

    def pull_reference(self, ref: Reference) -> PullResult:
        self.progress.message(f"Trying to pull {ref}...")
        fetched = self.fetch_metadata(ref)
        self.progress.message("Getting image source signatures")
        self.download_layers(fetched)
        self.progress.blob_start(fetched.config.digest, len(fetched.config.raw), "config")
        self.progress.blob_done(fetched.config.digest)
        sizes = self.unpack_layers(fetched)
        result = self.record(fetched, sizes)
        self.progress.message("Storing signatures")
        return result

    def _repair(self) -> None:
        """Drop blob temporaries of pulls that were killed (layer temps: see ImageStore.unpack)."""
        from podpy.atomic import repair_temporaries

        for path in repair_temporaries(self.store.blobs.root, max_depth=1):
            log.debug(f"removed the leftover temporary {path}")

    def pull(self, text: str) -> PullResult:
        """Pull `text`; short names try aliases, then each search registry in order."""
        candidates = self.candidates(text)
        with self.store.lock(exclusive=False):
            self._repair()
            return self._pull_candidates(text, candidates)

    def _pull_candidates(self, text: str, candidates: List[Reference]) -> PullResult:
        failures: List[Tuple[Reference, PodpyError]] = []
        for candidate in candidates:
            try:
                return self.pull_reference(candidate)
            except (NotFound, Unauthorized) as err:
                if len(candidates) == 1:
                    raise
                failures.append((candidate, err))
            except RegistryError as err:
                if len(candidates) == 1:
                    raise
                failures.append((candidate, err))
            except PodpyError as err:
                # Connection-level failures of one search registry should not stop the
                # next; content errors (digest, unsafe layer) must.
                if len(candidates) == 1 or not err.message.startswith("pinging container registry"):
                    raise
                failures.append((candidate, err))
        details = "; ".join(f"{ref}: {err.message}" for ref, err in failures)
        raise PodpyError(
            f"{len(failures)} errors occurred while pulling {text}: {details}",
            hint="use a fully qualified name (host/path:tag) or check unqualified-search-registries",
        )
