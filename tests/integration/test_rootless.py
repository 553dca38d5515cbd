"""`podpy unshare` and the rootless user-namespace entry, as the test user and as root."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

# Not imported from conftest: tests/integration/conftest.py shadows that module name.
IS_ROOT = os.geteuid() == 0
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="creates users and runs podpy as them")


def _subids(path: str, user: str) -> List[Tuple[int, int]]:
    with open(path) as f:
        return [
            (int(start), int(count))
            for owner, start, count in (line.strip().split(":") for line in f if line.strip())
            if owner == user
        ]


def _map_lines(text: str) -> List[Tuple[int, int, int]]:
    return [tuple(int(x) for x in line.split()) for line in text.splitlines() if line.strip()]


def test_unshare_maps_root_to_user_and_the_full_subid_range(rootless: Any) -> None:
    (uid_start, uid_count) = _subids("/etc/subuid", rootless.user)[0]
    (gid_start, gid_count) = _subids("/etc/subgid", rootless.user)[0]
    result = rootless.podpy("unshare", "cat", "/proc/self/uid_map", "/proc/self/gid_map")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert _map_lines(result.stdout) == [
        (0, rootless.uid, 1),
        (1, uid_start, uid_count),
        (0, rootless.gid, 1),
        (1, gid_start, gid_count),
    ]
    assert uid_count == 65536


def test_unshare_runs_as_root_of_the_namespace(as_each: Any) -> None:
    assert as_each.ok("unshare", "id", "-u").strip() == "0"
    assert as_each.ok("unshare", "id", "-g").strip() == "0"


def test_unshare_as_root_uses_the_host_namespace(rootful: Any) -> None:
    assert _map_lines(rootful.ok("unshare", "cat", "/proc/self/uid_map")) == [(0, 0, 4294967295)]


def test_unshare_passes_flags_env_and_exit_code(as_each: Any) -> None:
    script = 'printf "%s\\n" "$@"; echo "$PODPY_GRAPHROOT|$CONTAINERS_RUNROOT"; exit 7'
    result = as_each.podpy("unshare", "sh", "-c", script, "sh", "--help", "-x", "--", "--root")
    assert result.returncode == 7, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["--help", "-x", "--", "--root"]
    graph, run = lines[4].split("|")
    if as_each.user is None:
        assert as_each.extra_args == ["--root", graph, "--runroot", run]
    else:
        assert graph == str(as_each.home / ".local/share/podpy/storage")
        assert run == f"{as_each.runtime_dir}/podpy"
    assert os.path.isdir(graph) and os.path.isdir(run)


def test_unshare_double_dash_and_default_shell(as_each: Any) -> None:
    assert as_each.ok("unshare", "--", "id", "-u").strip() == "0"
    result = as_each.podpy("unshare", input="id -u\nexit 3\n", env={"SHELL": "/bin/sh"})
    assert (result.returncode, result.stdout.strip()) == (3, "0"), result.stderr


def test_unshare_unknown_command_is_127(as_each: Any) -> None:
    result = as_each.podpy("unshare", "no-such-command-podpy")
    assert result.returncode == 127
    assert result.stderr.strip() == (
        'Error: exec: "no-such-command-podpy": executable file not found in $PATH'
    )


def test_unshare_forwards_signals_and_reports_128_plus_signal(rootless: Any) -> None:
    env = rootless.env()
    proc = subprocess.Popen(
        rootless._wrap([SYSTEM_PYTHON, "-I", str(rootless.pyz), "unshare", "sleep", "60"]),
        env=env,
        cwd=str(rootless.home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until sleep runs inside the namespace (it is a child of podpy).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            if children and "sleep" in Path(f"/proc/{children[0]}/cmdline").read_text():
                break
            time.sleep(0.05)
        else:
            pytest.fail("sleep never started under podpy unshare")
        sleeper = int(children[0])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert (
        not os.path.exists(f"/proc/{sleeper}/cmdline")
        or "sleep" not in Path(f"/proc/{sleeper}/cmdline").read_text()
    )


def test_missing_newuidmap_names_the_package(rootless: Any, tmp_path: Path) -> None:
    empty = tmp_path / "no-helpers"
    empty.mkdir()
    empty.chmod(0o755)
    tmp_path.chmod(0o755)
    result = rootless.podpy("unshare", "id", "-u", env={"PODPY_HELPER_BINARIES_DIR": str(empty)})
    assert result.returncode == 125
    assert result.stdout == ""
    assert result.stderr.strip() == (
        'Error: newuidmap not found: install the "uidmap" package '
        "(apt install uidmap / dnf install shadow-utils)"
    )


def test_newuidmap_refusing_a_range_is_a_clear_error(rootless: Any) -> None:
    """Ranges the user does not own: newuidmap fails and its own message is shown."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from podpy.errors import PodpyError\n"
        "from podpy.idmap import SubIdRange, UserIdMaps\n"
        "from podpy.rootless import run_in_userns\n"
        "import os\n"
        "bogus = (SubIdRange(900000000, 10),)\n"
        "maps = UserIdMaps(sys.argv[2], os.getuid(), os.getgid(), bogus, bogus)\n"
        "try:\n"
        "    run_in_userns(lambda: 0, maps=maps)\n"
        "except PodpyError as err:\n"
        "    print(err.message); sys.exit(9)\n"
    )
    result = rootless.cmd(
        [SYSTEM_PYTHON, "-I", "-c", code, str(rootless.pyz), rootless.user], timeout=60
    )
    assert result.returncode == 9, result.stderr
    message = result.stdout.strip()
    assert message.startswith("newuidmap ")
    assert f"0 {rootless.uid} 1 1 900000000 10 failed: newuidmap:" in message


