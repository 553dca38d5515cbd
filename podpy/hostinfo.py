"""Facts about this machine that podpy depends on, read through one injectable `Host`.

Everything is gathered cheaply from /proc, /sys and a few quick `--version` probes; the two
real probes (a user namespace, a native overlay mount inside one) run in a short-lived forked
child so nothing is left mounted. `choose_storage_driver` is the one place the storage driver
is decided, so `podpy info` and the storage layer always agree.
"""

from __future__ import annotations

import os
import stat

from podpy.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

# Podman reports Go's GOARCH names, not uname's.
GO_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# Overlay's `userxattr` option (overlay inside a user namespace) arrived in Linux 5.11.
NATIVE_ROOTLESS_OVERLAY_KERNEL = (5, 11)
# Extra places searched after $PATH: `sudo` and minimal environments often drop the sbin dirs.
EXTRA_BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
CAPABILITY_XATTR = "security.capability"
CAP_SETUID = 7
CAP_SETGID = 6
PROBE_TIMEOUT = 2.0


def go_arch(machine: str) -> str:
    return GO_ARCH.get(machine, machine)


def kernel_version(release: str) -> Tuple[int, int]:
    """(major, minor) of a uname release such as `6.18.44-fc-v782`; (0, 0) if unparsable."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


@record(frozen=True)
class UserInfo:
    """The account whose rootless setup is being described."""

    name: str
    uid: int
    gid: int
    home: str
    groups: Tuple[int, ...] = ()


class Host:
    """Read-only window on the machine. Tests subclass it to fake a failing host.

    Every method swallows "not there" into None/False so callers only decide, never catch.
    """

    def __init__(self, env: Optional[Mapping[str, str]] = None):
        self.env = os.environ if env is None else env

    # -- files -----------------------------------------------------------------------------
    def read_text(self, path: str) -> Optional[str]:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def stat(self, path: str) -> Optional[os.stat_result]:
        try:
            return os.stat(path)
        except OSError:
            return None

    def getxattr(self, path: str, name: str) -> Optional[bytes]:
        try:
            return os.getxattr(path, name)
        except OSError:
            return None

    def which(self, name: str) -> Optional[str]:
        import shutil

        path = self.env.get("PATH", "")
        search = (
            os.pathsep.join([path, *EXTRA_BIN_DIRS]) if path else os.pathsep.join(EXTRA_BIN_DIRS)
        )
        return shutil.which(name, path=search)

    def run(self, argv: Sequence[str], timeout: float = PROBE_TIMEOUT) -> Optional[str]:
        """stdout+stderr of a quick helper probe, or None if it cannot run."""
        import subprocess

        try:
            result = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.decode("utf-8", "replace")

    # -- identity --------------------------------------------------------------------------
    @property
    def euid(self) -> int:
        return os.geteuid()

    def user(self, name_or_uid: Optional[str] = None) -> Optional[UserInfo]:
        """The passwd entry for a name or numeric uid (default: the effective user)."""
        import grp
        import pwd

        try:
            if name_or_uid is None:
                entry = pwd.getpwuid(os.geteuid())
            elif name_or_uid.isdigit():
                entry = pwd.getpwuid(int(name_or_uid))
            else:
                entry = pwd.getpwnam(name_or_uid)
        except KeyError:
            return None
        try:
            groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        except OSError:
            groups = tuple(g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem)
        return UserInfo(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)

    def uname(self) -> Tuple[str, str, str]:
        """(hostname, kernel release, machine)."""
        u = os.uname()
        return u.nodename, u.release, u.machine

    # -- real probes -----------------------------------------------------------------------
    def probe_userns(self, user: UserInfo) -> Optional[str]:
        """None if `user` can create a user namespace, else the kernel's reason."""
        return _in_child(user, _child_unshare_userns, None)

    def probe_native_overlay(self, user: UserInfo, parent_dir: Optional[str]) -> Optional[str]:
        """None if `user` can mount overlay (userxattr) inside a user namespace, else why not."""
        import tempfile

        release = self.uname()[1]
        if kernel_version(release) < NATIVE_ROOTLESS_OVERLAY_KERNEL:
            return f"kernel {release} is older than 5.11 (no overlay userxattr)"
        if not filesystem_supported(self, "overlay"):
            return "the kernel has no overlay filesystem"
        base = _probe_base_dir(parent_dir)
        try:
            workdir = tempfile.mkdtemp(prefix=".podpy-overlay-probe-", dir=base)
        except OSError as err:
            return f"cannot create a probe directory in {base}: {err.strerror}"
        try:
            if os.geteuid() == 0 and user.uid != 0:
                os.chown(workdir, user.uid, user.gid)
            return _in_child(user, _child_mount_overlay, workdir)
        finally:
            _force_rmtree(workdir)


