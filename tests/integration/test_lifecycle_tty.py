"""`podpy run -it` through a real pseudo-terminal, as the rootless user and as root: typed input
reaches the container's shell, its output comes back, the exit code is the shell's, the
container sees a pts of the outer terminal's size, and `-t` without `-i` still gets a tty.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import termios
import time
import uuid
from typing import List, Tuple

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "python3"
ROWS, COLS = 37, 113


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class Terminal:
    """A command running on the slave side of a fresh pty of ROWS x COLS; we hold the master."""

    def __init__(self, argv: List[str], env: dict, cwd: str):
        pid, fd = pty.fork()
        if pid == 0:  # child: the pty is our controlling terminal (stdin/out/err)
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(126)
        self.pid, self.fd = pid, fd
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} not seen; got {self.output!r}"
            if not self._read_some(min(left, 0.5)):
                assert needle in self.output, f"EOF before {needle!r}; got {self.output!r}"
        return self.output

    def _read_some(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the slave side is closed
            return False
        self.output += data
        return bool(data)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def finish(self, timeout: float = 30.0) -> Tuple[int, bytes]:
        """Read to EOF, reap; the exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read_some(0.5):
            pass
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status), self.output
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"podpy did not exit; output {self.output!r}")


def start_terminal(runner, *args: str) -> Terminal:
    argv = runner._wrap([SYSTEM_PYTHON, "-I", str(runner.pyz), *runner.extra_args, *args])
    env = runner.env()
    env["TERM"] = "xterm"
    return Terminal(argv, env, str(runner.home))


def test_interactive_shell(as_each, image: str) -> None:
    name = unique_name("tty")
    term = start_terminal(as_each, "run", "-it", "--rm", "--name", name, image, "sh")
    term.read_until(b"# ")
    term.type("tty; stty size; echo hi-$((1+1))\r")
    out = term.read_until(b"hi-2\r\n")
    assert b"/dev/pts/0\r\n" in out
    assert f"{ROWS} {COLS}\r\n".encode() in out
    # our typed text is echoed by the container's pty, the result comes on its own line
    assert b"echo hi-$((1+1))" in out
    term.type("exit 7\r")
    code, _ = term.finish()
    assert code == 7
    assert as_each.ok("ps", "-aq") == ""  # --rm


def test_tty_without_stdin(as_each, image: str) -> None:
    term = start_terminal(
        as_each, "run", "-t", "--rm", image, "sh", "-c", "tty; stty size; test -t 0 && echo in-tty"
    )
    code, out = term.finish()
    assert code == 0, out
    assert b"/dev/pts/0\r\n" in out and f"{ROWS} {COLS}\r\n".encode() in out
    assert b"in-tty" in out


def test_tty_logs_and_exit_code_detached(as_each, image: str) -> None:
    """-t without a terminal on our side: the output is logged (one stream) and the code kept."""
    runner = as_each
    name = unique_name("ttyd")
    runner.ok("run", "-d", "-t", "--name", name, image, "sh", "-c", "echo on-pty; exit 3")
    assert runner.ok("wait", name).strip() == "3"
    logs = runner.podpy("logs", name)
    assert logs.stdout.replace("\r", "") == "on-pty\n" and logs.stderr == ""
    runner.ok("rm", name)
