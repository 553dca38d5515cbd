"""Error types shared by every layer; the CLI maps them to one line and an exit code."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

# Exit codes as podman defines them (libpod/define/exec_codes.go).
EXIT_PODPY = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class PodpyError(Exception):
    """A failure podpy can explain in one line, optionally with a hint that names the fix."""

    exit_code = EXIT_PODPY

    def __init__(self, message: str, hint: Optional[str] = None, exit_code: Optional[int] = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


def print_error(err: PodpyError) -> None:
    """podman's error shape: `Error: ...` and, when known, `Hint: ...` on stderr."""
    import sys

    sys.stderr.write(f"Error: {err.message}\n")
    if err.hint:
        sys.stderr.write(f"Hint: {err.hint}\n")


def report_internal_error(err: BaseException) -> int:
    """A bug: one line for the user, the traceback at debug level; podpy's exit code 125."""
    import sys

    from podpy import log

    if log.enabled(log.LEVELS["debug"]):
        import traceback

        traceback.print_exc()
    sys.stderr.write(
        f"Error: internal error: {type(err).__name__}: {err}\n"
        "Hint: rerun with --log-level debug for the traceback, and report it\n"
    )
    return 125


class ConfigError(PodpyError):
    """A configuration file could not be read or parsed."""


class NoSuchObject(PodpyError):
    """A container, image, volume, network or pod that does not exist."""


class AlreadyExists(PodpyError):
    """A name is already taken."""


class InvalidState(PodpyError):
    """The object is in a state that does not allow the operation."""


class MissingTool(PodpyError):
    """A host program podpy needs (newuidmap, slirp4netns, ...) is not installed."""


class CannotInvoke(PodpyError):
    """The container command exists but cannot be executed."""

    exit_code = EXIT_CANNOT_INVOKE


class CommandNotFound(PodpyError):
    """The container command was not found."""

    exit_code = EXIT_NOT_FOUND
