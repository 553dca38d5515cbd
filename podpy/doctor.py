"""`podpy doctor`: one small check per rootless (or root) prerequisite, each naming its exact fix.

Every check reads the machine only through a `podpy.hostinfo.Host`, so tests fake a broken
host and assert the fix text without touching the real one.
"""

from __future__ import annotations

import os
import stat
from typing import Callable, Dict, List, Optional

from podpy.hostinfo import (
    Host,
    UserInfo,
    all_subid_ranges,
    cgroup_version,
    device_usable,
    filesystem_supported,
    free_subid_start,
    has_file_caps,
    subid_ranges,
)
from podpy.record import asdict, field, record

OK, WARN, FAIL = "ok", "warn", "fail"
SUBUID_FILE = "/etc/subuid"
SUBGID_FILE = "/etc/subgid"
# Podman's recommendation: at least 65536 ids so images with ids up to 65535 unpack.
RECOMMENDED_SUBIDS = 65536
MAX_USER_NAMESPACES_FIX = 28633
ROOTLESS_NOTE = "rootless checks need --user NAME (running as root checks only what root needs)"


@record
class Check:
    """One line of the report. `required` failures make doctor exit 1; warnings never do."""

    name: str
    status: str
    message: str
    fix: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        return self.status == FAIL and self.required


@record
class DoctorContext:
    host: Host
    user: UserInfo
    probe_dir: Optional[str] = None
    # Cached results shared by checks that depend on the same probe.
    _memo: Dict[str, Optional[str]] = field(default_factory=dict)

    @property
    def checking_self(self) -> bool:
        return self.host.euid == self.user.uid

    def userns_probe(self) -> Optional[str]:
        if "userns" not in self._memo:
            self._memo["userns"] = self.host.probe_userns(self.user)
        return self._memo["userns"]

    def overlay_probe(self) -> Optional[str]:
        if "overlay" not in self._memo:
            self._memo["overlay"] = self.host.probe_native_overlay(self.user, self.probe_dir)
        return self._memo["overlay"]


@record
class DoctorReport:
    user: Optional[str]
    uid: Optional[int]
    rootless: bool
    checks: List[Check]
    note: str = ""

    @property
    def ok(self) -> bool:
        return not any(check.failed for check in self.checks)

    def to_dict(self) -> dict:
        return {
            "user": self.user,
            "uid": self.uid,
            "rootless": self.rootless,
            "ok": self.ok,
            "note": self.note,
            "checks": [asdict(check) for check in self.checks],
        }


def install_fix(host: Host, debian_package: str, fedora_package: str) -> str:
    """The install command for this distribution's package manager."""
    if host.which("apt-get") or host.exists("/etc/debian_version"):
        return f"sudo apt install {debian_package}"
    if host.which("dnf"):
        return f"sudo dnf install {fedora_package}"
    return f"sudo apt install {debian_package}  (Fedora/RHEL: sudo dnf install {fedora_package})"


def _read_int(host: Host, path: str) -> Optional[int]:
    text = host.read_text(path)
    try:
        return None if text is None else int(text.strip())
    except ValueError:
        return None


# -- rootless checks -----------------------------------------------------------------------


def _subid_fix(ctx: DoctorContext) -> str:
    """One usermod command adding whichever ranges are missing, at a range nobody uses yet."""
    host, user = ctx.host, ctx.user
    missing_uids = not subid_ranges(host, SUBUID_FILE, user)
    missing_gids = not subid_ranges(host, SUBGID_FILE, user)
    taken = all_subid_ranges(host, SUBUID_FILE) + all_subid_ranges(host, SUBGID_FILE)
    start = free_subid_start(taken, RECOMMENDED_SUBIDS)
    span = f"{start}-{start + RECOMMENDED_SUBIDS - 1}"
    flags = []
    if missing_uids or not missing_gids:
        flags.append(f"--add-subuids {span}")
    if missing_gids or not missing_uids:
        flags.append(f"--add-subgids {span}")
    return f"sudo usermod {' '.join(flags)} {user.name}"


def _check_subids(ctx: DoctorContext, path: str, kind: str) -> Check:
    name = f"sub{kind.lower()}s"
    ranges = subid_ranges(ctx.host, path, ctx.user)
    if not ranges:
        return Check(
            name,
            FAIL,
            f"{ctx.user.name} has no sub-{kind} range in {path}: "
            f"only one {kind} can be mapped into containers",
            _subid_fix(ctx),
        )
    total = sum(r.count for r in ranges)
    spans = ", ".join(f"{r.start}-{r.start + r.count - 1}" for r in ranges)
    if total < RECOMMENDED_SUBIDS:
        return Check(
            name,
            WARN,
            f"{ctx.user.name} has only {total} sub-{kind}s ({spans}) in {path}: "
            f"images using {kind}s >= {total} will fail to unpack",
            _subid_fix_extra(ctx, kind),
        )
    return Check(name, OK, f"{ctx.user.name} has {total} sub-{kind}s ({spans}) in {path}")


