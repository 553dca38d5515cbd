"""50 `podpy run -d` launched at once, as the rootless user and as root: every one succeeds,
no "database is locked", `ps` lists all 50, `rm -af` removes them all and leaves nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

COUNT = 50
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "python3"

pytestmark = pytest.mark.slow


def test_fifty_concurrent_runs(as_each, image: str) -> None:
    runner = as_each
    prefix = f"par{uuid.uuid4().hex[:6]}-"
    graph_root = Path(json.loads(runner.ok("info", "--format", "json"))["store"]["graphRoot"])
    argv_base = [SYSTEM_PYTHON, "-I", str(runner.pyz), *runner.extra_args]
    procs = []
    for i in range(COUNT):
        argv = runner._wrap(
            argv_base + ["run", "-d", "--name", f"{prefix}{i}", image, "sleep", "600"]
        )
        procs.append(
            subprocess.Popen(
                argv,
                env=runner.env(),
                cwd=str(runner.home),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    deadline = time.monotonic() + 300
    for proc in procs:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        results.append((proc.returncode, out, err))
    failures = [r for r in results if r[0] != 0]
    assert not failures, failures[:3]
    assert not [r for r in results if "locked" in r[2]], "database is locked seen"
    ids = {r[1].strip() for r in results}
    assert len(ids) == COUNT and all(len(i) == 64 for i in ids)

    listed = runner.ok("ps", "-q", "--no-trunc").split()
    assert sorted(listed) == sorted(ids)
    names = runner.ok("ps", "--format", "{{.Names}}").split()
    assert sorted(names) == sorted(f"{prefix}{i}" for i in range(COUNT))
    pids = [int(p) for p in runner.ok("inspect", "--format", "{{.State.Pid}}", *names).split()]
    assert len(set(pids)) == COUNT and all(p > 0 for p in pids)

    removed = runner.podpy("rm", "-af", timeout=300)
    assert removed.returncode == 0, removed.stderr
    assert sorted(removed.stdout.split()) == sorted(ids)
    assert "locked" not in removed.stderr
    assert runner.ok("ps", "-aq") == ""
    containers_dir = graph_root / "containers"
    assert not containers_dir.exists() or list(containers_dir.iterdir()) == []
    for pid in pids:
        for _ in range(100):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(") ", 1)[1][0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"container process {pid} still runs after rm -af")
