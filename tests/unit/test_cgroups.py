"""cgroup v2 file writes against a fake cgroupfs (this host's v2 has no controllers; the real
delegated path is exercised in tests/integration/test_cgroup_v2.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from podpy.runtime import cgroups


@pytest.fixture
def fake_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "cgroup.procs").write_text("")
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", str(tmp_path))
    return tmp_path


def test_mode_is_v2_on_a_unified_root(fake_v2: Path) -> None:
    assert cgroups.mode() == "v2"


def test_rootful_v2_enables_controllers_and_writes_limits(fake_v2: Path) -> None:
    group = cgroups.create("/podpy_parent/podpy-abc", rootless=False)
    assert group is not None and group.version == 2
    path = Path(group.paths["unified"])
    assert path == fake_v2 / "podpy_parent" / "podpy-abc"
    # Controllers are switched on for the children at the top level (the only level whose
    # cgroup.controllers exists in this fake tree).
    assert (fake_v2 / "cgroup.subtree_control").read_text() == "+cpu +memory +pids +io"

    (path / "memory.swap.max").write_text("max")
    group.apply(
        {
            "memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20},
            "cpu": {"shares": 1024, "quota": 150000, "period": 100000, "cpus": "0-1"},
            "pids": {"limit": 100},
            "unified": {"memory.high": "60000000"},
        }
    )
    read = lambda name: (path / name).read_text()  # noqa: E731
    assert read("memory.max") == str(64 << 20)
    assert read("memory.swap.max") == str(64 << 20)  # OCI swap is memory+swap; v2 swap alone
    assert read("memory.low") == str(32 << 20)
    assert read("cpu.weight") == "39"  # crun's shares->weight: 1024 -> 39
    assert read("cpu.max") == "150000 100000"
    assert read("cpuset.cpus") == "0-1"
    assert read("pids.max") == "100"
    assert read("memory.high") == "60000000"


def test_unlimited_values_are_max(fake_v2: Path) -> None:
    group = cgroups.create("/podpy/unl", rootless=False)
    assert group is not None
    path = Path(group.paths["unified"])
    (path / "memory.swap.max").write_text("0")
    group.apply({"memory": {"limit": -1, "swap": -1}, "pids": {"limit": 0}})
    assert (path / "memory.max").read_text() == "max"
    assert (path / "memory.swap.max").read_text() == "max"
    assert (path / "pids.max").read_text() == "max"


def test_rootless_uses_only_a_writable_delegated_subtree(
    fake_v2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delegated = fake_v2 / "user.slice" / "user-1000.slice" / "user@1000.service"
    delegated.mkdir(parents=True)
    (delegated / "cgroup.procs").write_text("")
    monkeypatch.setattr(
        cgroups, "_own_v2_cgroup", lambda: "/user.slice/user-1000.slice/user@1000.service"
    )
    assert cgroups.delegated_v2_base() == str(delegated)
    assert cgroups.can_manage(rootless=True)
    group = cgroups.create("/podpy_parent/podpy-r", rootless=True)
    assert group is not None
    assert Path(group.paths["unified"]) == delegated / "podpy_parent" / "podpy-r"

    # Not delegated (not writable by us): no cgroup, and podman's "limits ignored" behaviour.
    monkeypatch.setattr(cgroups.os, "access", lambda path, mode: False)
    assert cgroups.delegated_v2_base() is None
    assert not cgroups.can_manage(rootless=True)
    assert cgroups.create("/podpy_parent/podpy-s", rootless=True) is None


def test_freeze_and_stats_read_the_v2_files(fake_v2: Path) -> None:
    group = cgroups.create("/podpy/st", rootless=False)
    assert group is not None
    path = Path(group.paths["unified"])
    group.freeze(True)
    assert (path / "cgroup.freeze").read_text() == "1"
    group.freeze(False)
    assert (path / "cgroup.freeze").read_text() == "0"
    (path / "memory.current").write_text("4096\n")
    (path / "memory.max").write_text("max\n")
    (path / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    (path / "pids.current").write_text("3\n")
    (path / "cgroup.procs").write_text("11\n12\n")
    assert group.stats() == {
        "memory_usage": 4096,
        "memory_limit": 0,
        "cpu_ns": 2_500_000,
        "pids": 3,
    }
    assert group.pids() == [11, 12]
    restored = cgroups.Cgroup.from_json(group.to_json())
    assert restored is not None and restored.paths == group.paths and restored.version == 2


def _own_v2_path() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    pytest.fail("no cgroup v2 line in /proc/self/cgroup")


def test_prime_attach_moves_this_process_into_its_own_cgroup_in_the_background(
    fake_v2: Path,
) -> None:
    """The primer writes pid 0 (itself) to the cgroup.procs of the cgroup it is in: a no-op
    move that pays the kernel's grace period ahead of the init's real move."""
    import time

    own = fake_v2 / _own_v2_path().lstrip("/")
    own.mkdir(parents=True, exist_ok=True)
    (own / "cgroup.procs").write_text("")
    assert cgroups._own_procs_file() == str(own / "cgroup.procs")
    cgroups.prime_attach()  # returns at once; a thread does the write
    deadline = time.monotonic() + 5
    while (own / "cgroup.procs").read_text() != "0" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (own / "cgroup.procs").read_text() == "0"


def test_prime_attach_without_a_cgroup_to_write_is_a_no_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", str(tmp_path / "none"))
    assert cgroups._own_procs_file() is None
    cgroups.prime_attach()
    (tmp_path / "cgroup.controllers").write_text("")  # v2, but our cgroup's dir is missing
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", str(tmp_path))
    assert cgroups._own_procs_file() is None
    cgroups.prime_attach()
    cgroups._write_quietly(str(tmp_path / "missing" / "cgroup.procs"))  # errors are ignored
