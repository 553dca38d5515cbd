"""Every on-disk location podpy uses, resolved once from uid, environment and global flags.

podpy keeps its own store (podpy/ rather than containers/) because its layout differs
from containers/storage: sharing podman's graph root would corrupt both.
"""

from __future__ import annotations

import os

from podpy.record import record
from podpy.userns import effective_uid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Optional


def is_rootless(uid: Optional[int] = None) -> bool:
    return (os.geteuid() if uid is None else uid) != 0


def home_dir(env: Mapping[str, str]) -> str:
    home = env.get("HOME")
    if home:
        return home
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_dir


def runtime_dir(env: Mapping[str, str], uid: int) -> str:
    """XDG_RUNTIME_DIR if usable, else /tmp/podpy-run-UID (podman's fallback shape)."""
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return xdg
    return f"/tmp/podpy-run-{uid}"


def config_home(env: Mapping[str, str]) -> str:
    return env.get("XDG_CONFIG_HOME") or os.path.join(home_dir(env), ".config")


def data_home(env: Mapping[str, str]) -> str:
    return env.get("XDG_DATA_HOME") or os.path.join(home_dir(env), ".local", "share")


@record(frozen=True)
class Paths:
    """Immutable (a podpy.record rather than a dataclass or NamedTuple: neither dataclasses
    nor typing is imported on the `run` path, for start-up time)."""

    graph_root: str
    run_root: str
    rootless: bool

    @property
    def db_file(self) -> str:
        return os.path.join(self.graph_root, "podpy.db")

    @property
    def blobs_dir(self) -> str:
        return os.path.join(self.graph_root, "blobs", "sha256")

    @property
    def layers_dir(self) -> str:
        return os.path.join(self.graph_root, "layers")

    @property
    def containers_dir(self) -> str:
        return os.path.join(self.graph_root, "containers")

    @property
    def volumes_dir(self) -> str:
        return os.path.join(self.graph_root, "volumes")

    @property
    def tmp_dir(self) -> str:
        return os.path.join(self.graph_root, "tmp")

    @property
    def locks_dir(self) -> str:
        return os.path.join(self.run_root, "locks")

    def container_run_dir(self, cid: str) -> str:
        return os.path.join(self.run_root, "containers", cid)


def resolve(
    root: Optional[str] = None,
    runroot: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    uid: Optional[int] = None,
) -> Paths:
    """Paths for this user; --root/--runroot win over the defaults."""
    env = os.environ if env is None else env
    uid = effective_uid(env) if uid is None else uid
    rootless = uid != 0
    if rootless:
        graph = os.path.join(data_home(env), "podpy", "storage")
        run = os.path.join(runtime_dir(env, uid), "podpy")
    else:
        graph, run = "/var/lib/podpy", "/run/podpy"
    return Paths(
        graph_root=os.path.abspath(root) if root else graph,
        run_root=os.path.abspath(runroot) if runroot else run,
        rootless=rootless,
    )
