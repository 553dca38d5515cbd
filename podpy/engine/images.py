"""Image verbs behind the Engine: pull, list, remove, tag, untag, inspect, exists, history, prune.

For other verbs (run/create, build, save/load, push):
  store(eng)                         -> ImageStore (records, blobs, layer dirs of this Engine)
  store(eng).lookup(ref)             -> ImageRecord by name/short name/ID/digest (NoSuchObject)
  store(eng).layer_dirs(image)       -> unpacked overlay-format layer dirs, base first
  pull(eng, ref, PullOptions(), progress) / pull_if_missing(...)
  podpy.storage.layers.materialize(layer_dirs, dest, rootless)   (vfs-style flat copy)
"""

from __future__ import annotations

import fnmatch
import os
import time

from podpy.errors import NoSuchObject, PodpyError
from podpy.image import reference as refs
from podpy.record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    from podpy.engine import Engine
    from podpy.image.pull import PullOptions, PullProgress, PullResult
    from podpy.storage.images import ImageRecord, ImageStore

# podman rmi exit codes (cmd/podman/images/rm.go): 1 = no such image, 2 = image in use.
EXIT_NO_SUCH_IMAGE = 1
EXIT_IMAGE_IN_USE = 2


def store(eng: Engine) -> ImageStore:
    from podpy.storage.images import ImageStore

    if "image_store" not in eng._cache:
        eng._cache["image_store"] = ImageStore(eng)
    return eng._cache["image_store"]


# --- pull ---------------------------------------------------------------------------------


def pull(
    eng: Engine, reference: str, options: PullOptions, progress: Optional[PullProgress] = None
) -> PullResult:
    from podpy.image.pull import Puller

    return Puller(eng, options, progress).pull(reference)


def pull_if_missing(
    eng: Engine, reference: str, options: PullOptions, progress: Optional[PullProgress] = None
) -> ImageRecord:
    """`run`/`create`'s default policy: use the local image, pull only when absent."""
    found = store(eng).find(reference)
    if found is not None:
        return found
    result = pull(eng, reference, options, progress)
    return store(eng).lookup(result.image_id)


# --- list ---------------------------------------------------------------------------------


@record
class ImageRow:
    """One line of `podpy images` (an image appears once per name)."""

    Repository: str
    Tag: str
    ID: str
    Id: str
    Digest: str
    Created: str
    CreatedAt: str
    CreatedSince: str
    Size: str
    VirtualSize: str
    SharedSize: str
    Names: List[str]
    Labels: Dict[str, str]
    Dangling: bool
    Containers: int
    ReadOnly: bool = False
    History: List[str] = field(default_factory=list)

    @property
    def IsReadOnly(self) -> bool:  # noqa: N802 - podman's template name
        return self.ReadOnly


def _parse_filters(filters: Sequence[str]) -> List[Tuple[str, str]]:
    out = []
    for item in filters:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise PodpyError(
                f'invalid image filter "{item}"', hint="filters are KEY=VALUE, e.g. dangling=true"
            )
        if key not in (
            "reference",
            "dangling",
            "label",
            "before",
            "since",
            "id",
            "digest",
            "intermediate",
            "readonly",
        ):
            raise PodpyError(
                f'unsupported image filter "{key}"',
                hint="supported: reference, dangling, label, before, since, id, digest",
            )
        out.append((key, value))
    return out


def _truthy(value: str, key: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise PodpyError(f'invalid filter value "{value}" for {key}: use true or false')


def name_matches(pattern: str, name: str) -> bool:
    """Does `name` (repo:tag) match a reference filter such as `busybox`, `*/app:v*`?"""
    repo, tag = refs.split_name(name)
    candidates = [name, repo]
    # The familiar short forms match too (busybox, library/busybox:latest).
    parts = repo.split("/")
    for i in range(1, len(parts)):
        short = "/".join(parts[i:])
        candidates += [short, f"{short}:{tag}"]
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)


