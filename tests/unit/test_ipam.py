"""IPAM: subnet/gateway parsing and choice, address allocation, host routes, and the DB-backed
allocation in podpy.engine.networks under concurrent processes (no collisions)."""

from __future__ import annotations

import ipaddress
import multiprocessing
from pathlib import Path
from typing import List

import pytest

from netns_helpers import ipam
from podpy.engine import Engine, GlobalOptions, networks


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(text)  # type: ignore[return-value]


def test_parse_subnet_masks_host_bits_and_refuses_bad_input() -> None:
    assert str(ipam.parse_subnet("10.89.7.9/24")) == "10.89.7.0/24"
    with pytest.raises(ipam.IpamError, match=r"^invalid CIDR address: 10.0.0.0/33$"):
        ipam.parse_subnet("10.0.0.0/33")
    with pytest.raises(ipam.IpamError, match="invalid CIDR address: nonsense"):
        ipam.parse_subnet("nonsense")
    with pytest.raises(ipam.IpamError, match="too small"):
        ipam.parse_subnet("10.1.1.1/32")
    with pytest.raises(ipam.IpamError, match="IPv6"):
        ipam.parse_subnet("fd00::/64")


def test_gateway_defaults_to_first_host_and_must_be_inside() -> None:
    subnet = net("10.0.1.0/24")
    assert ipam.parse_gateway(None, subnet) == "10.0.1.1"
    assert ipam.parse_gateway("10.0.1.254", subnet) == "10.0.1.254"
    with pytest.raises(ipam.IpamError, match=r"^gateway 10.0.2.1 not in subnet 10.0.1.0/24$"):
        ipam.parse_gateway("10.0.2.1", subnet)
    with pytest.raises(ipam.IpamError, match="broadcast"):
        ipam.parse_gateway("10.0.1.255", subnet)


def test_next_free_subnet_starts_at_10_89_and_skips_overlaps() -> None:
    assert str(ipam.next_free_subnet([net("10.88.0.0/16")])) == "10.89.0.0/24"
    used = [net("10.88.0.0/16"), net("10.89.0.0/24"), net("10.89.1.0/25"), net("10.89.2.0/23")]
    assert str(ipam.next_free_subnet(used)) == "10.89.4.0/24"
    # a big host route over the whole range: the search moves past it
    assert str(ipam.next_free_subnet([net("10.89.0.0/16")])) == "10.90.0.0/24"
    with pytest.raises(ipam.IpamError, match="could not find a free subnet"):
        ipam.next_free_subnet([net("10.0.0.0/8")])


def test_check_free_reports_overlap_as_podman() -> None:
    with pytest.raises(
        ipam.IpamError,
        match=r"^subnet 10.89.0.0/24 is already used on the host or by another config$",
    ):
        ipam.check_free(net("10.89.0.0/24"), [net("10.89.0.0/16")])
    ipam.check_free(net("10.89.1.0/24"), [net("10.89.0.0/24")])


def test_allocate_address_lowest_free_skips_gateway_and_exhausts() -> None:
    subnet = net("10.89.3.0/29")  # hosts .1-.6, .1 is the gateway
    assert ipam.allocate_address(subnet, "10.89.3.1", set()) == "10.89.3.2"
    assert ipam.allocate_address(subnet, "10.89.3.1", {"10.89.3.2", "10.89.3.4"}) == "10.89.3.3"
    full = {f"10.89.3.{i}" for i in range(2, 7)}
    with pytest.raises(ipam.IpamError, match="failed to find free IP in subnet 10.89.3.0/29"):
        ipam.allocate_address(subnet, "10.89.3.1", full)


def test_static_address_checks() -> None:
    subnet = net("10.89.3.0/24")
    assert ipam.check_static_address("10.89.3.9", subnet, "10.89.3.1", set()) == "10.89.3.9"
    with pytest.raises(ipam.IpamError, match="not in subnet"):
        ipam.check_static_address("10.89.4.9", subnet, "10.89.3.1", set())
    with pytest.raises(ipam.IpamError, match="already allocated"):
        ipam.check_static_address("10.89.3.9", subnet, "10.89.3.1", {"10.89.3.9"})
    with pytest.raises(ipam.IpamError, match="already allocated"):
        ipam.check_static_address("10.89.3.1", subnet, "10.89.3.1", set())


