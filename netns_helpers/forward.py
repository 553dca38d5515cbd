"""Published ports through a forwarder process (podman's `rootlessport` role): the host side
listens, the container side is dialled from inside the container's network namespace, and the
bytes are moved between the two sockets with splice(2), never through slirp4netns's user-mode
TCP stack.

Two halves:

- Monitor side (`bind_listeners`, `start_forwarder`, `ForwarderProcess`): the host sockets are
  bound in the caller (before the container starts, so a taken port is podman's one-line
  error and nothing is left running). A forked child enters the container's netns (and its
  user namespace when the caller is not in it), reports on a pipe, and executes the lean
  forwarder (`forwarder_argv`: no zipapp __main__, no JSON, no typing) with the bound sockets
  and an exit fd inherited. It dies with its starter (PR_SET_PDEATHSIG) or when the exit fd
  closes; stop() kills and reaps it.
- Forwarder side (`main`, `_Forwarder`): one epoll loop, no threads. A TCP connection accepted
  on a host socket is relayed to a socket connected to TARGET:CTRPORT in the container's
  netns, both non-blocking, bytes moved by splice(2) through a pooled pipe, a half-close
  passed on as shutdown(SHUT_WR). A UDP datagram from a new client address gets its own
  socket in the container's netns, so replies go back to that client from the host socket
  (127.0.0.1 clients included); the flow is dropped after UDP_IDLE seconds without traffic.

As podman, the target is the container's address (slirp4netns's 10.0.2.100, or its address on
a user-defined network), not its loopback: a service bound to 127.0.0.1 in the container is
not published. Stdlib + podpy.linux only (the monitor imports the first half).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import time

TYPE_CHECKING = False  # no typing at run time: the forwarder lives as long as the container
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    from netns_helpers.ports import PortLike

READY_TIMEOUT = 10.0
PIPE_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size's default: bytes moved per splice call
UDP_IDLE = 90.0  # seconds a UDP client's flow lives without traffic (rootlesskit's timeout)
UDP_MAX = 65535
# Linux's ancillary-data options (socket.IP_PKTINFO is not in every Python): the address a
# datagram was sent to, and the source address of a reply.
_IP_PKTINFO, _IPV6_RECVPKTINFO, _IPV6_PKTINFO = 8, 49, 50
_PKTINFO_SPACE = 64
_SOCKET_TYPES = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


class Listener:
    """A bound host socket and the container port it publishes."""

    def __init__(self, sock: socket.socket, protocol: str, container_port: int):
        self.sock = sock
        self.protocol = protocol
        self.container_port = container_port


# --- monitor side ---------------------------------------------------------------------------


def bind_listeners(ports: Sequence[PortLike]) -> List[Listener]:
    """Bind (and for TCP listen on) every published host port; PortInUse naming the first
    port that cannot be bound, with every socket bound so far closed."""
    from netns_helpers.ports import bind_error, port_fields

    listeners: List[Listener] = []
    try:
        for port in ports:
            host_ip, host_port, container_port, protocol = port_fields(port)
            if protocol not in _SOCKET_TYPES:
                from podpy.errors import PodpyError

                raise PodpyError(
                    f"publishing {protocol} ports is not supported by the port forwarder",
                    hint="publish tcp or udp ports, or use --network pasta",
                )
            family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
            sock = socket.socket(family, _SOCKET_TYPES[protocol])
            try:
                if protocol == "tcp":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((host_ip or "0.0.0.0", host_port))
                if protocol == "tcp":
                    sock.listen(socket.SOMAXCONN)
            except OSError as err:
                sock.close()
                raise bind_error(protocol, host_ip, host_port, err) from None
            listeners.append(Listener(sock, protocol, container_port))
    except BaseException:
        for listener in listeners:
            listener.sock.close()
        raise
    return listeners


class ForwarderProcess:
    """The monitor's handle on a running forwarder (our child: stop() reaps it)."""

    def __init__(self, pid: int, exit_fd: int, ready_fd: int, log_fd: int):
        self.pid = pid
        self.exit_fd = exit_fd  # our write end: closing it ends the forwarder
        self._ready_fd = ready_fd
        self._log_fd = log_fd
        self._reaped = False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until the forwarder is in the container's netns; PodpyError if it failed."""
        from podpy.errors import PodpyError

        if self._ready_fd < 0:
            return
        fd, self._ready_fd = self._ready_fd, -1
        chunks = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                    raise PodpyError(f"the port forwarder did not start within {timeout:g}s")
                data = os.read(fd, 4096)
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(fd)
        text = b"".join(chunks).decode(errors="replace").strip()
        if text == "ok":
            return
        if not text:  # it died before it could say why: its output says
            from netns_helpers.slirp import read_log

            log = read_log(self._log_fd).strip().splitlines()
            text = log[-1] if log else "it exited"
        raise PodpyError(f"port forwarder: {text}")

    def handoff(self) -> Dict[str, Any]:
        """For the monitor's re-exec (podpy/monitor/main.py HandedOverProcess)."""
        # "term": SIGTERM at once (no handler: it ends the forwarder), no grace period
        return {"pid": self.pid, "fds": [self.exit_fd, self._log_fd], "unlink": [], "term": True}

    def stop(self) -> None:
        """End it now (it holds nothing that needs a graceful end, and may still be starting
        up, deaf to its exit fd) and reap it."""
        for attr in ("exit_fd", "_ready_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
        if not self._reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass  # already gone, or collected by the monitor's reaper
            self._reaped = True
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1


# The forwarder is started without the zipapp's __main__ (runpy, role dispatch, JSON): only
# what relaying needs is imported, which halves its start-up (it is on the `run -p` path).
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from netns_helpers.forward import main; main(sys.argv[3:])"
)
MARK = "port-forward"  # in the forwarder's command line, for ps and the tests


