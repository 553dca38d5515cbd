"""Mount helpers for container setup: option parsing, safe in-rootfs paths, bind/overlay/remount.

Runs inside the container's mount namespace (the init process), so everything here may call
podpy.linux directly; nothing here forks.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

# mount(8) words -> (set flags, clear flags)
_FLAG_WORDS: Dict[str, Tuple[int, int]] = {}
_PROPAGATION: Dict[str, int] = {}


def _init_tables() -> None:
    from podpy import linux as L

    _FLAG_WORDS.update(
        {
            "ro": (L.MS_RDONLY, 0),
            "rw": (0, L.MS_RDONLY),
            "nosuid": (L.MS_NOSUID, 0),
            "suid": (0, L.MS_NOSUID),
            "nodev": (L.MS_NODEV, 0),
            "dev": (0, L.MS_NODEV),
            "noexec": (L.MS_NOEXEC, 0),
            "exec": (0, L.MS_NOEXEC),
            "sync": (L.MS_SYNCHRONOUS, 0),
            "async": (0, L.MS_SYNCHRONOUS),
            "dirsync": (L.MS_DIRSYNC, 0),
            "remount": (L.MS_REMOUNT, 0),
            "mand": (L.MS_MANDLOCK, 0),
            "nomand": (0, L.MS_MANDLOCK),
            "atime": (0, L.MS_NOATIME),
            "noatime": (L.MS_NOATIME, 0),
            "diratime": (0, L.MS_NODIRATIME),
            "nodiratime": (L.MS_NODIRATIME, 0),
            "bind": (L.MS_BIND, 0),
            "rbind": (L.MS_BIND | L.MS_REC, 0),
            "relatime": (L.MS_RELATIME, 0),
            "norelatime": (0, L.MS_RELATIME),
            "strictatime": (L.MS_STRICTATIME, 0),
            "nostrictatime": (0, L.MS_STRICTATIME),
            "silent": (L.MS_SILENT, 0),
            "loud": (0, L.MS_SILENT),
            "defaults": (0, 0),
        }
    )
    _PROPAGATION.update(
        {
            "private": L.MS_PRIVATE,
            "rprivate": L.MS_PRIVATE | L.MS_REC,
            "shared": L.MS_SHARED,
            "rshared": L.MS_SHARED | L.MS_REC,
            "slave": L.MS_SLAVE,
            "rslave": L.MS_SLAVE | L.MS_REC,
            "unbindable": L.MS_UNBINDABLE,
            "runbindable": L.MS_UNBINDABLE | L.MS_REC,
        }
    )


# Words that only matter to the engine/runtime bookkeeping, never passed to the kernel.
_IGNORED_WORDS = {"z", "Z", "U", "copy", "nocopy", "idmap", "tmpcopyup", "notmpcopyup"}


class ParsedOptions:
    """mount(2) flags, propagation flags and the leftover data string for one spec mount."""

    __slots__ = ("flags", "propagation", "data")

    def __init__(self, flags: int, propagation: List[int], data: str):
        self.flags = flags
        self.propagation = propagation
        self.data = data


def parse_options(options: Sequence[str]) -> ParsedOptions:
    if not _FLAG_WORDS:
        _init_tables()
    flags = 0
    propagation: List[int] = []
    data: List[str] = []
    for word in options or ():
        if word in _FLAG_WORDS:
            set_bits, clear_bits = _FLAG_WORDS[word]
            flags = (flags | set_bits) & ~clear_bits
        elif word in _PROPAGATION:
            propagation.append(_PROPAGATION[word])
        elif word in _IGNORED_WORDS:
            continue
        else:
            data.append(word)
    return ParsedOptions(flags, propagation, ",".join(data))


def secure_join(root: str, unsafe: str) -> str:
    """Resolve `unsafe` as if `root` were /, following symlinks without ever leaving root.

    (pathlib's `root / "/etc"` drops root, and a symlink `etc -> /` would escape it.)
    """
    root = os.path.abspath(root)
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: List[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        links += 1
        if links > 255:
            raise OSError(errno.ELOOP, f"too many symlinks resolving {unsafe}", candidate)
        new_parts = [p for p in target.split("/") if p not in ("", ".")]
        if target.startswith("/"):
            resolved = []
        parts = new_parts + parts
    return os.path.join(root, *resolved)


def ensure_mountpoint(path: str, is_dir: bool) -> None:
    """Create a missing mount point: a directory, or an empty file for a file bind mount."""
    if os.path.lexists(path):
        return
    if is_dir:
        os.makedirs(path, 0o755, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644)
    os.close(fd)


def locked_flags(path: str) -> int:
    """Flags of the mount at `path` that an unprivileged remount must keep (the kernel locks them)."""
    from podpy import linux as L

    st = os.statvfs(path)
    flags = 0
    for st_bit, ms_bit in (
        (os.ST_NOSUID, L.MS_NOSUID),
        (os.ST_NODEV, L.MS_NODEV),
        (os.ST_NOEXEC, L.MS_NOEXEC),
        (os.ST_NOATIME, L.MS_NOATIME),
        (os.ST_NODIRATIME, L.MS_NODIRATIME),
        (os.ST_RELATIME, L.MS_RELATIME),
        (os.ST_RDONLY, L.MS_RDONLY),
    ):
        if st.f_flag & st_bit:
            flags |= ms_bit
    return flags


def remount_bind(path: str, flags: int) -> None:
    """Remount a bind mount with extra flags (ro, nosuid...), keeping the locked ones."""
    from podpy import linux as L

    L.mount(None, path, None, L.MS_BIND | L.MS_REMOUNT | flags | locked_flags(path))


def bind(source: str, target: str, recursive: bool = True, flags: int = 0) -> None:
    from podpy import linux as L

    L.mount(source, target, None, L.MS_BIND | (L.MS_REC if recursive else 0))
    extra = flags & ~(L.MS_BIND | L.MS_REC | L.MS_REMOUNT)
    if extra:
        remount_bind(target, extra)


def mount_overlay(
    lower: Sequence[str],
    upper: Optional[str],
    work: Optional[str],
    target: str,
    userxattr: bool = True,
    volatile: bool = False,
) -> None:
    """Native overlayfs; call from inside the user+mount namespace for rootless (kernel >= 5.11).

    `volatile` (podman does it for --rm containers) skips every sync of the upper layer,
    unmount's included, which on a disk costs tens of milliseconds; the container's changes
    do not survive a crash of the machine, and the container does not outlive its run anyway.
    """
    from podpy import linux as L

    opts = ["lowerdir=" + ":".join(lower)]
    if upper:
        opts += ["upperdir=" + upper, "workdir=" + (work or "")]
    if volatile and upper and work:
        # A volatile mount leaves work/incompat/volatile behind, and the kernel refuses to
        # mount over it again: drop the marker of our own previous run.
        marker = os.path.join(work, "work", "incompat", "volatile")
        if os.path.isdir(marker):
            os.rmdir(marker)
    optional = (["userxattr"] if userxattr else []) + (["volatile"] if volatile and upper else [])
    # Kernels before 5.11 know no userxattr, before 5.10 no volatile: retry without them.
    for extra in (optional, optional[:1], []) if len(optional) == 2 else (optional, []):
        try:
            L.mount("overlay", target, "overlay", 0, ",".join(opts + extra))
            return
        except OSError as err:
            if err.errno != errno.EINVAL or not extra:
                raise


def mask_path(path: str) -> None:
    """Hide a file behind /dev/null, or a directory behind an empty read-only tmpfs."""
    from podpy import linux as L

    try:
        if os.path.isdir(path) and not os.path.islink(path):
            L.mount("tmpfs", path, "tmpfs", L.MS_RDONLY, None)
        else:
            L.mount("/dev/null", path, None, L.MS_BIND)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise


def readonly_path(path: str) -> None:
    """Bind a path onto itself and remount it read-only; missing paths are skipped like runc."""
    from podpy import linux as L

    try:
        L.mount(path, path, None, L.MS_BIND | L.MS_REC)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return
        raise
    remount_bind(path, L.MS_RDONLY)