def _subid_fix_extra(ctx: DoctorContext, kind: str) -> str:
    taken = all_subid_ranges(ctx.host, SUBUID_FILE) + all_subid_ranges(ctx.host, SUBGID_FILE)
    start = free_subid_start(taken, RECOMMENDED_SUBIDS)
    flag = "--add-subuids" if kind == "UID" else "--add-subgids"
    return f"sudo usermod {flag} {start}-{start + RECOMMENDED_SUBIDS - 1} {ctx.user.name}"


def check_subuids(ctx: DoctorContext) -> Check:
    return _check_subids(ctx, SUBUID_FILE, "UID")


def check_subgids(ctx: DoctorContext) -> Check:
    return _check_subids(ctx, SUBGID_FILE, "GID")


def _check_idmap_helper(ctx: DoctorContext, tool: str, cap: int, cap_name: str) -> Check:
    host = ctx.host
    path = host.which(tool)
    if not path:
        return Check(
            tool,
            FAIL,
            f"{tool} is not installed (needed to map the sub-id ranges)",
            install_fix(host, "uidmap", "shadow-utils"),
        )
    st = host.stat(path)
    if st is not None and st.st_uid == 0 and st.st_mode & stat.S_ISUID:
        return Check(tool, OK, f"{path} is setuid root")
    if has_file_caps(host, path, [cap]):
        return Check(tool, OK, f"{path} has file capability {cap_name}")
    helpers = [p for p in (host.which("newuidmap"), host.which("newgidmap")) if p]
    return Check(
        tool,
        FAIL,
        f"{path} is neither setuid root nor has the {cap_name} file capability",
        f"sudo chmod u+s {' '.join(helpers)}",
    )


def check_newuidmap(ctx: DoctorContext) -> Check:
    return _check_idmap_helper(ctx, "newuidmap", 7, "cap_setuid")


def check_newgidmap(ctx: DoctorContext) -> Check:
    return _check_idmap_helper(ctx, "newgidmap", 6, "cap_setgid")


def check_userns_clone(ctx: DoctorContext) -> Check:
    path = "/proc/sys/kernel/unprivileged_userns_clone"
    value = _read_int(ctx.host, path)
    if value is None:
        return Check("userns_clone", OK, f"{path} not present (kernel allows unprivileged userns)")
    if value == 0:
        return Check(
            "userns_clone",
            FAIL,
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1",
        )
    return Check("userns_clone", OK, "kernel.unprivileged_userns_clone=1")


def check_max_user_namespaces(ctx: DoctorContext) -> Check:
    value = _read_int(ctx.host, "/proc/sys/user/max_user_namespaces")
    if value is None:
        return Check(
            "max_user_namespaces",
            FAIL,
            "the kernel has no user namespaces (/proc/sys/user/max_user_namespaces missing)",
            "use a kernel built with CONFIG_USER_NS=y",
        )
    if value == 0:
        return Check(
            "max_user_namespaces",
            FAIL,
            "user namespaces are disabled (user.max_user_namespaces=0)",
            f"sudo sysctl -w user.max_user_namespaces={MAX_USER_NAMESPACES_FIX}",
        )
    return Check("max_user_namespaces", OK, f"user.max_user_namespaces={value}")


def check_apparmor_userns(ctx: DoctorContext) -> Check:
    path = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
    value = _read_int(ctx.host, path)
    if value == 1:
        return Check(
            "apparmor_userns",
            FAIL,
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 23.10+)",
            "add an AppArmor profile granting `userns,` to python3/podpy "
            "(/etc/apparmor.d/podpy), or: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        )
    if value is None:
        return Check("apparmor_userns", OK, "no AppArmor user namespace restriction")
    return Check("apparmor_userns", OK, "kernel.apparmor_restrict_unprivileged_userns=0")


def check_userns_probe(ctx: DoctorContext) -> Check:
    error = ctx.userns_probe()
    if error is None:
        return Check("userns", OK, f"{ctx.user.name} can create a user namespace (probed)")
    return Check(
        "userns",
        FAIL,
        f"{ctx.user.name} cannot create a user namespace: {error}",
        "apply the sysctl fixes above; inside a container or sandbox, allow unshare(CLONE_NEWUSER) "
        "in its seccomp profile",
    )


