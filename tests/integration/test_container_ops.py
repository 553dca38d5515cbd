"""attach, restart, pause/unpause, top, rename, port, stats, events and container prune through
the zipapp, as the rootless user and as root."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
import uuid
from typing import List

import pytest


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def status_of(runner, ref: str) -> str:
    return runner.ok("inspect", "--type", "container", "--format", "{{.State.Status}}", ref).strip()


def container_id(runner, ref: str) -> str:
    return runner.ok("inspect", "--type", "container", "--format", "{{.Id}}", ref).strip()


def wait_for(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_attach_sees_output_and_detaches(as_each, image: str) -> None:
    name = unique_name("att")
    script = "i=0; while true; do echo tick $i; echo warn $i >&2; i=$((i+1)); sleep 0.2; done"
    as_each.ok("run", "-d", "-i", "--name", name, image, "sh", "-c", script)
    try:
        proc = subprocess.Popen(
            as_each._wrap([*_podpy_argv(as_each), "attach", name]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=as_each.env(),
        )
        seen = _read_until(proc, lambda text: len(re.findall(rb"^tick", text, re.M)) >= 3)
        assert proc.poll() is None, "attach ended on its own"
        proc.stdin.write(b"\x10\x11")  # ctrl-p ctrl-q
        proc.stdin.flush()
        out, err = proc.communicate(timeout=20)
        out = seen + out
        assert proc.returncode == 0, err
        ticks = re.findall(rb"^tick (\d+)$", out, re.M)
        assert len(ticks) >= 3
        # Only what the container printed after attaching, in order.
        assert [int(t) for t in ticks] == list(range(int(ticks[0]), int(ticks[0]) + len(ticks)))
        assert re.search(rb"^warn \d+$", err, re.M), "stderr frames go to stderr"
        assert status_of(as_each, name) == "running"
    finally:
        as_each.podpy("rm", "-f", name)


def test_attach_returns_the_exit_code(as_each, image: str) -> None:
    name = unique_name("att")
    as_each.ok("run", "-d", "--name", name, image, "sh", "-c", "sleep 4; echo bye; exit 7")
    try:
        result = as_each.podpy("attach", "--no-stdin", name, timeout=30)
        assert result.returncode == 7
        assert result.stdout == "bye\n"
        result = as_each.podpy("attach", name)
        assert result.returncode == 125
        assert "you can only attach to running containers" in result.stderr
    finally:
        as_each.podpy("rm", "-f", name)


def test_attach_forwards_terminal_resize(as_each, image: str) -> None:
    """`attach` to a -t container sets the container's pty to this terminal's size, and again
    on every SIGWINCH (the terminal resized), as podman's attach does through conmon."""
    import fcntl
    import pty
    import struct
    import termios

    name = unique_name("rsz")
    as_each.ok("run", "-d", "-it", "--name", name, image, "sh")
    argv = as_each._wrap([*_podpy_argv(as_each), "attach", name])
    pid, master = pty.fork()
    if pid == 0:  # the attach client, on a terminal of 31x97
        try:
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 97, 0, 0))
            os.chdir(str(as_each.home))
            os.execvpe(argv[0], argv, as_each.env())
        finally:
            os._exit(127)
    output = b""

    def size_seen(rows: int, cols: int) -> None:
        nonlocal output
        deadline = time.monotonic() + 30
        while not re.search(rb"(?m)^%d %d\r?$" % (rows, cols), output):
            assert time.monotonic() < deadline, f"no {rows} {cols} in {output[-400:]!r}"
            os.write(master, b"stty size\n")
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        output += os.read(master, 65536)
                    except OSError:
                        break

    try:
        size_seen(31, 97)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # SIGWINCH
        size_seen(40, 120)
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q: detach
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert status_of(as_each, name) == "running"
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(master)
        as_each.podpy("rm", "-f", name)


def _read_until(proc: subprocess.Popen, done, timeout: float = 60.0) -> bytes:
    """Read proc's stdout until done(output) holds (fails after timeout; the machine may be slow)."""
    output = b""
    deadline = time.monotonic() + timeout
    while not done(output):
        assert time.monotonic() < deadline, f"timed out; output so far: {output!r}"
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"output ended early: {output!r}"
            output += chunk
    return output


def _podpy_argv(runner) -> List[str]:
    return ["/usr/bin/python3", "-I", str(runner.pyz), *runner.extra_args]


