"""/proc helpers shared by the integration tests (process liveness, parents, mounts)."""

from __future__ import annotations

import os
import time
from typing import List


def pid_alive(pid: int) -> bool:
    """Running and not a zombie (PID 1 reaps slowly here, so zombies linger)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def mounts_mentioning(text: str) -> List[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if text in line]


def parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(") ", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def cmdline_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def all_pids() -> List[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]
