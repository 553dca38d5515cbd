"""`--network pasta[:opts]`: launch pasta (package passt) for a container's network namespace
with its published ports, wait until it has configured the namespace, and stop it. Stdlib only.

pasta runs in the foreground as our child (so PR_SET_PDEATHSIG ties it to the monitor); it
writes its pid file only after the namespace is configured, which is the readiness signal.
pasta (2023) cannot join a network namespace owned by the initial user namespace, so it
serves rootless containers (and root containers with a user namespace).
"""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any, Dict, List, Optional, Sequence, Union

from netns_helpers.ports import PortLike, check_port_free, port_fields
from netns_helpers.slirp import (
    STOP_GRACE,
    ChildProcess,
    log_reason,
    open_log,
    read_log,
    spawn_tied,
    which,
)
from podpy.errors import MissingTool, PodpyError

READY_TIMEOUT = 10.0
# Queries the container sends here are forwarded to the host's resolver (podman 5 uses it).
DNS_FORWARD = "169.254.1.1"
_PORT_OPTIONS = ("-t", "--tcp-ports", "-u", "--udp-ports", "-T", "--tcp-ns", "-U", "--udp-ns")
_BIND_FAILURE_RE = re.compile(r"Failed to bind port (\d+)")


class PastaError(PodpyError):
    """pasta could not be started."""


def find_pasta(binary: Optional[str] = None) -> str:
    path = binary or which("pasta")
    if not path or not os.access(path, os.X_OK):
        raise MissingTool(
            'pasta not found: install the "passt" package',
            hint="or use the default --network slirp4netns",
        )
    return path


def _port_spec(port: PortLike) -> str:
    """pasta's `[ADDR/]HOSTPORT:CTRPORT`."""
    host_ip, host_port, container_port, _ = port_fields(port)
    address = f"{host_ip}/" if host_ip else ""
    return f"{address}{host_port}:{container_port}"


def pasta_argv(
    binary: str,
    target: Union[int, str],
    ports: Sequence[PortLike],
    pid_file: str,
    extra_args: Sequence[str] = (),
    userns_path: Optional[str] = None,
) -> List[str]:
    args = [binary, "--foreground", "--config-net", "--dns-forward", DNS_FORWARD]
    user_sets = {a for a in extra_args if a in _PORT_OPTIONS}
    for proto, flag, long_flag in (("tcp", "-t", "--tcp-ports"), ("udp", "-u", "--udp-ports")):
        specs = [_port_spec(m) for m in ports if port_fields(m)[3] == proto]
        for spec in specs:
            args += [flag, spec]
        if not specs and not user_sets & {flag, long_flag}:
            args += [flag, "none"]  # pasta's default "auto" would mirror every bound port
    for flag, long_flag in (("-T", "--tcp-ns"), ("-U", "--udp-ns")):
        if not user_sets & {flag, long_flag}:
            args += [flag, "none"]
    if os.geteuid() == 0:
        # pasta drops root to "nobody" by default, who cannot open the target namespaces
        # (and may not exist inside podpy's rootless user namespace).
        args += ["--runas", "0"]
    args += ["--pid", pid_file, *extra_args]
    if isinstance(target, str):
        args += ["--netns", target]
        if userns_path:
            args += ["--userns", userns_path]
    else:
        args.append(str(target))
    return args


class PastaProcess(ChildProcess):
    """A running pasta, our child; stop() ends it."""

    def __init__(self, pid: int, pid_file: str, log_fd: int, ready_seconds: float = 0.0):
        self.pid = pid
        self.pid_file = pid_file
        self.ready_seconds = ready_seconds
        self._log_fd = log_fd
        self._reaped = False
        self.ports: List[PortLike] = []  # what start_user_network() published

    def handoff(self) -> Dict[str, Any]:
        """See SlirpProcess.handoff: pasta is stopped by SIGTERM, not by an fd."""
        return {"pid": self.pid, "fds": [self._log_fd], "unlink": [self.pid_file], "term": True}

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.alive():
                break
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            if self._wait_gone(STOP_GRACE):
                break
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1
        try:
            os.unlink(self.pid_file)
        except OSError:
            pass


def _pid_file_written(path: str) -> bool:
    try:
        with open(path) as f:
            return f.read().strip().isdigit()
    except OSError:
        return False


def start_pasta(
    target: Union[int, str],
    ports: Sequence[PortLike] = (),
    extra_args: Sequence[str] = (),
    *,
    pid_file: str,
    userns_path: Optional[str] = None,
    log_path: Optional[str] = None,
    timeout: float = READY_TIMEOUT,
    binary: Optional[str] = None,
) -> PastaProcess:
    """Start pasta for `target` (a PID, or a netns path plus `userns_path` when rootless)
    forwarding `ports` (host ports resolved: no 0), and wait until the namespace is set up."""
    fields = [port_fields(p) for p in ports]
    if any(host_port == 0 for _, host_port, _, _ in fields):
        raise ValueError("resolve host ports (ports.resolve_host_ports) before start_pasta")
    path = find_pasta(binary)
    # pasta (2023) binds IPv4 and IPv6 separately and silently skips a taken IPv4 port,
    # so a conflict must be caught here, before it starts.
    for host_ip, host_port, _, protocol in fields:
        check_port_free(protocol, host_ip, host_port)
    try:
        os.unlink(pid_file)
    except FileNotFoundError:
        pass
    argv = pasta_argv(path, target, ports, pid_file, extra_args, userns_path)
    log_fd = open_log(log_path, os.path.dirname(pid_file))
    started = time.monotonic()
    try:
        pid = spawn_tied(argv, {}, log_fd)
    except OSError:
        os.close(log_fd)
        raise
    process = PastaProcess(pid, pid_file, log_fd)
    try:
        deadline = started + timeout
        while not _pid_file_written(pid_file):
            if not process.alive():
                _raise_failure(read_log(log_fd), ports)
            if time.monotonic() >= deadline:
                raise PastaError(
                    f"pasta did not become ready within {timeout:g}s: "
                    f"{log_reason(read_log(log_fd))}"
                )
            time.sleep(0.005)
    except BaseException:
        process.stop()
        raise
    process.ready_seconds = time.monotonic() - started
    return process


def _raise_failure(log: str, ports: Sequence[PortLike]) -> None:
    match = _BIND_FAILURE_RE.search(log)
    if match:
        port = int(match.group(1))
        for host_ip, host_port, _, protocol in map(port_fields, ports):
            if host_port == port:
                check_port_free(protocol, host_ip, port)  # raises PortInUse
    lines = [ln for ln in log.splitlines() if ln.strip() and "syslog" not in ln]
    reason = lines[-1].strip() if lines else "no output"
    hint = None
    if "namespace" in reason:
        hint = (
            "pasta needs the container in a user namespace (rootless); "
            "use --network slirp4netns otherwise"
        )
    raise PastaError(f"pasta failed: {reason}", hint=hint)