def forwarder_argv(
    listeners: Sequence[Tuple[int, str, int]],
    target_ip: str,
    ready_fd: int,
    exit_fd: int,
    netns_fd: int,
    userns: Optional[str],
) -> List[str]:
    """python3 -I -S -c BOOTSTRAP ROOT port-forward TARGET READY EXIT NETNS USERNS FD:PROTO:PORT...
    ROOT is the zipapp (or source tree) this module was loaded from."""
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fixed = [target_ip, str(ready_fd), str(exit_fd), str(netns_fd), userns or "-"]
    specs = [f"{fd}:{protocol}:{port}" for fd, protocol, port in listeners]
    return [sys.executable, "-I", "-S", "-c", _BOOTSTRAP, root, MARK, *fixed, *specs]


def _forwarder_child(
    argv: List[str],
    fd_map: Dict[int, int],
    log_fd: int,
    parent: int,
    userns: Optional[str],
    netns_fd: int,
    ready_w: int,
    linux: Any,
) -> None:
    """In the forked child: enter the container's namespaces, say so, exec. Never returns."""
    from netns_helpers.slirp import _exec_child  # loaded before the fork: a dict lookup

    try:
        linux.set_pdeathsig(signal.SIGKILL)
        try:
            _enter_namespaces(userns, netns_fd, linux)
        except OSError as err:
            os.write(ready_w, f"entering the container's network: {err}".encode())
            os._exit(125)
        os.write(ready_w, b"ok")
        _exec_child(argv, fd_map, log_fd, parent, linux)
    except BaseException:  # noqa: BLE001 - nothing may escape a forked child
        pass
    os._exit(127)


