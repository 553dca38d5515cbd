"""`--version`/`-v` wherever podman accepts it: alone (answered by podpy/__main__.py before any
CLI import) and after global options or before a command (the typer CLI's eager option), as
`podman --root X --version` and `podman -v ps` print the version and exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[2]


def podpy(args: List[str]) -> subprocess.CompletedProcess:
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from podpy.__main__ import main; sys.exit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["-v"],
        ["--root", "/nonexistent/podpy-root", "--version"],
        ["--log-level", "debug", "-v"],
        ["--version", "ps"],
        ["-v", "run", "--rm", "busybox", "true"],
    ],
)
def test_version_anywhere_before_the_command(args: List[str]) -> None:
    done = podpy(args)
    assert (done.returncode, done.stdout.startswith("podpy version "), done.stderr) == (0, True, "")
