"""`podpy network` through the zipapp, as the rootless user and as root: create/ls/inspect/rm/
exists/prune with podman 4's JSON and errors, and 50 concurrent creates without a collision.
"""

from __future__ import annotations

import glob
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import List

from procs import all_pids, cmdline_of, parent_of, pid_alive

HEX64_LEN = 64


def unique_name(prefix: str = "n") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def test_network_crud_and_podman_json(as_each) -> None:
    listing = as_each.ok("network", "ls")
    assert listing.splitlines()[0].split() == ["NETWORK", "ID", "NAME", "DRIVER"]
    assert "podman" in as_each.ok("network", "ls", "-q").split()
    default = json.loads(as_each.ok("network", "inspect", "podman"))[0]
    subnet = "10.88.0.0/16" if as_each.user else _rootful_default_subnet()
    gateway = str(next(ipaddress.ip_network(subnet).hosts()))
    assert default["subnets"] == [{"subnet": subnet, "gateway": gateway}]
    assert default["network_interface"] == "podpy0"

    name = unique_name()
    assert as_each.ok("network", "create", name).strip() == name
    auto = json.loads(as_each.ok("network", "inspect", name))[0]
    assert list(auto) == [
        "name",
        "id",
        "driver",
        "network_interface",
        "created",
        "subnets",
        "ipv6_enabled",
        "internal",
        "dns_enabled",
        "ipam_options",
    ]
    assert len(auto["id"]) == HEX64_LEN and auto["driver"] == "bridge"
    subnet = ipaddress.ip_network(auto["subnets"][0]["subnet"])
    assert subnet.prefixlen == 24 and subnet.subnet_of(ipaddress.ip_network("10.0.0.0/8"))
    assert not subnet.overlaps(ipaddress.ip_network("10.88.0.0/16"))
    assert auto["ipam_options"] == {"driver": "host-local"} and auto["dns_enabled"] is True

    custom = unique_name()
    as_each.ok(
        "network", "create", "--subnet", "10.123.5.0/24", "--gateway", "10.123.5.254",
        "--internal", "--label", "team=a", custom,
    )  # fmt: skip
    info = json.loads(as_each.ok("network", "inspect", custom))[0]
    assert info["subnets"] == [{"subnet": "10.123.5.0/24", "gateway": "10.123.5.254"}]
    assert info["internal"] is True and info["labels"] == {"team": "a"}
    assert as_each.ok(
        "network", "inspect", "--format", "{{.name}} {{.internal}}", custom
    ).strip() == (f"{custom} true")
    # ls --filter: podman's keys; the default network is never dangling
    def listed(*filters: str) -> list:
        argv = [a for f in filters for a in ("--filter", f)]
        return sorted(as_each.ok("network", "ls", "-q", *argv).split())

    assert listed("label=team=a") == [custom]
    assert listed(f"name=^{custom}$") == [custom]
    assert listed("label=team", f"name={name}") == []
    assert listed(f"name=^{custom}$", f"name=^{name}$") == sorted([custom, name])
    assert listed("driver=bridge") == sorted(["podman", custom, name])
    assert listed("dangling=true") == sorted([custom, name])
    assert listed("dangling=false") == ["podman"]
    assert listed(f"id={info['id'][:12]}") == [custom]
    bad = as_each.podpy("network", "ls", "--filter", "colour=red")
    assert bad.returncode == 125 and 'Error: invalid filter "colour"' in bad.stderr
    # podman's Go field names work too
    assert as_each.ok(
        "network", "inspect", "--format", "{{.Name}} {{.Driver}} {{.Internal}} {{.DNSEnabled}} "
        "{{range .Subnets}}{{.Gateway}}{{end}} {{.Labels.team}}", custom,
    ).strip() == f"{custom} bridge true true 10.123.5.254 a"  # fmt: skip

    assert as_each.podpy("network", "exists", custom).returncode == 0
    assert as_each.podpy("network", "exists", unique_name()).returncode == 1
    assert as_each.ok("network", "rm", custom).strip() == custom
    assert as_each.podpy("network", "exists", custom).returncode == 1
    assert as_each.ok("network", "prune", "-f").split() == [name]
    assert as_each.ok("network", "ls", "-q").split() == ["podman"]


