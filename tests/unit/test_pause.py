"""podpy/pause.py's static pause executable: a valid ELF for x86_64 and aarch64 that, run on
this machine, waits for TERM/INT/HUP and exits 0 (no libc, no interpreter)."""

from __future__ import annotations

import os
import platform
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from podpy import pause


@pytest.mark.parametrize("machine,e_machine", [("x86_64", 62), ("aarch64", 183)])
def test_elf_headers(machine: str, e_machine: int) -> None:
    elf = pause.elf_pause(machine)
    assert elf is not None and len(elf) < 256
    assert elf[:4] == b"\x7fELF" and elf[4:7] == bytes([2, 1, 1])  # 64-bit, LE, version 1
    e_type, e_mach, _, entry, phoff = struct.unpack_from("<HHIQQ", elf, 16)
    assert (e_type, e_mach, phoff) == (2, e_machine, 64)
    p_type, p_flags, p_offset, p_vaddr, _, p_filesz, p_memsz = struct.unpack_from("<IIQQQQQ", elf, 64)  # fmt: skip
    assert (p_type, p_flags, p_offset, p_vaddr) == (1, 5, 0, pause.BASE)
    assert p_filesz == p_memsz == len(elf) and entry == pause.BASE + 120
    # the signal set is the last 8 bytes, 8-byte aligned
    assert struct.unpack("<Q", elf[-8:])[0] == pause.WAIT_SET and (len(elf) - 8) % 8 == 0


def test_aarch64_code_words() -> None:
    """adr/tbnz offsets point where they should (no aarch64 machine to run it on here)."""
    code = pause.elf_pause("aarch64")[120:]  # type: ignore[index]
    words = struct.unpack(f"<{(len(code) - 8) // 4}I", code[:-8])
    set_at = len(code) - 8
    adrs = [(i, w) for i, w in enumerate(words) if w & 0x9F000000 == 0x10000000]
    assert [w & 31 for _, w in adrs] == [1, 0]  # x1 for rt_sigprocmask, x0 for sigtimedwait
    for index, word in adrs:
        offset = (((word >> 5) & 0x7FFFF) << 2) | ((word >> 29) & 3)
        assert index * 4 + offset == set_at
    tbnz = [(i, w) for i, w in enumerate(words) if w & 0xFF000000 == 0xB7000000]
    assert len(tbnz) == 1
    index, word = tbnz[0]
    back = (word >> 5) & 0x3FFF
    back = back - 0x4000 if back & 0x2000 else back
    assert words[index + back] == adrs[1][1]  # loops back to the sigtimedwait set-up
    assert words.count(0xD4000001) == 3  # three system calls


def test_unsupported_machine_has_no_pause() -> None:
    assert pause.elf_pause("riscv64") is None


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="native run")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_native_pause_exits_0_on_its_signals(tmp_path: Path, sig: int) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(pause.elf_pause())  # type: ignore[arg-type]
    binary.chmod(0o755)
    proc = subprocess.Popen([str(binary)])
    deadline = time.monotonic() + 10
    # wait until it sleeps in rt_sigtimedwait (the set blocked), or the signal would kill it
    waiting = {"x86_64": "128", "aarch64": "137"}[platform.machine()]
    while True:
        with open(f"/proc/{proc.pid}/syscall") as f:
            if f.read().split()[0] == waiting:
                break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGSTOP)  # an interruption (EINTR) just waits again
    os.kill(proc.pid, signal.SIGCONT)
    assert proc.poll() is None
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=10) == 0
