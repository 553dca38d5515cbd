"""cgroups for containers: v1 (rootful) and v2 (rootful or a delegated subtree) via cgroupfs.

Creates the container's cgroup, applies `linux.resources`, moves the init in, and offers what
`stats`, `pause` and `delete` need. Rootless without a writable hierarchy: no cgroup, no error.
"""

from __future__ import annotations

import errno
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

CGROUP_ROOT = "/sys/fs/cgroup"
# v1 hierarchies a container gets a directory in (cpuset needs cpus/mems copied first).
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer", "blkio", "cpuset", "systemd")
ROOTLESS_V1_WARNING = "Resource limits are not supported and ignored on cgroups V1 rootless systems"


def mode() -> str:
    """ "v2" (unified only), "hybrid" (v1 controllers + empty v2), "v1", or "none"."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return "v2"
    if not os.path.isdir(CGROUP_ROOT):
        return "none"
    if os.path.exists(os.path.join(CGROUP_ROOT, "unified", "cgroup.controllers")):
        return "hybrid"
    return "v1"


def _own_v2_cgroup() -> Optional[str]:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def delegated_v2_base() -> Optional[str]:
    """A writable cgroup v2 directory this (possibly rootless) process may create children in."""
    if mode() != "v2":
        return None
    own = _own_v2_cgroup()
    if own is None:
        return None
    path = os.path.join(CGROUP_ROOT, own.lstrip("/"))
    if os.access(path, os.W_OK) and os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
        return path
    return None


def can_manage(rootless: bool) -> bool:
    """Whether resource limits can be applied at all (podman warns and drops them otherwise)."""
    if not rootless:
        return mode() != "none"
    return delegated_v2_base() is not None


def _own_procs_file() -> Optional[str]:
    """cgroup.procs of the cgroup this process is in (v2, or v1's pids/memory hierarchy)."""
    current = mode()
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if current == "v2" and controllers == "":
            base = CGROUP_ROOT
        elif current in ("v1", "hybrid") and controllers in ("pids", "memory"):
            base = os.path.join(CGROUP_ROOT, controllers)
        else:
            continue
        procs = os.path.join(base, path.lstrip("/"), "cgroup.procs")
        if os.path.exists(procs):
            return procs
    return None


def _write_quietly(path: str) -> None:
    try:
        _write(path, 0)
    except OSError:
        pass


def prime_attach() -> None:
    """Let a helper thread pay for the RCU grace period the kernel waits for when processes
    next move between cgroups (the first writer of cgroup_threadgroup_rwsem: 10-20 ms), while
    the runtime prepares the container: its move of the init moments later then shares that
    grace period or finds it over, instead of waiting a whole one with the container ready.

    The thread moves this process into the cgroup it is already in (pid 0: the writer), a
    no-op that takes the same lock; any error (no permission, no cgroupfs) is ignored."""
    target = _own_procs_file()
    if target is None:
        return
    import _thread  # builtin: threading itself is not needed for a fire-and-forget write

    _thread.start_new_thread(_write_quietly, (target,))


def _write(path: str, value: Any) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class Cgroup:
    """One container's cgroup directories (one per v1 hierarchy, or a single v2 directory)."""

    def __init__(self, paths: Dict[str, str], version: int):
        self.paths = paths
        self.version = version

    def to_json(self) -> Dict[str, Any]:
        return {"version": self.version, "paths": self.paths}

    @classmethod
    def from_json(cls, data: Optional[Dict[str, Any]]) -> Optional[Cgroup]:
        if not data:
            return None
        return cls(dict(data["paths"]), int(data["version"]))

    def add_process(self, pid: int) -> None:
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), pid)

    def apply(self, resources: Dict[str, Any]) -> None:
        if self.version == 2:
            _apply_v2(self.paths["unified"], resources)
        else:
            _apply_v1(self.paths, resources)

    def pids(self) -> List[int]:
        path = self.paths.get("unified") or self.paths.get("pids") or self.paths.get("memory")
        if not path:
            return []
        try:
            return [int(x) for x in _read(os.path.join(path, "cgroup.procs")).split()]
        except OSError:
            return []

    def freeze(self, frozen: bool) -> None:
        if self.version == 2:
            _write(os.path.join(self.paths["unified"], "cgroup.freeze"), "1" if frozen else "0")
            return
        if "freezer" not in self.paths:
            from podpy.errors import PodpyError

            raise PodpyError("pause needs the cgroup v1 freezer controller, which is not mounted")
        _write(
            os.path.join(self.paths["freezer"], "freezer.state"), "FROZEN" if frozen else "THAWED"
        )

    def stats(self) -> Dict[str, int]:
        """Raw counters for `podpy stats`: memory bytes, cpu nanoseconds, pids."""
        out: Dict[str, int] = {}
        try:
            if self.version == 2:
                base = self.paths["unified"]
                out["memory_usage"] = int(_read(os.path.join(base, "memory.current")))
                limit = _read(os.path.join(base, "memory.max"))
                out["memory_limit"] = 0 if limit == "max" else int(limit)
                for line in _read(os.path.join(base, "cpu.stat")).splitlines():
                    key, value = line.split()
                    if key == "usage_usec":
                        out["cpu_ns"] = int(value) * 1000
                out["pids"] = int(_read(os.path.join(base, "pids.current")))
            else:
                if "memory" in self.paths:
                    out["memory_usage"] = int(
                        _read(os.path.join(self.paths["memory"], "memory.usage_in_bytes"))
                    )
                    out["memory_limit"] = int(
                        _read(os.path.join(self.paths["memory"], "memory.limit_in_bytes"))
                    )
                if "cpuacct" in self.paths:
                    out["cpu_ns"] = int(_read(os.path.join(self.paths["cpuacct"], "cpuacct.usage")))
                if "pids" in self.paths:
                    out["pids"] = int(_read(os.path.join(self.paths["pids"], "pids.current")))
        except (OSError, ValueError):
            pass
        return out

    def destroy(self, timeout: float = 2.0) -> None:
        """Remove the directories; retries while the kernel still accounts exiting tasks."""
        deadline = time.monotonic() + timeout
        for path in sorted(set(self.paths.values()), key=len, reverse=True):
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        break
                    time.sleep(0.02)


