"""Content-addressed blob store: streamed, digest- and size-verified writes, atomic publication."""

from __future__ import annotations

import errno
import os
from typing import BinaryIO, Callable, Iterator, List, Optional, Tuple

from podpy.errors import PodpyError
from podpy.image.manifest import DigestMismatch, new_hasher, validate_digest

CHUNK_SIZE = 1024 * 1024
# A fetch callback: given the offset we already hold, return (stream, offset it starts at).
# Servers that ignore Range answer from 0, and the writer then starts over.
Fetch = Callable[[int], Tuple[BinaryIO, int]]
Progress = Callable[[int], None]


class TransientFetchError(PodpyError):
    """A transfer that broke off in a way a retry may fix (dropped connection, short body)."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_file(directory: str, label: str) -> Tuple[int, str]:
    """An exclusive temporary named so atomic.repair_temporaries can clean it after a crash."""
    from podpy.atomic import temp_sibling

    path = temp_sibling(os.path.join(directory, label))
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path


class BlobStore:
    """Blobs under `root/<hex>` (root is `Paths.blobs_dir`, i.e. `.../blobs/sha256`).

    Temporaries are siblings in `root` (same filesystem) so a killed writer never leaves a
    file under a digest name; publication is fsync + rename.
    """

    def __init__(self, root: str):
        self.root = root
        self.tmp_dir = root

    def _ensure_dirs(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)

    def path(self, digest: str) -> str:
        algorithm, hex_part = validate_digest(digest).split(":", 1)
        if algorithm == "sha256":
            return os.path.join(self.root, hex_part)
        return os.path.join(os.path.dirname(self.root), algorithm, hex_part)

    def has(self, digest: str, size: Optional[int] = None) -> bool:
        try:
            st = os.stat(self.path(digest))
        except OSError:
            return False
        return size is None or st.st_size == size

    def size(self, digest: str) -> int:
        return os.stat(self.path(digest)).st_size

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError as err:
            raise PodpyError(f"blob {digest} is missing from the local store") from err

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def remove(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def digests(self) -> Iterator[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return
        for name in names:
            if len(name) == 64:
                yield "sha256:" + name

    def put_bytes(self, data: bytes, digest: Optional[str] = None) -> str:
        """Store small content (manifests, configs); verifies `digest` when given."""
        hasher = new_hasher(digest or "sha256:")
        hasher.update(data)
        actual = f"{(digest or 'sha256:').split(':', 1)[0]}:{hasher.hexdigest()}"
        if digest and actual != digest:
            raise DigestMismatch(f"digest mismatch: expected {digest}, got {actual}")
        if self.has(actual, len(data)):
            return actual
        self._ensure_dirs()
        fd, tmp = _temp_file(self.tmp_dir, "blob")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._publish(tmp, actual)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return actual

    def _publish(self, tmp: str, digest: str) -> None:
        final = self.path(digest)
        os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
        os.chmod(tmp, 0o644)
        os.rename(tmp, final)
        _fsync_dir(os.path.dirname(final))

    def ingest(
        self,
        digest: str,
        size: Optional[int],
        fetch: Fetch,
        progress: Optional[Progress] = None,
        attempts: int = 5,
    ) -> str:
        """Stream a blob to disk, verifying size and digest as it arrives.

        `fetch(offset)` opens the source at `offset`; a stream that breaks off early
        (TransientFetchError, connection errors, short read) is resumed from what we
        hold, up to `attempts` times. Nothing is stored unless the digest and size match.
        """
        validate_digest(digest)
        if self.has(digest, size):
            if progress and size:
                progress(size)
            return self.path(digest)
        self._ensure_dirs()
        fd, tmp = _temp_file(self.tmp_dir, "blob")
        try:
            with os.fdopen(fd, "wb") as out:
                hasher = new_hasher(digest)
                written = 0
                failures = 0
                while True:
                    try:
                        stream, start = fetch(written)
                    except (TransientFetchError, OSError) as err:
                        failures += 1
                        if failures >= attempts:
                            raise _gave_up(digest, err) from err
                        continue
                    if start != written:
                        # The source restarted from 0: drop what we have and rehash.
                        out.seek(0)
                        out.truncate()
                        hasher = new_hasher(digest)
                        if progress and written:
                            progress(-written)
                        written = 0
                    counter = [written]
                    try:
                        self._copy(stream, out, hasher, counter, size, digest, progress)
                    except (TransientFetchError, OSError) as err:
                        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                            raise
                        failures += 1
                        if failures >= attempts:
                            raise _gave_up(digest, err) from err
                        continue
                    finally:
                        # What reached the file (and the hash) before a break is kept.
                        written = counter[0]
                        _close_quietly(stream)
                    if size is not None and written < size:
                        failures += 1
                        if failures >= attempts:
                            raise PodpyError(
                                f"blob {digest}: connection closed after {written} of {size} bytes"
                            )
                        continue
                    break
                actual = f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}"
                if actual != digest:
                    raise DigestMismatch(
                        f"blob {digest}: digest mismatch: got {actual} ({written} bytes)",
                        hint="the registry served corrupted content; nothing was stored",
                    )
                out.flush()
                os.fsync(out.fileno())
            self._publish(tmp, digest)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return self.path(digest)

    @staticmethod
    def _copy(
        stream: BinaryIO,
        out: BinaryIO,
        hasher,
        counter: List[int],
        size: Optional[int],
        digest: str,
        progress: Optional[Progress],
    ) -> None:
        """Copy until EOF; counter[0] always equals the bytes written and hashed so far."""
        while True:
            chunk = stream.read(CHUNK_SIZE)
            if not chunk:
                return
            written = counter[0] + len(chunk)
            if size is not None and written > size:
                raise DigestMismatch(
                    f"blob {digest}: size mismatch: the registry sent more than the {size} bytes "
                    "the manifest promised",
                    hint="the registry served corrupted content; nothing was stored",
                )
            out.write(chunk)
            hasher.update(chunk)
            counter[0] = written
            if progress:
                progress(len(chunk))

    def put_stream(self, stream: BinaryIO, digest: Optional[str] = None) -> Tuple[str, int]:
        """Store a local stream (load/import); returns (digest, size). Verifies `digest` if given."""
        self._ensure_dirs()
        hasher = new_hasher(digest or "sha256:")
        fd, tmp = _temp_file(self.tmp_dir, "blob")
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            actual = f"{(digest or 'sha256:').split(':', 1)[0]}:{hasher.hexdigest()}"
            if digest and actual != digest:
                raise DigestMismatch(f"digest mismatch: expected {digest}, got {actual}")
            if self.has(actual, size):
                _unlink_quietly(tmp)
            else:
                self._publish(tmp, actual)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return actual, size


def _gave_up(digest: str, err: BaseException) -> PodpyError:
    if isinstance(err, PodpyError):
        return err
    return PodpyError(f"blob {digest}: transfer failed: {err}")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _close_quietly(stream: BinaryIO) -> None:
    try:
        stream.close()
    except Exception:
        pass