def _probe_base_dir(parent_dir: Optional[str]) -> str:
    """The nearest existing ancestor of parent_dir (so the probe runs on the store's filesystem)."""
    import tempfile

    path = parent_dir
    while path and path != os.path.dirname(path):
        if os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK):
            return path
        path = os.path.dirname(path)
    return tempfile.gettempdir()


def _force_rmtree(path: str) -> None:
    """rmtree that also clears overlay's mode-000 `work/work` dir a non-root owner cannot enter."""
    import shutil

    def fix_and_retry(func: Any, target: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
        except OSError:
            pass
        try:
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                func(target)
        except OSError:
            pass

    shutil.rmtree(path, onerror=fix_and_retry)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _enter_userns(uid: int, gid: int, extra_flags: int = 0) -> None:
    from podpy import linux

    linux.unshare(linux.CLONE_NEWUSER | extra_flags)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


def _child_unshare_userns(user: UserInfo, _arg: Any) -> None:
    _enter_userns(user.uid, user.gid)


def _child_mount_overlay(user: UserInfo, workdir: str) -> None:
    from podpy import linux

    _enter_userns(user.uid, user.gid, linux.CLONE_NEWNS)
    linux.make_rprivate("/")
    dirs = {name: os.path.join(workdir, name) for name in ("lower", "upper", "work", "merged")}
    for path in dirs.values():
        os.mkdir(path, 0o700)
    with open(os.path.join(dirs["lower"], "probe"), "w") as f:
        f.write("lower\n")
    options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']},userxattr"
    linux.mount("overlay", dirs["merged"], "overlay", 0, options)
    with open(os.path.join(dirs["merged"], "probe")) as f:
        if f.read() != "lower\n":
            raise OSError("the overlay mount does not show its lower layer")
    with open(os.path.join(dirs["merged"], "written"), "w") as f:
        f.write("upper\n")
    linux.umount2(dirs["merged"], linux.MNT_DETACH)


def _in_child(user: UserInfo, action: Any, arg: Any) -> Optional[str]:
    """Run action(user, arg) in a forked child as `user`; None on success, else its error text.

    A child is needed because unshare(CLONE_NEWUSER) is one-way and our namespaces and
    mounts must vanish with it.
    """
    from podpy import linux  # before fork: the dropped-to user may not be able to read it

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack
        code = 1
        try:
            os.close(read_fd)
            if os.geteuid() == 0 and user.uid != 0:
                os.setgroups([])
                os.setresgid(user.gid, user.gid, user.gid)
                os.setresuid(user.uid, user.uid, user.uid)
                # Changing credentials clears "dumpable", which makes /proc/self/uid_map root's.
                linux.prctl(linux.PR_SET_DUMPABLE, 1)
            action(user, arg)
            code = 0
        except BaseException as err:  # report every failure as text to the parent
            message = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            try:
                os.write(write_fd, (message or type(err).__name__).encode()[:1000])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        chunks = []
        while True:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    return b"".join(chunks).decode("utf-8", "replace").strip() or "the probe process failed"


# -- small readers -------------------------------------------------------------------------


def filesystem_supported(host: Host, fstype: str) -> bool:
    """True if the kernel knows fstype now or has it as a loadable module."""
    text = host.read_text("/proc/filesystems") or ""
    if any(line.split()[-1] == fstype for line in text.splitlines() if line.split()):
        return True
    release = host.uname()[1]
    return host.exists(f"/lib/modules/{release}/kernel/fs/{fstype}") or host.exists(
        f"/sys/module/{fstype}"
    )


def mount_fstype(host: Host, mount_point: str) -> Optional[str]:
    """Filesystem type mounted at mount_point (the topmost mount), from /proc/self/mountinfo."""
    found = None
    for line in (host.read_text("/proc/self/mountinfo") or "").splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) > 4 and fields[4] == mount_point and right:
            found = right.split()[0]
    return found


