"""`podpy system reset`: removes sub-uid owned state, confirms on a TTY, stops and unmounts."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from podpy.db.state import StateDB
from podpy.engine.reset import mounts_under

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates users and mounts")


def _roots(runner: Any) -> Tuple[Path, Path]:
    """(graph root, run root) the runner's podpy uses."""
    if runner.user is None:
        args = runner.extra_args
        return Path(args[args.index("--root") + 1]), Path(args[args.index("--runroot") + 1])
    return runner.home / ".local/share/podpy/storage", runner.runtime_dir / "podpy"


def _first_subuid(user: str) -> int:
    with open("/etc/subuid") as f:
        for line in f:
            owner, start, _count = line.strip().split(":")
            if owner == user:
                return int(start)
    raise AssertionError(f"no subuid range for {user}")


@needs_root
def test_reset_removes_files_owned_by_subuids(rootless: Any) -> None:
    graph, run = _roots(rootless)
    script = (
        'set -e; cd "$PODPY_GRAPHROOT"; mkdir -p layers/x/locked; echo hi > layers/x/locked/f; '
        "chown -R 1000:1000 layers; chmod 000 layers/x/locked; "
        'touch "$PODPY_RUNROOT/pidfile"; chown 1000:1000 "$PODPY_RUNROOT/pidfile"'
    )
    rootless.ok("unshare", "sh", "-c", script)
    owner = (graph / "layers" / "x").stat().st_uid
    assert owner == _first_subuid(rootless.user) + 999  # ns uid 1000 -> sub-uid start + 999
    result = rootless.podpy("system", "reset", "--force")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not graph.exists() and not run.exists()
    assert graph.parent.exists() and run.parent.exists()


@needs_root
def test_reset_without_a_store_is_a_quiet_noop(as_each: Any) -> None:
    graph, run = _roots(as_each)
    assert not graph.exists() and not run.exists()
    result = as_each.podpy("system", "reset", "-f")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not graph.exists() and not run.exists()


@needs_root
def test_reset_refuses_without_force_when_stdin_is_not_a_tty(as_each: Any) -> None:
    graph, _run = _roots(as_each)
    as_each.ok("unshare", "true")  # creates the store directories
    result = as_each.podpy("system", "reset", input="y\n")
    assert result.returncode == 125
    assert result.stderr.splitlines() == [
        "Error: refusing to reset without confirmation: stdin is not a terminal",
        "Hint: run `podpy system reset --force` to reset without a prompt",
    ]
    assert graph.is_dir()


def _run_on_pty(runner: Any, args: List[str], answer: bytes) -> Tuple[int, str]:
    """Run podpy with a pseudo-terminal as stdin/stdout; type `answer` at the prompt."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        runner._wrap([SYSTEM_PYTHON, "-I", str(runner.pyz), *runner.extra_args, *args]),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=runner.env(),
        cwd=str(runner.home),
        close_fds=True,
    )
    os.close(secondary)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not answered and b"[y/N]" in output:
                os.write(primary, answer)
                answered = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(timeout=30), output.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(primary)


@needs_root
def test_reset_prompts_on_a_tty_and_honours_the_answer(rootful: Any) -> None:
    graph, _run = _roots(rootful)
    rootful.ok("unshare", "true")
    code, output = _run_on_pty(rootful, ["system", "reset"], b"n\n")
    assert code == 0
    assert "WARNING! This will remove:" in output and "- all images" in output
    assert "Are you sure you want to continue? [y/N]" in output
    assert graph.is_dir()
    code, output = _run_on_pty(rootful, ["system", "reset"], b"y\n")
    assert code == 0, output
    assert not graph.exists()


@needs_root
def test_reset_unmounts_what_is_mounted_under_the_store(rootful: Any) -> None:
    graph, _run = _roots(rootful)
    target = graph / "overlay" / "abc" / "merged"
    target.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], check=True)
    try:
        (target / "inside").write_text("x")
        rootful.ok("system", "reset", "--force")
        with open("/proc/self/mountinfo") as f:
            assert str(target) not in f.read()
        assert not graph.exists()
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@needs_root
def test_reset_stops_processes_of_running_containers(rootful: Any) -> None:
    graph, _run = _roots(rootful)
    sleeper = subprocess.Popen(["sleep", "120"])
    bystander = subprocess.Popen(["sleep", "120"])
    try:
        db = StateDB.open_file(str(graph / "podpy.db"))
        now = time.time()
        for cid, name, status, pid in (
            ("a1" * 32, "running1", "running", sleeper.pid),
            ("b2" * 32, "exited1", "exited", bystander.pid),
        ):
            db.insert(
                "containers",
                {"id": cid, "name": name, "created": now, "updated": now,
                 "status": status, "pid": pid},
            )  # fmt: skip
        db.close()
        rootful.ok("system", "reset", "--force")
        assert sleeper.wait(timeout=10) == -9
        assert bystander.poll() is None  # an exited container's stale pid is left alone
        assert not graph.exists()
    finally:
        for proc in (sleeper, bystander):
            proc.kill()
            proc.wait()


@needs_root
def test_rootless_reset_never_kills_other_users_processes(rootless: Any) -> None:
    graph, _run = _roots(rootless)
    foreign = subprocess.Popen(["sleep", "120"])  # root's, recorded as a "running" container
    try:
        rootless.ok("unshare", "true")
        db = StateDB.open_file(str(graph / "podpy.db"))
        now = time.time()
        db.insert(
            "containers",
            {"id": "c3" * 32, "name": "stale", "created": now, "updated": now,
             "status": "running", "pid": foreign.pid},
        )  # fmt: skip
        db.close()
        for path in graph.iterdir():
            os.chown(path, rootless.uid, rootless.gid)
        rootless.ok("system", "reset", "--force")
        assert foreign.poll() is None
        assert not graph.exists()
    finally:
        foreign.kill()
        foreign.wait()


@needs_root
def test_reset_recovers_from_a_damaged_database(as_each: Any) -> None:
    graph, _run = _roots(as_each)
    script = 'printf "garbage, not sqlite" > "$PODPY_GRAPHROOT/podpy.db"'
    as_each.ok("unshare", "sh", "-c", script)
    result = as_each.podpy("system", "reset", "--force")
    assert result.returncode == 0, result.stderr
    assert not graph.exists()


def test_mountinfo_parsing_unescapes_and_orders_deepest_first(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 0:50 / /store rw - tmpfs tmpfs rw\n"
        "41 40 0:51 / /store/over\\040lay/a/merged rw - overlay overlay rw,lowerdir=x\n"
        "42 40 0:52 / /store/fuse rw,nosuid - fuse.fuse-overlayfs fuse-overlayfs rw\n"
        "43 22 0:53 / /storefront rw - tmpfs tmpfs rw\n"
        "44 22 0:54 / /run/podpy rw shared:5 master:2 - tmpfs tmpfs rw\n"
    )
    assert mounts_under(["/store", "/run/podpy/"], str(mountinfo)) == [
        ("/store/over lay/a/merged", "overlay"),
        ("/store/fuse", "fuse.fuse-overlayfs"),
        ("/run/podpy", "tmpfs"),
        ("/store", "tmpfs"),
    ]
    assert mounts_under(["/nothing"], str(mountinfo)) == []
    assert mounts_under(["/store"], str(tmp_path / "missing")) == []
