#!/usr/bin/env python3
"""Container lifecycle benchmark: podpy against podman on the same busybox image, side by side.

Rows (medians of paired runs, both sides with `--network none` so only the lifecycle is
compared): `run --rm IMG true` (target: half of podman's time), the same with podpy handing
its bundle to runc (`--runtime runc`, no target), the same on each tool's
default network (no target: root is podpy0 against netavark, rootless slirp4netns on both
sides), `run -d IMG sleep` +
`rm -f`, `ps -a` with N created (not started) containers, `exec CTR true`; then the total
and per-container RSS (VmRSS) of the monitors of M detached `sleep` containers against as
many conmon processes. Both sides pull the test busybox image from a local docker-registry
started here (tests/integration/registry). Everything lives in a private scratch dir,
removed afterwards. Root, or rootless via --user.

    python3 build_zipapp.py && python3 bench/lifecycle.py [--runs 10] [--user NAME] [--no-podman]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent, HERE.parent / "tests", HERE.parent / "tests" / "integration"):
    sys.path.insert(0, str(_path))

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


class Side:
    """One tool (podpy or podman) with its private store, run as the bench identity."""

    def __init__(
        self,
        name: str,
        base: List[str],
        run_extra: List[str],
        identity: Identity,
        env: Dict[str, str],
        cwd: str,
    ):
        self.name = name
        self.base = base
        self.run_extra = run_extra  # flags every run/create gets (network, ulimits)
        self.identity = identity
        self.env = env
        self.cwd = cwd

    def argv(self, *args: str) -> List[str]:
        return [*self.base, *args]

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            self.identity.wrap(self.argv(*args)),
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{self.name} {' '.join(args[:3])}... exited {result.returncode}: "
                f"{result.stderr.strip()[-300:]}"
            )
        return result.stdout

    def shell(self, script: str) -> List[str]:
        """`sh -c` running a pipeline of this tool's commands ($P expands to the tool)."""
        tool = " ".join(_quote(a) for a in self.base)
        return ["sh", "-c", script.replace("$P", tool)]


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _without_network(extra: List[str]) -> List[str]:
    out, skip = [], False
    for arg in extra:
        if skip:
            skip = False
        elif arg == "--network":
            skip = True
        else:
            out.append(arg)
    return out


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def monitor_memory(side: Side, image: str, count: int) -> Tuple[int, List[int]]:
    """Start `count` detached sleeps; total monitor RSS (KiB) and the monitor pids."""
    ids = [
        side.run("run", "-d", *side.run_extra, image, "sleep", "600").strip().splitlines()[-1]
        for _ in range(count)
    ]
    pids = [
        int(side.run("inspect", "--format", "{{.State.ConmonPid}}", cid).strip()) for cid in ids
    ]
    total = sum(vm_rss_kib(pid) for pid in pids)
    return total, pids


