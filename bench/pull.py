#!/usr/bin/env python3
"""Image pull benchmark: podpy against podman pulling the same images from a local registry.

Two images are built here (deterministic, tests/images.py) and pushed to a docker-registry
started for the run: "big" (busybox + LAYERS layers of incompressible random files, ~100 MiB)
and "manyfiles" (busybox + 5 layers holding ~20k small files). Each timed round pulls into an
empty store: fresh `--root/--runroot` dirs per pull, podman with the overlay driver, both on
a tmpfs mounted here (as root; owned by the --user when rootless) with TMPDIR on it too, so
podman's blob staging (/var/tmp by default) does not hit the disk either. The two tools
alternate (who goes first alternates), medians and podpy/podman ratios are printed.

Then one extra pull per image measures memory: the peak RSS of the largest single process
(GNU time's %M) and the peaks of the summed RSS and PSS of the whole process tree (polled
from /proc every 20 ms); the target is under 100 MiB whatever the image size.

    python3 build_zipapp.py && python3 bench/pull.py [--runs 5] [--user NAME] [--no-podman]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
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
    stop_pause_process,
    timed,
)

RSS_TARGET_MIB = 100
POLL_SECONDS = 0.02


def random_layers(total_mib: int, layers: int, files_per_layer: int, seed: int) -> list:
    """`layers` layers of incompressible files (fixed seed: same digests every run)."""
    import images

    rng = random.Random(seed)
    file_size = max(1, total_mib * 1024 * 1024 // (layers * files_per_layer))
    result = []
    for layer in range(layers):
        files = {
            f"blob{layer}/file{index}.bin": rng.getrandbits(file_size * 8).to_bytes(
                file_size, "little"
            )
            for index in range(files_per_layer)
        }
        result.append(images.files_layer(files, created_by=f"COPY random data {layer}"))
    return result


def small_file_layers(total_files: int, layers: int) -> list:
    """`layers` layers of 64-byte files, 1000 per directory, distinct paths per layer."""
    import images

    per_layer = total_files // layers
    result = []
    for layer in range(layers):
        files = {
            f"many{layer}/d{index // 1000:03d}/f{index:06d}": f"file {layer}/{index}\n".encode().ljust(
                64, b"."
            )
            for index in range(per_layer)
        }
        result.append(images.files_layer(files, created_by=f"RUN make {per_layer} files"))
    return result


def build_images(layout: Path, big_mib: int, big_layers: int, small_files: int) -> Dict[str, str]:
    """Write both images into one OCI layout; returns {label: oci_ref}."""
    import images

    base = images.busybox_layer()
    big = images.write_oci_layout(
        layout, [base, *random_layers(big_mib, big_layers, 4, seed=20261127)], tag="big"
    )
    many = images.write_oci_layout(layout, [base, *small_file_layers(small_files, 5)], tag="many")
    return {"big": big.oci_ref, "many": many.oci_ref}


def blob_mib(layout: Path, oci_ref: str) -> float:
    """Compressed size of an image's layers (what goes over the wire)."""
    tag = oci_ref.rsplit(":", 1)[1]
    index = json.loads((layout / "index.json").read_text())
    entry = next(
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
    manifest_path = layout / "blobs" / "sha256" / entry["digest"].split(":", 1)[1]
    manifest = json.loads(manifest_path.read_text())
    return sum(layer["size"] for layer in manifest["layers"]) / (1024 * 1024)


# --- process-tree memory -------------------------------------------------------------------


def _children_map() -> Dict[int, List[int]]:
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces and parens: the ppid is the 2nd field after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _tree(root: int) -> List[int]:
    children = _children_map()
    pids, pending = [], [root]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        pending.extend(children.get(pid, ()))
    return pids


def _status_kib(pid: int, keys: Tuple[str, ...]) -> Dict[str, int]:
    values: Dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name = line.split(":", 1)[0]
                if name in keys:
                    values[name] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return values


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (the interpreter, forked workers) counted once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def measure_memory(argv: List[str], env: Dict[str, str], cwd: str) -> Dict[str, object]:
    """Run once: peak RSS of the largest process, peak summed RSS and PSS of the whole tree.

    The largest-process figure comes from GNU time (`%M`, the wait4 ru_maxrss of the command
    and the descendants it reaped): measured through a fresh small parent, because a forked
    child inherits its parent's RSS high-water mark and this process holds the test images.
    """
    with (
        tempfile.NamedTemporaryFile("r", prefix="maxrss-") as max_rss_file,
        tempfile.TemporaryFile("w+b") as stderr,
    ):
        timed_argv = ["/usr/bin/time", "-f", "%M", "-o", max_rss_file.name, *argv]
        start = time.perf_counter()
        process = subprocess.Popen(
            timed_argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        peak_rss_kib = peak_pss_kib = 0
        peak_by_process: Dict[int, Tuple[str, int]] = {}
        while process.poll() is None:
            rss_total = pss_total = 0
            for pid in _tree(process.pid)[1:]:  # [0] is GNU time itself
                values = _status_kib(pid, ("VmRSS", "VmHWM"))
                rss_total += values.get("VmRSS", 0)
                pss_total += _pss_kib(pid)
                if "VmHWM" in values:
                    try:
                        comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    except OSError:
                        comm = "?"
                    previous = peak_by_process.get(pid, (comm, 0))[1]
                    peak_by_process[pid] = (comm, max(previous, values["VmHWM"]))
            peak_rss_kib = max(peak_rss_kib, rss_total)
            peak_pss_kib = max(peak_pss_kib, pss_total)
            time.sleep(POLL_SECONDS)
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            stderr.seek(0)
            detail = stderr.read().decode(errors="replace").strip()[-300:]
            raise RuntimeError(f"{argv[-1]} exited {process.returncode}: {detail}")
        max_single_kib = int(max_rss_file.read().split()[-1])
    top = sorted(peak_by_process.values(), key=lambda item: -item[1])[:4]
    return {
        "seconds": elapsed,
        "max_single_kib": max_single_kib,
        "peak_tree_rss_kib": peak_rss_kib,
        "peak_tree_pss_kib": peak_pss_kib,
        "processes_seen": len(peak_by_process),
        "top_processes": [f"{comm} {kib / 1024:.1f}" for comm, kib in top],
    }


# --- stores ---------------------------------------------------------------------------------


class Store:
    """Fresh --root/--runroot (and TMPDIR) for one pull, under the tmpfs or scratch dir."""

    counter = 0

    def __init__(self, base: Path, identity: Identity, side: str):
        Store.counter += 1
        self.path = base / f"{side}-{Store.counter}"
        self.path.mkdir(mode=0o755)
        for name in ("root", "run", "tmp"):
            (self.path / name).mkdir(mode=0o700)
        if identity.user is not None:
            for path in (self.path, *(self.path / n for n in ("root", "run", "tmp"))):
                os.chown(path, identity.uid, identity.gid)

    def flags(self) -> List[str]:
        return ["--root", str(self.path / "root"), "--runroot", str(self.path / "run")]

    def env(self, base: Dict[str, str]) -> Dict[str, str]:
        # podman stages blobs in TMPDIR (default /var/tmp): keep that on the tmpfs too.
        return dict(base, TMPDIR=str(self.path / "tmp"))

    def remove(self) -> None:
        prefix = str(self.path)
        with open("/proc/self/mountinfo") as mounts:
            points = [line.split()[4] for line in mounts]
        for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)


def mount_tmpfs(path: Path, identity: Identity, size: str) -> bool:
    path.mkdir(exist_ok=True)
    options = f"size={size},mode=0755"
    if identity.user is not None:
        options += f",uid={identity.uid},gid={identity.gid}"
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "podpy-bench-pull", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(f"warning: tmpfs mount failed ({result.stderr.strip()}); using disk", file=sys.stderr)
        return False
    return True


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pyz", default=str(DEFAULT_PYZ), help="the zipapp (default dist/)")
    parser.add_argument("--python", default=SYSTEM_PYTHON, help="interpreter for the zipapp")
    parser.add_argument("--runs", type=int, default=5, help="paired pulls per image")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pulls first")
    parser.add_argument("--user", help="run everything as this non-root user (setpriv)")
    parser.add_argument("--big-mib", type=int, default=100, help="random data in the big image")
    parser.add_argument("--big-layers", type=int, default=5, help="random-data layers")
    parser.add_argument("--files", type=int, default=20000, help="small files (5 layers)")
    parser.add_argument("--no-tmpfs", action="store_true", help="stores on disk, not tmpfs")
    parser.add_argument("--tmpfs-size", default="4g", help="size of the tmpfs for the stores")
    parser.add_argument("--no-podman", action="store_true", help="time podpy alone")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    pyz = require_pyz(parser, args.pyz, "it starts a registry, mounts a tmpfs, switches to --user")
    podman = None if args.no_podman else shutil.which("podman")

    from registry import push_oci_layout, start_registry

    identity = Identity.named(args.user)
    scratch = Scratch(identity)
    registry = None
    runtime_dir = ""
    cases: List[Case] = []
    memory: Dict[str, Dict[str, object]] = {}
    sizes: Dict[str, float] = {}
    on_tmpfs = False
    try:
        identity.home = scratch.subdir("home")
        runtime_dir = scratch.subdir("xdg-run", mode=0o700)
        env = identity.env(runtime_dir)
        local_pyz = os.path.join(scratch.subdir("bin"), "podpy.pyz")
        shutil.copy2(pyz, local_pyz)
        os.chmod(local_pyz, 0o755)

        stores_dir = scratch.path / "stores"
        on_tmpfs = not args.no_tmpfs and mount_tmpfs(stores_dir, identity, args.tmpfs_size)
        if not on_tmpfs:
            stores_dir = Path(scratch.subdir("stores"))

        print("building images...", file=sys.stderr)
        layout = Path(tempfile.mkdtemp(dir=scratch.path)) / "oci"
        refs = build_images(layout, args.big_mib, args.big_layers, args.files)
        sizes = {label: blob_mib(layout, ref) for label, ref in refs.items()}
        registry = start_registry(Path(scratch.subdir("registry")))
        remote = {
            label: push_oci_layout(registry, ref, f"bench/{label}:latest")
            for label, ref in refs.items()
        }
        shutil.rmtree(layout.parent, ignore_errors=True)

        def podpy_argv(store: Store, image: str) -> List[str]:
            return [
                args.python,
                "-I",
                local_pyz,
                *store.flags(),
                "pull",
                "--tls-verify=false",
                image,
            ]

        def podman_argv(store: Store, image: str) -> List[str]:
            assert podman
            flags = ["--storage-driver", "overlay", *store.flags()]
            return [podman, *flags, "pull", "--tls-verify=false", image]

        def one_pull(side: str, image: str) -> float:
            store = Store(stores_dir, identity, side)
            try:
                make = podpy_argv if side == "podpy" else podman_argv
                return timed(identity.wrap(make(store, image)), store.env(env), identity.home)
            finally:
                store.remove()

        labels = {
            "big": f"pull big ({sizes['big']:.0f} MiB, {args.big_layers + 1} layers)",
            "many": f"pull manyfiles ({args.files} files, 6 layers)",
        }
        sides = ["podpy"] + (["podman"] if podman else [])
        for label, image in remote.items():
            case = Case(labels[label], ["podpy"], ["podman"] if podman else None, max_ratio=1.0)
            cases.append(case)
            for round_number in range(-args.warmup, args.runs):
                order = sides if round_number % 2 == 0 else list(reversed(sides))
                for side in order:
                    if getattr(case, f"{side}_error"):
                        continue
                    try:
                        seconds = one_pull(side, image)
                    except subprocess.CalledProcessError as err:
                        detail = (err.stderr or b"").decode(errors="replace").strip()
                        setattr(case, f"{side}_error", f"exit {err.returncode}: {detail[-150:]}")
                        continue
                    if round_number >= 0:
                        getattr(case, f"{side}_times").append(seconds)
                    print(f"  {label} {side}: {seconds:.2f} s", file=sys.stderr)

        for label, image in remote.items():
            for side in sides:
                store = Store(stores_dir, identity, side)
                make = podpy_argv if side == "podpy" else podman_argv
                try:
                    memory[f"{side} {label}"] = measure_memory(
                        identity.wrap(make(store, image)), store.env(env), identity.home
                    )
                except RuntimeError as err:
                    memory[f"{side} {label}"] = {"error": str(err)}
                finally:
                    store.remove()
    finally:
        if podman and identity.user and runtime_dir:
            stop_pause_process(runtime_dir)
        if registry is not None:
            registry.stop()
        scratch.cleanup()

    who = f"as {identity.user} (rootless)" if identity.user else "as root"
    where = "tmpfs" if on_tmpfs else "disk"
    print(f"image pull into an empty store: podpy vs podman (overlay), {who}, stores on {where}")
    if args.runs > 0:
        print(format_table(cases, args.runs))
    print()
    print(
        f"peak memory while pulling, MiB (polled every {POLL_SECONDS * 1000:.0f} ms): largest "
        "single process (GNU time %M), whole process tree summed RSS and summed PSS"
    )
    print(
        f"  target: podpy < {RSS_TARGET_MIB} MiB for the largest process and the tree's PSS "
        "(summed RSS counts the forked workers' shared interpreter pages once per process)"
    )
    print(f"  {'':14s} {'single':>7s} {'treeRSS':>7s} {'treePSS':>7s}")
    for name, values in memory.items():
        if "error" in values:
            print(f"  {name:14s} failed: {values['error']}")
            continue
        single, rss, pss = (
            int(values[key]) / 1024  # type: ignore[call-overload]
            for key in ("max_single_kib", "peak_tree_rss_kib", "peak_tree_pss_kib")
        )
        verdict = ""
        if name.startswith("podpy"):
            verdict = "ok" if max(single, pss) < RSS_TARGET_MIB else "MISS"
        print(
            f"  {name:14s} {single:7.1f} {rss:7.1f} {pss:7.1f}  {verdict:4s}  "
            f"({values['seconds']:.2f} s, {values['processes_seen']} processes; "
            f"top VmHWM: {', '.join(values['top_processes'])})"  # type: ignore[arg-type]
        )
    if args.json:
        raw = {
            "stores_on": where,
            "identity": identity.user or "root",
            "compressed_mib": sizes,
            "cases": cases_json(cases),
            "memory": memory,
        }
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
