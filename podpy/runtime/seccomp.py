"""Seccomp: podman's default profile, profile loading/filtering, and a pure-Python classic-BPF compiler.

A profile in podman's JSON form (with `includes`/`excludes` on capabilities and arches) is first
resolved into the OCI `linux.seccomp` section for one container, which `compile_filter` turns
into (code, jt, jf, k) instructions for the running architecture (x86_64, aarch64).
"""

from __future__ import annotations

import json
import os

from podpy.errors import PodpyError

TYPE_CHECKING = False  # typing costs ~5 ms of every container start
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

    Instruction = Tuple[int, int, int, int]
    Target = Union[int, str]

# classic BPF opcodes (linux/filter.h)
_LD_W_ABS = 0x20
_JMP_JA = 0x05
_JMP_JEQ_K = 0x15
_JMP_JGT_K = 0x25
_JMP_JGE_K = 0x35
_ALU_AND_K = 0x54
_RET_K = 0x06

# seccomp_data layout: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64)
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARGS = 16

# return values (linux/seccomp.h)
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

EPERM = 1

# uname machine -> (AUDIT_ARCH_*, SCMP_ARCH_* native, Go arch name used by profile `arches`)
_ARCHES = {
    "x86_64": (0xC000003E, "SCMP_ARCH_X86_64", "amd64"),
    "aarch64": (0xC00000B7, "SCMP_ARCH_AARCH64", "arm64"),
}
# x32 syscalls on x86_64 carry this bit in nr; they are not in the x86_64 table.
_X32_SYSCALL_BIT = 0x40000000

_FILTER_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

_OPS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)


class SeccompError(PodpyError):
    """A seccomp profile that cannot be parsed or compiled."""


# The kernel keyring is not namespaced, so one container could read or fill another's keys:
# like Docker's default profile, refuse keyctl too (podman's profile already refuses add_key
# and request_key but allows keyctl).
DENIED_BEYOND_PODMAN = frozenset({"keyctl"})


def default_profile() -> Dict[str, Any]:
    """A deep copy of the embedded podman default profile (podman's JSON form), minus
    DENIED_BEYOND_PODMAN, which then falls to the default action (ENOSYS)."""
    import copy

    from podpy.runtime._seccomp_data import DEFAULT_PROFILE

    profile = copy.deepcopy(DEFAULT_PROFILE)
    for rule in profile.get("syscalls") or []:
        if rule.get("action") == "SCMP_ACT_ALLOW":
            rule["names"] = [n for n in rule.get("names") or [] if n not in DENIED_BEYOND_PODMAN]
    return profile


