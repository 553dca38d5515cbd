"""Reading TOML config files into dicts, merging them key by key, and typed value access.

Every failure becomes a one-line `ConfigError` that names the file (and the line, for
syntax errors, or the key, for wrong types) so the user knows exactly what to fix.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from podpy.errors import ConfigError

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
    """Parse one file; None when it does not exist. `kind` names the man page for hints."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
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
        return toml.loads(_blank_comment_lines(text))
    except toml.TOMLDecodeError as err:
        raise syntax_error(path, text, err) from err


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
