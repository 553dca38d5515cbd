"""The README's first command: `./demo.sh` builds the zipapp, starts a real registry on
loopback, pushes busybox into it, pulls it with podpy and runs a container from it; it exits 0
and leaves nothing behind."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_cleans_up() -> None:
    before = set(glob.glob("/tmp/podpy-demo.*"))
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", str(REPO / "demo.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "hello from " in done.stdout and " as root" in done.stdout
    assert set(glob.glob("/tmp/podpy-demo.*")) == before  # its work dir is gone