def _check_device(ctx: DoctorContext, name: str, path: str, module: str, required: bool) -> Check:
    usable, reason = device_usable(ctx.host, path, ctx.user)
    if usable:
        return Check(name, OK, reason, required=required)
    if not ctx.host.exists(path):
        return Check(name, FAIL, reason, f"sudo modprobe {module}", required=required)
    return Check(name, FAIL, reason, f"sudo chmod 0666 {path}", required=required)


def check_tun(ctx: DoctorContext) -> Check:
    return _check_device(ctx, "tun", "/dev/net/tun", "tun", required=True)


def check_fuse(ctx: DoctorContext) -> Check:
    # Only fuse-overlayfs needs /dev/fuse; with native overlay a broken one is a warning.
    native = ctx.overlay_probe() is None
    check = _check_device(ctx, "fuse", "/dev/fuse", "fuse", required=not native)
    if check.status == FAIL and native:
        check.status = WARN
        check.message += " (only needed for fuse-overlayfs; native overlay works)"
    return check


def check_slirp4netns(ctx: DoctorContext) -> Check:
    path = ctx.host.which("slirp4netns")
    if not path:
        return Check(
            "slirp4netns",
            FAIL,
            "slirp4netns is not installed (rootless container networking)",
            install_fix(ctx.host, "slirp4netns", "slirp4netns"),
        )
    return Check("slirp4netns", OK, f"slirp4netns found at {path}")


def check_overlay(ctx: DoctorContext) -> Check:
    error = ctx.overlay_probe()
    if error is None:
        return Check(
            "overlay", OK, "native overlay (userxattr) mounts in a user namespace (probed)"
        )
    fuse_path = ctx.host.which("fuse-overlayfs")
    fuse_ok, fuse_reason = device_usable(ctx.host, "/dev/fuse", ctx.user)
    if fuse_path and fuse_ok:
        return Check(
            "overlay", OK, f"fuse-overlayfs at {fuse_path} (native overlay unavailable: {error})"
        )
    if fuse_path:
        return Check(
            "overlay",
            WARN,
            f"native overlay unavailable ({error}) and fuse-overlayfs cannot run ({fuse_reason}): "
            "storage falls back to vfs (slow, full copies)",
            "sudo chmod 0666 /dev/fuse" if ctx.host.exists("/dev/fuse") else "sudo modprobe fuse",
            required=False,
        )
    return Check(
        "overlay",
        WARN,
        f"native overlay unavailable ({error}) and fuse-overlayfs is not installed: "
        "storage falls back to vfs (slow, full copies)",
        install_fix(ctx.host, "fuse-overlayfs", "fuse-overlayfs"),
        required=False,
    )


def check_cgroups(ctx: DoctorContext) -> Check:
    from podpy.hostinfo import cgroup_controllers

    uid = ctx.user.uid
    boot_fix = (
        "boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line, and delegate "
        "controllers: sudo systemctl edit user@.service, add [Service] Delegate=yes"
    )
    if cgroup_version(ctx.host) != "v2":
        return Check(
            "cgroups",
            WARN,
            "cgroup v1 (or hybrid): resource limits (--memory, --cpus, --pids-limit) are "
            "ignored for rootless containers",
            boot_fix,
            required=False,
        )
    controllers = cgroup_controllers(ctx.host, True, uid)
    wanted = [c for c in ("memory", "pids", "cpu") if c not in controllers]
    if wanted:
        return Check(
            "cgroups",
            WARN,
            f"cgroup v2 without delegated {', '.join(wanted)} for uid {uid}: those limits are ignored",
            "sudo mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\n"
            "Delegate=cpu cpuset io memory pids\\n' | sudo tee "
            "/etc/systemd/system/user@.service.d/delegate.conf && sudo systemctl daemon-reload",
            required=False,
        )
    return Check("cgroups", OK, f"cgroup v2 with delegated controllers: {' '.join(controllers)}")