def _v1_hierarchies() -> Dict[str, str]:
    found = {}
    for name in _V1_CONTROLLERS:
        path = os.path.join(CGROUP_ROOT, name)
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "cgroup.procs")):
            found[name] = path
    return found


def create(cgroups_path: str, rootless: bool) -> Optional[Cgroup]:
    """Create the container's cgroup; None when this user cannot have one (rootless, no delegation)."""
    relative = cgroups_path.strip("/")
    if ":" in relative:  # systemd form slice:prefix:name -> cgroupfs path
        slice_name, prefix, name = (relative.split(":") + ["", ""])[:3]
        relative = "/".join(p for p in (slice_name, f"{prefix}-{name}" if prefix else name) if p)
    current = mode()
    if current == "v2":
        base = delegated_v2_base() if rootless else CGROUP_ROOT
        if base is None:
            return None
        path = os.path.join(base, relative)
        try:
            _make_v2(base, path)
        except OSError:
            if rootless:
                return None
            raise
        return Cgroup({"unified": path}, 2)
    if rootless or current == "none":
        return None
    paths = {}
    for name, root in _v1_hierarchies().items():
        path = os.path.join(root, relative)
        os.makedirs(path, exist_ok=True)
        if name == "cpuset":
            _init_cpuset(root, path)
        paths[name] = path
    return Cgroup(paths, 1)


def _init_cpuset(root: str, path: str) -> None:
    """A new v1 cpuset is empty: copy cpus/mems down from the nearest configured ancestor."""
    chain = []
    current = path
    while current.startswith(root) and current != root:
        chain.append(current)
        current = os.path.dirname(current)
    for directory in reversed(chain):
        parent = os.path.dirname(directory)
        for key in ("cpuset.cpus", "cpuset.mems"):
            target = os.path.join(directory, key)
            if not _read(target):
                _write(target, _read(os.path.join(parent, key)))


