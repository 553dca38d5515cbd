"""The built-in OCI runtime on the real kernel, as the rootless test user and as root, with the
very same bundles handed to runc to prove they are standard.

Bundles come from podpy's spec generator; the rootfs is busybox-static plus a tiny static
`probe` program (built with gcc here) that reports the errno of single syscalls.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from podpy.spec.generate import RunOptions, generate, write_bundle  # noqa: E402

IS_ROOT = os.geteuid() == 0
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
PODMAN_CAPEFF = "00000000800405fb"
ENOSYS, EPERM, EACCES = 38, 1, 13

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="creates users, bundles and cgroups")

PROBE_C = r"""
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
/* probe NAME...: make one syscall per NAME and print "NAME ERRNO" (0 = it succeeded). */
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *n = argv[i];
        long r = -1;
        errno = 0;
        if (!strcmp(n, "personality")) r = syscall(SYS_personality, 0x40008UL);
        else if (!strcmp(n, "personality_ok")) r = syscall(SYS_personality, 0xffffffffUL);
        else if (!strcmp(n, "add_key")) r = syscall(SYS_add_key, "user", "podpy", "x", 1, -3);
        else if (!strcmp(n, "keyctl")) r = syscall(SYS_keyctl, 1, "podpy");
        else if (!strcmp(n, "mkdir")) r = syscall(SYS_mkdir, "/tmp/probe-dir", 0755);
        else if (!strcmp(n, "unshare")) r = syscall(SYS_unshare, 0x00020000);
        printf("%s %d\n", n, r < 0 ? errno : 0);
    }
    return 0;
}
"""


@pytest.fixture(scope="session")
def probe_binary(shared_tmp: Path) -> Path:
    gcc = shutil.which("gcc")
    assert gcc, "these tests build a static probe program: install gcc and libc6-dev"
    source = shared_tmp / "probe.c"
    source.write_text(PROBE_C)
    binary = shared_tmp / "probe"
    subprocess.run([gcc, "-static", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def build_rootfs(rootfs: Path, probe: Path) -> None:
    """busybox + applet links, a passwd/group with a non-root user, and the probe."""
    bin_dir = rootfs / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2("/bin/busybox", bin_dir / "busybox")
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", bin_dir / applet)
    shutil.copy2(probe, bin_dir / "probe")
    (bin_dir / "notexec").write_text("#!/bin/sh\necho never\n")
    etc = rootfs / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
    )
    (etc / "group").write_text("root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n")
    for name in ("tmp", "proc", "sys", "dev", "root"):
        (rootfs / name).mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        os.lchown(dirpath, uid, gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


class Containers:
    """Bundles owned by one identity (rootless user or root) and ways to run them."""

    def __init__(self, runner: Any, base: Path, probe: Path):
        self.runner = runner
        self.rootless = runner.user is not None
        self.base = base
        self.probe = probe
        self.state_root = (runner.runtime_dir if self.rootless else base) / f"oci-{base.name}"
        self.runc_root = (runner.runtime_dir if self.rootless else base) / f"runc-{base.name}"
        self.cids: List[str] = []

    def bundle(self, overlay: bool = False, **overrides: Any) -> Path:
        cid = "t" + uuid.uuid4().hex[:12]
        bundle = self.base / cid
        rootfs = bundle / "rootfs"
        if overlay:
            # The image as a lower layer; the runtime mounts the overlay in the container's ns.
            build_rootfs(bundle / "lower", self.probe)
            for name in ("rootfs", "upper", "work"):
                (bundle / name).mkdir()
            overrides["rootfs_overlay"] = {
                "lower": [str(bundle / "lower")],
                "upper": str(bundle / "upper"),
                "work": str(bundle / "work"),
            }
        else:
            build_rootfs(rootfs, self.probe)
        options = RunOptions(
            container_id=cid,
            rootfs=str(rootfs),
            rootless=self.rootless,
            network_files_dir=str(bundle / "userdata"),
            cgroups_path=f"/podpytest-{cid}",
            **overrides,
        )
        write_bundle(str(bundle), generate({"config": {"Env": ["PATH=/bin"]}}, options))
        self.own(bundle)
        return bundle

    def own(self, path: Path) -> None:
        if self.rootless:
            _chown_tree(path, self.runner.uid, self.runner.gid)

    def edit(self, bundle: Path, change: Any) -> None:
        path = bundle / "config.json"
        config = json.loads(path.read_text())
        change(config)
        path.write_text(json.dumps(config))
        self.own(path)

    def argv(self, runtime: str, *args: str) -> List[str]:
        pyz = [SYSTEM_PYTHON, "-I", str(self.runner.pyz)]
        if runtime == "podpy":
            return [*pyz, "oci", "--root", str(self.state_root), *args]
        runc = ["runc", "--root", str(self.runc_root), *args]
        return [*pyz, "unshare", *runc] if self.rootless else runc

    def run(self, runtime: str, bundle: Path, timeout: float = 60) -> subprocess.CompletedProcess:
        cid = "c" + uuid.uuid4().hex[:10]
        self.cids.append(cid)
        return self.runner.cmd(
            self.argv(runtime, "run", "--bundle", str(bundle), cid), timeout=timeout
        )

    def detached(self, argv: List[str], log: Path) -> int:
        """Run without pipes: a created container keeps the caller's stdio open."""
        with open(log, "ab") as out:
            return subprocess.run(
                self.runner._wrap(argv),
                env=self.runner.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=str(self.runner.home),
                timeout=60,
            ).returncode


