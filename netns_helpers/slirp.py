"""Rootless networking with slirp4netns: launch it for a container's network namespace, wait
until tap0 is configured, publish ports (through the port forwarder, or slirp4netns's API
socket with port_handler=slirp4netns), and stop it.

Stdlib only (the monitor imports this module): slirp4netns configures tap0 itself
(`--configure`), so no netlink code is needed here.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import socket
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Union

from netns_helpers.ports import PortLike, bind_error, check_port_free, port_fields
from podpy.errors import MissingTool, PodpyError

if TYPE_CHECKING:
    from netns_helpers.forward import ForwarderProcess
    from netns_helpers.pasta import PastaProcess
    from podpy.engine.network_opts import NetworkSpec

# NetworkSpec.mode values (podpy.engine.network_opts), repeated here so the monitor need not
# import the parser.
_MODE_SLIRP, _MODE_PASTA = "slirp4netns", "pasta"

DEFAULT_MTU = 65520
DEFAULT_CIDR = "10.0.2.0/24"
TAP_NAME = "tap0"
READY_TIMEOUT = 10.0
API_TIMEOUT = 5.0
# Offsets inside the slirp network (libslirp's fixed layout: .2 host/gateway, .3 DNS, .100 guest).
GATEWAY_OFFSET, DNS_OFFSET, GUEST_OFFSET = 2, 3, 100
IPV6_DNS = "fd00::3"
STOP_GRACE = 1.0
# Fds the child sees: slirp4netns is told these numbers on its command line.
CHILD_READY_FD, CHILD_EXIT_FD, CHILD_API_DIR_FD = 3, 4, 5
# Progress lines slirp4netns prints on every start: never the reason for a failure.
_CHATTER = ("WARNING:", "sent tapfd", "received tapfd", "Starting slirp", "*")


class SlirpError(PodpyError):
    """slirp4netns could not be started or refused a request."""


def which(name: str) -> Optional[str]:
    """shutil.which() without importing shutil (the monitor's memory budget)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def find_slirp4netns(binary: Optional[str] = None) -> str:
    """Absolute path of slirp4netns, or MissingTool naming the package."""
    path = binary or which("slirp4netns")
    if not path or not os.access(path, os.X_OK):
        raise MissingTool(
            'slirp4netns not found: install the "slirp4netns" package',
            hint="or use --network host / --network none, or --network pasta if passt is installed",
        )
    return path


def _ipv4_to_int(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _int_to_ipv4(value: int) -> str:
    return ".".join(str((value >> shift) & 255) for shift in (24, 16, 8, 0))


class SlirpConfig:
    """slirp4netns settings; built from NetworkSpec.options via from_options()."""

    def __init__(
        self,
        mtu: int = DEFAULT_MTU,
        allow_host_loopback: bool = False,
        enable_ipv6: bool = False,
        cidr: str = DEFAULT_CIDR,
        outbound_addr: Optional[str] = None,
        outbound_addr6: Optional[str] = None,
        mac_address: Optional[str] = None,
        enable_sandbox: bool = True,
        enable_seccomp: bool = True,
    ):
        # A plain class, not a dataclass: `dataclasses` costs the monitor ~1.7 MiB.
        self.mtu = mtu
        self.allow_host_loopback = allow_host_loopback
        self.enable_ipv6 = enable_ipv6
        self.cidr = cidr
        self.outbound_addr = outbound_addr
        self.outbound_addr6 = outbound_addr6
        self.mac_address = mac_address
        self.enable_sandbox = enable_sandbox
        self.enable_seccomp = enable_seccomp

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], mac_address: Optional[str] = None
    ) -> SlirpConfig:
        """From the `slirp4netns:...` options network_opts parsed (unknown keys ignored)."""
        return cls(
            mtu=int(options.get("mtu", DEFAULT_MTU)),
            allow_host_loopback=bool(options.get("allow_host_loopback", False)),
            enable_ipv6=bool(options.get("enable_ipv6", False)),
            cidr=str(options.get("cidr", DEFAULT_CIDR)),
            outbound_addr=options.get("outbound_addr"),
            outbound_addr6=options.get("outbound_addr6"),
            mac_address=mac_address,
        )

    def _address(self, offset: int) -> str:
        network = self.cidr.split("/")[0]
        return _int_to_ipv4(_ipv4_to_int(network) + offset)

    @property
    def guest_address(self) -> str:
        """The container's address on tap0 (10.0.2.100 by default)."""
        return self._address(GUEST_OFFSET)

    @property
    def gateway_address(self) -> str:
        """The host as seen from the container (10.0.2.2); loopback only if allowed."""
        return self._address(GATEWAY_OFFSET)

    @property
    def dns_address(self) -> str:
        """slirp4netns's DNS forwarder (10.0.2.3)."""
        return self._address(DNS_OFFSET)

    def argv(
        self,
        binary: str,
        target: Union[int, str],
        api_socket: Optional[str],
        userns_path: Optional[str] = None,
    ) -> List[str]:
        args = [binary, "--configure", f"--mtu={self.mtu}"]
        if not self.allow_host_loopback:
            args.append("--disable-host-loopback")
        # The sandbox (a new mount namespace + pivot_root) needs slirp4netns to be root in
        # the user namespace it ends up in: true as root and in PID mode (it joins the
        # target's userns), false for an unprivileged caller naming a netns path.
        joins_by_path = isinstance(target, str) and os.geteuid() != 0
        if self.enable_sandbox and not joins_by_path:
            args.append("--enable-sandbox")
        if self.enable_seccomp:
            args.append("--enable-seccomp")
        if self.enable_ipv6:
            args.append("--enable-ipv6")
        if self.cidr != DEFAULT_CIDR:
            args.append(f"--cidr={self.cidr}")
        if self.outbound_addr:
            args.append(f"--outbound-addr={self.outbound_addr}")
        if self.outbound_addr6:
            args.append(f"--outbound-addr6={self.outbound_addr6}")
        if self.mac_address:
            args.append(f"--macaddress={self.mac_address}")
        if api_socket:
            args.append(f"--api-socket={api_socket}")
        args += [f"--exit-fd={CHILD_EXIT_FD}", f"--ready-fd={CHILD_READY_FD}"]
        if isinstance(target, str):
            args.append("--netns-type=path")
            if userns_path:
                args.append(f"--userns-path={userns_path}")
        elif userns_path:
            args.append(f"--userns-path={userns_path}")
        args += [str(target), TAP_NAME]
        return args


