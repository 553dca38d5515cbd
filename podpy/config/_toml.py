"""Reading TOML config files into dicts, merging them key by key, and typed value access.

Every failure becomes a one-line `ConfigError` that names the file (and the line, for
syntax errors, or the key, for wrong types) so the user knows exactly what to fix.
"""

from __future__ import annotations

import errno
import marshal
import os
import re
import stat
import sys
import time

from podpy.errors import ConfigError

TYPE_CHECKING = False  # typing costs every command's start-up; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    KeyPath = Tuple[str, ...]


class LazyRegex:
    """A regex compiled on first use: compiling at import costs every command's start-up,
    and most never need the pattern (error messages, optional keys)."""

    __slots__ = ("_pattern", "_flags", "_compiled")

    def __init__(self, pattern: str, flags: int = 0):
        self._pattern = pattern
        self._flags = flags
        self._compiled: Optional[re.Pattern] = None

    def __getattr__(self, name: str) -> Any:  # .match, .search, .sub, ...
        if self._compiled is None:
            self._compiled = re.compile(self._pattern, self._flags)
        return getattr(self._compiled, name)


_AT_LINE = LazyRegex(r"^(?P<what>.*?)\s*\(at line (?P<line>\d+), column \d+\)\s*$", re.S)
_COMMENT_LINE = LazyRegex(r"^[ \t]*#[^\n]*", re.M)
_AT_END = LazyRegex(r"^(?P<what>.*?)\s*\(at end of document\)\s*$", re.S)


def _toml_module() -> Any:
    # tomllib is stdlib from 3.11; below that the zipapp vendors the pure tomli wheel.
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli

    return tomli


def syntax_error(path: str, text: str, err: Exception) -> ConfigError:
    """Turn a TOMLDecodeError into `<file>: line N: <what>` (tomllib and tomli share the format)."""
    message = str(err)
    line: Optional[int] = getattr(err, "lineno", None)
    what = getattr(err, "msg", None)
    match = _AT_LINE.match(message)
    if match:
        line = line or int(match.group("line"))
        what = what or match.group("what")
    else:
        end = _AT_END.match(message)
        if end:
            # "end of document" errors (an unclosed array or string) point past the last line.
            line = line or max(1, len(text.splitlines()))
            what = what or end.group("what")
    if line is None:
        line = 1
    return ConfigError(
        f"{path}: line {line}: {what or message}",
        hint="fix the TOML syntax on that line, or move the file away",
    )


def _blank_comment_lines(text: str) -> str:
    """Empty the full-line comments, keeping line numbers: the parser is slow on them.

    Distribution files are mostly comments (Debian's containers.conf: 780 of 830 lines,
    ~7 ms to skip). Only safe without multi-line strings, where `#` could be content.
    """
    if '"""' in text or "'''" in text:
        return text
    return _COMMENT_LINE.sub("", text)


def read_toml(path: str, kind: str) -> Optional[Dict[str, Any]]:
    """Parse one file; None when it does not exist. `kind` names the man page for hints.

    A parsed document comes from the per-user cache (see `_cached`) when the file is the one
    that was parsed before, so most runs import no TOML parser at all.
    """
    try:
        before = os.stat(path)
    except OSError:
        before = None  # the read below reports the problem exactly as without a cache
    key = cache_file = None
    if before is not None and stat.S_ISREG(before.st_mode):
        cache_file = _cache_file(path)
        if cache_file is not None:
            key = _identity(path, before)
            document = _cached(cache_file, key)
            if document is not None:
                return document
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
            after = os.fstat(handle.fileno())
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if err.errno == errno.EISDIR:
            raise ConfigError(
                f"{path}: is a directory, expected a {kind} file",
                hint="remove the directory or replace it with a TOML file",
            ) from err
        raise ConfigError(
            f"{path}: cannot read: {err.strerror or err}",
            hint="fix the file's permissions or move it away",
        ) from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: invalid UTF-8 (byte 0x{raw[err.start]:02x})",
            hint="TOML files must be UTF-8; re-save the file as UTF-8",
        ) from err
    toml = _toml_module()
    try:
        document = toml.loads(_blank_comment_lines(text))
    except toml.TOMLDecodeError as err:
        raise syntax_error(path, text, err) from err
    # Only a file that did not change while we read it (same identity before and after,
    # and not touched within the timestamp granularity) is worth remembering.
    if (
        cache_file is not None
        and key is not None
        and _identity(path, after) == key
        and not _too_recent(after)
        and _marshal_safe(document)
    ):
        _queue(cache_file, key, document)
    return document