def start_forwarder(
    listeners: Sequence[Listener],
    target_ip: str,
    netns: Optional[str],
    *,
    userns: Optional[str] = None,
    log_path: Optional[str] = None,
) -> ForwarderProcess:
    """Start the forwarder for bound `listeners`, dialling TARGET_IP:CTRPORT from inside the
    netns at path `netns` (None: stay in ours), after joining `userns` if we are not in it.

    A forked child of ours enters the namespaces, reports on a pipe (wait_ready() reads it:
    a few milliseconds), then executes the lean forwarder, whose Python start-up overlaps
    the container's (connections and datagrams queue on the bound sockets meanwhile). Our
    copies of the listening sockets are closed here.
    """
    from netns_helpers.slirp import _exec_child, open_log  # noqa: F401 - before the fork
    from podpy import linux

    fd_map: Dict[int, int] = {}
    entries = []
    for index, listener in enumerate(listeners):
        fd_map[3 + index] = listener.sock.fileno()
        entries.append((3 + index, listener.protocol, listener.container_port))
    exit_fd = 3 + len(entries)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    opened = [ready_r, ready_w, exit_r, exit_w]
    try:
        netns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC) if netns else -1
        if netns_fd >= 0:
            opened.append(netns_fd)
        fd_map[exit_fd] = exit_r
        log_fd = open_log(log_path, os.path.dirname(log_path) if log_path else "/tmp")
        opened.append(log_fd)
        argv = forwarder_argv(entries, target_ip, -1, exit_fd, -1, None)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _forwarder_child(argv, fd_map, log_fd, parent, userns, netns_fd, ready_w, linux)
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
    finally:
        for listener in listeners:
            listener.sock.close()
    for fd in (ready_w, exit_r) + ((netns_fd,) if netns_fd >= 0 else ()):
        os.close(fd)
    return ForwarderProcess(pid, exit_w, ready_r, log_fd)


def forward_ports(
    ports: Sequence[PortLike], target_ip: str, netns: Optional[str], **kwargs: Any
) -> ForwarderProcess:
    """bind_listeners() + start_forwarder(): the forwarder is starting when this returns."""
    return start_forwarder(bind_listeners(ports), target_ip, netns, **kwargs)


# --- forwarder side -------------------------------------------------------------------------
# One thread, one epoll loop: no thread per connection (each would cost a clone, a stack and,
# on a busy host, waits for the GIL), sockets non-blocking, bytes moved by splice(2) through
# a pipe per direction.

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_ERR = select.EPOLLERR | select.EPOLLHUP
_ROUNDS = 8  # pipe-fulls moved per direction and wake-up before others get a turn


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass


class _Pipes:
    """Pipes lent to directions: a direction holds one only while bytes are stuck in it (its
    destination was full); otherwise the bytes it reads go straight through a shared one. So
    an idle or flowing connection holds two sockets and no pipe, which keeps the fd count
    and the user's pipe pages (pipe-user-pages-soft, shared with all their programs) low."""

    KEEP = 4

    def __init__(self, linux: Any):
        self.linux = linux
        self.free: List[Tuple[int, int, int]] = []

    def take(self) -> Tuple[int, int, int]:
        if self.free:
            return self.free.pop()
        import fcntl

        read_fd, write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            size = fcntl.fcntl(write_fd, self.linux.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # over the user's pipe-user-pages-soft: keep the default size
            size = 65536
        return read_fd, write_fd, size

    def give_back(self, pipe: Tuple[int, int, int], empty: bool = True) -> None:
        if empty and len(self.free) < self.KEEP:
            self.free.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])