def test_host_route_subnets_parses_proc_net_route(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"  # default route: skipped
        "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"  # 192.168.2.0/24
        "br0\t0000590A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"  # 10.89.0.0/16
    )
    assert [str(n) for n in ipam.host_route_subnets(str(table))] == [
        "192.168.2.0/24",
        "10.89.0.0/16",
    ]
    assert ipam.host_route_subnets(str(tmp_path / "missing")) == []


# --- DB-backed allocation ----------------------------------------------------------------------


def _engine(root: Path) -> Engine:
    return Engine(GlobalOptions(root=str(root / "graph"), runroot=str(root / "run")))


def _create_network(args: tuple) -> str:
    root, index = args
    eng = _engine(Path(root))
    try:
        return networks.create(eng, name=f"net{index}")["config"]["subnets"][0]["subnet"]
    finally:
        eng.close()


def _allocate(args: tuple) -> str:
    root, index = args
    eng = _engine(Path(root))
    try:
        return networks.allocate(eng, "shared", f"{index:064x}")
    finally:
        eng.close()


def _pool(fn, items: List[tuple]) -> List[str]:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(16) as pool:
        return pool.map(fn, items)


def test_fifty_concurrent_network_creates_get_distinct_subnets(tmp_path: Path) -> None:
    subnets = _pool(_create_network, [(str(tmp_path), i) for i in range(50)])
    assert len(set(subnets)) == 50
    parsed = [net(s) for s in subnets]
    assert all(p.prefixlen == 24 and p.subnet_of(net("10.0.0.0/8")) for p in parsed)  # type: ignore[attr-defined]
    assert not any(p.overlaps(net("10.88.0.0/16")) for p in parsed)
    eng = _engine(tmp_path)
    try:
        names = [r["name"] for r in networks.list_networks(eng)]
        interfaces = {r["config"]["network_interface"] for r in networks.list_networks(eng)}
    finally:
        eng.close()
    assert len(names) == 51 and "podman" in names
    assert len(interfaces) == 51  # podpy0 for the default, a distinct bridge name for each


def test_fifty_concurrent_allocations_never_collide_and_release_reuses(tmp_path: Path) -> None:
    eng = _engine(tmp_path)
    try:
        networks.create(eng, name="shared", subnet="10.77.0.0/24")
    finally:
        eng.close()
    addresses = _pool(_allocate, [(str(tmp_path), i) for i in range(50)])
    assert len(set(addresses)) == 50
    assert "10.77.0.1" not in addresses  # the gateway
    assert set(addresses) == {f"10.77.0.{i}" for i in range(2, 52)}
    eng = _engine(tmp_path)
    try:
        # asking again returns the same address; releasing frees it for the next container
        assert networks.allocate(eng, "shared", f"{7:064x}") == addresses[7]
        networks.release(eng, "shared", f"{7:064x}")
        assert networks.allocate(eng, "shared", "f" * 64) == addresses[7]
        with pytest.raises(ipam.IpamError, match="already allocated"):
            networks.allocate(eng, "shared", "e" * 64, static_ip=addresses[3])
    finally:
        eng.close()


def test_network_crud_errors(tmp_path: Path) -> None:
    eng = _engine(tmp_path)
    try:
        networks.create(eng, name="a", subnet="10.90.0.0/24")
        with pytest.raises(Exception, match="network name a already used: network already exists"):
            networks.create(eng, name="a")
        assert networks.create(eng, name="a", ignore_existing=True)["name"] == "a"
        with pytest.raises(Exception, match="10.90.0.0/16 is already used"):
            networks.create(eng, name="b", subnet="10.90.0.0/16")
        with pytest.raises(Exception, match="invalid argument"):
            networks.create(eng, name="bad/name")
        with pytest.raises(Exception, match="unsupported driver macvlan"):
            networks.create(eng, name="m", driver="macvlan")
        with pytest.raises(Exception, match="default network podman cannot be removed"):
            networks.remove(eng, "podman")
        with pytest.raises(networks.NetworkNotFound):
            networks.remove(eng, "nope")
        # nothing half-made by the failures
        assert sorted(r["name"] for r in networks.list_networks(eng)) == ["a", "podman"]
        assert networks.prune(eng) == ["a"]
    finally:
        eng.close()


