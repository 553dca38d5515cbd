"""The seccomp profile resolution and the classic-BPF compiler, checked by running the programs."""

from __future__ import annotations

import json

import pytest

from podpy.runtime import seccomp
from podpy.runtime.caps import DEFAULT_CAPABILITIES

ALLOW = seccomp.RET_ALLOW
ENOSYS, EPERM, EINVAL, EACCES = 38, 1, 22, 13
MACHINES = ["x86_64", "aarch64"]
AUDIT = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def errno_ret(value: int) -> int:
    return seccomp.RET_ERRNO | value


@pytest.fixture(scope="module")
def default_section():
    return seccomp.resolve_profile(seccomp.default_profile(), DEFAULT_CAPABILITIES, "x86_64")


def run(program, name, args=(), machine="x86_64"):
    """Evaluate the program for one syscall of `machine`, with that machine's audit arch."""
    nr = seccomp.syscall_number(name, machine)
    return seccomp.evaluate(program, nr, args, arch=AUDIT[machine])


def test_syscall_tables_match_kernel_numbers():
    assert seccomp.syscall_number("read", "x86_64") == 0
    assert seccomp.syscall_number("pivot_root", "x86_64") == 155
    assert seccomp.syscall_number("seccomp", "x86_64") == 317
    assert seccomp.syscall_number("openat", "aarch64") == 56
    assert seccomp.syscall_number("fstat", "aarch64") == 80
    assert seccomp.syscall_number("pivot_root", "aarch64") == 41
    assert seccomp.syscall_number("clone3", "aarch64") == 435


