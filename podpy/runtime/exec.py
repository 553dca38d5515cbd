"""Run one more process inside a running container (runc exec's role): join every namespace of its
init, its cgroup, and apply the same seccomp filter, capabilities and user as its main process.

Process layout (the caller must be single-threaded, as setns(CLONE_NEWUSER) requires):

    caller (podpy, stays in the host namespaces: it relays a pty and collects the exit status)
     └─ joiner: joins the cgroup, then setns() user first, then the others; forks and exits
                (detached: it forks once more first and stays, to reap the process)
         └─ process: is in the container's pid namespace (setns(pid) only affects children);
                     sets up stdio/pty, rlimits, seccomp, user, capabilities; execve()

The caller is a child subreaper, so the process is reparented to it when the joiner exits and
the caller waits for it directly. Start failures come back over a CLOEXEC socket as JSON (an
execve that succeeds closes it), with podman's exit codes: 127 not found, 126 not executable.
"""

from __future__ import annotations

import gc
import json
import os
import socket
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from podpy.errors import CannotInvoke, CommandNotFound, InvalidState, PodpyError

# setns order: the user namespace first (it grants the capabilities the others need), the mount
# namespace last (after it, host paths are gone).
JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")
_RUNTIME_PREFIX = "podpy: exec failed: unable to start container process: "
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
TIOCSCTTY = 0x540E


class ExecRequest(NamedTuple):
    """One exec session. `process` is a complete OCI process object (args, env, cwd, user, caps)."""

    pid: int  # the container init's host pid, whose namespaces are joined
    process: Dict[str, Any]
    seccomp_program: Optional[List[Any]] = None  # compiled BPF, see compiled_seccomp()
    seccomp_flags: int = 0
    cgroup_dirs: Sequence[str] = ()  # directories whose cgroup.procs the process joins
    interactive: bool = False
    detach: bool = False
    winsize: Optional[bytes] = None  # struct winsize for the pty


class Started(NamedTuple):
    """A process that has exec'd its command; `master` is the pty master fd (or -1)."""

    pid: int
    master: int


