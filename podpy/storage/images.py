"""Image store: image records, names and layer rows in the state DB, plus their blobs and layer dirs.

Layer directories hold files owned by sub-uids, so unpacking and removal run as root of the
user namespace (podpy.rootless.run_in_userns); DB work happens in this process, in short
transactions, never across that slow work.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from podpy.errors import NoSuchObject, PodpyError
from podpy.image import reference as refs
from podpy.record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:  # imported on first use: `podpy run` of a local image needs neither
    from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

    from podpy.image import manifest as mf
    from podpy.storage.blobs import BlobStore
    from podpy.storage.layers import LayerStore

IMAGE_UNKNOWN = "image not known"
# Unreferenced layer dirs/blobs younger than this may belong to a pull still running.
ORPHAN_GRACE_SECONDS = 600.0


@record
class ImageRecord:
    """One local image, decoded from its `images` row."""

    id: str
    digest: str
    names: List[str]
    manifest: Dict[str, Any]
    config: Dict[str, Any]
    created: float
    added: float
    size: int
    top_layer: Optional[str]
    metadata: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Dict[str, Any]) -> ImageRecord:
        return cls(
            id=row["id"],
            digest=row.get("digest") or "",
            names=list(row.get("names") or []),
            manifest=row.get("manifest") or {},
            config=row.get("config") or {},
            created=float(row.get("created") or 0),
            added=float(row.get("added") or 0),
            size=int(row.get("size") or 0),
            top_layer=row.get("top_layer"),
            metadata=row.get("metadata") or {},
        )

    @property
    def digests(self) -> List[str]:
        return list(self.metadata.get("digests") or ([self.digest] if self.digest else []))

    @property
    def repo_digests(self) -> List[str]:
        """`repo@digest` for every repository this image is known under (podman's RepoDigests)."""
        repos: List[str] = []
        for name in self.names + list(self.metadata.get("repos") or []):
            repo = refs.split_name(name)[0]
            if repo not in repos:
                repos.append(repo)
        return [f"{repo}@{d}" for repo in repos for d in self.digests]

    @property
    def dangling(self) -> bool:
        return not self.names

    @property
    def labels(self) -> Dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    @property
    def layer_chain(self) -> List[str]:
        return list(self.metadata.get("layers") or [])


def parse_created(value: Any) -> float:
    """RFC 3339 (`2023-05-18T22:34:17.453049914Z`) -> Unix seconds; 0 when absent/invalid."""
    if not isinstance(value, str) or not value:
        return 0.0
    import datetime

    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, tz = text, ""
    for sep in ("+", "-"):
        pos = text.rfind(sep)
        if pos > 10:
            main, tz = text[:pos], text[pos:]
            break
    if "." in main:
        head, frac = main.split(".", 1)
        main = f"{head}.{frac[:6].ljust(6, '0')}"  # 3.9's fromisoformat wants 3 or 6 digits
    try:
        stamp = datetime.datetime.fromisoformat(main + tz)
    except ValueError:
        return 0.0
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


class ImageStore:
    """Local images of one Engine (its paths, DB and rootless setting)."""

    def __init__(self, engine: Any):
        self.engine = engine
        paths = engine.paths
        self.paths = paths
        self._blobs: Optional[BlobStore] = None
        self._layers: Optional[LayerStore] = None

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            from podpy.storage.blobs import BlobStore

            self._blobs = BlobStore(self.paths.blobs_dir)
        return self._blobs

    @property
    def layers(self) -> LayerStore:
        if self._layers is None:
            from podpy.storage.layers import LayerStore

            self._layers = LayerStore(self.paths.layers_dir)
        return self._layers

    @property
    def db(self) -> Any:
        return self.engine.db

    @contextlib.contextmanager
    def lock(self, exclusive: bool) -> Iterator[None]:
        """The store lock: pulls hold it shared (they run side by side), removals hold it
        exclusive, so a removal never deletes a layer a pull in flight has decided to reuse."""
        import fcntl

        os.makedirs(self.paths.graph_root, mode=0o700, exist_ok=True)
        fd = os.open(
            os.path.join(self.paths.graph_root, "images.lock"),
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
            0o600,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # --- reading ----------------------------------------------------------------------------

    def list(self) -> List[ImageRecord]:
        return [ImageRecord.from_row(r) for r in self.db.list("images", order_by="added DESC")]

    def get(self, image_id: str) -> Optional[ImageRecord]:
        row = self.db.get("images", image_id)
        return ImageRecord.from_row(row) if row else None

    def complete_layers(self) -> Set[str]:
        return {r["id"] for r in self.db.query("SELECT id FROM layers WHERE state = 'complete'")}

    def _search_registries(self) -> List[str]:
        try:
            return list(self.engine.config.registries.search_registries or [])
        except AttributeError:
            return []

    def find(self, text: str) -> Optional[ImageRecord]:
        """Resolve like podman: full ID, name (short names too), digest, then ID prefix."""
        bare = text[len("sha256:") :] if text.startswith("sha256:") else text
        if len(bare) == 64 and refs.is_id_like(bare):
            found = self.get(bare)
            if found:
                return found
        try:
            ref = refs.parse(text)
        except refs.ReferenceError:
            ref = None
        if ref is not None:
            found = self._find_by_name(ref)
            if found:
                return found
        if refs.is_id_like(text):
            rows = self.db.query("SELECT id FROM images WHERE id GLOB ? LIMIT 2", (bare + "*",))
            if len(rows) > 1:
                raise PodpyError(
                    f'more than one image matches the ID prefix "{text}"',
                    hint="use more characters of the ID, or the name",
                )
            if rows:
                return self.get(rows[0]["id"])
        return None

    def _find_by_name(self, ref: refs.Reference) -> Optional[ImageRecord]:
        if ref.digest:
            for image in self.list():
                if ref.digest not in image.digests:
                    continue
                repos = [refs.split_name(n)[0] for n in image.names] + list(
                    image.metadata.get("repos") or []
                )
                if ref.is_short and any(_repo_matches_short(r, ref.path) for r in repos):
                    return image
                if not ref.is_short and ref.name in repos:
                    return image
            return None
        tagged = ref.with_default_tag()
        for candidate in refs.local_name_candidates(tagged, self._search_registries()):
            rows = self.db.query(
                "SELECT image_id FROM image_names WHERE name = ?", (candidate.tagged_name,)
            )
            if rows:
                return self.get(rows[0]["image_id"])
        if tagged.is_short:
            # podman matches a short name against any repository ending in /NAME.
            tag = tagged.tag or refs.DEFAULT_TAG
            for row in self.db.query("SELECT name, image_id FROM image_names ORDER BY name"):
                repo, name_tag = refs.split_name(row["name"])
                if name_tag == tag and _repo_matches_short(repo, tagged.path):
                    return self.get(row["image_id"])
        return None

    def lookup(self, text: str) -> ImageRecord:
        found = self.find(text)
        if found is None:
            raise NoSuchObject(f"{text}: {IMAGE_UNKNOWN}")
        return found

    def containers_using(self, image_id: str) -> List[Dict[str, Any]]:
        return self.db.query("SELECT id, name FROM containers WHERE image_id = ?", (image_id,))

    def layer_rows(self, image: ImageRecord) -> List[Dict[str, Any]]:
        """Layer rows of `image`, base first."""
        out = []
        for chain_hex in image.layer_chain:
            row = self.db.get("layers", chain_hex)
            if row:
                out.append(row)
        return out

    def layer_dirs(self, image: ImageRecord) -> List[str]:
        """The unpacked `diff` dirs of `image`, base first (for overlay lowerdir / vfs copy).

        LayerStore.diff_dir's layout, spelled out so that `run` of a local image does not
        import the layer unpacker (gzip, shutil, hashlib); tests/unit/test_layers.py checks
        the two agree."""
        root = self.paths.layers_dir
        return [os.path.join(root, h.split(":", 1)[-1], "diff") for h in image.layer_chain]

    # --- unpacking (user namespace) ------------------------------------------------------------

    def unpack(self, jobs: Sequence[Dict[str, str]], parallel: int = 0) -> Dict[str, int]:
        """Unpack blobs into layer dirs as root of the user namespace; chain id -> size.

        Layers are independent directories, so several unpack at once (forked workers,
        `parallel` or one per CPU up to MAX_UNPACK_WORKERS).
        """
        from podpy import rootless
        from podpy.atomic import temp_sibling

        os.makedirs(self.paths.layers_dir, mode=0o700, exist_ok=True)
        result_path = temp_sibling(os.path.join(self.paths.layers_dir, "unpack-result"))
        rootless_store = self.paths.rootless
        layer_store = self.layers
        workers = parallel or min(os.cpu_count() or 1, MAX_UNPACK_WORKERS)

        def work() -> int:
            from podpy.atomic import repair_temporaries

            repair_temporaries(layer_store.root, max_depth=1)
            results: Dict[str, Any] = {}
            todo = []
            for job in jobs:
                if layer_store.exists(job["chain_id"]):
                    results[job["chain_id"]] = tree_size(layer_store.diff_dir(job["chain_id"]))
                else:
                    todo.append(job)
            if len(todo) <= 1 or workers <= 1:
                for job in todo:
                    outcome = _unpack_job(layer_store, job, rootless_store)
                    if "error" in outcome:
                        results = {"__error__": outcome["error"], "__hint__": outcome["hint"]}
                        break
                    results[job["chain_id"]] = outcome["size"]
            else:
                results.update(
                    _unpack_in_workers(layer_store, todo, rootless_store, workers, result_path)
                )
            with open(result_path, "w") as f:
                json.dump(results, f)
            return 1 if "__error__" in results else 0

        try:
            code = rootless.run_in_userns(work)
            try:
                with open(result_path) as f:
                    results = json.load(f)
            except (OSError, ValueError):
                raise PodpyError(
                    f"unpacking layers failed (exit status {code}) without a report"
                ) from None
        finally:
            try:
                os.unlink(result_path)
            except OSError:
                pass
        if "__error__" in results:
            raise PodpyError(results["__error__"], hint=results.get("__hint__") or None)
        return {k: int(v) for k, v in results.items()}

    def orphans(self, grace_seconds: Optional[float] = None) -> Tuple[List[str], List[str]]:
        """(layer hexes, blob digests) on disk that no record references, left by killed
        pulls. Entries younger than the grace period may belong to a pull in flight."""
        known_layers = {r["id"] for r in self.db.query("SELECT id FROM layers")}
        used_blobs: Set[str] = set()
        for row in self.db.query("SELECT id, metadata_json FROM images"):
            used_blobs.add("sha256:" + row["id"])
            used_blobs.update((row.get("metadata") or {}).get("digests") or [])
        for row in self.db.query("SELECT compressed_digest FROM layers"):
            if row["compressed_digest"]:
                used_blobs.add(row["compressed_digest"])
        grace = ORPHAN_GRACE_SECONDS if grace_seconds is None else grace_seconds
        cutoff = time.time() - grace

        def old(path: str) -> bool:
            try:
                return os.lstat(path).st_ctime < cutoff
            except OSError:
                return False

        layers = [
            c.split(":", 1)[1]
            for c in self.layers.chain_ids()
            if c.split(":", 1)[1] not in known_layers and old(self.layers.layer_dir(c))
        ]
        blobs = [d for d in self.blobs.digests() if d not in used_blobs and old(self.blobs.path(d))]
        return layers, blobs

    def remove_layer_dirs(self, chain_hexes: Iterable[str]) -> None:
        """Delete layer dirs (hidden by a rename first, so a crash never leaves a half layer)."""
        from podpy import rootless

        targets = [self.layers.layer_dir(h) for h in chain_hexes]
        targets = [t for t in targets if os.path.lexists(t)]
        if not targets:
            return

        def work() -> int:
            from podpy.atomic import remove_tree, temp_sibling

            for target in targets:
                hidden = temp_sibling(target)
                try:
                    os.rename(target, hidden)
                except FileNotFoundError:
                    continue
                remove_tree(hidden)
            return 0

        code = rootless.run_in_userns(work)
        if code != 0:
            raise PodpyError(f"removing layer directories failed (exit status {code})")

    # --- writing ----------------------------------------------------------------------------

    def commit_image(
        self,
        config: mf.ImageConfig,
        manifest: Optional[mf.ImageManifest],
        manifest_digest: str,
        digests: List[str],
        repo_name: Optional[str],
        name: Optional[str],
        layers: List[Dict[str, Any]],
    ) -> Tuple[str, bool]:
        """Record layers (complete) and the image, and point `name` at it; (id, newly added)."""
        from podpy.image.manifest import OCI_MANIFEST

        image_id = config.digest.split(":", 1)[1]
        now = time.time()
        manifest_json = json.loads(manifest.raw) if manifest is not None else None

        def apply(conn: Any) -> bool:
            for layer in layers:
                chain_hex = layer["chain_id"].split(":", 1)[1]
                parent = layer["parent"].split(":", 1)[1] if layer.get("parent") else None
                existing = conn.execute(
                    "SELECT state, size FROM layers WHERE id = ?", (chain_hex,)
                ).fetchone()
                meta = json.dumps({"media_type": layer.get("media_type", "")}, sort_keys=True)
                if existing is None:
                    conn.execute(
                        "INSERT INTO layers (id, diff_id, parent_id, compressed_digest, "
                        "compressed_size, size, state, created, metadata_json) "
                        "VALUES (?, ?, ?, ?, ?, ?, 'complete', ?, ?)",
                        (
                            chain_hex,
                            layer["diff_id"],
                            parent,
                            layer.get("compressed_digest"),
                            layer.get("compressed_size"),
                            int(layer.get("size") or 0),
                            now,
                            meta,
                        ),
                    )
                elif existing[0] != "complete" or (layer.get("size") and not existing[1]):
                    conn.execute(
                        "UPDATE layers SET state = 'complete', size = ? WHERE id = ?",
                        (int(layer.get("size") or existing[1] or 0), chain_hex),
                    )
            chain = [layer["chain_id"].split(":", 1)[1] for layer in layers]
            sizes = (
                {
                    r[0]: r[1]
                    for r in conn.execute(
                        f"SELECT id, size FROM layers WHERE id IN ({','.join('?' * len(chain))})",
                        chain,
                    ).fetchall()
                }
                if chain
                else {}
            )
            total = sum(int(sizes.get(h) or 0) for h in chain)
            row = conn.execute(
                "SELECT metadata_json, names_json FROM images WHERE id = ?", (image_id,)
            ).fetchone()
            is_new = row is None
            if is_new:
                metadata = {
                    "digests": digests,
                    "repos": [repo_name] if repo_name else [],
                    "layers": chain,
                    "names_history": [],
                    "manifest_type": manifest.media_type if manifest else OCI_MANIFEST,
                }
                conn.execute(
                    "INSERT INTO images (id, digest, names_json, manifest_json, config_json, "
                    "created, added, size, top_layer, metadata_json) "
                    "VALUES (?, ?, '[]', ?, ?, ?, ?, ?, ?, ?)",
                    (
                        image_id,
                        manifest_digest,
                        json.dumps(manifest_json, sort_keys=True) if manifest_json else None,
                        json.dumps(config.data, sort_keys=True),
                        parse_created(config.data.get("created")),
                        now,
                        total,
                        chain[-1] if chain else None,
                        json.dumps(metadata, sort_keys=True),
                    ),
                )
            else:
                metadata = json.loads(row[0] or "{}")
                for d in digests:
                    if d not in metadata.setdefault("digests", []):
                        metadata["digests"].append(d)
                if repo_name and repo_name not in metadata.setdefault("repos", []):
                    metadata["repos"].append(repo_name)
                conn.execute(
                    "UPDATE images SET metadata_json = ?, digest = ? WHERE id = ?",
                    (json.dumps(metadata, sort_keys=True), manifest_digest, image_id),
                )
            if name:
                self._move_name(conn, name, image_id)
            return is_new

        new = self.db.run_transaction(apply)
        return image_id, new

    @staticmethod
    def _set_names(conn: Any, image_id: str, names: List[str], history_add: Optional[str]) -> None:
        row = conn.execute("SELECT metadata_json FROM images WHERE id = ?", (image_id,)).fetchone()
        metadata = json.loads(row[0] or "{}") if row else {}
        if history_add:
            history = [h for h in metadata.get("names_history", []) if h != history_add]
            metadata["names_history"] = [history_add] + history
        conn.execute(
            "UPDATE images SET names_json = ?, metadata_json = ? WHERE id = ?",
            (json.dumps(names), json.dumps(metadata, sort_keys=True), image_id),
        )

    def _names_of(self, conn: Any, image_id: str) -> List[str]:
        row = conn.execute("SELECT names_json FROM images WHERE id = ?", (image_id,)).fetchone()
        return list(json.loads(row[0] or "[]")) if row else []

    def _move_name(self, conn: Any, name: str, image_id: str) -> None:
        owner = conn.execute("SELECT image_id FROM image_names WHERE name = ?", (name,)).fetchone()
        if owner and owner[0] == image_id:
            return
        if owner:
            old_names = [n for n in self._names_of(conn, owner[0]) if n != name]
            self._set_names(conn, owner[0], old_names, None)
            conn.execute("DELETE FROM image_names WHERE name = ?", (name,))
        conn.execute("INSERT INTO image_names (name, image_id) VALUES (?, ?)", (name, image_id))
        names = [n for n in self._names_of(conn, image_id) if n != name] + [name]
        self._set_names(conn, image_id, names, name)

    def add_name(self, image_id: str, name: str) -> None:
        self.db.run_transaction(lambda conn: self._move_name(conn, name, image_id))

    def remove_name(self, image_id: str, name: str) -> bool:
        def apply(conn: Any) -> bool:
            cursor = conn.execute(
                "DELETE FROM image_names WHERE name = ? AND image_id = ?", (name, image_id)
            )
            if cursor.rowcount == 0:
                return False
            names = [n for n in self._names_of(conn, image_id) if n != name]
            self._set_names(conn, image_id, names, None)
            return True

        return bool(self.db.run_transaction(apply))

    def delete_image(self, image_id: str) -> Tuple[List[str], List[str]]:
        """Drop the image's rows and its now-unused layer rows; returns (layer hexes, blob digests)
        that nothing else references, for the caller to remove from disk afterwards."""

        def apply(conn: Any) -> Tuple[List[str], List[str]]:
            row = conn.execute(
                "SELECT metadata_json, digest, config_json FROM images WHERE id = ?", (image_id,)
            ).fetchone()
            if row is None:
                return [], []
            metadata = json.loads(row[0] or "{}")
            conn.execute("DELETE FROM image_names WHERE image_id = ?", (image_id,))
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
            still_used: Set[str] = set()
            used_blobs: Set[str] = set()
            for other_meta, _other_digest, other_id in conn.execute(
                "SELECT metadata_json, digest, id FROM images"
            ).fetchall():
                other = json.loads(other_meta or "{}")
                still_used.update(other.get("layers") or [])
                used_blobs.update(other.get("digests") or [])
                used_blobs.update(other.get("blobs") or [])
                used_blobs.add("sha256:" + other_id)
            mine = list(metadata.get("layers") or [])
            removable = [h for h in reversed(mine) if h not in still_used]
            blobs: List[str] = []
            for chain_hex in removable:
                layer = conn.execute(
                    "SELECT compressed_digest FROM layers WHERE id = ?", (chain_hex,)
                ).fetchone()
                conn.execute("DELETE FROM layers WHERE id = ?", (chain_hex,))
                if layer and layer[0]:
                    blobs.append(layer[0])
            for chain_hex in still_used:
                layer = conn.execute(
                    "SELECT compressed_digest FROM layers WHERE id = ?", (chain_hex,)
                ).fetchone()
                if layer and layer[0]:
                    used_blobs.add(layer[0])
            blobs.extend(metadata.get("digests") or [])
            blobs.append("sha256:" + image_id)
            return removable, [b for b in dict.fromkeys(blobs) if b not in used_blobs]

        return self.db.run_transaction(apply)


MAX_UNPACK_WORKERS = 4


def _unpack_job(layer_store: LayerStore, job: Dict[str, str], rootless: bool) -> Dict[str, Any]:
    """Unpack one layer into a temp dir and rename it into place; {"size"} or {"error","hint"}."""
    from podpy.storage.layers import unpack_into_temp

    chain_id = job["chain_id"]
    tmp = layer_store.new_temp_dir(chain_id)
    try:
        applied = unpack_into_temp(job["blob"], tmp, job["diff_id"], rootless)
        if not layer_store.commit(tmp, chain_id):
            _remove_quietly(tmp)  # another pull committed the same layer first
    except PodpyError as err:
        _remove_quietly(tmp)
        return {"error": err.message, "hint": err.hint or ""}
    except OSError as err:
        _remove_quietly(tmp)
        return {"error": f"unpacking layer {job['diff_id']}: {err}", "hint": ""}
    except BaseException:
        _remove_quietly(tmp)
        raise
    return {"size": applied.size}


def _unpack_in_workers(
    layer_store: LayerStore,
    todo: Sequence[Dict[str, str]],
    rootless: bool,
    workers: int,
    result_base: str,
) -> Dict[str, Any]:
    """Fork up to `workers` children, one layer each; stop starting new ones after a failure."""
    queue = list(todo)
    running: Dict[int, Tuple[Dict[str, str], str]] = {}
    results: Dict[str, Any] = {}
    failure: Optional[Dict[str, Any]] = None
    while queue or running:
        while queue and len(running) < workers and failure is None:
            job = queue.pop(0)
            out_path = f"{result_base}.{len(queue)}"
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    outcome = _unpack_job(layer_store, job, rootless)
                    with open(out_path, "w") as f:
                        json.dump(outcome, f)
                    code = 0 if "size" in outcome else 1
                finally:
                    os._exit(code)
            running[pid] = (job, out_path)
        if not running:
            break
        pid, _status = os.wait()
        if pid not in running:
            continue
        job, out_path = running.pop(pid)
        try:
            with open(out_path) as f:
                outcome = json.load(f)
            os.unlink(out_path)
        except (OSError, ValueError):
            outcome = {"error": f"unpacking layer {job['diff_id']} failed", "hint": ""}
        if "size" in outcome:
            results[job["chain_id"]] = outcome["size"]
        elif failure is None:
            failure = outcome
    if failure is not None:
        return {"__error__": failure["error"], "__hint__": failure.get("hint", "")}
    return results


def _repo_matches_short(repo: str, short_path: str) -> bool:
    return repo == short_path or repo.endswith("/" + short_path)


def tree_size(path: str) -> int:
    """Bytes in the regular files under `path` (as stored, unreadable entries skipped)."""
    total = 0
    for current, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(current, name)).st_size
            except OSError:
                pass
    return total


def _remove_quietly(path: str) -> None:
    from podpy.atomic import remove_tree

    try:
        remove_tree(path)
    except OSError:
        pass
