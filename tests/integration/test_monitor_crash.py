"""Crash safety: a detached container's monitor killed with SIGKILL. The next podpy command says
so in one line and marks the container exited, nothing of the container keeps running, and
`rm` works without leaking a mount. Also: a container outlives the podpy that started it.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
import uuid
from typing import Dict, List

from procs import cmdline_of, mounts_mentioning, parent_of, pid_alive, wait_gone


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def inspect_one(runner, ref: str) -> Dict:
    return json.loads(runner.ok("inspect", "--type", "container", ref))[0]


def processes_in_pidns_of(pid: int) -> List[int]:
    """Host pids sharing `pid`'s pid namespace (the container's processes)."""
    try:
        target = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == target:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def test_killed_monitor_is_noticed_and_cleaned(as_each, image: str) -> None:
    runner = as_each
    name = unique_name("crash")
    cid = runner.ok("run", "-d", "--name", name, image, "sh", "-c", "sleep 300 & sleep 300").strip()
    state = inspect_one(runner, name)["State"]
    monitor, container = state["ConmonPid"], state["Pid"]
    assert monitor > 0 and container > 0 and monitor != container
    assert pid_alive(monitor) and pid_alive(container)
    members = processes_in_pidns_of(container)
    assert len(members) >= 2  # sh and its two sleeps
    merged = json.loads(runner.ok("inspect", name))[0]["StaticDir"].rsplit("/", 1)[0] + "/merged"

    os.kill(monitor, 9)
    assert wait_gone(monitor)

    listing = runner.podpy("ps", "-a")
    assert listing.returncode == 0
    notes = [ln for ln in listing.stderr.splitlines() if ln.strip()]
    assert len(notes) == 1, listing.stderr
    assert name in notes[0] and "monitor" in notes[0] and "exited" in notes[0]
    row = next(ln for ln in listing.stdout.splitlines() if name in ln)
    assert "Exited (137)" in row

    # said once: the repair is recorded, the next command is quiet
    again = runner.podpy("ps", "-a")
    assert again.stderr.strip() == "" and "Exited (137)" in again.stdout

    # every process of the container is gone within a few seconds
    for pid in members:
        assert wait_gone(pid), f"container process {pid} survived its monitor"
    after = inspect_one(runner, name)["State"]
    assert after["Status"] == "exited" and after["Running"] is False and after["Pid"] == 0
    assert after["ExitCode"] == 137

    assert runner.ok("rm", name).strip() == name  # podman echoes the name as given
    assert not mounts_mentioning(cid)
    assert not mounts_mentioning(merged)
    assert not os.path.exists(merged)
    assert runner.ok("ps", "-aq") == ""


def test_killed_monitor_noticed_by_wait_and_start(as_each, image: str) -> None:
    """`wait` does not hang on a dead monitor, and the container can be started again."""
    runner = as_each
    name = unique_name("crash2")
    runner.ok("run", "-d", "--name", name, image, "sleep", "300")
    state = inspect_one(runner, name)["State"]
    os.kill(state["ConmonPid"], 9)
    assert wait_gone(state["ConmonPid"])
    waited = runner.podpy("wait", name, timeout=30)
    assert waited.returncode == 0 and waited.stdout.strip() == "137"
    assert "lost its monitor" in waited.stderr
    assert wait_gone(state["Pid"])
    runner.ok("start", name)
    fresh = inspect_one(runner, name)["State"]
    assert fresh["Status"] == "running" and fresh["Pid"] != state["Pid"] and pid_alive(fresh["Pid"])
    runner.ok("rm", "-f", name)
    assert wait_gone(fresh["Pid"])


def test_container_outlives_its_launcher(as_each, image: str) -> None:
    """The shim promise: `run -d` returns, the container keeps running and logging."""
    runner = as_each
    name = unique_name("shim")
    runner.ok(
        "run",
        "-d",
        "--name",
        name,
        image,
        "sh",
        "-c",
        "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
    )
    state = inspect_one(runner, name)["State"]
    monitor = state["ConmonPid"]
    # the monitor is in its own session, not a child of anything we started
    with open(f"/proc/{monitor}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    assert int(fields[3]) != os.getsid(0)  # its own session, no terminal of ours
    assert int(fields[1]) != os.getpid()  # not our child
    time.sleep(1.5)
    ticks = [ln for ln in runner.ok("logs", name).splitlines() if ln.startswith("tick-")]
    assert len(ticks) >= 4
    assert ticks == [f"tick-{i}" for i in range(len(ticks))]
    runner.ok("rm", "-f", name)
    assert wait_gone(monitor)


def test_monitor_slims_down_and_keeps_supervising(as_each, image: str) -> None:
    """After start the monitor re-executes itself (same pid) into the supervision-only
    image; it still relays output, serves `stop`, records the exit and frees the network."""
    name = unique_name("slim")
    as_each.ok(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        "127.0.0.1::8080",
        image,
        "sh",
        "-c",
        "echo started; trap 'echo bye; exit 5' TERM; while :; do sleep 0.1; done",
    )
    monitor = inspect_one(as_each, name)["State"]["ConmonPid"]
    deadline = time.monotonic() + 10
    while "--resume" not in open(f"/proc/{monitor}/cmdline").read():
        assert time.monotonic() < deadline, "the monitor never re-executed itself"
        time.sleep(0.05)
    # rootless: slirp4netns; root (the podpy0 bridge): the keeper that removes the DNAT rules
    helper = "slirp4netns" if as_each.user else "podpy-unpublish"
    slirp = [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and parent_of(int(p)) == monitor and helper in cmdline_of(int(p))
    ]
    assert slirp, f"{helper} should be the (re-executed) monitor's child"
    as_each.ok("stop", "-t", "5", name)
    state = inspect_one(as_each, name)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 5
    assert wait_gone(monitor) and all(wait_gone(p) for p in slirp)
    assert as_each.ok("logs", name).split() == ["started", "bye"]
    as_each.ok("rm", name)


def _connect(path: str) -> socket.socket:
    """connect() to a unix socket whose path may be past sun_path's 108 bytes."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
    finally:
        os.close(dir_fd)
    return sock