@pytest.fixture
def containers(as_each: Any, probe_binary: Path) -> Any:
    runner = as_each
    base = runner.home / f"bundles-{uuid.uuid4().hex[:8]}"
    base.mkdir(parents=True)
    box = Containers(runner, base, probe_binary)
    box.own(base)
    yield box
    for cid in box.cids:
        runner.cmd(box.argv("podpy", "delete", "--force", cid))
    shutil.rmtree(base, ignore_errors=True)
    for root in (box.state_root, box.runc_root):
        shutil.rmtree(root, ignore_errors=True)


def _fields(stdout: str) -> Dict[str, str]:
    """KEY=VALUE lines and the probe's `NAME ERRNO` lines."""
    found: Dict[str, str] = {}
    for line in stdout.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
        elif len(line.split()) == 2:
            name, value = line.split()
            found[name] = value
    return found


def _subid_start(user: str, path: str = "/etc/subuid") -> int:
    with open(path) as f:
        for line in f:
            owner, start, _count = line.strip().split(":")
            if owner == user:
                return int(start)
    raise AssertionError(f"{user} has no {path} range")


CHECKS = r"""
echo UID=$(id -u)
echo UIDMAP=$(cat /proc/self/uid_map | tr -s ' ' ' ' | sed 's/^ //' | tr '\n' ';')
echo HOST=$(hostname)
echo PID=$$
grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
mkdir -p /tmp/m
if mount -t tmpfs x /tmp/m 2>/dev/null; then echo MOUNT=allowed; else echo MOUNT=refused; fi
echo KEYS=$(cat /proc/keys 2>/dev/null | wc -c)
echo KEYSMNT=$(grep -c ' /proc/keys ' /proc/self/mountinfo)
if echo x > /proc/sys/kernel/domainname 2>/dev/null; then echo PROCSYS=rw; else echo PROCSYS=ro; fi
/bin/probe add_key personality personality_ok unshare keyctl
echo hello > /data/fromcontainer && echo WROTE=yes
echo LOUP=$(ip -o link show lo | grep -c '<LOOPBACK,UP')
echo PINGRANGE=$(cat /proc/sys/net/ipv4/ping_group_range | tr '\t' ' ')
"""


