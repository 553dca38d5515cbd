"""slirp4netns (and pasta) for a standalone network namespace, as root and as the rootless user:
TCP and UDP forwards reach servers in the namespace, a taken host port is a clean one-line
error with nothing left running, and stop() or the owner's death ends the helper.

Each scenario runs in a driver process (as the identity under test) that imports
netns_helpers from the built zipapp and prints one JSON line; the test checks it and /proc.

Then `run -p` end to end with the port forwarder (netns_helpers/forward.py): busybox httpd
from 127.0.0.1 and the host's address, UDP echo from 127.0.0.1, a port conflict, `rm -f` and
a killed monitor leaving no forwarder or slirp4netns behind; port_handler=slirp4netns still
forwarding through slirp4netns itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from procs import all_pids, cmdline_of, parent_of, pid_alive, wait_gone

from tests.conftest import IS_ROOT, SYSTEM_PYTHON, Runner, unique_name

HELPERS = ("slirp4netns", "pasta")
DRIVER = r"""
import json, os, signal, socket, subprocess, sys, time, urllib.request
pyz, scenario, workdir = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, pyz)
from netns_helpers import pasta, ports, slirp
from podpy.engine.network_opts import parse_network_spec, PortMapping
from podpy.errors import PodpyError

ROOTLESS = os.geteuid() != 0
out = {}

def holder():
    argv = ["unshare", "--user", "--map-root-user", "--net"] if (ROOTLESS or "userns" in scenario) else ["unshare", "--net"]
    proc = subprocess.Popen(argv + ["sleep", "300"])
    # Ready once unshare has exec'd sleep: by then the namespaces exist and uid_map is written.
    for _ in range(500):
        try:
            with open(f"/proc/{proc.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    return proc
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit("namespace holder did not start")

def nsenter(pid, argv, **kw):
    enter = ["nsenter", "-t", str(pid), "-n"]
    if ROOTLESS or "userns" in scenario:
        enter += ["-U", "--preserve-credentials"]
    return subprocess.Popen(enter + argv, **kw)

def wait_listening(pid, port, proto):
    # busybox httpd listens on [::]:80 (dual stack), so look in the v6 table too
    for _ in range(500):
        for table in ("/proc/%d/net/%s" % (pid, proto), "/proc/%d/net/%s6" % (pid, proto)):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    local = line.split()[1]
                    if int(local.rsplit(":", 1)[1], 16) == port:
                        return
        time.sleep(0.01)
    raise SystemExit(f"nothing listens on {proto} {port} in the namespace")

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def udp_roundtrip(port, payload):
    # Sent to the host's own address, not 127.0.0.1: with --disable-host-loopback (the
    # default) slirp4netns drops the container's UDP replies to a loopback sender.
    from netns_helpers.files import host_primary_ip
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    for _ in range(20):  # the first datagram can race the echo server's bind
        s.sendto(payload, (host_primary_ip(), port))
        try:
            return s.recvfrom(65536)[0]
        except socket.timeout:
            continue
    return b""

UDP_ECHO = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9999))\n"
            "while True:\n    d, a = s.recvfrom(65536); s.sendto(b'echo:' + d, a)")

