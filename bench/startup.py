#!/usr/bin/env python3
"""Start-up benchmark: `--version`, `version`, `info`, `ps -a` of podpy.pyz against podman.

Both sides get private, empty storage (--root/--runroot in a temp dir), so `ps -a` lists
nothing and `info` reads an empty store. Runs are paired (podpy and podman alternate).

    python3 build_zipapp.py && python3 bench/startup.py [--runs 15] [--user NAME] [--no-podman]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_PYZ,
    SYSTEM_PYTHON,
    Case,
    Identity,
    Scratch,
    cases_json,
    format_table,
    require_pyz,
    run_paired,
    stop_pause_process,
)

VERSION_BUDGET_SECONDS = 0.060


def build_cases(pyz: str, python: str, scratch: Scratch, podman: Optional[str]) -> List[Case]:
    podpy = [python, "-I", pyz]
    podpy_store = ["--root", scratch.subdir("podpy-root"), "--runroot", scratch.subdir("podpy-run")]
    podman_store: List[str] = []
    if podman:
        podman_store = [
            "--root",
            scratch.subdir("podman-root"),
            "--runroot",
            scratch.subdir("podman-run"),
        ]

    def pair(args: List[str], store: bool) -> tuple:
        mine = podpy + (podpy_store if store else []) + args
        theirs = [podman] + (podman_store if store else []) + args if podman else None
        return mine, theirs

    cases = []
    for label, args, store, budget, ratio in (
        ("--version", ["--version"], False, VERSION_BUDGET_SECONDS, None),
        ("version", ["version"], False, None, None),
        ("info", ["info"], True, None, None),
        ("ps -a", ["ps", "-a"], True, None, 1.0),
    ):
        mine, theirs = pair(args, store)
        cases.append(Case(label, mine, theirs, max_seconds=budget, max_ratio=ratio))
    return cases


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pyz", default=str(DEFAULT_PYZ), help="the zipapp (default dist/)")
    parser.add_argument("--python", default=SYSTEM_PYTHON, help="interpreter for the zipapp")
    parser.add_argument("--runs", type=int, default=15, help="paired runs per command")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--user", help="run both sides as this non-root user (setpriv)")
    parser.add_argument("--no-podman", action="store_true", help="time podpy alone")
    parser.add_argument("--json", metavar="FILE", help="also write raw times as JSON")
    args = parser.parse_args(argv)

    pyz = require_pyz(parser, args.pyz)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.user and os.geteuid() != 0:
        parser.error("--user needs root (it switches identity with setpriv)")
    podman = None if args.no_podman else shutil.which("podman")

    identity = Identity.named(args.user)
    scratch = Scratch(identity)
    runtime_dir = ""
    try:
        home = scratch.subdir("home") if identity.user else identity.home
        if identity.user:
            identity.home = home
        runtime_dir = scratch.subdir("xdg-run", mode=0o700)
        env = identity.env(runtime_dir)
        # The zipapp must be readable by the benchmark user: copy it into the scratch dir.
        local_pyz = os.path.join(scratch.subdir("bin"), "podpy.pyz")
        shutil.copy2(pyz, local_pyz)
        os.chmod(local_pyz, 0o755)
        cases = build_cases(local_pyz, args.python, scratch, podman)
        run_paired(cases, identity, env, args.runs, args.warmup, cwd=home)
    finally:
        if podman and identity.user and runtime_dir:
            stop_pause_process(runtime_dir)
        scratch.cleanup()

    who = f"as {identity.user}" if identity.user else "as root"
    print(f"podpy start-up vs podman, {who}, python {args.python}, {pyz}")
    print(format_table(cases, args.runs))
    if args.json:
        raw = cases_json(cases)
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