def test_network_errors_leave_nothing_behind(as_each) -> None:
    name = unique_name()
    as_each.ok("network", "create", "--subnet", "10.124.0.0/24", name)
    cases = [
        (["network", "create", name], f"Error: network name {name} already used: network already exists"),
        (
            ["network", "create", "--subnet", "10.124.0.0/16", unique_name()],
            "Error: subnet 10.124.0.0/16 is already used on the host or by another config",
        ),
        (["network", "create", "bad/name"], "Error: network name bad/name invalid: names must match"),
        (["network", "create", "--subnet", "10.0.0.0/33", unique_name()], "Error: invalid CIDR address: 10.0.0.0/33"),
        (
            ["network", "create", "--subnet", "10.0.1.0/24", "--gateway", "10.0.2.1", unique_name()],
            "Error: gateway 10.0.2.1 not in subnet 10.0.1.0/24",
        ),
        (["network", "create", "-d", "macvlan", unique_name()], "Error: unsupported driver macvlan"),
        (["network", "rm", "podman"], "Error: default network podman cannot be removed"),
    ]  # fmt: skip
    for argv, message in cases:
        result = as_each.podpy(*argv)
        assert result.returncode == 125, (argv, result.stderr)
        assert result.stderr.startswith(message), (argv, result.stderr)
    missing = as_each.podpy("network", "rm", "nosuchnet")
    assert missing.returncode == 1  # podman 4.3's exit code here
    assert "unable to find network with name or ID nosuchnet: network not found" in missing.stderr
    forced = as_each.podpy("network", "rm", "-f", "nosuchnet")  # podman: -f ignores it
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, "", "")
    gone = as_each.podpy("network", "inspect", "nosuchnet")
    assert gone.returncode == 125 and gone.stdout.strip() == "[]"
    assert sorted(as_each.ok("network", "ls", "-q").split()) == sorted(["podman", name])
    as_each.ok("network", "rm", name)


def test_fifty_concurrent_creates_get_distinct_subnets(as_each) -> None:
    prefix = unique_name("c")
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    base = [python, "-I", str(as_each.pyz), *as_each.extra_args, "network", "create"]
    argv = [as_each._wrap([*base, f"{prefix}-{i}"]) for i in range(50)]
    env = as_each.env()
    procs = [
        subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(as_each.home))
        for a in argv
    ]  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    names = [f"{prefix}-{i}" for i in range(50)]
    data = json.loads(as_each.ok("network", "inspect", *names))
    subnets = [d["subnets"][0]["subnet"] for d in data]
    assert len(set(subnets)) == 50
    assert len({d["network_interface"] for d in data}) == 50
    assert len({d["id"] for d in data}) == 50
    assert as_each.ok("network", "rm", *names).split() == names


def _rootful_default_subnet() -> str:
    """As root the default network is the host-wide podpy0 bridge: its current subnet, or the
    one it will take (10.88.0.0/16 unless another interface, e.g. podman's podman0, routes an
    overlapping subnet; then 10.87.0.0/16 downwards)."""
    try:
        with open("/run/podpy/networks/podman.json") as f:
            return str(json.load(f)["subnet"])
    except (OSError, ValueError, KeyError):
        pass
    routed = []
    with open("/proc/net/route") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if fields[0] == "podpy0" or int(fields[7], 16) == 0:
                continue
            dest = ipaddress.ip_address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.ip_address(int(fields[7], 16).to_bytes(4, "little"))
            routed.append(ipaddress.ip_network(f"{dest}/{mask}", strict=False))
    for second in [88, *range(87, 79, -1)]:
        candidate = ipaddress.ip_network(f"10.{second}.0.0/16")
        if not any(candidate.overlaps(r) for r in routed):
            return str(candidate)
    raise AssertionError("no free default subnet")


def _default_net_state() -> dict:
    try:
        with open("/run/podpy/networks/podman.json") as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return {}