class ChildProcess:
    """A helper process we started (slirp4netns, pasta): liveness and waiting, tolerant of
    the monitor's reaper having collected it first."""

    pid: int
    _reaped: bool

    def alive(self) -> bool:
        if self._reaped:
            return False
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            # Someone else (the monitor's reaper) collected it.
            self._reaped = True
            return False
        if pid == self.pid:
            self._reaped = True
            return False
        return True

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True


class SlirpProcess(ChildProcess):
    """A running slirp4netns; dies when stop() is called or when this process exits."""

    def __init__(
        self,
        pid: int,
        exit_fd: int,
        api_socket: Optional[str],
        config: SlirpConfig,
        ready_seconds: float,
        log_fd: int,
    ):
        self.pid = pid
        self.exit_fd = exit_fd  # our write end: closing it tells slirp4netns to exit
        self.api_socket = api_socket
        self.config = config
        self.ready_seconds = ready_seconds
        self._log_fd = log_fd
        self._reaped = False
        self.ports: List[PortLike] = []  # what start_user_network() published
        self.forwarder: Optional[ForwarderProcess] = None  # the published ports' relay

    def add_port_forward(
        self, protocol: str, host_addr: str, host_port: int, guest_port: int
    ) -> int:
        if not self.api_socket:
            raise SlirpError("slirp4netns was started without an API socket")
        return add_port_forward(
            self.api_socket,
            protocol,
            host_addr,
            host_port,
            guest_port,
            guest_addr=self.config.guest_address,
        )

    def publish(self, ports: Sequence[PortLike]) -> List[int]:
        """Forward every mapping (host ports must be resolved: no 0); returns the forward ids."""
        ids = []
        for port in ports:
            host_ip, host_port, container_port, protocol = port_fields(port)
            ids.append(self.add_port_forward(protocol, host_ip, host_port, container_port))
        return ids

    def handoff(self) -> Dict[str, Any]:
        """What the monitor needs to stop us after it re-executes itself (see
        podpy/monitor/main.py HandedOverProcess): this object does not survive the exec."""
        return {
            "pid": self.pid,
            "fds": [self.exit_fd, self._log_fd],
            "unlink": [self.api_socket] if self.api_socket else [],
            "also": [self.forwarder.handoff()] if self.forwarder is not None else [],
        }

    def stop(self) -> None:
        """Close the exit fd (slirp4netns exits), escalate to SIGTERM/SIGKILL, reap, clean up;
        the port forwarder, if any, first."""
        if self.forwarder is not None:
            self.forwarder.stop()
        if self.exit_fd >= 0:
            os.close(self.exit_fd)
            self.exit_fd = -1
        if not self._wait_gone(STOP_GRACE):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass
                if self._wait_gone(STOP_GRACE):
                    break
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1
        if self.api_socket:
            try:
                os.unlink(self.api_socket)
            except OSError:
                pass