def _open_namespaces(pid: int) -> List[Tuple[str, int]]:
    """Open the namespaces in which the container differs from us (setns into our own user
    namespace fails with EINVAL, and joining the same one of others is pointless).

    Everything is opened through one /proc/PID directory fd, so all of it belongs to the same
    process; a process that is gone is an error, never a silent exec on the host.
    """
    from podpy import linux

    not_running = InvalidState(
        "can only create exec sessions on running containers: container state improper"
    )
    try:
        proc_dir = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise not_running from err
    opened: List[Tuple[str, int]] = []
    try:
        for kind in JOIN_ORDER:
            name = linux.NAMESPACE_FILES[kind]
            try:
                fd = os.open(f"ns/{name}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_dir)
            except (FileNotFoundError, ProcessLookupError) as err:
                if kind in ("mount", "pid", "user"):  # present on every kernel: the process is gone
                    raise not_running from err
                continue  # a kernel without this namespace type
            except PermissionError as err:
                raise PodpyError(
                    f"cannot access the namespaces of container process {pid}: {err.strerror}",
                    hint="run podpy as the user who started the container",
                ) from err
            if os.fstat(fd).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                os.close(fd)
            else:
                opened.append((kind, fd))
    except BaseException:
        for _kind, fd in opened:
            os.close(fd)
        raise
    finally:
        os.close(proc_dir)
    return opened


def start(request: ExecRequest) -> Started:
    """Start the process; returns once it has exec'd (or raises with podman's exit code)."""
    from podpy import linux
    from podpy.runtime import init as init_mod  # noqa: F401  (imported before the fork: see _process)

    program, flags = request.seccomp_program, request.seccomp_flags
    ns_fds = _open_namespaces(request.pid)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if not request.detach:
        # The process is reparented to us when the joiner exits, so we can wait for it.
        linux.set_child_subreaper()
    # A collection in the children would touch every object: copy-on-write faults for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    joiner = os.fork()
    if joiner == 0:
        ours.close()
        _joiner(request, ns_fds, theirs, program, flags)
    if gc_was_enabled:
        gc.enable()
    theirs.close()
    for _kind, fd in ns_fds:
        os.close(fd)
    try:
        messages, fds = _read_until_eof(ours)
    finally:
        ours.close()
    _, status = os.waitpid(joiner, 0)
    process_pid = next((int(m["pid"]) for m in messages if "pid" in m), 0)
    failure = next((m for m in messages if "error" in m), None)
    if failure is not None:
        for fd in fds:
            os.close(fd)
        if process_pid:
            _reap(process_pid)
        raise _start_error(failure["error"], int(failure.get("code") or 125))
    if not process_pid:
        raise PodpyError(
            f"joining the container's namespaces failed (status {status})",
            hint="the container may have just stopped; check `podpy ps -a`",
        )
    return Started(process_pid, fds[0] if fds else -1)


def compiled_seccomp(
    section: Optional[Dict[str, Any]], cache_path: Optional[str] = None, cache_key: str = ""
) -> Any:
    """(BPF program, flags) for a linux.seccomp section, or (None, 0) without one.

    Compiling the profile (and importing the compiler) costs more than the rest of an exec, so
    the result is kept in cache_path (on tmpfs) under cache_key, which names the config it
    came from; a stale or unreadable cache is simply recompiled.
    """
    if not section:
        return None, 0
    if cache_path:
        try:
            with open(cache_path) as f:
                cached = json.load(f)
            if cached.get("key") == cache_key:
                return cached["program"], int(cached["flags"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from podpy.runtime import seccomp

    program = seccomp.compile_filter(section)
    flags = seccomp.filter_flags(section)
    if cache_path:
        tmp = f"{cache_path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump({"key": cache_key, "flags": flags, "program": program}, f)
            os.replace(tmp, cache_path)
        except OSError:
            pass  # a cache only
    return program, flags


def _start_error(message: str, code: int) -> PodpyError:
    if code == 127:
        return CommandNotFound(
            _RUNTIME_PREFIX
            + message
            + ": OCI runtime attempted to invoke a command that was not found"
        )
    if code == 126:
        return CannotInvoke(_RUNTIME_PREFIX + message + ": OCI permission denied")
    return PodpyError(_RUNTIME_PREFIX + message)


def _read_until_eof(sock: socket.socket) -> Any:
    """JSON lines (and at most one fd) until both children have closed their end."""
    buffer = b""
    fds: List[int] = []
    while True:
        data, received, _flags, _addr = socket.recv_fds(sock, 65536, 1)
        fds.extend(received)
        if not data and not received:
            break
        buffer += data
    messages = [json.loads(line) for line in buffer.splitlines() if line.strip()]
    return messages, fds


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _send(sock: socket.socket, message: Dict[str, Any], fds: Sequence[int] = ()) -> None:
    payload = json.dumps(message).encode() + b"\n"
    if fds:
        socket.send_fds(sock, [payload], list(fds))
    else:
        sock.sendall(payload)


def _joiner(
    request: ExecRequest,
    ns_fds: Sequence[Any],
    sock: socket.socket,
    program: Any,
    flags: int,
) -> None:
    """Forked child: cgroup, namespaces, fork the process; never returns."""
    from podpy import linux

    code = 0
    try:
        if request.detach:
            # A waiter that outlives podpy reaps the process (conmon's job for podman exec -d);
            # it leaves our session and, once orphaned, belongs to the host's init.
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _stdio_to_devnull((0, 1, 2))  # podpy's caller must not wait for our copy of its pipes
        for directory in request.cgroup_dirs:
            with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        for _kind, fd in ns_fds:
            linux.setns(fd, 0)
            os.close(fd)
        sock.set_inheritable(False)
        child = os.fork()
        if child == 0:
            _process(request, sock, program, flags)
        _send(sock, {"pid": child})
        if request.detach:
            sock.close()
            os.waitpid(child, 0)
    except BaseException as err:  # never return into the caller's stack from a fork
        try:
            _send(sock, {"error": f"joining the container: {_describe(err)}", "code": 125})
        except OSError:
            pass
        code = 1
    os._exit(code)


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.args[1] if len(err.args) > 1 and isinstance(err.args[1], str) else err.strerror
    return str(err) or type(err).__name__


def _process(request: ExecRequest, sock: socket.socket, program: Any, flags: int) -> None:
    """The exec'd process, inside every namespace of the container; never returns."""
    from podpy import linux
    from podpy.runtime import init as init_mod

    process = request.process
    try:
        try:
            init_mod._apply_rlimits(process)
        except (OSError, ValueError):
            pass  # rlimits above our hard limit (rootless): keep the inherited ones
        if process.get("terminal"):
            _attach_pty(request, sock)
        elif request.detach:
            os.setsid()
            _stdio_to_devnull((0, 1, 2))
        elif not request.interactive:
            _stdio_to_devnull((0,))
        nnp = bool(process.get("noNewPrivileges"))
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before the user switch.
        if program and not nnp:
            linux.seccomp_load(program, flags)
        init_mod._switch_user(process)
        if nnp:
            linux.set_no_new_privs()
        if program and nnp:
            linux.seccomp_load(program, flags)
        cwd = process.get("cwd") or "/"
        try:
            os.chdir(cwd)
        except OSError as err:
            raise init_mod.InitFailure(
                f'chdir to cwd ("{cwd}") set in config.json failed: {err.strerror.lower()}',
                127 if isinstance(err, FileNotFoundError) else 125,  # podman: only ENOENT is 127
            ) from err
        import signal

        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        path = init_mod._resolve_executable(process)
        env = dict(item.split("=", 1) for item in process.get("env") or [] if "=" in item)
        try:
            os.execve(path, process["args"], env)
        except PermissionError as err:
            raise init_mod.InitFailure(
                f'exec: "{process["args"][0]}": permission denied', 126
            ) from err
        except FileNotFoundError as err:
            raise init_mod.InitFailure(
                f'exec: "{process["args"][0]}": executable file not found in $PATH', 127
            ) from err
    except init_mod.InitFailure as err:
        _fail(sock, err.message, err.code)
    except BaseException as err:
        _fail(sock, _describe(err), 125)


def _fail(sock: socket.socket, message: str, code: int) -> None:
    try:
        _send(sock, {"error": message, "code": code})
    except OSError:
        pass
    os._exit(code)


def _stdio_to_devnull(targets: Sequence[int]) -> None:
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in targets:
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)


def _attach_pty(request: ExecRequest, sock: socket.socket) -> None:
    """A new pty from the container's own devpts, the slave as controlling terminal and stdio;
    the master goes back to the caller."""
    import fcntl
    import struct
    import termios

    os.setsid()
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    user = request.process.get("user") or {}
    try:
        os.fchown(slave, int(user.get("uid", 0)), -1)
    except OSError:
        pass
    if request.winsize:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, request.winsize)
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    _send(sock, {"tty": number}, [master])
    os.close(master)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)
    if request.detach:
        pass  # the terminal stays open for whoever attaches; nothing relays it