def _udp_echo_in(pid: int, port: int) -> subprocess.Popen:
    """A one-shot UDP echo server inside the network namespace of `pid` (busybox nc has no -u)."""
    code = (
        "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.bind(('0.0.0.0', {port})); print('ready', flush=True); "
        "d, a = s.recvfrom(100); s.sendto(b'echo:' + d, a)"
    )
    proc = subprocess.Popen(
        ["nsenter", "-t", str(pid), "-n", sys.executable, "-I", "-S", "-c", code],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_rootful_default_network_is_the_podpy0_bridge(rootful, busybox_image: str) -> None:
    """As podman's cni-podman0/podman0: no --network as root means a veth on the host bridge
    podpy0, NAT out, ports published by DNAT (TCP and UDP, 127.0.0.1 too); everything goes
    with the last container."""
    import urllib.request

    rootful.ok("pull", "-q", "--tls-verify=false", busybox_image)
    web, tcp_port, udp_port = unique_name("web"), _free_port(), _free_port()
    rootful.ok("run", "-d", "--name", web, "-p", f"127.0.0.1:{tcp_port}:80", "-p", f"{udp_port}:9999/udp", busybox_image, "httpd", "-f", "-p", "80", "-h", "/etc")  # fmt: skip
    info = json.loads(rootful.ok("inspect", web))[0]
    cid, pid = info["Id"], info["State"]["Pid"]
    assert info["HostConfig"]["NetworkMode"] == "bridge"
    subnet = ipaddress.ip_network(_default_net_state()["subnet"])
    address = info["NetworkSettings"]["Networks"]["podman"]["IPAddress"]
    assert ipaddress.ip_address(address) in subnet
    assert info["NetworkSettings"]["IPAddress"] == address
    assert _default_net_state()["allocations"][cid]["address"] == address
    assert _links_on("podpy0"), "the container's veth should be on podpy0"
    with open("/proc/sys/net/ipv4/conf/podpy0/route_localnet") as f:
        assert f.read().strip() == "1"
    table = subprocess.run(["nft", "list", "table", "ip", "podpy"], capture_output=True, text=True).stdout  # fmt: skip
    assert f"ip saddr {subnet} ip daddr != {subnet} masquerade" in table
    assert f"ip daddr 127.0.0.1 tcp dport {tcp_port} dnat to {address}:80" in table
    assert f"udp dport {udp_port} dnat to {address}:9999" in table

    body, deadline = "", time.monotonic() + 10
    while not body:  # httpd may not listen yet right after `run -d` returns
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{tcp_port}/hostname", timeout=10) as resp:  # fmt: skip
                body = resp.read().decode().strip()
        except OSError:
            assert time.monotonic() < deadline, "the published port never answered"
            time.sleep(0.1)
    assert body == cid[:12]
    echo = _udp_echo_in(pid, 9999)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(b"ping", ("127.0.0.1", udp_port))
        assert s.recvfrom(100)[0] == b"echo:ping"
    echo.wait(timeout=10)

    # the host port is held while the container runs: a second container cannot take it
    clash = rootful.podpy("run", "-d", "--name", unique_name("clash"), "-p", f"{udp_port}:53/udp", busybox_image, "true")  # fmt: skip
    assert clash.returncode == 125 and str(udp_port) in clash.stderr
    # `--network podman` and `--network bridge` are the same network; containers reach each other
    for mode in ("podman", "bridge"):
        out = rootful.ok("run", "--rm", "--network", mode, busybox_image, "sh", "-c", f"ip -4 -o addr show eth0; wget -qO- http://{address}/hostname")  # fmt: skip
        assert str(subnet.network_address)[:-1] in out and cid[:12] in out
    refused = rootful.podpy("network", "rm", "podman")
    assert refused.returncode != 0 and "cannot be removed" in refused.stderr

    # stop: the DNAT rules go (the address stays until rm); rm: the address goes, and with the
    # last address of any store, podpy0 and the table
    rootful.ok("stop", "-t", "1", web)
    table = subprocess.run(["nft", "list", "table", "ip", "podpy"], capture_output=True, text=True).stdout  # fmt: skip
    assert str(tcp_port) not in table and str(udp_port) not in table
    assert cid in _default_net_state()["allocations"]
    rootful.ok("rm", "-a", "-f")
    assert cid not in (_default_net_state().get("allocations") or {})
    if not _default_net_state():  # no other store (another test run) holds an address
        assert not os.path.exists("/sys/class/net/podpy0")
        listing = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert "table ip podpy\n" not in listing + "\n"
    with socket.socket() as s:  # the published port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", tcp_port))


def test_rootful_default_network_is_shared_by_stores(rootful, busybox_image: str, tmp_path) -> None:
    """Two stores (--root) share podpy0 and one address pool, as podman's rootful stores share
    theirs: distinct addresses; `system reset` of one store releases only its addresses."""
    import dataclasses

    rootful.ok("pull", "-q", "--tls-verify=false", busybox_image)
    second = dataclasses.replace(rootful, extra_args=["--root", str(tmp_path / "s2"), "--runroot", str(tmp_path / "r2")])  # fmt: skip
    run2 = second.podpy
    try:
        second.ok("pull", "-q", "--tls-verify=false", busybox_image)
        a = rootful.ok("run", "-d", busybox_image, "sleep", "600").strip()
        b = second.ok("run", "-d", busybox_image, "sleep", "600").strip()
        allocations = _default_net_state()["allocations"]
        assert allocations[a]["address"] != allocations[b]["address"]
        assert allocations[a]["store"] != allocations[b]["store"]
        assert run2("system", "reset", "--force").returncode == 0
        allocations = _default_net_state()["allocations"]
        assert a in allocations and b not in allocations
        assert os.path.exists("/sys/class/net/podpy0")
        out = rootful.ok("exec", a, "ip", "-4", "-o", "addr", "show", "eth0")
        assert allocations[a]["address"] in out
    finally:
        run2("system", "reset", "--force")
    rootful.ok("rm", "-f", a)
    assert a not in (_default_net_state().get("allocations") or {})


def _links_on(bridge: str) -> List[str]:
    """Host interfaces enslaved to `bridge` (the host ends of the containers' veth pairs)."""
    base = f"/sys/class/net/{bridge}/brif"
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def _dns_processes(network_id: str) -> List[int]:
    return [
        pid
        for pid in all_pids()
        if "dns-serve" in cmdline_of(pid) and network_id in cmdline_of(pid) and pid_alive(pid)
    ]


def test_rootful_bridge_network_ip_name_alias_and_cleanup(rootful, busybox_image: str) -> None:
    rootful.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name = unique_name()
    rootful.ok("network", "create", name)
    info = json.loads(rootful.ok("network", "inspect", name))[0]
    bridge, gateway = info["network_interface"], info["subnets"][0]["gateway"]
    server = unique_name("srv")
    rootful.ok(
        "run", "-d", "--name", server, "--network", f"{name}:alias=web", busybox_image,
        "httpd", "-f", "-p", "80", "-h", "/etc",
    )  # fmt: skip
    script = (
        "ip -4 -o addr show eth0; ip route show default; cat /etc/resolv.conf; "
        f"wget -qO- http://{server}/hostname; wget -qO- http://web/hostname; "
        "nslookup nosuchname 2>&1 | grep -c NXDOMAIN"
    )
    out = rootful.ok("run", "--rm", "--network", name, busybox_image, "sh", "-c", script)
    subnet = ipaddress.ip_network(info["subnets"][0]["subnet"])
    address = out.split("inet ", 1)[1].split("/", 1)[0]
    assert ipaddress.ip_address(address) in subnet and address != gateway
    assert f"default via {gateway} dev eth0" in out
    assert f"nameserver {gateway}" in out and "search dns.podman" in out
    server_id = rootful.ok("inspect", "--format", "{{.Id}}", server).strip()
    assert out.count(server_id[:12]) == 2  # by name and by alias: the server's hostname
    assert out.strip().splitlines()[-1] != "0"  # unknown names: NXDOMAIN
    # by IP too, and the server holds the network's first container address
    server_ip = str(list(subnet.hosts())[1])
    settings = json.loads(rootful.ok("inspect", server))[0]["NetworkSettings"]
    assert settings["IPAddress"] == server_ip and settings["Gateway"] == gateway
    assert settings["Networks"][name]["NetworkID"] == info["id"]
    assert "web" in settings["Networks"][name]["Aliases"]
    assert rootful.ok("run", "--rm", "--network", name, busybox_image, "wget", "-qO-", f"http://{server_ip}/hostname").strip() == server_id[:12]  # fmt: skip
    nat = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True)
    assert f"ip saddr {subnet} ip daddr != {subnet} masquerade" in nat.stdout
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == "1"
    assert len(_links_on(bridge)) == 1  # only the running server's veth is left
    assert _dns_processes(info["id"])

    refused = rootful.podpy("network", "rm", name)
    assert refused.returncode == 2 and "network is being used" in refused.stderr
    assert rootful.ok("network", "rm", "-f", name).strip() == name
    deadline = time.monotonic() + 10
    while (_dns_processes(info["id"]) or os.path.exists(f"/sys/class/net/{bridge}")) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    assert not _dns_processes(info["id"])
    assert rootful.ok("ps", "-a", "-q").split() == []
    nat = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True)
    assert str(subnet) not in nat.stdout


