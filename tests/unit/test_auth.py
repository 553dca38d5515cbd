"""auth.json handling: file precedence, most-specific keys, Docker's formats, writes and removal."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Dict

import pytest

from podpy.image import auth


def _encode(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    home = tmp_path / "home"
    run = tmp_path / "run"
    home.mkdir()
    run.mkdir(mode=0o700)
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(run)}


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_primary_file_precedence(env: Dict[str, str], tmp_path: Path) -> None:
    default = Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json"
    assert auth.primary_authfile(env) == str(default)
    with_env = dict(env, REGISTRY_AUTH_FILE=str(tmp_path / "env.json"))
    assert auth.primary_authfile(with_env) == str(tmp_path / "env.json")
    assert auth.primary_authfile(with_env, str(tmp_path / "flag.json")) == str(
        tmp_path / "flag.json"
    )


def test_store_writes_private_file_and_replaces_key(env: Dict[str, str]) -> None:
    path = Path(auth.store("reg.example:5000", "alice", "s3cret", env))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data == {"auths": {"reg.example:5000": {"auth": _encode("alice", "s3cret")}}}
    auth.store("https://reg.example:5000/", "bob", "pw:with:colons", env)
    data = json.loads(path.read_text())
    assert list(data["auths"]) == ["reg.example:5000"]
    assert auth.lookup("reg.example:5000", env) == ("bob", "pw:with:colons")


def test_most_specific_key_wins(env: Dict[str, str]) -> None:
    primary = Path(auth.primary_authfile(env))
    _write(
        primary,
        {
            "auths": {
                "reg.io": {"auth": _encode("host", "1")},
                "reg.io/team": {"auth": _encode("team", "2")},
                "reg.io/team/app": {"auth": _encode("app", "3")},
            }
        },
    )
    assert auth.lookup("reg.io/team/app", env) == ("app", "3")
    assert auth.lookup("reg.io/team/other", env) == ("team", "2")
    assert auth.lookup("reg.io/elsewhere/x", env) == ("host", "1")
    assert auth.lookup("reg.io", env) == ("host", "1")
    assert auth.lookup("other.io/team/app", env) is None
    hook = auth.credential_lookup(None, None, env, repository="team/app")
    assert hook("reg.io") == ("app", "3")
    # The registry client passes `host/repository` itself when it knows the repository.
    assert hook("reg.io/team/other") == ("team", "2")
    assert auth.credential_lookup(None, None, env)("reg.io/team/app") == ("app", "3")


def test_fallback_files_in_order(env: Dict[str, str], tmp_path: Path) -> None:
    home = Path(env["HOME"])
    config_home = tmp_path / "config"
    env = dict(env, XDG_CONFIG_HOME=str(config_home))
    _write(
        home / ".docker" / "config.json",
        {"auths": {"https://index.docker.io/v1/": {"auth": _encode("hub", "h")}}},
    )
    _write(home / ".dockercfg", {"legacy.io": {"auth": _encode("old", "o")}})
    _write(
        config_home / "containers" / "auth.json",
        {
            "auths": {
                "cfg.io": {"auth": _encode("cfg", "c")},
                "legacy.io": {"username": "u", "password": "p"},
            }
        },
    )
    assert auth.lookup("docker.io/library/busybox", env) == ("hub", "h")
    assert auth.lookup("cfg.io", env) == ("cfg", "c")
    # XDG_CONFIG_HOME's file is read before ~/.dockercfg.
    assert auth.lookup("legacy.io", env) == ("u", "p")
    os.unlink(config_home / "containers" / "auth.json")
    assert auth.lookup("legacy.io", env) == ("old", "o")
    # The primary file wins over all of them.
    auth.store("docker.io", "mine", "m", env)
    assert auth.lookup("docker.io", env) == ("mine", "m")
    # An explicit --authfile is the only file read.
    only = tmp_path / "only.json"
    _write(only, {"auths": {}})
    assert auth.lookup("docker.io", env, str(only)) is None


def test_remove_and_remove_all(env: Dict[str, str]) -> None:
    assert auth.remove("nothing.io", env) is False
    auth.store("a.io", "a", "1", env)
    auth.store("b.io", "b", "2", env)
    path = Path(auth.primary_authfile(env))
    data = json.loads(path.read_text())
    data["credHelpers"] = {"c.io": "secretservice"}
    path.write_text(json.dumps(data))
    assert auth.remove("a.io", env) is True
    assert auth.lookup("a.io", env) is None and auth.lookup("b.io", env) == ("b", "2")
    auth.remove_all(env)
    data = json.loads(path.read_text())
    assert data["auths"] == {} and data["credHelpers"] == {"c.io": "secretservice"}


def test_read_only_files_are_reported_for_logout(env: Dict[str, str]) -> None:
    docker = Path(env["HOME"]) / ".docker" / "config.json"
    _write(docker, {"auths": {"d.io": {"auth": _encode("x", "y")}}})
    assert auth.stored_in_read_only("d.io", env) == str(docker)
    assert auth.remove("d.io", env) is False
    assert docker.exists() and "d.io" in docker.read_text()


def test_credential_helper(env: Dict[str, str], tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-podpytest"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "helped.io" ]; then\n'
        '  echo \'{"ServerURL":"helped.io","Username":"hlp","Secret":"tok"}\'\n'
        "else echo 'credentials not found in native keychain'; exit 1; fi\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    _write(
        Path(auth.primary_authfile(env)),
        {"credHelpers": {"helped.io": "podpytest", "nohelp.io": "absent"}},
    )
    assert auth.lookup("helped.io/ns/app", env) == ("hlp", "tok")
    with pytest.raises(auth.AuthFileError, match="docker-credential-absent"):
        auth.lookup("nohelp.io", env)


def test_bad_files_and_creds_are_clear_errors(env: Dict[str, str], tmp_path: Path) -> None:
    path = Path(auth.primary_authfile(env))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(auth.AuthFileError, match=str(path)):
        auth.lookup("x.io", env)
    path.write_text(
        json.dumps({"auths": {"x.io": {"auth": base64.b64encode(b"nocolon").decode()}}})
    )
    with pytest.raises(auth.AuthFileError, match="base64"):
        auth.lookup("x.io", env)
    with pytest.raises(auth.AuthFileError, match="not accessible"):
        auth.credential_lookup(None, str(tmp_path / "missing.json"), env)
    assert auth.credential_lookup("u:p:q", None, env)("any.io") == ("u", "p:q")


@pytest.mark.parametrize(
    "key, expected",
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://reg:5000", "reg:5000"),
        ("reg:5000/ns/", "reg:5000/ns"),
        ("quay.io", "quay.io"),
    ],
)
def test_normalize_key(key: str, expected: str) -> None:
    assert auth.normalize_key(key) == expected
