"""Crash-safe file and directory publication (temp sibling + fsync + rename) and cleanup of
the temporaries a killed process leaves behind.

Every temporary is named `.podpy-tmp-<pid>-<random>-<final name>` next to its final path, so
`repair_temporaries` can recognise it and tell whether its writer is still alive.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator, List, Optional

TEMP_PREFIX = ".podpy-tmp-"
_TEMP_RE = r"^\.podpy-tmp-(\d+)-[0-9a-f]{8}-"  # compiled by re.match on first use


def temp_sibling(final_path: str) -> str:
    """A unique temporary path in the same directory (so rename() is atomic)."""
    directory, name = os.path.split(os.path.abspath(final_path))
    # Keep the name under NAME_MAX (255) even for long final names.
    return os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}-{name}"[:255])


def fsync_dir(path: str) -> None:
    """Make a rename/creation inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Replace `path` with `data`: readers (and a crash) see the old or the new content, never
    a mix. The temporary is removed if anything fails. `durable=False` skips the fsyncs, for
    run-root files (tmpfs, gone at reboot anyway) whose reader starts right away."""
    tmp = temp_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def _remove_tree_fixing_modes(path: str) -> None:
    """Slow path: give ourselves rwx on every directory before emptying it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    if st.st_mode & 0o700 != 0o700:
        os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
    with os.scandir(path) as entries:
        children = [entry.path for entry in entries]
    for child in children:
        _remove_tree_fixing_modes(child)
    os.rmdir(path)


def _empty_dir_fd(dir_fd: int) -> None:
    """Delete everything inside the directory open at dir_fd (never following symlinks)."""
    with os.scandir(dir_fd) as entries:
        names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_dir in names:
        if not is_dir:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            continue
        try:
            child = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
            )
        except FileNotFoundError:
            continue
        try:
            _empty_dir_fd(child)
        finally:
            os.close(child)
        os.rmdir(name, dir_fd=dir_fd)


def remove_tree(path: str) -> None:
    """Remove a file or a directory tree, including directories without rwx for the owner
    (images ship such modes; root passes, but a plain rmtree as the user would not).

    First a walk by directory fds that never follows symlinks (as shutil.rmtree does, without
    importing shutil: it loads bz2 and lzma, ~4 ms of every `run --rm`); on anything but a
    vanished entry (a directory without rwx, a mount point ...) the slow paths below."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError:
        fd = -1  # a file, a symlink, or unreadable: decided below
    try:
        if fd >= 0:
            _empty_dir_fd(fd)
            os.close(fd)
            fd = -1
            os.rmdir(path)
            return
    except FileNotFoundError:
        return
    except OSError:
        pass
    finally:
        if fd >= 0:
            os.close(fd)
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)
        return
    import shutil  # not at import time: it loads the bz2 and lzma libraries

    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError:
        _remove_tree_fixing_modes(path)


@contextlib.contextmanager
def atomic_dir(final_path: str, replace: bool = False, mode: int = 0o755) -> Iterator[str]:
    """Yield a temporary sibling directory to fill; on success it is renamed to `final_path`,
    on failure it is removed. An existing `final_path` is an error unless `replace=True`
    (then the old tree is swapped out and deleted; not atomic for concurrent readers)."""
    final_path = os.path.abspath(final_path)
    parent = os.path.dirname(final_path)
    if not replace and os.path.lexists(final_path):
        raise FileExistsError(errno.EEXIST, "already exists", final_path)
    tmp = temp_sibling(final_path)
    os.mkdir(tmp, mode)
    try:
        yield tmp
        os.chmod(tmp, mode)
        old: Optional[str] = None
        if replace and os.path.lexists(final_path):
            old = temp_sibling(final_path)
            os.rename(final_path, old)
        os.rename(tmp, final_path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(tmp)
        raise
    fsync_dir(parent)
    if old is not None:
        with contextlib.suppress(OSError):
            remove_tree(old)


def _writer_alive(pid: int) -> bool:
    """Whether the process that named a temporary still runs. A zombie does not: a killed
    writer can stay one for seconds where PID 1 reaps slowly, and kill(pid, 0) succeeds on it."""
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: keep the temporary
    state = data[data.rindex(b")") + 2 : data.rindex(b")") + 3]
    return state not in (b"Z", b"X")


def repair_temporaries(graph_root: str, max_depth: int = 4) -> List[str]:
    """Remove podpy temporaries whose writer process is gone; return what was removed.

    Looks `max_depth` levels below graph_root (temporaries are siblings of store entries,
    never deep inside layer contents), without descending into the temporaries themselves.
    Run it inside the user namespace when rootless: temporaries can hold sub-uid files.
    """
    repaired: List[str] = []
    if not os.path.isdir(graph_root):
        return repaired

    def scan(directory: str, depth: int) -> None:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            match = re.match(_TEMP_RE, entry.name)
            if match:
                if not _writer_alive(int(match.group(1))):
                    try:
                        remove_tree(entry.path)
                        repaired.append(entry.path)
                    except OSError:
                        pass
                continue
            if depth < max_depth and entry.is_dir(follow_symlinks=False):
                scan(entry.path, depth + 1)

    scan(graph_root, 1)
    return repaired