def test_user_network_limits_are_clear_errors(as_each, busybox_image: str) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name = unique_name()
    as_each.ok("network", "create", name)
    missing = as_each.podpy(
        "run", "--rm", "--network", unique_name("nosuch"), busybox_image, "true"
    )
    assert missing.returncode == 125 and "network not found" in missing.stderr
    assert as_each.ok("ps", "-a", "-q").split() == []  # nothing half-made
    as_each.ok("network", "rm", name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _forwarders(monitor: int) -> List[int]:
    """The port forwarders the monitor `monitor` started (other tests may run their own)."""
    return [
        pid
        for pid in all_pids()
        if parent_of(pid) == monitor and "port-forward" in cmdline_of(pid) and pid_alive(pid)
    ]


def test_published_port_on_a_user_network(as_each, busybox_image: str) -> None:
    import urllib.request

    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name, web = unique_name(), unique_name("web")
    as_each.ok("network", "create", name)
    port, udp_port = _free_port(), _free_port()
    # busybox nc has no UDP mode: the UDP echo server is the host's python3, bind-mounted
    echo = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('', 9999))\nwhile True:\n    d, a = s.recvfrom(99)\n    s.sendto(b'echo:' + d, a)\n"  # fmt: skip
    loader = sorted(glob.glob("/usr/lib/*-linux-gnu/ld-linux*.so*"))[0][len("/usr") :]
    python = f"/host{loader} --library-path /host{os.path.dirname(loader)} /host/bin/python3 -S"
    as_each.ok("run", "-d", "--name", web, "--network", name, "-p", f"{port}:80", "-p", f"{udp_port}:9999/udp", "-v", "/usr:/host:ro", "-e", f"ECHO={echo}", busybox_image, "sh", "-c", f'httpd -p 80 -h /etc && exec {python} -c "$ECHO"')  # fmt: skip
    web_id = as_each.ok("inspect", "--format", "{{.Id}}", web).strip()
    body, deadline = "", time.monotonic() + 10
    while not body:  # httpd may not listen yet right after `run -d` returns
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=10) as resp:
                body = resp.read().decode().strip()
        except OSError:
            assert time.monotonic() < deadline, "the published port never answered"
            time.sleep(0.1)
    assert body == web_id[:12]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:  # UDP, from 127.0.0.1
        client.settimeout(0.3)
        answer = b""
        while not answer:
            client.sendto(b"ping", ("127.0.0.1", udp_port))
            try:
                answer = client.recv(100)
            except socket.timeout:
                assert time.monotonic() < deadline + 10, "the published UDP port never answered"
    assert answer == b"echo:ping"
    assert sorted(as_each.ok("port", web).splitlines()) == [
        f"80/tcp -> 0.0.0.0:{port}",
        f"9999/udp -> 0.0.0.0:{udp_port}",
    ]
    other = unique_name("clash")
    clash = as_each.podpy("run", "-d", "--name", other, "--network", name, "-p", f"{port}:80", busybox_image, "true")  # fmt: skip
    assert clash.returncode == 125 and f"{port}" in clash.stderr and "in use" in clash.stderr
    as_each.ok("rm", "-f", other)  # run -d leaves the created container, as podman does
    monitor = json.loads(as_each.ok("inspect", web))[0]["State"]["ConmonPid"]
    forwarders = _forwarders(monitor)
    assert len(forwarders) == 1
    as_each.ok("rm", "-f", web)
    deadline = time.monotonic() + 10
    while pid_alive(forwarders[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(forwarders[0]), "rm -f left the port forwarder running"
    as_each.ok("network", "rm", name)


def test_system_reset_removes_bridges_dns_and_rules(rootful, busybox_image: str) -> None:
    rootful.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name = unique_name()
    rootful.ok("network", "create", name)
    info = json.loads(rootful.ok("network", "inspect", name))[0]
    rootful.ok("run", "-d", "--network", name, busybox_image, "sleep", "600")
    assert os.path.exists(f"/sys/class/net/{info['network_interface']}")
    assert _dns_processes(info["id"])
    rootful.ok("system", "reset", "--force")
    deadline = time.monotonic() + 10
    while _dns_processes(info["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _dns_processes(info["id"])
    assert not os.path.exists(f"/sys/class/net/{info['network_interface']}")
    nat = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True)
    assert info["subnets"][0]["subnet"] not in nat.stdout


def _host_ip() -> str:
    """The host's primary address (the source of its default route; no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        return str(s.getsockname()[0])


def test_rootless_bridge_network_names_and_outbound(rootless, busybox_image: str) -> None:
    rootless.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name = unique_name()
    rootless.ok("network", "create", name)
    info = json.loads(rootless.ok("network", "inspect", name))[0]
    gateway = info["subnets"][0]["gateway"]
    server = unique_name("srv")
    rootless.ok(
        "run", "-d", "--name", server, "--network", f"{name}:alias=web", busybox_image,
        "httpd", "-f", "-p", "80", "-h", "/etc",
    )  # fmt: skip
    server_id = rootless.ok("inspect", "--format", "{{.Id}}", server).strip()
    # Outbound: a server on the host's own address, reached through the rootless netns'
    # masquerade and its slirp4netns.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((_host_ip(), 0))
    listener.listen(4)
    host_port = listener.getsockname()[1]
    replies = []

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nfromhost")
            replies.append(True)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    script = (
        "ip route show default; cat /etc/resolv.conf; "
        f"wget -qO- http://{server}/hostname; wget -qO- http://web/hostname; "
        f"wget -qO- http://{_host_ip()}:{host_port}/"
    )
    try:
        out = rootless.ok("run", "--rm", "--network", name, busybox_image, "sh", "-c", script)
    finally:
        listener.close()
    assert f"default via {gateway} dev eth0" in out
    assert f"nameserver {gateway}" in out
    assert out.count(server_id[:12]) == 2  # by name and by alias
    assert out.rstrip().endswith("fromhost") and replies
    netns = json.loads(rootless.ok("info", "--format", "json"))["store"]["runRoot"]
    state_file = os.path.join(netns, "networks", "rootless-netns.json")
    with open(state_file) as f:
        pids = json.load(f)
    assert all(pid_alive(p) for p in pids.values())
    rootless.ok("rm", "-f", server)
    rootless.ok("network", "rm", name)
    rootless.ok("system", "reset", "--force")  # ends the rootless netns with the store
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids.values() if pid_alive(p)]


def _eventually(fetch, attempts: int = 10) -> str:
    """The first non-empty answer: a hot-plugged link may need a moment under load."""
    for _ in range(attempts):
        out = fetch()
        if out:
            return out
        time.sleep(0.5)
    return ""


def test_connect_and_disconnect_a_running_container(as_each, busybox_image: str) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image)
    front, back = unique_name("f"), unique_name("b")
    as_each.ok("network", "create", front)
    as_each.ok("network", "create", back)
    server, client = unique_name("srv"), unique_name("cli")
    as_each.ok("run", "-d", "--name", server, "--network", back, busybox_image, "httpd", "-f", "-p", "80", "-h", "/etc")  # fmt: skip
    as_each.ok("run", "-d", "--name", client, "--network", front, busybox_image, "sleep", "600")
    server_id = as_each.ok("inspect", "--format", "{{.Id}}", server).strip()

    def fetch() -> str:
        result = as_each.podpy("exec", client, "wget", "-qO-", f"http://{server}/hostname")
        return result.stdout.strip()

    assert fetch() == ""  # different networks: no name, no route
    as_each.ok("network", "connect", "--alias", "www", front, server)
    assert _eventually(fetch) == server_id[:12]
    out = as_each.ok("exec", server, "ip", "-4", "-o", "addr")
    assert " eth0 " in out and " eth1 " in out
    again = as_each.podpy("network", "connect", front, server)
    assert again.returncode == 125 and "already connected" in again.stderr
    as_each.ok("network", "disconnect", front, server)
    assert " eth1 " not in as_each.ok("exec", server, "ip", "-4", "-o", "addr")
    assert fetch() == ""
    info = json.loads(as_each.ok("network", "inspect", front))[0]
    assert info["name"] == front
    not_on = as_each.podpy("network", "disconnect", front, server)
    assert not_on.returncode == 125 and "is not connected" in not_on.stderr
    # a stopped container is connected at its next start
    as_each.ok("stop", "-t", "0", server)
    as_each.ok("network", "connect", front, server)
    as_each.ok("start", server)
    assert _eventually(fetch) == server_id[:12]
    as_each.ok("rm", "-f", server, client)
    assert sorted(as_each.ok("network", "prune", "-f").split()) == sorted([front, back])