def test_restart_keeps_the_container(as_each, image: str) -> None:
    name = unique_name("rs")
    cid = as_each.ok(
        "run", "-d", "--name", name, image, "sh", "-c", "date +%s%N > /tmp/boot; sleep 600"
    )
    cid = cid.strip()
    try:
        first_pid = as_each.ok("inspect", "--format", "{{.State.Pid}}", name).strip()
        assert as_each.ok("restart", "-t", "0", name).strip() == name
        assert container_id(as_each, name) == cid
        assert status_of(as_each, name) == "running"
        assert as_each.ok("inspect", "--format", "{{.State.Pid}}", name).strip() != first_pid
        # A stopped container starts again too.
        as_each.ok("stop", "-t", "0", name)
        assert status_of(as_each, name) == "exited"
        as_each.ok("restart", name)
        assert status_of(as_each, name) == "running"
        result = as_each.podpy("restart", "no-such-" + name)
        assert result.returncode == 125 and "no such container" in result.stderr
    finally:
        as_each.podpy("rm", "-f", name)


def test_pause_unpause_as_root(rootful, busybox_image: str) -> None:
    rootful.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name = unique_name("pz")
    script = "while true; do date +%s%N > /tmp/now; sleep 0.05; done"
    rootful.ok("run", "-d", "--name", name, busybox_image, "sh", "-c", script)
    try:
        assert rootful.ok("pause", name).strip() == name
        assert status_of(rootful, name) == "paused"
        ps = rootful.ok("ps", "--format", "{{.Names}} {{.Status}}")
        assert f"{name} Paused" in ps
        # podman: a paused container is still Running, and Paused
        flags = rootful.ok("inspect", "--format", "{{.State.Running}} {{.State.Paused}}", name)
        assert flags.split() == ["true", "true"]
        pid = int(rootful.ok("inspect", "--format", "{{.State.Pid}}", name))
        with open(f"/proc/{pid}/root/tmp/now") as f:
            frozen_at = f.read()
        time.sleep(0.5)
        with open(f"/proc/{pid}/root/tmp/now") as f:
            assert f.read() == frozen_at, "the container kept running while paused"
        result = rootful.podpy("exec", name, "true")
        assert result.returncode == 125 and "container state improper" in result.stderr
        result = rootful.podpy("pause", name)
        assert result.returncode == 125 and "is not running, can't pause" in result.stderr
        assert rootful.ok("unpause", name).strip() == name
        assert status_of(rootful, name) == "running"
        wait_for(lambda: open(f"/proc/{pid}/root/tmp/now").read() != frozen_at, what="thaw")
        result = rootful.podpy("unpause", name)
        assert result.returncode == 125 and "is not paused" in result.stderr
        # A paused container can still be stopped and removed at once.
        rootful.ok("pause", name)
        started = time.monotonic()
        rootful.ok("rm", "-f", name)
        assert time.monotonic() - started < 10
    finally:
        rootful.podpy("rm", "-f", name)


def test_pause_rootless_is_a_clear_error(rootless, busybox_image: str) -> None:
    rootless.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name = unique_name("pz")
    rootless.ok("run", "-d", "--name", name, busybox_image, "sleep", "600")
    try:
        result = rootless.podpy("pause", name)
        assert result.returncode == 125
        lines = result.stderr.splitlines()
        assert lines[0].startswith("Error: pause is not supported for rootless containers")
        assert lines[1].startswith("Hint: ") and "cgroup" in lines[1]
        assert status_of(rootless, name) == "running"
        result = rootless.podpy("stats", "--no-stream", name)
        assert result.returncode == 125
        assert "stats is not supported in rootless mode without cgroups v2" in result.stderr
    finally:
        rootless.podpy("rm", "-f", name)