# --- the DNS responder's wire format -----------------------------------------------------------


def _query(name: str, qtype: int = 1, ident: int = 0x1234) -> bytes:
    import struct

    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack(">HH", qtype, 1)
    )


def test_dns_question_parsing_and_answers() -> None:
    import socket
    import struct

    from netns_helpers import dns

    query = _query("Web.dns.podman")
    name, qtype, qclass, end = dns.parse_question(query)  # type: ignore[misc]
    assert (name, qtype, qclass, end) == ("web.dns.podman", 1, 1, len(query))
    reply = dns.build_answer(query, end, "10.89.0.7")
    ident, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", reply[:12])
    assert ident == 0x1234 and flags & 0x8000 and flags & 0x0100 and (flags & 0xF) == 0
    assert (qd, an, ns, ar) == (1, 1, 0, 0)
    assert reply[-4:] == socket.inet_aton("10.89.0.7")
    assert struct.unpack(">HHHIH", reply[end : end + 12]) == (0xC00C, 1, 1, 0, 4)
    nx = dns.build_answer(query, end, None, rcode=3)
    assert struct.unpack(">HH", nx[2:6])[0] & 0xF == 3 and struct.unpack(">H", nx[6:8])[0] == 0
    assert dns.parse_question(b"\x00" * 5) is None
    assert dns.parse_question(query[:-3]) is None


def test_dns_records_from_the_state_db(tmp_path: Path) -> None:
    import time

    from netns_helpers import dns

    eng = _engine(tmp_path)
    try:
        network = networks.create(eng, name="web", subnet="10.66.0.0/24")
        cid, stopped = "a" * 64, "b" * 64
        spec = {"mode": "bridge", "networks": ["web"], "options": {"aliases": ["api"]}}
        for key, name, status in ((cid, "front", "running"), (stopped, "old", "exited")):
            now = time.time()
            eng.db.insert(
                "containers",
                {"id": key, "name": name, "created": now, "updated": now, "status": status,
                 "config": {"network": spec}},
            )  # fmt: skip
            networks.allocate(eng, "web", key)
        records = dns.Records(eng.paths.db_file, network["id"])
        assert records.lookup("front") == "10.66.0.2"
        assert records.lookup("front.dns.podman.") == "10.66.0.2"
        assert records.lookup("api") == "10.66.0.2" and records.lookup(cid[:12]) == "10.66.0.2"
        assert records.lookup("old") is None  # not running: not resolvable
    finally:
        eng.close()


def test_dns_serve_answers_and_forwards(tmp_path: Path) -> None:
    """The responder on a loopback port: local names answered, others relayed upstream."""
    import json
    import socket
    import subprocess
    import sys
    import time

    eng = _engine(tmp_path)
    try:
        network = networks.create(eng, name="web", subnet="10.67.0.0/24")
    finally:
        eng.close()
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.bind(("127.0.0.1", 0))
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()
    request = {
        "op": "dns-serve", "address": "127.0.0.1", "port": port,
        "db": str(tmp_path / "graph" / "podpy.db"), "network_id": network["id"],
        "pid_file": str(tmp_path / "dns.pid"), "upstreams": [f"127.0.0.1:{upstream.getsockname()[1]}"],
    }  # fmt: skip
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from netns_helpers.__main__ import main; main(sys.argv[1:])", json.dumps(request)],
        cwd=root,
        env={"PYTHONPATH": root},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "dns.pid").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5)
        client.sendto(_query("nosuch"), ("127.0.0.1", port))
        reply, _ = client.recvfrom(512)
        assert reply[3] & 0xF == 3  # NXDOMAIN for an unknown bare name
        # A dotted name goes upstream, and the upstream's reply comes back verbatim.
        client.sendto(_query("example.org", ident=7), ("127.0.0.1", port))
        upstream.settimeout(5)
        relayed, source = upstream.recvfrom(512)
        assert relayed == _query("example.org", ident=7)
        upstream.sendto(relayed[:2] + b"\x81\x80" + relayed[4:], source)
        reply, _ = client.recvfrom(512)
        assert reply == relayed[:2] + b"\x81\x80" + relayed[4:]
    finally:
        proc.terminate()
        proc.wait(10)
        upstream.close()