class _Direction:
    """src -> dst; `pending` bytes wait in `pipe` (held only while pending)."""

    __slots__ = ("src", "dst", "src_fd", "dst_fd", "pipe", "pending", "eof")

    def __init__(self, src: socket.socket, dst: socket.socket):
        self.src, self.dst = src, dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.pipe: Optional[Tuple[int, int, int]] = None
        self.pending = 0
        self.eof = False

    def pump(self, splice: Any, pipes: _Pipes) -> None:
        """Move what can be moved now; OSError on a reset or broken connection."""
        for _ in range(_ROUNDS):
            pipe = self.pipe
            if pipe is None:
                if self.eof:
                    return
                pipe = pipes.take()
                moved = splice(self.src_fd, pipe[1], pipe[2])
                if moved <= 0:
                    pipes.give_back(pipe)
                    if moved == 0:
                        self.eof = True  # end of stream: pass the half-close on
                        _shutdown(self.dst, socket.SHUT_WR)
                    return  # (or nothing to read: wait until src is readable)
                self.pipe, self.pending = pipe, moved
            while self.pending:
                moved = splice(pipe[0], self.dst_fd, self.pending)
                if moved < 0:
                    return  # dst is full: keep the pipe until it is writable
                self.pending -= moved
            self.pipe = None
            pipes.give_back(pipe)

    def close(self, pipes: _Pipes) -> None:
        if self.pipe is not None:
            pipes.give_back(self.pipe, empty=False)  # bytes left in it: do not reuse
            self.pipe = None


class _Connection:
    __slots__ = ("client", "upstream", "directions", "masks")

    def __init__(self, client: socket.socket, upstream: socket.socket):
        self.client, self.upstream = client, upstream
        self.directions: List[_Direction] = []  # empty while the upstream connect is pending
        self.masks: Dict[int, int] = {}

    def wanted(self, sock: socket.socket) -> int:
        if not self.directions:  # connecting: the upstream's writability says it is done
            return _OUT if sock is self.upstream else 0
        mask = 0
        for direction in self.directions:
            if direction.src is sock and not direction.eof and not direction.pending:
                mask |= _IN
            if direction.dst is sock and direction.pending:
                mask |= _OUT
        return mask

    def finished(self) -> bool:
        return bool(self.directions) and all(d.eof and not d.pending for d in self.directions)


class _UdpFlow:
    __slots__ = ("host", "client", "upstream", "last", "source")

    def __init__(self, host: socket.socket, client: Any, upstream: socket.socket):
        self.host = host
        self.client = client
        self.upstream = upstream
        self.last = time.monotonic()
        # replies' source address (pktinfo ancillary data), for a host socket on a wildcard
        # address: the client sent to one of several addresses and expects the answer from it
        self.source: Optional[Tuple[int, int, bytes]] = None


def _reply_source(level: int, kind: int, data: bytes) -> Optional[Tuple[int, int, bytes]]:
    """The ancillary item that makes a reply leave from the address a datagram came to."""
    if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= 12:
        # struct in_pktinfo {int ifindex; in_addr spec_dst; in_addr addr}: addr is where it went
        return (level, _IP_PKTINFO, b"\0\0\0\0" + data[8:12] + b"\0\0\0\0")
    if level == socket.IPPROTO_IPV6 and kind == _IPV6_PKTINFO and len(data) >= 20:
        return (level, _IPV6_PKTINFO, data[:16] + b"\0\0\0\0")  # {in6_addr addr; ifindex}
    return None


def _enter_namespaces(userns: Optional[str], netns_fd: int, linux: Any) -> None:
    if userns and os.stat(userns).st_ino != os.stat("/proc/self/ns/user").st_ino:
        linux.setns_path(userns, linux.CLONE_NEWUSER)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    if netns_fd >= 0:
        linux.setns(netns_fd, linux.CLONE_NEWNET)
        os.close(netns_fd)