def read_log(fd: int, limit: int = 4096) -> str:
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, limit, max(0, size - limit))
    except OSError:
        return ""
    return data.decode(errors="replace")


def log_reason(text: str) -> str:
    """The useful part of slirp4netns's output: its last two non-chatter lines before any
    usage text (it prints usage after a bad flag)."""
    useful = []
    for line in (ln.strip() for ln in text.splitlines()):
        if line.startswith("Usage:"):
            break
        if line and not line.startswith(_CHATTER):
            useful.append(line)
    return "; ".join(useful[-2:]) if useful else "no output"


def _exec_child(
    argv: List[str], fd_map: Mapping[int, int], log_fd: int, parent: int, linux: Any
) -> None:
    """In the forked child: arrange fds, tie our life to the parent's, exec. Never returns."""
    try:
        linux.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before PDEATHSIG was armed
            os._exit(1)
        # Duplicate every source above the targets first (clearing CLOEXEC), so a source
        # that already sits on a target number is not clobbered by an earlier dup2.
        floor = max(list(fd_map) + [2]) + 1
        high = {
            target: fcntl.fcntl(source, fcntl.F_DUPFD, floor) for target, source in fd_map.items()
        }
        high_log = fcntl.fcntl(log_fd, fcntl.F_DUPFD, floor)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(high_log, 1)
        os.dup2(high_log, 2)
        for target, source in high.items():
            os.dup2(source, target)
        os.closerange(floor, max(65536, os.sysconf("SC_OPEN_MAX")))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()  # keep a terminal's Ctrl-C away from it; the monitor decides when it ends
        os.execv(argv[0], argv)
    except BaseException:  # noqa: BLE001 - nothing may escape a forked child
        pass
    os._exit(127)


def spawn_tied(argv: List[str], fd_map: Mapping[int, int], log_fd: int) -> int:
    """fork+exec `argv` with stdout/stderr on log_fd and `fd_map` {child fd: our fd}; the
    child gets SIGKILL when this process dies. Returns its pid (our child: reap it)."""
    # Imported before fork: a child importing could deadlock on a lock another thread held.
    from podpy import linux

    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _exec_child(argv, fd_map, log_fd, parent, linux)
    return pid