def _read_frames_until(sock: socket.socket, needle: bytes, timeout: float = 30) -> bytes:
    """Payloads of attach frames ([stream, 0, 0, 0, len_be32] + data) until `needle` shows."""
    data, payload = b"", b""
    deadline = time.monotonic() + timeout
    sock.settimeout(1)
    while needle not in payload:
        assert time.monotonic() < deadline, f"no {needle!r} in {payload!r}"
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        assert chunk, f"attach socket closed; got {payload!r}"
        data += chunk
        while len(data) >= 8:
            size = struct.unpack(">I", data[4:8])[0]
            if len(data) < 8 + size:
                break
            payload, data = payload + data[8 : 8 + size], data[8 + size :]
    return payload


def test_attach_client_is_handed_over_when_slimming(as_each, image: str) -> None:
    """A client that attached before the monitor re-executed itself stays attached: it keeps
    receiving output and its input still reaches the container."""
    name = unique_name("slimatt")
    cid = as_each.ok(
        "run",
        "-d",
        "-i",
        "--name",
        name,
        image,
        "sh",
        "-c",
        "while read line; do echo got $line; done",
        env={"PODPY_MONITOR_LEAN_AFTER": "3"},
    ).strip()
    try:
        store = json.loads(as_each.ok("info", "--format", "json"))["store"]
        monitor = inspect_one(as_each, name)["State"]["ConmonPid"]
        sock = _connect(os.path.join(store["runRoot"], "containers", cid, "attach.sock"))
        assert "--resume" not in cmdline_of(monitor), "re-executed before the client attached"
        sock.sendall(b"before\n")
        assert b"got before" in _read_frames_until(sock, b"got before")
        deadline = time.monotonic() + 30
        while "--resume" not in cmdline_of(monitor):
            assert time.monotonic() < deadline, "the monitor never re-executed itself"
            time.sleep(0.05)
        sock.sendall(b"after\n")
        assert b"got after" in _read_frames_until(sock, b"got after")
        sock.close()
        assert inspect_one(as_each, name)["State"]["Status"] == "running"
    finally:
        as_each.podpy("rm", "-f", name)
