"""Config files through the real CLI: the rootless user's ~/.config files take effect, and a
broken file fails the command with `Error: <file>: line N: <what>` (exit 125) before podpy
writes anything to disk.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator, List

import pytest

# tests/conftest.py's Runner (not importable by name: tests/integration has its own conftest).
Runner = Any


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _write_as(runner: Runner, relative: str, text: str) -> Path:
    """Write a file under the runner's home, owned by that user (dirs too), like they would."""
    path = runner.home / relative
    parent = path.parent
    missing: List[Path] = []
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    for item in missing + [path]:
        os.chown(item, runner.uid, runner.gid)
    return path


def _snapshot(*roots: Path) -> List[str]:
    found: List[str] = []
    for root in roots:
        if root.exists():
            found.append(str(root))
            found.extend(sorted(str(p) for p in root.rglob("*")))
    return found


@pytest.fixture
def user_config(rootless: Runner) -> Iterator[Runner]:
    """The rootless runner; removes the ~/.config/containers and ~/.cache/containers it used."""
    yield rootless
    for relative in (".config/containers", ".cache/containers"):
        shutil.rmtree(rootless.home / relative, ignore_errors=True)


def test_broken_containers_conf_fails_before_touching_disk(user_config: Runner) -> None:
    runner = user_config
    conf = _write_as(
        runner,
        ".config/containers/containers.conf",
        '[containers]\ntz = "UTC"\n\n[engine]\nstop_timeout = \n',
    )
    data_dir = runner.home / ".local" / "share" / "podpy"
    existed = data_dir.exists()
    before = _snapshot(runner.home, runner.runtime_dir)
    for argv in (["info"], ["system", "config-files"]):
        result = runner.podpy(*argv)
        assert result.returncode == 125, (argv, result.stdout, result.stderr)
        assert result.stderr.splitlines()[0] == f"Error: {conf}: line 5: Invalid value", argv
        assert result.stdout == ""
    assert _snapshot(runner.home, runner.runtime_dir) == before
    assert data_dir.exists() == existed
    if not existed:
        assert not data_dir.exists()


def test_wrong_type_names_file_and_key(user_config: Runner) -> None:
    conf = _write_as(
        user_config,
        ".config/containers/containers.conf.d/50-x.conf",
        '[engine]\nstop_timeout = "ten"\n',
    )
    result = user_config.podpy("system", "config-files")
    assert result.returncode == 125
    assert result.stderr.strip() == (
        f'Error: {conf}: engine.stop_timeout: expected an integer, got string "ten"'
    )


def test_user_files_take_effect(user_config: Runner) -> None:
    runner = user_config
    search = f"{unique_name('reg')}.example:5000"
    conf = _write_as(
        runner,
        ".config/containers/containers.conf",
        '[containers]\npids_limit = 321\nenv = ["A=1"]\n[engine]\nstop_timeout = 7\n'
        '[network]\ndefault_rootless_network_cmd = "pasta"\n',
    )
    drop_in = _write_as(
        runner, ".config/containers/containers.conf.d/90-tz.conf", '[containers]\ntz = "UTC"\n'
    )
    registries = _write_as(
        runner,
        ".config/containers/registries.conf",
        f'unqualified-search-registries = ["{search}"]\n'
        f'[[registry]]\nlocation = "{search}"\ninsecure = true\n'
        '[aliases]\n"mytool" = "docker.io/mytool"\n',
    )
    storage = _write_as(
        runner,
        ".config/containers/storage.conf",
        '[storage]\ndriver = "vfs"\n[storage.options.vfs]\nignore_chown_errors = "true"\n',
    )
    data = json.loads(runner.ok("system", "config-files"))
    assert str(conf) in data["sources"] and data["sources"].index(str(conf)) < data[
        "sources"
    ].index(str(drop_in))
    assert str(registries) in data["sources"] and str(storage) in data["sources"]
    # The user's registries.conf replaces /etc's (and its drop-ins), as in podman.
    assert not any(s.startswith("/etc/containers/registries") for s in data["sources"])
    containers = data["containers"]
    assert (containers["pids_limit"], containers["stop_timeout"], containers["tz"]) == (
        321,
        7,
        "UTC",
    )
    assert containers["env"] == ["A=1"]
    assert containers["default_rootless_network_cmd"] == "pasta"
    assert data["registries"]["search_registries"] == [search]
    assert data["registries"]["registries"][0]["insecure"] is True
    assert data["registries"]["aliases"] == {"mytool": "docker.io/library/mytool"}
    assert data["storage"]["driver"] == "vfs" and data["storage"]["vfs_ignore_chown_errors"]
    assert data["storage"]["graphroot"] == f"{runner.home}/.local/share/containers/storage"

    # `podpy info` reports the same configuration.
    info = json.loads(runner.ok("info", "--format", "json"))
    assert info["registries"]["search"] == [search]
    assert info["store"]["configFile"] == str(storage)


