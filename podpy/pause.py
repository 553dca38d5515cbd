"""The pod infra process: holds the pod's namespaces open and exits on TERM/INT/HUP.

The infra runs a tiny static ELF that elf_pause() assembles here for x86_64 and aarch64 (what
catatonit -P does for podman, in ~170 bytes and no libc): block SIGHUP, SIGINT and SIGTERM
with rt_sigprocmask, wait for one with rt_sigtimedwait (again after EINTR), exit_group(0). A
blocked signal is never "ignored by PID 1", so `pod stop` ends it at once. The pod engine
writes it into the infra's root as /pause.

On other machines the fallback is this very file, stdlib only and self-contained (no podpy
imports): the pod engine copies it into the infra root and runs it with the host's python3
(`python3 -I -S /pause.py`), with handlers for the same signals and a reaper.
"""

import os
import signal
import struct
import sys
from typing import Optional

BASE = 0x400000  # load address of the ELF (one PT_LOAD segment: headers and code)
_HEADERS = 64 + 56  # ELF header + one program header; the code follows
# SIGHUP (1), SIGINT (2), SIGTERM (15): bit (signal - 1) of the kernel's sigset_t.
WAIT_SET = (1 << 0) | (1 << 1) | (1 << 14)
EM_X86_64, EM_AARCH64 = 62, 183


def _x86_64_code() -> bytes:
    code = bytearray()
    fixups = []  # ends of rip-relative displacements to the signal set

    def lea_set(reg: int) -> None:  # lea r64, [rip + set] (rsi = 6, rdi = 7)
        code.extend(bytes([0x48, 0x8D, 0x05 | (reg << 3)]) + b"\0\0\0\0")
        fixups.append(len(code))

    code += b"\xb8\x0e\x00\x00\x00"  # mov eax, 14: rt_sigprocmask
    code += b"\x31\xff"  # xor edi, edi: SIG_BLOCK
    lea_set(6)  # rsi = &set
    code += b"\x31\xd2"  # xor edx, edx: no old set
    code += b"\x41\xba\x08\x00\x00\x00"  # mov r10d, 8: sizeof(sigset_t)
    code += b"\x0f\x05"  # syscall
    loop = len(code)
    code += b"\xb8\x80\x00\x00\x00"  # mov eax, 128: rt_sigtimedwait
    lea_set(7)  # rdi = &set
    code += b"\x31\xf6"  # xor esi, esi: no siginfo
    code += b"\x31\xd2"  # xor edx, edx: no timeout
    code += b"\x41\xba\x08\x00\x00\x00"  # mov r10d, 8
    code += b"\x0f\x05"  # syscall
    code += b"\x85\xc0"  # test eax, eax
    code += b"\x78" + struct.pack("b", loop - (len(code) + 2))  # js loop: -EINTR, wait again
    code += b"\xb8\xe7\x00\x00\x00"  # mov eax, 231: exit_group
    code += b"\x31\xff"  # xor edi, edi: status 0
    code += b"\x0f\x05"  # syscall
    while len(code) % 8:
        code += b"\x90"
    for end in fixups:
        code[end - 4 : end] = struct.pack("<i", len(code) - end)
    return bytes(code) + struct.pack("<Q", WAIT_SET)


def _aarch64_code() -> bytes:
    def movz(rd: int, imm: int) -> int:  # movz xD, #imm
        return 0xD2800000 | (imm << 5) | rd

    def adr(rd: int, offset: int) -> int:  # adr xD, pc + offset
        return ((offset & 3) << 29) | 0x10000000 | (((offset >> 2) & 0x7FFFF) << 5) | rd

    svc = 0xD4000001  # svc #0
    words = [movz(0, 0), 0, movz(2, 0), movz(3, 8), movz(8, 135), svc]  # rt_sigprocmask
    first_adr = 1  # adr x1, set: patched once the set's place is known
    loop = len(words)
    words += [0, movz(1, 0), movz(2, 0), movz(3, 8), movz(8, 137), svc]  # rt_sigtimedwait
    # tbnz x0, #63, loop: a negative result (-EINTR) waits again
    words.append(0xB7F80000 | (((loop - len(words)) & 0x3FFF) << 5))
    words += [movz(0, 0), movz(8, 94), svc]  # exit_group(0)
    if len(words) % 2:
        words.append(0xD503201F)  # nop: the set stays 8-byte aligned
    set_at = len(words) * 4
    words[first_adr] = adr(1, set_at - first_adr * 4)
    words[loop] = adr(0, set_at - loop * 4)
    return struct.pack(f"<{len(words)}I", *words) + struct.pack("<Q", WAIT_SET)


def elf_pause(machine: Optional[str] = None) -> Optional[bytes]:
    """The static pause executable for `machine` (os.uname().machine), None if unsupported."""
    machine = machine or os.uname().machine
    if machine in ("x86_64", "amd64"):
        e_machine, code = EM_X86_64, _x86_64_code()
    elif machine in ("aarch64", "arm64"):
        e_machine, code = EM_AARCH64, _aarch64_code()
    else:
        return None
    size = _HEADERS + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian, SysV
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, e_machine, 1, BASE + _HEADERS, 64, 0, 0, 64, 56, 1, 0, 0, 0
    )
    # PT_LOAD, R+X, the whole file at BASE
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, size, size, 0x1000)
    return header + program + code


def _reap(*_args: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _leave(signum: int, _frame: object) -> None:
    _reap()
    os._exit(0 if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) else 128 + signum)


def main(argv: object = None) -> int:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _leave)
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