# --- the parsed-document cache -------------------------------------------------------------
#
# tomllib costs ~8 ms to import and ~1.5 ms to parse Debian's containers.conf, on every
# command. The parsed document is kept per user in $XDG_CACHE_HOME/podpy/toml (default
# ~/.cache/podpy/toml; root: /root/.cache/podpy/toml), one file per config file. The place
# depends on nothing the config sets (storage.conf moves the run root, so that cannot hold
# it) and belongs to the user: a rootless podpy inside its own user namespace keeps the
# user's HOME and sees the same files as owned by its euid 0. Anything unusual (no HOME, an
# unwritable or foreign directory, a file of another uid, a bad header or checksum, another
# Python, a different file identity) means parsing the file as if there were no cache.
#
# An entry is keyed by the file's identity: absolute path, device, inode, size, mtime and
# ctime in ns (ctime cannot be set back by utime, so an edit that keeps size and mtime still
# misses; a new file under the same name has another inode or ctime). A file changed within
# the last _RACY_NS is not stored: timestamps come from a coarse clock, so a second edit in
# the same tick could keep every field (git's "racily clean" problem).
# Documents with TOML dates and times are never stored: marshal cannot hold them.
#
# New entries are only written by flush_cache(), which podpy.config.load() calls once the
# whole configuration has loaded and validated: a command that fails on a broken file
# leaves nothing on disk, not even an entry for the good files read before it.

_CACHE_FORMAT = 1
_CACHE_HEADER = (
    f"podpy-toml-cache {_CACHE_FORMAT} {sys.implementation.cache_tag} {marshal.version}\n"
).encode()
_RACY_NS = 2_000_000_000
_MARSHAL_SAFE = (str, int, float, bool)


def _cache_base() -> Optional[str]:
    """$XDG_CACHE_HOME (absolute, as the XDG spec requires) or $HOME/.cache; None if neither."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if base.startswith("/"):
        return base
    home = os.environ.get("HOME", "")
    if home.startswith("/"):
        return os.path.join(home, ".cache")
    return None


def _cache_file(path: str) -> Optional[str]:
    """Where the parsed `path` is kept: its absolute path, escaped into one file name."""
    base = _cache_base()
    if base is None:
        return None
    name = os.path.abspath(path).replace("%", "%25").replace("/", "%2F")
    if len(name) > 200:  # leaves room for the temporary's suffix within NAME_MAX
        return None
    return os.path.join(base, "podpy", "toml", name)


def _identity(path: str, st: os.stat_result) -> tuple:
    return (
        os.path.abspath(path),
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def _too_recent(st: os.stat_result) -> bool:
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    return time.time_ns() - newest < _RACY_NS


def _marshal_safe(value: Any) -> bool:
    """Only str-keyed tables, arrays, strings, numbers and booleans (no TOML dates/times)."""
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and _marshal_safe(v) for k, v in value.items())
    if kind is list:
        return all(_marshal_safe(item) for item in value)
    return kind in _MARSHAL_SAFE


def _cached(cache_file: str, key: tuple) -> Optional[Dict[str, Any]]:
    """The document stored for `key`, or None (missing, foreign, damaged or stale entry)."""
    try:
        with open(cache_file, "rb") as handle:
            st = os.fstat(handle.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None
            data = handle.read()
    except OSError:
        return None
    start = len(_CACHE_HEADER) + 4
    if not data.startswith(_CACHE_HEADER):
        return None
    import zlib  # cheap: built in (Debian) or already loaded by the zipimporter

    body = data[start:]
    if data[start - 4 : start] != zlib.crc32(body).to_bytes(4, "little"):
        return None
    try:
        stored = marshal.loads(body)
    except Exception:  # marshal's errors vary: EOFError, ValueError, TypeError
        return None
    if type(stored) is not tuple or len(stored) != 2 or stored[0] != key:
        return None
    document = stored[1]
    return document if type(document) is dict else None


def _owned(directory: str) -> bool:
    """Whether `directory` (or, while it does not exist yet, its parent) is the euid's."""
    try:
        return os.stat(directory).st_uid == os.geteuid()
    except FileNotFoundError:
        return os.stat(os.path.dirname(directory)).st_uid == os.geteuid()


# Entries parsed by this process and not written yet: (cache file, header + crc + payload).
_PENDING: List[Tuple[str, bytes]] = []


def _queue(cache_file: str, key: tuple, document: Dict[str, Any]) -> None:
    """Serialize now (callers may change the returned document), write in flush_cache()."""
    import zlib  # cheap: built in (Debian) or already loaded by the zipimporter

    try:
        body = marshal.dumps((key, document))
    except ValueError:
        return
    _PENDING.append((cache_file, _CACHE_HEADER + zlib.crc32(body).to_bytes(4, "little") + body))


def flush_cache() -> None:
    """Write the entries queued by read_toml; silently nothing where the cache cannot be
    written. For callers that have loaded a whole configuration without error."""
    if not _PENDING:
        return
    from podpy.atomic import write_atomic

    pending = _PENDING[:]
    del _PENDING[:]
    base = _cache_base()
    try:
        # Only under a base the user owns: root with another user's HOME must not fill
        # (or take over) that user's cache.
        if base is None or not _owned(base):
            return
    except OSError:
        return
    for cache_file, data in pending:
        try:
            os.makedirs(os.path.dirname(cache_file), mode=0o700, exist_ok=True)
            write_atomic(cache_file, data, mode=0o600, durable=False)
        except OSError:
            pass