def resolve_default_profile(
    capabilities: Iterable[str], machine: Optional[str] = None
) -> Dict[str, Any]:
    """resolve_profile(default_profile(), ...) without the deep copy: resolve_profile copies
    what it keeps, and DENIED_BEYOND_PODMAN is dropped from its output instead."""
    from podpy.runtime._seccomp_data import DEFAULT_PROFILE

    section = resolve_profile(DEFAULT_PROFILE, capabilities, machine)
    for rule in section["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            rule["names"] = [n for n in rule["names"] if n not in DENIED_BEYOND_PODMAN]
    section["syscalls"] = [rule for rule in section["syscalls"] if rule["names"]]
    return section


def load_profile(path: str) -> Dict[str, Any]:
    """Read a seccomp profile JSON file (podman/docker form, or an OCI `linux.seccomp` section)."""
    try:
        with open(path, encoding="utf-8") as f:
            profile = json.load(f)
    except FileNotFoundError as err:
        raise SeccompError(
            f"seccomp profile {path} does not exist",
            hint="pass an existing JSON file or seccomp=unconfined",
        ) from err
    except (OSError, ValueError) as err:
        raise SeccompError(f"cannot read seccomp profile {path}: {err}") from err
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise SeccompError(
            f"seccomp profile {path} has no defaultAction",
            hint="a profile is a JSON object with defaultAction and syscalls",
        )
    return profile


def machine_arch(machine: Optional[str] = None) -> str:
    machine = machine or os.uname().machine  # what platform.machine() answers, without it
    if machine not in _ARCHES:
        raise SeccompError(
            f"seccomp is not supported on architecture {machine}",
            hint="use --security-opt seccomp=unconfined",
        )
    return machine


def _kernel_version() -> Tuple[int, ...]:
    release = os.uname().release.split("-")[0]
    parts = []
    for piece in release.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _rule_applies(rule: Dict[str, Any], caps: Sequence[str], go_arch: str) -> bool:
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if includes.get("arches") and go_arch not in includes["arches"]:
        return False
    if includes.get("caps") and not all(c in caps for c in includes["caps"]):
        return False
    if includes.get("minKernel"):
        wanted = tuple(int(x) for x in str(includes["minKernel"]).split(".")[:3])
        if _kernel_version() < wanted:
            return False
    if excludes.get("arches") and go_arch in excludes["arches"]:
        return False
    if excludes.get("caps") and any(c in caps for c in excludes["caps"]):
        return False
    return True


def resolve_profile(
    profile: Dict[str, Any], capabilities: Iterable[str], machine: Optional[str] = None
) -> Dict[str, Any]:
    """Turn a podman-form profile into the OCI `linux.seccomp` section for these capabilities."""
    machine = machine_arch(machine)
    _, native, go_arch = _ARCHES[machine]
    caps = [c if c.startswith("CAP_") else "CAP_" + c for c in capabilities]
    architectures: List[str] = []
    if profile.get("architectures"):
        architectures = list(profile["architectures"])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            architectures = [native, *entry.get("subArchitectures", [])]
    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not _rule_applies(rule, caps, go_arch):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        if not names:
            continue
        entry: Dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            entry["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            entry["args"] = [dict(a) for a in rule["args"]]
        syscalls.append(entry)
    section: Dict[str, Any] = {
        "defaultAction": profile["defaultAction"],
        "architectures": architectures or [native],
        "syscalls": syscalls,
    }
    if profile.get("defaultErrnoRet") is not None:
        section["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("flags"):
        section["flags"] = list(profile["flags"])
    return section


def action_value(action: str, errno_ret: Optional[int] = None) -> int:
    """The SECCOMP_RET_* word for an OCI action name."""
    if action == "SCMP_ACT_ALLOW":
        return RET_ALLOW
    if action == "SCMP_ACT_ERRNO":
        return RET_ERRNO | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return RET_KILL_THREAD
    if action == "SCMP_ACT_KILL_PROCESS":
        return RET_KILL_PROCESS
    if action == "SCMP_ACT_TRAP":
        return RET_TRAP
    if action == "SCMP_ACT_LOG":
        return RET_LOG
    if action == "SCMP_ACT_TRACE":
        return RET_TRACE | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_NOTIFY":
        raise SeccompError(
            "seccomp action SCMP_ACT_NOTIFY is not supported by the built-in runtime",
            hint="use --runtime runc for seccomp notify profiles",
        )
    raise SeccompError(f"unknown seccomp action {action!r}")


def filter_flags(section: Dict[str, Any]) -> int:
    flags = 0
    for name in section.get("flags") or []:
        if name not in _FILTER_FLAGS:
            raise SeccompError(f"unknown seccomp flag {name!r}")
        flags |= _FILTER_FLAGS[name]
    return flags


class _Assembler:
    """Collects instructions whose jumps name labels, then resolves them to relative offsets."""

    def __init__(self) -> None:
        self.code: List[List[Any]] = []
        self.labels: Dict[str, int] = {}
        self._next = 0

    def label(self) -> str:
        self._next += 1
        return f"L{self._next}"

    def place(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, code: int, k: Target, jt: Target = 0, jf: Target = 0) -> None:
        self.code.append([code, jt, jf, k if isinstance(k, str) else k & 0xFFFFFFFF])

    def load(self, offset: int) -> None:
        self.emit(_LD_W_ABS, offset)

    def ret(self, value: int) -> None:
        self.emit(_RET_K, value)

    def jump(self, target: str) -> None:
        self.emit(_JMP_JA, target)  # k is a label until resolved

    def assemble(self) -> List[Instruction]:
        program: List[Instruction] = []
        for index, (code, jt, jf, k) in enumerate(self.code):
            if code == _JMP_JA and isinstance(k, str):
                k = self.labels[k] - index - 1
            jt = self._offset(index, jt)
            jf = self._offset(index, jf)
            program.append((code, jt, jf, k))
        if len(program) > 4096:
            raise SeccompError(f"seccomp filter too long ({len(program)} > 4096 instructions)")
        return program

    def _offset(self, index: int, target: Target) -> int:
        if isinstance(target, int):
            return target
        offset = self.labels[target] - index - 1
        if not 0 <= offset <= 255:
            raise SeccompError("internal error: seccomp conditional jump out of range")
        return offset


def _emit_arg_check(asm: _Assembler, arg: Dict[str, Any], fail: str) -> None:
    """Fall through when the 64-bit argument comparison holds, else jump to `fail`."""
    index = int(arg.get("index", 0))
    if not 0 <= index <= 5:
        raise SeccompError(f"seccomp argument index {index} out of range 0-5")
    op = arg.get("op")
    if op not in _OPS:
        raise SeccompError(f"unknown seccomp comparison {op!r}")
    value = int(arg.get("value", 0)) & 0xFFFFFFFFFFFFFFFF
    value_two = int(arg.get("valueTwo", 0)) & 0xFFFFFFFFFFFFFFFF
    lo_off = _OFFSET_ARGS + 8 * index  # little-endian: low word first
    hi_off = lo_off + 4
    hi, lo = value >> 32, value & 0xFFFFFFFF
    passed = asm.label()
    if op == "SCMP_CMP_EQ":
        asm.load(hi_off)
        asm.emit(_JMP_JEQ_K, hi, 0, fail)
        asm.load(lo_off)
        asm.emit(_JMP_JEQ_K, lo, 0, fail)
    elif op == "SCMP_CMP_NE":
        asm.load(hi_off)
        asm.emit(_JMP_JEQ_K, hi, 0, passed)
        asm.load(lo_off)
        asm.emit(_JMP_JEQ_K, lo, fail, 0)
    elif op == "SCMP_CMP_MASKED_EQ":
        datum_hi, datum_lo = value_two >> 32, value_two & 0xFFFFFFFF
        asm.load(hi_off)
        asm.emit(_ALU_AND_K, hi)
        asm.emit(_JMP_JEQ_K, datum_hi, 0, fail)
        asm.load(lo_off)
        asm.emit(_ALU_AND_K, lo)
        asm.emit(_JMP_JEQ_K, datum_lo, 0, fail)
    elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
        asm.load(hi_off)
        asm.emit(_JMP_JGT_K, hi, passed, 0)
        asm.emit(_JMP_JEQ_K, hi, 0, fail)
        asm.load(lo_off)
        asm.emit(_JMP_JGT_K if op == "SCMP_CMP_GT" else _JMP_JGE_K, lo, 0, fail)
    else:  # LT, LE
        asm.load(hi_off)
        asm.emit(_JMP_JGE_K, hi, 0, passed)
        asm.emit(_JMP_JEQ_K, hi, 0, fail)
        asm.load(lo_off)
        asm.emit(_JMP_JGE_K if op == "SCMP_CMP_LT" else _JMP_JGT_K, lo, fail, 0)
    asm.place(passed)


def compile_filter(section: Dict[str, Any], machine: Optional[str] = None) -> List[Instruction]:
    """Compile an OCI `linux.seccomp` section to classic BPF for this machine.

    Semantics follow libseccomp: per syscall, rules with argument conditions are tried in
    profile order before an unconditional rule; unknown syscall names are skipped (they may
    exist on other architectures only); everything else gets defaultAction.
    """
    machine = machine_arch(machine)
    from podpy.runtime import _seccomp_data

    table = _seccomp_data.SYSCALLS_X86_64 if machine == "x86_64" else _seccomp_data.SYSCALLS_AARCH64
    audit_arch = _ARCHES[machine][0]
    default = action_value(section["defaultAction"], section.get("defaultErrnoRet"))

    conditional: Dict[int, List[Tuple[List[Dict[str, Any]], int]]] = {}
    unconditional: Dict[int, int] = {}
    order: List[int] = []
    for rule in section.get("syscalls") or []:
        action = action_value(rule["action"], rule.get("errnoRet"))
        args = rule.get("args") or []
        for name in rule.get("names") or []:
            nr = table.get(name)
            if nr is None:
                continue
            if nr not in conditional and nr not in unconditional:
                order.append(nr)
            if args:
                conditional.setdefault(nr, []).append((args, action))
            else:
                unconditional.setdefault(nr, action)

    asm = _Assembler()
    native = asm.label()
    asm.load(_OFFSET_ARCH)
    asm.emit(_JMP_JEQ_K, audit_arch, native, 0)
    asm.ret(default)  # other ABIs (i386, x32 via arch field) get the default action
    asm.place(native)
    asm.load(_OFFSET_NR)
    if machine == "x86_64":
        not_x32 = asm.label()
        asm.emit(_JMP_JGE_K, _X32_SYSCALL_BIT, 0, not_x32)
        asm.ret(default)
        asm.place(not_x32)

    # Syscalls with only an unconditional rule: chains of JEQ sharing one RET per action.
    simple: Dict[int, List[int]] = {}
    for nr in order:
        if nr not in conditional and unconditional[nr] != default:
            simple.setdefault(unconditional[nr], []).append(nr)
    for action, numbers in simple.items():
        for start in range(0, len(numbers), 200):
            chunk = numbers[start : start + 200]
            hit, miss = asm.label(), asm.label()
            for nr in chunk:
                asm.emit(_JMP_JEQ_K, nr, hit, 0)
            asm.jump(miss)
            asm.place(hit)
            asm.ret(action)
            asm.place(miss)

    for nr in order:
        if nr not in conditional:
            continue
        block_end = asm.label()
        asm.load(_OFFSET_NR)
        matched = asm.label()
        asm.emit(_JMP_JEQ_K, nr, matched, 0)
        asm.jump(block_end)
        asm.place(matched)
        for args, action in conditional[nr]:
            rule_end = asm.label()
            for arg in args:
                _emit_arg_check(asm, arg, rule_end)
            asm.ret(action)
            asm.place(rule_end)
        asm.ret(unconditional.get(nr, default))
        asm.place(block_end)
    asm.ret(default)
    return asm.assemble()


def evaluate(
    program: Sequence[Instruction], nr: int, args: Sequence[int] = (), arch: Optional[int] = None
) -> int:
    """Run a compiled filter on one syscall in pure Python (for tests and `podpy` diagnostics)."""
    machine = machine_arch()
    data = [0] * 16  # seccomp_data as 32-bit words
    data[0] = nr & 0xFFFFFFFF
    data[1] = _ARCHES[machine][0] if arch is None else arch
    for i, value in enumerate(list(args)[:6]):
        data[4 + 2 * i] = value & 0xFFFFFFFF
        data[5 + 2 * i] = (value >> 32) & 0xFFFFFFFF
    acc = 0
    pc = 0
    while pc < len(program):
        code, jt, jf, k = program[pc]
        pc += 1
        if code == _LD_W_ABS:
            acc = data[k // 4]
        elif code == _ALU_AND_K:
            acc &= k
        elif code == _RET_K:
            return k
        elif code == _JMP_JA:
            pc += k
        elif code == _JMP_JEQ_K:
            pc += jt if acc == k else jf
        elif code == _JMP_JGT_K:
            pc += jt if acc > k else jf
        elif code == _JMP_JGE_K:
            pc += jt if acc >= k else jf
        else:
            raise SeccompError(f"unknown BPF opcode {code:#x}")
    raise SeccompError("BPF program fell off the end")


def syscall_number(name: str, machine: Optional[str] = None) -> int:
    from podpy.runtime import _seccomp_data

    machine = machine_arch(machine)
    table = _seccomp_data.SYSCALLS_X86_64 if machine == "x86_64" else _seccomp_data.SYSCALLS_AARCH64
    return table[name]
