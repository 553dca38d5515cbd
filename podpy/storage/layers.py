"""Layer store: safe, whiteout-aware application of layer tars into per-layer directories.

Each layer is unpacked once into `layers_dir/<chain-id hex>/diff`, built under a temporary
name and renamed into place only after its diff ID checked out, so a killed pull never
leaves a half layer visible. Whiteouts are stored in overlayfs form (a 0:0 character
device for `.wh.NAME`, an `overlay.opaque` xattr for `.wh..wh..opq`; `trusted.` as root,
`user.` rootless, matching overlay's `userxattr`), and `materialize()` applies them when
a copy-based driver (vfs) flattens layers into one tree.

Extraction never follows a symlink or `..`: every parent directory is opened component by
component with O_NOFOLLOW beneath the layer root, absolute names are made relative (like
tar), and entries that would escape are refused.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple

from podpy import log
from podpy.errors import PodpyError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
AUFS_META_PREFIX = ".wh..wh."
CHUNK_SIZE = 1024 * 1024


class UnsafeLayerError(PodpyError):
    """A layer entry that would write outside the layer directory."""


class LayerError(PodpyError):
    """A layer that cannot be applied (corrupt tar, diff ID mismatch, ...)."""


def overlay_xattr_prefix(rootless: bool) -> str:
    return "user.overlay." if rootless else "trusted.overlay."


# --- readers ------------------------------------------------------------------------------


class HashingReader(io.RawIOBase):
    """Passes reads through while hashing and counting them (the uncompressed stream)."""

    def __init__(self, inner: BinaryIO):
        self.inner = inner
        self.hasher = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hasher.update(data)
        self.count += n
        return n

    def drain(self) -> None:
        """Read to EOF so the digest covers trailing padding after the tar end marker."""
        while self.read(CHUNK_SIZE):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


class _ZstdUnsupported(LayerError):
    pass


def open_uncompressed(raw: BinaryIO) -> BinaryIO:
    """Sniff gzip / zstd / plain tar and return a reader of the uncompressed stream."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
    head = buffered.peek(4)[:4]
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if head == b"\x28\xb5\x2f\xfd":
        raise _ZstdUnsupported(
            "zstd-compressed layers are not supported",
            hint="podpy has no zstd decoder; use a gzip or uncompressed variant of the image",
        )
    return buffered  # type: ignore[return-value]


# --- safe path handling -------------------------------------------------------------------


