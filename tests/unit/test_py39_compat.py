"""Python 3.9 compatibility of our sources and of every vendored wheel.

Four layers: vermin (API/syntax minimum versions; annotations are not evaluated because every
module uses `from __future__ import annotations`), an AST/token check for what vermin misses
(runtime `X | Y` on types, parenthesized context managers), a compile with a real Python 3.9
when one is installed, and the Requires-Python of each wheel inside the built zipapp.
"""

from __future__ import annotations

import ast
import builtins
import glob
import io
import os
import shutil
import subprocess
import sys
import tokenize
import zipfile
from pathlib import Path
from typing import List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("podpy", "netns_helpers", "build_zipapp.py")
BUILTIN_TYPES = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)}
TYPING_NAMES = {"Optional", "Union", "List", "Dict", "Tuple", "Set", "Any", "Callable", "Type"}


def source_files() -> List[Path]:
    files: List[Path] = []
    for target in TARGETS:
        path = REPO / target
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def python39() -> Optional[str]:
    """A real CPython 3.9: $PODPY_PYTHON39, python3.9 on PATH, or a pyenv install."""
    candidates = [os.environ.get("PODPY_PYTHON39", ""), shutil.which("python3.9") or ""]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


# --- the AST/token fallback ------------------------------------------------------------------