def open_log(log_path: Optional[str], scratch_dir: str) -> int:
    """A file for a helper's output: log_path, or an anonymous file in scratch_dir."""
    if log_path:
        return os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        return os.open(scratch_dir or ".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        return os.open("/tmp", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)


def start_slirp4netns(
    target: Union[int, str],
    config: Optional[SlirpConfig] = None,
    api_socket: Optional[str] = None,
    *,
    userns_path: Optional[str] = None,
    log_path: Optional[str] = None,
    timeout: float = READY_TIMEOUT,
    binary: Optional[str] = None,
) -> SlirpProcess:
    """Start slirp4netns for `target` (a PID whose netns (and userns) it joins, or a netns
    path; give `userns_path` with a path when running rootless) and wait until tap0 is up.

    The returned process exits when our exit-fd closes: when stop() is called or this
    process dies (PR_SET_PDEATHSIG backs that up).
    """
    config = config or SlirpConfig()
    path = find_slirp4netns(binary)
    fd_map: Dict[int, int] = {}
    bind_path = api_socket
    if api_socket:
        try:
            os.unlink(api_socket)  # a stale socket from a previous run makes slirp4netns fail
        except FileNotFoundError:
            pass
        if len(api_socket) > _MAX_SOCKET_PATH:
            # Too long for sockaddr_un: slirp4netns binds it through its copy of a directory
            # fd instead (no socket in /tmp that a killed monitor would leave behind).
            fd_map[CHILD_API_DIR_FD] = os.open(
                os.path.dirname(api_socket), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
            )
            bind_path = f"/proc/self/fd/{CHILD_API_DIR_FD}/{os.path.basename(api_socket)}"
    argv = config.argv(path, target, bind_path, userns_path)
    scratch = os.path.dirname(api_socket) if api_socket else "/tmp"
    log_fd = open_log(log_path, scratch)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    fd_map.update({CHILD_READY_FD: ready_w, CHILD_EXIT_FD: exit_r})
    started = time.monotonic()
    try:
        pid = spawn_tied(argv, fd_map, log_fd)
    except OSError:
        for fd in (ready_r, ready_w, exit_r, exit_w, log_fd, fd_map.get(CHILD_API_DIR_FD, -1)):
            if fd >= 0:
                os.close(fd)
        raise
    if CHILD_API_DIR_FD in fd_map:
        os.close(fd_map[CHILD_API_DIR_FD])
    os.close(ready_w)
    os.close(exit_r)
    process = SlirpProcess(pid, exit_w, api_socket, config, 0.0, log_fd)
    try:
        _wait_ready(ready_r, process, timeout)
    except BaseException:
        process.stop()
        raise
    finally:
        os.close(ready_r)
    process.ready_seconds = time.monotonic() - started
    return process


def _wait_ready(ready_r: int, process: SlirpProcess, timeout: float) -> None:
    poller = select.poll()
    poller.register(ready_r, select.POLLIN | select.POLLHUP)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SlirpError(
                f"slirp4netns did not become ready within {timeout:g}s: "
                f"{log_reason(read_log(process._log_fd))}"
            )
        try:
            events = poller.poll(int(remaining * 1000) + 1)
        except InterruptedError:
            continue
        if not events:
            continue
        try:
            data = os.read(ready_r, 16)
        except InterruptedError:
            continue
        if data:
            return
        # EOF without "1": slirp4netns exited (bad option, cannot join the namespace, ...).
        process._wait_gone(STOP_GRACE)
        raise SlirpError(f"slirp4netns failed: {log_reason(read_log(process._log_fd))}")


# --- API socket ----------------------------------------------------------------------------------


def api_request(
    api_socket: str, request: Mapping[str, Any], timeout: float = API_TIMEOUT
) -> Dict[str, Any]:
    """One JSON request on slirp4netns's API socket; returns the decoded reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    dir_fd = -1
    try:
        if len(api_socket) > _MAX_SOCKET_PATH:  # as start_slirp4netns bound it
            dir_fd = os.open(os.path.dirname(api_socket), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(api_socket)}")
        else:
            sock.connect(api_socket)
        sock.sendall(json.dumps(request).encode())
        sock.shutdown(socket.SHUT_WR)  # slirp4netns answers once it sees EOF
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as err:
        raise SlirpError(f"slirp4netns API {api_socket}: {err.strerror or err}") from None
    finally:
        sock.close()
        if dir_fd >= 0:
            os.close(dir_fd)
    try:
        reply = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        raise SlirpError(f"slirp4netns API {api_socket}: malformed reply") from None
    return reply


def add_port_forward(
    api_socket: str,
    protocol: str,
    host_addr: str,
    host_port: int,
    guest_port: int,
    guest_addr: str = "10.0.2.100",
) -> int:
    """Forward host_addr:host_port to the container (`add_hostfwd`); returns the forward id.

    A host port slirp4netns cannot bind raises PortInUse naming it (slirp4netns only says
    "slirp_add_hostfwd failed", so the port is probed to give the real reason).
    """
    if protocol not in ("tcp", "udp"):
        raise SlirpError(
            f"slirp4netns cannot forward {protocol} ports",
            hint="publish tcp or udp ports, or use --network pasta",
        )
    host = host_addr or "0.0.0.0"
    reply = api_request(
        api_socket,
        {
            "execute": "add_hostfwd",
            "arguments": {
                "proto": protocol,
                "host_addr": host,
                "host_port": host_port,
                "guest_addr": guest_addr,
                "guest_port": guest_port,
            },
        },
    )
    if "return" in reply:
        return int(reply["return"].get("id", 0))
    desc = str((reply.get("error") or {}).get("desc", reply))

    check_port_free(protocol, host_addr, host_port)  # raises PortInUse with the errno
    raise bind_error(protocol, host_addr, host_port, OSError(errno.EADDRINUSE, desc))


def list_port_forwards(api_socket: str) -> List[Dict[str, Any]]:
    reply = api_request(api_socket, {"execute": "list_hostfwd"})
    # slirp4netns 1.2 answers `{"entries": [...]}` without the usual "return" wrapper.
    body = reply.get("return", reply)
    return list(body.get("entries", []))


def remove_port_forward(api_socket: str, forward_id: int) -> None:
    reply = api_request(api_socket, {"execute": "remove_hostfwd", "arguments": {"id": forward_id}})
    if "error" in reply:
        raise SlirpError(f"slirp4netns: {reply['error'].get('desc', reply['error'])}")


# --- one call for the monitor ---------------------------------------------------------------------

# AF_UNIX paths hold at most 107 bytes; a deeper socket is reached through a directory fd.
_MAX_SOCKET_PATH = 100


def start_user_network(
    spec: Union[NetworkSpec, Mapping[str, Any]],
    target: Union[int, str],
    run_dir: str,
    *,
    userns_path: Optional[str] = None,
) -> Union[SlirpProcess, PastaProcess]:
    """Start slirp4netns or pasta for a container per its NetworkSpec (or the spec's JSON
    dict, as the monitor reads it) and publish its ports.

    Host ports still 0 are picked here (better: the engine calls ports.resolve_host_ports()
    before starting anything, and stores the result for `podpy port`). The returned process
    has `.ports`, the published mappings; call its stop() when the container exits. Logs go
    to RUN_DIR/slirp4netns.log or RUN_DIR/pasta.log. On failure nothing is left running.

    slirp4netns publishes through the port forwarder (netns_helpers/forward.py, podman's
    default `port_handler=rootlesskit`: RUN_DIR/ports.log), or through slirp4netns's own
    add_hostfwd with `port_handler=slirp4netns`; pasta forwards ports itself.
    """
    if isinstance(spec, Mapping):
        mode = str(spec["mode"])
        options: Mapping[str, Any] = spec.get("options") or {}
        ports: List[PortLike] = list(spec.get("ports") or [])
        mac_address = spec.get("mac_address")
    else:
        mode, options, ports, mac_address = (
            spec.mode,
            spec.options,
            list(spec.ports),
            spec.mac_address,
        )
    if any(port_fields(p)[1] == 0 for p in ports):
        from netns_helpers.ports import resolve_host_ports

        ports = list(resolve_host_ports(ports))
    if mode == _MODE_PASTA:
        from netns_helpers.pasta import start_pasta

        process: Union[SlirpProcess, PastaProcess] = start_pasta(
            target,
            ports,
            options.get("args") or [],
            pid_file=os.path.join(run_dir, "pasta.pid"),
            userns_path=userns_path,
            log_path=os.path.join(run_dir, "pasta.log"),
        )
    elif mode == _MODE_SLIRP:
        api_socket = os.path.join(run_dir, "slirp4netns.sock")  # (any length: see above)
        config = SlirpConfig.from_options(options, mac_address)
        forwarder = None
        if ports and options.get("port_handler") != "slirp4netns":
            # podman's default port handler (rootlessport): the host ports are bound here,
            # before anything starts, and a forwarder dials the container from inside its
            # netns; it starts while slirp4netns does.
            from netns_helpers.forward import forward_ports

            if isinstance(target, int):
                netns, userns = f"/proc/{target}/ns/net", f"/proc/{target}/ns/user"
            else:
                netns, userns = target, userns_path
            forwarder = forward_ports(
                ports,
                config.guest_address,
                netns,
                userns=userns,
                log_path=os.path.join(run_dir, "ports.log"),
            )
        try:
            process = start_slirp4netns(
                target,
                config,
                api_socket,
                userns_path=userns_path,
                log_path=os.path.join(run_dir, "slirp4netns.log"),
            )
        except BaseException:
            if forwarder is not None:
                forwarder.stop()
            raise
        process.forwarder = forwarder
        try:
            if forwarder is not None:
                forwarder.wait_ready()
            else:
                process.publish(ports)
        except BaseException:
            process.stop()
            raise
    else:
        raise ValueError(f"network mode {mode!r} needs no user-mode network helper")
    process.ports = ports
    return process
