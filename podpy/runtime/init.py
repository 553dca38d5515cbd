"""Container init: runs as PID 1 of the new namespaces, builds the filesystem, waits for `start`, execs.

Everything here happens in the forked child the built-in runtime creates. Modules it needs
after pivot_root are imported before it (the host's Python library is gone afterwards).
Errors before the exec fifo are reported to the runtime over the sync socket as JSON.
"""

from __future__ import annotations

# The C module under `socket`: socket.py builds four IntEnums at import (~4 ms of every
# container start) for nothing the init needs.
import _socket
import errno
import fcntl
import json
import os
import resource
import signal
import stat
import struct
import termios

from podpy import linux
from podpy.runtime import caps as capmod
from podpy.runtime import mounts as mnt

DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_SYMLINKS = (
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
)
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
TIOCSCTTY = 0x540E

TYPE_CHECKING = False  # typing costs ~5 ms of every container start
if TYPE_CHECKING:
    from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple


class InitFailure(Exception):
    """A setup failure with the exit code podman would map it to (127 not found, 126 not executable)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.message = message
        self.code = code


class InitContext:
    """Everything the forked init needs; built by the runtime before it forks."""

    def __init__(
        self,
        config: Dict[str, Any],
        bundle: str,
        sync: _socket.socket,
        fifo_path: str,
        in_userns: bool,
        seccomp_program: Optional[List[Tuple[int, int, int, int]]] = None,
        seccomp_flags: int = 0,
        console: Optional[_socket.socket] = None,
        stdio: Optional[Sequence[int]] = None,
        preserve_fds: int = 0,
        hooks_sync: bool = False,
        use_init: bool = False,
        host_cgroups: Optional[Dict[str, str]] = None,
    ):
        self.config = config
        self.bundle = bundle
        self.sync = sync
        self.fifo_path = fifo_path
        self.in_userns = in_userns
        self.seccomp_program = seccomp_program
        self.seccomp_flags = seccomp_flags
        self.console = console
        self.stdio = stdio
        self.preserve_fds = preserve_fds
        self.hooks_sync = hooks_sync
        self.use_init = use_init
        self.host_cgroups = host_cgroups or {}


def _send(sock: _socket.socket, message: Dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _recv_line(sock: _socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def main(ctx: InitContext) -> NoReturn:
    """Entry point in the forked PID 1; never returns."""
    try:
        os.setsid()
        exec_fd = _prepare(ctx)
    except InitFailure as err:
        _report_and_exit(ctx, err.message, err.code)
    except OSError as err:
        _report_and_exit(ctx, _describe(err), 1)
    except Exception as err:  # anything else is a bug; still never fall back into the caller
        _report_and_exit(ctx, f"container init: {type(err).__name__}: {err}", 1)
    # Blocks until `start` opens the fifo for reading (or we are killed).
    fd = os.open(f"/proc/self/fd/{exec_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(exec_fd)
    try:
        _finalize_and_exec(ctx)
    except InitFailure as err:
        os.write(2, f"podpy: {err.message}\n".encode())
        os._exit(err.code)
    except Exception as err:
        os.write(2, f"podpy: {_describe(err)}\n".encode())
        os._exit(1)
    os._exit(1)


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        where = f" {err.filename}" if err.filename and str(err.filename) not in str(err) else ""
        return f"{err.strerror}{where}" if not err.args[1:] else f"{err.args[1]}{where}"
    return str(err)


def _report_and_exit(ctx: InitContext, message: str, code: int) -> NoReturn:
    try:
        _send(ctx.sync, {"error": message, "code": code})
    except OSError:
        pass
    os._exit(code or 1)


# --- filesystem --------------------------------------------------------------------------------


def _prepare(ctx: InitContext) -> int:
    config = ctx.config
    root = config["root"]
    rootfs = root["path"]
    if not os.path.isabs(rootfs):
        rootfs = os.path.join(ctx.bundle, rootfs)
    rootfs = os.path.realpath(rootfs)
    linux_cfg = config.get("linux") or {}

    if ctx.stdio:
        for target, fd in enumerate(ctx.stdio):
            if fd is not None and fd != target:
                os.dup2(fd, target)
    new_mount_ns = any(n.get("type") == "mount" for n in linux_cfg.get("namespaces") or [])
    if not new_mount_ns:
        raise InitFailure("the built-in runtime needs a mount namespace in the bundle")
    propagation = linux_cfg.get("rootfsPropagation") or "rprivate"
    # Nothing we mount may leak back to the host.
    linux.mount(
        None,
        "/",
        None,
        linux.MS_REC | (linux.MS_SLAVE if "slave" in propagation else linux.MS_PRIVATE),
    )
    overlay = (config.get("annotations") or {}).get("io.podpy.rootfs.overlay")
    if overlay:
        layers = json.loads(overlay)
        mnt.mount_overlay(
            layers["lower"], layers.get("upper"), layers.get("work"), rootfs, ctx.in_userns
        )
    # pivot_root needs the new root to be a mount point.
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)

    has_dev_tmpfs = False
    for entry in config.get("mounts") or []:
        dest = entry.get("destination", "")
        if dest == "/dev" and entry.get("type") != "bind":
            has_dev_tmpfs = True
        _mount_entry(ctx, rootfs, entry)
    if has_dev_tmpfs:
        _populate_dev(rootfs, linux_cfg.get("devices") or [], ctx.in_userns)

    if ctx.hooks_sync:
        _send(ctx.sync, {"stage": "mounted"})
        reply = _recv_line(ctx.sync)
        if not reply.startswith(b'{"continue"'):
            os._exit(1)

    if _new_ns(linux_cfg, "network"):
        _loopback_up()
    if config.get("hostname") and _new_ns(linux_cfg, "uts"):
        linux.sethostname(config["hostname"])
    if config.get("domainname") and _new_ns(linux_cfg, "uts"):
        linux.setdomainname(config["domainname"])

    exec_fd = os.open(ctx.fifo_path, os.O_PATH | os.O_CLOEXEC)

    os.chdir(rootfs)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")

    process = config.get("process") or {}
    cwd = process.get("cwd") or "/"
    if not os.path.isdir(cwd):
        # Created before a read-only remount of the root could forbid it (runc does the same).
        os.makedirs(cwd, 0o755, exist_ok=True)
    for key, value in (linux_cfg.get("sysctl") or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as f:
            f.write(str(value))
    for path in linux_cfg.get("maskedPaths") or []:
        mnt.mask_path(path)
    for path in linux_cfg.get("readonlyPaths") or []:
        mnt.readonly_path(path)
    if root.get("readonly"):
        mnt.remount_bind("/", linux.MS_RDONLY)
    if propagation not in ("rprivate", "private"):
        flags = mnt.parse_options([propagation]).propagation
        for flag in flags:
            linux.mount(None, "/", None, flag)

    if process.get("terminal"):
        _setup_terminal(ctx, process)
    _resolve_executable(process)
    os.chdir(cwd)

    _send(ctx.sync, {"ready": True})
    ctx.sync.close()
    return exec_fd


def _loopback_up() -> None:
    """A fresh network namespace has `lo` down; podman brings it up even for --network none."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
    finally:
        sock.close()


