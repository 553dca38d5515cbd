"""podpy.hostinfo readers, the storage driver decision, and how `info` data renders (YAML, Go names)."""

from __future__ import annotations

import json
import os
import stat
import types
from typing import Dict, Optional

import pytest

from podpy import hostinfo
from podpy.cli.system import FieldMap, aligned, template_data, yaml_text
from podpy.errors import ConfigError
from podpy.hostinfo import Host, StorageProbes, UserInfo


class FilesHost(Host):
    """A host whose files and helper outputs come from dicts."""

    def __init__(self, files: Dict[str, str], outputs: Optional[Dict[str, str]] = None):
        super().__init__(env={})
        self.files = files
        self.outputs = outputs or {}

    def read_text(self, path: str) -> Optional[str]:
        return self.files.get(path)

    def exists(self, path: str) -> bool:
        return path in self.files

    def run(self, argv, timeout: float = 2.0) -> Optional[str]:
        return self.outputs.get(argv[0])

    def uname(self):
        return "box", "6.1.0", "x86_64"


def config(driver: str = "", mount_program: str = "") -> types.SimpleNamespace:
    return types.SimpleNamespace(
        storage=types.SimpleNamespace(driver=driver, overlay_mount_program=mount_program)
    )


NATIVE = StorageProbes(True, None, "/usr/bin/fuse-overlayfs", None)
NO_NATIVE = StorageProbes(True, "kernel 5.4 is older than 5.11", "/usr/bin/fuse-overlayfs", None)
NOTHING = StorageProbes(True, "kernel 5.4 is older than 5.11", None, "/dev/fuse does not exist")


def test_go_arch_and_kernel_version() -> None:
    assert hostinfo.go_arch("x86_64") == "amd64"
    assert hostinfo.go_arch("aarch64") == "arm64"
    assert hostinfo.go_arch("mips") == "mips"
    assert hostinfo.kernel_version("6.18.44-fc-v782") == (6, 18)
    assert hostinfo.kernel_version("5.10.0-rc1") == (5, 10)
    assert hostinfo.kernel_version("garbage") == (0, 0)


def test_free_subid_start_skips_every_taken_range() -> None:
    assert hostinfo.free_subid_start([]) == 100000
    assert hostinfo.free_subid_start([(100000, 65536)]) == 165536
    assert hostinfo.free_subid_start([(165536, 65536), (100000, 65536)]) == 231072
    # a gap big enough is used; one too small is skipped
    assert hostinfo.free_subid_start([(100000, 10), (300000, 5)]) == 100010
    assert hostinfo.free_subid_start([(100000, 10), (120000, 5)], count=65536) == 120005
    assert hostinfo.free_subid_start([(0, 50)], low=100000) == 100000


def test_has_file_caps_reads_permitted_bits() -> None:
    host = FilesHost({})
    host.getxattr = lambda path, name: (  # type: ignore[method-assign]
        (0x02000001).to_bytes(4, "little") + ((1 << 7) | (1 << 6)).to_bytes(4, "little") + bytes(12)
    )
    assert hostinfo.has_file_caps(host, "/x", [7, 6])
    assert not hostinfo.has_file_caps(host, "/x", [21])
    host.getxattr = lambda path, name: None  # type: ignore[method-assign]
    assert not hostinfo.has_file_caps(host, "/x", [7])


def test_user_can_read_write_follows_owner_group_other() -> None:
    alice = UserInfo("alice", 1000, 1000, "/home/alice", (1000, 44))
    mode = stat.S_IFCHR

    def st(perm: int, uid: int, gid: int) -> os.stat_result:
        return os.stat_result((mode | perm, 0, 0, 0, uid, gid, 0, 0, 0, 0))

    assert hostinfo.user_can_read_write(st(0o666, 0, 0), alice)
    assert not hostinfo.user_can_read_write(st(0o600, 0, 0), alice)
    assert hostinfo.user_can_read_write(st(0o660, 0, 44), alice)
    assert hostinfo.user_can_read_write(st(0o600, 1000, 0), alice)
    # the owner class applies even if "other" would allow it (kernel semantics)
    assert not hostinfo.user_can_read_write(st(0o066, 1000, 0), alice)


