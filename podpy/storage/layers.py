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
import zlib
from typing import BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple

from podpy import log
from podpy.errors import PodpyError
from podpy.record import record

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


# --- a streaming tar reader ---------------------------------------------------------------
#
# tarfile spends most of an unpack parsing headers (~200 us each); images with tens of
# thousands of small files need a leaner reader. This one handles ustar, pax (`x`/`g`,
# incl. SCHILY.xattr), GNU long names (`L`/`K`) and base-256 numbers; sparse files are
# refused. It reads strictly forward, so it works on a pipe of decompressed bytes.

BLOCK = 512
REGTYPES = (b"0", b"\0", b"7")
_ZERO_BLOCK = bytes(BLOCK)


class TarEntry:
    """The subset of tarfile.TarInfo the applier uses."""

    __slots__ = (
        "name",
        "linkname",
        "mode",
        "uid",
        "gid",
        "size",
        "mtime",
        "type",
        "devmajor",
        "devminor",
        "pax_headers",
    )

    def __init__(self) -> None:
        self.pax_headers: Dict[str, object] = {}

    def isdir(self) -> bool:
        return self.type == b"5"

    def isreg(self) -> bool:
        return self.type in REGTYPES

    def issym(self) -> bool:
        return self.type == b"2"

    def islnk(self) -> bool:
        return self.type == b"1"

    def ischr(self) -> bool:
        return self.type == b"3"

    def isblk(self) -> bool:
        return self.type == b"4"

    def isfifo(self) -> bool:
        return self.type == b"6"


def _nts(field: bytes) -> str:
    end = field.find(b"\0")
    return (field if end < 0 else field[:end]).decode("utf-8", "surrogateescape")


def _number(field: bytes, what: str) -> int:
    if field[:1] and field[0] & 0x80:
        # GNU base-256 for values that do not fit in octal (large sizes, ids).
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        return value
    try:
        return int(field.rstrip(b"\0 ") or b"0", 8)  # the common "0000644\0" shape
    except ValueError:
        pass
    text = field.replace(b"\0", b" ").strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise LayerError(f"layer tar has an invalid {what} field {text!r}") from None


def _parse_pax(data: bytes) -> Dict[str, object]:
    """`<len> key=value\\n` records; xattr values stay bytes, others become text."""
    out: Dict[str, object] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise LayerError("layer tar has a malformed pax header") from None
        if length <= 0:
            raise LayerError("layer tar has a malformed pax header")
        record = data[space + 1 : pos + length - 1]
        key, sep, value = record.partition(b"=")
        if not sep:
            raise LayerError("layer tar has a malformed pax record")
        name = key.decode("utf-8", "surrogateescape")
        out[name] = (
            value if name.startswith("SCHILY.xattr.") else value.decode("utf-8", "surrogateescape")
        )
        pos += length
    return out


class TarReader:
    """Iterate entries of a tar stream; read an entry's data with read() before moving on."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self._remaining = 0
        self._padding = 0
        self._global: Dict[str, object] = {}

    def _read_exact(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise LayerError("layer tar ended unexpectedly (truncated layer?)")
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            chunk = self.stream.read(min(n, CHUNK_SIZE))
            if not chunk:
                raise LayerError("layer tar ended unexpectedly (truncated layer?)")
            n -= len(chunk)

    def read(self, n: int) -> bytes:
        n = min(n, self._remaining)
        if n <= 0:
            return b""
        data = self._read_exact(n)
        self._remaining -= n
        return data

    def _header(self) -> Optional[bytes]:
        header = self.stream.read(BLOCK)
        if not header or header == _ZERO_BLOCK:
            return None  # end of archive (or an archive without end marker)
        if len(header) != BLOCK:
            raise LayerError("layer tar ended unexpectedly (truncated layer?)")
        stored = _number(header[148:156], "checksum")
        unsigned = sum(header) - sum(header[148:156]) + 8 * 32
        if stored != unsigned:
            signed = unsigned - 2 * sum(b for b in header if b > 127)
            if stored != signed:
                raise LayerError("layer tar has a bad header checksum (corrupt layer?)")
        return header

    def __iter__(self) -> Iterator[TarEntry]:
        pax: Dict[str, object] = {}
        long_name: Optional[str] = None
        long_link: Optional[str] = None
        while True:
            self._skip(self._remaining + self._padding)
            self._remaining = self._padding = 0
            header = self._header()
            if header is None:
                return
            kind = header[156:157]
            size = _number(header[124:136], "size")
            if kind in (b"x", b"g", b"L", b"K"):
                if size > 16 * 1024 * 1024:
                    raise LayerError("layer tar has an oversized extended header")
                data = self._read_exact(size)
                self._skip(-size % BLOCK)
                if kind == b"x":
                    pax.update(_parse_pax(data))
                elif kind == b"g":
                    self._global.update(_parse_pax(data))
                elif kind == b"L":
                    long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                else:
                    long_link = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            if kind == b"S" or (pax and any(str(k).startswith("GNU.sparse.") for k in pax)):
                raise LayerError("layer tar contains a sparse file, which is not supported")
            entry = TarEntry()
            name = _nts(header[0:100])
            if header[257:263] == b"ustar\0" and header[345:346] != b"\0":
                name = _nts(header[345:500]) + "/" + name
            entry.name = name
            entry.linkname = _nts(header[157:257])
            entry.mode = _number(header[100:108], "mode")
            entry.uid = _number(header[108:116], "uid")
            entry.gid = _number(header[116:124], "gid")
            entry.mtime = _number(header[136:148], "mtime")
            entry.type = kind
            if kind in (b"3", b"4"):
                entry.devmajor = _number(header[329:337], "devmajor")
                entry.devminor = _number(header[337:345], "devminor")
            else:
                entry.devmajor = entry.devminor = 0
            entry.size = size
            merged = {**self._global, **pax} if self._global else pax
            if merged:
                entry.pax_headers = merged
                if "path" in merged:
                    entry.name = str(merged["path"])
                if "linkpath" in merged:
                    entry.linkname = str(merged["linkpath"])
                for key in ("uid", "gid", "size"):
                    if key in merged:
                        try:
                            setattr(entry, key, int(str(merged[key])))
                        except ValueError:
                            raise LayerError(f"layer tar has an invalid pax {key}") from None
                if "mtime" in merged:
                    try:
                        entry.mtime = float(str(merged["mtime"]))
                    except ValueError:
                        raise LayerError("layer tar has an invalid pax mtime") from None
            if long_name is not None:
                entry.name = long_name
            if long_link is not None:
                entry.linkname = long_link
            pax, long_name, long_link = {}, None, None
            # `size` bytes of data follow the header (pax may override the field); only a
            # regular file's data is handed out, anything else is skipped.
            data_len = entry.size
            if kind in REGTYPES:
                self._remaining, self._padding = data_len, -data_len % BLOCK
            else:
                self._remaining, self._padding = 0, data_len + (-data_len % BLOCK)
            yield entry


# --- safe path handling -------------------------------------------------------------------


def clean_entry_name(name: str) -> List[str]:
    """Split a tar member name into safe components; refuse `..`, strip `/` and `./`."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayerError(f'layer entry "{name}" refers outside the layer (".." component)')
    if "\x00" in name:
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@record
class ApplyResult:
    diff_id: str
    size: int  # bytes of the uncompressed tar stream
    skipped_devices: int = 0


