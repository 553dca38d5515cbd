"""OCI config generation: podman's defaults, image config merging, user lookup, option errors."""

from __future__ import annotations

import json
import os

import pytest

from podpy.errors import PodpyError
from podpy.runtime import users
from podpy.runtime.caps import DEFAULT_CAPABILITIES, effective_set
from podpy.runtime.mounts import parse_options, secure_join
from podpy.spec.generate import (
    MASKED_PATHS,
    READONLY_PATHS,
    RunOptions,
    generate,
    parse_size,
    parse_tmpfs,
    parse_volume,
    write_network_files,
)

IMAGE = {
    "config": {
        "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
        "Entrypoint": ["/bin/entry"],
        "Cmd": ["serve", "--port", "80"],
        "WorkingDir": "/srv",
        "User": "",
    }
}


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
        "bob:x:1001:1001::/home/bob:/bin/sh\n"
    )
    (root / "etc" / "group").write_text(
        "root:x:0:\nalice:x:1000:\nbob:x:1001:\nstaff:x:50:alice,bob\nwheel:x:10:alice\n"
    )
    return root


def options(rootfs, **kwargs):
    kwargs.setdefault("rootless", False)
    return RunOptions(container_id="0123456789abcdef0123", rootfs=str(rootfs), **kwargs)


def test_defaults_match_podman(rootfs):
    config = generate(IMAGE, options(rootfs))
    process = config["process"]
    assert config["ociVersion"] == "1.0.2-dev"
    assert process["args"] == ["/bin/entry", "serve", "--port", "80"]
    assert process["cwd"] == "/srv"
    assert process["user"] == {"uid": 0, "gid": 0, "umask": 0o22}
    assert process["terminal"] is False
    assert process["noNewPrivileges"] is False
    caps = process["capabilities"]
    assert sorted(caps["bounding"]) == sorted(DEFAULT_CAPABILITIES)
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert caps["inheritable"] == caps["ambient"] == []
    assert "PATH=/usr/bin:/bin" in process["env"] and "LANG=C" in process["env"]
    assert "HOSTNAME=0123456789ab" in process["env"]
    assert config["hostname"] == "0123456789ab"
    assert [r["type"] for r in process["rlimits"]] == ["RLIMIT_NOFILE", "RLIMIT_NPROC"]
    linux = config["linux"]
    assert linux["maskedPaths"] == MASKED_PATHS and "/proc/kcore" in MASKED_PATHS
    assert linux["readonlyPaths"] == READONLY_PATHS and "/proc/sys" in READONLY_PATHS
    types = [n["type"] for n in linux["namespaces"]]
    assert {"pid", "network", "ipc", "uts", "mount"} <= set(types)
    assert "user" not in types  # the runtime already runs inside podpy's user namespace
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    dests = [m["destination"] for m in config["mounts"]]
    assert dests[:5] == ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys"]
    assert "/dev/shm" in dests
    sysfs = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]
    assert config["root"] == {"path": str(rootfs), "readonly": False}
    json.dumps(config)  # must be plain JSON


def test_capability_mask_is_podmans_capeff():
    from podpy import linux

    assert linux.cap_mask(effective_set()) == 0x00000000800405FB