def _make_v2(base: str, path: str) -> None:
    # Enable controllers level by level from base down to the container's parent.
    relative = os.path.relpath(path, base)
    current = base
    for part in relative.split(os.sep):
        try:
            available = _read(os.path.join(current, "cgroup.controllers")).split()
            wanted = [c for c in ("cpu", "memory", "pids", "io") if c in available]
            if wanted:
                _write(
                    os.path.join(current, "cgroup.subtree_control"),
                    " ".join("+" + c for c in wanted),
                )
        except OSError:
            pass  # a cgroup with processes in it cannot enable controllers; limits then fail loudly
        current = os.path.join(current, part)
        os.makedirs(current, exist_ok=True)


def _apply_v1(paths: Dict[str, str], res: Dict[str, Any]) -> None:
    memory = res.get("memory") or {}
    if "memory" in paths:
        base = paths["memory"]
        if memory.get("limit") is not None:
            _write(os.path.join(base, "memory.limit_in_bytes"), memory["limit"])
        if memory.get("swap") is not None:
            swap_file = os.path.join(base, "memory.memsw.limit_in_bytes")
            if os.path.exists(swap_file):
                _write(swap_file, memory["swap"])
        if memory.get("reservation") is not None:
            _write(os.path.join(base, "memory.soft_limit_in_bytes"), memory["reservation"])
        if memory.get("swappiness") is not None:
            _write(os.path.join(base, "memory.swappiness"), memory["swappiness"])
        if memory.get("disableOOMKiller"):
            _write(os.path.join(base, "memory.oom_control"), 1)
    cpu = res.get("cpu") or {}
    if "cpu" in paths:
        base = paths["cpu"]
        if cpu.get("shares"):
            _write(os.path.join(base, "cpu.shares"), cpu["shares"])
        if cpu.get("period"):
            _write(os.path.join(base, "cpu.cfs_period_us"), cpu["period"])
        if cpu.get("quota"):
            _write(os.path.join(base, "cpu.cfs_quota_us"), cpu["quota"])
    if "cpuset" in paths:
        if cpu.get("cpus"):
            _write(os.path.join(paths["cpuset"], "cpuset.cpus"), cpu["cpus"])
        if cpu.get("mems"):
            _write(os.path.join(paths["cpuset"], "cpuset.mems"), cpu["mems"])
    pids = res.get("pids") or {}
    if "pids" in paths and pids.get("limit") is not None:
        limit = pids["limit"]
        _write(os.path.join(paths["pids"], "pids.max"), "max" if limit <= 0 else limit)


def _apply_v2(base: str, res: Dict[str, Any]) -> None:
    memory = res.get("memory") or {}
    if memory.get("limit") is not None:
        limit = memory["limit"]
        _write(os.path.join(base, "memory.max"), "max" if limit < 0 else limit)
        swap = memory.get("swap")
        if swap is not None and os.path.exists(os.path.join(base, "memory.swap.max")):
            # OCI swap is memory+swap; v2 wants swap alone.
            value = "max" if swap < 0 else max(swap - limit, 0)
            _write(os.path.join(base, "memory.swap.max"), value)
    if memory.get("reservation") is not None:
        _write(os.path.join(base, "memory.low"), memory["reservation"])
    cpu = res.get("cpu") or {}
    if cpu.get("shares"):
        weight = 1 + ((int(cpu["shares"]) - 2) * 9999) // 262142
        _write(os.path.join(base, "cpu.weight"), max(1, min(weight, 10000)))
    if cpu.get("quota") or cpu.get("period"):
        quota = cpu.get("quota")
        period = cpu.get("period") or 100000
        _write(os.path.join(base, "cpu.max"), f"{quota if quota and quota > 0 else 'max'} {period}")
    if cpu.get("cpus"):
        _write(os.path.join(base, "cpuset.cpus"), cpu["cpus"])
    pids = res.get("pids") or {}
    if pids.get("limit") is not None:
        limit = pids["limit"]
        _write(os.path.join(base, "pids.max"), "max" if limit <= 0 else limit)
    for key, value in (res.get("unified") or {}).items():
        _write(os.path.join(base, key), value)