@pytest.mark.parametrize("runtime", ["podpy", "runc"])
def test_default_security_and_isolation(containers: Containers, runtime: str) -> None:
    data = containers.base / f"data-{runtime}"
    data.mkdir()
    containers.own(data)
    bundle = containers.bundle(
        command=["sh", "-c", CHECKS], hostname="boxhost", volumes=[f"{data}:/data"]
    )
    config = json.loads((bundle / "config.json").read_text())
    assert "/proc/kcore" in config["linux"]["maskedPaths"]  # no kcore on this kernel to read

    result = containers.run(runtime, bundle)
    assert result.returncode == 0, result.stderr + result.stdout
    got = _fields(result.stdout)
    assert got["UID"] == "0"
    if containers.rootless:
        user = containers.runner.user
        start = _subid_start(user)
        assert got["UIDMAP"] == f"0 {containers.runner.uid} 1;1 {start} 65536;"
    else:
        assert got["UIDMAP"] == "0 0 4294967295;"
    assert got["HOST"] == "boxhost" != socket.gethostname()
    assert got["PID"] == "1"
    assert got["CapEff"] == PODMAN_CAPEFF
    assert got["Seccomp"] == "2"
    assert got["NoNewPrivs"] == "0"
    assert got["MOUNT"] == "refused"
    assert got["KEYS"] == "0" and got["KEYSMNT"] == "1"  # /proc/keys masked by /dev/null
    assert got["PROCSYS"] == "ro"
    # Refused by podman's seccomp profile: not listed (ENOSYS) or a disallowed argument.
    assert got["add_key"] == str(ENOSYS)
    assert got["personality"] == str(ENOSYS)
    assert got["personality_ok"] == "0"
    assert got["unshare"] == str(EPERM)  # no CAP_SYS_ADMIN
    # The keyring is not namespaced: podpy refuses keyctl as Docker does (podman allows it).
    assert got["keyctl"] == str(ENOSYS)
    assert got["WROTE"] == "yes"
    assert got["PINGRANGE"] == "0 0"  # containers.conf default_sysctls
    if runtime == "podpy":
        assert got["LOUP"] == "1"  # runc leaves lo down: podman's network setup raises it
    owner = (data / "fromcontainer").stat()
    assert owner.st_uid == containers.runner.uid


@pytest.mark.parametrize("runtime", ["podpy", "runc"])
def test_user_groups_and_no_new_privileges(containers: Containers, runtime: str) -> None:
    script = "id; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed 's/:/=/'"
    bundle = containers.bundle(command=["sh", "-c", script], user="alice", no_new_privileges=True)
    result = containers.run(runtime, bundle)
    assert result.returncode == 0, result.stderr
    assert "uid=1000(alice) gid=1000(alice)" in result.stdout
    assert "50(staff)" in result.stdout
    got = _fields(result.stdout)
    assert got["NoNewPrivs"] == "1"
    assert got["CapEff"] == "0000000000000000"


@pytest.mark.parametrize("runtime", ["podpy", "runc"])
def test_custom_seccomp_profile_read_only_root_and_tmpfs(
    containers: Containers, runtime: str
) -> None:
    profile = containers.base / f"profile-{runtime}.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES}
                ],
            }
        )
    )
    script = (
        "/bin/probe mkdir; touch /rootfile 2>/dev/null && echo ROOT=rw || echo ROOT=ro;"
        " echo x > /scratch/f && echo TMPFS=rw; echo CWD=$(pwd); exit 7"
    )
    bundle = containers.bundle(
        command=["sh", "-c", script],
        seccomp_profile=str(profile),
        read_only=True,
        tmpfs=["/scratch"],
        workdir="/new/work/dir",  # missing in the image: created before the read-only remount
    )
    result = containers.run(runtime, bundle)
    assert result.returncode == 7, result.stderr
    got = _fields(result.stdout)
    assert got["mkdir"] == str(EACCES)
    assert got["ROOT"] == "ro"
    assert got["TMPFS"] == "rw"
    assert got["CWD"] == "/new/work/dir"