def check_runtime_dir(ctx: DoctorContext) -> Check:
    user = ctx.user
    default = f"/run/user/{user.uid}"
    linger_fix = f"sudo loginctl enable-linger {user.name}"
    if ctx.checking_self:
        path = ctx.host.env.get("XDG_RUNTIME_DIR", "")
        if not path:
            return Check(
                "xdg_runtime_dir",
                WARN,
                f"XDG_RUNTIME_DIR is not set: podpy falls back to /tmp/podpy-run-{user.uid}",
                f"{linger_fix}, then log in again (or: export XDG_RUNTIME_DIR={default})",
                required=False,
            )
    else:
        path = default
    st = ctx.host.stat(path)
    if st is None:
        if not ctx.checking_self:
            return Check(
                "xdg_runtime_dir",
                WARN,
                f"{path} does not exist (created when {user.name} logs in)",
                linger_fix,
                required=False,
            )
        return Check(
            "xdg_runtime_dir",
            FAIL,
            f"XDG_RUNTIME_DIR={path} does not exist",
            f"{linger_fix}, then log in again (or: export XDG_RUNTIME_DIR={default})",
        )
    if st.st_uid != user.uid:
        return Check(
            "xdg_runtime_dir",
            FAIL,
            f"{path} is owned by uid {st.st_uid}, not {user.name}",
            f"export XDG_RUNTIME_DIR={default} (after: {linger_fix})",
        )
    return Check("xdg_runtime_dir", OK, f"{path} exists and is owned by {user.name}")


ROOTLESS_CHECKS: List[Callable[[DoctorContext], Check]] = [
    check_subuids,
    check_subgids,
    check_newuidmap,
    check_newgidmap,
    check_userns_clone,
    check_max_user_namespaces,
    check_apparmor_userns,
    check_userns_probe,
    check_tun,
    check_fuse,
    check_slirp4netns,
    check_overlay,
    check_cgroups,
    check_runtime_dir,
]


# -- root checks ---------------------------------------------------------------------------


def check_root_namespaces(ctx: DoctorContext) -> Check:
    missing = [
        ns
        for ns in ("mnt", "pid", "net", "ipc", "uts", "user")
        if not ctx.host.exists(f"/proc/self/ns/{ns}")
    ]
    if missing:
        return Check(
            "namespaces",
            FAIL,
            f"the kernel lacks namespaces: {', '.join(missing)}",
            "use a kernel built with CONFIG_NAMESPACES, CONFIG_USER_NS, CONFIG_NET_NS, CONFIG_PID_NS",
        )
    return Check("namespaces", OK, "mount, pid, net, ipc, uts and user namespaces available")


def check_root_overlay(ctx: DoctorContext) -> Check:
    if filesystem_supported(ctx.host, "overlay"):
        return Check("overlay", OK, "the kernel supports overlayfs")
    return Check(
        "overlay",
        WARN,
        "the kernel has no overlayfs: storage falls back to vfs (slow, full copies)",
        "sudo modprobe overlay",
        required=False,
    )


def check_root_cgroups(ctx: DoctorContext) -> Check:
    from podpy.hostinfo import cgroup_controllers

    controllers = cgroup_controllers(ctx.host, False, 0)
    version = cgroup_version(ctx.host)
    missing = [c for c in ("memory", "pids") if c not in controllers]
    if missing:
        fix = (
            "sudo mount -t cgroup2 none /sys/fs/cgroup"
            if version == "v2" or not controllers
            else f"sudo mount -t cgroup -o {','.join(missing)} cgroup /sys/fs/cgroup/{missing[0]}"
        )
        return Check(
            "cgroups",
            WARN,
            f"cgroup {version}: controllers {', '.join(missing)} unavailable, those limits are ignored",
            fix,
            required=False,
        )
    return Check("cgroups", OK, f"cgroup {version} controllers: {' '.join(controllers)}")


ROOT_CHECKS: List[Callable[[DoctorContext], Check]] = [
    check_root_namespaces,
    check_root_overlay,
    check_root_cgroups,
]


def run_checks(
    host: Optional[Host] = None, user: Optional[UserInfo] = None, probe_dir: Optional[str] = None
) -> DoctorReport:
    """Rootless checks for user, or root's checks when user is None or root."""
    host = host or Host()
    if user is None or user.uid == 0:
        ctx = DoctorContext(host, user or UserInfo("root", 0, 0, "/root"), probe_dir)
        checks = [check(ctx) for check in ROOT_CHECKS]
        return DoctorReport("root", 0, False, checks, ROOTLESS_NOTE if user is None else "")
    ctx = DoctorContext(host, user, probe_dir)
    return DoctorReport(user.name, user.uid, True, [check(ctx) for check in ROOTLESS_CHECKS])


def default_probe_dir(user: UserInfo, env: Optional[dict] = None) -> str:
    """The user's graph root, where overlay will really be mounted (its filesystem matters)."""
    if env is not None and user.uid == os.geteuid():
        from podpy.paths import data_home

        return os.path.join(data_home(env), "podpy", "storage")
    return os.path.join(user.home, ".local", "share", "podpy", "storage")