def test_cap_add_drop_and_privileged(rootfs):
    config = generate(IMAGE, options(rootfs, cap_add=["net_admin"], cap_drop=["CAP_CHOWN"]))
    bounding = config["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in bounding and "CAP_CHOWN" not in bounding
    none = generate(IMAGE, options(rootfs, cap_drop=["all"]))
    assert none["process"]["capabilities"]["bounding"] == []
    privileged = generate(IMAGE, options(rootfs, privileged=True))
    assert "CAP_SYS_ADMIN" in privileged["process"]["capabilities"]["bounding"]
    assert "seccomp" not in privileged["linux"]
    assert privileged["linux"]["maskedPaths"] == []
    with pytest.raises(PodpyError, match="unknown capability"):
        generate(IMAGE, options(rootfs, cap_add=["FLY"]))


def test_command_entrypoint_and_env_overrides(rootfs):
    config = generate(IMAGE, options(rootfs, command=["sh"], env=["LANG=de", "X=1"]))
    assert config["process"]["args"] == ["/bin/entry", "sh"]
    assert "LANG=de" in config["process"]["env"] and "LANG=C" not in config["process"]["env"]
    config = generate(IMAGE, options(rootfs, entrypoint=["/bin/sh", "-c"], command=["true"]))
    assert config["process"]["args"] == ["/bin/sh", "-c", "true"]
    config = generate({"config": {}}, options(rootfs, command=["ls"]))
    assert any(e.startswith("PATH=/usr/local/sbin") for e in config["process"]["env"])
    with pytest.raises(PodpyError, match="no command or entrypoint"):
        generate({"config": {}}, options(rootfs))
    with pytest.raises(PodpyError, match="must be an absolute path"):
        generate(IMAGE, options(rootfs, workdir="relative"))


def test_user_lookup_names_ids_and_supplementary_groups(rootfs):
    alice = users.resolve_user(str(rootfs), "alice")
    assert (alice.uid, alice.gid, sorted(alice.additional_gids)) == (1000, 1000, [10, 50])
    assert users.resolve_user(str(rootfs), "1001").gid == 1001
    assert users.resolve_user(str(rootfs), "4242").gid == 0  # unknown numeric uid is allowed
    assert users.resolve_user(str(rootfs), "alice:staff").gid == 50
    assert users.resolve_user(str(rootfs), "bob:7").gid == 7
    config = generate(IMAGE, options(rootfs, user="alice"))
    assert config["process"]["user"]["uid"] == 1000
    assert sorted(config["process"]["user"]["additionalGids"]) == [10, 50]
    # podman gives a non-root user no effective capabilities, only the bounding set.
    assert config["process"]["capabilities"]["effective"] == []
    with pytest.raises(PodpyError, match="unable to find user nosuchuser"):
        generate(IMAGE, options(rootfs, user="nosuchuser"))
    with pytest.raises(PodpyError, match="unable to find group nogroup"):
        generate(IMAGE, options(rootfs, user="alice:nogroup"))


def test_user_lookup_cannot_escape_the_rootfs(tmp_path, rootfs):
    (rootfs / "etc" / "passwd").unlink()
    # An absolute link is resolved inside the rootfs, never on the host.
    os.symlink("/../../../../etc/shadow-free/passwd", rootfs / "etc" / "passwd")
    resolved = secure_join(str(rootfs), "/etc/passwd")
    assert resolved == str(rootfs / "etc" / "shadow-free" / "passwd")
    assert secure_join(str(rootfs), "../../etc/../x") == str(rootfs / "x")
    with pytest.raises(PodpyError, match="unable to find user root"):
        users.resolve_user(str(rootfs), "root")
    (rootfs / "etc" / "passwd").unlink()
    os.symlink("passwd", rootfs / "etc" / "passwd")  # a loop: an error, not a hang
    with pytest.raises(PodpyError, match="unable to find user alice"):
        users.resolve_user(str(rootfs), "alice")


def test_volumes_tmpfs_and_missing_sources(rootfs, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    config = generate(
        IMAGE,
        options(rootfs, volumes=[f"{data}:/data:ro,rslave"], tmpfs=["/scratch:size=1m,exec"]),
    )
    bind = next(m for m in config["mounts"] if m["destination"] == "/data")
    assert bind["source"] == str(data) and "ro" in bind["options"] and "rslave" in bind["options"]
    tmpfs = next(m for m in config["mounts"] if m["destination"] == "/scratch")
    assert "size=1m" in tmpfs["options"] and "exec" in tmpfs["options"]
    assert "noexec" not in tmpfs["options"]
    with pytest.raises(PodpyError, match="no such file or directory"):
        generate(IMAGE, options(rootfs, volumes=[f"{tmp_path}/absent:/data"]))
    with pytest.raises(PodpyError, match="must be an absolute path"):
        parse_volume("/x:relative")
    with pytest.raises(PodpyError, match="invalid volume option"):
        parse_volume("/x:/y:sideways")
    assert parse_tmpfs("/t")["options"] == ["rw", "noexec", "nosuid", "nodev"]


def test_resources_and_their_validation(rootfs):
    config = generate(
        IMAGE,
        options(rootfs, memory=parse_size("64m"), cpus=1.5, cpu_shares=512, pids_limit=100),
    )
    res = config["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert res["cpu"] == {"period": 100000, "quota": 150000, "shares": 512}
    assert res["pids"] == {"limit": 100}
    assert config["linux"]["cgroupsPath"].endswith("0123456789abcdef0123")
    with pytest.raises(PodpyError, match="larger than memory"):
        generate(IMAGE, options(rootfs, memory=64 << 20, memory_swap=32 << 20))
    with pytest.raises(PodpyError, match="minimum memory limit"):
        generate(IMAGE, options(rootfs, memory=1024))
    with pytest.raises(PodpyError, match="invalid size"):
        parse_size("lots")
    assert parse_size("1g") == 1 << 30 and parse_size("512") == 512


def test_security_options(rootfs, tmp_path):
    config = generate(IMAGE, options(rootfs, no_new_privileges=True, read_only=True))
    assert config["process"]["noNewPrivileges"] is True
    assert config["root"]["readonly"] is True
    config = generate(IMAGE, options(rootfs, seccomp_profile="unconfined"))
    assert "seccomp" not in config["linux"]
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}))
    config = generate(IMAGE, options(rootfs, seccomp_profile=str(profile)))
    assert config["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    with pytest.raises(PodpyError, match="does not exist"):
        generate(IMAGE, options(rootfs, seccomp_profile=str(tmp_path / "none.json")))
    config = generate(IMAGE, options(rootfs, ulimits=["nofile=100:200"], init=True))
    nofile = next(r for r in config["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE")
    assert (nofile["soft"], nofile["hard"]) == (100, 200)
    assert config["annotations"]["io.podpy.init"] == "true"
    with pytest.raises(PodpyError, match="invalid ulimit"):
        generate(IMAGE, options(rootfs, ulimits=["bananas=1"]))


def test_network_files(tmp_path):
    resolv = tmp_path / "host-resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 9.9.9.9\nsearch example.org\n")
    mounts = write_network_files(
        str(tmp_path / "net"),
        "web1",
        name="web",
        add_hosts=["db:10.0.0.5"],
        host_resolv_conf=str(resolv),
    )
    assert [m["destination"] for m in mounts] == ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
    net = tmp_path / "net"
    assert (net / "hostname").read_text() == "web1\n"
    hosts = (net / "hosts").read_text()
    assert "127.0.1.1   web1 web" in hosts and "10.0.0.5\tdb" in hosts
    text = (net / "resolv.conf").read_text()
    assert (
        "127.0.0.53" not in text and "nameserver 9.9.9.9" in text and "search example.org" in text
    )


def test_mount_option_parsing():
    from podpy import linux

    parsed = parse_options(["rbind", "ro", "nosuid", "rslave", "mode=755", "size=1m"])
    assert parsed.flags == linux.MS_BIND | linux.MS_REC | linux.MS_RDONLY | linux.MS_NOSUID
    assert parsed.propagation == [linux.MS_SLAVE | linux.MS_REC]
    assert parsed.data == "mode=755,size=1m"


def test_rootless_without_cgroup_delegation_warns_and_drops_limits(rootfs, capsys):
    from podpy import log
    from podpy.runtime import cgroups

    log._seen_once.clear()
    config = generate(IMAGE, options(rootfs, rootless=True, memory=64 << 20, pids_limit=10))
    stderr = capsys.readouterr().err
    if cgroups.can_manage(True):  # a delegated cgroup v2 subtree: limits are kept
        assert config["linux"]["resources"]["pids"] == {"limit": 10}
        assert cgroups.ROOTLESS_V1_WARNING not in stderr
    else:
        assert "resources" not in config["linux"] and "cgroupsPath" not in config["linux"]
        assert stderr.count(cgroups.ROOTLESS_V1_WARNING) == 1
        generate(IMAGE, options(rootfs, rootless=True, memory=64 << 20))
        assert cgroups.ROOTLESS_V1_WARNING not in capsys.readouterr().err  # once only