def test_missing_and_non_executable_entrypoints(containers: Containers) -> None:
    bundle = containers.bundle(command=["nosuchcommand"])
    result = containers.run("podpy", bundle)
    assert result.returncode == 127, result.stderr
    assert 'exec: "nosuchcommand": executable file not found in $PATH' in result.stderr
    assert "OCI runtime attempted to invoke a command that was not found" in result.stderr
    assert result.stderr.startswith("Error: podpy: podpy create failed")

    bundle = containers.bundle(command=["/bin/notexec"])
    result = containers.run("podpy", bundle)
    assert result.returncode == 126, result.stderr
    assert "permission denied" in result.stderr
    # Nothing half-created is left behind.
    leftovers = os.listdir(containers.state_root) if containers.state_root.exists() else []
    assert leftovers == []


def test_missing_bind_source_is_refused(containers: Containers) -> None:
    bundle = containers.bundle(command=["true"])
    missing = str(containers.base / "does-not-exist")

    def add_mount(config: Dict[str, Any]) -> None:
        config["mounts"].append(
            {"destination": "/data", "type": "bind", "source": missing, "options": ["rbind"]}
        )

    containers.edit(bundle, add_mount)
    result = containers.run("podpy", bundle)
    assert result.returncode == 125
    assert f"mount source {missing} for /data does not exist" in result.stderr
    assert result.stderr.count("\n") <= 2
    assert not os.path.exists(missing)
    leftovers = os.listdir(containers.state_root) if containers.state_root.exists() else []
    assert leftovers == []
    runc = containers.run("runc", bundle)
    assert runc.returncode != 0


def test_lifecycle_create_start_state_kill_delete(containers: Containers) -> None:
    bundle = containers.bundle(command=["sleep", "60"])
    cid = "life" + uuid.uuid4().hex[:8]
    containers.cids.append(cid)
    log = containers.base / "create.log"
    pid_file = containers.base / "pidfile"
    code = containers.detached(
        containers.argv(
            "podpy", "create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid
        ),
        log,
    )
    assert code == 0, log.read_text()

    def state() -> Dict[str, Any]:
        out = containers.runner.cmd(containers.argv("podpy", "state", cid), check=True).stdout
        return json.loads(out)

    created = state()
    assert created["status"] == "created" and created["id"] == cid
    assert created["bundle"] == str(bundle)
    assert created["pid"] == int(pid_file.read_text())
    with open(f"/proc/{created['pid']}/status") as f:
        assert any(line.split() == ["NSpid:", str(created["pid"]), "1"] for line in f)

    again = containers.runner.cmd(containers.argv("podpy", "start", cid))
    assert again.returncode == 0, again.stderr
    assert state()["status"] == "running"
    busy = containers.runner.cmd(containers.argv("podpy", "delete", cid))
    assert busy.returncode != 0 and "not stopped" in busy.stderr
    twice = containers.runner.cmd(containers.argv("podpy", "start", cid))
    assert twice.returncode != 0

    listing = containers.runner.cmd(containers.argv("podpy", "list"), check=True).stdout
    assert cid in listing and "running" in listing

    containers.runner.cmd(containers.argv("podpy", "kill", cid, "KILL"), check=True)
    for _ in range(200):
        if state()["status"] == "stopped":
            break
        time.sleep(0.05)
    assert state()["status"] == "stopped"
    containers.runner.cmd(containers.argv("podpy", "delete", cid), check=True)
    gone = containers.runner.cmd(containers.argv("podpy", "state", cid))
    assert gone.returncode != 0 and "does not exist" in gone.stderr


def test_init_reaps_and_passes_the_exit_code(containers: Containers) -> None:
    bundle = containers.bundle(command=["sh", "-c", "echo PID=$$; exit 3"], init=True)
    result = containers.run("podpy", bundle)
    assert result.returncode == 3, result.stderr
    assert _fields(result.stdout)["PID"] == "2"


