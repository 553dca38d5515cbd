"""Container lifecycle through the zipapp, as the rootless user and as root: run/ps/logs/stop/
start/kill/wait/rm/inspect, podman's exit codes, and the common `run` options.

Every test pulls the busybox image from the local registry fixture into the runner's store
(the runner fixtures reset that store afterwards).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Dict, List

import pytest
from procs import mounts_mentioning, pid_alive, wait_gone

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def unique_name(prefix: str = "t") -> str:
    """A short unique container name (tests/conftest.unique_name is shadowed here)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def scratch(shared_tmp: Path) -> Path:
    """A fresh directory both the rootless user and root can reach and write."""
    path = shared_tmp / unique_name("scratch")
    path.mkdir()
    path.chmod(0o777)
    return path


def graph_root(runner) -> Path:
    info = json.loads(runner.ok("info", "--format", "json"))
    return Path(info["store"]["graphRoot"])


def inspect_one(runner, ref: str) -> Dict:
    data = json.loads(runner.ok("inspect", "--type", "container", ref))
    assert len(data) == 1
    return data[0]


def ps_names(runner, *args: str) -> List[str]:
    return runner.ok("ps", *args, "--format", "{{.Names}}").split()


def wait_for_log(runner, name: str, needle: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = runner.podpy("logs", name)
        if needle in result.stdout + result.stderr:
            return
        assert time.monotonic() < deadline, f"{needle!r} never logged: {result}"
        time.sleep(0.1)


def test_full_life(as_each, image: str) -> None:
    runner = as_each
    name = unique_name("life")
    cid = runner.ok(
        "run", "-d", "--name", name, image, "sh", "-c", "echo out; echo err >&2; sleep 60"
    ).strip()
    assert HEX64.match(cid), cid

    # ps: Up, right name, image, command
    table = runner.ok("ps")
    line = next(ln for ln in table.splitlines() if name in ln)
    assert cid[:12] in line and "Up " in line and "busybox" in line and "sh -c" in line
    assert runner.ok("ps", "--format", "{{.Names}} {{.Image}} {{.Status}}").startswith(
        f"{name} {image} Up"
    )

    # logs: stdout and stderr kept apart
    wait_for_log(runner, name, "err")
    logs = runner.podpy("logs", name)
    assert logs.returncode == 0
    assert logs.stdout == "out\n"
    assert logs.stderr == "err\n"

    state = inspect_one(runner, name)
    for key in ("Id", "Name", "State", "Config", "HostConfig", "Mounts", "NetworkSettings"):
        assert key in state
    assert state["Id"] == cid and state["Name"] == name
    st = state["State"]
    assert st["Status"] == "running" and st["Running"] is True and st["Pid"] > 0
    assert st["ExitCode"] == 0 and st["StartedAt"].startswith(time.strftime("%Y-", time.gmtime()))
    assert st["FinishedAt"].startswith("0001-")
    container_pid = st["Pid"]
    assert pid_alive(container_pid)
    assert runner.ok("inspect", "--format", "{{.State.Status}}", name).strip() == "running"
    assert runner.podpy("container", "exists", name).returncode == 0
    assert runner.podpy("container", "exists", unique_name("nope")).returncode == 1

    # stop: sh as PID 1 ignores TERM, so after -t 1 it is killed (137)
    began = time.monotonic()
    assert runner.ok("stop", "-t", "1", name).strip() == name
    assert time.monotonic() - began < 15
    assert wait_gone(container_pid)
    assert "Exited (137)" in runner.ok("ps", "-a", "--filter", f"name={name}")
    assert name not in ps_names(runner)
    assert name in ps_names(runner, "-a", "--filter", "status=exited")
    state = inspect_one(runner, name)
    assert state["State"]["Status"] == "exited" and state["State"]["ExitCode"] == 137
    assert state["State"]["Running"] is False
    assert not state["State"]["FinishedAt"].startswith("0001-")

    # start again: a new run of the same container, its log appended
    assert runner.ok("start", name).strip() == name
    assert inspect_one(runner, name)["State"]["Status"] == "running"
    deadline = time.monotonic() + 10
    while runner.podpy("logs", name).stdout != "out\nout\n":
        assert time.monotonic() < deadline, runner.podpy("logs", name)
        time.sleep(0.1)
    assert runner.podpy("logs", name).stderr == "err\nerr\n"
    pid2 = inspect_one(runner, name)["State"]["Pid"]
    assert pid2 != container_pid and pid_alive(pid2)

    # kill + wait
    assert runner.ok("kill", "-s", "KILL", name).strip() == name
    assert runner.ok("wait", name).strip() == "137"
    assert wait_gone(pid2)

    # rm leaves no directory and no mount
    cdir = graph_root(runner) / "containers" / cid
    assert runner.ok("rm", name).strip() == name  # podman prints the name or id as given
    assert not cdir.exists()
    assert runner.podpy("container", "exists", name).returncode == 1
    assert not mounts_mentioning(cid)
    assert not [p for p in (container_pid, pid2) if pid_alive(p)]


def test_ps_options(as_each, image: str) -> None:
    runner = as_each
    first, second, third = (unique_name(p) for p in ("psa", "psb", "psc"))
    runner.ok("create", "--name", first, "--label", "tier=web", image, "true")
    runner.ok("run", "--name", second, image, "true")
    cid3 = runner.ok("run", "-d", "--name", third, image, "sleep", "60").strip()

    assert ps_names(runner) == [third]
    assert ps_names(runner, "-a") == [first, second, third]  # podman: oldest first
    assert ps_names(runner, "-a", "--filter", "status=exited") == [second]
    assert ps_names(runner, "-a", "--filter", "status=created") == [first]
    assert ps_names(runner, "-a", "--filter", f"name={second}") == [second]
    assert ps_names(runner, "-a", "--filter", "label=tier=web") == [first]
    assert ps_names(runner, "-l") == [third]
    assert ps_names(runner, "-n", "2") == [second, third]
    # --sort (not in the fast path's flags: the full CLI answers)
    assert ps_names(runner, "-a", "--sort", "status") == [first, second, third]
    assert ps_names(runner, "-a", "--sort", "names") == sorted([first, second, third])
    assert ps_names(runner, "-a", "--sort", "runningfor") == [first, second, third]
    bad_sort = runner.podpy("ps", "--sort", "bogus")
    assert bad_sort.returncode == 125
    assert bad_sort.stderr.startswith('Error: invalid argument "bogus" for "--sort" flag')
    assert runner.ok("ps", "-q").split() == [cid3[:12]]
    assert runner.ok("ps", "-q", "--no-trunc").split() == [cid3]
    assert len(runner.ok("ps", "-aq").split()) == 3
    header = runner.ok("ps").splitlines()[0]
    assert header.split()[:2] == ["CONTAINER", "ID"] and "NAMES" in header
    assert runner.ok(
        "ps", "-a", "--filter", f"name={first}", "--format", "{{.Status}}"
    ).strip() == ("Created")
    bad = runner.podpy("ps", "--filter", "bogus=1")
    assert bad.returncode == 125 and "bogus" in bad.stderr
    assert runner.ok("rm", "-af")
    assert runner.ok("ps", "-aq") == ""


@pytest.mark.parametrize(
    "argv, code",
    [
        (["true"], 0),
        (["false"], 1),
        (["sh", "-c", "exit 42"], 42),
        (["/no/such/command"], 127),
        (["/etc/passwd"], 126),
    ],
)
def test_exit_codes(as_each, image: str, argv: List[str], code: int) -> None:
    result = as_each.podpy("run", "--rm", image, *argv)
    assert result.returncode == code, result
    if code >= 126:
        assert result.stderr.strip(), "a failed start must say why"
    assert as_each.ok("ps", "-aq") == ""  # --rm removed it in every case


def _container_events(runner, name: str) -> List[Dict]:
    lines = runner.ok(
        "events", "--stream=false", "--format", "json", "--filter", f"container={name}"
    )
    return [json.loads(line) for line in lines.splitlines()]


def test_rm_flag_leaves_what_rm_leaves(as_each, image: str) -> None:
    """The monitor removes a --rm container without the engine (plain sqlite3 + the engine's
    own list of directories): afterwards the store looks exactly as after `podpy rm`, and
    the journal has the same events, `remove` included."""
    kept, gone = unique_name("rmref"), unique_name("rmlean")
    store = json.loads(as_each.ok("info", "--format", "json"))["store"]
    roots = [Path(store["graphRoot"]) / "containers", Path(store["runRoot"]) / "containers"]

    def leftovers(cid: str) -> List[Path]:
        return [root / cid for root in roots if (root / cid).exists()]

    as_each.ok("run", "--name", kept, "--network", "none", image, "true")
    kept_id = inspect_one(as_each, kept)["Id"]
    assert leftovers(kept_id), "a stopped container keeps its directories"
    as_each.ok("rm", kept)
    as_each.ok("run", "--rm", "--name", gone, "--network", "none", image, "sh", "-c", "echo x >/f")
    names = ps_names(as_each, "-a")
    assert kept not in names and gone not in names
    events = {name: _container_events(as_each, name) for name in (kept, gone)}
    gone_id = events[gone][0]["ID"]
    assert HEX64.match(gone_id) and not leftovers(gone_id) and not leftovers(kept_id)

    def shape(evs: List[Dict]) -> List[tuple]:
        return [(e["Status"], e["Type"], e["Image"], e["Attributes"]) for e in evs]

    assert shape(events[gone]) == shape(events[kept])
    assert [e["Status"] for e in events[gone]][-2:] == ["died", "remove"]


def test_exit_codes_podpy_errors(as_each, image: str) -> None:
    runner = as_each
    result = runner.podpy("run", "--rm", "--user", "nosuch", image, "true")
    assert result.returncode == 125 and "nosuch" in result.stderr, result
    result = runner.podpy("run", "--rm", "--pull", "never", "localhost/nosuchimage:1", "true")
    assert result.returncode == 125 and "nosuchimage" in result.stderr, result
    result = runner.podpy("run", "--bogus-flag", image, "true")
    assert result.returncode == 125 and "bogus-flag" in result.stderr, result
    assert runner.ok("ps", "-aq") == ""


def test_name_conflict_cidfile_replace(as_each, image: str, scratch: Path) -> None:
    runner = as_each
    name = unique_name("dup")
    cidfile = scratch / "cid"
    first = runner.ok("run", "-d", "--cidfile", str(cidfile), "--name", name, image, "sleep", "60")
    assert cidfile.read_text() == first.strip()
    again = runner.podpy("run", "-d", "--name", name, image, "true")
    assert again.returncode == 125
    assert "already in use" in again.stderr and "--replace" in again.stderr
    # the cidfile exists already: refused, and no container left behind for it
    clash = runner.podpy("create", "--cidfile", str(cidfile), image, "true")
    assert clash.returncode == 125 and str(cidfile) in clash.stderr
    assert len(runner.ok("ps", "-aq").split()) == 1
    second = runner.ok("run", "-d", "--replace", "--name", name, image, "sleep", "60").strip()
    assert second != first.strip()
    assert runner.ok("ps", "-aq", "--no-trunc").split() == [second]
    runner.ok("rm", "-f", name)


def test_run_options(as_each, image: str, scratch: Path) -> None:
    runner = as_each
    env_file = scratch / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n\n")

    def out(*args: str) -> str:
        return runner.ok("run", "--rm", *args)

    assert "HELLO=world" in out("-e", "HELLO=world", image, "env").splitlines()
    assert "FROM_FILE=yes" in out("--env-file", str(env_file), image, "env").splitlines()
    assert out("-w", "/tmp", image, "pwd") == "/tmp\n"
    assert out("-u", "1000", image, "id", "-u") == "1000\n"
    assert out("-u", "1000:1001", image, "id", "-g") == "1001\n"
    assert out("--entrypoint", "echo", image, "via-entrypoint") == "via-entrypoint\n"
    assert out("--hostname", "hosty", image, "hostname") == "hosty\n"
    # --read-only: / refuses writes, --tmpfs still writable
    result = runner.podpy("run", "--rm", "--read-only", image, "touch", "/x")
    assert result.returncode == 1 and "Read-only file system" in result.stderr
    assert out(
        "--read-only",
        "--tmpfs",
        "/scratch",
        image,
        "sh",
        "-c",
        "echo ok > /scratch/f && cat /scratch/f && grep ' /scratch ' /proc/mounts",
    ).startswith("ok\ntmpfs /scratch tmpfs")
    # --init: PID 1 is the init, the command is not PID 1
    init_out = out("--init", image, "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    shell_pid, pid1 = init_out.splitlines()
    assert shell_pid != "1" and "sh -c" not in pid1
    assert out(image, "sh", "-c", "echo $$") == "1\n"


# PID 1's name, the shell's pid and parent, then every process left after an orphan exited
INIT_PROBE = (
    "echo PID1=$(cat /proc/1/comm) ME=$$ PARENT=$PPID; sh -c 'sleep 0.2 &'; sleep 1;"
    " cat /proc/[0-9]*/stat | cut -d' ' -f1-3"
)


@pytest.mark.parametrize("runtime", ["podpy", "runc"])
def test_init_reaps_orphans(as_each, image: str, runtime: str, scratch: Path) -> None:
    """--init: PID 1 is an init (under runc podman's catatonit at /run/podman-init, as
    podman), the command is its child, and an orphaned grandchild is reaped, not left a
    zombie. Without catatonit the run fails with one line naming the package."""
    run = ["run", "--rm", "--runtime", runtime, "--network", "none", "--init"]
    if runtime == "runc":
        run += ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    out = as_each.ok(*run, image, "sh", "-c", INIT_PROBE).splitlines()
    fields = dict(item.split("=", 1) for item in out[0].split())
    assert fields["PID1"] == ("podman-init" if runtime == "runc" else "python3"), out
    assert fields["PARENT"] == "1" and fields["ME"] != "1", out
    states = [line.split()[2] for line in out[1:]]
    assert states and "Z" not in states, out  # the orphaned sleep was reaped
    if runtime == "runc":
        conf = scratch / "containers.conf"
        conf.write_text('[containers]\ninit_path = "/nonexistent/catatonit"\n')
        result = as_each.podpy(*run, image, "true", env={"CONTAINERS_CONF": str(conf)})
        assert result.returncode == 125, result
        assert "catatonit package" in result.stderr and "/nonexistent/catatonit" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert as_each.ok("ps", "-aq") == ""


def test_bind_mount_ownership(as_each, image: str, scratch: Path) -> None:
    runner = as_each
    data = scratch / "data"
    data.mkdir()
    os.chown(data, runner.uid, runner.gid)
    runner.ok("run", "--rm", "-v", f"{data}:/data", image, "sh", "-c", "echo hi > /data/f")
    written = data / "f"
    assert written.read_text() == "hi\n"
    # container uid 0 is the rootless user (or root itself) on the host
    assert (written.stat().st_uid, written.stat().st_gid) == (runner.uid, runner.gid)
    assert runner.ok("run", "--rm", "-v", f"{data}:/data:ro", image, "cat", "/data/f") == "hi\n"
    ro = runner.podpy("run", "--rm", "-v", f"{data}:/data:ro", image, "touch", "/data/g")
    assert ro.returncode == 1 and not (data / "g").exists()
    missing = runner.podpy("run", "--rm", "-v", f"{scratch}/absent:/data", image, "true")
    assert missing.returncode == 125 and "absent" in missing.stderr
    assert runner.ok("ps", "-aq") == ""


def test_log_rotation(as_each, image: str) -> None:
    runner = as_each
    name = unique_name("rot")
    script = "i=0; while [ $i -lt 200 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"
    runner.ok("run", "--name", name, "--log-opt", "max-size=1k", image, "sh", "-c", script)
    log_path = Path(inspect_one(runner, name)["HostConfig"]["LogConfig"]["Path"])
    assert log_path.name == "ctr.log"
    rotated = Path(str(log_path) + ".1")
    assert log_path.exists() and rotated.exists()
    # ~10 KB written, yet at most two generations of ~1 KB each remain
    assert log_path.stat().st_size <= 1024 and rotated.stat().st_size <= 1024
    assert sorted(p.name for p in log_path.parent.iterdir() if p.name.startswith("ctr.log")) == [
        "ctr.log",
        "ctr.log.1",
    ]
    lines = runner.ok("logs", name).splitlines()
    assert lines[-1] == "line-199-xxxxxxxxxxxxxxxxxxxx"
    assert "line-0-xxxxxxxxxxxxxxxxxxxx" not in lines
    assert lines == [f"line-{i}-xxxxxxxxxxxxxxxxxxxx" for i in range(200 - len(lines), 200)]
    assert runner.ok("logs", "--tail", "2", name).splitlines() == lines[-2:]
    runner.ok("rm", name)


def test_logs_since_until_timestamps(as_each, image: str) -> None:
    runner = as_each
    name = unique_name("ts")
    runner.ok("run", "--name", name, image, "sh", "-c", "echo early; sleep 2; echo late")
    stamped = runner.ok("logs", "-t", name).splitlines()
    assert [ln.split(" ", 1)[1] for ln in stamped] == ["early", "late"]
    late_stamp = stamped[1].split(" ", 1)[0]
    assert runner.ok("logs", "--since", late_stamp, name) == "late\n"
    assert runner.ok("logs", "--until", stamped[0].split(" ", 1)[0], name) == "early\n"
    assert runner.ok("logs", "--since", "1h", name) == "early\nlate\n"
    runner.ok("rm", name)


def test_rm_running_needs_force(as_each, image: str) -> None:
    runner = as_each
    name = unique_name("busy")
    runner.ok("run", "-d", "--name", name, image, "sleep", "60")
    pid = inspect_one(runner, name)["State"]["Pid"]
    refused = runner.podpy("rm", name)
    assert refused.returncode == 2 and "-f" in refused.stderr  # podman: 2 = running
    assert pid_alive(pid)
    runner.ok("rm", "-f", name)
    assert wait_gone(pid)
    missing = runner.podpy("rm", name)
    assert missing.returncode == 1  # podman: 1 = no such container
    assert "no container" in missing.stderr
    assert runner.podpy("rm", "-i", name).returncode == 0


def test_multi_target_verbs_look_every_name_up_first(as_each, image: str) -> None:
    """podman resolves every target before acting: one unknown name fails the whole command,
    nothing is stopped, killed, removed or waited for, and nothing is printed."""
    runner = as_each
    busy, done = unique_name("mbusy"), unique_name("mdone")
    runner.ok("run", "-d", "--name", busy, image, "sleep", "60")
    runner.ok("create", "--name", done, image, "true")
    missing = 'Error: no container with name or ID "nosuch" found: no such container\n'
    try:
        for argv, code in (
            (["stop", "-t", "0", busy, "nosuch"], 125),
            (["kill", busy, "nosuch"], 125),
            (["wait", done, "nosuch"], 125),
            (["restart", done, "nosuch"], 125),
            (["start", done, "nosuch"], 125),
            (["rm", done, "nosuch"], 1),
        ):
            result = runner.podpy(*argv)
            assert (result.returncode, result.stdout, result.stderr) == (code, "", missing), argv
        assert status_of(runner, busy) == "running" and status_of(runner, done) == "created"
        # starting a running container succeeds silently; the others print their name
        assert runner.ok("start", busy, done) == f"{done}\n"
        assert runner.ok("stop", "--ignore", "nosuch") == ""
        runner.ok("wait", done)
        refused = runner.podpy("kill", done)
        cid = inspect_one(runner, done)["Id"]
        assert refused.returncode == 125
        assert refused.stderr == (
            f"Error: can only kill running containers. {cid} is in state exited: "
            "container state improper\n"
        )
        # kill checks the signal before any container, as podman
        for sig, message in (("0", "invalid signal: 0"), ("99", "valid signals are 1 through 64")):
            bad = runner.podpy("kill", "-s", sig, "nosuch")
            assert (bad.returncode, bad.stderr) == (125, f"Error: {message}\n")
        # stop --all covers every container, the stopped ones too (podman prints their ids)
        stopped = runner.ok("stop", "-a", "-t", "0").split()
        assert sorted(stopped) == sorted([cid, inspect_one(runner, busy)["Id"]])
        # rm: --force implies --ignore, and rm prints the names as given
        assert runner.ok("rm", "-f", "nosuch", done) == f"{done}\n"
    finally:
        runner.podpy("rm", "-f", "-t", "0", busy, done)


def status_of(runner, ref: str) -> str:
    return inspect_one(runner, ref)["State"]["Status"]


def _notify_socket(scratch: Path):
    import socket

    path = scratch / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    os.chmod(path, 0o777)
    sock.settimeout(10)
    return sock, str(path)


def _messages(sock, until: str, timeout: float = 10.0) -> List[str]:
    got: List[str] = []
    deadline = time.monotonic() + timeout
    while not any(until in m for m in got) and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except OSError:
            break
    return got


def test_sdnotify_detached(as_each, image: str, scratch: Path) -> None:
    runner = as_each
    sock, path = _notify_socket(scratch)
    with sock:
        name = unique_name("notify")
        runner.ok("run", "-d", "--name", name, image, "sleep", "60", env={"NOTIFY_SOCKET": path})
        messages = _messages(sock, "READY=1")
        monitor = inspect_one(runner, name)["State"]["ConmonPid"]
        text = "".join(messages)
        assert f"MAINPID={monitor}\n" in text and "READY=1\n" in text, messages
        runner.ok("rm", "-f", name)

        runner.ok("run", "-d", "--sdnotify=ignore", image, "true", env={"NOTIFY_SOCKET": path})
        assert _messages(sock, "READY=1", timeout=1.5) == []


def test_sdnotify_foreground_is_this_pid(as_each, image: str, scratch: Path) -> None:
    import subprocess

    runner = as_each
    sock, path = _notify_socket(scratch)
    with sock:
        argv = runner._wrap(
            [
                "/usr/bin/python3",
                "-I",
                str(runner.pyz),
                *runner.extra_args,
                "run",
                "--rm",
                image,
                "sleep",
                "1",
            ]
        )
        env = runner.env()
        env["NOTIFY_SOCKET"] = path
        proc = subprocess.Popen(argv, env=env, cwd=str(runner.home), stderr=subprocess.PIPE)
        try:
            text = "".join(_messages(sock, "READY=1"))
        finally:
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        # setpriv execs: the pid we started is podpy's, which became the monitor
        assert f"MAINPID={proc.pid}\n" in text and "READY=1\n" in text, text


def test_stop_signal_and_timeout(as_each, image: str) -> None:
    runner = as_each
    name = unique_name("sig")
    # a shell that exits 9 on TERM: stop sends TERM and the container ends by itself
    runner.ok(
        "run",
        "-d",
        "--name",
        name,
        image,
        "sh",
        "-c",
        "trap 'exit 9' TERM; while true; do sleep 0.1; done",
    )
    began = time.monotonic()
    runner.ok("stop", name)
    assert time.monotonic() - began < 8  # not the 10 s default timeout
    assert inspect_one(runner, name)["State"]["ExitCode"] == 9
    runner.ok("rm", name)

    killed = unique_name("sigk")
    runner.ok("run", "-d", "--name", killed, "--stop-signal", "KILL", image, "sleep", "60")
    assert inspect_one(runner, killed)["Config"]["StopSignal"] == 9
    began = time.monotonic()
    runner.ok("stop", "-t", "30", killed)
    assert time.monotonic() - began < 8
    assert inspect_one(runner, killed)["State"]["ExitCode"] == 137
    runner.ok("rm", killed)
    bad = runner.podpy("run", "--rm", "--stop-signal", "NOPE", image, "true")
    assert bad.returncode == 125 and "NOPE" in bad.stderr


def test_foreground_signal_proxy(as_each, image: str) -> None:
    """SIGTERM to the foreground podpy (the monitor, same pid) reaches the container."""
    import subprocess

    runner = as_each
    argv = runner._wrap(
        [
            "/usr/bin/python3",
            "-I",
            str(runner.pyz),
            *runner.extra_args,
            "run",
            "--rm",
            image,
            "sh",
            "-c",
            "trap 'echo got-term; exit 9' TERM; echo ready; while true; do sleep 0.1; done",
        ]
    )
    proc = subprocess.Popen(
        argv, env=runner.env(), cwd=str(runner.home), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(15)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == "got-term\n"
    assert proc.returncode == 9


def test_logs_follow_ends_with_container(as_each, image: str) -> None:
    runner = as_each
    name = unique_name("follow")
    runner.ok(
        "run",
        "-d",
        "--name",
        name,
        image,
        "sh",
        "-c",
        "for i in 1 2 3; do echo n$i; sleep 0.5; done",
    )
    began = time.monotonic()
    followed = runner.podpy("logs", "-f", name, timeout=30)
    assert followed.returncode == 0
    assert followed.stdout == "n1\nn2\nn3\n"
    assert time.monotonic() - began < 20
    runner.ok("rm", name)


def test_taken_host_port_is_one_clean_error(as_each, image: str) -> None:
    """A published port already in use: one line naming it, exit 125; with --rm nothing is
    left, without it the container stays Created (as podman)."""
    import socket

    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        for args in (["--rm"], ["-d", "--rm"]):
            failed = as_each.podpy("run", *args, "-p", f"{port}:80", image, "true")
            assert failed.returncode == 125
            errors = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
            prefix = "rootlessport " if as_each.user else ""  # podman's wording per identity
            assert errors == [
                f"Error: {prefix}listen tcp 0.0.0.0:{port}: bind: address already in use"
            ]
        assert as_each.ok("ps", "-aq").strip() == ""
        kept = as_each.podpy("run", "-d", "-p", f"{port}:80", image, "true")
        assert kept.returncode == 125
        assert as_each.ok("ps", "-a", "--format", "{{.Status}}").split() == ["Created"]
        as_each.ok("rm", "-a")
    finally:
        holder.close()
