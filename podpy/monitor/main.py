"""The per-container monitor (conmon's role): starts the container through the OCI runtime,
relays stdio or a pty, writes the log, serves attach clients, proxies signals, reaps
everything as a child subreaper, records the exit, and removes --rm containers.

It runs as `python3 -I -S podpy.pyz __monitor SPEC.json`, imports only the stdlib and small
podpy modules, and never touches typer, rich or pyroute2.
"""

from __future__ import annotations

# The C module under `socket`: socket.py itself builds four IntEnums at import (~4 ms of
# every start) and the monitor needs none of its helpers until an attach client connects.
import _socket
import errno
import fcntl
import json
import os
import select
import signal
import struct
import sys
import time

from podpy.monitor import logfile

TYPE_CHECKING = False  # typing costs ~5 ms and ~0.8 MiB in the long-lived monitor
if TYPE_CHECKING:
    import socket
    from typing import Any, Dict, List, Optional

# Frames sent to attach clients: [stream, 0, 0, 0, len_be32] + payload (Docker's format).
STREAM_STDIN, STREAM_STDOUT, STREAM_STDERR = 0, 1, 2
PROXIED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCONT,
    signal.SIGALRM,
    signal.SIGPIPE,
)
READ_CHUNK = 65536
# Attach clients' resize channel (conmon's ctl FIFO role): "ROWS COLS" in the run dir, then
# SIGWINCH to the monitor (engine/container_ops.attach).
WINSIZE_FILE = "winsize"
# How long the set-up interpreter supervises before it re-executes into the lean one: a
# short-lived container (`run --rm IMG true`) is finished by then and never pays for the
# re-exec; a long-lived one sheds the set-up modules a moment later.
LEAN_AFTER_SECONDS = 0.4


class MonitorError(Exception):
    def __init__(self, message: str, exit_code: int = 125):
        super().__init__(message)
        self.exit_code = exit_code


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        except OSError:
            return False
        view = view[n:]
    return True


