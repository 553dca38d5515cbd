"""The only module that makes raw Linux calls (ctypes): namespaces, mounts, pivot_root, prctl,
capabilities, seccomp, hostname. Every wrapper raises OSError(errno, message) on failure.

Imports only ctypes/os/errno (not even typing) so the monitor, container init and the port
forwarder can use it cheaply.
"""

from __future__ import annotations

import ctypes
import errno
import os

TYPE_CHECKING = False  # typing costs ~0.8 MiB in the long-lived helpers that import this
if TYPE_CHECKING:
    from typing import Iterable, Optional

# CDLL(None) is the already-loaded libc: no find_library() (it spawns ldconfig).
_libc = ctypes.CDLL(None, use_errno=True)

# clone/unshare flags (linux/sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS,
    "cgroup": CLONE_NEWCGROUP,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "time": CLONE_NEWTIME,
}
# /proc/PID/ns/<file> for each OCI namespace type
NAMESPACE_FILES = {
    "mount": "mnt",
    "cgroup": "cgroup",
    "uts": "uts",
    "ipc": "ipc",
    "user": "user",
    "pid": "pid",
    "network": "net",
    "time": "time",
}

# mount flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# prctl options (linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_SYSCALL_NUMBERS = {
    # name: (x86_64, aarch64)
    "pivot_root": (155, 41),
    "setns": (308, 268),
    "seccomp": (317, 277),
    "pidfd_open": (434, 434),
    "pidfd_send_signal": (424, 424),
    "capget": (125, 90),
    "capset": (126, 91),
}
_ARCH_INDEX = {"x86_64": 0, "aarch64": 1}


def _syscall_number(name: str) -> int:
    machine = os.uname().machine
    if machine not in _ARCH_INDEX:
        raise OSError(errno.ENOSYS, f"{name}: architecture {machine} is not supported")
    return _SYSCALL_NUMBERS[name][_ARCH_INDEX[machine]]


def _check(result: int, what: str, path: Optional[str] = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        if path is None:
            raise OSError(err, f"{what}: {os.strerror(err)}")
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(value: Optional[str]) -> Optional[bytes]:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def setns_path(path: str, nstype: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, nstype)
    finally:
        os.close(fd)


def mount(
    source: Optional[str],
    target: str,
    fstype: Optional[str] = None,
    flags: int = 0,
    data: Optional[str] = None,
) -> None:
    result = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(result, f"mount {source or fstype} on {target}", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}", target)


def make_rprivate(path: str = "/") -> None:
    mount(None, path, None, MS_REC | MS_PRIVATE)


def pivot_root(new_root: str, put_old: str) -> None:
    result = _libc.syscall(_syscall_number("pivot_root"), _b(new_root), _b(put_old))
    _check(result, "pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = _libc.prctl(
        ctypes.c_int(option),
        ctypes.c_ulong(arg2),
        ctypes.c_ulong(arg3),
        ctypes.c_ulong(arg4),
        ctypes.c_ulong(arg5),
    )
    return _check(result, f"prctl({option})")


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_keepcaps(keep: bool) -> None:
    prctl(PR_SET_KEEPCAPS, 1 if keep else 0)


def set_process_name(name: str) -> None:
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _check(_libc.prctl(PR_SET_NAME, buf, 0, 0, 0), "prctl(PR_SET_NAME)")


# --- capabilities -------------------------------------------------------------------------

CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]
CAP_NUMBERS = {name: i for i, name in enumerate(CAPABILITIES)}


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def cap_mask(names: Iterable[str]) -> int:
    mask = 0
    for name in names:
        key = name.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        if key not in CAP_NUMBERS:
            raise ValueError(f"unknown capability {name!r}")
        mask |= 1 << CAP_NUMBERS[key]
    return mask


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    result = _libc.syscall(_syscall_number("capset"), ctypes.byref(header), data)
    _check(result, "capset")


def drop_bounding_except(keep_mask: int) -> None:
    for cap in range(last_cap() + 1):
        if not keep_mask & (1 << cap):
            try:
                prctl(PR_CAPBSET_DROP, cap)
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise


def raise_ambient(mask: int) -> None:
    for cap in range(last_cap() + 1):
        if mask & (1 << cap):
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


# --- seccomp ------------------------------------------------------------------------------


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_load(program: list[tuple[int, int, int, int]], flags: int = 0) -> None:
    """Install a classic-BPF seccomp filter given as (code, jt, jf, k) tuples."""
    array = (_SockFilter * len(program))(*[_SockFilter(*ins) for ins in program])
    prog = _SockFprog(len(program), array)
    result = _libc.syscall(
        _syscall_number("seccomp"),
        SECCOMP_SET_MODE_FILTER,
        ctypes.c_uint(flags),
        ctypes.byref(prog),
    )
    _check(result, "seccomp")


# --- pidfd --------------------------------------------------------------------------------


def pidfd_open(pid: int) -> int:
    return _check(_libc.syscall(_syscall_number("pidfd_open"), ctypes.c_int(pid), 0), "pidfd_open")


# --- splice (os.splice is Python 3.10+) -----------------------------------------------------

SPLICE_F_MOVE = 1
SPLICE_F_NONBLOCK = 2
SPLICE_F_MORE = 4
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ is 3.10+ too
F_GETPIPE_SZ = 1032

_splice = _libc.splice
_splice.restype = ctypes.c_ssize_t
_splice.argtypes = [
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_uint,
]


def splice(fd_in: int, fd_out: int, count: int, flags: int = SPLICE_F_MOVE) -> int:
    """Move up to `count` bytes between two fds, one of them a pipe, without copying them
    through user space; returns the bytes moved (0: end of input). Retries EINTR; a
    non-blocking fd that is not ready raises BlockingIOError (ctypes releases the GIL for
    the call, so a blocking splice does not stall other threads)."""
    while True:
        moved = _splice(fd_in, None, fd_out, None, count, flags)
        if moved >= 0:
            return moved
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, f"splice: {os.strerror(err)}")


def splice_nonblock(fd_in: int, fd_out: int, count: int) -> int:
    """splice() with SPLICE_F_NONBLOCK for an event loop: -1 instead of an exception when
    either side is not ready (EAGAIN), the hot path's common case."""
    while True:
        moved = _splice(fd_in, None, fd_out, None, count, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
        if moved >= 0:
            return moved
        err = ctypes.get_errno()
        if err == errno.EAGAIN:
            return -1
        if err != errno.EINTR:
            raise OSError(err, f"splice: {os.strerror(err)}")