def test_choose_storage_driver_auto() -> None:
    assert hostinfo.choose_storage_driver(config(), NATIVE) == (
        "overlay",
        "native rootless overlay available",
        None,
    )
    name, reason, program = hostinfo.choose_storage_driver(config(), NO_NATIVE)
    assert (name, program) == ("overlay", "/usr/bin/fuse-overlayfs")
    assert reason == "fuse-overlayfs (native overlay unavailable: kernel 5.4 is older than 5.11)"
    name, reason, program = hostinfo.choose_storage_driver(config(), NOTHING)
    assert (name, program) == ("vfs", None)
    assert reason.startswith("vfs fallback: ") and "fuse-overlayfs is not installed" in reason
    rootful = StorageProbes(False, None, None, None)
    assert hostinfo.choose_storage_driver(None, rootful)[1] == "native overlay available"


def test_choose_storage_driver_configured() -> None:
    assert hostinfo.choose_storage_driver(config("vfs"), NATIVE) == (
        "vfs",
        "storage.conf driver=vfs",
        None,
    )
    assert hostinfo.choose_storage_driver(config("overlay"), NATIVE) == (
        "overlay",
        "storage.conf driver=overlay",
        None,
    )
    name, reason, program = hostinfo.choose_storage_driver(
        config("overlay", "/opt/fuse-overlayfs"), NATIVE
    )
    assert program == "/opt/fuse-overlayfs" and "mount_program=/opt/fuse-overlayfs" in reason
    assert (
        hostinfo.choose_storage_driver(config("overlay"), NO_NATIVE)[2] == "/usr/bin/fuse-overlayfs"
    )
    with pytest.raises(ConfigError) as err:
        hostinfo.choose_storage_driver(config("overlay"), NOTHING)
    assert "vfs" in (err.value.hint or "")
    with pytest.raises(ConfigError) as err:
        hostinfo.choose_storage_driver(config("btrfs"), NATIVE)
    assert '"btrfs"' in err.value.message


def test_cgroup_version_and_controllers() -> None:
    hybrid = FilesHost(
        {
            "/proc/self/mountinfo": "30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
            "31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
            "/proc/cgroups": "#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
            "cpuset\t3\t1\t1\nmemory\t4\t1\t1\nhugetlb\t0\t1\t1\nrdma\t0\t1\t0\n",
            "/sys/fs/cgroup/cpuset": "",
            "/sys/fs/cgroup/memory": "",
        }
    )
    assert hostinfo.cgroup_version(hybrid) == "v1"
    assert hostinfo.cgroup_controllers(hybrid, False, 0) == ["cpuset", "memory"]
    assert hostinfo.cgroup_controllers(hybrid, True, 1000) == []
    unified = FilesHost(
        {
            "/proc/self/mountinfo": "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "/sys/fs/cgroup/cgroup.controllers": "cpu io memory pids\n",
            "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/cgroup.controllers": "memory pids\n",
        }
    )
    assert hostinfo.cgroup_version(unified) == "v2"
    assert hostinfo.cgroup_controllers(unified, False, 0) == ["cpu", "io", "memory", "pids"]
    assert hostinfo.cgroup_controllers(unified, True, 1000) == ["memory", "pids"]
    assert hostinfo.cgroup_controllers(unified, True, 1001) == []


def test_small_readers() -> None:
    host = FilesHost(
        {
            "/proc/uptime": "3723.5 100.0\n",
            "/proc/meminfo": "MemTotal:       1000 kB\nMemAvailable:    250 kB\n",
            "/etc/os-release": 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
            "/proc/filesystems": "nodev\tsysfs\nnodev\toverlay\n",
        },
        outputs={
            "/usr/bin/fuse-overlayfs": "unknown argument ignored: lazytime\nfuse-overlayfs: version 1.10\n"
        },
    )
    assert hostinfo.uptime_text(host) == "1h 2m 3.50s"
    assert hostinfo.mem_total(host) == 1024000 and hostinfo.mem_free(host) == 256000
    assert hostinfo.distribution(host) == {
        "distribution": "debian",
        "version": "12",
        "codename": "bookworm",
    }
    assert hostinfo.filesystem_supported(host, "overlay")
    assert not hostinfo.filesystem_supported(host, "btrfs")
    assert hostinfo.tool_version(host, "/usr/bin/fuse-overlayfs") == "fuse-overlayfs: version 1.10"
    assert hostinfo.tool_version(host, None) == ""


