"""`podpy version`, `info` and `doctor` run from the zipapp as the rootless test user and as root."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

from podpy import __version__
from podpy.hostinfo import go_arch

ARCH = go_arch(platform.machine())
IS_ROOT = os.geteuid() == 0
# tests/conftest.py's Runner (its module name is shadowed by tests/integration/conftest.py).
Runner = Any


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def subid_ranges(path: str, user: str, uid: int) -> List[Tuple[int, int]]:
    ranges = []
    for line in Path(path).read_text().splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)):
            ranges.append((int(parts[1]), int(parts[2])))
    return ranges


def info_json(runner: Runner) -> dict:
    return json.loads(runner.ok("info", "--format", "json"))


def test_version_lines_and_formats(as_each: Runner) -> None:
    text = as_each.ok("version")
    labels = [line.split(":")[0] for line in text.splitlines()]
    assert labels == ["Version", "API Version", "Python Version", "Built", "OS/Arch"]
    assert f"Version:         {__version__}\n" in text
    assert f"OS/Arch:         linux/{ARCH}\n" in text
    assert as_each.ok("version", "--format", "{{.Client.Version}}").strip() == __version__
    client = json.loads(as_each.ok("version", "--format", "json"))["Client"]
    assert client["Version"] == __version__ and client["OsArch"] == f"linux/{ARCH}"
    assert client["PythonVersion"].startswith("python3.")
    assert set(client) >= {"APIVersion", "GitCommit", "BuiltTime", "Built", "Os"}
    assert as_each.ok("system", "version", "--format", "{{.Client.Os}}").strip() == "linux"


def test_info_rootless_user(rootless: Runner) -> None:
    text = rootless.ok("info")
    assert "    rootless: true\n" in text
    data = info_json(rootless)
    host, store = data["host"], data["store"]
    assert host["security"]["rootless"] is True
    assert store["graphRoot"] == str(rootless.home / ".local/share/podpy/storage")
    assert store["graphRoot"] in text
    user = rootless.user or pwd.getpwuid(os.geteuid()).pw_name
    uid_ranges = subid_ranges("/etc/subuid", user, rootless.uid)
    gid_ranges = subid_ranges("/etc/subgid", user, rootless.uid)
    assert uid_ranges and gid_ranges, "the rootless fixture user should have sub-id ranges"
    assert host["idMappings"]["uidmap"][0] == {
        "container_id": 0,
        "host_id": rootless.uid,
        "size": 1,
    }
    assert host["idMappings"]["uidmap"][1] == {
        "container_id": 1,
        "host_id": uid_ranges[0][0],
        "size": uid_ranges[0][1],
    }
    assert host["idMappings"]["gidmap"][1]["host_id"] == gid_ranges[0][0]
    assert host["subIdRanges"]["uids"] == [{"start": s, "count": c} for s, c in uid_ranges]
    assert f"host_id: {uid_ranges[0][0]}\n" in text
    # the driver decision is explained, and agrees with the real overlay probe
    if host["nativeOverlay"]:
        assert (store["graphDriverName"], store["graphDriverReason"]) == (
            "overlay",
            "native rootless overlay available",
        )
    else:
        assert host["nativeOverlayReason"]
        assert host["nativeOverlayReason"] in store["graphDriverReason"]
    # the probe leaves nothing behind in the user's data dir
    leftovers = [p for p in rootless.home.rglob(".podpy-overlay-probe-*")]
    assert leftovers == []


def test_info_root(rootful: Runner) -> None:
    data = info_json(rootful)
    assert data["host"]["security"]["rootless"] is False
    assert data["host"]["idMappings"] == {"gidmap": None, "uidmap": None}
    root_arg = rootful.extra_args[rootful.extra_args.index("--root") + 1]
    run_arg = rootful.extra_args[rootful.extra_args.index("--runroot") + 1]
    assert data["store"]["graphRoot"] == root_arg and data["store"]["runRoot"] == run_arg
    assert "    rootless: false\n" in rootful.ok("info")


def test_info_json_keys_and_templates(as_each: Runner) -> None:
    data = info_json(as_each)
    assert set(data) >= {"host", "store", "registries", "version"}
    host = data["host"]
    for key in (
        "arch",
        "kernel",
        "os",
        "hostname",
        "security",
        "idMappings",
        "cgroupVersion",
        "cgroupControllers",
        "cgroupManager",
        "ociRuntime",
        "slirp4netns",
        "memTotal",
        "cpus",
        "uptime",
        "distribution",
        "newuidmap",
        "newgidmap",
        "nativeOverlay",
        "fuseOverlayfs",
        "devFuse",
    ):
        assert key in host, key
    assert host["arch"] == ARCH and host["os"] == "linux"
    assert host["kernel"] == os.uname().release and host["hostname"] == os.uname().nodename
    assert host["cpus"] == os.cpu_count() and host["memTotal"] > 0
    assert host["cgroupVersion"] in ("v1", "v2")
    assert host["slirp4netns"]["executable"] == shutil.which("slirp4netns")
    assert host["newuidmap"]["path"] == shutil.which("newuidmap")
    store = data["store"]
    for key in (
        "graphRoot",
        "runRoot",
        "graphDriverName",
        "graphDriverReason",
        "graphStatus",
        "configFile",
        "volumeStore",
    ):
        assert key in store, key
    assert store["imageStore"] == {"number": 0}
    assert store["containerStore"] == {"number": 0, "paused": 0, "running": 0, "stopped": 0}
    assert isinstance(data["registries"]["search"], list)
    assert data["version"]["Version"] == __version__
    assert as_each.ok("info", "--format", "{{.Host.Arch}}") == f"{ARCH}\n"
    assert as_each.ok("info", "-f", "{{.Store.GraphRoot}}").strip() == store["graphRoot"]
    rootless = as_each.ok("info", "--format", "{{.Host.Security.Rootless}}").strip()
    assert rootless == ("true" if as_each.uid != 0 else "false")
    assert as_each.ok("system", "info", "--format", "{{.Version.Version}}").strip() == __version__


@pytest.mark.skipif(not IS_ROOT or not shutil.which("podman"), reason="needs root and podman")
def test_info_agrees_with_podman(rootful: Runner) -> None:
    ours = info_json(rootful)["host"]
    fmt = "{{.Host.Arch}} {{.Host.CgroupsVersion}} {{.Host.Kernel}} {{.Host.Distribution.Version}}"
    theirs = subprocess.run(
        ["podman", "info", "--format", fmt], capture_output=True, text=True, check=True
    ).stdout.split()
    assert theirs == [
        ours["arch"],
        ours["cgroupVersion"],
        ours["kernel"],
        ours["distribution"]["version"],
    ]


def test_doctor_passes_for_prepared_user(rootless: Runner) -> None:
    result = rootless.podpy("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All required checks passed" in result.stdout
    for name in ("subuids", "subgids", "newuidmap", "userns", "tun", "slirp4netns"):
        assert any(
            line.startswith("ok") and f" {name} " in line for line in result.stdout.splitlines()
        ), name
    report = json.loads(rootless.ok("doctor", "--format", "json"))
    assert report["ok"] is True and report["rootless"] is True and report["uid"] == rootless.uid
    assert not [c for c in report["checks"] if c["status"] == "fail"]


def test_doctor_as_root(rootful: Runner) -> None:
    result = rootful.podpy("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--user" in result.stdout and "namespaces" in result.stdout
    missing = rootful.podpy("doctor", "--user", unique_name("nouser"))
    assert missing.returncode == 125
    assert missing.stderr.startswith("Error: user ") and "does not exist" in missing.stderr


@pytest.fixture
def user_without_subids(rootless_session: Runner) -> Iterator[Runner]:
    """A fresh user whose sub-id ranges useradd handed out are taken away again."""
    if not IS_ROOT:
        pytest.skip("needs root to create a user")
    name = unique_name("podpyn")[:16]
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    entry = pwd.getpwnam(name)
    run_dir = Path(f"/run/user/{entry.pw_uid}")
    try:
        args = []
        for start, count in subid_ranges("/etc/subuid", name, entry.pw_uid):
            args += ["--del-subuids", f"{start}-{start + count - 1}"]
        for start, count in subid_ranges("/etc/subgid", name, entry.pw_uid):
            args += ["--del-subgids", f"{start}-{start + count - 1}"]
        if args:
            subprocess.run(["usermod", *args, name], check=True)
        assert not subid_ranges("/etc/subuid", name, entry.pw_uid)
        run_dir.mkdir(mode=0o700)
        os.chown(run_dir, entry.pw_uid, entry.pw_gid)
        yield dataclasses.replace(
            rootless_session,
            user=name,
            uid=entry.pw_uid,
            gid=entry.pw_gid,
            home=Path(entry.pw_dir),
            runtime_dir=run_dir,
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        subprocess.run(["userdel", "--remove", "--force", name], capture_output=True)
        shutil.rmtree(entry.pw_dir, ignore_errors=True)


def taken_subids() -> List[range]:
    """Every range handed out in /etc/subuid and /etc/subgid right now."""
    taken = []
    for path in ("/etc/subuid", "/etc/subgid"):
        for line in Path(path).read_text().splitlines():
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                taken.append(range(int(parts[1]), int(parts[1]) + int(parts[2])))
    return taken


def is_free(taken: List[range], start: int, end: int) -> bool:
    return all(end < r.start or start >= r.stop for r in taken)


def test_doctor_fails_without_subids(user_without_subids: Runner, rootful: Runner) -> None:
    user = user_without_subids.user
    runs = (
        lambda: user_without_subids.podpy("doctor"),
        lambda: rootful.podpy("doctor", "--user", user),
    )
    for run in runs:
        # Other test sessions may add or remove users meanwhile: doctor saw the files at
        # some moment between these two snapshots.
        before = taken_subids()
        result = run()
        after = taken_subids()
        assert result.returncode == 1, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert any(line.startswith("FAIL subuids") for line in lines), result.stdout
        assert any(line.startswith("FAIL subgids") for line in lines), result.stdout
        fixes = [line.strip() for line in lines if line.strip().startswith("fix: sudo usermod")]
        assert fixes and fixes[0].endswith(f" {user}")
        assert "--add-subuids " in fixes[0] and "--add-subgids " in fixes[0]
        span = fixes[0].split("--add-subuids ")[1].split()[0]
        start, end = (int(x) for x in span.split("-"))
        assert end - start + 1 == 65536 and start >= 100000
        assert fixes[0].count(f"{start}-{end}") == 2  # same free span for uids and gids
        assert is_free(before, start, end) or is_free(after, start, end), fixes[0]
        assert "required check(s) failed" in result.stdout
    report = json.loads(user_without_subids.podpy("doctor", "--format", "json").stdout)
    assert report["ok"] is False
    assert {c["name"] for c in report["checks"] if c["status"] == "fail"} == {"subuids", "subgids"}


def test_doctor_refuses_other_user_without_root(rootless: Runner) -> None:
    if rootless.uid == 0:
        pytest.skip("needs a non-root runner")
    result = rootless.podpy("doctor", "--user", "root")
    assert result.returncode == 125
    assert "needs root" in result.stderr and "sudo podpy doctor --user root" in result.stderr


def test_info_storage_driver_from_storage_conf(rootful: Runner, tmp_path: Path) -> None:
    conf = tmp_path / "storage.conf"
    conf.write_text('[storage]\ndriver = "vfs"\n')
    env = {"CONTAINERS_STORAGE_CONF": str(conf)}
    fmt = "{{.Store.GraphDriverName}}|{{.Store.GraphDriverReason}}|{{.Store.ConfigFile}}"
    out = rootful.ok("info", "--format", fmt, env=env).strip()
    assert out == f"vfs|storage.conf driver=vfs|{conf}"
    conf.write_text('[storage]\ndriver = "btrfs"\n')
    bad = rootful.podpy("info", env=env)
    assert bad.returncode == 125 and bad.stdout == ""
    assert bad.stderr.splitlines()[0] == 'Error: storage driver "btrfs" is not supported by podpy'


def test_system_df_counts_and_formats(as_each: Runner, image: str) -> None:
    """`system df` as podman's: a summary row per type, sizes in go-units, reclaimable %."""
    vol, ctr = unique_name("v"), unique_name("c")
    as_each.ok("volume", "create", vol)
    as_each.ok("volume", "create", unique_name("unused"))
    as_each.ok("create", "--name", ctr, "-v", f"{vol}:/data", image, "true")
    lines = as_each.ok("system", "df").splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line[:15].strip() for line in lines[1:]] == ["Images", "Containers", "Local Volumes"]
    images_row = lines[1].split()
    assert images_row[1:3] == ["1", "1"] and images_row[3].endswith("MB")
    assert images_row[4:] == ["0B", "(0%)"]  # the one image is used by the container
    counts = as_each.ok("system", "df", "--format", "{{.Type}}={{.Total}}/{{.Active}}")
    assert counts.splitlines() == ["Images=1/1", "Containers=1/0", "Local Volumes=2/1"]
    raw = json.loads(as_each.ok("system", "df", "--format", "json"))
    assert [r["Type"] for r in raw] == ["Images", "Containers", "Local Volumes"]
    assert raw[0]["Size"] > 1_000_000 and raw[0]["Reclaimable"] == 0
    as_each.ok("rm", ctr)
    freed = as_each.ok("system", "df", "--format", "{{.Type}} {{.Reclaimable}}").splitlines()
    assert freed[0].endswith("(100%)") and freed[1] == "Containers 0B (0%)"