@record
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
        self._uid = os.geteuid()
        self._gid = os.getegid()

    def apply(self, raw: BinaryIO) -> ApplyResult:
        uncompressed = open_uncompressed(raw)
        hashing = HashingReader(uncompressed)
        root_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        dirs = _DirCache(root_fd)
        pending: Dict[Tuple[str, ...], _PendingDir] = {}
        old_umask = os.umask(0)
        try:
            try:
                archive = TarReader(io.BufferedReader(hashing, CHUNK_SIZE))
                for member in archive:
                    self._apply_member(archive, member, dirs, pending)
                hashing.drain()
            except (EOFError, zlib.error, gzip.BadGzipFile) as err:
                raise LayerError(f"layer is not a valid tar stream: {err}") from err
            for entry in sorted(pending.values(), key=lambda p: len(p.parts), reverse=True):
                self._finish_dir(dirs, entry)
        finally:
            os.umask(old_umask)
            dirs.close()
            os.close(root_fd)
        return ApplyResult(hashing.digest, hashing.count, self.skipped_devices)

    def _apply_member(
        self,
        archive: TarReader,
        member: TarEntry,
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
        # Create first and look only on EEXIST: an unpack target starts empty, so the
        # common case costs no extra stat (this loop runs once per file of an image).
        try:
            self._create(archive, member, parts, parent_fd, base, dirs, pending)
        except FileExistsError:
            existing = _lstat_at(parent_fd, base)
            if existing is not None:
                if member.isdir() and stat.S_ISDIR(existing.st_mode):
                    self._update_dir(member, parts, dirs, pending)
                    return
                dirs.forget(parts)
                _remove_at(parent_fd, base, existing)
            self._create(archive, member, parts, parent_fd, base, dirs, pending)

    def _create(
        self,
        archive: TarReader,
        member: TarEntry,
        parts: List[str],
        parent_fd: int,
        base: str,
        dirs: _DirCache,
        pending: Dict[Tuple[str, ...], _PendingDir],
    ) -> None:
        if member.isdir():
            os.mkdir(base, 0o700, dir_fd=parent_fd)
            self._update_dir(member, parts, dirs, pending)
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

    def _update_dir(
        self,
        member: TarEntry,
        parts: List[str],
        dirs: _DirCache,
        pending: Dict[Tuple[str, ...], _PendingDir],
    ) -> None:
        fd = dirs.open_dir(parts, create=False, entry=member.name)
        self._own(fd, None, member)
        self._xattrs(fd, member)
        # Modes and times of directories are set at the end: a read-only directory
        # must still accept its entries, and writing entries changes its mtime.
        pending[tuple(parts)] = _PendingDir(tuple(parts), member.mode & 0o7777, member.mtime)

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

    def _write_file(self, archive: TarReader, member: TarEntry, parent_fd: int, base: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        mode = member.mode & 0o7777
        # apply() runs with umask 0, so the permission bits are right from the start.
        fd = os.open(base, flags, mode & 0o777, dir_fd=parent_fd)
        try:
            if member.size:
                remaining = member.size
                while remaining > 0:
                    chunk = archive.read(min(CHUNK_SIZE, remaining))
                    if not chunk:
                        raise LayerError(f"layer entry {member.name}: unexpected end of data")
                    _write_all(fd, chunk)
                    remaining -= len(chunk)
            changed_owner = self._own(fd, None, member)
            self._xattrs(fd, member)
            if mode & 0o7000 or changed_owner:
                os.chmod(fd, mode)  # chown clears set-id bits; put them back after it
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def _hardlink(self, member: TarEntry, parent_fd: int, base: str, dirs: _DirCache) -> None:
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

    def _special(self, member: TarEntry, parent_fd: int, base: str) -> None:
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

    def _own(self, fd: int, name: Optional[str], member: TarEntry) -> bool:
        """Give the entry the tar's owner; False when nothing had to change."""
        if not self.keep_ownership or (member.uid == self._uid and member.gid == self._gid):
            return False
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
        return True

    def _xattrs(self, fd: int, member: TarEntry) -> None:
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
