"""`podpy network` through the zipapp, as the rootless user and as root: create/ls/inspect/rm/
exists/prune with podman 4's JSON and errors, and 50 concurrent creates without a collision.
"""

from __future__ import annotations

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

HEX64_LEN = 64


def unique_name(prefix: str = "n") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def test_network_crud_and_podman_json(as_each) -> None:
    listing = as_each.ok("network", "ls")
    assert listing.splitlines()[0].split() == ["NETWORK", "ID", "NAME", "DRIVER"]
    assert "podman" in as_each.ok("network", "ls", "-q").split()
    default = json.loads(as_each.ok("network", "inspect", "podman"))[0]
    assert default["subnets"] == [{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]
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


def _links_on(bridge: str) -> List[str]:
    """Host interfaces enslaved to `bridge` (the host ends of the containers' veth pairs)."""
    base = f"/sys/class/net/{bridge}/brif"
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def _dns_processes(network_id: str) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"dns-serve" in cmdline and network_id.encode() in cmdline:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(entry))
    return found


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
    udp = as_each.podpy("run", "--rm", "--network", name, "-p", "18053:53/udp", busybox_image, "true")  # fmt: skip
    assert udp.returncode == 125 and "publishing UDP ports" in udp.stderr
    assert as_each.ok("ps", "-a", "-q").split() == []  # nothing half-made
    as_each.ok("network", "rm", name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proxies() -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"port-proxy" in f.read() and _alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_published_port_on_a_user_network(as_each, busybox_image: str) -> None:
    import urllib.request

    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image)
    name, web = unique_name(), unique_name("web")
    as_each.ok("network", "create", name)
    port = _free_port()
    before = set(_proxies())
    as_each.ok("run", "-d", "--name", web, "--network", name, "-p", f"{port}:80", busybox_image, "httpd", "-f", "-p", "80", "-h", "/etc")  # fmt: skip
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
    assert as_each.ok("port", web).strip() == f"80/tcp -> 0.0.0.0:{port}"
    other = unique_name("clash")
    clash = as_each.podpy("run", "-d", "--name", other, "--network", name, "-p", f"{port}:80", busybox_image, "true")  # fmt: skip
    assert clash.returncode == 125 and f"{port}" in clash.stderr and "in use" in clash.stderr
    as_each.ok("rm", "-f", other)  # run -d leaves the created container, as podman does
    assert set(_proxies()) - before
    as_each.ok("rm", "-f", web)
    deadline = time.monotonic() + 10
    while set(_proxies()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(_proxies()) - before
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
    assert all(_alive(p) for p in pids.values())
    rootless.ok("rm", "-f", server)
    rootless.ok("network", "rm", name)
    rootless.ok("system", "reset", "--force")  # ends the rootless netns with the store
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids.values() if _alive(p)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
