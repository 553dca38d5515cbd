"""The OCIRuntime protocol and its two backends: podpy's built-in runtime and an external runc/crun CLI.

Both take the same bundle, which is what proves the bundle is standard. The engine and the
monitor pick one with `get_runtime(name)`: "podpy"/"builtin" (default), "runc", "crun", or a path.
"""

from __future__ import annotations

import json
import os
import signal

from podpy.errors import MissingTool, NoSuchObject, PodpyError

TYPE_CHECKING = False
if TYPE_CHECKING:  # the built-in runtime's users (the monitor) never pay for these imports
    import subprocess
    from typing import Any, Dict, List, Optional, Protocol, Sequence
else:
    Protocol = object  # a static contract only: typing costs ~5 ms of every container start


class OCIRuntime(Protocol):
    """What podpy needs from an OCI runtime (the runc CLI contract, contracts.md §2).

    create: build the container from `bundle` and leave its init waiting; returns the init pid.
      Without a console socket the caller's stdio (or `stdio`) becomes the process's stdio.
    start: let a `created` container exec process.args. state: the OCI state dict.
    kill: signal the init (all_processes: every process of the container).
    delete: forget a stopped container (force: kill it first); never touches the bundle.
    """

    name: str

    def create(
        self,
        bundle: str,
        cid: str,
        *,
        pid_file: Optional[str] = None,
        console_socket: Optional[str] = None,
        stdio: Optional[Sequence[int]] = None,
        preserve_fds: int = 0,
    ) -> int: ...

    def start(self, cid: str) -> None: ...

    def state(self, cid: str) -> Dict[str, Any]: ...

    def kill(self, cid: str, sig: Any = signal.SIGTERM, all_processes: bool = False) -> None: ...

    def delete(self, cid: str, force: bool = False) -> None: ...


class ExternalRuntime:
    """An OCI runtime binary driven through its runc-compatible CLI."""

    def __init__(self, path: str, root: Optional[str] = None):
        self.path = path
        self.name = os.path.basename(path)
        self.root = root

    def _argv(self, *args: str) -> List[str]:
        argv = [self.path]
        if self.root:
            argv += ["--root", self.root]
        return argv + list(args)

    def _call(
        self, *args: str, stdio: Optional[Sequence[int]] = None, capture: bool = True
    ) -> subprocess.CompletedProcess:
        import subprocess

        kwargs: Dict[str, Any] = {}
        if stdio:
            kwargs = {"stdin": stdio[0], "stdout": stdio[1], "stderr": stdio[2]}
            capture = False
        try:
            result = subprocess.run(
                self._argv(*args),
                capture_output=capture,
                text=True,
                **kwargs,
            )
        except FileNotFoundError as err:
            raise MissingTool(f"OCI runtime {self.path} not found") from err
        if result.returncode != 0:
            message = (result.stderr or "").strip().splitlines()
            detail = message[-1] if message else f"exit status {result.returncode}"
            import re

            found = re.search(r'msg="((?:[^"\\]|\\.)*)"', detail)
            if found:  # logrus text format: time=... level=error msg="..."
                detail = found.group(1).replace('\\"', '"')
            if "does not exist" in detail or "not found" in detail and args[0] != "create":
                raise NoSuchObject(f"{self.name}: {detail}")
            raise PodpyError(f"{self.name}: {self.name} {args[0]} failed: {detail}")
        return result

    def create(
        self,
        bundle: str,
        cid: str,
        *,
        pid_file: Optional[str] = None,
        console_socket: Optional[str] = None,
        stdio: Optional[Sequence[int]] = None,
        preserve_fds: int = 0,
    ) -> int:
        import shutil
        import subprocess
        import tempfile

        # The container inherits create's stdio, so errors are read from runc's --log file
        # instead of a stderr pipe (which the container would keep open).
        scratch = tempfile.mkdtemp(prefix="podpy-oci-")
        if pid_file is None:
            pid_file = os.path.join(scratch, "pid")
        log_file = os.path.join(scratch, "log.json")
        argv = [self.path, "--log", log_file, "--log-format", "json"]
        if self.root:
            argv += ["--root", self.root]
        argv += ["create", "--bundle", os.path.abspath(bundle), "--pid-file", pid_file]
        if console_socket:
            argv += ["--console-socket", console_socket]
        if preserve_fds:
            argv += ["--preserve-fds", str(preserve_fds)]
        argv.append(cid)
        kwargs: Dict[str, Any] = {}
        if stdio:
            kwargs = {"stdin": stdio[0], "stdout": stdio[1], "stderr": stdio[2]}
        try:
            try:
                code = subprocess.run(argv, **kwargs).returncode
            except FileNotFoundError as err:
                raise MissingTool(f"OCI runtime {self.path} not found") from err
            if code != 0:
                raise _create_error(self.name, _last_log_message(log_file))
            with open(pid_file) as f:
                return int(f.read().strip())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def start(self, cid: str) -> None:
        self._call("start", cid)

    def state(self, cid: str) -> Dict[str, Any]:
        return json.loads(self._call("state", cid).stdout)

    def kill(self, cid: str, sig: Any = signal.SIGTERM, all_processes: bool = False) -> None:
        args = (
            ["kill"]
            + (["--all"] if all_processes else [])
            + [cid, str(int(sig) if isinstance(sig, int) else sig)]
        )
        self._call(*args)

    def delete(self, cid: str, force: bool = False) -> None:
        self._call("delete", *(["--force"] if force else []), cid)


def _create_error(name: str, detail: str) -> PodpyError:
    """podman's mapping of runtime errors: not found -> 127, not executable -> 126."""
    from podpy.errors import CannotInvoke, CommandNotFound

    prefix = f"{name}: " + (
        "" if detail.startswith(f"{name} create failed") else f"{name} create failed: "
    )
    if (
        "executable file not found" in detail
        or "no such file or directory" in detail
        and "exec:" in detail
    ):
        return CommandNotFound(
            prefix + detail + ": OCI runtime attempted to invoke a command that was not found"
        )
    if "permission denied" in detail and "exec:" in detail:
        return CannotInvoke(prefix + detail + ": OCI permission denied")
    return PodpyError(prefix + detail)


def _last_log_message(path: str) -> str:
    """The last error message of a runc-style JSON log (one object per line)."""
    message = "unknown error"
    try:
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") in ("error", "fatal") and entry.get("msg"):
                    message = entry["msg"]
    except OSError:
        pass
    return message


BUILTIN_NAMES = ("podpy", "builtin", "", None)


def get_runtime(name: Optional[str] = None, root: Optional[str] = None) -> OCIRuntime:
    """The runtime for `--runtime NAME|PATH` (default: the built-in one)."""
    if name in BUILTIN_NAMES:
        from podpy.runtime.builtin import BuiltinRuntime

        return BuiltinRuntime(root)
    assert name is not None
    import shutil

    path = name if os.sep in name else shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        raise MissingTool(
            f'could not find a working binary for OCI runtime "{name}"',
            hint="install it, give its full path, or use the built-in runtime (--runtime podpy)",
        )
    return ExternalRuntime(path, root)
