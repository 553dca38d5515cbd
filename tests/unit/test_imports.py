"""Import guards (pipx style): each module imports alone, and light paths stay free of heavy deps.

Every check runs in a fresh interpreter, so one test's imports cannot hide another's cycle.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("podpy", "netns_helpers")
HEAVY = ("typer", "click", "rich", "pyroute2", "sqlite3", "_sqlite3")
# Modules that come from an installed distribution rather than the stdlib or our tree.
THIRD_PARTY_CHECK = (
    "new = [m for n, m in list(sys.modules.items()) if n not in _before]\n"
    "third = sorted({m.__name__.split('.')[0] for m in new\n"
    "                if any(d in (getattr(m, '__file__', None) or '')\n"
    "                       for d in ('site-packages', 'dist-packages'))})\n"
)


def all_modules() -> List[str]:
    """Dotted names of every module in our packages, found on disk (nothing skipped)."""
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return names


def run_python(code: str, *flags: str) -> Any:
    """Run `code` with the repo first on sys.path in an isolated interpreter; return its JSON."""
    prelude = f"import sys\n_before = set(sys.modules)\nsys.path.insert(0, {str(REPO)!r})\n"
    result = subprocess.run(
        [sys.executable, "-I", *flags, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def loaded_after(statement: str, *flags: str) -> List[str]:
    code = (
        "import io, contextlib, json\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    {statement}\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    return run_python(code, *flags)


@pytest.mark.parametrize("flags", [(), ("-S",)], ids=["site", "no-site"])
def test_version_flag_imports_nothing_heavy(flags: Tuple[str, ...]) -> None:
    # With site the heavy packages are importable, so loading one would show; with -S
    # (no site-packages at all) it proves --version needs no third-party code.
    statement = (
        "sys.argv = ['podpy', '--version']; from podpy.__main__ import main; rc = main(); "
        "assert rc == 0 and buf.getvalue().startswith('podpy version'), (rc, buf.getvalue())"
    )
    assert loaded_after(statement, *flags) == []


@pytest.mark.parametrize("module", ["podpy.linux", "podpy.paths", "podpy.errors", "podpy.log"])
def test_base_modules_are_stdlib_only(module: str) -> None:
    third = run_python(
        f"import {module}\n" + THIRD_PARTY_CHECK + "import json; print(json.dumps(third))\n"
    )
    assert third == [], f"{module} pulled in third-party modules {third}"


@pytest.mark.parametrize(
    "verb", [["state", "nosuch"], ["kill", "nosuch", "KILL"], ["list", "-q"]], ids=str
)
def test_oci_verbs_skip_typer(tmp_path: Path, verb: List[str]) -> None:
    # OCI tooling runs one `podpy oci VERB` per operation: the fast path answers it
    # (podpy/ociverbs.py), with no typer/click (~150 ms) and no state DB.
    argv = ["oci", "--root", str(tmp_path / "oci"), *verb]
    expected = 0 if verb[0] == "list" else 125  # no such container
    statement = f"from podpy.__main__ import main; rc = main({argv!r}); assert rc == {expected}, rc"
    assert loaded_after(statement) == []


def test_cli_import_skips_rich_and_pyroute2() -> None:
    loaded = loaded_after("import podpy.cli")
    assert "rich" not in loaded and "pyroute2" not in loaded, loaded
    assert "sqlite3" not in loaded, "the CLI must open the state DB lazily"


def test_monitor_stays_stdlib_only() -> None:
    # The monitor lives for the whole container life: every MiB it imports is paid per container.
    if not (REPO / "podpy" / "monitor" / "main.py").exists():
        pytest.fail("podpy/monitor/main.py is missing")
    loaded = loaded_after("import podpy.monitor.main", "-S")
    assert loaded == [], f"the monitor imports {loaded}"


def test_module_list_is_not_empty() -> None:
    modules = all_modules()
    assert "podpy" in modules and "podpy.cli" in modules and "podpy.__main__" in modules


@pytest.mark.parametrize("module", all_modules())
def test_each_module_imports_alone(module: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(REPO)!r}); import {module}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"`import {module}` failed alone:\n{result.stderr}"


def test_third_party_detector_sees_a_real_dependency() -> None:
    # Guards the guard: the stdlib-only check must notice a vendored package when one loads.
    third = run_python(
        "import typer\n" + THIRD_PARTY_CHECK + "import json; print(json.dumps(third))\n"
    )
    assert "typer" in third and "click" in third, third


# `podpy run` up to the monitor must not pay for dataclasses, inspect or typing (~20 ms of
# start-up together): podpy.record replaces dataclasses (which pulls inspect), and typing is
# imported only under TYPE_CHECKING.


def _store_with_image(tmp_path: Path) -> Tuple[str, str]:
    """A fresh --root/--runroot holding localhost/tiny:latest (one small layer)."""
    sys.path.insert(0, str(REPO))
    try:
        from tests.images import files_layer, write_oci_layout
    finally:
        sys.path.remove(str(REPO))
    image = write_oci_layout(tmp_path / "layout", [files_layer({"etc/hello": b"hi\n"})])
    root, runroot = str(tmp_path / "root"), str(tmp_path / "run")
    argv = ["--root", root, "--runroot", runroot, "image", "copy", image.oci_ref,
            "containers-storage:localhost/tiny:latest"]  # fmt: skip
    code = f"from podpy.__main__ import main; sys.exit(main({argv!r}))"
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); {code}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return root, runroot


def test_run_path_skips_dataclasses_inspect_and_typing(tmp_path: Path) -> None:
    root, runroot = _store_with_image(tmp_path)
    # The real `run` (fast path, config, state DB, create) until it would become the monitor;
    # there the modules loaded so far are reported instead.
    argv = ["--root", root, "--runroot", runroot, "run", "--rm", "--network", "none",
            "localhost/tiny", "true"]  # fmt: skip
    code = (
        "import os\n"
        "import podpy.engine.containers as containers\n"
        "def report(eng, row):\n"
        "    loaded = {m: getattr(sys.modules[m], '__file__', None) for m in sys.modules}\n"
        "    print(json.dumps([sorted(loaded), sorted(m for m in loaded if m not in _before)]))\n"
        "    sys.stdout.flush()\n"
        "    os._exit(0)\n"
        "containers.exec_monitor = report\n"
        "from podpy.__main__ import main\n"
        f"main({argv!r})\n"
        "print(json.dumps(None))\n"
    )
    # json is imported first (the reporter needs it); it is on the run path anyway. The first
    # run parses the config files (tomllib imports typing) and fills the parsed-TOML cache
    # ($XDG_CACHE_HOME, the test session's own): the second is every later run.
    run_python("import json\n" + code)
    loaded, new = run_python("import json\n" + code)
    assert "podpy.engine.containers" in new and "podpy.config" in new, "run did not get far"
    assert "podpy.monitor.main" not in loaded, "the check must stop before the monitor"
    for name in ("dataclasses", "inspect"):
        assert name not in loaded, f"`podpy run` imports {name}"
    assert "typing" not in loaded, f"typing imported at run time by {_typing_importers(new)}"
    # Nothing to parse or validate as an address with --network none and the default subnet.
    assert "ipaddress" not in loaded, "`podpy run --network none` imports ipaddress"


def _typing_importers(modules: List[str], root: Path = REPO) -> List[str]:
    """Which of our `modules` import typing when imported (a module-level import outside
    `if TYPE_CHECKING:`), read from their source: at run time the first importer hides
    the others."""
    culprits = []
    for name in modules:
        if name.split(".")[0] not in PACKAGES:
            continue
        path = root.joinpath(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if _imports_typing(ast.parse(path.read_text()).body):
            culprits.append(name)
    return culprits


def _imports_typing(body: List[ast.stmt]) -> bool:
    for node in body:
        if isinstance(node, ast.Import) and any(a.name == "typing" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "typing" and node.level == 0:
            return True
        if isinstance(node, ast.If):
            guarded = isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            if (not guarded and _imports_typing(node.body)) or _imports_typing(node.orelse):
                return True
        if isinstance(node, ast.Try) and any(
            _imports_typing(part)
            for part in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers))
        ):
            return True
    return False


def test_typing_importer_detector(tmp_path: Path) -> None:
    # Guards the guard: a guarded import does not count, a plain or nested one does.
    guarded = "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from typing import Any\n"
    assert not _imports_typing(ast.parse(guarded).body)
    assert _imports_typing(ast.parse("import os\nfrom typing import Any\n").body)
    assert _imports_typing(
        ast.parse("try:\n    import typing\nexcept ImportError:\n    pass\n").body
    )
    (tmp_path / "podpy" / "sub").mkdir(parents=True)
    (tmp_path / "podpy" / "sub" / "__init__.py").write_text("import typing\n")
    (tmp_path / "podpy" / "clean.py").write_text(guarded)
    modules = ["podpy.sub", "podpy.clean", "json"]
    assert _typing_importers(modules, tmp_path) == ["podpy.sub"]
