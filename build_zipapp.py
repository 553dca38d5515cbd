#!/usr/bin/env python3
"""Build dist/podpy.pyz: podpy + netns_helpers + the pure-Python wheels pinned in requirements.lock.

Steps: check the lock is fully pinned -> stage the locked wheels (cached per lock hash) ->
refuse compiled modules -> check the lock covers every dependency -> copy our packages and
the locked ones podpy imports (not UNSHIPPED) -> prune unused pygments parts -> check nothing
imports an unshipped package -> byte-compile for this interpreter -> verify -> deterministic
zip with a shebang (our bytecode stored, the rest deflated) -> smoke test. Stdlib only, so
it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import hashlib
import importlib.util
import os
import pprint
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

REPO = Path(__file__).resolve().parent
LOCK = REPO / "requirements.lock"
OUR_PACKAGES = ("podpy", "netns_helpers")
SHEBANG = b"#!/usr/bin/env python3\n"
# The oldest Python the zipapp supports; wheels are resolved for it.
MIN_PYTHON = "3.9"
# Python versions the archive may run under: a dependency needed on any of them must be locked.
SUPPORTED_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
# Fixed timestamp so the same inputs give the same archive (SOURCE_DATE_EPOCH wins).
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
# Extension modules: zipimport cannot load them, so one slipping in means a broken archive.
COMPILED_RE = re.compile(r"\.(so(\.\d+)*|pyd|dylib|dll)$")
# Trimmed from the vendored tree: never imported at run time, and they cost size.
PRUNE_DIRS = {"__pycache__", "tests", "test", "testing"}
PRUNE_SUFFIXES = (".pyi", ".pyc", ".pyo", ".c", ".h", ".pxd", ".pyx")
DIST_INFO_KEEP = ("METADATA", "LICENSE", "LICENSE.txt", "LICENSE.md")

# Locked distributions whose code podpy never imports, left out of the archive. Every entry
# costs start-up time: the interpreter reads the zip's whole central directory (~6 us an
# entry, in zipimport's Python) before it runs a line. pyroute2 was 466 of 1191 entries and
# nothing imports it since bridges use netns_helpers/rtnl.py. It stays locked (the lock check
# sees the full dependency set; the dev venv's tests compare rtnl.py against it).
# check_unshipped_unused() fails the build if a shipped module imports one of these.
UNSHIPPED = ("pyroute2",)

# Bytecode of these is stored, not deflated: zipimport inflates every .pyc it loads, and a
# `run` loads ~0.8 MiB of podpy's (~3-5 ms of zlib at every start). Costs ~1.1 MiB of archive.
# Vendored bytecode (typer, rich, click: the slower typer CLI only) stays deflated.
STORED_PYC_PACKAGES = OUR_PACKAGES + ("__main__.pyc",)

# pygments is only reached through rich.syntax / rich.traceback (typer's rich help imports
# them). Rich renders tokens itself, so formatters are dead weight, and lexers beyond these
# only matter for syntax-highlighting other languages, which podpy never does.
PYGMENTS_KEEP_LEXER_MODULES = ("python", "special", "shell", "data", "configs", "diff")
PYGMENTS_KEEP_STYLES = ("default", "monokai")  # monokai is rich.syntax's default theme
PYGMENTS_KEEP_FORMATTERS = ("terminal", "terminal256", "other")
PYGMENTS_DROP_FILES = ("__main__.py", "cmdline.py", "sphinxext.py")

ENTRY = """# podpy zipapp bootstrap: run the role dispatcher.
import sys
from podpy.__main__ import main
sys.exit(main())
"""


class BuildError(Exception):
    """A build step failed; the message says what to fix."""


# ---------------------------------------------------------------------------------------------
# Versions, specifiers and markers: just enough of PEP 440/508 to check a lock (stdlib only).


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name (`Typing_Extensions` -> `typing-extensions`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release_tuple(version: str) -> Tuple[int, ...]:
    """The numeric release part of a version (`2.13.0rc1` -> (2, 13, 0)); enough for pins."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    if not match:
        raise BuildError(f"cannot parse version {version!r}")
    parts = [int(p) for p in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _compare(version: str, op: str, wanted: str) -> bool:
    if wanted.endswith(".*"):
        prefix = tuple(int(p) for p in wanted[:-2].split("."))
        head = tuple(int(p) for p in re.findall(r"\d+", version)[: len(prefix)])
        same = head == prefix
        return same if op == "==" else not same
    have, want = release_tuple(version), release_tuple(wanted)
    if op == "~=":
        stem = release_tuple(wanted.rsplit(".", 1)[0]) if "." in wanted else want
        return have >= want and have[: len(stem)] == stem
    return {
        "==": have == want,
        "===": version.strip() == wanted.strip(),
        "!=": have != want,
        ">=": have >= want,
        "<=": have <= want,
        ">": have > want,
        "<": have < want,
    }[op]


def specifier_admits(specifier: str, version: str) -> bool:
    """Whether `version` satisfies a comma-separated specifier like `>=2.13.0,<3.0.0`."""
    for clause in specifier.replace("(", "").replace(")", "").split(","):
        clause = clause.strip()
        if not clause:
            continue
        match = re.match(r"^(===|~=|==|!=|>=|<=|>|<)\s*(\S+)$", clause)
        if not match:
            raise BuildError(f"cannot parse version specifier {clause!r}")
        if not _compare(version, match.group(1), match.group(2)):
            return False
    return True


_MARKER_TOKEN = re.compile(
    r"\s*(?:(?P<str>'[^']*'|\"[^\"]*\")|(?P<op>===|==|!=|>=|<=|~=|>|<|not\s+in\b|in\b)"
    r"|(?P<paren>[()])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


def marker_holds(marker: str, env: Mapping[str, str]) -> bool:
    """Evaluate a PEP 508 environment marker (`python_version < "3.11" and extra == "x"`)."""
    tokens: List[Tuple[str, str]] = []
    pos = 0
    marker = marker.strip()
    while pos < len(marker):
        match = _MARKER_TOKEN.match(marker, pos)
        if not match or match.end() == pos:
            raise BuildError(f"cannot parse environment marker {marker!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, re.sub(r"\s+", " ", match.group(kind))))
        pos = match.end()
        while pos < len(marker) and marker[pos].isspace():
            pos += 1

    def value(token: Tuple[str, str]) -> str:
        kind, text = token
        if kind == "str":
            return text[1:-1]
        if text not in env:
            raise BuildError(f"unknown marker variable {text!r} in {marker!r}")
        return env[text]

    def compare(left: Tuple[str, str], op: str, right: Tuple[str, str]) -> bool:
        lhs, rhs = value(left), value(right)
        if op in ("in", "not in"):
            return (lhs in rhs) == (op == "in")
        versionish = {left[1], right[1]} & {"python_version", "python_full_version"}
        if versionish:
            return _compare(lhs, op, rhs)
        if op == "==":
            return lhs == rhs
        if op == "!=":
            return lhs != rhs
        raise BuildError(f"operator {op} needs a version on both sides in {marker!r}")

    index = 0

    def parse_or() -> bool:
        nonlocal index
        result = parse_and()
        while index < len(tokens) and tokens[index] == ("word", "or"):
            index += 1
            rhs = parse_and()
            result = result or rhs
        return result

    def parse_and() -> bool:
        nonlocal index
        result = parse_atom()
        while index < len(tokens) and tokens[index] == ("word", "and"):
            index += 1
            rhs = parse_atom()
            result = result and rhs
        return result

    def parse_atom() -> bool:
        nonlocal index
        if tokens[index] == ("paren", "("):
            index += 1
            result = parse_or()
            index += 1  # the closing paren
            return result
        left, op, right = tokens[index], tokens[index + 1][1], tokens[index + 2]
        index += 3
        return compare(left, op, right)

    try:
        result = parse_or()
    except IndexError as err:
        raise BuildError(f"truncated environment marker {marker!r}") from err
    if index != len(tokens):
        raise BuildError(f"cannot parse environment marker {marker!r}")
    return result


def marker_env(python_version: str, extra: str = "") -> Dict[str, str]:
    """The marker variables of CPython on Linux x86-64 at `python_version` (what we ship for)."""
    return {
        "python_version": python_version,
        "python_full_version": python_version + ".0",
        "implementation_name": "cpython",
        "implementation_version": python_version + ".0",
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_release": "",
        "platform_version": "",
        "extra": extra,
    }


def parse_requirement(text: str) -> Tuple[str, str, str]:
    """`name[extras] (spec) ; marker` -> (normalized name, specifier, marker)."""
    requirement, _, marker = text.partition(";")
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$", requirement)
    if not match:
        raise BuildError(f"cannot parse requirement {text!r}")
    return normalize_name(match.group(1)), match.group(2).strip(), marker.strip()


# ---------------------------------------------------------------------------------------------
# The lock file and the staged wheels.


def read_lock(lock: Path = LOCK) -> Dict[str, str]:
    """requirements.lock as {normalized name: version}; every entry must be `name==version`."""
    if not lock.is_file():
        raise BuildError(f"{lock} is missing (it pins every vendored wheel)")
    pins: Dict[str, str] = {}
    for number, raw in enumerate(lock.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)$", line)
        if not match:
            raise BuildError(
                f"{lock.name}:{number}: {line!r} is not pinned; write it as name==version"
            )
        name = normalize_name(match.group(1))
        if name in pins:
            raise BuildError(f"{lock.name}:{number}: {match.group(1)} is pinned twice")
        pins[name] = match.group(2)
    if not pins:
        raise BuildError(f"{lock} pins nothing")
    return pins


def read_dist_metadata(tree: Path) -> List[Dict[str, object]]:
    """Name, Version, Requires-Python and Requires-Dist of every *.dist-info under `tree`."""
    found = []
    for meta in sorted(tree.glob("*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(meta.read_text(encoding="utf-8"))
        found.append(
            {
                "name": normalize_name(headers.get("Name", "")),
                "version": headers.get("Version", "").strip(),
                "requires_python": (headers.get("Requires-Python") or "").strip(),
                "requires_dist": list(headers.get_all("Requires-Dist") or []),
                "path": str(meta.relative_to(tree)),
            }
        )
    return found


def check_lock_covers(tree: Path, pins: Mapping[str, str]) -> None:
    """Fail unless the staged dists are exactly the lock and their dependencies are locked.

    pip runs with --no-deps, so this is what catches a dependency missing from the lock.
    """
    dists = read_dist_metadata(tree)
    staged = {str(d["name"]): d for d in dists}
    problems = []
    for name, version in sorted(pins.items()):
        if name not in staged:
            problems.append(f"{name}=={version} is locked but was not installed")
        elif release_tuple(str(staged[name]["version"])) != release_tuple(version):
            problems.append(f"{name}: lock says {version}, staged {staged[name]['version']}")
    for dist in dists:
        name = str(dist["name"])
        if name not in pins:
            problems.append(f"{name} is staged but not in the lock")
        requires_python = str(dist["requires_python"])
        if requires_python and not specifier_admits(requires_python, MIN_PYTHON):
            problems.append(
                f"{name} {dist['version']} needs Python {requires_python}, not {MIN_PYTHON}"
            )
        for text in dist["requires_dist"]:  # type: ignore[union-attr]
            dep, spec, marker = parse_requirement(str(text))
            needed = not marker or any(
                marker_holds(marker, marker_env(py)) for py in SUPPORTED_PYTHONS
            )
            if not needed:
                continue
            if dep not in pins:
                problems.append(
                    f"{name} requires {str(text).split(';')[0].strip()}: add {dep}==<version>"
                    " to requirements.lock"
                )
            elif spec and not specifier_admits(spec, pins[dep]):
                problems.append(f"{name} requires {dep}{spec}, but the lock pins {pins[dep]}")
    if problems:
        raise BuildError("requirements.lock is inconsistent:\n  " + "\n  ".join(problems))


def lock_digest() -> str:
    """Names the staged-wheel cache: the pins only, so editing comments keeps the cache."""
    pins = "\n".join(f"{name}=={version}" for name, version in sorted(read_lock().items()))
    return hashlib.sha256(pins.encode()).hexdigest()[:16]


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
        MIN_PYTHON,
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
    for stale in cache_root.glob("deps-*"):
        if stale != stage and (stale / ".complete").exists():
            shutil.rmtree(stale, ignore_errors=True)  # an older lock's wheels
    return stage


def find_compiled(tree: Path) -> List[str]:
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if COMPILED_RE.search(p.name))


def check_pure(tree: Path) -> None:
    """Refuse extension modules: zipimport cannot load them, so the archive would break."""
    compiled = find_compiled(tree)
    if compiled:
        raise BuildError(
            "compiled modules cannot load from a zipapp: "
            + ", ".join(compiled)
            + " (pin a version with a py3-none-any wheel in requirements.lock)"
        )


# ---------------------------------------------------------------------------------------------
# Assembling the application tree.


def copy_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in PRUNE_DIRS for part in rel.parts) or path.name.endswith(PRUNE_SUFFIXES):
            continue
        if src.name.endswith(".dist-info") and path.name not in DIST_INFO_KEEP:
            continue
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _unshipped(item: Path) -> bool:
    """A staged top-level package/module or dist-info of an UNSHIPPED distribution."""
    if item.name.endswith(".dist-info"):
        return normalize_name(item.name[: -len(".dist-info")].rsplit("-", 1)[0]) in UNSHIPPED
    return (item.stem if item.suffix == ".py" else item.name) in UNSHIPPED


def assemble(stage: Path, app_dir: Path) -> None:
    for item in sorted(stage.iterdir()):
        if item.name in (".complete", "bin") or _unshipped(item):
            continue
        if item.is_dir():
            copy_tree(item, app_dir / item.name)
        elif item.suffix == ".py":
            shutil.copy2(item, app_dir / item.name)
    for package in OUR_PACKAGES:
        copy_tree(REPO / package, app_dir / package)
    (app_dir / "__main__.py").write_text(ENTRY)


def _imported_names(tree: ast.AST) -> Iterable[str]:
    """Absolute module names a module imports anywhere (also inside functions), including
    `importlib.import_module("x")` / `__import__("x")` with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = getattr(func, "attr", None) or getattr(func, "id", None)
            first = node.args[0]
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
                if isinstance(first.value, str):
                    yield first.value


def check_unshipped_unused(app_dir: Path) -> None:
    """Fail if a shipped module imports a distribution left out of the archive (UNSHIPPED):
    the archive would build and then break at run time with ModuleNotFoundError."""
    problems = []
    for path in sorted(app_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name in _imported_names(tree):
            if name.split(".")[0] in UNSHIPPED:
                problems.append(f"{path.relative_to(app_dir)} imports {name}")
    if problems:
        raise BuildError(
            "the archive leaves out "
            + ", ".join(UNSHIPPED)
            + " (UNSHIPPED in build_zipapp.py), but "
            + "; ".join(problems)
            + ": remove that import or ship the package again"
        )


def _read_mapping(path: Path, name: str) -> Dict[str, tuple]:
    """The dict literal `name = {...}` from a pygments _mapping.py, without importing it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise BuildError(f"{path} has no {name} table; pygments changed, update the pruning")


def _write_mapping(path: Path, name: str, table: Mapping[str, tuple]) -> None:
    body = pprint.pformat(dict(sorted(table.items())), width=100)
    path.write_text(
        "# Generated by podpy's build_zipapp.py: pygments' table trimmed to the modules kept.\n\n"
        f"{name} = {body}\n",
        encoding="utf-8",
    )


def _lexer_closure(lexers_dir: Path, roots: Iterable[str]) -> set:
    """Lexer modules reachable from `roots` through `pygments.lexers.X` imports."""
    keep: set = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in keep:
            continue
        source = lexers_dir / f"{module}.py"
        if not source.is_file():
            raise BuildError(f"pygments has no lexer module {module!r}; update the keep list")
        keep.add(module)
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("pygments.lexers."):
                    todo.append(node.module.split(".")[2])
                elif node.module == "pygments.lexers":
                    todo.extend(
                        a.name for a in node.names if (lexers_dir / f"{a.name}.py").is_file()
                    )
            elif isinstance(node, ast.Import):
                todo.extend(
                    a.name.split(".")[2]
                    for a in node.names
                    if a.name.startswith("pygments.lexers.")
                )
    return keep


def _prune_package(
    package_dir: Path, table_name: str, module_of: Mapping[str, str], keep: set
) -> None:
    """Delete modules of a pygments plugin package not in `keep`, and trim its _mapping."""
    mapping_file = package_dir / "_mapping.py"
    table = _read_mapping(mapping_file, table_name)
    kept = {k: v for k, v in table.items() if module_of[k] in keep}
    for source in package_dir.glob("*.py"):
        if source.stem not in keep and source.stem not in ("__init__", "_mapping"):
            source.unlink()
    _write_mapping(mapping_file, table_name, kept)


def prune_pygments(app_dir: Path) -> None:
    """Drop pygments lexers/styles/formatters podpy never reaches (most of its 5 MiB).

    The _mapping tables are trimmed to match, so asking for a dropped lexer raises pygments'
    own ClassNotFound (which rich handles by falling back to plain text), never ImportError.
    """
    root = app_dir / "pygments"
    if not root.is_dir():
        return
    for name in PYGMENTS_DROP_FILES:
        (root / name).unlink(missing_ok=True)
    lexers = root / "lexers"
    keep_lexers = _lexer_closure(lexers, PYGMENTS_KEEP_LEXER_MODULES)
    lexer_table = _read_mapping(lexers / "_mapping.py", "LEXERS")
    _prune_package(
        lexers, "LEXERS", {k: v[0].rsplit(".", 1)[1] for k, v in lexer_table.items()}, keep_lexers
    )
    style_table = _read_mapping(root / "styles" / "_mapping.py", "STYLES")
    _prune_package(
        root / "styles",
        "STYLES",
        {k: v[0] for k, v in style_table.items()},
        set(PYGMENTS_KEEP_STYLES),
    )
    formatter_table = _read_mapping(root / "formatters" / "_mapping.py", "FORMATTERS")
    _prune_package(
        root / "formatters",
        "FORMATTERS",
        {k: v[0].rsplit(".", 1)[1] for k, v in formatter_table.items()},
        set(PYGMENTS_KEEP_FORMATTERS),
    )


def compile_tree(app_dir: Path) -> None:
    """Legacy-location .pyc next to each .py, unchecked: a zip's mtimes never change.

    Only this interpreter's bytecode is included; other Python versions see a foreign magic
    number, skip the .pyc and compile the kept .py in memory.
    """
    ok = compileall.compile_dir(
        str(app_dir),
        # Record archive-relative file names: the temp dir's random name would make every
        # build differ, and tracebacks read the source through the zip loader anyway.
        ddir="podpy.pyz",
        quiet=1,
        legacy=True,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise BuildError("byte-compiling the staged tree failed (a syntax error?)")


def verify_tree(app_dir: Path) -> None:
    """Every .pyc is this interpreter's, unchecked-hash, next to its .py; no __pycache__."""
    problems = []
    for path in sorted(app_dir.rglob("*")):
        rel = path.relative_to(app_dir)
        if path.name == "__pycache__":
            problems.append(f"{rel}: __pycache__ directory")
        elif path.suffix == ".pyc":
            header = path.read_bytes()[:8]
            if header[:4] != importlib.util.MAGIC_NUMBER:
                problems.append(f"{rel}: bytecode of another Python version")
            elif int.from_bytes(header[4:8], "little") != 0b01:
                problems.append(f"{rel}: not an unchecked-hash pyc")
            if not path.with_suffix(".py").is_file():
                problems.append(f"{rel}: bytecode without its source")
    if problems:
        raise BuildError("unexpected files in the archive tree: " + "; ".join(problems[:10]))


def compression_for(rel: Path) -> int:
    """ZIP_STORED for the bytecode of STORED_PYC_PACKAGES (loaded at every start), else
    ZIP_DEFLATED."""
    if rel.suffix == ".pyc" and rel.parts[0] in STORED_PYC_PACKAGES:
        return zipfile.ZIP_STORED
    return zipfile.ZIP_DEFLATED


def write_zip(app_dir: Path, output: Path) -> None:
    """Sorted entries, fixed timestamps and modes: identical inputs give identical bytes."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    stamp = time.gmtime(EPOCH)[:6]
    try:
        with open(tmp, "wb") as raw:
            raw.write(SHEBANG)
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
                for path in sorted(app_dir.rglob("*")):
                    if path.is_dir():
                        continue
                    rel = path.relative_to(app_dir)
                    info = zipfile.ZipInfo(rel.as_posix(), date_time=stamp)
                    info.compress_type = compression_for(rel)
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, path.read_bytes())
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o755)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()


def smoke_test(output: Path) -> None:
    """The archive starts, and the typer CLI (not just the --version fast path) loads."""
    for args, expect in ((["--version"], "podpy version"), (["version"], "Version:")):
        result = subprocess.run(
            [sys.executable, "-I", str(output), *args], capture_output=True, text=True
        )
        if result.returncode != 0 or expect not in result.stdout:
            raise BuildError(
                f"the built zipapp fails `{' '.join(args)}`: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )


def build(output: Path, cache_root: Path, stage: Optional[Path] = None) -> Path:
    """Build the archive at `output`; on any failure nothing is left at `output`."""
    pins = read_lock()
    cache_root.mkdir(parents=True, exist_ok=True)
    stage = stage or stage_dependencies(cache_root)
    check_pure(stage)
    check_lock_covers(stage, pins)
    with tempfile.TemporaryDirectory(prefix="podpy-app-") as tmp:
        app_dir = Path(tmp) / "app"
        app_dir.mkdir()
        assemble(stage, app_dir)
        check_pure(app_dir)
        prune_pygments(app_dir)
        check_unshipped_unused(app_dir)
        compile_tree(app_dir)
        verify_tree(app_dir)
        staging_output = output.with_name(output.name + ".new")
        write_zip(app_dir, staging_output)
    try:
        smoke_test(staging_output)
        os.replace(staging_output, output)
    finally:
        if staging_output.exists():
            staging_output.unlink()
    return output


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-o", "--output", default=str(REPO / "dist" / "podpy.pyz"))
    parser.add_argument(
        "--cache",
        default=os.environ.get("PODPY_BUILD_CACHE", str(REPO / "build" / "cache")),
        help="where staged wheels are kept between builds",
    )
    args = parser.parse_args(argv)
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