sock_path = os.path.join(workdir, "slirp.sock")
h = holder()
procs = []
try:
    if scenario in ("forward", "forward-userns", "forward-path"):
        httpd = nsenter(h.pid, ["busybox", "httpd", "-f", "-p", "80", "-h", os.path.join(workdir, "www")])
        echo = nsenter(h.pid, [sys.executable, "-I", "-S", "-c", UDP_ECHO])
        procs += [httpd, echo]
        spec = parse_network_spec(None, rootless=True, publish=["127.0.0.1::80", "9999/udp"])
        wanted = ports.resolve_host_ports(spec.ports)
        if scenario == "forward-path":
            userns = f"/proc/{h.pid}/ns/user" if ROOTLESS else None
            proc = slirp.start_slirp4netns(f"/proc/{h.pid}/ns/net", slirp.SlirpConfig(), sock_path, userns_path=userns)
        else:
            proc = slirp.start_slirp4netns(h.pid, slirp.SlirpConfig(), sock_path)
        out["pid"], out["ready_seconds"], out["rss_kib"] = proc.pid, proc.ready_seconds, rss_kib(proc.pid)
        out["ids"] = proc.publish(wanted)
        out["forwards"] = slirp.list_port_forwards(sock_path)
        wait_listening(h.pid, 80, "tcp")
        wait_listening(h.pid, 9999, "udp")
        with urllib.request.urlopen(f"http://127.0.0.1:{wanted[0].host_port}/index.html", timeout=10) as r:
            out["http"] = r.read().decode()
        out["udp"] = udp_roundtrip(wanted[1].host_port, b"ping").decode()
        out["tap"] = subprocess.run(["nsenter", "-t", str(h.pid), "-n"] + (["-U", "--preserve-credentials"] if (ROOTLESS or "userns" in scenario) else []) + ["ip", "-o", "-4", "addr", "show", "tap0"], capture_output=True, text=True).stdout
        out["mtu"] = subprocess.run(["nsenter", "-t", str(h.pid), "-n"] + (["-U", "--preserve-credentials"] if (ROOTLESS or "userns" in scenario) else []) + ["ip", "-o", "link", "show", "tap0"], capture_output=True, text=True).stdout
        proc.stop()
        out["socket_left"] = os.path.exists(sock_path)
    elif scenario.startswith("spec-"):
        mode = scenario.split("-")[1]
        httpd = nsenter(h.pid, ["busybox", "httpd", "-f", "-p", "80", "-h", os.path.join(workdir, "www")])
        procs.append(httpd)
        spec = parse_network_spec(mode, rootless=True, publish=["80"])
        spec = type(spec).from_dict(json.loads(json.dumps(spec.to_dict())))  # as the monitor gets it
        proc = slirp.start_user_network(spec, h.pid, workdir)
        out["pid"], out["ports"] = proc.pid, [str(m) for m in proc.ports]
        wait_listening(h.pid, 80, "tcp")
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.ports[0].host_port}/index.html", timeout=10) as r:
            out["http"] = r.read().decode()
        out["log"] = os.path.exists(os.path.join(workdir, mode + ".log"))
        proc.stop()
    elif scenario == "conflict":
        taken = socket.socket()
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        try:  # the pre-check fails before anything starts
            ports.resolve_host_ports([PortMapping("", port, 80, "tcp")])
        except PodpyError as err:
            out["precheck"] = err.message
        proc = slirp.start_slirp4netns(h.pid, None, sock_path)
        out["pid"] = proc.pid
        try:  # and slirp4netns's own refusal maps to the same message
            proc.add_port_forward("tcp", "", port, 80)
        except PodpyError as err:
            out["forward"] = err.message
        finally:
            proc.stop()
    elif scenario == "owner-dies":
        code = ("import sys, time; sys.path.insert(0, %r); from netns_helpers import slirp\n"
                "p = slirp.start_slirp4netns(%d, None, %r); print(p.pid, flush=True); time.sleep(300)") % (pyz, h.pid, sock_path)
        owner = subprocess.Popen([sys.executable, "-I", "-S", "-c", code], stdout=subprocess.PIPE, text=True)
        out["pid"] = int(owner.stdout.readline())
        owner.kill()
        owner.wait()
    elif scenario == "failures":
        try:
            slirp.start_slirp4netns(2 ** 22 + 7, None, sock_path)
        except PodpyError as err:
            out["bad_target"] = err.message
        saved = os.environ["PATH"]
        os.environ["PATH"] = "/nonexistent"
        try:
            slirp.start_slirp4netns(h.pid, None, sock_path)
        except PodpyError as err:
            out["missing"] = [err.message, err.hint]
        os.environ["PATH"] = saved
        try:
            slirp.start_slirp4netns(h.pid, slirp.SlirpConfig(cidr="10.0.2.100/24"), sock_path)
        except PodpyError as err:
            out["bad_cidr"] = err.message
    elif scenario in ("pasta", "pasta-userns"):
        httpd = nsenter(h.pid, ["busybox", "httpd", "-f", "-p", "80", "-h", os.path.join(workdir, "www")])
        procs.append(httpd)
        wanted = ports.resolve_host_ports(parse_network_spec("pasta", rootless=True, publish=["80"]).ports)
        proc = pasta.start_pasta(h.pid, wanted, pid_file=os.path.join(workdir, "pasta.pid"))
        out["pid"], out["ready_seconds"] = proc.pid, proc.ready_seconds
        wait_listening(h.pid, 80, "tcp")
        with urllib.request.urlopen(f"http://127.0.0.1:{wanted[0].host_port}/index.html", timeout=10) as r:
            out["http"] = r.read().decode()
        proc.stop()
        taken = socket.socket()
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        h2 = holder()
        try:
            pasta.start_pasta(h2.pid, [PortMapping("", port, 80, "tcp")], pid_file=os.path.join(workdir, "pasta2.pid"))
        except PodpyError as err:
            out["conflict"] = err.message
        h2.kill()
        h2.wait()