def test_top(as_each, image: str) -> None:
    name = unique_name("top")
    as_each.ok("run", "-d", "--name", name, image, "sleep", "600")
    try:
        lines = as_each.ok("top", name).splitlines()
        assert lines[0].split() == [
            "USER",
            "PID",
            "PPID",
            "%CPU",
            "ELAPSED",
            "TTY",
            "TIME",
            "COMMAND",
        ]
        assert len(lines) == 2
        user, pid, ppid, _cpu, _elapsed, tty, _time, command = lines[1].split(None, 7)
        assert (user, pid, ppid, tty, command) == ("root", "1", "0", "?", "sleep 600")
        as_each.ok("exec", "-d", "-u", "1000", name, "sleep", "30")
        rows = [
            line.split() for line in as_each.ok("top", name, "pid", "user", "args").splitlines()
        ]
        assert rows[0] == ["PID", "USER", "COMMAND"]
        assert ["bob", "sleep", "30"] in [row[1:] for row in rows[1:]]
        result = as_each.podpy("top", "nosuch")
        assert (result.returncode, result.stderr) == (
            125,
            "Error: unable to look up requested container: "
            'no container with name or ID "nosuch" found: no such container\n',
        )
        result = as_each.podpy("top", name, "nosuchdescriptor")
        assert result.returncode == 125 and "unknown descriptor" in result.stderr
        # ps(1) options go to the container's own ps, as with podman.
        ps_rows = as_each.ok("top", name, "-o", "pid,args").splitlines()
        assert ps_rows[0].split() == ["PID", "COMMAND"]
        assert ["1", "sleep", "600"] in [row.split() for row in ps_rows[1:]]
        as_each.ok("stop", "-t", "0", name)
        result = as_each.podpy("top", name)
        assert result.returncode == 125
        assert "top can only be used on running containers" in result.stderr
    finally:
        as_each.podpy("rm", "-f", name)


def test_rename(as_each, image: str) -> None:
    old, new, other = unique_name("old"), unique_name("new"), unique_name("other")
    cid = as_each.ok("create", "--name", old, image, "true").strip()
    as_each.ok("create", "--name", other, image, "true")
    try:
        assert as_each.ok("rename", old, new) == ""
        assert container_id(as_each, new) == cid
        assert as_each.podpy("container", "exists", old).returncode == 1
        result = as_each.podpy("rename", new, other)
        assert result.returncode == 125
        assert result.stderr.splitlines()[0] == (
            f"Error: renaming container {cid}: name {other} already in use, cannot rename "
            f"container {cid}: container already exists"
        )
        result = as_each.podpy("rename", new, "bad/name")
        assert result.returncode == 125
        assert result.stderr.splitlines()[0] == (
            "Error: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument"
        )
        assert container_id(as_each, new) == cid
        as_each.ok("container", "rename", cid[:12], old)
        assert container_id(as_each, old) == cid
    finally:
        as_each.podpy("rm", "-f", old, new, other)


def test_events_of_a_renamed_container_carry_the_new_name(as_each, image: str) -> None:
    """Renamed while running: the monitor's `died` event (and `remove`) use the new name, as
    podman's do; earlier events keep the name the container had then."""
    old, new = unique_name("evold"), unique_name("evnew")
    cid = as_each.ok("run", "-d", "--name", old, image, "sleep", "600").strip()
    try:
        as_each.ok("rename", old, new)
        as_each.ok("kill", new)
        as_each.ok("wait", new)
        as_each.ok("rm", new)
        data = [json.loads(x) for x in _events(as_each, "--format", "json", "--filter", f"container={cid}")]  # fmt: skip
        names = {d["Status"]: d["Name"] for d in data}
        assert names["create"] == old and names["start"] == old
        assert names["rename"] == new and names["died"] == new and names["remove"] == new
    finally:
        as_each.podpy("rm", "-f", cid)


def test_port_without_published_ports(as_each, image: str) -> None:
    name = unique_name("port")
    as_each.ok("create", "--name", name, image, "true")
    try:
        # podman: nothing and exit 0 for a container without published ports (or not
        # running), even when asked for one port
        assert as_each.ok("port", name) == ""
        assert as_each.ok("port", name, "80") == ""
    finally:
        as_each.podpy("rm", "-f", name)


def test_inspect_errors_and_latest(as_each, image: str) -> None:
    """podman's wording per --type; `container inspect` never answers with an image; -l."""
    name = unique_name("insp")
    as_each.ok("create", "--name", name, image, "true")
    try:
        for argv, message in (
            (["inspect", name, "nosuch"], 'no such object: "nosuch"'),
            (["container", "inspect", name, "nosuch"], "no such container nosuch"),
            (["inspect", "--type", "container", "nosuch"], "no such container nosuch"),
            (["inspect", "--type", "image", "nosuch"], "nosuch: image not known"),
            (["container", "inspect", image], f"no such container {image}"),
        ):
            result = as_each.podpy(*argv, "--format", "{{.Name}}")
            assert result.returncode == 125, argv
            assert result.stderr == f"Error: inspecting object: {message}\n", argv
        assert as_each.podpy("inspect", name, "nosuch", "--format", "{{.Name}}").stdout == f"{name}\n"
        assert as_each.ok("inspect", "-l", "--format", "{{.Name}}") == f"{name}\n"
        assert as_each.ok("container", "inspect", "--latest", "--format", "{{.Name}}") == f"{name}\n"
        empty = as_each.podpy("inspect")
        assert (empty.returncode, empty.stderr) == (125, "Error: no names or ids specified\n")
    finally:
        as_each.podpy("rm", "-f", name)


