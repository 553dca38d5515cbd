"""containers-storage.conf(5): which file applies and the driver, roots and overlay/vfs options.

podpy keeps its own graph root and run root (podpy/paths.py) because its on-disk layout
differs from containers/storage; graphroot/runroot here are parsed and reported (what
podman would use) but never move podpy's store. The driver and overlay/vfs options are
honoured by podpy's storage layer.
"""

from __future__ import annotations

import os
import re

from podpy.config._toml import LazyRegex, MergedToml, Section, read_toml
from podpy.errors import ConfigError
from podpy.record import asdict, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping, Optional, Tuple

KIND = "storage.conf"
DRIVERS = ("", "overlay", "vfs", "btrfs", "zfs", "devicemapper", "aufs")
_VARIABLE = LazyRegex(r"\$(\w+|\{\w+\})")


@record(frozen=True)
class StorageConfig:
    """The effective storage.conf settings (driver "" means auto-detect, as in podman)."""

    driver: str = ""
    graphroot: str = ""
    runroot: str = ""
    rootless_storage_path: str = ""
    overlay_mount_program: str = ""
    overlay_mountopt: str = ""
    overlay_ignore_chown_errors: bool = False
    vfs_ignore_chown_errors: bool = False
    # The file these values came from (None: built-in defaults).
    source: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def storage_conf_file(
    env: Mapping[str, str], rootless: bool, config_home: str, sysroot: str
) -> Tuple[Optional[str], bool]:
    """(the one file to read, whether it is a per-user file whose graphroot applies)."""
    explicit = env.get("CONTAINERS_STORAGE_CONF")
    if explicit:
        if not os.path.exists(explicit):
            raise ConfigError(
                f"CONTAINERS_STORAGE_CONF file {explicit} does not exist",
                hint="point CONTAINERS_STORAGE_CONF at an existing storage.conf, or unset it",
            )
        return explicit, True
    if rootless:
        user_file = os.path.join(config_home, "containers", "storage.conf")
        if os.path.exists(user_file):
            return user_file, True
    for candidate in (
        sysroot + "/etc/containers/storage.conf",
        sysroot + "/usr/share/containers/storage.conf",
    ):
        if os.path.exists(candidate):
            return candidate, False
    return None, False


def _expand(path: str, env: Mapping[str, str], uid: int) -> str:
    """rootless_storage_path expansion: $UID, then any environment variable ($HOME, $USER)."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1).strip("{}")
        if name == "UID":
            return str(uid)
        return env.get(name, "")

    return _VARIABLE.sub(lookup, path)


def _chown_errors(section: Section, key: str) -> bool:
    # storage.conf documents these as strings ("true"/"false"); accept real booleans too.
    if not section.has(key):
        return False
    raw = section.value(key)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false", ""):
        return raw.strip().lower() == "true"
    raise section.fail(key, f"expected true or false, got {raw!r}")


def _rootless_run_dir(env: Mapping[str, str], uid: int) -> str:
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg:
        return xdg
    if os.path.isdir(f"/run/user/{uid}"):
        return f"/run/user/{uid}"
    return f"/tmp/storage-run-{uid}"


def load_storage(
    env: Mapping[str, str],
    rootless: bool,
    uid: int,
    config_home: str,
    data_home: str,
    sysroot: str,
) -> Tuple[StorageConfig, Dict[str, Any], Optional[str]]:
    """(effective config, the raw document, the file read or None)."""
    path, per_user = storage_conf_file(env, rootless, config_home, sysroot)
    document = read_toml(path, KIND) if path else None
    merged = MergedToml()
    if document is not None:
        merged.add(document, path or "")
    else:
        path = None
    where = path or "storage.conf"
    storage = Section(merged, ("storage",), where)
    options = Section(merged, ("storage", "options"), where)
    overlay = Section(merged, ("storage", "options", "overlay"), where)
    vfs = Section(merged, ("storage", "options", "vfs"), where)

    driver = storage.string("driver", "")
    driver_source = storage
    if env.get("STORAGE_DRIVER"):
        driver = env["STORAGE_DRIVER"]
        driver_source = None
    driver = "overlay" if driver == "overlay2" else driver
    if driver not in DRIVERS:
        message = f'unsupported storage driver "{driver}"'
        hint = "use one of: " + ", ".join(d for d in DRIVERS if d)
        if driver_source is None:
            raise ConfigError(f"STORAGE_DRIVER: {message}", hint=hint)
        raise storage.fail("driver", message, hint=hint)

    graphroot = storage.string("graphroot", "")
    runroot = storage.string("runroot", "")
    rootless_path = storage.string("rootless_storage_path", "")
    if rootless:
        # A system-wide file's graphroot/runroot are root's; rootless users get their own.
        if not per_user:
            graphroot, runroot = "", ""
        if not graphroot:
            graphroot = (
                _expand(rootless_path, env, uid)
                if rootless_path
                else os.path.join(data_home, "containers", "storage")
            )
        runroot = runroot or os.path.join(_rootless_run_dir(env, uid), "containers")
    else:
        graphroot = graphroot or "/var/lib/containers/storage"
        runroot = runroot or "/run/containers/storage"

    # Older files put the overlay options directly in [storage.options].
    mount_program = overlay.string("mount_program", "") or options.string("mount_program", "")
    if mount_program and not os.path.isabs(mount_program):
        source = overlay if overlay.has("mount_program") else options
        raise source.fail(
            "mount_program",
            f'"{mount_program}" is not an absolute path',
            hint='write e.g. "/usr/bin/fuse-overlayfs"',
        )
    config = StorageConfig(
        driver=driver,
        graphroot=graphroot,
        runroot=runroot,
        rootless_storage_path=rootless_path,
        overlay_mount_program=mount_program,
        overlay_mountopt=overlay.string("mountopt", "") or options.string("mountopt", ""),
        overlay_ignore_chown_errors=_chown_errors(overlay, "ignore_chown_errors")
        or _chown_errors(options, "ignore_chown_errors"),
        vfs_ignore_chown_errors=_chown_errors(vfs, "ignore_chown_errors"),
        source=path,
    )
    return config, merged.data, path
