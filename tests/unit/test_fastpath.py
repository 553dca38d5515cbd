"""The ps fast path: same output as the typer command, no typer/click imported, and every
invocation it does not fully understand falls through to the full CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from podpy.fastpath import _parse_ps, _split

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["ps"], ({}, ["ps"], [])),
        (["--root", "/r", "ps", "-a"], ({"root": "/r"}, ["ps"], ["-a"])),
        (
            ["--runroot=/x", "container", "ls", "-q"],
            ({"runroot": "/x"}, ["container", "ls"], ["-q"]),
        ),
        (
            ["--log-level", "debug", "container", "list"],
            ({"log_level": "debug"}, ["container", "list"], []),
        ),
    ],
)
def test_split_recognises_ps(argv, expected):
    assert _split(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [["images"], ["--help", "ps"], ["--root"], ["pull", "ps"], ["container", "inspect", "x"], []],
)
def test_split_leaves_other_commands(argv):
    assert _split(argv) is None


def test_parse_ps_flags():
    opts = _parse_ps(
        [
            "-aq",
            "--no-trunc",
            "-n",
            "3",
            "--filter",
            "status=exited",
            "-f=name=x",
            "--format={{.ID}}",
            "--noheading",
        ]
    )
    assert opts == {
        "all": True,
        "quiet": True,
        "no_trunc": True,
        "last": 3,
        "filters": ["status=exited", "name=x"],
        "format": "{{.ID}}",
        "noheading": True,
    }


@pytest.mark.parametrize(
    "args", [["--help"], ["-h"], ["--bogus"], ["-ax"], ["extra"], ["-n"], ["-n", "x"]]
)
def test_parse_ps_falls_through(args):
    assert _parse_ps(args) is None


def _run(code: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, str(root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root), "XDG_RUNTIME_DIR": str(root)},
    )


def test_fast_ps_matches_typer_and_skips_typer(tmp_path: Path):
    """Same bytes from both paths on a store with containers; typer never loaded on the fast one."""
    setup = (
        "import sys, time, json; sys.path.insert(0, '.');"
        "from podpy.engine import Engine, GlobalOptions;"
        "e = Engine(GlobalOptions(root=sys.argv[1] + '/s', runroot=sys.argv[1] + '/r'));"
        "now = time.time();"
        "[e.db.insert('containers', {'id': f'{i:064x}', 'name': f'c{i}', 'image_id': 'ab' * 32,"
        " 'created': now - 86400 * (5 + i), 'config': {'image_name': 'localhost/x:latest',"
        " 'command': ['sleep', str(i)], 'labels': {'k': str(i)}}, 'status': 'exited',"
        " 'exit_code': i, 'state': {'finished_at': now - 86400 * 3}, 'updated': now}) for i in range(3)]"
    )
    assert _run(setup, tmp_path).returncode == 0
    args = "['--root', sys.argv[1] + '/s', '--runroot', sys.argv[1] + '/r', 'ps', '-a', '--filter', 'label=k=1']"
    fast = _run(
        "import sys; sys.path.insert(0, '.'); from podpy.fastpath import try_fast;"
        f"rc = try_fast({args}); assert rc == 0, rc;"
        "assert 'typer' not in sys.modules and 'click' not in sys.modules, 'typer loaded'",
        tmp_path,
    )
    slow = _run(
        f"import sys; sys.path.insert(0, '.'); from podpy.cli import main; sys.exit(main({args}))",
        tmp_path,
    )
    assert fast.returncode == 0, fast.stderr
    assert slow.returncode == 0, slow.stderr
    assert fast.stdout == slow.stdout
    assert "c1" in fast.stdout and "c0" not in fast.stdout and "Exited (1)" in fast.stdout


def test_fast_lifecycle_verbs_skip_typer(tmp_path: Path):
    """run/create/start/stop/kill/rm answered without typer, with the CLI's messages and codes."""
    result = _run(
        "import sys; sys.path.insert(0, '.'); from podpy.fastpath import try_fast;"
        "g = ['--root', sys.argv[1] + '/s', '--runroot', sys.argv[1] + '/r'];"
        "codes = [try_fast(g + a) for a in (['rm', 'nosuch'], ['rm', '-i', 'nosuch'],"
        " ['container', 'remove', 'nosuch'], ['rm', '-f', 'nosuch'], ['stop', 'nosuch'],"
        " ['kill', 'nosuch'],"
        " ['start', 'nosuch'], ['create', '--pull', 'never', 'nosuchimage'],"
        " ['run', '--rm', '--pull=never', 'nosuchimage', 'true'])];"
        "print(codes);"
        "assert 'typer' not in sys.modules and 'click' not in sys.modules, 'typer loaded'",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # podman: rm --force implies --ignore
    assert result.stdout.strip() == "[1, 0, 1, 0, 125, 125, 125, 125, 125]"
    assert result.stderr.count('Error: no container with name or ID "nosuch" found') == 5
    assert result.stderr.count("Error: nosuchimage: image not known") == 2


def test_fast_oci_verbs_match_typer_and_skip_typer(tmp_path: Path):
    """`podpy oci VERB` from the fast path: the typer CLI's bytes and exit codes, no typer."""
    state = tmp_path / "oci"
    for cid, bundle in (("c1", "/b/one"), ("longer-id", "/b/2")):
        (state / cid).mkdir(parents=True)
        saved = {"id": cid, "pid": 0, "bundle": bundle, "created": "2024-01-02T03:04:05Z"}
        (state / cid / "state.json").write_text(json.dumps(saved))
    argvs = [
        ["oci", "--root", str(state), "list"],
        ["oci", "--root", str(state), "list", "-q"],
        ["oci", f"--root={state}", "--systemd-cgroup", "list", "--format", "json"],
        ["oci", "--root", str(state), "state", "c1"],
        ["oci", "--root", str(state), "state", "nosuch"],
        ["oci", "--root", str(state), "state", "bad/id"],
        ["oci", "--root", str(state), "kill", "nosuch", "BOGUS"],
        ["oci", "--root", str(state), "kill", "c1"],
        ["oci", "--root", str(state), "pause", "nosuch"],
        ["oci", "--root", str(state), "create", "-b", str(tmp_path / "none"), "x"],
        ["--log-level", "bogus", "oci", "--root", str(state), "state", "c1"],
    ]
    code = (
        "import sys, json, importlib; sys.path.insert(0, '.');"
        "name, attr = ('podpy.fastpath', 'try_fast') if sys.argv[3] == 'fast'"
        " else ('podpy.cli', 'main');"
        "rc = getattr(importlib.import_module(name), attr)(json.loads(sys.argv[2]));"
        "assert sys.argv[3] != 'fast' or ('typer' not in sys.modules"
        " and 'click' not in sys.modules), 'typer loaded';"
        "sys.exit(rc)"
    )
    outputs = []
    for argv in argvs:
        runs = {}
        for mode in ("fast", "typer"):
            runs[mode] = subprocess.run(
                [sys.executable, "-c", code, str(tmp_path), json.dumps(argv), mode],
                capture_output=True,
                text=True,
                cwd=REPO,
                env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            )
        fast, slow = runs["fast"], runs["typer"]
        assert "typer loaded" not in fast.stderr, argv
        assert (fast.returncode, fast.stdout, fast.stderr) == (
            slow.returncode,
            slow.stdout,
            slow.stderr,
        ), argv
        outputs.append((fast.returncode, fast.stdout, fast.stderr))
    header, first, second = outputs[0][1].splitlines()
    assert header.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert first.split() == ["c1", "0", "stopped", "/b/one", "2024-01-02T03:04:05Z"]
    assert second.startswith("longer-id   0 ")
    assert outputs[1][1] == "c1\nlonger-id\n"
    assert [item["id"] for item in json.loads(outputs[2][1])] == ["c1", "longer-id"]
    assert json.loads(outputs[3][1])["status"] == "stopped"
    assert outputs[4] == (125, "", "Error: container nosuch does not exist\n")
    assert outputs[10][0] == 125 and 'invalid log level "bogus"' in outputs[10][2]
