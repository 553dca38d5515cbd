"""Named and anonymous volumes: the store (`volume create|ls|inspect|rm|prune|exists`), `-v NAME:/dst`
resolution at container create, and the first-mount copy-up of image content (run by the monitor).

A volume is a row in the `volumes` table plus `Paths.volumes_dir/<name>/_data`. While a volume still
has to receive the image's content at its first mount, a marker file sits next to `_data` (podman's
NeedsCopyUp); the monitor, already root in the container's user namespace with the rootfs mounted,
copies and removes the marker, so ownership is kept rootless too. This module is imported by the
monitor: keep its top level to the stdlib.
"""

from __future__ import annotations

import os
import re
import stat
import time

from podpy.errors import AlreadyExists, InvalidState, NoSuchObject, PodpyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    from podpy.engine import Engine

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
COPY_UP_MARKER = "needs-copy-up"
DATA_DIR = "_data"
_MODE_WORDS = ("ro", "rw", "z", "Z", "U", "copy", "nocopy", "O", "exec", "noexec", "suid", "nosuid")


# --- the store ------------------------------------------------------------------------------


def _volume_dir(eng: Engine, name: str) -> str:
    return os.path.join(eng.paths.volumes_dir, name)


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise PodpyError(
            f"running volume create option: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: "
            f"invalid argument: {name!r}",
            hint="use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )


def _parse_options(options: Dict[str, str]) -> Tuple[Optional[int], Optional[int]]:
    """The local driver's `-o` options podpy honours: `o=uid=N,gid=N`; others are refused."""
    uid = gid = None
    for key, value in options.items():
        if key != "o":
            raise PodpyError(
                f"invalid volume option {key}={value}: only o=uid=N,gid=N is supported",
                hint="podpy's local driver keeps data in a plain directory (no device mounts)",
            )
        for word in [w for w in value.split(",") if w]:
            opt, _, number = word.partition("=")
            if opt not in ("uid", "gid") or not number.isdigit():
                raise PodpyError(
                    f"invalid volume option o={value}: unsupported {word!r}",
                    hint="supported: o=uid=N,gid=N",
                )
            if opt == "uid":
                uid = int(number)
            else:
                gid = int(number)
    return uid, gid


def _run_as_store_root(eng: Engine, work: Any) -> None:
    """Run work() where sub-uid owned files are ours: in the user namespace when rootless."""
    if eng.paths.rootless:
        from podpy import rootless

        code = rootless.run_in_userns(work)
        if code != 0:
            raise PodpyError(f"volume storage operation failed (exit status {code})")
    else:
        work()


def create(
    eng: Engine,
    name: Optional[str] = None,
    labels: Optional[Dict[str, str]] = None,
    options: Optional[Dict[str, str]] = None,
    anonymous: bool = False,
    ignore_existing: bool = False,
) -> Dict[str, Any]:
    """Create a volume (a random 64-hex name when none is given) and return its row."""
    options = dict(options or {})
    uid, gid = _parse_options(options)
    if name is None:
        name = os.urandom(32).hex()  # secrets.token_hex without importing secrets
    _check_name(name)
    existing = eng.db.get("volumes", name)
    if existing is not None:
        if ignore_existing:
            return existing
        raise AlreadyExists(
            f"volume with name {name} already exists: volume already exists",
            hint="choose another name, or reuse it with -v NAME:/path",
        )
    vdir = _volume_dir(eng, name)
    data = os.path.join(vdir, DATA_DIR)
    row = {
        "name": name,
        "driver": "local",
        "mountpoint": data,
        "created": time.time(),
        "config": {
            "labels": dict(labels or {}),
            "options": options,
            "anonymous": anonymous,
            "uid": uid,
            "gid": gid,
        },
        "state": {},
    }
    # The row claims the name first, so a concurrent creator never touches our directory.
    try:
        eng.db.insert("volumes", row)
    except AlreadyExists as err:
        found = eng.db.get("volumes", name) if ignore_existing else None
        if found is not None:
            return found
        raise AlreadyExists(
            f"volume with name {name} already exists: volume already exists"
        ) from err
    try:
        _make_volume_dir(eng, vdir, uid, gid)
    except BaseException:
        eng.db.delete("volumes", name)  # nothing half-made
        raise
    eng.db.add_event("volume", "create", name=name, object_id=name, attributes={})
    return eng.db.get("volumes", name) or row


def _make_volume_dir(eng: Engine, vdir: str, uid: Optional[int], gid: Optional[int]) -> None:
    data = os.path.join(vdir, DATA_DIR)
    os.makedirs(eng.paths.volumes_dir, mode=0o700, exist_ok=True)
    if os.path.lexists(vdir):
        _remove_volume_dir(eng, vdir)  # left by a crash: the row we just inserted is the owner
    os.mkdir(vdir, 0o700)
    os.mkdir(data, 0o755)
    os.chmod(data, 0o755)
    with open(os.path.join(vdir, COPY_UP_MARKER), "w"):
        pass
    if uid is not None or gid is not None:
        owner = (uid if uid is not None else -1, gid if gid is not None else -1)

        def chown() -> int:
            os.chown(data, *owner)
            return 0

        _run_as_store_root(eng, chown)


def lookup(eng: Engine, name: str) -> Dict[str, Any]:
    row = eng.db.get("volumes", name)
    if row is None:
        raise NoSuchObject(
            f'no volume with name "{name}" found: no such volume',
            hint="list volumes with `podpy volume ls`",
        )
    return row


def exists(eng: Engine, name: str) -> bool:
    return eng.db.get("volumes", name) is not None


def usage(eng: Engine) -> Dict[str, List[Dict[str, Any]]]:
    """Volume name -> the containers whose config mounts it (one pass over the containers)."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for row in eng.db.list("containers", order_by="created"):
        names = {v.get("name") for v in (row.get("config") or {}).get("volumes") or []}
        for name in names:
            out.setdefault(str(name), []).append(row)
    return out


def users(eng: Engine, name: str) -> List[Dict[str, Any]]:
    """Containers whose config mounts the volume."""
    return usage(eng).get(name, [])


def inspect(
    eng: Engine, name: str, used_by: Optional[Dict[str, List[Dict[str, Any]]]] = None
) -> Dict[str, Any]:
    """podman's `volume inspect` object (`used_by`: a usage() map, when listing many)."""
    from podpy.engine.containers import _iso

    row = lookup(eng, name)
    config = row.get("config") or {}
    data: Dict[str, Any] = {
        "Name": row["name"],
        "Driver": row["driver"],
        "Mountpoint": row["mountpoint"],
        "CreatedAt": _iso(row["created"]),
        "Labels": config.get("labels") or {},
        "Scope": "local",
        "Options": config.get("options") or {},
    }
    if config.get("uid") is not None:
        data["UID"] = config["uid"]
    if config.get("gid") is not None:
        data["GID"] = config["gid"]
    if config.get("anonymous"):
        data["Anonymous"] = True
    using = (used_by if used_by is not None else usage(eng)).get(row["name"], [])
    running = [c for c in using if c["status"] in ("running", "paused")]
    data["MountCount"] = len(running)
    data["NeedsCopyUp"] = os.path.exists(
        os.path.join(_volume_dir(eng, row["name"]), COPY_UP_MARKER)
    )
    data["NeedsChown"] = data["NeedsCopyUp"]
    data["LockNumber"] = 0
    return data


def _parse_filters(filters: Sequence[str]) -> List[Tuple[str, str]]:
    out = []
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or key not in ("name", "label", "driver", "dangling", "anonymous", "scope"):
            raise PodpyError(
                f'"{key}" is an invalid volume filter',
                hint="use name=, label=KEY[=VALUE], driver=, dangling=true|false, anonymous=",
            )
        out.append((key, value))
    return out


def _matches(
    row: Dict[str, Any], key: str, value: str, used_by: Dict[str, List[Dict[str, Any]]]
) -> bool:
    config = row.get("config") or {}
    if key == "name":
        return re.search(value, row["name"]) is not None
    if key == "driver":
        return row["driver"] == value
    if key == "scope":
        return value == "local"
    if key == "label":
        label, sep, want = value.partition("=")
        labels = config.get("labels") or {}
        return label in labels and (not sep or labels[label] == want)
    truth = value.lower() in ("true", "1")
    if value.lower() not in ("true", "false", "1", "0"):
        raise PodpyError(f"invalid {key} filter value {value!r}", hint="use true or false")
    if key == "anonymous":
        return bool(config.get("anonymous")) == truth
    return (row["name"] not in used_by) == truth  # dangling


def list_volumes(eng: Engine, filters: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """Inspect objects of the volumes matching every filter (same key: any value matches)."""
    parsed = _parse_filters(filters)
    # podman lists volumes sorted by name (its database's key order), not by creation.
    rows = sorted(eng.db.list("volumes"), key=lambda r: r["name"])
    used_by = usage(eng)
    keys = {k for k, _ in parsed}
    out = []
    for row in rows:
        if all(any(_matches(row, k, v, used_by) for kk, v in parsed if kk == k) for k in keys):
            out.append(inspect(eng, row["name"], used_by))
    return out


def _remove_volume_dir(eng: Engine, vdir: str) -> None:
    from podpy.atomic import remove_tree, temp_sibling

    if not os.path.lexists(vdir):
        return
    hidden = temp_sibling(vdir)
    os.rename(vdir, hidden)  # gone from view at once, even if deleting takes a while

    def work() -> int:
        remove_tree(hidden)
        return 0

    _run_as_store_root(eng, work)
    remove_tree(hidden)


def remove(eng: Engine, name: str, force: bool = False) -> str:
    """Remove a volume; one in use needs force, which removes its containers first (podman)."""
    row = lookup(eng, name)
    using = users(eng, name)
    if using and not force:
        raise InvalidState(
            f"volume {name} is being used by the following container(s): "
            f"{', '.join(c['id'] for c in using)}: volume is being used",
            hint="remove those containers first, or use `podpy volume rm -f`",
        )
    if using:
        from podpy.engine import containers

        for ctr in using:
            containers.remove(eng, ctr["id"], force=True)
    eng.db.delete("volumes", name)
    _remove_volume_dir(eng, _volume_dir(eng, name))
    eng.db.add_event("volume", "remove", name=name, object_id=name, attributes={})
    return row["name"]


def prune(eng: Engine, filters: Sequence[str] = ()) -> List[str]:
    """Remove every volume no container uses (matching the filters); their names."""
    removed = []
    used_by = usage(eng)
    for vol in list_volumes(eng, filters):
        if vol["Name"] not in used_by:
            removed.append(remove(eng, vol["Name"]))  # which checks again: never one in use
    return removed


# --- container create ------------------------------------------------------------------------


def is_named_source(source: str) -> bool:
    """podman's rule: a source that is not a path (absolute or ./relative) names a volume."""
    return not source.startswith(("/", "."))


def split_specs(specs: Sequence[str]) -> Tuple[List[str], List[str]]:
    """`-v` values -> (host bind specs with an absolute source, volume specs for attach())."""
    binds, named = [], []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) == 1 or (len(parts) == 2 and parts[1] and not parts[1].startswith("/")):
            # `-v /path` or `-v /path:ro`: an anonymous volume at /path.
            if not spec.startswith("/"):
                raise PodpyError(
                    f"invalid volume specification {spec!r}: a container path must be absolute",
                    hint="use -v NAME:/path, -v /host:/path or -v /path",
                )
            named.append(spec)
        elif is_named_source(parts[0]):
            named.append(spec)
        else:
            binds.append(os.path.abspath(parts[0]) + spec[len(parts[0]) :])
    return binds, named


def _parse_named(spec: str) -> Tuple[Optional[str], str, List[str]]:
    parts = spec.split(":")
    if parts[0].startswith("/"):  # anonymous: /dst[:opts]
        name, dest, words = None, parts[0], parts[1].split(",") if len(parts) > 1 else []
    else:
        if len(parts) > 3:
            raise PodpyError(
                f"invalid volume specification {spec!r}", hint="use -v NAME:/path[:OPTIONS]"
            )
        name, dest = parts[0], parts[1]
        words = parts[2].split(",") if len(parts) == 3 and parts[2] else []
    if not dest.startswith("/"):
        raise PodpyError(
            f"invalid container path {dest!r}, must be an absolute path",
            hint=f"use -v {parts[0]}:/{dest.lstrip('/')}",
        )
    if name is not None:
        _check_name(name)
    for word in words:
        if word not in _MODE_WORDS and word not in (
            "shared", "rshared", "slave", "rslave", "private", "rprivate", "dev", "nodev",
        ):  # fmt: skip
            raise PodpyError(
                f"invalid volume option {word!r} in {spec!r}",
                hint="use ro, rw, nocopy, z, Z, U, shared, slave, private (and r-prefixed forms)",
            )
    return name, os.path.normpath(dest), [w for w in words if w]


def attach(
    eng: Engine, specs: Sequence[str], image_config: Dict[str, Any], taken: Sequence[str]
) -> Tuple[List[str], List[Dict[str, Any]]]:
    """Create the volumes the container needs (named ones on first use, anonymous ones for
    `-v /path` and image VOLUMEs not covered by `taken` destinations).

    Returns (bind specs `MOUNTPOINT:DST[:OPTS]` for the spec generator, the container's volume
    records: name, destination, mountpoint, anonymous, copy_up).
    """
    wanted: List[Tuple[Optional[str], str, List[str]]] = [_parse_named(s) for s in specs]
    covered = {os.path.normpath(d) for d in taken} | {dest for _, dest, _ in wanted}
    for path in sorted((image_config.get("Volumes") or {}).keys()):
        dest = os.path.normpath(path)
        if dest.startswith("/") and dest not in covered:
            wanted.append((None, dest, []))
            covered.add(dest)
    binds, records = [], []
    for name, dest, words in wanted:
        row = create(eng, name, anonymous=name is None, ignore_existing=name is not None)
        mode = [w for w in words if w not in ("copy", "nocopy", "z", "Z", "U", "O")]
        binds.append(f"{row['mountpoint']}:{dest}" + (":" + ",".join(mode) if mode else ""))
        records.append(
            {
                "name": row["name"],
                "destination": dest,
                "mountpoint": row["mountpoint"],
                "anonymous": name is None,
                "options": words,
                "copy_up": "nocopy" not in words,
                # `-o o=uid=N,gid=N` fixed the owner of the volume's root: keep it.
                "chown": (row.get("config") or {}).get("uid") is None
                and (row.get("config") or {}).get("gid") is None,
            }
        )
    return binds, records


def remove_anonymous(eng: Engine, records: Sequence[Dict[str, Any]]) -> None:
    """`rm -v` / `--rm`: the container's anonymous volumes that nothing else uses."""
    for record in records:
        if record.get("anonymous") and exists(eng, record["name"]):
            if not users(eng, record["name"]):
                remove(eng, record["name"])


# --- first mount (runs in the monitor, as root of the container's user namespace) ------------


def copy_up(volumes: Sequence[Dict[str, Any]], rootfs: str, process_user: Dict[str, Any]) -> None:
    """podman's copy-up: a new, empty volume gets the image's content at its destination, with
    owners, modes and times; when the image has nothing there, the volume's root goes to the
    container's user. Done once per volume (the marker is removed)."""
    from podpy.runtime.mounts import secure_join

    for vol in volumes:
        data = vol["mountpoint"]
        marker = os.path.join(os.path.dirname(data), COPY_UP_MARKER)
        if not os.path.exists(marker):
            continue
        if vol.get("copy_up", True) and not os.listdir(data):
            source = secure_join(rootfs, vol["destination"])
            try:
                st = os.lstat(source)
            except FileNotFoundError:
                st = None
            chown = vol.get("chown", True)
            if st is not None and stat.S_ISDIR(st.st_mode):
                copy_tree(source, data)
                if chown:
                    _copy_attributes(st, data)
            elif chown:
                os.chown(data, int(process_user.get("uid", 0)), int(process_user.get("gid", 0)))
        os.unlink(marker)


def _copy_attributes(st: os.stat_result, target: str) -> None:
    os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(source: str, target: str) -> None:
    """Copy the contents of directory `source` into existing `target`: types, owners, modes,
    times and hard links kept, symlinks not followed."""
    import shutil

    links: Dict[Tuple[int, int], str] = {}
    dirs: List[Tuple[os.stat_result, str]] = []
    for current, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(current, source)
        out_dir = target if rel == "." else os.path.join(target, rel)
        for name in sorted(dirnames + filenames):
            src = os.path.join(current, name)
            dst = os.path.join(out_dir, name)
            st = os.lstat(src)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(dst, 0o700)
                dirs.append((st, dst))
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], dst, follow_symlinks=False)
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(src, dst, follow_symlinks=False)
            else:
                os.mknod(dst, st.st_mode, st.st_rdev)
            _copy_attributes(st, dst)
            if st.st_nlink > 1:
                links[key] = dst
    for st, dst in reversed(dirs):  # after their content, or writing it would bump the mtime
        _copy_attributes(st, dst)
