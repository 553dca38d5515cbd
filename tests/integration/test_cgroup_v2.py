"""The cgroup v2 delegated-subtree path, for real, as the rootless user.

This host is a v1+v2 hybrid: its v2 hierarchy (/sys/fs/cgroup/unified) has no controllers, so
rootless podpy normally gets no cgroup. Each command here runs in a private mount namespace
where that v2 hierarchy is bound over /sys/fs/cgroup (the view a pure-v2 host gives), inside a
cgroup owned by the test user, as systemd's `Delegate=yes` would hand it out. Limits cannot be
tested (no controller is on v2 here); the core files are: cgroup.procs (the container gets its
own child cgroup), cgroup.freeze (rootless pause/unpause) and rmdir on removal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.conftest import SYSTEM_PYTHON

UNIFIED = Path("/sys/fs/cgroup/unified")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (UNIFIED / "cgroup.procs").exists(),
    reason="needs root and a cgroup v2 hierarchy at /sys/fs/cgroup/unified (hybrid host)",
)

# Bind v2 over /sys/fs/cgroup, move into the delegated cgroup, then drop to the user.
_ENTER = (
    "mount --make-rprivate / && mount --bind /sys/fs/cgroup/unified /sys/fs/cgroup && "
    'echo $$ > "/sys/fs/cgroup/$DELEGATED/cgroup.procs" && exec "$@"'
)


class DelegatedRunner:
    """Runs podpy as the rootless test user on a pure-v2 view with a delegated subtree."""

    def __init__(self, runner, delegated: str):
        self.runner = runner
        self.delegated = delegated

    def podpy(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        inner = [SYSTEM_PYTHON, "-I", str(self.runner.pyz), *self.runner.extra_args, *args]
        argv = ["unshare", "-m", "sh", "-c", _ENTER, "sh", *self.runner._wrap(inner)]
        env = self.runner.env()
        env["DELEGATED"] = self.delegated
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=str(self.runner.home),
        )

    def ok(self, *args: str) -> str:
        result = self.podpy(*args)
        assert result.returncode == 0, f"{args} exited {result.returncode}: {result.stderr}"
        return result.stdout


def _cgroup_dirs(root: Path) -> List[Path]:
    return sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))


def _remove_tree(root: Path) -> None:
    """Kill whatever is left in the subtree, then rmdir it bottom-up."""
    for directory in reversed([root, *_cgroup_dirs(root)]):
        for _ in range(50):
            try:
                pids = (directory / "cgroup.procs").read_text().split()
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
    for directory in reversed([root, *_cgroup_dirs(root)]):
        for _ in range(50):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


@pytest.fixture
def delegated(rootless) -> Iterator[DelegatedRunner]:
    name = f"podpy-test-{uuid.uuid4().hex[:10]}"
    root = UNIFIED / name
    root.mkdir()
    try:
        # What systemd does for Delegate=yes: the user owns the directory and its core files.
        for path in (root, *root.iterdir()):
            os.chown(path, rootless.uid, rootless.gid)
        yield DelegatedRunner(rootless, name)
    finally:
        _remove_tree(root)


def _frozen(directory: Path) -> bool:
    events = dict(line.split() for line in (directory / "cgroup.events").read_text().splitlines())
    return events.get("frozen") == "1"


def test_rootless_container_gets_a_child_cgroup_and_pauses(
    delegated: DelegatedRunner, busybox_image: str
) -> None:
    delegated.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name = f"v2{uuid.uuid4().hex[:8]}"
    script = "while true; do date +%s%N > /tmp/now; sleep 0.05; done"
    cid = delegated.ok(
        "run", "-d", "--network", "none", "--name", name, busybox_image, "sh", "-c", script
    ).strip()
    try:
        pid = int(delegated.ok("inspect", "--format", "{{.State.Pid}}", name))
        v2_line = [
            x for x in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if x.startswith("0::")
        ]
        relative = v2_line[0][3:].lstrip("/")
        # Seen from the host the cgroup sits under the delegated directory, and is the container's own.
        assert relative.startswith(delegated.delegated + "/"), relative
        assert cid in relative
        container_cgroup = UNIFIED / relative
        assert str(pid) in (container_cgroup / "cgroup.procs").read_text().split()

        assert delegated.ok("pause", name).strip() == name
        assert _frozen(container_cgroup)
        assert delegated.ok("ps", "--format", "{{.Names}} {{.Status}}").count(f"{name} Paused") == 1
        now = Path(f"/proc/{pid}/root/tmp/now")
        frozen_at = now.read_text()
        time.sleep(0.4)
        assert now.read_text() == frozen_at, "the container kept running while paused"

        assert delegated.ok("unpause", name).strip() == name
        assert not _frozen(container_cgroup)
        deadline = time.monotonic() + 10
        while now.read_text() == frozen_at:
            assert time.monotonic() < deadline, "the container did not resume after unpause"
            time.sleep(0.1)

        # A paused container is removed at once, and its cgroup with it.
        delegated.ok("pause", name)
        delegated.ok("rm", "-f", "-t", "0", name)
        assert not container_cgroup.exists()
    finally:
        delegated.podpy("rm", "-f", "-t", "0", name)
