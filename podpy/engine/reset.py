"""`system reset`: stop what the store still runs, unmount what is mounted under it, and remove
the graph root and run root (inside the user namespace when rootless, for sub-uid files).

Works without opening the StateDB through its normal path, so a corrupt or newer-schema
database can still be reset.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from typing import TYPE_CHECKING, List, Set

from podpy.errors import PodpyError

if TYPE_CHECKING:
    from podpy.paths import Paths

# Container state fields that may hold helper pids next to the container's own pid.
_PID_FIELDS = ("pid", "monitor_pid", "conmon_pid", "slirp4netns_pid", "rootlessport_pid")


def _unescape_mountinfo(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(prefixes: List[str], mountinfo: str = "/proc/self/mountinfo") -> List[tuple]:
    """(mount point, fs type) of every mount at or below one of the prefixes, deepest first."""
    found = []
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 7 or "-" not in fields:
            continue
        point = _unescape_mountinfo(fields[4])
        fstype = fields[fields.index("-") + 1]
        for prefix in prefixes:
            prefix = prefix.rstrip("/") or "/"
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                found.append((point, fstype))
                break
    return sorted(set(found), key=lambda item: len(item[0]), reverse=True)


def _owned_ids() -> Set[int]:
    """Host uids whose processes a reset may kill: just ours, or ours plus our sub-uids."""
    from podpy.idmap import user_id_maps

    maps = user_id_maps()
    ids = {maps.uid}
    for sub in maps.uid_ranges:
        ids.update(range(sub.start, sub.start + sub.count))
    return ids


def _process_uid(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


def stop_recorded_processes(db_file: str, timeout: float = 3.0) -> List[int]:
    """SIGKILL the processes that running/paused containers recorded in the DB; return pids.

    Best effort: a missing or unreadable DB means nothing to stop. Rootless, only processes
    owned by the user or its sub-uids are touched (a stale pid may belong to someone else).
    """
    if not os.path.exists(db_file):
        return []
    pids: Set[int] = set()
    try:
        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(
                "SELECT pid, state_json FROM containers WHERE status IN ('running', 'paused')"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []
    for pid, state_json in rows:
        if pid:
            pids.add(int(pid))
        try:
            state = json.loads(state_json or "{}")
        except ValueError:
            state = {}
        for key in _PID_FIELDS:
            value = state.get(key) if isinstance(state, dict) else None
            if isinstance(value, int) and value > 1:
                pids.add(value)
    pids.discard(os.getpid())
    pids = {p for p in pids if p > 1}
    allowed = _owned_ids() if os.geteuid() != 0 else None
    killed = []
    for pid in sorted(pids):
        try:
            if allowed is not None and _process_uid(pid) not in allowed:
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while killed and time.monotonic() < deadline:
        alive = []
        for pid in killed:
            try:
                # Zombies of other parents still exist; they hold no mounts or files.
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        alive.append(pid)
            except OSError:
                pass
        if not alive:
            break
        time.sleep(0.05)
    return killed


def unmount_all(prefixes: List[str]) -> List[str]:
    """Detach every mount under the prefixes; rootless FUSE mounts go through fusermount.
    Returns the mount points that could not be unmounted."""
    from podpy import linux

    stuck = []
    for point, fstype in mounts_under(prefixes):
        try:
            linux.umount2(point, linux.MNT_DETACH)
            continue
        except OSError:
            pass
        if fstype.startswith("fuse"):
            done = False
            for tool in ("fusermount3", "fusermount"):
                try:
                    result = subprocess.run(
                        [tool, "-u", "-z", point], capture_output=True, stdin=subprocess.DEVNULL
                    )
                except FileNotFoundError:
                    continue
                if result.returncode == 0:
                    done = True
                    break
            if done:
                continue
        stuck.append(point)
    return stuck


def _remove_roots(roots: List[str]) -> List[str]:
    """Runs as (namespace) root: unmount our own leftovers, then delete the trees.
    Returns one "path: reason" per root that could not be removed."""
    from podpy.atomic import remove_tree

    unmount_all(roots)
    failed = []
    for root in roots:
        try:
            remove_tree(root)
        except OSError as err:
            where = err.filename or root
            failed.append(f"{where}: {err.strerror or err}")
    return failed


def _remove_roots_in_userns(roots: List[str]) -> List[str]:
    """_remove_roots in a forked namespace child; its failures come back over a pipe."""
    from podpy.rootless import run_in_userns

    read_end, write_end = os.pipe()

    def child() -> int:
        os.close(read_end)
        failed = _remove_roots(roots)
        os.write(write_end, "\n".join(failed).encode())
        return 1 if failed else 0

    try:
        code = run_in_userns(child)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        failed = [line for line in f.read().decode(errors="replace").splitlines() if line]
    if code != 0 and not failed:
        failed = [f"the namespace helper exited with status {code}"]
    return failed


def system_reset(paths: Paths) -> None:
    """Remove every container, image, volume, network and pod by deleting the store.

    A store that does not exist is a no-op. Rootless, the deletion runs inside the user
    namespace so files owned by sub-uids can be removed.
    """
    roots = [root for root in (paths.graph_root, paths.run_root) if os.path.lexists(root)]
    if not roots:
        return
    stop_recorded_processes(paths.db_file)
    try:  # DNS responders, bridges and the nft table of this store's networks
        from podpy.engine.networks import teardown_store

        teardown_store(paths.db_file, paths.run_root, paths.rootless)
    except (OSError, PodpyError) as err:
        from podpy import log

        log.warn(f"removing the store's networks: {err}")
    stuck = unmount_all(roots)
    if not paths.rootless or os.geteuid() == 0:
        failed = _remove_roots(roots)
    else:
        failed = _remove_roots_in_userns(roots)
    if failed:
        detail = f" (still mounted: {', '.join(stuck)})" if stuck else ""
        raise PodpyError(
            f"could not remove all podpy state: {'; '.join(failed)}{detail}",
            hint="stop any process still using the store and run `podpy system reset --force` again",
        )
