#!/usr/bin/env python3
"""Run-`true` benchmark: podpy's built-in runtime on a busybox bundle against `podman run --rm busybox true`.

Rows: the runtime through its Python API (what the monitor/engine call, `python3 -I -S`),
`podpy oci run` through the CLI, runc on the same bundle, and `podman run --rm` (runc). The
full `podpy run --rm busybox true` (storage + monitor) belongs to the lifecycle issue; these
rows are its runtime share. podman pulls the test busybox image from an OCI layout built by
tests/images.py into private storage first. Rootless with --user NAME (needs /etc/subuid).

    python3 build_zipapp.py && python3 bench/run_true.py [--runs 15] [--user NAME] [--no-podman]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

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

# What the lifecycle engine will call: create+start+wait+delete without typer.
API_RUN = (
    "import sys; sys.path.insert(0, sys.argv[1]);"
    "from podpy.rootless import become_root_in_userns; become_root_in_userns();"
    "from podpy.runtime.builtin import BuiltinRuntime;"
    "sys.exit(BuiltinRuntime(sys.argv[2]).run(sys.argv[3], 'benchapi'))"
)


def build_bundle(scratch: Scratch, identity: Identity) -> str:
    """A busybox rootfs + config.json from podpy's spec generator, owned by the bench user."""
    from podpy.spec.generate import RunOptions, generate, write_bundle

    bundle = Path(scratch.subdir("bundle"))
    rootfs = bundle / "rootfs" / "bin"
    rootfs.mkdir(parents=True)
    shutil.copy2("/bin/busybox", rootfs / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout
    for applet in applets.split():
        if applet != "busybox":
            os.symlink("busybox", rootfs / applet)
    options = RunOptions(
        container_id="bench0123456789",
        rootfs=str(bundle / "rootfs"),
        command=["true"],
        rootless=identity.user is not None,
        network_files_dir=str(bundle / "userdata"),
        # One level below the root: `delete` removes it, the bench leaves no cgroup behind.
        cgroups_path=f"/podpybench-{os.getpid()}",
    )
    write_bundle(str(bundle), generate({"config": {"Env": ["PATH=/bin"]}}, options))
    if identity.user is not None:
        for dirpath, dirnames, filenames in os.walk(bundle):
            os.lchown(dirpath, identity.uid, identity.gid)
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), identity.uid, identity.gid)
    return str(bundle)


def podman_image(
    scratch: Scratch, identity: Identity, env: dict, podman: str, store: List[str]
) -> bool:
    """Load the test busybox image into podman's private store; False if that is impossible."""
    try:
        import images
    except ImportError:
        return False
    layout = Path(scratch.subdir("oci-busybox"))
    shutil.rmtree(layout)
    images.build_busybox_image(layout)
    for dirpath, _dirnames, filenames in os.walk(layout):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    result = subprocess.run(
        identity.wrap([podman, *store, "pull", "-q", f"oci:{layout}:latest"]),
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return False
    image_id = result.stdout.strip().splitlines()[-1]
    tag = subprocess.run(
        identity.wrap([podman, *store, "tag", image_id, "localhost/busybox:latest"]),
        env=env,
        capture_output=True,
    )
    return tag.returncode == 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pyz", default=str(DEFAULT_PYZ), help="the zipapp (default dist/)")
    parser.add_argument("--python", default=SYSTEM_PYTHON, help="interpreter for the zipapp")
    parser.add_argument("--runs", type=int, default=15, help="paired runs per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--user", help="run everything as this non-root user (setpriv)")
    parser.add_argument("--no-podman", action="store_true", help="time podpy (and runc) alone")
    parser.add_argument("--json", metavar="FILE", help="also write raw times as JSON")
    args = parser.parse_args(argv)

    pyz = require_pyz(parser, args.pyz, "it builds bundles for, and switches to, the --user")
    podman = None if args.no_podman else shutil.which("podman")
    runc = shutil.which("runc")

    identity = Identity.named(args.user)
    scratch = Scratch(identity)
    runtime_dir = ""
    cases: List[Case] = []
    try:
        home = scratch.subdir("home") if identity.user else identity.home
        if identity.user:
            identity.home = home
        runtime_dir = scratch.subdir("xdg-run", mode=0o700)
        env = identity.env(runtime_dir)
        local_pyz = os.path.join(scratch.subdir("bin"), "podpy.pyz")
        shutil.copy2(pyz, local_pyz)
        os.chmod(local_pyz, 0o755)
        bundle = build_bundle(scratch, identity)
        state = scratch.subdir("oci-state", mode=0o700)
        runc_state = scratch.subdir("runc-state", mode=0o700)
        enter = [args.python, "-I", local_pyz, "unshare"] if identity.user else []

        podman_argv = None
        if podman:
            store = [
                "--root",
                scratch.subdir("podman-root"),
                "--runroot",
                scratch.subdir("podman-run"),
            ]
            if podman_image(scratch, identity, env, podman, store):
                podman_argv = [podman, *store, "run", "--rm", "--runtime", "runc"]
                # podpy has no networking yet (another issue): compare without it on both sides.
                podman_argv += ["--network", "none"]
                if identity.user is None:
                    # Root here lacks CAP_SYS_RESOURCE: podman's default rlimits (1048576) fail,
                    # and so do the host's hard limits under conmon; lower ones always work.
                    podman_argv += ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
                podman_argv += ["localhost/busybox:latest", "true"]
        api = [args.python, "-I", "-S", "-c", API_RUN, local_pyz, state, bundle]
        cli = [
            args.python,
            "-I",
            local_pyz,
            "oci",
            "--root",
            state,
            "run",
            "--bundle",
            bundle,
            "benchcli",
        ]
        cases.append(Case("runtime API: run true", api, podman_argv, max_ratio=0.5))
        cases.append(Case("podpy oci run (CLI)", cli, podman_argv, max_ratio=0.5))
        if runc:
            runc_argv = [*enter, runc, "--root", runc_state, "run", "--bundle", bundle, "benchrunc"]
            cases.append(Case("runc run (same bundle)", runc_argv, podman_argv))
        run_paired(cases, identity, env, args.runs, args.warmup, cwd=home)
    finally:
        if podman and identity.user and runtime_dir:
            stop_pause_process(runtime_dir)
        scratch.cleanup()

    who = f"as {identity.user} (rootless)" if identity.user else "as root"
    print(f"run `true`: podpy's runtime vs podman run --rm busybox true (runc), {who}")
    print(format_table(cases, args.runs))
    if args.json:
        raw = cases_json(cases)
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