finally:
    for p in procs:
        p.kill()
        p.wait()
    h.kill()
    h.wait()
print(json.dumps(out))
"""


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for the slow PID 1 reaper."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _helpers_of(uid: int, name: str) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid or _dead(int(entry)):
                continue
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == name:
                    found.append(int(entry))
        except OSError:
            pass
    return found


@pytest.fixture(params=["rootless", "root"])
def who(request, rootless_session: Runner, podpy_pyz: Path, shared_tmp: Path) -> Iterator[Runner]:
    """The identity to test as; no podpy state is created, so no reset is needed."""
    if request.param == "rootless":
        yield rootless_session
        return
    if not IS_ROOT:
        pytest.skip("needs root")
    base = Path(tempfile.mkdtemp(prefix="podpy-net-", dir=shared_tmp))
    yield Runner(podpy_pyz, None, 0, 0, base, base)


@pytest.fixture
def workdir(who: Runner, shared_tmp: Path) -> Iterator[Path]:
    """A directory the identity under test owns, with a page for httpd to serve."""
    path = shared_tmp / unique_name("net")
    (path / "www").mkdir(parents=True)
    (path / "www" / "index.html").write_text(f"hello from {path.name}\n")
    if IS_ROOT:
        for item in (path, path / "www", path / "www" / "index.html"):
            os.chown(item, who.uid, who.gid)
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def drive(who: Runner, scenario: str, workdir: Path, shared_tmp: Path) -> Dict[str, Any]:
    driver = shared_tmp / "slirp_driver.py"
    if not driver.exists():
        driver.write_text(DRIVER)
        driver.chmod(0o644)
    before = {name: set(_helpers_of(who.uid, name)) for name in HELPERS}
    result = who.cmd(
        [SYSTEM_PYTHON, "-I", str(driver), str(who.pyz), scenario, str(workdir)], timeout=90
    )
    assert result.returncode == 0, f"driver failed:\n{result.stdout}\n{result.stderr}"
    out = json.loads(result.stdout.strip().splitlines()[-1])
    if "pid" in out:
        assert _wait_dead(out["pid"]), f"helper {out['pid']} still running after {scenario}"
    for name in HELPERS:
        left = set(_helpers_of(who.uid, name)) - before[name]
        assert not left, f"{scenario} left {name} processes {sorted(left)} behind"
    return out


def test_tcp_and_udp_forwards_reach_the_namespace(
    who: Runner, workdir: Path, shared_tmp: Path
) -> None:
    out = drive(who, "forward", workdir, shared_tmp)
    if who.user is None:  # root: also a netns owned by a user namespace (rootful --userns)
        userns = drive(who, "forward-userns", workdir, shared_tmp)
        assert userns["http"] == f"hello from {workdir.name}\n" and userns["udp"] == "echo:ping"
    assert out["http"] == f"hello from {workdir.name}\n"
    assert out["udp"] == "echo:ping"
    assert out["ids"] == [1, 2]
    assert [(f["proto"], f["guest_addr"], f["guest_port"]) for f in out["forwards"]] == [
        ("tcp", "10.0.2.100", 80),
        ("udp", "10.0.2.100", 9999),
    ]
    assert out["forwards"][0]["host_addr"] == "127.0.0.1"
    assert "inet 10.0.2.100/24" in out["tap"]
    assert out["socket_left"] is False
    assert " mtu 65520 " in out["mtu"]
    print(
        f"\n[{who.user or 'root'}] slirp4netns ready in {out['ready_seconds'] * 1000:.0f} ms, RSS {out['rss_kib']} KiB"
    )


def test_netns_path_form(who: Runner, workdir: Path, shared_tmp: Path) -> None:
    # --netns-type=path; rootless also needs --userns-path to be allowed into the namespace.
    out = drive(who, "forward-path", workdir, shared_tmp)
    assert out["http"] == f"hello from {workdir.name}\n" and out["udp"] == "echo:ping"


@pytest.mark.parametrize("mode", ["slirp4netns", "pasta"])
def test_start_user_network_from_a_spec(
    mode: str, who: Runner, workdir: Path, shared_tmp: Path
) -> None:
    # pasta (2023) cannot join a netns owned by the initial user namespace: root gives it one
    suffix = "-userns" if mode == "pasta" and who.user is None else ""
    out = drive(who, f"spec-{mode}{suffix}", workdir, shared_tmp)
    assert out["http"] == f"hello from {workdir.name}\n"
    assert len(out["ports"]) == 1 and out["ports"][0].startswith("80/tcp -> 0.0.0.0:")
    assert out["log"] is True


def test_taken_host_port_is_one_clean_line(who: Runner, workdir: Path, shared_tmp: Path) -> None:
    out = drive(who, "conflict", workdir, shared_tmp)
    prefix = "rootlessport " if who.user else ""
    assert out["precheck"].startswith(f"{prefix}listen tcp 0.0.0.0:")
    assert out["precheck"].endswith(": bind: address already in use")
    assert out["forward"] == out["precheck"]
    assert "\n" not in out["precheck"]


def test_slirp4netns_dies_with_its_owner(who: Runner, workdir: Path, shared_tmp: Path) -> None:
    out = drive(who, "owner-dies", workdir, shared_tmp)
    assert out["pid"] > 0  # drive() already required it to be gone


def test_startup_failures_are_clear(who: Runner, workdir: Path, shared_tmp: Path) -> None:
    out = drive(who, "failures", workdir, shared_tmp)
    assert (
        out["bad_target"].startswith("slirp4netns failed: /proc/")
        and "No such file" in out["bad_target"]
    )
    assert out["missing"][0] == 'slirp4netns not found: install the "slirp4netns" package'
    assert out["bad_cidr"] == (
        "slirp4netns failed: CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24"
    )


def test_pasta_forwards_and_conflicts(who: Runner, workdir: Path, shared_tmp: Path) -> None:
    # pasta (2023) only joins namespaces owned by a user namespace: root tests it with one.
    out = drive(who, "pasta" if who.user else "pasta-userns", workdir, shared_tmp)
    assert out["http"] == f"hello from {workdir.name}\n"
    prefix = "rootlessport " if who.user else ""
    assert (
        out["conflict"].startswith(f"{prefix}listen tcp 0.0.0.0:")
        and "address already in use" in out["conflict"]
    )


def test_helper_entry_checks_ports(who: Runner, workdir: Path) -> None:
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        request = {
            "op": "check-ports",
            "ports": [{"host_ip": "", "host_port": 0, "container_port": 80}],
        }
        ok = who.cmd([SYSTEM_PYTHON, "-I", "-S", str(who.pyz), "__netns", json.dumps(request)])
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["ports"][0]["host_port"] > 0
        request["ports"][0]["host_port"] = port
        bad = who.cmd(
            [SYSTEM_PYTHON, "-I", "-S", str(who.pyz), "__netns"], input=json.dumps(request)
        )
        assert bad.returncode == 125
        assert f"0.0.0.0:{port}: bind: address already in use" in json.loads(bad.stdout)["error"]
    finally:
        taken.close()


# --- `run -p` end to end: the port forwarder (netns_helpers/forward.py) --------------------------

# This busybox's nc has no UDP mode: the UDP echo server is the host's python3, bind-mounted.
UDP_ECHO_SERVER = (
    "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 9999))\nwhile True:\n    d, a = s.recvfrom(65535)\n"
    "    s.sendto(b'echo:' + d, a)\n"
)


def _host_python() -> str:
    """The host's python3 as seen in a container with the host's /usr at /host (through the
    host's dynamic loader: the busybox image has no /lib)."""
    import glob

    loader = sorted(glob.glob("/usr/lib/*-linux-gnu/ld-linux*.so*"))[0][len("/usr") :]
    return f"/host{loader} --library-path /host{os.path.dirname(loader)} /host/bin/python3 -S"


HOST_PYTHON = _host_python()
SERVE = (
    "mkdir -p /www && echo hello-fwd > /www/index.html && httpd -p 80 -h /www && "
    f'exec {HOST_PYTHON} -c "$ECHO"'
)


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def _http(host: str, port: int, timeout: float = 15) -> str:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:  # httpd may not listen yet right after `run -d` returns
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=5) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _udp(host: str, port: int, payload: bytes, timeout: float = 15) -> bytes:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        while time.monotonic() < deadline:  # the echo server may not be bound yet
            sock.sendto(payload, (host, port))
            try:
                data, source = sock.recvfrom(65536)
            except socket.timeout:
                continue
            assert source == (host, port)
            return data
    return b""