class _Forwarder:
    def __init__(self, target: str, exit_fd: int, linux: Any):
        self.target = target
        self.family = socket.AF_INET6 if ":" in target else socket.AF_INET
        self.exit_fd = exit_fd
        self.linux = linux
        self.splice = linux.splice_nonblock
        self.pipes = _Pipes(linux)
        self.paused: List[int] = []  # listeners off while we are out of fds
        self.epoll = select.epoll()
        self.epoll.register(exit_fd, _IN)
        self.tcp: Dict[int, Tuple[socket.socket, int]] = {}
        self.udp: Dict[int, Tuple[socket.socket, int]] = {}
        self.connections: Dict[int, _Connection] = {}  # by either socket's fd
        self.flows: Dict[Tuple[int, Any], _UdpFlow] = {}
        self.upstreams: Dict[int, _UdpFlow] = {}
        self.pktinfo: set = set()  # UDP host sockets that learn each datagram's destination

    def listen(self, fd: int, protocol: str, port: int) -> None:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        (self.tcp if protocol == "tcp" else self.udp)[fd] = (sock, port)
        if protocol == "udp" and sock.getsockname()[0] in ("0.0.0.0", "::"):
            try:
                if sock.family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVPKTINFO, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
                self.pktinfo.add(fd)
            except OSError:
                pass
        self.epoll.register(fd, _IN)

    # TCP
    def _accept(self, fd: int) -> None:
        listener, port = self.tcp[fd]
        # The upstream socket first: out of fds, the client then waits in the backlog
        # instead of being accepted and dropped.
        try:
            upstream = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError:
            self._pause_listener(fd)
            return
        try:
            client, _ = listener.accept()
        except OSError as err:
            upstream.close()
            if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._pause_listener(fd)  # else it stays readable: a busy loop
            return  # (or the client went away: keep serving)
        client.setblocking(False)
        upstream.setblocking(False)
        code = upstream.connect_ex((self.target, port))
        if code not in (0, errno.EINPROGRESS):
            client.close()  # nothing listens in the container: the client sees the close
            upstream.close()
            return
        conn = _Connection(client, upstream)
        self.connections[client.fileno()] = conn
        self.connections[upstream.fileno()] = conn
        conn.masks = {client.fileno(): 0, upstream.fileno(): _OUT}
        self.epoll.register(client.fileno(), 0)
        self.epoll.register(upstream.fileno(), _OUT)
        if self._connected(conn):
            # To an address of the container's own netns the handshake is usually done by
            # the time connect() returns: relay now (the client's request may be waiting)
            # rather than after one more trip through epoll.
            self._connection_event(conn, upstream.fileno(), _OUT)

    @staticmethod
    def _connected(conn: _Connection) -> bool:
        try:
            conn.upstream.getpeername()
        except OSError:
            return False
        return True

    def _pause_listener(self, fd: int) -> None:
        if fd not in self.paused:
            self.paused.append(fd)
            self.epoll.modify(fd, 0)

    def _resume_listeners(self) -> None:
        while self.paused:
            self.epoll.modify(self.paused.pop(), _IN)

    def _close(self, conn: _Connection) -> None:
        for sock in (conn.client, conn.upstream):
            fd = sock.fileno()
            if fd >= 0:
                self.connections.pop(fd, None)
                try:
                    self.epoll.unregister(fd)
                except OSError:
                    pass
                sock.close()
        for direction in conn.directions:
            direction.close(self.pipes)
        conn.directions = []
        self._resume_listeners()

    def _connection_event(self, conn: _Connection, fd: int, events: int) -> None:
        try:
            if not conn.directions:
                if fd != conn.upstream.fileno():
                    if events & _ERR:  # the client left before the container answered
                        self._close(conn)
                    return
                error = conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    self._close(conn)
                    return
                if not self._connected(conn):
                    return  # a stale event for a reused fd: still connecting
                conn.directions = [
                    _Direction(conn.client, conn.upstream),
                    _Direction(conn.upstream, conn.client),
                ]
            for direction in conn.directions:
                direction.pump(self.splice, self.pipes)
        except OSError:  # reset, broken pipe: end both directions
            self._close(conn)
            return
        if conn.finished():
            self._close(conn)
            return
        stuck = True
        for sock in (conn.client, conn.upstream):
            sock_fd = sock.fileno()
            mask = conn.wanted(sock)
            if mask:
                stuck = False
            if conn.masks.get(sock_fd) != mask:
                conn.masks[sock_fd] = mask
                self.epoll.modify(sock_fd, mask)
        if stuck and events & _ERR:  # hung up with nothing left to move: do not spin
            self._close(conn)

    # UDP
    def _datagram_in(self, fd: int) -> None:
        host, port = self.udp[fd]
        source = None
        try:
            if fd in self.pktinfo:
                data, ancillary, _flags, client = host.recvmsg(UDP_MAX, _PKTINFO_SPACE)
                for level, kind, item in ancillary:
                    source = _reply_source(level, kind, item) or source
            else:
                data, client = host.recvfrom(UDP_MAX)
        except OSError:
            return
        flow = self.flows.get((fd, client))
        if flow is None:
            upstream = socket.socket(self.family, socket.SOCK_DGRAM)
            try:
                upstream.setblocking(False)
                upstream.connect((self.target, port))
            except OSError:
                upstream.close()
                return
            flow = _UdpFlow(host, client, upstream)
            self.flows[(fd, client)] = flow
            self.upstreams[upstream.fileno()] = flow
            self.epoll.register(upstream.fileno(), _IN)
        flow.last = time.monotonic()
        if source is not None:
            flow.source = source
        try:
            flow.upstream.send(data)
        except OSError:
            pass  # ECONNREFUSED from an earlier datagram: nothing listens yet

    def _datagram_back(self, fd: int) -> None:
        flow = self.upstreams[fd]
        try:
            data = flow.upstream.recv(UDP_MAX)
        except OSError:  # not ready, or ICMP port unreachable for an earlier datagram
            return
        flow.last = time.monotonic()
        try:
            if flow.source is not None:
                flow.host.sendmsg([data], [flow.source], 0, flow.client)
            else:
                flow.host.sendto(data, flow.client)
        except OSError:
            pass

    def _sweep(self, now: float) -> None:
        for flow in [f for f in self.upstreams.values() if now - f.last > UDP_IDLE]:
            self.flows.pop((flow.host.fileno(), flow.client), None)
            self.upstreams.pop(flow.upstream.fileno(), None)
            self.epoll.unregister(flow.upstream.fileno())
            flow.upstream.close()

    def run(self) -> None:
        next_sweep = time.monotonic() + UDP_IDLE / 4
        while True:
            timeout = UDP_IDLE / 4 if self.upstreams else -1
            if self.paused:
                timeout = 1.0  # out of fds: retry accepting now and then
            try:
                events = self.epoll.poll(timeout)
            except InterruptedError:
                continue
            if not events:
                self._resume_listeners()
            for fd, mask in events:
                conn = self.connections.get(fd)
                if conn is not None:
                    self._connection_event(conn, fd, mask)
                elif fd in self.tcp:
                    self._accept(fd)
                elif fd in self.udp:
                    self._datagram_in(fd)
                elif fd in self.upstreams:
                    self._datagram_back(fd)
                elif fd == self.exit_fd:
                    os._exit(0)
            if self.upstreams:
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + UDP_IDLE / 4
                    self._sweep(now)


def main(argv: Sequence[str]) -> None:
    """The forwarder (argv as forwarder_argv() builds it, after the mark); never returns
    while its exit fd is open."""
    from podpy import linux

    target, ready, exit_text, netns_text, userns = argv[:5]
    ready_fd = int(ready)
    try:
        _enter_namespaces(None if userns == "-" else userns, int(netns_text), linux)
    except OSError as err:
        if ready_fd >= 0:
            os.write(ready_fd, f"entering the container's network: {err}".encode())
        os._exit(125)
    if ready_fd >= 0:
        os.write(ready_fd, b"ok")
        os.close(ready_fd)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:  # as Go programs (rootlessport) do: every connection is two fds
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, OSError, ValueError):
        pass
    forwarder = _Forwarder(target, int(exit_text), linux)
    for spec in argv[5:]:
        fd_text, protocol, port_text = spec.split(":")
        forwarder.listen(int(fd_text), protocol, int(port_text))
    forwarder.run()