def test_stats_as_root(rootful, busybox_image: str) -> None:
    rootful.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name = unique_name("st")
    rootful.ok("run", "-d", "--name", name, busybox_image, "sleep", "600")
    try:
        lines = rootful.ok("stats", "--no-stream", name).splitlines()
        assert lines[0].split()[:3] == ["ID", "NAME", "CPU"]
        assert lines[1].split()[1] == name
        data = json.loads(rootful.ok("stats", "--no-stream", "--format", "json", name))
        assert data[0]["name"] == name and data[0]["pids"] == "1"
        assert re.match(r"^[\d.]+[kMG]?B / [\d.]+[kMGT]?B$", data[0]["mem_usage"])
        out = rootful.ok("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name)
        assert out == f"{name} 1\n"
    finally:
        rootful.podpy("rm", "-f", name)


def _events(runner, *args: str) -> List[str]:
    return runner.ok("events", "--stream=false", *args).splitlines()


def test_events_journal(as_each, image: str) -> None:
    name = unique_name("ev")
    cid = as_each.ok("run", "-d", "--name", name, image, "sh", "-c", "sleep 0.5").strip()
    as_each.ok("wait", name)
    as_each.ok("rm", name)
    lines = _events(as_each, "--filter", f"container={name}")
    statuses = [line.split()[5] for line in lines]
    wanted = ["create", "start", "died", "remove"]
    assert [s for s in statuses if s in wanted] == wanted, lines
    line = lines[0]
    assert re.match(
        rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{{4}} \S+ container create {cid} "
        rf"\(image={re.escape(image)}, name={name}\)$",
        line,
    ), line
    # Filters: by event, by type; --since/--until bound the time.
    only_start = _events(as_each, "--filter", "event=start", "--filter", f"container={cid[:12]}")
    assert len(only_start) == 1 and " container start " in only_start[0]
    assert _events(as_each, "--filter", "type=image", "--filter", f"container={name}") == []
    assert _events(as_each, "--since", "1h", "--filter", f"container={name}") == lines
    assert _events(as_each, "--until", "2000-01-01T00:00:00Z") == []
    data = [
        json.loads(x) for x in _events(as_each, "--format", "json", "--filter", f"container={name}")
    ]
    assert [d["Status"] for d in data if d["Status"] in wanted] == wanted
    assert data[0]["ID"] == cid and data[0]["Name"] == name and data[0]["Type"] == "container"
    result = as_each.podpy("events", "--stream=false", "--filter", "bogus=1")
    assert result.returncode == 125 and "invalid filter" in result.stderr


def test_events_stream_follows(as_each, image: str) -> None:
    name = unique_name("evs")
    since = f"{time.time() - 1:.3f}"
    proc = subprocess.Popen(
        as_each._wrap(
            [*_podpy_argv(as_each), "events", "--since", since, "--filter", f"container={name}"]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=as_each.env(),
    )
    try:
        as_each.ok("create", "--name", name, image, "true")
        out = _read_until(proc, lambda text: b" container create " in text)
        # The command is running and caught up: what happens now must arrive by following.
        as_each.ok("rm", name)
        out += _read_until(proc, lambda text: b" container remove " in text)
        assert proc.poll() is None, "events --stream ended on its own"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    statuses = [line.split()[5] for line in out.decode().splitlines()]
    assert statuses == ["create", "remove"]


def test_container_prune(as_each, image: str) -> None:
    keep, created, exited = unique_name("keep"), unique_name("cr"), unique_name("ex")
    as_each.ok("run", "-d", "--name", keep, image, "sleep", "600")
    created_id = as_each.ok("create", "--name", created, image, "true").strip()
    as_each.ok("run", "--name", exited, image, "true")
    exited_id = container_id(as_each, exited)
    try:
        pruned = as_each.ok("container", "prune", "-f").split()
        assert sorted(pruned) == sorted([created_id, exited_id])
        assert as_each.ok("ps", "-a", "--format", "{{.Names}}").split() == [keep]
        assert as_each.ok("container", "prune", "-f") == ""
        # Without -f it asks, and "n" keeps everything.
        as_each.ok("create", "--name", created, image, "true")
        out = as_each.ok("container", "prune", input="n\n")
        assert "Are you sure you want to continue? [y/N]" in out
        assert as_each.podpy("container", "exists", created).returncode == 0
    finally:
        as_each.podpy("rm", "-f", keep, created, exited)


def test_port_lists_published_ports(as_each, image: str) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    name = unique_name("port")
    as_each.ok(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"{free}:80",
        "-p",
        "127.0.0.1::53/udp",
        image,
        "sleep",
        "600",
    )
    try:
        lines = as_each.ok("port", name).splitlines()
        assert lines[0] == f"80/tcp -> 0.0.0.0:{free}"
        assert re.match(r"^53/udp -> 127\.0\.0\.1:\d+$", lines[1]) and not lines[1].endswith(":0")
        assert as_each.ok("port", name, "80") == f"0.0.0.0:{free}\n"
        assert as_each.ok("port", name, "80/tcp") == f"0.0.0.0:{free}\n"
        assert as_each.ok("port", name, "53/udp") == lines[1].split(" -> ")[1] + "\n"
        result = as_each.podpy("port", name, "81")
        assert result.returncode == 125
        assert result.stderr.strip() == 'Error: failed to find published port "81"'
        assert f"{container_id(as_each, name)[:12]}\t80/tcp -> 0.0.0.0:{free}" in as_each.ok(
            "port", "-a"
        )
    finally:
        as_each.podpy("rm", "-f", name)


# --- pure helpers (no container needed) -----------------------------------------------------


def test_detach_keys_and_matcher() -> None:
    from podpy.engine.container_ops import _DetachMatcher, parse_detach_keys
    from podpy.errors import PodpyError

    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x,ctrl-@,ctrl-[") == b"\x01x\x00\x1b"
    assert parse_detach_keys("") == b""
    with pytest.raises(PodpyError):
        parse_detach_keys("ctrl-")
    matcher = _DetachMatcher(b"\x10\x11")
    assert matcher.feed(b"ab\x10") == (b"ab", False)  # a possible start is held back
    assert matcher.feed(b"c") == (b"\x10c", False)  # not the sequence: released in order
    assert matcher.feed(b"\x10\x10") == (b"\x10", False)
    assert matcher.feed(b"\x11rest") == (b"", True)
    assert _DetachMatcher(b"").feed(b"\x10\x11") == (b"\x10\x11", False)


def test_go_formats_and_times() -> None:
    import time as time_mod

    from podpy.engine.container_ops import go_duration, go_time_string, parse_time
    from podpy.engine.exec import parse_exec_args

    assert go_duration(0) == "0s"
    assert go_duration(0.25) == "250ms"
    assert go_duration(3.547561464) == "3.547561464s"
    assert go_duration(62.5) == "1m2.5s"
    assert go_duration(7201) == "2h0m1s"
    assert go_time_string(1700000000.5).startswith(
        time_mod.strftime("%Y-%m-%d %H:%M:%S.5 ", time_mod.localtime(1700000000))
    )
    assert parse_time("2023-11-14T22:13:20Z", since=True) == 1700000000.0
    assert parse_time("2023-11-14T23:13:20+01:00", since=True) == 1700000000.0
    assert parse_time("1700000000", since=False) == 1700000000.0
    assert abs(parse_time("10m", since=True) - (time_mod.time() - 600)) < 5
    assert abs(parse_time("10m", since=False) - (time_mod.time() + 600)) < 5
    ctr, opts = parse_exec_args(["-it", "-e", "A=1", "-u1000", "--workdir=/tmp", "c", "ls", "-l"])
    assert (ctr, list(opts.command), opts.interactive, opts.tty) == ("c", ["ls", "-l"], True, True)
    assert (list(opts.env), opts.user, opts.workdir) == (["A=1"], "1000", "/tmp")
    assert parse_exec_args(["--help"]) is None and parse_exec_args(["-x", "c", "true"]) is None