def drop_in_files(directory: str) -> List[str]:
    """`*.conf` files directly inside `directory`, sorted (podman: alphanumeric, no recursion)."""
    try:
        names = os.listdir(directory)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise ConfigError(
            f"{directory}: cannot list drop-in directory: {err.strerror or err}",
            hint="fix the directory's permissions or move it away",
        ) from err
    found = []
    for name in sorted(names):
        full = os.path.join(directory, name)
        if name.endswith(".conf") and not os.path.isdir(full):
            found.append(full)
    return found


def _is_append_marker(value: Any) -> bool:
    # containers.conf(5): a trailing `{append = true}` element appends the array to the
    # value from earlier files instead of replacing it.
    return isinstance(value, dict) and value.get("append") is True and len(value) == 1


class MergedToml:
    """Several TOML documents layered in order: later keys win, tables merge recursively.

    Remembers which file set each key last so a bad value can be blamed on the right file.
    """

    def __init__(self) -> None:
        self.data: Dict[str, Any] = {}
        self.origin: Dict[KeyPath, str] = {}

    def add(self, document: Dict[str, Any], source: str) -> None:
        self._merge(self.data, document, (), source)

    def _merge(
        self, target: Dict[str, Any], document: Dict[str, Any], prefix: KeyPath, source: str
    ) -> None:
        for key, value in document.items():
            path = prefix + (key,)
            current = target.get(key)
            if isinstance(value, dict) and isinstance(current, dict):
                self._merge(current, value, path, source)
                continue
            if isinstance(value, dict):
                fresh: Dict[str, Any] = {}
                self._merge(fresh, value, path, source)
                target[key] = fresh
            elif isinstance(value, list) and value and _is_append_marker(value[-1]):
                earlier = current if isinstance(current, list) else []
                target[key] = list(earlier) + list(value[:-1])
            else:
                target[key] = value
            self.origin[path] = source

    def source_of(self, path: KeyPath, default: str) -> str:
        return self.origin.get(path, default)


def describe(value: Any) -> str:
    """`string "ten"`, `integer 5`, `array`: how a wrong value is shown in type errors."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'string "{shown}"'
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


class Section:
    """Typed reads of one table (`[engine]`) of a merged document, with podman's defaults."""

    def __init__(self, merged: MergedToml, path: KeyPath, fallback_source: str):
        self._merged = merged
        self._path = path
        self._fallback = fallback_source
        table: Any = merged.data
        for part in path:
            table = table.get(part) if isinstance(table, dict) else None
        self._table: Dict[str, Any] = table if isinstance(table, dict) else {}

    def has(self, key: str) -> bool:
        return key in self._table

    def value(self, key: str) -> Any:
        """The raw value of a key (None if unset), for keys with their own type rules."""
        return self._table.get(key)

    def key_name(self, key: str) -> str:
        return ".".join(self._path + (key,))

    def source(self, key: str) -> str:
        return self._merged.source_of(self._path + (key,), self._fallback)

    def fail(self, key: str, problem: str, hint: Optional[str] = None) -> ConfigError:
        return ConfigError(f"{self.source(key)}: {self.key_name(key)}: {problem}", hint=hint)

    def _get(self, key: str, default: Any, expected: str, check: Callable[[Any], bool]) -> Any:
        if key not in self._table:
            return default
        value = self._table[key]
        if not check(value):
            raise self.fail(key, f"expected {expected}, got {describe(value)}")
        return value

    def string(self, key: str, default: str) -> str:
        return self._get(key, default, "a string", lambda v: isinstance(v, str))

    def optional_string(self, key: str) -> Optional[str]:
        value = self.string(key, "")
        return value or None

    def integer(self, key: str, default: int) -> int:
        return self._get(
            key,
            default,
            "an integer",
            lambda v: isinstance(v, int) and not isinstance(v, bool),
        )

    def boolean(self, key: str, default: bool) -> bool:
        return self._get(key, default, "a boolean (true or false)", lambda v: isinstance(v, bool))

    def strings(self, key: str, default: List[str]) -> List[str]:
        value = self._get(
            key,
            default,
            "an array of strings",
            lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
        )
        return list(value)

    def choice(self, key: str, default: str, allowed: Tuple[str, ...]) -> str:
        value = self.string(key, default)
        if value not in allowed:
            raise self.fail(
                key,
                f'unsupported value "{value}"',
                hint="use one of: " + ", ".join(allowed),
            )
        return value

    def table(self, key: str) -> Dict[str, Any]:
        return self._get(key, {}, "a table", lambda v: isinstance(v, dict))