def _monitor_children(monitor: int) -> Dict[str, List[int]]:
    found: Dict[str, List[int]] = {"forwarder": [], "slirp4netns": []}
    for pid in all_pids():
        if parent_of(pid) != monitor or not pid_alive(pid):
            continue
        cmdline = cmdline_of(pid)
        if "port-forward" in cmdline:
            found["forwarder"].append(pid)
        elif "slirp4netns" in cmdline:
            found["slirp4netns"].append(pid)
    return found


def _assert_listenable(port: int) -> None:
    with socket.socket() as sock:  # as a forwarder binds: TIME_WAIT leftovers do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _inspect(runner: Runner, name: str) -> Dict[str, Any]:
    return json.loads(runner.ok("inspect", "--type", "container", name))[0]


def test_run_publishes_tcp_and_udp_through_the_forwarder(as_each, image: str) -> None:
    from netns_helpers.files import host_primary_ip

    name = unique_name("fwd")
    local, anywhere, udp = _free_port(), _free_port(), _free_port(socket.SOCK_DGRAM)
    as_each.ok(
        "run", "-d", "--name", name, "--network", "slirp4netns", "-v", "/usr:/host:ro", "-e", f"ECHO={UDP_ECHO_SERVER}",
        "-p", f"127.0.0.1:{local}:80", "-p", f"{anywhere}:80", "-p", f"{udp}:9999/udp",
        image, "sh", "-c", SERVE,
    )  # fmt: skip
    try:
        monitor = _inspect(as_each, name)["State"]["ConmonPid"]
        assert _http("127.0.0.1", local) == "hello-fwd\n"
        assert _http("127.0.0.1", anywhere) == "hello-fwd\n"
        assert _http(host_primary_ip(), anywhere) == "hello-fwd\n"
        # UDP from 127.0.0.1 (slirp4netns's own forwarding cannot answer loopback clients)
        assert _udp("127.0.0.1", udp, b"ping") == b"echo:ping"
        assert _udp(host_primary_ip(), udp, b"pong") == b"echo:pong"
        assert sorted(as_each.ok("port", name).splitlines()) == sorted(
            [
                f"80/tcp -> 127.0.0.1:{local}",
                f"80/tcp -> 0.0.0.0:{anywhere}",
                f"9999/udp -> 0.0.0.0:{udp}",
            ]
        )
        helpers = _monitor_children(monitor)
        assert len(helpers["forwarder"]) == 1 and len(helpers["slirp4netns"]) == 1, helpers
        print(f"\n[{as_each.user or 'root'}] forwarder RSS {_rss_kib(helpers['forwarder'][0])} KiB")
        # a second container wanting the same host port: one line, nothing left running
        clash = as_each.podpy(
            "run", "--rm", "--network", "slirp4netns", "-p", f"{anywhere}:80", image, "true"
        )
        assert clash.returncode == 125
        error = [line for line in clash.stderr.splitlines() if line.startswith("Error")]
        assert len(error) == 1 and error[0].endswith(
            f"listen tcp 0.0.0.0:{anywhere}: bind: address already in use"
        )
    finally:
        as_each.ok("rm", "-f", "-t", "0", name)
    for pid in helpers["forwarder"] + helpers["slirp4netns"]:
        assert wait_gone(pid), f"rm -f left {cmdline_of(pid)!r} running"
    _assert_listenable(local)  # the host port is free again