def test_default_profile_filters_rules_by_capabilities(default_section):
    names = {n for rule in default_section["syscalls"] for n in rule["names"]}
    allowed = {
        n
        for rule in default_section["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW"
        for n in rule["names"]
    }
    assert "read" in allowed and "chroot" in allowed  # SYS_CHROOT is a default capability
    assert "bpf" in names and "bpf" not in allowed  # needs SYS_ADMIN
    assert "s390_pci_mmio_read" not in names  # other arches dropped
    assert default_section["defaultAction"] == "SCMP_ACT_ERRNO"
    assert default_section["defaultErrnoRet"] == ENOSYS
    assert default_section["architectures"][0] == "SCMP_ARCH_X86_64"

    with_admin = seccomp.resolve_profile(
        seccomp.default_profile(), [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], "x86_64"
    )
    admin_allowed = {
        n for r in with_admin["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]
    }
    assert "bpf" in admin_allowed


@pytest.mark.parametrize("machine", MACHINES)
def test_default_profile_decisions(machine):
    section = seccomp.resolve_profile(seccomp.default_profile(), DEFAULT_CAPABILITIES, machine)
    program = seccomp.compile_filter(section, machine)
    assert 0 < len(program) <= 4096
    assert run(program, "read", machine=machine) == ALLOW
    assert run(program, "execve", machine=machine) == ALLOW
    assert run(program, "kexec_load", machine=machine) == errno_ret(EPERM)
    assert run(program, "bpf", machine=machine) == errno_ret(EPERM)
    assert run(program, "add_key", machine=machine) == errno_ret(ENOSYS)  # not listed: default
    # personality: only listed argument values are allowed.
    assert run(program, "personality", (8,), machine) == ALLOW
    assert run(program, "personality", (0xFFFFFFFF,), machine) == ALLOW
    assert run(program, "personality", (0x40008,), machine) == errno_ret(ENOSYS)
    # socket(AF_NETLINK, *, NETLINK_AUDIT) is refused without CAP_AUDIT_WRITE.
    assert run(program, "socket", (16, 3, 9), machine) == errno_ret(EINVAL)
    assert run(program, "socket", (16, 3, 0), machine) == ALLOW
    assert run(program, "socket", (2, 1, 0), machine) == ALLOW


def test_foreign_architecture_and_x32_get_the_default_action(default_section):
    program = seccomp.compile_filter(default_section, "x86_64")
    i386 = 0x40000003
    assert seccomp.evaluate(program, 0, arch=i386) == errno_ret(ENOSYS)
    assert seccomp.evaluate(program, 0x40000000 | 0, arch=AUDIT["x86_64"]) == errno_ret(ENOSYS)
    assert seccomp.evaluate(program, 0, arch=AUDIT["x86_64"]) == ALLOW


def _section(args, action="SCMP_ACT_ALLOW", default="SCMP_ACT_ERRNO"):
    return {
        "defaultAction": default,
        "syscalls": [{"names": ["read"], "action": action, "args": args}],
    }


@pytest.mark.parametrize(
    "op,value,two,hits,misses",
    [
        ("SCMP_CMP_EQ", 5, 0, [5], [4, 6, 5 | 1 << 32]),
        ("SCMP_CMP_NE", 5, 0, [4, 5 | 1 << 32], [5]),
        ("SCMP_CMP_GT", 1 << 32, 0, [(1 << 32) + 1, 2 << 32], [1 << 32, 5]),
        ("SCMP_CMP_GE", 1 << 32, 0, [1 << 32, 2 << 32], [(1 << 32) - 1]),
        ("SCMP_CMP_LT", (1 << 32) + 5, 0, [5, (1 << 32) + 4], [(1 << 32) + 5, 2 << 32]),
        ("SCMP_CMP_LE", (1 << 32) + 5, 0, [(1 << 32) + 5, 0], [(1 << 32) + 6]),
        ("SCMP_CMP_MASKED_EQ", 0xFF00000000FF, 0x120000000034, [0x1200000AB034], [0x34]),
    ],
)
def test_64bit_argument_comparisons(op, value, two, hits, misses):
    rule = [{"index": 1, "value": value, "valueTwo": two, "op": op}]
    program = seccomp.compile_filter(_section(rule), "x86_64")
    for arg in hits:
        assert run(program, "read", (0, arg)) == ALLOW, (op, hex(arg))
    for arg in misses:
        assert run(program, "read", (0, arg)) == errno_ret(EPERM), (op, hex(arg))


def test_rules_for_one_syscall_are_tried_in_order_before_the_unconditional_one():
    section = {
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [
            {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
            {
                "names": ["write"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EACCES,
                "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}],
            },
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
            {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"},
        ],
    }
    program = seccomp.compile_filter(section, "x86_64")
    assert run(program, "write", (2,)) == errno_ret(EACCES)
    assert run(program, "write", (1,)) == ALLOW
    assert run(program, "getpid") == seccomp.RET_LOG
    assert run(program, "getppid") == seccomp.RET_KILL_PROCESS


def test_long_allow_lists_are_chunked_within_jump_range():
    from podpy.runtime import _seccomp_data

    every = sorted(_seccomp_data.SYSCALLS_X86_64)
    section = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": every, "action": "SCMP_ACT_ALLOW"}],
    }
    program = seccomp.compile_filter(section, "x86_64")
    assert all(0 <= jt <= 255 and 0 <= jf <= 255 for _, jt, jf, _ in program)
    assert run(program, "getppid") == ALLOW
    assert run(program, "io_uring_setup") == ALLOW


def test_bad_profiles_give_clear_errors(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(seccomp.SeccompError, match="does not exist"):
        seccomp.load_profile(str(missing))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(seccomp.SeccompError, match="cannot read seccomp profile"):
        seccomp.load_profile(str(broken))
    no_default = tmp_path / "nodefault.json"
    no_default.write_text(json.dumps({"syscalls": []}))
    with pytest.raises(seccomp.SeccompError, match="defaultAction"):
        seccomp.load_profile(str(no_default))
    with pytest.raises(seccomp.SeccompError, match="unknown seccomp action"):
        seccomp.compile_filter({"defaultAction": "SCMP_ACT_MAYBE"}, "x86_64")
    bad_op = _section([{"index": 0, "value": 1, "op": "SCMP_CMP_ROUGHLY"}])
    with pytest.raises(seccomp.SeccompError, match="unknown seccomp comparison"):
        seccomp.compile_filter(bad_op, "x86_64")
    with pytest.raises(seccomp.SeccompError, match="not supported on architecture"):
        seccomp.compile_filter({"defaultAction": "SCMP_ACT_ALLOW"}, "mips")


def test_default_profile_refuses_keyctl_like_docker():
    """The keyring is not namespaced: keyctl is not in any allow rule of podpy's default."""
    from podpy.runtime import seccomp

    allowed = {
        name
        for rule in seccomp.default_profile()["syscalls"]
        if rule.get("action") == "SCMP_ACT_ALLOW"
        for name in rule.get("names") or []
    }
    assert "keyctl" not in allowed and "add_key" not in allowed
    assert "read" in allowed and "clone3" not in seccomp.DENIED_BEYOND_PODMAN


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize(
    "caps", [DEFAULT_CAPABILITIES, [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"], []]
)
def test_resolve_default_profile_is_resolve_of_default_profile(machine, caps):
    """The monitor's shortcut (no deep copy of the embedded profile) gives the same section,
    keyctl still refused, and leaves the embedded profile untouched."""
    from podpy.runtime._seccomp_data import DEFAULT_PROFILE

    before = json.dumps(DEFAULT_PROFILE, sort_keys=True)
    fast = seccomp.resolve_default_profile(caps, machine)
    assert fast == seccomp.resolve_profile(seccomp.default_profile(), caps, machine)
    assert not any(
        "keyctl" in r["names"] for r in fast["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
    )
    fast["syscalls"][0]["names"].append("mutated")
    assert json.dumps(DEFAULT_PROFILE, sort_keys=True) == before
    program = seccomp.compile_filter(fast, machine)
    assert run(program, "keyctl", machine=machine) == errno_ret(ENOSYS)
