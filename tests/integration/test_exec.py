"""`podpy exec` through the zipapp, as the rootless user and as root: the process runs inside the
container (namespaces, filesystem, seccomp, capabilities, user), podman's exit codes, env/-w/-u,
stdin with -i, a real pty with -t, and -d."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
import uuid
from typing import List, Tuple

import pytest


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def running(as_each, image: str) -> str:
    """A detached `sleep` container with a known hostname; removed afterwards."""
    name = unique_name("exec")
    as_each.ok("run", "-d", "--name", name, "--hostname", "box-" + name[-6:], image, "sleep", "600")
    yield name
    as_each.podpy("rm", "-f", name)


def status_line(text: str, key: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(key))


def test_exec_runs_inside_the_container(as_each, running: str) -> None:
    assert as_each.ok("exec", running, "hostname").strip() == "box-" + running[-6:]
    cmdline = as_each.ok("exec", running, "cat", "/proc/1/cmdline")
    assert cmdline.split("\0")[:2] == ["sleep", "600"]
    # A file written by exec is in the container's filesystem, as its main process sees it.
    as_each.ok("exec", running, "sh", "-c", "echo from-exec > /tmp/marker")
    assert as_each.ok("exec", running, "cat", "/proc/1/root/tmp/marker") == "from-exec\n"
    # Same pid namespace: the container's init is PID 1 and the exec'd shell is not.
    pids = as_each.ok("exec", running, "sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'")
    own_pid, count = (int(x) for x in pids.split())
    assert own_pid > 1 and count >= 2
    # Nothing of podpy's leaks in (state DB, sockets, namespace fds): stdio and ls's own dir fd.
    assert as_each.ok("exec", running, "ls", "/proc/self/fd").split() == ["0", "1", "2", "3"]


def test_exec_has_the_main_process_security(as_each, running: str) -> None:
    both = as_each.ok("exec", running, "cat", "/proc/self/status", "/proc/1/status")
    mine, init = both.split("Name:")[1], both.split("Name:")[2]
    for key in ("Seccomp", "CapEff", "CapBnd", "NoNewPrivs"):
        assert status_line(mine, key) == status_line(init, key), key
    assert status_line(mine, "Seccomp") == "2"
    assert status_line(mine, "CapEff") != "0000000000000000"


def test_exec_user_env_workdir(as_each, running: str) -> None:
    assert as_each.ok("exec", "-u", "1000", running, "id").strip() == "uid=1000(bob) gid=1000(bob)"
    status = as_each.ok("exec", "-u", "bob", running, "cat", "/proc/self/status")
    assert status_line(status, "CapEff") == "0000000000000000"  # podman: none for non-root
    assert status_line(status, "Seccomp") == "2"
    out = as_each.ok(
        "exec", "-w", "/tmp", "-e", "FOO=bar baz", running, "sh", "-c", 'pwd; echo "$FOO"'
    )
    assert out == "/tmp\nbar baz\n"
    privileged = as_each.ok("exec", "--privileged", running, "cat", "/proc/self/status")
    assert int(status_line(privileged, "CapEff"), 16) > int(status_line(status, "CapEff"), 16)


def test_exec_stdin_with_i(as_each, running: str) -> None:
    assert as_each.ok("exec", "-i", running, "cat", input="piped\n") == "piped\n"
    # Without -i stdin is not attached: cat sees EOF at once.
    assert as_each.ok("exec", running, "cat", input="ignored\n") == ""


def test_exec_exit_codes(as_each, running: str, image: str) -> None:
    assert as_each.podpy("exec", running, "true").returncode == 0
    assert as_each.podpy("exec", running, "false").returncode == 1
    assert as_each.podpy("exec", running, "sh", "-c", "exit 42").returncode == 42

    result = as_each.podpy("exec", running, "/etc/passwd")
    assert result.returncode == 126
    assert "permission denied" in result.stderr and result.stderr.startswith("Error: ")

    result = as_each.podpy("exec", running, "no-such-command")
    assert result.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in result.stderr

    stopped = unique_name("stopped")
    as_each.ok("create", "--name", stopped, image, "true")
    try:
        result = as_each.podpy("exec", stopped, "true")
        assert result.returncode == 125
        assert result.stderr.splitlines() == [
            "Error: can only create exec sessions on running containers: container state improper"
        ]
        result = as_each.podpy("exec", "no-such-container-" + stopped, "true")
        assert result.returncode == 125 and "no such container" in result.stderr
    finally:
        as_each.podpy("rm", "-f", stopped)


def test_exec_detached(as_each, running: str) -> None:
    session = as_each.ok("exec", "-d", running, "sh", "-c", "sleep 0.3; echo done > /tmp/detached")
    assert re.match(r"^[0-9a-f]{64}$", session.strip())
    deadline = time.monotonic() + 10
    while as_each.podpy("exec", running, "cat", "/tmp/detached").stdout != "done\n":
        assert time.monotonic() < deadline, "the detached exec never ran"
        time.sleep(0.2)


def _run_in_pty(
    argv: List[str], env: dict, send: bytes = b"", timeout: float = 30
) -> Tuple[int, bytes]:
    """Run argv with a pty as its terminal (like a user's shell); returns (exit code, output)."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    output = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not sent and send and b"READY" in output:
                os.write(master, send)
                sent = True
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break
                if not data:
                    break
                output += data
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(master)
    return os.waitstatus_to_exitcode(status), output


def test_exec_tty(as_each, running: str) -> None:
    # Without a terminal of our own: the command still gets a pty from the container's devpts.
    assert as_each.ok("exec", "-t", running, "tty").strip() == "/dev/pts/0"
    # Through a real terminal, interactively: input typed into it reaches the shell.
    argv = as_each._wrap(
        [
            "/usr/bin/python3",
            "-I",
            str(as_each.pyz),
            *as_each.extra_args,
            "exec",
            "-it",
            running,
            "sh",
            "-c",
            'echo READY; read line; echo "got:$line"; tty; exit 7',
        ]
    )
    code, output = _run_in_pty(argv, as_each.env(), send=b"hello\r")
    text = output.decode(errors="replace").replace("\r", "")
    assert code == 7, text
    assert "got:hello" in text
    assert "/dev/pts/0" in text


def test_exec_leaves_no_process_behind(as_each, running: str) -> None:
    for _ in range(3):
        as_each.ok("exec", running, "true")
    as_each.ok("exec", "-d", running, "true")
    time.sleep(0.5)
    # Only the container's own process is left in its pid namespace (no zombie either).
    rows = as_each.ok("top", running, "pid", "state", "args").splitlines()[1:]
    assert [row.split(None, 2) for row in rows] == [["1", "S", "sleep 600"]]
    # The host sees no leftover podpy exec helpers.
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [line for line in out.splitlines() if " exec " in line and running in line]