def test_forwarder_and_slirp_die_with_a_killed_monitor(as_each, image: str) -> None:
    name = unique_name("fwdkill")
    port = _free_port()
    as_each.ok("run", "-d", "--name", name, "--network", "slirp4netns", "-p", f"127.0.0.1:{port}:80", image, "httpd", "-f", "-p", "80")  # fmt: skip
    monitor = _inspect(as_each, name)["State"]["ConmonPid"]
    deadline = time.monotonic() + 10
    while "--resume" not in cmdline_of(monitor):  # handed over across the monitor's re-exec
        assert time.monotonic() < deadline, "the monitor never re-executed itself"
        time.sleep(0.05)
    helpers = _monitor_children(monitor)
    assert len(helpers["forwarder"]) == 1 and len(helpers["slirp4netns"]) == 1, helpers
    os.kill(monitor, 9)
    for pid in helpers["forwarder"] + helpers["slirp4netns"]:
        assert wait_gone(pid), f"{cmdline_of(pid)!r} outlived its monitor"
    assert _inspect(as_each, name)["State"]["Status"] == "exited"  # noticed by the next command
    as_each.ok("rm", "-f", name)
    _assert_listenable(port)


def test_slirp4netns_port_handler_still_forwards(as_each, image: str) -> None:
    name = unique_name("fwdslirp")
    port = _free_port()
    as_each.ok(
        "run", "-d", "--name", name, "--network", "slirp4netns:port_handler=slirp4netns",
        "-p", f"127.0.0.1:{port}:80", image, "sh", "-c",
        "mkdir -p /www && echo hello-fwd > /www/index.html && exec httpd -f -p 80 -h /www",
    )  # fmt: skip
    try:
        monitor = _inspect(as_each, name)["State"]["ConmonPid"]
        assert _http("127.0.0.1", port) == "hello-fwd\n"
        helpers = _monitor_children(monitor)
        assert helpers["forwarder"] == []  # slirp4netns's add_hostfwd
        # Its API socket is in the container's run dir, reached through a directory fd when
        # the path is too long for sockaddr_un: never a file in /tmp a killed monitor leaves.
        argv = cmdline_of(helpers["slirp4netns"][0]).split("\0")
        api = [a for a in argv if a.startswith("--api-socket=")][0].split("=", 1)[1]
        cid = _inspect(as_each, name)["Id"]
        assert api.startswith("/proc/self/fd/") or api.endswith(f"/{cid}/slirp4netns.sock"), api
    finally:
        as_each.ok("rm", "-f", "-t", "0", name)