@pytest.mark.parametrize("runtime", ["podpy", "runc"])
def test_cgroup_v1_limits_as_root(rootful: Any, probe_binary: Path, runtime: str) -> None:
    base = rootful.home / "cg"
    base.mkdir()
    box = Containers(rootful, base, probe_binary)
    script = (
        "echo MEM=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes);"
        " echo PIDS=$(cat /sys/fs/cgroup/pids/pids.max)"
    )
    bundle = box.bundle(command=["sh", "-c", script], memory=64 << 20, pids_limit=50)
    cgroups_path = json.loads((bundle / "config.json").read_text())["linux"]["cgroupsPath"]
    result = box.run(runtime, bundle)
    assert result.returncode == 0, result.stderr
    got = _fields(result.stdout)
    assert got["MEM"] == str(64 << 20)
    assert got["PIDS"] == "50"
    for controller in ("memory", "pids"):
        assert not os.path.exists(f"/sys/fs/cgroup/{controller}{cgroups_path}")


def test_overlay_rootfs_mounted_inside_the_container_namespaces(containers: Containers) -> None:
    script = "echo hi > /newfile; rm /bin/notexec; grep -c ' / / .* overlay ' /proc/self/mountinfo"
    bundle = containers.bundle(overlay=True, command=["sh", "-c", script])
    result = containers.run("podpy", bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert (bundle / "upper" / "newfile").read_text() == "hi\n"
    assert not (bundle / "lower" / "newfile").exists()
    assert (bundle / "lower" / "bin" / "notexec").exists()  # deleted only in the upper layer
    assert os.path.lexists(bundle / "upper" / "bin" / "notexec")  # the whiteout
    assert os.listdir(bundle / "rootfs") == []  # the overlay died with the mount namespace
    with open("/proc/self/mountinfo") as f:
        assert str(bundle) not in f.read()


def test_terminal_via_console_socket(containers: Containers) -> None:
    bundle = containers.bundle(
        command=["sh", "-c", "tty; stty size; echo TERM=$TERM"], terminal=True
    )

    def size(config: Dict[str, Any]) -> None:
        config["process"]["consoleSize"] = {"height": 33, "width": 101}

    containers.edit(bundle, size)
    sock_path = containers.base / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    os.chmod(sock_path, 0o777)
    server.listen(1)
    server.settimeout(60)
    cid = "tty" + uuid.uuid4().hex[:8]
    containers.cids.append(cid)
    argv = containers.argv(
        "podpy", "create", "--bundle", str(bundle), "--console-socket", str(sock_path), cid
    )
    creator = subprocess.Popen(
        containers.runner._wrap(argv),
        env=containers.runner.env(),
        cwd=str(containers.runner.home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        conn, _ = server.accept()
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        conn.close()
        assert creator.wait(timeout=60) == 0, creator.stderr.read()
    finally:
        server.close()
        if creator.poll() is None:
            creator.kill()
    master = fds[0]
    containers.runner.cmd(containers.argv("podpy", "start", cid), check=True)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once the last slave fd is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    text = output.decode().replace("\r", "")
    assert "/dev/pts/0" in text
    assert "33 101" in text
    assert "TERM=xterm" in text


@pytest.mark.parametrize("runtime", ["podpy", "runc"])
def test_hooks_get_the_state_and_sysctls_are_applied(containers: Containers, runtime: str) -> None:
    out = containers.base / f"hooks-{runtime}"
    out.mkdir()
    containers.own(out)
    bundle = containers.bundle(
        command=["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
        sysctls={"net.ipv4.ip_unprivileged_port_start": "79"},
    )

    def hooks(config: Dict[str, Any]) -> None:
        def hook(name: str) -> Dict[str, Any]:
            return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{name}.json"]}

        config["hooks"] = {
            kind: [hook(kind)] for kind in ("createRuntime", "poststart", "poststop")
        }

    containers.edit(bundle, hooks)
    result = containers.run(runtime, bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "79"
    states = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(states) == {"createRuntime", "poststart", "poststop"}
    for state in states.values():
        assert state["bundle"] == str(bundle) and state["ociVersion"]
    assert states["createRuntime"]["status"] == "creating"
    assert states["createRuntime"]["pid"] > 0
    assert states["poststop"]["status"] == "stopped"


def test_pause_resume_and_force_delete_as_root(rootful: Any, probe_binary: Path) -> None:
    base = rootful.home / "pause"
    base.mkdir()
    box = Containers(rootful, base, probe_binary)
    bundle = box.bundle(command=["sleep", "60"])
    cgroups_path = json.loads((bundle / "config.json").read_text())["linux"]["cgroupsPath"]
    cid = "p" + uuid.uuid4().hex[:8]
    box.cids.append(cid)
    assert (
        box.detached(box.argv("podpy", "run", "-d", "--bundle", str(bundle), cid), base / "log")
        == 0
    )

    def status() -> str:
        return json.loads(rootful.cmd(box.argv("podpy", "state", cid), check=True).stdout)["status"]

    assert status() == "running"
    rootful.cmd(box.argv("podpy", "pause", cid), check=True)
    assert status() == "paused"
    freezer = Path(f"/sys/fs/cgroup/freezer{cgroups_path}/freezer.state")
    assert freezer.read_text().strip() == "FROZEN"
    rootful.cmd(box.argv("podpy", "resume", cid), check=True)
    assert status() == "running" and freezer.read_text().strip() == "THAWED"
    rootful.cmd(box.argv("podpy", "pause", cid), check=True)
    rootful.cmd(box.argv("podpy", "delete", "--force", cid), check=True)
    assert not freezer.parent.exists()
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(box.state_root, ignore_errors=True)


@pytest.fixture
def restore_subreaper() -> Iterator[None]:
    """The built-in runtime makes its caller a child subreaper (the container init is its
    grandchild): when the caller is pytest itself, later tests' daemonised monitors would be
    reparented to pytest instead of PID 1. Undo it afterwards."""
    from podpy import linux

    yield
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 0)


@pytest.mark.parametrize("runtime", ["podpy", "runc"])
def test_python_api_of_both_backends(
    rootful: Any, probe_binary: Path, runtime: str, restore_subreaper: None
) -> None:
    from podpy.errors import CommandNotFound, InvalidState, NoSuchObject, PodpyError
    from podpy.runtime.oci import get_runtime

    base = rootful.home / f"api-{runtime}"
    base.mkdir()
    box = Containers(rootful, base, probe_binary)
    backend = get_runtime(runtime, root=str(base / "state"))
    bundle = box.bundle(command=["sleep", "60"])
    cid = "api" + uuid.uuid4().hex[:8]
    with open(base / "out", "wb") as out:
        pid = backend.create(str(bundle), cid, stdio=(0, out.fileno(), out.fileno()))
    try:
        state = backend.state(cid)
        assert (state["status"], state["pid"], state["id"]) == ("created", pid, cid)
        backend.start(cid)
        assert backend.state(cid)["status"] == "running"
        if runtime == "podpy":
            with pytest.raises(InvalidState):
                backend.delete(cid)
        else:
            with pytest.raises(PodpyError):
                backend.delete(cid)
        backend.kill(cid, 9)
        for _ in range(200):
            if backend.state(cid)["status"] == "stopped":
                break
            time.sleep(0.02)
        assert backend.state(cid)["status"] == "stopped"
    finally:
        backend.delete(cid, force=True)
    with pytest.raises(NoSuchObject):
        backend.state(cid)
    missing = box.bundle(command=["nosuchcommand"])
    with pytest.raises(CommandNotFound) as info:
        with open(base / "out", "wb") as out:
            backend.create(str(missing), cid + "x", stdio=(0, out.fileno(), out.fileno()))
    assert info.value.exit_code == 127
    assert str(info.value).startswith(f"{runtime}: {runtime} create failed: unable to start")
    assert 'exec: "nosuchcommand": executable file not found in $PATH' in str(info.value)
    shutil.rmtree(base, ignore_errors=True)
