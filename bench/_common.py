"""Shared benchmark helpers: paired podpy/podman timing, medians, ratios, and a plain table.

Benchmarks compare podpy with podman side by side on the same machine, alternating the two
on every round so load spikes hit both sides alike ("paired" runs). Stdlib only.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence

if TYPE_CHECKING:
    import argparse

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PYZ = REPO / "dist" / "podpy.pyz"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Identity:
    """Who runs the commands: root (user None) or a non-root user via setpriv."""

    user: Optional[str] = None
    uid: int = 0
    gid: int = 0
    home: str = "/root"

    @classmethod
    def named(cls, user: Optional[str]) -> Identity:
        if not user:
            return cls()
        import pwd

        entry = pwd.getpwnam(user)
        return cls(user, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def wrap(self, argv: Sequence[str]) -> List[str]:
        if self.user is None:
            return list(argv)
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", *argv]

    def env(self, runtime_dir: str) -> Dict[str, str]:
        env = {
            "HOME": self.home,
            "PATH": CLEAN_PATH,
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": runtime_dir,
        }
        if self.user:
            env["USER"] = env["LOGNAME"] = self.user
        return env


@dataclass
class Case:
    """One row of a benchmark: the same operation for podpy and (optionally) podman."""

    label: str
    podpy: List[str]
    podman: Optional[List[str]] = None
    max_seconds: Optional[float] = None  # absolute target for podpy's median
    max_ratio: Optional[float] = None  # target for podpy/podman
    podpy_times: List[float] = field(default_factory=list)
    podman_times: List[float] = field(default_factory=list)
    podpy_error: Optional[str] = None
    podman_error: Optional[str] = None


def timed(argv: Sequence[str], env: Mapping[str, str], cwd: Optional[str] = None) -> float:
    """Wall time of one run; raises CalledProcessError (with stderr) on a non-zero exit."""
    start = time.perf_counter()
    result = subprocess.run(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, argv, stderr=result.stderr)
    return elapsed


def _first_line(err: subprocess.CalledProcessError) -> str:
    text = (err.stderr or b"").decode(errors="replace").strip().splitlines()
    detail = next((line for line in reversed(text) if line.strip()), "")
    return f"exit {err.returncode}: {detail[:70]}"


def run_paired(
    cases: Sequence[Case],
    identity: Identity,
    env: Mapping[str, str],
    runs: int,
    warmup: int = 1,
    cwd: Optional[str] = None,
) -> None:
    """Time every case `runs` times, alternating podpy and podman (who goes first alternates).

    A side that fails its warm-up is marked "not available" and not timed further.
    """
    for case in cases:
        for _ in range(warmup):
            for side in ("podpy", "podman"):
                argv = getattr(case, side)
                if argv is None or getattr(case, f"{side}_error"):
                    continue
                try:
                    timed(identity.wrap(argv), env, cwd)
                except subprocess.CalledProcessError as err:
                    setattr(case, f"{side}_error", _first_line(err))
        for round_number in range(runs):
            order = ("podpy", "podman") if round_number % 2 == 0 else ("podman", "podpy")
            for side in order:
                argv = getattr(case, side)
                if argv is None or getattr(case, f"{side}_error"):
                    continue
                try:
                    getattr(case, f"{side}_times").append(timed(identity.wrap(argv), env, cwd))
                except subprocess.CalledProcessError as err:
                    setattr(case, f"{side}_error", _first_line(err))


def median_ms(times: Sequence[float]) -> Optional[float]:
    return statistics.median(times) * 1000 if times else None


def verdict(case: Case) -> str:
    mine, theirs = median_ms(case.podpy_times), median_ms(case.podman_times)
    if mine is None:
        return "-"
    checks = []
    if case.max_seconds is not None:
        ok = mine <= case.max_seconds * 1000
        checks.append(f"{'ok' if ok else 'MISS'} (<{case.max_seconds * 1000:.0f} ms)")
    if case.max_ratio is not None and theirs:
        ok = mine / theirs <= case.max_ratio
        checks.append(f"{'ok' if ok else 'MISS'} (ratio <={case.max_ratio:g})")
    return ", ".join(checks) or "-"


def format_table(cases: Sequence[Case], runs: int) -> str:
    """Medians in ms, podpy/podman ratio and target verdicts as an aligned plain-text table."""
    header = ["command", "podpy ms", "podman ms", "podpy/podman", "target"]
    rows = [header]
    for case in cases:
        mine, theirs = median_ms(case.podpy_times), median_ms(case.podman_times)
        mine_text = f"{mine:.1f}" if mine is not None else "not available"
        if case.podman is None:
            theirs_text = "-"
        else:
            theirs_text = f"{theirs:.1f}" if theirs is not None else "not available"
        ratio = f"{mine / theirs:.2f}" if mine is not None and theirs else "-"
        rows.append([case.label, mine_text, theirs_text, ratio, verdict(case)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"medians of {runs} paired runs"]
    for case in cases:
        for side in ("podpy", "podman"):
            error = getattr(case, f"{side}_error")
            if error:
                notes.append(f"{case.label}: {side} not available ({error})")
    return "\n".join(lines + [""] + notes)


class Scratch:
    """A private temp dir (readable by the benchmark user) removed with its mounts afterwards."""

    def __init__(self, identity: Identity, prefix: str = "podpy-bench-"):
        self.identity = identity
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self.path.chmod(0o755)

    def subdir(self, name: str, mode: int = 0o755) -> str:
        path = self.path / name
        path.mkdir(mode=mode)
        if self.identity.user is not None:
            os.chown(path, self.identity.uid, self.identity.gid)
        return str(path)

    def cleanup(self) -> None:
        prefix = str(self.path)
        with open("/proc/self/mountinfo") as mounts:
            points = [line.split()[4] for line in mounts]
        for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)


def stop_pause_process(runtime_dir: str) -> None:
    """Rootless podman leaves a pause process holding its namespaces; end exactly that pid."""
    pid_file = Path(runtime_dir) / "libpod" / "tmp" / "pause.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 9)
    except OSError:
        pass


def cases_json(cases: Sequence[Case]) -> Dict[str, Dict[str, object]]:
    """Per-case medians, raw times and errors: what every benchmark's --json writes."""
    return {
        c.label: {
            "podpy_ms": median_ms(c.podpy_times),
            "podman_ms": median_ms(c.podman_times),
            "podpy_times": c.podpy_times,
            "podman_times": c.podman_times,
            "podpy_error": c.podpy_error,
            "podman_error": c.podman_error,
        }
        for c in cases
    }


def require_pyz(parser: argparse.ArgumentParser, path: str, root_because: str = "") -> str:
    """The zipapp's absolute path, or a usage error; with root_because, also require root."""
    pyz = os.path.abspath(path)
    if not os.path.isfile(pyz):
        parser.error(f"{pyz} does not exist; build it with: python3 build_zipapp.py")
    if root_because and os.geteuid() != 0:
        parser.error(f"run as root ({root_because})")
    return pyz