def remove_all(side: Side) -> None:
    side.run("rm", "-af", "-t", "0", check=False)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pyz", default=str(DEFAULT_PYZ), help="the zipapp (default dist/)")
    parser.add_argument("--python", default=SYSTEM_PYTHON, help="interpreter for the zipapp")
    parser.add_argument("--runs", type=int, default=10, help="paired runs per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--user", help="run everything as this non-root user (setpriv)")
    parser.add_argument("--containers", type=int, default=100, help="containers for `ps -a`")
    parser.add_argument("--monitors", type=int, default=20, help="detached containers for RSS")
    parser.add_argument("--no-podman", action="store_true", help="time podpy alone")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    pyz = require_pyz(parser, args.pyz, "it starts a registry and switches to the --user")
    podman = None if args.no_podman else shutil.which("podman")

    import images
    from registry import push_oci_layout, start_registry

    identity = Identity.named(args.user)
    scratch = Scratch(identity)
    registry = None
    runtime_dir = ""
    sides: List[Side] = []
    cases: List[Case] = []
    memory: Dict[str, Tuple[int, int]] = {}
    try:
        home = scratch.subdir("home") if identity.user else scratch.subdir("root-home")
        identity.home = home
        runtime_dir = scratch.subdir("xdg-run", mode=0o700)
        env = identity.env(runtime_dir)
        local_pyz = os.path.join(scratch.subdir("bin"), "podpy.pyz")
        shutil.copy2(pyz, local_pyz)
        os.chmod(local_pyz, 0o755)

        layout = images.build_busybox_image(Path(tempfile.mkdtemp(dir=scratch.path)) / "oci")
        registry = start_registry(Path(scratch.subdir("registry")))
        image = push_oci_layout(registry, layout.oci_ref, "busybox:latest")

        podpy_base = [args.python, "-I", local_pyz]
        if identity.user is None:
            podpy_base += [
                "--root",
                scratch.subdir("podpy-root"),
                "--runroot",
                scratch.subdir("podpy-run"),
            ]
        sides.append(Side("podpy", podpy_base, ["--network", "none"], identity, env, home))
        if podman:
            podman_base = [
                podman,
                "--storage-driver",
                "overlay",
                "--root",
                scratch.subdir("podman-root"),
                "--runroot",
                scratch.subdir("podman-run", mode=0o700),
            ]
            extra = ["--network", "none"]
            if identity.user is None:
                # Root podman keeps its "alive" file in /run/libpod: keep ours private too.
                podman_base += ["--tmpdir", scratch.subdir("podman-tmp", mode=0o700)]
                # Root here lacks CAP_SYS_RESOURCE: podman's default rlimits fail under conmon.
                extra += ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
            sides.append(Side("podman", podman_base, extra, identity, env, home))
        for side in sides:
            side.run("pull", "-q", "--tls-verify=false", image)

        def both(label: str, make, max_ratio: Optional[float] = 1.0) -> Case:
            argvs = [make(side) for side in sides]
            return Case(label, argvs[0], argvs[1] if len(argvs) > 1 else None, max_ratio=max_ratio)

        # Issue 4's target for `run --rm true`: at most half of podman's time (runc).
        cases.append(
            both(
                "run --rm IMG true",
                lambda s: s.argv("run", "--rm", *s.run_extra, image, "true"),
                max_ratio=0.5,
            )
        )
        # podpy handing the same bundle to runc (podman uses runc throughout), no target.
        cases.append(
            both(
                "run --rm IMG true (podpy: --runtime runc)",
                lambda s: s.argv(
                    "run", "--rm", *(["--runtime", "runc"] if s.name == "podpy" else []),
                    *s.run_extra, image, "true",
                ),  # fmt: skip
                max_ratio=None,
            )
        )
        # Each tool's default network, no target: root gets podpy0 against netavark's podman0
        # (bridge, veth, NAT), rootless slirp4netns on both sides.
        cases.append(
            both(
                "run --rm IMG true (default net)",
                lambda s: s.argv("run", "--rm", *_without_network(s.run_extra), image, "true"),
                max_ratio=None,
            )
        )
        run_extra = {s.name: " ".join(_quote(a) for a in s.run_extra) for s in sides}
        cases.append(
            both(
                "run -d IMG sleep + rm -f",
                lambda s: s.shell(
                    f"id=$($P run -d {run_extra[s.name]} {image} sleep 600) && "
                    "$P rm -f -t 0 $id >/dev/null"
                ),
            )
        )
        run_paired(cases, identity, env, args.runs, args.warmup, cwd=home)

        # exec: one running container per side
        for side in sides:
            side.run("run", "-d", "--name", "benchexec", *side.run_extra, image, "sleep", "600")
        exec_case = both("exec CTR true", lambda s: s.argv("exec", "benchexec", "true"))
        run_paired([exec_case], identity, env, args.runs, args.warmup, cwd=home)
        cases.append(exec_case)
        for side in sides:
            remove_all(side)

        # ps -a with N created containers
        for side in sides:
            for _ in range(args.containers):
                side.run("create", *side.run_extra, image, "true")
        ps_case = both(f"ps -a ({args.containers} containers)", lambda s: s.argv("ps", "-a"))
        run_paired([ps_case], identity, env, args.runs, args.warmup, cwd=home)
        cases.append(ps_case)
        for side in sides:
            remove_all(side)

        for side in sides:
            total, pids = monitor_memory(side, image, args.monitors)
            memory[side.name] = (total, len(pids))
            remove_all(side)
    finally:
        for side in sides:
            try:
                remove_all(side)
            except Exception:
                pass
        if podman and identity.user and runtime_dir:
            stop_pause_process(runtime_dir)
        if registry is not None:
            registry.stop()
        scratch.cleanup()

    who = f"as {identity.user} (rootless)" if identity.user else "as root"
    print(f"container lifecycle: podpy vs podman (runc, conmon), --network none unless marked, {who}")
    print(format_table(cases, args.runs))
    print()
    print(f"monitor memory, {args.monitors} detached `sleep` containers (VmRSS):")
    for name, (total, count) in memory.items():
        label = "podpy monitors" if name == "podpy" else "conmon"
        print(
            f"  {label:15s} total {total / 1024:7.1f} MiB, {total / 1024 / max(count, 1):5.2f} "
            "MiB per container"
        )
    if "podpy" in memory and "podman" in memory and memory["podman"][0]:
        print(f"  ratio podpy/conmon: {memory['podpy'][0] / memory['podman'][0]:.2f}")
    if args.json:
        raw = {
            "cases": cases_json(cases),
            "monitor_rss_kib": {k: v[0] for k, v in memory.items()},
        }
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
