#!/usr/bin/env python3
"""Build dist/podpy.pyz: podpy + netns_helpers + the pure-Python wheels pinned in requirements.lock.

Steps: stage the locked wheels (cached per lock hash) -> refuse compiled modules -> copy our
packages -> byte-compile for this interpreter -> deterministic zip with a shebang -> smoke test.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
LOCK = REPO / "requirements.lock"
OUR_PACKAGES = ("podpy", "netns_helpers")
# Fixed timestamp so the same inputs give the same archive (SOURCE_DATE_EPOCH wins).
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
# Trimmed from the vendored tree: never imported at run time, and they cost size.
PRUNE_DIRS = {"__pycache__", "tests", "test", "testing"}
PRUNE_SUFFIXES = (".pyi", ".pyc", ".pyo", ".c", ".h", ".pxd", ".pyx")

ENTRY = """# podpy zipapp bootstrap: run the role dispatcher.
import sys
from podpy.__main__ import main
sys.exit(main())
"""


class BuildError(Exception):
    pass


def lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]


def stage_dependencies(cache_root: Path) -> Path:
    """pip-install the locked pure wheels once per lock content; reuse the staged tree after."""
    stage = cache_root / f"deps-{lock_digest()}"
    if (stage / ".complete").exists():
        return stage
    tmp = Path(tempfile.mkdtemp(prefix="deps-", dir=cache_root))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "any",
        "--implementation",
        "py",
        "--python-version",
        "3.9",
        "--abi",
        "none",
        "--target",
        str(tmp),
        "-r",
        str(LOCK),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"pip could not stage the locked wheels:\n{result.stderr.strip()}")
    (tmp / ".complete").write_text("ok\n")
    if stage.exists():
        shutil.rmtree(stage)
    os.rename(tmp, stage)
    return stage


def check_pure(tree: Path) -> None:
    compiled = [
        str(p.relative_to(tree)) for p in tree.rglob("*") if p.name.endswith(COMPILED_SUFFIXES)
    ]
    if compiled:
        raise BuildError(
            "compiled modules cannot load from a zipapp: "
            + ", ".join(sorted(compiled))
            + " (pin a version with a py3-none-any wheel in requirements.lock)"
        )


def copy_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in PRUNE_DIRS for part in rel.parts) or path.name.endswith(PRUNE_SUFFIXES):
            continue
        if ".dist-info" in rel.parts[0] and path.name not in ("METADATA", "LICENSE", "LICENSE.txt"):
            continue
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def assemble(stage: Path, app_dir: Path) -> None:
    for item in sorted(stage.iterdir()):
        if item.name in (".complete", "bin"):
            continue
        if item.is_dir():
            copy_tree(item, app_dir / item.name)
        elif item.suffix == ".py":
            shutil.copy2(item, app_dir / item.name)
    for package in OUR_PACKAGES:
        copy_tree(REPO / package, app_dir / package)
    (app_dir / "__main__.py").write_text(ENTRY)
    check_pure(app_dir)


def compile_tree(app_dir: Path) -> None:
    """Legacy-location .pyc next to each .py, unchecked: a zip's mtimes never change.

    Only this interpreter's bytecode is included; other Python versions fall back to source.
    """
    ok = compileall.compile_dir(
        str(app_dir),
        quiet=1,
        legacy=True,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise BuildError("byte-compiling the staged tree failed (a syntax error?)")


def write_zip(app_dir: Path, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    stamp = __import__("time").gmtime(EPOCH)[:6]
    with open(tmp, "wb") as raw:
        raw.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for path in sorted(app_dir.rglob("*")):
                if path.is_dir():
                    continue
                info = zipfile.ZipInfo(str(path.relative_to(app_dir)), date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
        raw.flush()
        os.fsync(raw.fileno())
    os.chmod(tmp, 0o755)
    os.replace(tmp, output)


def smoke_test(output: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-I", str(output), "--version"], capture_output=True, text=True
    )
    if result.returncode != 0 or "podpy version" not in result.stdout:
        raise BuildError(
            f"the built zipapp does not start: {result.stderr.strip() or result.stdout}"
        )


def build(output: Path, cache_root: Path) -> Path:
    cache_root.mkdir(parents=True, exist_ok=True)
    stage = stage_dependencies(cache_root)
    check_pure(stage)
    with tempfile.TemporaryDirectory(prefix="podpy-app-") as tmp:
        app_dir = Path(tmp) / "app"
        app_dir.mkdir()
        assemble(stage, app_dir)
        compile_tree(app_dir)
        write_zip(app_dir, output)
    smoke_test(output)
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(REPO / "dist" / "podpy.pyz"))
    parser.add_argument(
        "--cache",
        default=os.environ.get("PODPY_BUILD_CACHE", str(REPO / "build" / "cache")),
        help="where staged wheels are kept between builds",
    )
    args = parser.parse_args()
    try:
        out = build(Path(args.output).resolve(), Path(args.cache).resolve())
    except BuildError as err:
        print(f"build_zipapp: error: {err}", file=sys.stderr)
        return 1
    size = out.stat().st_size
    print(f"built {out} ({size / 1024 / 1024:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
