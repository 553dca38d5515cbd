"""podpy.doctor: every check passes on a healthy fake host and names its fix when faked broken."""

from __future__ import annotations

import os
import stat
from typing import Dict, Optional

import pytest

from podpy import doctor
from podpy.hostinfo import Host, UserInfo

ALICE = UserInfo("alice", 1000, 1000, "/home/alice", (1000,))
DELEGATED = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/cgroup.controllers"
V2_MOUNTINFO = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
HYBRID_MOUNTINFO = (
    "30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
    "31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
)


def st(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, gid, 0, 0, 0, 0))


class FakeHost(Host):
    """A host described by dicts; tests break one entry to fake one failure."""

    def __init__(self) -> None:
        super().__init__(env={"XDG_RUNTIME_DIR": "/run/user/1000", "PATH": "/usr/bin"})
        self.files: Dict[str, str] = {
            "/etc/subuid": "bob:100000:65536\nalice:165536:65536\n",
            "/etc/subgid": "bob:100000:65536\nalice:165536:65536\n",
            "/proc/sys/user/max_user_namespaces": "15000\n",
            "/proc/self/mountinfo": V2_MOUNTINFO,
            "/proc/filesystems": "nodev\ttmpfs\nnodev\toverlay\n",
            DELEGATED: "cpuset cpu io memory pids\n",
        }
        self.binaries: Dict[str, str] = {
            name: f"/usr/bin/{name}"
            for name in ("newuidmap", "newgidmap", "slirp4netns", "fuse-overlayfs", "apt-get")
        }
        self.stats: Dict[str, os.stat_result] = {
            "/usr/bin/newuidmap": st(stat.S_IFREG | 0o4755),
            "/usr/bin/newgidmap": st(stat.S_IFREG | 0o4755),
            "/dev/net/tun": st(stat.S_IFCHR | 0o666),
            "/dev/fuse": st(stat.S_IFCHR | 0o666),
            "/run/user/1000": st(stat.S_IFDIR | 0o700, 1000, 1000),
        }
        self.xattrs: Dict[str, bytes] = {}
        self.userns_error: Optional[str] = None
        self.overlay_error: Optional[str] = None
        self.fake_euid = 1000
        self.ns_files = {
            f"/proc/self/ns/{ns}" for ns in ("mnt", "pid", "net", "ipc", "uts", "user")
        }

    def read_text(self, path: str) -> Optional[str]:
        return self.files.get(path)

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.stats or path in self.ns_files

    def stat(self, path: str) -> Optional[os.stat_result]:
        return self.stats.get(path)

    def getxattr(self, path: str, name: str) -> Optional[bytes]:
        return self.xattrs.get(path)

    def which(self, name: str) -> Optional[str]:
        return self.binaries.get(name)

    def run(self, argv, timeout: float = 2.0) -> Optional[str]:
        return None

    @property
    def euid(self) -> int:
        return self.fake_euid

    def uname(self):
        return "box", "6.1.0", "x86_64"

    def probe_userns(self, user: UserInfo) -> Optional[str]:
        return self.userns_error

    def probe_native_overlay(self, user: UserInfo, parent_dir: Optional[str]) -> Optional[str]:
        return self.overlay_error


def run_one(check, host: FakeHost) -> doctor.Check:
    return check(doctor.DoctorContext(host, ALICE))


def test_healthy_host_passes_every_check() -> None:
    report = doctor.run_checks(FakeHost(), ALICE)
    assert report.rootless and report.ok
    assert [c.status for c in report.checks] == ["ok"] * len(doctor.ROOTLESS_CHECKS)
    assert {c.name for c in report.checks} >= {"subuids", "subgids", "newuidmap", "tun", "userns"}


def test_missing_subuids_suggests_a_free_range_for_both_files() -> None:
    host = FakeHost()
    host.files["/etc/subuid"] = "bob:100000:65536\n"
    host.files["/etc/subgid"] = "bob:100000:65536\ncarol:165536:65536\n"
    check = run_one(doctor.check_subuids, host)
    assert check.status == "fail" and check.required
    # alice is in neither file: one command adds both, after every range already handed out.
    assert check.fix == "sudo usermod --add-subuids 231072-296607 --add-subgids 231072-296607 alice"
    report = doctor.run_checks(host, ALICE)
    assert not report.ok


def test_missing_subgids_only_adds_gids() -> None:
    host = FakeHost()
    host.files["/etc/subgid"] = "bob:100000:65536\n"
    check = run_one(doctor.check_subgids, host)
    assert check.status == "fail"
    assert check.fix == "sudo usermod --add-subgids 231072-296607 alice"