def test_system_prune_sections_as_podman(as_each: Runner, image: str) -> None:
    """`system prune`: podman's "Deleted X" sections, only non-empty ones, then the total."""
    ctr, net, vol = unique_name("c"), unique_name("n"), unique_name("v")
    cid = as_each.ok("create", "--name", ctr, image, "true").strip()
    as_each.ok("network", "create", net)
    as_each.ok("volume", "create", vol)
    out = as_each.ok("system", "prune", "-f").splitlines()
    assert out == ["Deleted Containers", cid, "Deleted Networks", net, "Total reclaimed space: 0B"]
    assert as_each.ok("volume", "ls", "-q").split() == [vol]  # volumes only with --volumes
    out = as_each.ok("system", "prune", "-f", "--volumes").splitlines()
    assert out == ["Deleted Volumes", vol, "Total reclaimed space: 0B"]
    image_id = as_each.ok("image", "inspect", "--format", "{{.Id}}", image).strip()
    out = as_each.ok("system", "prune", "-a", "-f").splitlines()
    assert out[:2] == ["Deleted Images", image_id] and out[2].endswith("MB")
    assert as_each.ok("images", "-q").strip() == ""
    bad = as_each.podpy("system", "prune", "-f", "--filter", "colour=red")
    assert bad.returncode == 125 and "Error: colour is an invalid filter" in bad.stderr
