"""The OCIRuntime protocol and its two backends: podpy's built-in runtime and an external runc/crun CLI.

Both take the same bundle, which is what proves the bundle is standard. The engine and the
monitor pick one with `get_runtime(name)`: "podpy"/"builtin" (default), "runc", "crun", or a path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from typing import Any, Dict, List, Optional, Sequence

from podpy.errors import MissingTool, NoSuchObject, PodpyError

try:
    from typing import Protocol
except ImportError:  # Python < 3.8 never runs podpy; keeps type checkers honest on 3.9+
    Protocol = object  # type: ignore[assignment,misc]


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
        import tempfile

        own_pid_file = pid_file is None
        if own_pid_file:
            fd, pid_file = tempfile.mkstemp(prefix="podpy-pid-")
            os.close(fd)
        args = ["create", "--bundle", os.path.abspath(bundle), "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if preserve_fds:
            args += ["--preserve-fds", str(preserve_fds)]
        try:
            # stdio must stay untouched for the container: no capture unless stderr is ours.
            if stdio:
                self._call(*args, cid, stdio=stdio)
            else:
                result = subprocess.run(self._argv(*args, cid), stderr=subprocess.PIPE, text=True)
                if result.returncode != 0:
                    raise PodpyError(
                        f"{self.name}: {self.name} create failed: "
                        + ((result.stderr or "").strip().splitlines() or ["?"])[-1]
                    )
            with open(pid_file) as f:
                return int(f.read().strip())
        finally:
            if own_pid_file:
                os.unlink(pid_file)

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


BUILTIN_NAMES = ("podpy", "builtin", "", None)


def get_runtime(name: Optional[str] = None, root: Optional[str] = None) -> OCIRuntime:
    """The runtime for `--runtime NAME|PATH` (default: the built-in one)."""
    if name in BUILTIN_NAMES:
        from podpy.runtime.builtin import BuiltinRuntime

        return BuiltinRuntime(root)
    assert name is not None
    path = name if os.sep in name else shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        raise MissingTool(
            f'could not find a working binary for OCI runtime "{name}"',
            hint="install it, give its full path, or use the built-in runtime (--runtime podpy)",
        )
    return ExternalRuntime(path, root)