def test_small_subuid_range_is_a_warning_with_a_bigger_range() -> None:
    host = FakeHost()
    host.files["/etc/subuid"] = "alice:100000:1000\n"
    check = run_one(doctor.check_subuids, host)
    assert check.status == "warn"
    assert "only 1000 sub-UIDs" in check.message
    # 165536-231071 is alice's own sub-GID range, so the first free span starts after it.
    assert check.fix == "sudo usermod --add-subuids 231072-296607 alice"


def test_newuidmap_missing_suggests_the_package() -> None:
    host = FakeHost()
    del host.binaries["newuidmap"]
    check = run_one(doctor.check_newuidmap, host)
    assert check.status == "fail" and check.fix == "sudo apt install uidmap"
    del host.binaries["apt-get"]
    host.binaries["dnf"] = "/usr/bin/dnf"
    assert run_one(doctor.check_newuidmap, host).fix == "sudo dnf install shadow-utils"


def test_newgidmap_without_setuid_or_caps_suggests_chmod() -> None:
    host = FakeHost()
    host.stats["/usr/bin/newgidmap"] = st(stat.S_IFREG | 0o755)
    check = run_one(doctor.check_newgidmap, host)
    assert check.status == "fail"
    assert check.fix == "sudo chmod u+s /usr/bin/newuidmap /usr/bin/newgidmap"


def test_file_capabilities_count_as_privilege() -> None:
    host = FakeHost()
    host.stats["/usr/bin/newuidmap"] = st(stat.S_IFREG | 0o755)
    # vfs_cap_data v2: magic, permitted low word with CAP_SETUID (bit 7), inheritable, high words.
    raw = (0x02000001).to_bytes(4, "little") + (1 << 7).to_bytes(4, "little") + bytes(12)
    host.xattrs["/usr/bin/newuidmap"] = raw
    check = run_one(doctor.check_newuidmap, host)
    assert check.status == "ok" and "cap_setuid" in check.message
    host.xattrs["/usr/bin/newuidmap"] = raw[:4] + (1 << 6).to_bytes(4, "little") + bytes(12)
    assert run_one(doctor.check_newuidmap, host).status == "fail"


def test_unprivileged_userns_clone_disabled() -> None:
    host = FakeHost()
    host.files["/proc/sys/kernel/unprivileged_userns_clone"] = "0\n"
    check = run_one(doctor.check_userns_clone, host)
    assert check.status == "fail"
    assert check.fix == "sudo sysctl -w kernel.unprivileged_userns_clone=1"
    host.files["/proc/sys/kernel/unprivileged_userns_clone"] = "1\n"
    assert run_one(doctor.check_userns_clone, host).status == "ok"


def test_max_user_namespaces_zero() -> None:
    host = FakeHost()
    host.files["/proc/sys/user/max_user_namespaces"] = "0\n"
    check = run_one(doctor.check_max_user_namespaces, host)
    assert check.status == "fail"
    assert check.fix == "sudo sysctl -w user.max_user_namespaces=28633"


def test_apparmor_restriction() -> None:
    host = FakeHost()
    host.files["/proc/sys/kernel/apparmor_restrict_unprivileged_userns"] = "1\n"
    check = run_one(doctor.check_apparmor_userns, host)
    assert check.status == "fail"
    assert "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in check.fix
    assert "apparmor" in check.fix.lower() and "userns," in check.fix


def test_userns_probe_failure_reports_the_kernel_error() -> None:
    host = FakeHost()
    host.userns_error = "unshare: Operation not permitted"
    check = run_one(doctor.check_userns_probe, host)
    assert check.status == "fail" and "Operation not permitted" in check.message
    assert "sysctl" in check.fix and "seccomp" in check.fix


def test_tun_missing_and_not_writable() -> None:
    host = FakeHost()
    host.stats["/dev/net/tun"] = st(stat.S_IFCHR | 0o600)
    check = run_one(doctor.check_tun, host)
    assert check.status == "fail" and check.fix == "sudo chmod 0666 /dev/net/tun"
    del host.stats["/dev/net/tun"]
    check = run_one(doctor.check_tun, host)
    assert check.status == "fail" and check.fix == "sudo modprobe tun"


def test_tun_readable_through_group_membership() -> None:
    host = FakeHost()
    host.stats["/dev/net/tun"] = st(stat.S_IFCHR | 0o660, 0, 1000)
    assert run_one(doctor.check_tun, host).status == "ok"


def test_fuse_is_required_only_without_native_overlay() -> None:
    host = FakeHost()
    host.stats["/dev/fuse"] = st(stat.S_IFCHR | 0o600)
    check = run_one(doctor.check_fuse, host)
    assert check.status == "warn" and check.fix == "sudo chmod 0666 /dev/fuse"
    host.overlay_error = "kernel too old"
    check = run_one(doctor.check_fuse, host)
    assert check.status == "fail" and check.required
    del host.stats["/dev/fuse"]
    assert run_one(doctor.check_fuse, host).fix == "sudo modprobe fuse"