def clean_entry_name(name: str) -> List[str]:
    """Split a tar member name into safe components; refuse `..`, strip `/` and `./`."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeLayerError(f'layer entry "{name}" refers outside the layer (".." component)')
    if any("\x00" in p for p in parts):
        raise UnsafeLayerError(f'layer entry "{name}" contains a NUL byte')
    return parts


class _DirCache:
    """Opens directories beneath the root without following symlinks, caching the fds."""

    def __init__(self, root_fd: int):
        self.root_fd = root_fd
        self.fds: Dict[Tuple[str, ...], int] = {(): root_fd}

    def close(self) -> None:
        for key, fd in self.fds.items():
            if key:
                os.close(fd)
        self.fds = {(): self.root_fd}

    def forget(self, parts: Sequence[str]) -> None:
        """Drop cached fds at or below `parts` (the entry was removed or replaced)."""
        prefix = tuple(parts)
        for key in [k for k in self.fds if k[: len(prefix)] == prefix and k]:
            os.close(self.fds.pop(key))

    def open_dir(self, parts: Sequence[str], create: bool, entry: str) -> int:
        key = tuple(parts)
        if key in self.fds:
            return self.fds[key]
        parent = self.open_dir(parts[:-1], create, entry)
        name = parts[-1]
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, flags, dir_fd=parent)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeLayerError(
                    f'layer entry "{entry}" would be written through the symlink or '
                    f'non-directory "{"/".join(parts)}"'
                ) from err
            raise
        self.fds[key] = fd
        return fd


def _lstat_at(dir_fd: int, name: str) -> Optional[os.stat_result]:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove_at(dir_fd: int, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        # /proc/self/fd/N resolves the (already safely opened) parent; rmtree never
        # follows symlinks inside the tree it removes.
        shutil.rmtree(f"/proc/self/fd/{dir_fd}/{name}")
    else:
        os.unlink(name, dir_fd=dir_fd)


# --- application --------------------------------------------------------------------------


@dataclass
class ApplyResult:
    diff_id: str
    size: int  # bytes of the uncompressed tar stream
    skipped_devices: int = 0


@dataclass
class _PendingDir:
    parts: Tuple[str, ...]
    mode: int
    mtime: float


class LayerApplier:
    """Applies one layer tar into `target` (which must exist) as an overlay-format layer."""

    def __init__(self, target: str, rootless: bool, keep_ownership: bool = True):
        self.target = target
        self.rootless = rootless
        self.keep_ownership = keep_ownership
        self.xattr_prefix = overlay_xattr_prefix(rootless)
        self.skipped_devices = 0
        self._warned_chown = False

    def apply(self, raw: BinaryIO) -> ApplyResult:
        uncompressed = open_uncompressed(raw)
        hashing = HashingReader(uncompressed)
        root_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        dirs = _DirCache(root_fd)
        pending: Dict[Tuple[str, ...], _PendingDir] = {}
        try:
            try:
                with tarfile.open(fileobj=hashing, mode="r|", errorlevel=1) as archive:  # type: ignore[call-overload]
                    for member in archive:
                        self._apply_member(archive, member, dirs, pending)
                hashing.drain()
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
                raise LayerError(f"layer is not a valid tar stream: {err}") from err
            for entry in sorted(pending.values(), key=lambda p: len(p.parts), reverse=True):
                self._finish_dir(dirs, entry)
        finally:
            dirs.close()
            os.close(root_fd)
        return ApplyResult(hashing.digest, hashing.count, self.skipped_devices)

    def _apply_member(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        dirs: _DirCache,
        pending: Dict[Tuple[str, ...], _PendingDir],
    ) -> None:
        parts = clean_entry_name(member.name)
        if not parts:
            # The root directory itself ("./"): keep its attributes for the end.
            if member.isdir():
                pending[()] = _PendingDir((), member.mode & 0o7777, member.mtime)
            return
        *parent, base = parts
        parent_fd = dirs.open_dir(parent, create=True, entry=member.name)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent_fd, parent, base, member.name, dirs)
            return
        existing = _lstat_at(parent_fd, base)
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            dirs.forget(parts)
            _remove_at(parent_fd, base, existing)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(base, 0o700, dir_fd=parent_fd)
            fd = dirs.open_dir(parts, create=False, entry=member.name)
            self._own(fd, None, member)
            self._xattrs(fd, member)
            pending[tuple(parts)] = _PendingDir(tuple(parts), member.mode & 0o7777, member.mtime)
        elif member.isreg():
            self._write_file(archive, member, parent_fd, base)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=parent_fd)
            self._own(parent_fd, base, member)
            os.utime(base, (member.mtime, member.mtime), dir_fd=parent_fd, follow_symlinks=False)
        elif member.islnk():
            self._hardlink(member, parent_fd, base, dirs)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._special(member, parent_fd, base)
        else:
            log.debug(f"layer entry {member.name}: unsupported tar type {member.type!r}, skipped")

    def _whiteout(
        self, parent_fd: int, parent: List[str], base: str, entry: str, dirs: _DirCache
    ) -> None:
        if base == OPAQUE_MARKER:
            os.setxattr(parent_fd, self.xattr_prefix + "opaque", b"y")
            return
        if base.startswith(AUFS_META_PREFIX):
            return  # aufs hard-link bookkeeping (.wh..wh.plnk etc.): no meaning here
        hidden = base[len(WHITEOUT_PREFIX) :]
        if not hidden or hidden in (".", ".."):
            raise UnsafeLayerError(f'layer entry "{entry}" is an invalid whiteout')
        existing = _lstat_at(parent_fd, hidden)
        if existing is not None:
            dirs.forget(list(parent) + [hidden])
            _remove_at(parent_fd, hidden, existing)
        # A 0:0 char device is overlayfs' whiteout; since Linux 5.8 an unprivileged
        # user namespace may create exactly this device.
        os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent_fd)

    def _write_file(
        self, archive: tarfile.TarFile, member: tarfile.TarInfo, parent_fd: int, base: str
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=parent_fd)
        try:
            source = archive.extractfile(member)
            if source is not None:
                remaining = member.size
                with os.fdopen(os.dup(fd), "wb", buffering=0) as out:
                    while remaining > 0:
                        chunk = source.read(min(CHUNK_SIZE, remaining))
                        if not chunk:
                            raise LayerError(f"layer entry {member.name}: unexpected end of data")
                        out.write(chunk)
                        remaining -= len(chunk)
            self._own(fd, None, member)
            self._xattrs(fd, member)
            os.chmod(fd, member.mode & 0o7777)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def _hardlink(
        self, member: tarfile.TarInfo, parent_fd: int, base: str, dirs: _DirCache
    ) -> None:
        target_parts = clean_entry_name(member.linkname)
        if not target_parts:
            raise UnsafeLayerError(f'layer entry "{member.name}" is a hard link to the layer root')
        *target_parent, target_base = target_parts
        try:
            target_dir = dirs.open_dir(target_parent, create=False, entry=member.linkname)
            target_st = _lstat_at(target_dir, target_base)
        except FileNotFoundError:
            target_st = None
        if target_st is None:
            raise UnsafeLayerError(
                f'layer entry "{member.name}" is a hard link to "{member.linkname}", '
                "which is not in this layer"
            )
        if stat.S_ISDIR(target_st.st_mode):
            raise UnsafeLayerError(f'layer entry "{member.name}" is a hard link to a directory')
        os.link(
            target_base, base, src_dir_fd=target_dir, dst_dir_fd=parent_fd, follow_symlinks=False
        )

    def _special(self, member: tarfile.TarInfo, parent_fd: int, base: str) -> None:
        if member.isfifo():
            kind = stat.S_IFIFO
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        try:
            os.mknod(
                base,
                kind | (member.mode & 0o7777),
                os.makedev(member.devmajor, member.devminor),
                dir_fd=parent_fd,
            )
        except PermissionError:
            # Rootless: only 0:0 and fifos can be created; podman skips the rest too.
            self.skipped_devices += 1
            log.debug(f"layer entry {member.name}: cannot create a device node here, skipped")
            return
        self._own(parent_fd, base, member)
        os.utime(base, (member.mtime, member.mtime), dir_fd=parent_fd, follow_symlinks=False)

    def _own(self, fd: int, name: Optional[str], member: tarfile.TarInfo) -> None:
        if not self.keep_ownership:
            return
        try:
            if name is None:
                os.chown(fd, member.uid, member.gid)
            else:
                os.chown(name, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.EPERM):
                raise
            if not self._warned_chown:
                self._warned_chown = True
                log.warn(
                    f"layer entry {member.name}: cannot set owner {member.uid}:{member.gid} "
                    "(not mapped in this user namespace); keeping the default owner"
                )

    def _xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for key, value in (member.pax_headers or {}).items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr.") :]
            if attr.startswith(("trusted.overlay.", "user.overlay.")):
                continue  # never let a layer forge whiteouts or opaque markers
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            try:
                os.setxattr(fd, attr, raw)
            except OSError as err:
                log.debug(f"layer entry {member.name}: xattr {attr} not set: {err.strerror}")

    def _finish_dir(self, dirs: _DirCache, entry: _PendingDir) -> None:
        try:
            fd = dirs.open_dir(entry.parts, create=False, entry="/".join(entry.parts))
        except (FileNotFoundError, UnsafeLayerError):
            return  # replaced or removed by a later entry
        os.chmod(fd, entry.mode)
        os.utime(fd, (entry.mtime, entry.mtime))


def apply_layer(
    raw: BinaryIO, target: str, rootless: bool, keep_ownership: bool = True
) -> ApplyResult:
    """Apply the (possibly compressed) layer stream `raw` into the existing dir `target`."""
    return LayerApplier(target, rootless, keep_ownership).apply(raw)


# --- flattening for copy-based drivers ------------------------------------------------------


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str, rootless: bool) -> bool:
    try:
        return (
            os.getxattr(path, overlay_xattr_prefix(rootless) + "opaque", follow_symlinks=False)
            == b"y"
        )
    except OSError:
        return False


def materialize(layer_dirs: Sequence[str], dest: str, rootless: bool) -> None:
    """Flatten overlay-format layer dirs (lowest first) into `dest`, applying whiteouts.

    The copy-based (vfs) driver's container rootfs; hard links inside one layer are kept.
    """
    os.makedirs(dest, exist_ok=True)
    for layer in layer_dirs:
        _merge_tree(layer, dest, rootless)


def _merge_tree(src: str, dst: str, rootless: bool) -> None:
    links: Dict[Tuple[int, int], str] = {}
    for current, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(current, src)
        out_dir = dst if rel == "." else os.path.join(dst, rel)
        if rel != "." and _is_opaque(current, rootless):
            for child in os.listdir(out_dir):
                _remove_path(os.path.join(out_dir, child))
        for name in list(dirnames) + filenames:
            source = os.path.join(current, name)
            target = os.path.join(out_dir, name)
            st = os.lstat(source)
            if _is_whiteout(st):
                _remove_path(target)
                continue
            existing = _lstat_or_none(target)
            if stat.S_ISDIR(st.st_mode):
                if existing is not None and not stat.S_ISDIR(existing.st_mode):
                    _remove_path(target)
                    existing = None
                if existing is None:
                    os.mkdir(target, 0o700)
                shutil.copystat(source, target, follow_symlinks=False)
                _copy_owner(st, target)
                continue
            if existing is not None:
                _remove_path(target)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], target)
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(source), target)
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(source, target, follow_symlinks=False)
            else:
                os.mknod(target, st.st_mode, st.st_rdev)
            _copy_owner(st, target)
            if st.st_nlink > 1:
                links[key] = target
        # A symlinked dir in the source is a file to os.walk; real dirs are walked next.
    _restore_dir_times(src, dst)


def _restore_dir_times(src: str, dst: str) -> None:
    for current, _dirs, _files in os.walk(src, topdown=False):
        rel = os.path.relpath(current, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        try:
            st = os.lstat(current)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        except OSError:
            pass


def _copy_owner(st: os.stat_result, target: str) -> None:
    try:
        os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
    except OSError:
        pass
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, stat.S_IMODE(st.st_mode))


def _lstat_or_none(path: str) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove_path(path: str) -> None:
    st = _lstat_or_none(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# --- the store ----------------------------------------------------------------------------


class LayerStore:
    """Per-layer directories keyed by chain ID under `Paths.layers_dir`."""

    def __init__(self, root: str):
        self.root = root

    def layer_dir(self, chain_id: str) -> str:
        return os.path.join(self.root, chain_id.split(":", 1)[-1])

    def diff_dir(self, chain_id: str) -> str:
        return os.path.join(self.layer_dir(chain_id), "diff")

    def exists(self, chain_id: str) -> bool:
        return os.path.isdir(self.diff_dir(chain_id))

    def new_temp_dir(self, chain_id: str) -> str:
        """A fresh temporary sibling to unpack into (atomic.repair_temporaries cleans it
        up if this process dies)."""
        from podpy.atomic import temp_sibling

        os.makedirs(self.root, mode=0o700, exist_ok=True)
        tmp = temp_sibling(self.layer_dir(chain_id))
        os.mkdir(tmp, 0o755)
        os.mkdir(os.path.join(tmp, "diff"), 0o755)
        return tmp

    def commit(self, tmp: str, chain_id: str) -> bool:
        """Rename a finished temp dir into place; False if another process won the race."""
        final = self.layer_dir(chain_id)
        try:
            os.rename(tmp, final)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False
            raise
        _fsync_path(self.root)
        return True

    def chain_ids(self) -> List[str]:
        try:
            return ["sha256:" + n for n in os.listdir(self.root) if len(n) == 64]
        except FileNotFoundError:
            return []


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unpack_into_temp(
    blob_path: str, tmp_dir: str, expected_diff_id: str, rootless: bool
) -> ApplyResult:
    """Unpack `blob_path` into `tmp_dir/diff` and check the diff ID (run inside the userns)."""
    with open(blob_path, "rb") as raw:
        result = apply_layer(raw, os.path.join(tmp_dir, "diff"), rootless)
    if result.diff_id != expected_diff_id:
        raise LayerError(
            f"layer {blob_path}: uncompressed content {result.diff_id} does not match "
            f"the config's diff_id {expected_diff_id}",
            hint="the image is corrupt or was tampered with",
        )
    return result