def _reference_matches(pattern: str, image: ImageRecord) -> bool:
    return any(name_matches(pattern, name) for name in image.names)


def reference_patterns(filters: Sequence[str]) -> List[str]:
    return [v for k, v in _parse_filters(filters) if k == "reference"]


def _matches(image: ImageRecord, filters: List[Tuple[str, str]], st: ImageStore) -> bool:
    by_key: Dict[str, List[str]] = {}
    for key, value in filters:
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():
        if key == "reference":
            if not any(_reference_matches(v, image) for v in values):
                return False
        elif key == "dangling":
            if any(image.dangling != _truthy(v, key) for v in values):
                return False
        elif key == "label":
            for v in values:
                lkey, sep, lval = v.partition("=")
                labels = image.labels
                if lkey not in labels or (sep and labels[lkey] != lval):
                    return False
        elif key in ("before", "since"):
            for v in values:
                other = st.lookup(v)
                if key == "before" and not image.created < other.created:
                    return False
                if key == "since" and not image.created > other.created:
                    return False
        elif key == "id":
            if not any(image.id.startswith(v.replace("sha256:", "")) for v in values):
                return False
        elif key == "digest":
            if not any(v in image.digests for v in values):
                return False
        elif key == "intermediate":
            if any(_truthy(v, key) for v in values):
                return False  # pulled images are never intermediate
        elif key == "readonly":
            if any(_truthy(v, key) for v in values):
                return False
    return True


def list_images(
    eng: Engine, all_images: bool = False, filters: Sequence[str] = ()
) -> List[ImageRecord]:
    """Images matching `filters`, newest first (all_images also shows intermediates; podpy
    stores none, so it changes nothing yet)."""
    st = store(eng)
    parsed = _parse_filters(filters)
    images = st.list()
    images.sort(key=lambda i: (i.created, i.added), reverse=True)
    return [i for i in images if _matches(i, parsed, st)]


def image_rows(
    eng: Engine,
    images: Sequence[ImageRecord],
    no_trunc: bool = False,
    reference_filters: Sequence[str] = (),
) -> List[ImageRow]:
    """Table rows; with reference filters only the matching names get a row (as docker)."""
    from podpy.output import format_ago, format_size

    st = store(eng)
    rows: List[ImageRow] = []
    for image in images:
        containers = len(st.containers_using(image.id))
        names = image.names or [""]
        if reference_filters and image.names:
            names = [n for n in names if any(name_matches(p, n) for p in reference_filters)]
        for name in names:
            if name:
                repo, tag = refs.split_name(name)
            else:
                # Pulled by digest only: podman shows the repository with a <none> tag.
                repos = list(image.metadata.get("repos") or [])
                repo, tag = (repos[0] if repos else "<none>"), "<none>"
            created_at = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(image.created))
            rows.append(
                ImageRow(
                    Repository=repo,
                    Tag=tag,
                    ID=("sha256:" + image.id) if no_trunc else image.id[:12],
                    Id=image.id,
                    Digest=image.digest,
                    Created=format_ago(image.created) if image.created else "<unknown>",
                    CreatedAt=created_at,
                    CreatedSince=format_ago(image.created) if image.created else "<unknown>",
                    Size=format_size(image.size),
                    VirtualSize=format_size(image.size),
                    SharedSize="0 B",
                    Names=list(image.names),
                    Labels=image.labels,
                    Dangling=image.dangling,
                    Containers=containers,
                    History=list(image.metadata.get("names_history") or []),
                )
            )
    return rows


def image_json(eng: Engine, image: ImageRecord) -> Dict[str, Any]:
    """`podman images --format json` shape (one object per image)."""
    st = store(eng)
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": list(image.names) or None,
        "RepoDigests": image.repo_digests,
        "Size": image.size,
        "SharedSize": 0,
        "VirtualSize": image.size,
        "Labels": image.labels or None,
        "Containers": len(st.containers_using(image.id)),
        "Names": list(image.names) or None,
        "Digest": image.digest,
        "History": list(image.metadata.get("names_history") or []) or None,
        "Created": int(image.created),
        "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(image.created)),
    }


