"""Import guards (pipx style): each module imports alone, and light paths stay free of heavy deps.

Every check runs in a fresh interpreter, so one test's imports cannot hide another's cycle.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("podpy", "netns_helpers")
HEAVY = ("typer", "click", "rich", "pyroute2", "sqlite3")
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