def _write_json(path: str, obj: Dict[str, Any], durable: bool = False) -> None:
    """Atomic replace (temp + rename); `durable` adds an fsync, for what must survive a crash
    of the machine."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _tty_to_json(attrs: Optional[list]) -> Optional[list]:
    """termios attributes as JSON (control characters as numbers, which tcsetattr takes)."""
    if attrs is None:
        return None
    cc = [c[0] if isinstance(c, bytes) else int(c) for c in attrs[6]]
    return [*attrs[:6], cc]


def _tty_from_json(attrs: Optional[list]) -> Optional[list]:
    return None if attrs is None else [*attrs[:6], list(attrs[6])]


def bind_unix(sock: socket.socket, path: str) -> None:
    """bind() even past the 108-byte sun_path limit, through /proc/self/fd of the directory."""
    if len(path.encode()) < 100:
        sock.bind(path)
        return
    dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.bind(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
    finally:
        os.close(dir_fd)


def connect_unix(sock: socket.socket, path: str) -> None:
    """connect() counterpart of bind_unix."""
    if len(path.encode()) < 100:
        sock.connect(path)
        return
    dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
    finally:
        os.close(dir_fd)


def _proc_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat: tells a live process from a recycled pid."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rindex(b")") + 2 :].split()[19])


def _exit_code_from_status(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 125


class HandedOverProcess:
    """A network helper (slirp4netns, pasta) started before the monitor slimmed down:
    its pid, the fds that keep it alive, and files to remove once it is gone."""

    def __init__(self, info: Dict[str, Any]):
        self.pid: int = info["pid"]
        self.fds: List[int] = [fd for fd in info.get("fds", []) if fd >= 0]
        self.unlink: List[str] = list(info.get("unlink", []))
        self.signals = (
            (signal.SIGTERM, signal.SIGKILL)
            if info.get("term")
            else (0, signal.SIGTERM, signal.SIGKILL)
        )
        # helpers that go with it (slirp4netns's port forwarder): stopped first
        self.also = [HandedOverProcess(other) for other in info.get("also", [])]

    def _gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return True  # already reaped by the monitor's loop
            if pid == self.pid:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def stop(self) -> None:
        for other in self.also:
            other.stop()
        for fd in self.fds:
            os.close(fd)  # slirp4netns exits when its exit fd closes
        self.fds = []
        for sig in self.signals:
            if sig:
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass
            if self._gone(1.0):
                break
        for path in self.unlink:
            try:
                os.unlink(path)
            except OSError:
                pass


class Monitor:
    """One container's supervisor. `spec` is the JSON the engine wrote for it."""

    def __init__(self, spec: Dict[str, Any], sync_fd: int = -1):
        self.spec = spec
        self.sync_fd = sync_fd
        self.cid: str = spec["id"]
        self.foreground: bool = spec.get("foreground", False)
        self.tty: bool = spec.get("tty", False)
        self.keep_stdin: bool = spec.get("stdin", False)
        self.container_pid = -1
        self.exit_status: Optional[int] = None
        self.log: Optional[logfile.LogWriter] = None
        self.clients: List[socket.socket] = []
        self.attach_listener: Optional[socket.socket] = None
        self.outputs: Dict[int, int] = {}  # our read end -> stream id
        self.stdin_write = -1  # our write end of the container's stdin
        self.pty_master = -1
        self.wakeup_r = -1
        self.driver: Any = None
        self.network: Any = None
        self.saved_tty: Optional[list] = None
        self.stdin_done = False  # our own stdin reached EOF (foreground -i/-t)

    # --- setup ------------------------------------------------------------------------

    def _open_log(self) -> None:
        log = self.spec.get("log") or {}
        if log.get("driver", "k8s-file") in ("k8s-file", "json-file") and log.get("path"):
            self.log = logfile.LogWriter(log["path"], int(log.get("max_size", -1)))

    def _open_attach_socket(self) -> None:
        path = self.spec.get("attach_socket")
        if not path:
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        bind_unix(sock, path)
        os.chmod(path, 0o600)
        sock.listen(8)
        sock.setblocking(False)
        self.attach_listener = sock

    def _make_stdio(self) -> List[int]:
        """Create the container's stdio; returns the fds to hand to the container (0, 1, 2).

        With a terminal the runtime makes the pty and sends its master over the console
        socket (see drivers), so there is nothing to create here.
        """
        if self.tty:
            return []
        child_fds: List[int] = []
        if self.keep_stdin:
            r, w = os.pipe()
            self.stdin_write = w
            child_fds.append(r)
        else:
            child_fds.append(os.open(os.devnull, os.O_RDONLY))
        for stream in (STREAM_STDOUT, STREAM_STDERR):
            r, w = os.pipe()
            os.set_blocking(r, False)
            self.outputs[r] = stream
            child_fds.append(w)
        return child_fds

    def _apply_winsize(self, size: Optional[List[int]]) -> None:
        if self.pty_master < 0:
            return
        if size is None and self.foreground and os.isatty(0):
            import termios

            raw = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            rows, cols = struct.unpack("HHHH", raw)[:2]
            size = [rows, cols]
        elif size is None:  # `podpy attach` wrote its terminal's size here, then SIGWINCH
            try:
                with open(os.path.join(self.spec["run_dir"], WINSIZE_FILE)) as f:
                    size = [int(n) for n in f.read().split()[:2]]
            except (OSError, ValueError, KeyError):
                return
        if size:
            import termios

            fcntl.ioctl(
                self.pty_master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0)
            )

    def _raw_terminal(self) -> None:
        if self.saved_tty is None and self.foreground and self.tty and os.isatty(0):
            import termios
            import tty

            self.saved_tty = termios.tcgetattr(0)
            tty.setraw(0)

    def _restore_terminal(self) -> None:
        if self.saved_tty is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self.saved_tty)
            self.saved_tty = None

    def _install_signals(self) -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self.wakeup_r = r
        signal.set_wakeup_fd(w)
        for sig in PROXIED_SIGNALS + (signal.SIGCHLD,):
            signal.signal(sig, lambda *_: None)

    def _report(self, obj: Dict[str, Any]) -> None:
        """Tell the launching podpy (detached mode) that we started or why we failed."""
        if self.sync_fd >= 0:
            try:
                os.write(self.sync_fd, (json.dumps(obj) + "\n").encode())
            except OSError:
                pass
            os.close(self.sync_fd)
            self.sync_fd = -1

    def _notify_systemd(self) -> None:
        path = os.environ.get("NOTIFY_SOCKET")
        mode = self.spec.get("sdnotify", "conmon")
        if not path or mode == "ignore":
            return
        message = f"MAINPID={os.getpid()}\n"
        if mode != "container":
            message += "READY=1\n"
        if path.startswith("@"):
            path = "\0" + path[1:]
        try:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        except OSError:
            return
        try:
            sock.sendto(message.encode(), path)
        except OSError:
            pass
        finally:
            sock.close()

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        from podpy.errors import PodpyError
        from podpy.monitor import prepare
        from podpy.monitor.drivers import make_driver

        try:
            prepare.enter_namespaces(self.spec)
            rootfs = prepare.mount_rootfs(self.spec)
            prepare.write_bundle(self.spec, rootfs)
        except PodpyError as err:
            raise MonitorError(err.message, err.exit_code) from err
        except OSError as err:
            raise MonitorError(f"preparing the container: {err}") from err
        self._open_log()
        self._open_attach_socket()
        stdio = self._make_stdio()
        self.driver = make_driver(self.spec)
        try:
            self.container_pid = self.driver.create(stdio)
        finally:
            for fd in set(stdio):
                os.close(fd)
        if self.tty:
            self.pty_master = self.driver.console_master
            self.outputs[self.pty_master] = STREAM_STDOUT
            self._apply_winsize(self.spec.get("console_size"))
        self._start_network()
        self.driver.start()
        started = time.time()
        monitor_state = {
            "monitor_pid": os.getpid(),
            "monitor_start": _proc_start_time(os.getpid()),
            "started_at": started,
            "finished_at": None,
            "oom_killed": False,
        }
        if self.spec.get("db"):
            from podpy.monitor import record

            record.mark_running(
                self.spec["db"],
                self.cid,
                self.spec.get("name", ""),
                self.container_pid,
                monitor_state,
            )
        self._report({"pid": self.container_pid, "started_at": started})
        self._notify_systemd()

    def _start_network(self) -> None:
        """slirp4netns/pasta for the container's new netns, between create and start (as
        podman does), so the command finds its network ready."""
        net = self.spec.get("network") or {}
        if net.get("bridge"):  # rootful user-defined networks: veth pairs onto host bridges
            from netns_helpers.bridge import attach_container
            from podpy.errors import PodpyError

            try:
                # published ports: a relay process, stopped with the container (finish())
                self.network = attach_container(
                    net["bridge"], self.container_pid, net.get("ports") or []
                )
            except PodpyError as err:
                self.driver.delete()
                raise MonitorError(err.message, err.exit_code) from err
            return
        if net.get("mode") not in ("slirp4netns", "pasta"):
            return
        from netns_helpers.slirp import start_user_network
        from podpy.errors import PodpyError

        try:
            self.network = start_user_network(net, self.container_pid, self.spec["run_dir"])
        except PodpyError as err:
            self.driver.delete()
            raise MonitorError(err.message, err.exit_code) from err

    def _read_output(self, fd: int) -> bool:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return True
        except OSError as err:
            if err.errno == errno.EIO:  # pty closed by the last writer
                data = b""
            else:
                raise
        if not data:
            return False
        stream = self.outputs[fd]
        if self.log is not None:
            self.log.write("stdout" if stream == STREAM_STDOUT else "stderr", data)
        if self.foreground:
            _write_all(1 if stream == STREAM_STDOUT else 2, data)
        dead = []
        for client in self.clients:
            try:
                client.sendall(data if self.tty else _frame(stream, data))
            except OSError:
                dead.append(client)
        for client in dead:
            self._drop_client(client)
        return True

    def _container_input(self, data: bytes) -> None:
        target = self.pty_master if self.tty else self.stdin_write
        if target >= 0:
            _write_all(target, data)

    def _close_stdin(self) -> None:
        if self.stdin_write >= 0:
            os.close(self.stdin_write)
            self.stdin_write = -1

    def _accept_client(self) -> socket.socket:
        """accept() on the attach socket; the first client brings in the socket module (the
        listener was made with _socket, which has no public accept)."""
        import socket

        listener = self.attach_listener
        assert listener is not None
        if not isinstance(listener, socket.socket):
            listener = socket.socket(fileno=listener.detach())  # same fd, still polled
            listener.setblocking(False)
            self.attach_listener = listener
        client, _ = listener.accept()
        return client

    def _drop_client(self, client: socket.socket) -> None:
        if client in self.clients:
            self.clients.remove(client)
        client.close()

    def _handle_signals(self) -> None:
        try:
            raw = os.read(self.wakeup_r, 256)
        except BlockingIOError:
            return
        for signum in raw:
            if signum == signal.SIGCHLD:
                self._reap()
            elif signum == signal.SIGWINCH:
                self._apply_winsize(None)
            elif self.spec.get("sig_proxy", True) and self.container_pid > 0:
                if signum == signal.SIGPIPE:
                    continue
                try:
                    os.kill(self.container_pid, signum)
                except ProcessLookupError:
                    pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.container_pid and self.exit_status is None:
                self.exit_status = status

    def run(self) -> int:
        self._install_signals()
        try:
            self.start()
        except MonitorError as err:
            self._report({"error": str(err), "exit_code": err.exit_code})
            sys.stderr.write(f"Error: {err}\n")
            self.finish(err.exit_code)
            return err.exit_code
        return self.supervise(slim_down=True)

    def supervise(self, slim_down: bool = False) -> int:
        """The long part of the monitor's life: relay, log, reap, then finish. With
        `slim_down`, a container still running after LEAN_AFTER_SECONDS is handed over to the
        lean interpreter (this process is replaced and never returns here)."""
        self._raw_terminal()
        # PODPY_MONITOR_LEAN_AFTER (seconds) lets tests widen the window before the re-exec.
        lean_after = float(os.environ.get("PODPY_MONITOR_LEAN_AFTER") or LEAN_AFTER_SECONDS)
        try:
            if slim_down and not self._loop(time.monotonic() + lean_after):
                self._exec_lean()  # returns only when something cannot be handed over
            self._loop()
        finally:
            self._restore_terminal()
        return self.finish()

    # --- slimming down ----------------------------------------------------------------
    # Setting a container up imports the spec generator, the runtime, seccomp tables,
    # sqlite3 ...: ~18 MiB that the monitor would carry for the container's whole life.
    # Once the container runs, the monitor re-executes itself (same pid, so shells and
    # systemd see no change; same children, fds and namespaces) into a fresh interpreter
    # that only imports the supervision loop, and hands its state over in a file.

    def _handoff_state(self) -> Optional[Dict[str, Any]]:
        network = None
        if self.network is not None:
            handoff = getattr(self.network, "handoff", None)
            if handoff is None:
                return None  # a helper this monitor cannot hand over: stay as we are
            network = handoff()
        return {
            "container_pid": self.container_pid,
            "outputs": {str(fd): stream for fd, stream in self.outputs.items()},
            "stdin_write": self.stdin_write,
            "stdin_done": self.stdin_done,
            "pty_master": self.pty_master,
            "attach_listener": (
                self.attach_listener.detach() if self.attach_listener is not None else -1
            ),
            "clients": [client.detach() for client in self.clients],
            # The terminal is already raw: the resumed monitor restores these settings.
            "saved_tty": _tty_to_json(self.saved_tty),
            "network": network,
        }

    def _exec_lean(self) -> None:
        if os.environ.get("PODPY_MONITOR_NO_REEXEC") == "1":
            return
        # From here on signals stay pending (not lost) until the new image has installed its
        # handlers; those that already arrived are handled now, so none is dropped.
        handled = PROXIED_SIGNALS + (signal.SIGCHLD,)
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        self._handle_signals()
        self._reap()
        state = None if self.exit_status is not None else self._handoff_state()
        if state is None:
            # Exited meanwhile (the loop drains and finishes), or a helper that cannot be
            # handed over: stay as we are.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
            return
        from podpy.selfexec import podpy_argv

        fds = [int(fd) for fd in state["outputs"]] + [
            fd
            for fd in (state["stdin_write"], state["pty_master"], state["attach_listener"])
            if fd >= 0
        ]
        fds += state["clients"]
        if state["network"]:
            for helper in [state["network"], *state["network"].get("also", [])]:
                fds += [fd for fd in helper.get("fds", []) if fd >= 0]
        for fd in fds:
            os.set_inheritable(fd, True)
        path = os.path.join(self.spec["run_dir"], "monitor-resume.json")
        _write_json(path, {"spec": self.spec, "state": state})
        signal.set_wakeup_fd(-1)
        argv = podpy_argv(lean=True) + ["__monitor", "--resume", path]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(argv[0], argv)

    @classmethod
    def resume(cls, path: str) -> Monitor:
        with open(path) as f:
            saved = json.load(f)
        os.unlink(path)
        monitor = cls(saved["spec"])
        state = saved["state"]
        monitor.container_pid = state["container_pid"]
        monitor.outputs = {int(fd): stream for fd, stream in state["outputs"].items()}
        monitor.stdin_write = state["stdin_write"]
        monitor.stdin_done = bool(state.get("stdin_done"))
        monitor.pty_master = state["pty_master"]
        if state["attach_listener"] >= 0:
            monitor.attach_listener = _socket.socket(fileno=state["attach_listener"])
            monitor.attach_listener.setblocking(False)
        monitor.clients = [_socket.socket(fileno=fd) for fd in state.get("clients") or []]
        monitor.saved_tty = _tty_from_json(state.get("saved_tty"))
        if state.get("network"):
            monitor.network = HandedOverProcess(state["network"])
        for fd in [*monitor.outputs, monitor.stdin_write, monitor.pty_master]:
            if fd >= 0:
                os.set_inheritable(fd, False)
        for sock in monitor.clients + (
            [monitor.attach_listener] if monitor.attach_listener is not None else []
        ):
            os.set_inheritable(sock.fileno(), False)
        monitor._open_log()
        monitor._install_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, PROXIED_SIGNALS + (signal.SIGCHLD,))
        return monitor

    def _loop(self, deadline: Optional[float] = None) -> bool:
        """Relay, log and reap until the container has exited and its output is drained
        (True), or until `deadline` (a time.monotonic() value) passes first (False)."""
        poller = select.poll()
        poller.register(self.wakeup_r, select.POLLIN)
        for fd in self.outputs:
            poller.register(fd, select.POLLIN)
        if self.foreground and (self.keep_stdin or self.tty) and not self.stdin_done:
            poller.register(0, select.POLLIN)
        if self.attach_listener is not None:
            poller.register(self.attach_listener.fileno(), select.POLLIN)
        client_fds: Dict[int, socket.socket] = {}
        for client in self.clients:
            client_fds[client.fileno()] = client
            poller.register(client.fileno(), select.POLLIN)
        self._reap()
        while True:
            if self.exit_status is not None and not self.outputs:
                return True
            # After the container exits, drain what is buffered but never block on a pipe
            # a grandchild may still hold open.
            timeout: Optional[int] = None
            if self.exit_status is not None:
                timeout = 100
            elif deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                timeout = int(remaining * 1000) + 1
            events = poller.poll(timeout)
            if not events and self.exit_status is not None:
                return True
            for fd, mask in events:
                if fd == self.wakeup_r:
                    self._handle_signals()
                elif fd in self.outputs:
                    if not self._read_output(fd):
                        poller.unregister(fd)
                        if fd != self.pty_master:
                            os.close(fd)
                        del self.outputs[fd]
                elif fd == 0:
                    data = (
                        os.read(0, READ_CHUNK) if mask & (select.POLLIN | select.POLLHUP) else b""
                    )
                    if data:
                        self._container_input(data)
                    else:
                        poller.unregister(0)
                        self.stdin_done = True
                        self._close_stdin()
                elif self.attach_listener is not None and fd == self.attach_listener.fileno():
                    client = self._accept_client()
                    self.clients.append(client)
                    client_fds[client.fileno()] = client
                    poller.register(client.fileno(), select.POLLIN)
                elif fd in client_fds:
                    client = client_fds[fd]
                    try:
                        data = client.recv(READ_CHUNK)
                    except OSError:
                        data = b""
                    if data:
                        self._container_input(data)
                    else:
                        poller.unregister(fd)
                        del client_fds[fd]
                        self._drop_client(client)

    def finish(self, failed_code: Optional[int] = None) -> int:
        """Record the exit (or the start failure's code), release everything, honour --rm."""
        if failed_code is not None:
            code = failed_code
        else:
            code = _exit_code_from_status(self.exit_status or 0)
        finished = time.time()
        oom = False
        if self.driver is None and self.container_pid > 0:
            from podpy.monitor.drivers import make_driver

            self.driver = make_driver(self.spec)  # resumed: the runtime still has its state
        if self.driver is not None:
            oom = self.driver.oom_killed()
            self.driver.delete()
        if self.network is not None:
            self.network.stop()
        from podpy.monitor import prepare

        prepare.unmount_rootfs(self.spec)
        if self.log is not None:
            self.log.close()
        for client in list(self.clients):
            self._drop_client(client)
        if self.attach_listener is not None:
            self.attach_listener.close()
            try:
                os.unlink(self.spec["attach_socket"])
            except OSError:
                pass
        if self.spec.get("exit_file"):
            _write_json(
                self.spec["exit_file"],
                {"exit_code": code, "finished_at": finished, "oom_killed": oom},
            )
        lean_removal = self._lean_removal() and self._release_host_default()
        if self.spec.get("db"):
            from podpy.monitor import record

            try:
                recorded = record.mark_exited(
                    self.spec["db"],
                    self.cid,
                    self.spec.get("name", ""),
                    code,
                    finished,
                    oom,
                    remove_image=self.spec.get("image_name", "") if lean_removal else None,
                )
            except Exception as err:  # the exit file still tells the next podpy command
                sys.stderr.write(f"podpy monitor: recording the exit failed: {err}\n")
            else:
                if lean_removal and recorded:
                    self._remove_dirs()
                    return code
        self._run_cleanup()
        return code

    def _lean_removal(self) -> bool:
        """--rm of a container that owns nothing but its row and its directories (no network
        addresses, no anonymous volumes): removed here with plain sqlite3 and the directory
        list `podpy rm` uses, instead of importing the engine (~80 ms at every `run --rm`)."""
        spec = self.spec
        if not spec.get("remove") or not spec.get("db") or "remove_dirs" not in spec:
            return False
        network = spec.get("network") or {}
        if network.get("mode") == "bridge" and not _on_host_default_only(network):
            return False  # addresses in the store's networks to give back (engine.networks)
        return not any(vol.get("anonymous") for vol in spec.get("volumes") or [])

    def _release_host_default(self) -> bool:
        """Root's default network (`podman` on podpy0): its address goes back to the host-wide
        pool before the row (a crash in between leaves a row `rm` can still remove)."""
        network = self.spec.get("network") or {}
        if network.get("mode") != "bridge":
            return True
        from netns_helpers.default_net import release_containers

        try:
            release_containers([self.cid])
        except Exception as err:  # the engine's removal tries again, and reports
            sys.stderr.write(f"podpy monitor: releasing {self.cid[:12]}'s address: {err}\n")
            return False
        return True

    def _remove_dirs(self) -> None:
        from podpy.atomic import remove_tree

        for path in self.spec["remove_dirs"]:
            try:
                remove_tree(path)
            except OSError as err:
                sys.stderr.write(f"podpy monitor: removing container {self.cid[:12]}: {err}\n")

    def _run_cleanup(self) -> None:
        """--rm: remove the container now that its exit is recorded, in this process (the
        engine code `podpy rm` uses; we are already root of the user namespace)."""
        if not self.spec.get("remove"):
            return
        from podpy.engine import Engine, GlobalOptions
        from podpy.engine.containers import remove
        from podpy.errors import PodpyError

        store = self.spec.get("store") or {}
        engine = Engine(GlobalOptions(root=store.get("root"), runroot=store.get("runroot")))
        try:
            remove(engine, self.cid, force=True, volumes=True)  # --rm drops anonymous volumes
        except PodpyError as err:
            sys.stderr.write(f"podpy monitor: removing container {self.cid[:12]}: {err}\n")
        finally:
            engine.close()