# --- inspect / exists / history --------------------------------------------------------------


def _graph_driver(eng: Engine, st: ImageStore, image: ImageRecord) -> Dict[str, Any]:
    name = "overlay"
    try:
        from podpy.hostinfo import choose_storage_driver, probe_storage

        name = choose_storage_driver(eng.config, probe_storage())[0]
    except Exception:  # hostinfo's probes are best effort here
        name = "overlay"
    dirs = st.layer_dirs(image)
    data: Dict[str, str] = {}
    if dirs:
        data["UpperDir"] = dirs[-1]
        if len(dirs) > 1:
            data["LowerDir"] = ":".join(reversed(dirs[:-1]))
    return {"Name": name, "Data": data}


def inspect(eng: Engine, reference: str) -> Dict[str, Any]:
    """`podman image inspect` JSON for one local image."""
    st = store(eng)
    image = st.lookup(reference)
    config = image.config
    container_config = dict(config.get("config") or {})
    history = list(config.get("history") or [])
    return {
        "Id": image.id,
        "Digest": image.digest,
        "RepoTags": list(image.names),
        "RepoDigests": image.repo_digests,
        "Parent": "",
        "Comment": config.get("comment", "") or (history[-1].get("comment", "") if history else ""),
        "Created": config.get("created", ""),
        "Config": container_config,
        "Version": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Architecture": config.get("architecture", ""),
        "Os": config.get("os", ""),
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": _graph_driver(eng, st, image),
        "RootFS": {
            "Type": (config.get("rootfs") or {}).get("type", "layers"),
            "Layers": list((config.get("rootfs") or {}).get("diff_ids") or []),
        },
        "Labels": container_config.get("Labels") or None,
        "Annotations": dict((image.manifest or {}).get("annotations") or {}),
        "ManifestType": image.metadata.get("manifest_type", ""),
        "User": container_config.get("User", ""),
        "History": history,
        "NamesHistory": list(image.metadata.get("names_history") or []),
    }


def exists(eng: Engine, reference: str) -> bool:
    """`image exists`: False when absent; an invalid reference raises (podman exits 125)."""
    if store(eng).find(reference) is not None:
        return True
    if not refs.is_id_like(reference):
        refs.parse(reference)  # raises the ReferenceError podman reports for a bad name
    return False


@record
class HistoryRow:
    ID: str
    Created: str
    CreatedAt: str
    CreatedSince: str
    CreatedBy: str
    Size: str
    Comment: str
    Tags: List[str]


def history(
    eng: Engine, reference: str, no_trunc: bool = False, human: bool = True
) -> List[Dict[str, Any]]:
    """`podman history`: newest first; the top entry carries the image ID, others `<missing>`."""
    from podpy.output import format_ago, format_size
    from podpy.storage.images import parse_created

    st = store(eng)
    image = st.lookup(reference)
    layer_rows = st.layer_rows(image)
    sizes = [int(r.get("size") or 0) for r in layer_rows]
    entries = list(image.config.get("history") or [])
    if not entries:
        entries = [{"created": image.config.get("created", "")} for _ in sizes] or [{}]
    out: List[Dict[str, Any]] = []
    layer_index = 0
    for entry in entries:
        size = 0
        if not entry.get("empty_layer"):
            size = sizes[layer_index] if layer_index < len(sizes) else 0
            layer_index += 1
        created = parse_created(entry.get("created"))
        created_by = entry.get("created_by", "")
        out.append(
            {
                "id": "<missing>",
                "created": created,
                "created_by": created_by,
                "size": size,
                "comment": entry.get("comment", ""),
                "tags": None,
                "human_created": format_ago(created) if created else "<unknown>",
                "human_size": format_size(size),
            }
        )
    out.reverse()
    if out:
        out[0]["id"] = image.id
        out[0]["tags"] = list(image.names) or None
    rows = []
    for item in out:
        created_by = item["created_by"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        item_id = item["id"]
        if item_id != "<missing>" and not no_trunc:
            item_id = item_id[:12]
        rows.append(
            {
                "ID": item_id,
                "Id": item["id"],
                "Created": item["human_created"]
                if human
                else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item["created"])),
                "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item["created"])),
                "CreatedSince": item["human_created"],
                "CreatedBy": created_by,
                "Size": item["human_size"] if human else str(item["size"]),
                "size": item["size"],
                "Comment": item["comment"],
                "Tags": item["tags"],
                "created": int(item["created"]),
                "createdBy": item["created_by"],
                "comment": item["comment"],
                "id": item["id"],
                "tags": item["tags"],
            }
        )
    return rows