def test_env_overrides_via_cli(user_config: Runner, shared_tmp: Path) -> None:
    only = shared_tmp / f"{unique_name('cc')}.conf"
    only.write_text('[containers]\ntz = "only"\n')
    only.chmod(0o644)
    _write_as(user_config, ".config/containers/containers.conf", '[containers]\ntz = "user"\n')
    data = json.loads(user_config.ok("system", "config-files", env={"CONTAINERS_CONF": str(only)}))
    assert data["containers"]["tz"] == "only"
    assert [s for s in data["sources"] if "containers.conf" in s or s == str(only)] == [str(only)]
    missing = shared_tmp / "does-not-exist.conf"
    result = user_config.podpy("system", "config-files", env={"CONTAINERS_CONF": str(missing)})
    assert result.returncode == 125
    assert result.stderr.splitlines()[0] == f"Error: CONTAINERS_CONF file {missing} does not exist"


def _python39() -> str:
    candidates = [os.environ.get("PODPY_PYTHON39", "")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    candidates.append(shutil.which("python3.9") or "")
    for candidate in candidates:
        # pyenv shims answer "command not found" unless 3.9 is the selected version.
        if candidate and "/shims/" not in candidate and os.access(candidate, os.X_OK):
            return candidate
    return ""


def test_line_numbers_under_python39_with_vendored_tomli(podpy_pyz: Path, shared_tmp: Path) -> None:
    """Below 3.11 the zipapp parses with its vendored tomli; the error must read the same."""
    python39 = _python39()
    if not python39:
        pytest.skip("no CPython 3.9 here (set PODPY_PYTHON39)")
    broken = shared_tmp / f"{unique_name('c39')}.conf"
    broken.write_text('[engine]\nruntime = "runc"\n[[engine]]\n')
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(shared_tmp),
        "CONTAINERS_CONF": str(broken),
        "CONTAINERS_REGISTRIES_CONF": str(broken),
    }
    out = subprocess.run(
        [python39, "-I", str(podpy_pyz), "system", "config-files"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 125, out.stderr
    assert out.stderr.splitlines()[0] == f"Error: {broken}: line 3: Cannot overwrite a value"
    broken.write_text('[engine]\nruntime = "runc"\n')
    env.pop("CONTAINERS_REGISTRIES_CONF")
    good = subprocess.run(
        [python39, "-I", str(podpy_pyz), "system", "config-files"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["containers"]["runtime"] == "runc"


def test_rootless_files_are_read_inside_podpy_user_namespace(tmp_path: Path) -> None:
    """Inside a user namespace euid is 0, yet the recorded host uid keeps the config rootless."""
    import podpy.config

    home = tmp_path / "home"
    conf = home / ".config" / "containers" / "containers.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text('[containers]\ntz = "from-user-file"\n')
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); from podpy.config import load\n"
        "print(os.geteuid(), load(env=os.environ, sysroot=sys.argv[2]).containers.tz)\n"
    )
    repo = str(Path(podpy.config.__file__).resolve().parents[2])
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", podpy.config.ROOTLESS_UID_ENV: "4321"}
    out = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "/usr/bin/python3",
            "-I",
            "-c",
            script,
            repo,
            str(tmp_path / "sys"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "from-user-file"]