def test_dpkg_package_from_the_database_files() -> None:
    host = FilesHost(
        {
            "/var/lib/dpkg/info/uidmap.list": "/.\n/usr/bin/newuidmap\n/usr/bin/newgidmap\n",
            "/var/lib/dpkg/status": "Package: other\nVersion: 1\n\n"
            "Package: uidmap\nStatus: install ok installed\nArchitecture: amd64\n"
            "Version: 1:4.13+dfsg1-1\n\n",
        }
    )
    assert hostinfo.dpkg_package(host, "/usr/bin/newuidmap") == "uidmap_1:4.13+dfsg1-1_amd64"
    assert hostinfo.dpkg_package(host, "/usr/bin/unknown") == "Unknown"


def test_subid_ranges_of_a_user() -> None:
    host = FilesHost({"/etc/subuid": "bob:100000:65536\n# x\nalice:165536:65536\n1000:300000:10\n"})
    alice = UserInfo("alice", 1000, 1000, "/home/alice")
    ranges = hostinfo.subid_ranges(host, "/etc/subuid", alice)
    assert [(r.start, r.count) for r in ranges] == [(165536, 65536), (300000, 10)]
    assert hostinfo.all_subid_ranges(host, "/etc/subuid") == [
        (100000, 65536),
        (165536, 65536),
        (300000, 10),
    ]


# -- rendering (podpy.cli.system) ----------------------------------------------------------


def test_field_map_answers_go_names_and_json_keeps_camel_case() -> None:
    data = template_data(
        {
            "host": {
                "arch": "amd64",
                "cgroupVersion": "v2",
                "idMappings": {"uidmap": [{"container_id": 0, "host_id": 1000, "size": 1}]},
                "security": {"rootless": True},
            },
            "store": {"graphRoot": "/g"},
            "version": {"PythonVersion": "python3.11"},
        }
    )
    assert data["Host"]["Arch"] == "amd64"
    assert data.Host.Arch == "amd64"
    assert data.get("Store").get("GraphRoot") == "/g"
    assert data["Host"]["CgroupsVersion"] == "v2"
    assert data["Host"]["IDMappings"]["UIDMap"][0]["ContainerID"] == 0
    assert data["Host"]["Security"]["Rootless"] is True
    assert data["Version"]["GoVersion"] == "python3.11"
    assert "Host" in data and "Nope" not in data
    assert isinstance(data, FieldMap)
    with pytest.raises(KeyError):
        data["Nope"]
    assert json.loads(json.dumps(data))["host"]["arch"] == "amd64"


def test_yaml_text_matches_podman_shapes() -> None:
    text = yaml_text(
        {
            "host": {
                "arch": "amd64",
                "cgroupControllers": ["cpu", "memory"],
                "idMappings": {
                    "gidmap": None,
                    "uidmap": [{"container_id": 0, "host_id": 1000, "size": 1}],
                },
                "distribution": {"version": "12"},
                "conmon": {"version": "conmon version 2.1.6, commit: unknown"},
                "slirp": "slirp4netns version 1.2.0\ncommit: 656041d",
                "empty": {},
                "none": [],
                "rootless": True,
            },
            "version": {"BuiltTime": "Thu Jan  1 00:00:00 1970", "GitCommit": ""},
        }
    )
    assert text == (
        "host:\n"
        "  arch: amd64\n"
        "  cgroupControllers:\n"
        "  - cpu\n"
        "  - memory\n"
        "  conmon:\n"
        "    version: 'conmon version 2.1.6, commit: unknown'\n"
        "  distribution:\n"
        '    version: "12"\n'
        "  empty: {}\n"
        "  idMappings:\n"
        "    gidmap: null\n"
        "    uidmap:\n"
        "    - container_id: 0\n"
        "      host_id: 1000\n"
        "      size: 1\n"
        "  none: []\n"
        "  rootless: true\n"
        "  slirp: |-\n"
        "    slirp4netns version 1.2.0\n"
        "    commit: 656041d\n"
        "version:\n"
        "  BuiltTime: Thu Jan  1 00:00:00 1970\n"
        '  GitCommit: ""\n'
    )


def test_version_alignment_like_tabwriter() -> None:
    assert aligned([["Version:", "1"], ["Python Version:", "3"]]) == (
        "Version:         1\nPython Version:  3\n"
    )