def _new_ns(linux_cfg: Dict[str, Any], kind: str) -> bool:
    return any(
        n.get("type") == kind and not n.get("path") for n in linux_cfg.get("namespaces") or []
    )


def _mount_entry(ctx: InitContext, rootfs: str, entry: Dict[str, Any]) -> None:
    dest_in = entry.get("destination")
    if not dest_in or not dest_in.startswith("/"):
        raise InitFailure(f"mount destination {dest_in!r} must be an absolute path")
    kind = entry.get("type") or ""
    options = entry.get("options") or []
    parsed = mnt.parse_options(options)
    is_bind = kind == "bind" or bool(parsed.flags & linux.MS_BIND)
    dest = mnt.secure_join(rootfs, dest_in)

    if is_bind:
        source = entry.get("source") or ""
        if not os.path.isabs(source):
            source = os.path.join(ctx.bundle, source)
        if not os.path.exists(source):
            raise InitFailure(f"mount source {entry.get('source')} for {dest_in} does not exist")
        mnt.ensure_mountpoint(dest, os.path.isdir(source))
        recursive = "rbind" in options
        linux.mount(source, dest, None, linux.MS_BIND | (linux.MS_REC if recursive else 0))
        extra = parsed.flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
        if extra:
            mnt.remount_bind(dest, extra)
    elif kind == "cgroup":
        mnt.ensure_mountpoint(dest, True)
        _mount_cgroup(ctx, dest, parsed.flags)
        return
    else:
        mnt.ensure_mountpoint(dest, True)
        try:
            linux.mount(entry.get("source") or kind, dest, kind, parsed.flags, parsed.data or None)
        except OSError as err:
            if err.errno != errno.EPERM or kind not in ("sysfs", "mqueue"):
                raise
            # Not owning the network (sysfs) or ipc (mqueue) namespace: bind the host's, as runc.
            host = "/sys" if kind == "sysfs" else "/dev/mqueue"
            linux.mount(host, dest, None, linux.MS_BIND | linux.MS_REC)
            mnt.remount_bind(dest, parsed.flags & ~linux.MS_REMOUNT)
    for flag in parsed.propagation:
        linux.mount(None, dest, None, flag)