def _on_host_default_only(network: Dict[str, Any]) -> bool:
    """Root, attached to the host's default network and nothing else: its removal needs no
    engine (netns_helpers.default_net keeps that pool, not the store)."""
    request = network.get("bridge") or {}
    interfaces = request.get("interfaces") or []
    return (
        bool(request.get("default_net"))
        and not request.get("netns")  # rootless: the store's own `podman` network
        and bool(interfaces)
        and all(iface.get("network") == "podman" for iface in interfaces)
    )


def main(argv: List[str]) -> int:
    if not argv:
        sys.stderr.write("usage: podpy __monitor SPEC.json [SYNC_FD]\n")
        return 125
    if argv[0] == "--resume":
        # The subreaper flag, children, namespaces and fds survived the execve.
        return Monitor.resume(argv[1]).supervise()
    with open(argv[0]) as f:
        spec = json.load(f)
    sync_fd = int(argv[1]) if len(argv) > 1 else -1
    from podpy import linux

    linux.set_child_subreaper()
    monitor = Monitor(spec, sync_fd)
    try:
        return monitor.run()
    except Exception as err:  # a bug: the launching podpy must still hear about it
        import traceback

        traceback.print_exc()
        message = f"internal error in the container monitor: {type(err).__name__}: {err}"
        monitor._report({"error": message, "exit_code": 125})
        sys.stderr.write(f"Error: {message}\n")
        return 125
