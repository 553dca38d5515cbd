"""Loads containers.conf, registries.conf and storage.conf the way podman does, into one Config.

`load()` reads every file eagerly, so a broken file fails the command before anything
touches the disk. Files that do not exist are skipped; unknown keys are ignored.
"""

from __future__ import annotations

import os

from podpy.config.containers import (
    ContainersConfig,
    build_containers_config,
    containers_conf_files,
    read_containers_conf,
)
from podpy.config.registries import (
    Mirror,
    PullSource,
    RegistriesConfig,
    RegistryEntry,
    load_registries,
)
from podpy.config.storage import StorageConfig, load_storage
from podpy.record import field, record
from podpy.userns import ROOTLESS_UID_ENV, effective_uid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "ROOTLESS_UID_ENV",
    "Config",
    "ContainersConfig",
    "Mirror",
    "PullSource",
    "RegistriesConfig",
    "RegistryEntry",
    "StorageConfig",
    "load",
]


@record(frozen=True)
class Config:
    """Everything podpy reads from the containers config files, plus where it came from."""

    containers: ContainersConfig = field(default_factory=ContainersConfig)
    registries: RegistriesConfig = field(default_factory=RegistriesConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    # Merged documents, for keys the typed views do not model (e.g. raw_containers["machine"]).
    raw_containers: Dict[str, Any] = field(default_factory=dict)
    raw_registries: Dict[str, Any] = field(default_factory=dict)
    raw_storage: Dict[str, Any] = field(default_factory=dict)
    # Every file actually read, in the order it was applied (for `podpy info`).
    sources: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary: the files read and the effective typed values."""
        return {
            "sources": list(self.sources),
            "containers": self.containers.to_dict(),
            "registries": self.registries.to_dict(),
            "storage": self.storage.to_dict(),
        }


def load(
    env: Optional[Mapping[str, str]] = None,
    uid: Optional[int] = None,
    *,
    sysroot: str = "",
) -> Config:
    """Read all three config files for this user (root or rootless, decided by `uid`).

    `uid` defaults to the invoking user's host uid, so podpy running inside its own user
    namespace (e.g. under `podpy unshare`) still reads the rootless user's files.

    `sysroot` prefixes the system-wide paths (/usr/share, /etc, /var/cache), like
    containers/image's RootForImplicitAbsolutePaths; tests use it to stay off the host's files.
    Raises podpy.errors.ConfigError (`<file>: line N: <what>`) for a malformed file.
    """
    from podpy.config._toml import flush_cache
    from podpy.paths import config_home, data_home, home_dir

    env = os.environ if env is None else env
    uid = effective_uid(env) if uid is None else uid
    rootless = uid != 0
    home = home_dir(env)
    conf_home = config_home(env)
    sysroot = sysroot.rstrip("/")

    files = containers_conf_files(env, rootless, conf_home, sysroot)
    merged, containers_read = read_containers_conf(files)
    fallback = containers_read[-1] if containers_read else "containers.conf"
    containers = build_containers_config(merged, fallback)

    registries, raw_registries, registries_read = load_registries(
        env, rootless, home, conf_home, sysroot
    )
    storage, raw_storage, storage_read = load_storage(
        env, rootless, uid, conf_home, data_home(env), sysroot
    )
    config = Config(
        containers=containers,
        registries=registries,
        storage=storage,
        raw_containers=merged.data,
        raw_registries=raw_registries,
        raw_storage=raw_storage,
        sources=containers_read + registries_read + ([storage_read] if storage_read else []),
    )
    # Everything parsed and validated: now the TOML cache may remember the files read.
    flush_cache()
    return config