def wait(pid: int) -> int:
    """Wait for the process, forwarding the signals podpy gets; returns a shell-style exit code."""
    import signal

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    forwarded = [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2]
    terminal_keys = [signal.SIGINT, signal.SIGQUIT]
    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    for sig in terminal_keys:
        # On a terminal, Ctrl-C already reaches the process (same process group): podpy
        # itself must outlive it to report the exit code.
        previous[sig] = signal.signal(sig, signal.SIG_IGN if os.isatty(0) else forward)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def relay_pty(started: Started, interactive: bool) -> int:
    """Copy the pty to stdout (and stdin to it with -i, in raw mode on a terminal), keep its size
    in step with ours (SIGWINCH), and return the process's exit code once it is gone."""
    import select
    import signal

    from podpy import linux

    master = started.master
    pidfd = linux.pidfd_open(started.pid)
    saved_tty = None
    use_stdin = interactive
    if use_stdin and os.isatty(0):
        import termios
        import tty

        saved_tty = termios.tcgetattr(0)
        tty.setraw(0)

    def resize(_signum: int = 0, _frame: Any = None) -> None:
        size = terminal_size()
        if size is not None:
            import fcntl
            import termios

            try:
                fcntl.ioctl(master, termios.TIOCSWINSZ, size)
            except OSError:
                pass

    previous = signal.signal(signal.SIGWINCH, resize)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    if use_stdin:
        poller.register(0, select.POLLIN)
    exited = False
    try:
        while True:
            events = poller.poll(100 if exited else None)
            if not events and exited:
                break  # gone, and nothing more to read in time (a daemon may hold the pty)
            for fd, _mask in events:
                if fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        poller.unregister(master)
                        if not exited:
                            continue
                        raise StopIteration
                    _write_all(1, data)
                elif fd == pidfd:
                    exited = True
                    poller.unregister(pidfd)
                elif fd == 0:
                    data = os.read(0, 65536)
                    if data:
                        _write_all(master, data)
                    else:
                        poller.unregister(0)
    except StopIteration:
        pass
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved_tty is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved_tty)
        os.close(pidfd)
        os.close(master)
    _, status = os.waitpid(started.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def terminal_size() -> Optional[bytes]:
    """Our terminal's struct winsize (from stdin, else stdout), or None without a terminal."""
    import fcntl
    import termios

    for fd in (0, 1):
        if os.isatty(fd):
            try:
                return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
            except OSError:
                continue
    return None