# --- tag / untag ------------------------------------------------------------------------------


def tag(eng: Engine, source: str, targets: Sequence[str]) -> str:
    st = store(eng)
    image = st.lookup(source)
    names = [refs.parse_local_name(t).tagged_name for t in targets]
    for name in names:
        st.add_name(image.id, name)
    return image.id


def untag(eng: Engine, source: str, targets: Sequence[str]) -> List[str]:
    """Remove the given names (all names when none given); returns what was removed."""
    st = store(eng)
    image = st.lookup(source)
    if not targets:
        removed = list(image.names)
        for name in removed:
            st.remove_name(image.id, name)
        return removed
    removed = []
    for target in targets:
        ref = refs.parse(target).with_default_tag()
        candidates = [
            c.tagged_name for c in refs.local_name_candidates(ref, st._search_registries())
        ]
        if ref.is_short:
            candidates += [
                n
                for n in image.names
                if refs.split_name(n)[1] == ref.tag
                and refs.split_name(n)[0].endswith("/" + ref.path)
            ]
        for name in candidates:
            if name in image.names and st.remove_name(image.id, name):
                removed.append(name)
                break
        else:
            raise NoSuchObject(
                f"{target}: tag not known",
                hint=f"the image has: {', '.join(image.names) or 'no names'}",
            )
    return removed


# --- remove / prune ---------------------------------------------------------------------------


@record
class RemoveReport:
    untagged: List[str] = field(default_factory=list)
    deleted: List[str] = field(default_factory=list)
    errors: List[PodpyError] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if not self.errors:
            return 0
        codes = {e.exit_code for e in self.errors}
        if len(codes) == 1:
            return codes.pop()
        return 125


def _delete_image(eng: Engine, image: ImageRecord, report: RemoveReport) -> None:
    st = store(eng)
    report.untagged.extend(image.names)
    layers, blobs = st.delete_image(image.id)
    st.remove_layer_dirs(layers)
    for digest in blobs:
        st.blobs.remove(digest)
    report.deleted.append(image.id)


def _remove_containers(eng: Engine, containers: List[Dict[str, Any]]) -> None:
    """`rmi -f`: remove (killing if needed) the containers that use the image, as podman."""
    from podpy.engine import containers as container_engine

    for container in containers:
        container_engine.remove(eng, container["id"], force=True)


def remove(
    eng: Engine,
    references: Sequence[str],
    force: bool = False,
    all_images: bool = False,
    ignore: bool = False,
) -> RemoveReport:
    """`podman rmi`: untag by name; delete when no names remain (or by ID, or -f)."""
    with store(eng).lock(exclusive=True):
        return _remove_locked(eng, references, force, all_images, ignore)