def cgroup_version(host: Host) -> str:
    """ "v2" on a unified hierarchy, "v1" on legacy or hybrid (as podman reports them)."""
    return "v2" if mount_fstype(host, "/sys/fs/cgroup") == "cgroup2" else "v1"


def own_cgroup_v2_path(host: Host, pid: str = "self") -> str:
    for line in (host.read_text(f"/proc/{pid}/cgroup") or "").splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return "/"


def cgroup_controllers(host: Host, rootless: bool, uid: int) -> List[str]:
    """Controllers podpy can use: v2 the delegated set, v1 the mounted hierarchies (none rootless)."""
    if cgroup_version(host) == "v2":
        if rootless:
            for path in _delegation_candidates(host, uid):
                text = host.read_text(os.path.join(path, "cgroup.controllers"))
                if text is not None:
                    return text.split()
            return []
        return (host.read_text("/sys/fs/cgroup/cgroup.controllers") or "").split()
    if rootless:
        return []  # no v1 hierarchy is writable by an unprivileged user
    mounted = []
    for line in (host.read_text("/proc/cgroups") or "").splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 4 or fields[3] != "1":
            continue
        if host.exists(f"/sys/fs/cgroup/{fields[0]}"):
            mounted.append(fields[0])
    return mounted


def _delegation_candidates(host: Host, uid: int) -> List[str]:
    """Where systemd delegates a user's cgroup v2 subtree, plus our own cgroup when it is ours."""
    candidates = [f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service"]
    if host.euid == uid:
        own = "/sys/fs/cgroup" + own_cgroup_v2_path(host).rstrip("/")
        st = host.stat(own)
        if st is not None and st.st_uid == uid:
            candidates.insert(0, own)
    return candidates


def mem_total(host: Host) -> int:
    for line in (host.read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def mem_free(host: Host) -> int:
    for line in (host.read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def uptime_text(host: Host) -> str:
    """Podman's format: `0h 6m 39.00s`."""
    text = (host.read_text("/proc/uptime") or "0").split()
    seconds = float(text[0]) if text else 0.0
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}h {int(minutes)}m {secs:.2f}s"


def distribution(host: Host) -> Dict[str, str]:
    fields: Dict[str, str] = {}
    for line in (host.read_text("/etc/os-release") or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    result = {"distribution": fields.get("ID", "unknown"), "version": fields.get("VERSION_ID", "")}
    if fields.get("VERSION_CODENAME"):
        result["codename"] = fields["VERSION_CODENAME"]
    return result


def dpkg_package(host: Host, path: str) -> str:
    """`name_version_arch` of the Debian package owning path (read from dpkg's database, no fork)."""
    name = None
    real = os.path.realpath(path)
    info_dir = "/var/lib/dpkg/info"
    base = os.path.basename(path)
    guesses = [base, {"newuidmap": "uidmap", "newgidmap": "uidmap"}.get(base, base)]
    for guess in dict.fromkeys(guesses):
        for arch in ("", ":amd64", ":arm64"):
            listing = host.read_text(f"{info_dir}/{guess}{arch}.list")
            if listing and (path in listing.splitlines() or real in listing.splitlines()):
                name = guess
                break
        if name:
            break
    if not name:
        return "Unknown"
    status = host.read_text("/var/lib/dpkg/status") or ""
    start = status.find(f"Package: {name}\n")
    if start < 0:
        return "Unknown"
    block = status[start : status.find("\n\n", start)]
    fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
    return f"{name}_{fields.get('Version', '')}_{fields.get('Architecture', '')}"


def tool_version(host: Host, path: Optional[str], flag: str = "--version") -> str:
    if not path:
        return ""
    output = host.run([path, flag]) or ""
    # fuse-overlayfs passes its default options to fusermount, which complains on stderr.
    lines = [line for line in output.splitlines() if not line.startswith("unknown argument")]
    return "\n".join(lines).strip()


def has_file_caps(host: Host, path: str, caps: Sequence[int]) -> bool:
    """True if the file's `security.capability` xattr grants every cap in caps as permitted."""
    raw = host.getxattr(path, CAPABILITY_XATTR)
    if not raw or len(raw) < 12:
        return False
    # vfs_cap_data: magic_etc (u32), then (permitted, inheritable) u32 pairs, low word first.
    permitted = int.from_bytes(raw[4:8], "little")
    if len(raw) >= 20:
        permitted |= int.from_bytes(raw[12:16], "little") << 32
    return all(permitted & (1 << cap) for cap in caps)


def idmap_helper(host: Host, name: str) -> Dict[str, Any]:
    """newuidmap/newgidmap: where it is and how it gets its privilege."""
    path = host.which(name)
    info: Dict[str, Any] = {"path": path or "", "package": "", "privilege": "missing"}
    if not path:
        return info
    st = host.stat(path)
    cap = CAP_SETUID if name == "newuidmap" else CAP_SETGID
    if st is not None and st.st_uid == 0 and st.st_mode & stat.S_ISUID:
        info["privilege"] = "setuid"
    elif has_file_caps(host, path, [cap]):
        info["privilege"] = "file capabilities"
    else:
        info["privilege"] = "none"
    info["package"] = dpkg_package(host, path)
    return info


def user_can_read_write(st: os.stat_result, user: UserInfo) -> bool:
    """Permission bits as the kernel checks them for user (root bypasses them)."""
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        bits = (st.st_mode >> 6) & 0o7
    elif st.st_gid == user.gid or st.st_gid in user.groups:
        bits = (st.st_mode >> 3) & 0o7
    else:
        bits = st.st_mode & 0o7
    return bits & 0o6 == 0o6


def device_usable(host: Host, path: str, user: UserInfo) -> Tuple[bool, str]:
    """(usable, reason) for a character device the user must open read/write."""
    st = host.stat(path)
    if st is None:
        return False, f"{path} does not exist"
    if not stat.S_ISCHR(st.st_mode):
        return False, f"{path} is not a character device"
    if not user_can_read_write(st, user):
        return (
            False,
            f"{path} is mode {stat.S_IMODE(st.st_mode):04o}, not read/write for {user.name}",
        )
    return True, f"{path} is read/write for {user.name}"


def subid_ranges(host: Host, path: str, user: UserInfo) -> List[Any]:
    """The user's delegated ranges from /etc/subuid or /etc/subgid (podpy.idmap's parser)."""
    from podpy.idmap import parse_subid_text

    return parse_subid_text(host.read_text(path) or "", user.name, user.uid)


def all_subid_ranges(host: Host, path: str) -> List[Tuple[int, int]]:
    """Every (start, count) in a subuid/subgid file, whoever owns it."""
    ranges = []
    for line in (host.read_text(path) or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            ranges.append((int(parts[1]), int(parts[2])))
    return ranges


def free_subid_start(
    taken: Sequence[Tuple[int, int]], count: int = 65536, low: int = 100000
) -> int:
    """The lowest start >= low whose [start, start+count) overlaps no taken range."""
    start = low
    for begin, size in sorted(taken):
        if begin + size <= start:
            continue
        if begin >= start + count:
            break
        start = begin + size
    return start


# -- storage driver ------------------------------------------------------------------------


@record(frozen=True)
class StorageProbes:
    """What the host offers for layered storage, as seen by one user."""

    rootless: bool
    native_overlay_error: Optional[str]  # None: overlay mounts natively (userxattr when rootless)
    fuse_overlayfs: Optional[str]  # path of the fuse-overlayfs binary, if installed
    dev_fuse_error: Optional[str]  # None: /dev/fuse is usable

    @property
    def native_overlay(self) -> bool:
        return self.native_overlay_error is None


def probe_storage(
    host: Optional[Host] = None, user: Optional[UserInfo] = None, probe_dir: Optional[str] = None
) -> StorageProbes:
    """Run the storage probes for user (default: the effective user) near probe_dir."""
    host = host or Host()
    user = user or host.user()
    if user is None:
        raise LookupError("the effective uid has no passwd entry")
    rootless = user.uid != 0
    if rootless:
        native_error = host.probe_native_overlay(user, probe_dir)
    else:
        native_error = None if filesystem_supported(host, "overlay") else "no overlay filesystem"
    fuse_ok, fuse_reason = device_usable(host, "/dev/fuse", user)
    return StorageProbes(
        rootless=rootless,
        native_overlay_error=native_error,
        fuse_overlayfs=host.which("fuse-overlayfs"),
        dev_fuse_error=None if fuse_ok else fuse_reason,
    )


def choose_storage_driver(config: Any, probes: StorageProbes) -> Tuple[str, str, Optional[str]]:
    """(driver name, why it was chosen, mount_program or None) — the single source of truth.

    A driver set in storage.conf wins; otherwise native overlay, then fuse-overlayfs,
    then vfs (always works, but copies every layer).
    """
    from podpy.errors import ConfigError

    storage = getattr(config, "storage", None)
    configured = (getattr(storage, "driver", "") or "").strip()
    mount_program = (
        getattr(storage, "overlay_mount_program", "")
        or getattr(storage, "mount_program", "")
        or None
    )
    fuse_usable = probes.fuse_overlayfs is not None and probes.dev_fuse_error is None

    def fuse_reason() -> str:
        if probes.fuse_overlayfs is None:
            return "fuse-overlayfs is not installed"
        return probes.dev_fuse_error or ""

    if configured == "vfs":
        return "vfs", "storage.conf driver=vfs", None
    if configured == "overlay":
        if mount_program:
            return (
                "overlay",
                f"storage.conf driver=overlay, mount_program={mount_program}",
                mount_program,
            )
        if probes.native_overlay:
            return "overlay", "storage.conf driver=overlay", None
        if fuse_usable:
            return (
                "overlay",
                f"storage.conf driver=overlay via fuse-overlayfs (native overlay unavailable: "
                f"{probes.native_overlay_error})",
                probes.fuse_overlayfs,
            )
        raise ConfigError(
            f"storage.conf sets driver=overlay but overlay cannot be mounted: "
            f"{probes.native_overlay_error}; {fuse_reason()}",
            hint='install fuse-overlayfs, or set driver = "vfs" in storage.conf',
        )
    if configured:
        raise ConfigError(
            f'storage driver "{configured}" is not supported by podpy',
            hint='set driver = "overlay" or driver = "vfs" in storage.conf',
        )
    if probes.native_overlay:
        reason = (
            "native rootless overlay available" if probes.rootless else "native overlay available"
        )
        return "overlay", reason, None
    if fuse_usable:
        return (
            "overlay",
            f"fuse-overlayfs (native overlay unavailable: {probes.native_overlay_error})",
            probes.fuse_overlayfs,
        )
    return (
        "vfs",
        f"vfs fallback: native overlay unavailable ({probes.native_overlay_error}) and "
        f"{fuse_reason()}",
        None,
    )
