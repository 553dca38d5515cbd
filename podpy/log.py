"""Podman-style stderr logging (`WARN[0000] ...`) without importing the logging package."""

from __future__ import annotations

import sys
import time

LEVELS = {
    "trace": 0,
    "debug": 1,
    "info": 2,
    "warn": 3,
    "warning": 3,
    "error": 4,
    "fatal": 5,
    "panic": 5,
}
_TAGS = {0: "TRAC", 1: "DEBU", 2: "INFO", 3: "WARN", 4: "ERRO", 5: "FATA"}
_START = time.monotonic()
_level = LEVELS["warn"]
_seen_once: set = set()


def set_level(name: str) -> None:
    global _level
    key = name.lower()
    if key not in LEVELS:
        from podpy.errors import PodpyError

        raise PodpyError(
            f'invalid log level "{name}"',
            hint="use one of: trace, debug, info, warn, error, fatal, panic",
        )
    _level = LEVELS[key]


def enabled(level: int) -> bool:
    return level >= _level


def _emit(level: int, msg: str) -> None:
    if level >= _level:
        secs = int(time.monotonic() - _START)
        sys.stderr.write(f"{_TAGS[level]}[{secs:04d}] {msg}\n")


def debug(msg: str) -> None:
    _emit(1, msg)


def info(msg: str) -> None:
    _emit(2, msg)


def warn(msg: str) -> None:
    _emit(3, msg)


def warn_once(msg: str) -> None:
    if msg not in _seen_once:
        _seen_once.add(msg)
        _emit(3, msg)


def error(msg: str) -> None:
    _emit(4, msg)
