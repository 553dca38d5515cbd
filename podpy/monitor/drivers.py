"""How the monitor drives an OCI runtime for its one container (built-in or runc/crun/PATH),
including the console socket that hands over the pty master when the container has a terminal."""

from __future__ import annotations

import os

from podpy.monitor.main import MonitorError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any, Dict, List, Optional


class RuntimeDriver:
    def __init__(self, spec: Dict[str, Any]):
        from podpy.runtime.oci import get_runtime

        self.cid: str = spec["id"]
        self.bundle: str = spec["bundle"]
        self.tty: bool = spec.get("tty", False)
        self.run_dir: str = spec["run_dir"]
        self.runtime = get_runtime(spec.get("runtime"), spec.get("runtime_root"))
        self.console_master = -1
        self.cgroup_dir: Optional[str] = None

    def create(self, stdio: List[int]) -> int:
        from podpy.errors import PodpyError

        console_path = None
        listener = None
        if self.tty:
            # The runtime connect()s to this path itself: keep it under sun_path's 108 bytes.
            console_path = os.path.join(
                os.path.dirname(os.path.dirname(self.run_dir)), f"console-{self.cid[:16]}.sock"
            )
            try:
                os.unlink(console_path)
            except FileNotFoundError:
                pass
            import socket  # only with a terminal

            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(console_path)
            listener.listen(1)
        try:
            pid = self.runtime.create(
                self.bundle,
                self.cid,
                console_socket=console_path,
                stdio=None if self.tty else stdio,
                pid_file=os.path.join(self.run_dir, "pidfile"),
            )
            if listener is not None:
                self.console_master = _receive_console(listener)
        except PodpyError as err:
            raise MonitorError(err.message, err.exit_code) from err
        finally:
            if listener is not None:
                listener.close()
                os.unlink(console_path)  # type: ignore[arg-type]
        return pid

    def start(self) -> None:
        from podpy.errors import PodpyError

        try:
            self.runtime.start(self.cid)
        except PodpyError as err:
            self.delete()
            raise MonitorError(err.message, err.exit_code) from err

    def oom_killed(self) -> bool:
        try:
            state = self.runtime.state(self.cid)
        except Exception:
            return False
        return bool(state.get("annotations", {}).get("podpy.oom_killed") == "true")

    def delete(self) -> None:
        try:
            self.runtime.delete(self.cid, force=True)
        except Exception:
            pass  # already gone: nothing to clean


def _receive_console(listener: socket.socket) -> int:
    import socket

    listener.settimeout(10)
    conn, _ = listener.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    if not fds:
        raise MonitorError("the OCI runtime did not send the console")
    os.set_blocking(fds[0], False)
    return fds[0]


def make_driver(spec: Dict[str, Any]) -> RuntimeDriver:
    return RuntimeDriver(spec)