def _remove_locked(
    eng: Engine, references: Sequence[str], force: bool, all_images: bool, ignore: bool
) -> RemoveReport:
    st = store(eng)
    report = RemoveReport()
    if all_images:
        targets: List[Tuple[str, Optional[ImageRecord]]] = [(i.id, i) for i in st.list()]
    else:
        targets = []
        for text in references:
            try:
                targets.append((text, st.lookup(text)))
            except NoSuchObject as err:
                if not ignore:
                    report.errors.append(NoSuchObject(err.message, exit_code=EXIT_NO_SUCH_IMAGE))
            except PodpyError as err:
                report.errors.append(err)
    done = set()
    for text, image in targets:
        if image is None or image.id in done:
            continue
        image = st.get(image.id)
        if image is None:
            continue
        try:
            containers = st.containers_using(image.id)
            by_name = not all_images and not _is_id_reference(text, image)
            # As podman: a name of a multi-name image is only untagged, even with --force.
            if by_name and len(image.names) > 1:
                name = _resolve_name(st, text, image)
                st.remove_name(image.id, name)
                report.untagged.append(name)
                continue
            if not by_name and len(image.names) > 1 and not force and not all_images:
                raise PodpyError(
                    f'unable to delete image "{image.id}" by ID with more than one tag '
                    f"([{' '.join(image.names)}]): please force removal",
                    exit_code=EXIT_PODPY_CONFLICT,
                )
            if containers:
                if not force:
                    ids = ", ".join(c["id"][:12] for c in containers)
                    raise PodpyError(
                        f"image used by {ids}: image is in use by a container",
                        hint="remove the container first, or use --force",
                        exit_code=EXIT_IMAGE_IN_USE,
                    )
                _remove_containers(eng, containers)
            _delete_image(eng, image, report)
            done.add(image.id)
        except PodpyError as err:
            report.errors.append(err)
    return report


EXIT_PODPY_CONFLICT = 125


def _is_id_reference(text: str, image: ImageRecord) -> bool:
    """True for an ID or digest reference (which removes the image, not one of its names)."""
    if "@" in text:
        return True
    bare = text[len("sha256:") :] if text.startswith("sha256:") else text
    return (
        refs.is_id_like(text)
        and image.id.startswith(bare)
        and not any(refs.split_name(n)[0].endswith("/" + text) for n in image.names)
    )


def _resolve_name(st: ImageStore, text: str, image: ImageRecord) -> str:
    ref = refs.parse(text).with_default_tag()
    for candidate in refs.local_name_candidates(ref, st._search_registries()):
        if candidate.tagged_name in image.names:
            return candidate.tagged_name
    for name in image.names:
        repo, tag = refs.split_name(name)
        if tag == ref.tag and (repo == ref.name or repo.endswith("/" + ref.path)):
            return name
    return image.names[0]


def prune(eng: Engine, all_images: bool = False, filters: Sequence[str] = ()) -> List[str]:
    """Remove dangling images (all unused ones with `all_images`); returns the deleted IDs."""
    with store(eng).lock(exclusive=True):
        return _prune_locked(eng, all_images, filters)


def _prune_locked(eng: Engine, all_images: bool, filters: Sequence[str]) -> List[str]:
    st = store(eng)
    report = RemoveReport()
    for image in list_images(eng, True, filters):
        if st.containers_using(image.id):
            continue
        if not all_images and not image.dangling:
            continue
        _delete_image(eng, image, report)
    # Also sweep what killed pulls left on disk without a record.
    from podpy import log

    orphan_layers, orphan_blobs = st.orphans()
    if orphan_layers:
        log.debug(f"removing {len(orphan_layers)} unreferenced layer directories")
        st.remove_layer_dirs(orphan_layers)
    for digest in orphan_blobs:
        st.blobs.remove(digest)
    return report.deleted


def repair(eng: Engine) -> List[str]:
    """Drop temporaries left by killed pulls (blob store; layer temps are removed on unpack)."""
    from podpy.atomic import repair_temporaries

    blobs_dir = eng.paths.blobs_dir
    return repair_temporaries(blobs_dir, max_depth=1) if os.path.isdir(blobs_dir) else []
