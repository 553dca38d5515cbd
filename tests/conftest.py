"""Shared fixtures: a built podpy.pyz, a throwaway non-root user with sub-id ranges, podpy runners.

Integration tests run the zipapp exactly as users do (`python3 -I podpy.pyz ...`), as root
with a private --root/--runroot and as the rootless test user in that user's own home.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IS_ROOT = os.geteuid() == 0
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable


def unique_name(prefix: str = "t") -> str:
    """A short unique name for objects a test creates (containers, images, users)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def shared_tmp() -> Iterator[Path]:
    """A world-readable scratch dir so the rootless user can read what root prepared."""
    path = Path(tempfile.mkdtemp(prefix="podpy-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(shared_tmp: Path) -> Iterator[None]:
    """In-process podpy code (podpy.config.load's parsed-TOML cache) writes under
    $XDG_CACHE_HOME: a scratch dir, never the real user's ~/.cache. (Runner-driven commands get
    their own temporary HOME.)"""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(shared_tmp / "xdg-cache")
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(scope="session")
def podpy_pyz(shared_tmp: Path) -> Path:
    """The zipapp under test: $PODPY_PYZ if given (CI builds it once), else a fresh build."""
    given = os.environ.get("PODPY_PYZ")
    target = shared_tmp / "podpy.pyz"
    if given:
        shutil.copy2(given, target)
    else:
        subprocess.run(
            [sys.executable, str(REPO / "build_zipapp.py"), "-o", str(target)],
            check=True,
            capture_output=True,
        )
    target.chmod(0o755)
    return target


@pytest.fixture(scope="session")
def host_devices() -> None:
    """Open /dev/net/tun and /dev/fuse to users, as normal distros ship them (0600 here)."""
    if not IS_ROOT:
        return
    for dev in ("/dev/net/tun", "/dev/fuse"):
        if os.path.exists(dev):
            os.chmod(dev, 0o666)


@dataclass
class Runner:
    """Runs podpy (or any command) as one identity with a clean, explicit environment."""

    pyz: Path
    user: Optional[str]
    uid: int
    gid: int
    home: Path
    runtime_dir: Path
    extra_args: List[str] = field(default_factory=list)
    extra_env: Dict[str, str] = field(default_factory=dict)

    def env(self) -> Dict[str, str]:
        env = {
            "HOME": str(self.home),
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
        }
        if self.user:
            env["USER"] = env["LOGNAME"] = self.user
        env.update(self.extra_env)
        return env

    def _wrap(self, argv: Sequence[str]) -> List[str]:
        if self.user is None:
            return list(argv)
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", *argv]

    def cmd(
        self,
        argv: Sequence[str],
        *,
        input: Optional[str] = None,
        timeout: float = 120,
        env: Optional[Dict[str, str]] = None,
        check: bool = False,
        cwd: Optional[str] = None,
    ) -> subprocess.CompletedProcess:
        full_env = self.env()
        full_env.update(env or {})
        result = subprocess.run(
            self._wrap(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=cwd or str(self.home),
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{argv} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def podpy(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        argv = [SYSTEM_PYTHON, "-I", str(self.pyz), *self.extra_args, *args]
        return self.cmd(argv, **kwargs)

    def ok(self, *args: str, **kwargs) -> str:
        """Run podpy, require exit 0, return stdout."""
        return self.podpy(*args, check=True, **kwargs).stdout


def _kill_user_processes(uid: int) -> None:
    for _ in range(50):
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        pids.append(int(entry))
                except OSError:
                    pass
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)


def _unmount_under(prefix: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture(scope="session")
def rootless_user(host_devices) -> Iterator[pwd.struct_passwd]:
    """A fresh non-root user with /etc/subuid and /etc/subgid ranges; removed after the session."""
    if not IS_ROOT:
        yield pwd.getpwuid(os.geteuid())
        return
    name = unique_name("podpyt")[:16]
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    entry = pwd.getpwnam(name)
    run_dir = Path(f"/run/user/{entry.pw_uid}")
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chown(run_dir, entry.pw_uid, entry.pw_gid)
    run_dir.chmod(0o700)
    try:
        yield entry
    finally:
        _kill_user_processes(entry.pw_uid)
        _unmount_under(str(run_dir))
        _unmount_under(entry.pw_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        subprocess.run(["userdel", "--remove", "--force", name], capture_output=True)
        shutil.rmtree(entry.pw_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def rootless_session(podpy_pyz: Path, rootless_user) -> Runner:
    """podpy as the non-root test user, with its default (XDG) storage locations."""
    if not IS_ROOT:
        home = Path(os.environ.get("HOME", tempfile.mkdtemp()))
        run_dir = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.mkdtemp())
        return Runner(podpy_pyz, None, os.geteuid(), os.getegid(), home, run_dir)
    return Runner(
        podpy_pyz,
        rootless_user.pw_name,
        rootless_user.pw_uid,
        rootless_user.pw_gid,
        Path(rootless_user.pw_dir),
        Path(f"/run/user/{rootless_user.pw_uid}"),
    )


@pytest.fixture
def rootless(rootless_session: Runner) -> Iterator[Runner]:
    """Per-test rootless runner; resets the user's podpy state afterwards."""
    yield rootless_session
    rootless_session.podpy("system", "reset", "--force", timeout=120)


@pytest.fixture
def rootful(podpy_pyz: Path, host_devices) -> Iterator[Runner]:
    """podpy as root with a private graph root and run root, removed afterwards."""
    if not IS_ROOT:
        pytest.skip("needs root")
    base = Path(tempfile.mkdtemp(prefix="podpy-root-"))
    runner = Runner(
        podpy_pyz,
        None,
        0,
        0,
        base / "home",
        base / "xdg-run",
        extra_args=["--root", str(base / "storage"), "--runroot", str(base / "run")],
    )
    runner.home.mkdir()
    runner.runtime_dir.mkdir(mode=0o700)
    yield runner
    runner.podpy("system", "reset", "--force", timeout=120)
    _unmount_under(str(base))
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["rootless", "root"])
def as_each(request) -> Runner:
    """Run a test once as the rootless user and once as root."""
    if request.param == "root":
        return request.getfixturevalue("rootful")
    return request.getfixturevalue("rootless")