def _mount_cgroup(ctx: InitContext, dest: str, flags: int) -> None:
    from podpy.runtime import cgroups

    readonly = flags & linux.MS_RDONLY
    base = flags & (linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RELATIME)
    if cgroups.mode() == "v2":
        try:
            linux.mount("cgroup2", dest, "cgroup2", base | readonly)
        except OSError:
            linux.mount("/sys/fs/cgroup", dest, None, linux.MS_BIND | linux.MS_REC)
            if readonly:
                mnt.remount_bind(dest, linux.MS_RDONLY)
        return
    # v1: a tmpfs with the container's own directory of each hierarchy bound in (runc's layout).
    linux.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    for name, host_path in sorted(ctx.host_cgroups.items()):
        target = os.path.join(dest, name)
        os.makedirs(target, exist_ok=True)
        try:
            linux.mount(host_path, target, None, linux.MS_BIND | linux.MS_REC)
            mnt.remount_bind(target, linux.MS_RDONLY | base)
        except OSError:
            continue
    if readonly:
        linux.mount(None, dest, None, linux.MS_REMOUNT | linux.MS_RDONLY | base, "mode=755")


def _populate_dev(rootfs: str, devices: List[Dict[str, Any]], in_userns: bool) -> None:
    dev = mnt.secure_join(rootfs, "/dev")
    for name in DEFAULT_DEVICES:
        _bind_device(f"/dev/{name}", os.path.join(dev, name))
    for device in devices:
        path = device.get("path") or ""
        target = mnt.secure_join(rootfs, path)
        if not in_userns and device.get("type") in ("c", "b", "u", "p"):
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
            mode = kind[device["type"]] | (device.get("fileMode") or 0o666)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.lexists(target):
                os.unlink(target)
            os.mknod(target, mode, os.makedev(device.get("major", 0), device.get("minor", 0)))
            os.chown(target, device.get("uid", 0), device.get("gid", 0))
        else:
            _bind_device(path, target)
    for source, name in _DEV_SYMLINKS:
        link = os.path.join(dev, name)
        if not os.path.lexists(link):
            os.symlink(source, link)
    ptmx = os.path.join(dev, "ptmx")
    if os.path.isdir(os.path.join(dev, "pts")) and not os.path.lexists(ptmx):
        os.symlink("pts/ptmx", ptmx)
    if os.path.exists("/proc/kcore") and not os.path.lexists(os.path.join(dev, "core")):
        os.symlink("/proc/kcore", os.path.join(dev, "core"))


def _bind_device(host_path: str, target: str) -> None:
    if not os.path.exists(host_path):
        return
    mnt.ensure_mountpoint(target, False)
    linux.mount(host_path, target, None, linux.MS_BIND)


# --- terminal ----------------------------------------------------------------------------------