def _is_type_like(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name):
        return node.id in BUILTIN_TYPES or node.id in TYPING_NAMES
    if isinstance(node, ast.Subscript):
        return _is_type_like(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type_like(node.left) or _is_type_like(node.right)
    return False


class _RuntimeUnionFinder(ast.NodeVisitor):
    """`int | None` evaluated at run time (outside annotations) needs Python 3.10."""

    def __init__(self) -> None:
        self.lines: List[int] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:  # noqa: N802
        # Skip annotations: with `from __future__ import annotations` they are strings.
        for decorator in node.decorator_list:
            self.visit(decorator)
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(default)
        for statement in node.body:
            self.visit(statement)

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:  # noqa: N802
        if node.value is not None:
            self.visit(node.value)

    def visit_BinOp(self, node: ast.BinOp) -> None:  # noqa: N802
        if isinstance(node.op, ast.BitOr) and _is_type_like(node):
            self.lines.append(node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:  # noqa: N802
        # isinstance(x, A | B) with any operands is 3.10+.
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("isinstance", "issubclass"):
            if len(node.args) == 2 and isinstance(node.args[1], ast.BinOp):
                if isinstance(node.args[1].op, ast.BitOr):
                    self.lines.append(node.lineno)
        self.generic_visit(node)


def _parenthesized_with_lines(source: str) -> List[int]:
    """`with (a as b, c as d):` parses only on 3.10+, yet its AST equals the 3.9 form."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in (tokenize.NL, tokenize.COMMENT)
    ]
    lines = []
    for i, tok in enumerate(tokens[:-1]):
        if tok.type != tokenize.NAME or tok.string != "with":
            continue
        if tokens[i + 1].string != "(":
            continue
        depth, saw_item_separator, j = 0, False, i + 1
        while j < len(tokens):
            text = tokens[j].string
            if text in "([{" and tokens[j].type == tokenize.OP:
                depth += 1
            elif text in ")]}" and tokens[j].type == tokenize.OP:
                depth -= 1
                if depth == 0:
                    break
            elif depth == 1 and text in ("as", ","):
                saw_item_separator = True
            j += 1
        if saw_item_separator and j + 1 < len(tokens) and tokens[j + 1].string == ":":
            lines.append(tok.start[0])
    return lines


def _guards_version(test: ast.AST) -> bool:
    return "version_info" in ast.dump(test)


def _unguarded_tomllib(tree: ast.AST) -> List[int]:
    """Lines importing tomllib outside `if sys.version_info >= ...` or `try/except ImportError`."""
    lines: List[int] = []

    def walk(node: ast.AST, guarded: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = guarded
            if isinstance(child, ast.If) and _guards_version(child.test):
                inner = True
            if isinstance(child, ast.Try) and any(
                "ImportError" in ast.dump(h.type) or "ModuleNotFoundError" in ast.dump(h.type)
                for h in child.handlers
                if h.type is not None
            ):
                inner = True
            names: List[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module:
                names = [child.module]
            if not inner and any(n.split(".")[0] == "tomllib" for n in names):
                lines.append(child.lineno)
            walk(child, inner)

    walk(tree, False)
    return lines


def ast_violations(path: Path) -> List[str]:
    """3.10+ constructs in one file, as `path:line: what` strings."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, str(path))
    found = []
    match_type = getattr(ast, "Match", None)
    for node in ast.walk(tree):
        if match_type is not None and isinstance(node, match_type):
            found.append(f"{path}:{node.lineno}: match statement")
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "zip":
                if any(k.arg == "strict" for k in node.keywords):
                    found.append(f"{path}:{node.lineno}: zip(strict=)")
            if isinstance(node.func, ast.Attribute) and node.func.attr == "bit_count":
                found.append(f"{path}:{node.lineno}: int.bit_count()")
    found += [
        f"{path}:{line}: tomllib imported without a version check"
        for line in _unguarded_tomllib(tree)
    ]
    finder = _RuntimeUnionFinder()
    finder.visit(tree)
    found += [f"{path}:{line}: `X | Y` on types outside an annotation" for line in finder.lines]
    found += [
        f"{path}:{line}: parenthesized context managers"
        for line in _parenthesized_with_lines(source)
    ]
    if "from __future__ import annotations" not in source and source.strip():
        # Annotations like `list[str] | None` would then be evaluated at import time.
        for node in ast.walk(tree):
            annotation = getattr(node, "annotation", None) or getattr(node, "returns", None)
            if annotation is not None and "|" in ast.dump(annotation).replace("BitOr", "|"):
                found.append(f"{path}:{node.lineno}: `|` annotation without the __future__ import")
    return found


BAD_SNIPPETS = {
    "match": "def f(x):\n    match x:\n        case 1:\n            return 2\n",
    "union": "X = int | None\n",
    "isinstance": "def f(x, A, B):\n    return isinstance(x, A | B)\n",
    "with": "with (open('a') as f, open('b') as g):\n    pass\n",
    "zip": "def f(a, b):\n    return list(zip(a, b, strict=True))\n",
    "tomllib": "import tomllib\n",
}
GOOD_SNIPPET = (
    "from __future__ import annotations\n"
    "import sys\n"
    "if sys.version_info >= (3, 11):\n"
    "    import tomllib\n"
    "else:\n"
    "    import tomli as tomllib\n"
    "FLAGS = 1 | 2\n"
    "def f(x: int | None, y: list[str] | None = None) -> dict[str, int] | None:\n"
    "    z: int | str = FLAGS | 4\n"
    "    with (open('a')) as fh, open('b') as gh:\n"
    "        return None\n"
)


@pytest.mark.parametrize("name", sorted(BAD_SNIPPETS))
def test_ast_check_catches_each_310_construct(name: str, tmp_path: Path) -> None:
    bad = tmp_path / f"{name}.py"
    bad.write_text(BAD_SNIPPETS[name])
    assert ast_violations(bad), f"the fallback missed {name}"


def test_ast_check_accepts_39_code_with_future_annotations(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text(GOOD_SNIPPET)
    assert ast_violations(good) == []


def test_sources_pass_the_ast_check() -> None:
    problems = [v for f in source_files() for v in ast_violations(f)]
    assert problems == [], "\n".join(problems)


# --- vermin ----------------------------------------------------------------------------------

# tomllib is allowed behind a version check (vermin cannot see guards); the AST check
# below enforces that guard instead.
VERMIN_ARGS = [
    "-t=3.9-",
    "--no-tips",
    "--violations",
    "--no-eval-annotations",
    "--exclude",
    "tomllib",
]


def _vermin(paths: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", *VERMIN_ARGS, *paths],
        capture_output=True,
        text=True,
        cwd=str(REPO),
    )


def _have_vermin() -> bool:
    import importlib.util

    return importlib.util.find_spec("vermin") is not None


def test_sources_pass_vermin_for_39() -> None:
    if not _have_vermin():
        # Fallback by design (vermin is a test extra): the AST check is the gate then.
        problems = [v for f in source_files() for v in ast_violations(f)]
        assert problems == [], "\n".join(problems)
        return
    result = _vermin(list(TARGETS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_vermin_flags_a_310_api(tmp_path: Path) -> None:
    if not _have_vermin():
        pytest.fail("vermin is not installed: pip install -e .[test]")
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_SNIPPETS["zip"] + "import tomllib\n")
    result = _vermin([str(bad)])
    assert result.returncode != 0 and "zip(strict)" in result.stdout, result.stdout
    good = tmp_path / "good.py"
    good.write_text(GOOD_SNIPPET)
    assert _vermin([str(good)]).returncode == 0


# --- a real 3.9 ------------------------------------------------------------------------------


def test_sources_compile_under_python39() -> None:
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no CPython 3.9 here (set PODPY_PYTHON39); vermin + AST checks still ran")
    code = (
        "import sys\n"
        "bad = []\n"
        "for f in sys.argv[1:]:\n"
        "    try:\n"
        "        compile(open(f, encoding='utf-8').read(), f, 'exec', dont_inherit=True)\n"
        "    except SyntaxError as e:\n"
        "        bad.append(f'{f}:{e.lineno}: {e.msg}')\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    files = [str(f) for f in source_files()]
    result = subprocess.run([interpreter, "-I", "-c", code, *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- vendored wheels -------------------------------------------------------------------------


def test_every_locked_wheel_admits_python39(podpy_pyz: Path) -> None:
    import build_zipapp

    pins = build_zipapp.read_lock()
    with zipfile.ZipFile(podpy_pyz) as zf:
        metadata = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        from email.parser import HeaderParser

        shipped = {}
        for name in metadata:
            headers = HeaderParser().parsestr(zf.read(name).decode("utf-8"))
            shipped[build_zipapp.normalize_name(headers["Name"])] = headers
    unshipped = set(build_zipapp.UNSHIPPED)  # locked, but nothing imports them
    assert sorted(shipped) == sorted(set(pins) - unshipped), (
        "the zipapp's dists differ from the lock"
    )
    for name, headers in sorted(shipped.items()):
        assert headers["Version"] == pins[name], f"{name}: shipped {headers['Version']}"
        requires = headers.get("Requires-Python") or ""
        assert build_zipapp.specifier_admits(requires, "3.9"), f"{name} needs Python {requires}"