@pytest.fixture
def user_without_subids(rootless_session: Any) -> Iterator[Any]:
    """A second fresh user whose /etc/subuid and /etc/subgid entries are removed."""
    name = f"podpyn{uuid.uuid4().hex[:10]}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    entry = pwd.getpwnam(name)
    run_dir = Path(f"/run/user/{entry.pw_uid}")
    try:
        for start, count in _subids("/etc/subuid", name):
            subprocess.run(
                ["usermod", "--del-subuids", f"{start}-{start + count - 1}", name], check=True
            )
        for start, count in _subids("/etc/subgid", name):
            subprocess.run(
                ["usermod", "--del-subgids", f"{start}-{start + count - 1}", name], check=True
            )
        assert _subids("/etc/subuid", name) == [] and _subids("/etc/subgid", name) == []
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chown(run_dir, entry.pw_uid, entry.pw_gid)
        run_dir.chmod(0o700)
        runner = replace(
            rootless_session,
            user=name,
            uid=entry.pw_uid,
            gid=entry.pw_gid,
            home=Path(entry.pw_dir),
            runtime_dir=run_dir,
        )
        yield runner
        runner.podpy("system", "reset", "--force", timeout=60)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        subprocess.run(["userdel", "--remove", "--force", name], capture_output=True)
        shutil.rmtree(entry.pw_dir, ignore_errors=True)


def test_user_without_subids_gets_single_id_mapping_and_a_warning(
    user_without_subids: Any,
) -> None:
    runner = user_without_subids
    result = runner.podpy("unshare", "sh", "-c", "cat /proc/self/uid_map; id -u")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert _map_lines(lines[0]) == [(0, runner.uid, 1)]
    assert lines[1] == "0"
    assert result.stderr.splitlines() == [
        f'WARN[0000] no subuid ranges found for user "{runner.user}" in /etc/subuid: running '
        "with a single id mapping; fix: sudo usermod --add-subuids 100000-165535 "
        f"--add-subgids 100000-165535 {runner.user}"
    ]
    # Single-id reset also works (the store only holds the user's own files).
    runner.ok("unshare", "sh", "-c", 'touch "$PODPY_GRAPHROOT/file"')
    runner.podpy("system", "reset", "--force", check=True)
    assert not (runner.home / ".local/share/podpy/storage").exists()


def test_python_api_run_in_userns_and_become_root(rootless: Any) -> None:
    """What later code calls by name: exit codes and uid 0 come back as documented."""
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1])\n"
        "from podpy.rootless import become_root_in_userns, rootless_uid, run_in_userns\n"
        "assert run_in_userns(lambda: 5) == 5\n"
        "assert run_in_userns(lambda: 0 if os.getuid() == 0 else 1) == 0\n"
        "host_uid = os.getuid()\n"
        "become_root_in_userns()\n"
        "print(os.getuid(), os.getgid(), rootless_uid() == host_uid, flush=True)\n"
        "sys.exit(4)\n"
    )
    result = rootless.cmd([SYSTEM_PYTHON, "-I", "-c", code, str(rootless.pyz)], timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (4, "0 0 True\n", "")


def test_podpy_inside_unshare_still_uses_the_users_store(rootless: Any) -> None:
    """uid 0 inside the namespace must not switch podpy to the root store (/var/lib/podpy)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from podpy.paths import resolve\n"
        "p = resolve()\n"
        "print(p.graph_root, p.run_root, p.rootless)\n"
    )
    out = rootless.ok("unshare", SYSTEM_PYTHON, "-I", "-c", code, str(rootless.pyz))
    assert out.split() == [
        str(rootless.home / ".local/share/podpy/storage"),
        f"{rootless.runtime_dir}/podpy",
        "True",
    ]