def _setup_terminal(ctx: InitContext, process: Dict[str, Any]) -> None:
    if ctx.console is None:
        raise InitFailure("process.terminal is set but no --console-socket was given")
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    slave_path = f"/dev/pts/{number}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    size = process.get("consoleSize") or {}
    if size.get("height") or size.get("width"):
        winsize = struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
    console = "/dev/console"
    try:
        mnt.ensure_mountpoint(console, False)
        linux.mount(slave_path, console, None, linux.MS_BIND)
    except OSError:
        pass
    # socket.send_fds: the master as SCM_RIGHTS ancillary data
    ctx.console.sendmsg(
        [slave_path.encode()],
        [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", master))],
    )
    os.close(master)
    ctx.console.close()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


# --- process -----------------------------------------------------------------------------------


def _path_of(process: Dict[str, Any]) -> str:
    for item in process.get("env") or []:
        if item.startswith("PATH="):
            return item[5:]
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _resolve_executable(process: Dict[str, Any]) -> str:
    args = process.get("args") or []
    if not args:
        raise InitFailure("process.args must not be empty")
    name = args[0]
    if "/" in name:
        candidates = [
            name if name.startswith("/") else os.path.join(process.get("cwd") or "/", name)
        ]
        not_found = f'exec: "{name}": stat {name}: no such file or directory'
    else:
        candidates = [os.path.join(d or ".", name) for d in _path_of(process).split(":")]
        not_found = f'exec: "{name}": executable file not found in $PATH'
    denied = None
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            process["_resolved"] = path
            return path
        denied = path
    if denied is not None:
        raise InitFailure(f'exec: "{name}": permission denied', 126)
    raise InitFailure(not_found, 127)


def _apply_rlimits(process: Dict[str, Any]) -> None:
    for limit in process.get("rlimits") or []:
        name = limit.get("type", "")
        if not hasattr(resource, name):
            raise InitFailure(f"unknown rlimit type {name}")
        resource.setrlimit(getattr(resource, name), (int(limit["soft"]), int(limit["hard"])))


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except OSError:
        return True


def _finalize_and_exec(ctx: InitContext) -> None:
    config = ctx.config
    process = config.get("process") or {}
    _apply_rlimits(process)
    if process.get("oomScoreAdj") is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(process["oomScoreAdj"]))
    nnp = bool(process.get("noNewPrivileges"))
    if ctx.use_init:
        child = os.fork()
        if child != 0:
            _become_reaper(ctx, process, nnp, child)
    # Without NNP, loading a filter needs CAP_SYS_ADMIN: do it before dropping capabilities.
    if ctx.seccomp_program and not nnp:
        linux.seccomp_load(ctx.seccomp_program, ctx.seccomp_flags)
    _switch_user(process)
    if nnp:
        linux.set_no_new_privs()
    if ctx.seccomp_program and nnp:
        linux.seccomp_load(ctx.seccomp_program, ctx.seccomp_flags)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for fd in range(3, 3 + ctx.preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    path = process.get("_resolved") or _resolve_executable(process)
    try:
        env = dict(item.split("=", 1) for item in process.get("env") or [] if "=" in item)
        os.execve(path, process["args"], env)
    except PermissionError as err:
        raise InitFailure(f'exec: "{process["args"][0]}": permission denied', 126) from err
    except FileNotFoundError as err:
        raise InitFailure(
            f'exec: "{process["args"][0]}": executable file not found in $PATH', 127
        ) from err


def _switch_user(process: Dict[str, Any]) -> None:
    user = process.get("user") or {}
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    spec_caps = process.get("capabilities")
    if spec_caps is not None:
        capmod.drop_bounding(spec_caps)
    linux.set_keepcaps(True)
    if _setgroups_allowed():
        os.setgroups([int(g) for g in user.get("additionalGids") or []])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if spec_caps is not None:
        capmod.apply_sets(spec_caps)
    linux.set_keepcaps(False)
    if user.get("umask") is not None:
        os.umask(int(user["umask"]))
    try:
        os.chdir(process.get("cwd") or "/")
    except OSError:
        pass


def _become_reaper(ctx: InitContext, process: Dict[str, Any], nnp: bool, child: int) -> NoReturn:
    """--init: stay as PID 1 with the container's privileges, forward signals, reap everything."""
    try:
        if ctx.seccomp_program and not nnp:
            linux.seccomp_load(ctx.seccomp_program, ctx.seccomp_flags)
        _switch_user(process)
        if nnp:
            linux.set_no_new_privs()
    except OSError:
        pass

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for sig in (
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
        signal.SIGCONT,
    ):
        signal.signal(sig, forward)
    code = 0
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            # The kernel kills whatever is left in the pid namespace when PID 1 exits.
            os._exit(128 - code if code < 0 else code)
    os._exit(code)