def test_slirp4netns_missing() -> None:
    host = FakeHost()
    del host.binaries["slirp4netns"]
    check = run_one(doctor.check_slirp4netns, host)
    assert check.status == "fail" and check.fix == "sudo apt install slirp4netns"


def test_overlay_falls_back_to_fuse_then_warns_about_vfs() -> None:
    host = FakeHost()
    host.overlay_error = "mount overlay: Operation not permitted"
    check = run_one(doctor.check_overlay, host)
    assert check.status == "ok" and "fuse-overlayfs" in check.message
    del host.binaries["fuse-overlayfs"]
    check = run_one(doctor.check_overlay, host)
    assert check.status == "warn" and not check.required
    assert check.fix == "sudo apt install fuse-overlayfs"
    assert "vfs" in check.message


def test_cgroup_v1_warns_with_unified_hierarchy_fix() -> None:
    host = FakeHost()
    host.files["/proc/self/mountinfo"] = HYBRID_MOUNTINFO
    check = run_one(doctor.check_cgroups, host)
    assert check.status == "warn" and not check.required
    assert "systemd.unified_cgroup_hierarchy=1" in check.fix and "Delegate=yes" in check.fix


def test_cgroup_v2_without_delegation_warns() -> None:
    host = FakeHost()
    host.files[DELEGATED] = "cpuset\n"
    check = run_one(doctor.check_cgroups, host)
    assert check.status == "warn" and "memory" in check.message
    assert "Delegate=" in check.fix and "daemon-reload" in check.fix


def test_runtime_dir_unset_wrong_owner_missing() -> None:
    host = FakeHost()
    host.env = {"PATH": "/usr/bin"}
    check = run_one(doctor.check_runtime_dir, host)
    assert check.status == "warn"
    assert "loginctl enable-linger alice" in check.fix
    assert "export XDG_RUNTIME_DIR=/run/user/1000" in check.fix
    host.env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    host.stats["/run/user/1000"] = st(stat.S_IFDIR | 0o700, 0, 0)
    check = run_one(doctor.check_runtime_dir, host)
    assert check.status == "fail" and "export XDG_RUNTIME_DIR=/run/user/1000" in check.fix
    del host.stats["/run/user/1000"]
    check = run_one(doctor.check_runtime_dir, host)
    assert check.status == "fail" and "sudo loginctl enable-linger alice" in check.fix


def test_runtime_dir_of_another_user_checked_from_root() -> None:
    host = FakeHost()
    host.fake_euid = 0
    del host.stats["/run/user/1000"]
    check = run_one(doctor.check_runtime_dir, host)
    assert check.status == "warn" and check.fix == "sudo loginctl enable-linger alice"


def test_root_without_user_runs_root_checks_and_says_so() -> None:
    host = FakeHost()
    host.fake_euid = 0
    report = doctor.run_checks(host, None)
    assert not report.rootless and report.ok
    assert [c.name for c in report.checks] == ["namespaces", "overlay", "cgroups"]
    assert "--user" in report.note
    # asking for root explicitly is not a question about rootless setup: no note
    assert doctor.run_checks(host, UserInfo("root", 0, 0, "/root")).note == ""


@pytest.mark.parametrize(
    ("breakage", "name", "fix"),
    [
        (lambda h: h.ns_files.discard("/proc/self/ns/user"), "namespaces", "CONFIG_USER_NS"),
        (
            lambda h: h.files.__setitem__("/proc/filesystems", "nodev\ttmpfs\n"),
            "overlay",
            "sudo modprobe overlay",
        ),
        (lambda h: h.files.__setitem__(DELEGATED, ""), "cgroups", "sudo mount -t cgroup2"),
    ],
)
def test_root_check_failures_name_their_fix(breakage, name, fix) -> None:
    host = FakeHost()
    host.fake_euid = 0
    host.files["/sys/fs/cgroup/cgroup.controllers"] = "cpu memory pids\n"
    assert doctor.run_checks(host, None).ok
    breakage(host)
    if name == "cgroups":
        host.files["/sys/fs/cgroup/cgroup.controllers"] = "cpu\n"
    check = next(c for c in doctor.run_checks(host, None).checks if c.name == name)
    assert check.status in ("fail", "warn") and fix in check.fix


def test_report_json_shape() -> None:
    host = FakeHost()
    del host.binaries["slirp4netns"]
    data = doctor.run_checks(host, ALICE).to_dict()
    assert data["ok"] is False and data["user"] == "alice" and data["rootless"] is True
    slirp = next(c for c in data["checks"] if c["name"] == "slirp4netns")
    assert slirp == {
        "name": "slirp4netns",
        "status": "fail",
        "message": "slirp4netns is not installed (rootless container networking)",
        "fix": "sudo apt install slirp4netns",
        "required": True,
    }
