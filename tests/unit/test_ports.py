"""Port and network flag parsing (podman's messages for bad input) and host port checks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from netns_helpers import ports
from podpy.engine.network_opts import (
    PORTS_DISCARDED_WARNING,
    NetworkOptionError,
    NetworkSpec,
    PortMapping,
    parse_add_host,
    parse_mac_address,
    parse_network,
    parse_network_spec,
    parse_publish,
    publish_all,
)


def triples(value: str) -> List[Tuple[str, int, int, str]]:
    return [(m.host_ip, m.host_port, m.container_port, m.protocol) for m in parse_publish(value)]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("80", [("", 0, 80, "tcp")]),
        ("8080:80", [("", 8080, 80, "tcp")]),
        ("8080:80/udp", [("", 8080, 80, "udp")]),
        ("8080:80/UDP", [("", 8080, 80, "udp")]),
        ("127.0.0.1:8080:80", [("127.0.0.1", 8080, 80, "tcp")]),
        ("127.0.0.1::80", [("127.0.0.1", 0, 80, "tcp")]),
        ("0.0.0.0:8080:80", [("", 8080, 80, "tcp")]),
        (":80", [("", 0, 80, "tcp")]),
        ("[::1]:8080:80", [("::1", 8080, 80, "tcp")]),
        ("[::1]::80", [("::1", 0, 80, "tcp")]),
        ("8080-8082:80-82", [("", 8080, 80, "tcp"), ("", 8081, 81, "tcp"), ("", 8082, 82, "tcp")]),
        ("80-81", [("", 0, 80, "tcp"), ("", 0, 81, "tcp")]),
        ("53:53/tcp,udp", [("", 53, 53, "tcp"), ("", 53, 53, "udp")]),
        ("+80", [("", 0, 80, "tcp")]),  # Go's Atoi takes a sign
    ],
)
def test_publish_forms(value: str, expected: List[Tuple[str, int, int, str]]) -> None:
    assert triples(value) == expected


# Messages checked against podman 4.3.1 on this machine (`podman run -p VALUE ...`).
@pytest.mark.parametrize(
    "value, message",
    [
        ("abc", 'parsing container port: invalid port number: strconv.Atoi: parsing "abc": invalid syntax'),
        ("8_0", 'parsing container port: invalid port number: strconv.Atoi: parsing "8_0": invalid syntax'),
        ("80/tcp/udp", "invalid port format - protocol can only be specified once"),
        ("80/xyz", 'unrecognized protocol "xyz" in port mapping'),
        ("0", "parsing container port: port numbers must be between 1 and 65535 (inclusive), got 0"),
        ("70000", "parsing container port: port numbers must be between 1 and 65535 (inclusive), got 70000"),
        ("8080-8079:80", "parsing host port: the end port of a range must be higher than the start port - 8079 is not higher than 8080"),
        ("8080-8082:80-81", "host and container port ranges have different lengths: 3 vs 2"),
        ("1:2:3:4", "invalid port format - format is [[hostIP:]hostPort:]containerPort"),
        ("[::1]:80", "invalid port format - must provide host and destination port if specifying an IP"),
        ("::80", "must provide a non-empty container host IP to publish"),
        ("80/", "must provide a non-empty protocol to publish"),
        ("-80", "parsing container port: port numbers cannot be negative"),
        ("80-", "parsing container port: must provide ending number for port range"),
        ("1.2.3:80:80", 'cannot parse "1.2.3" as an IP address'),
        ("[::1:80", "invalid port format - format is [[hostIP:]hostPort:]containerPort"),
        ("8080:", "must provide a non-empty container port to publish"),
        ("::1]:80:80", "invalid port format - IPv6 addresses must be enclosed by []"),
        ("[::1]80", "invalid port format - IPv6 address must be followed by a colon (':')"),
        ("1-2-3", "parsing container port: invalid port format - port ranges are formatted as startPort-stopPort"),
    ],
)  # fmt: skip
def test_publish_errors_match_podman(value: str, message: str) -> None:
    with pytest.raises(NetworkOptionError) as info:
        parse_publish(value)
    assert info.value.message == message
    assert info.value.hint and "-p" in info.value.hint
    assert "\n" not in info.value.message


def test_publish_all_takes_exposed_ports_not_already_published() -> None:
    explicit = parse_publish("8080:80")
    added = publish_all(["80/tcp", "53/udp", "9000-9001", "443"], explicit)
    assert [(m.host_port, m.container_port, m.protocol) for m in added] == [
        (0, 53, "udp"),
        (0, 9000, "tcp"),
        (0, 9001, "tcp"),
        (0, 443, "tcp"),
    ]


def test_publish_all_rejects_a_bad_exposed_port() -> None:
    with pytest.raises(NetworkOptionError, match="invalid exposed port"):
        publish_all(["http/tcp"])


def test_conflicting_host_ports_are_refused() -> None:
    with pytest.raises(
        NetworkOptionError, match=r"conflicting port mappings for host port 8080 \(protocol tcp\)"
    ):
        parse_network_spec(None, rootless=True, publish=["8080:80", "8080:81"])
    with pytest.raises(NetworkOptionError, match="host port 8080"):
        parse_network_spec(None, rootless=True, publish=["127.0.0.1:8080:80", "8080:81"])
    # Same port on different protocols or distinct addresses is fine.
    spec = parse_network_spec(
        None,
        rootless=True,
        publish=["8080:80", "8080:80/udp", "127.0.0.1:9090:1", "127.0.0.2:9090:2"],
    )
    assert len(spec.ports) == 4


@pytest.mark.parametrize(
    "value, rootless, mode, options, networks",
    [
        (None, True, "slirp4netns", {}, []),
        (None, False, "bridge", {}, ["podman"]),
        ("private", True, "slirp4netns", {}, []),
        ("private", False, "bridge", {}, ["podman"]),
        ("none", True, "none", {}, []),
        ("host", True, "host", {}, []),
        ("container:web", True, "container", {"target": "web"}, []),
        ("ns:/run/netns/x", True, "ns", {"path": "/run/netns/x"}, []),
        ("pasta", True, "pasta", {"args": []}, []),
        ("pasta:-4,--mtu,1500", True, "pasta", {"args": ["-4", "--mtu", "1500"]}, []),
        ("mynet", True, "bridge", {}, ["mynet"]),
        ("a,b", False, "bridge", {}, ["a", "b"]),
        ("mynet:ip=10.89.0.5,alias=db", True, "bridge", {"ip": "10.89.0.5", "aliases": ["db"]}, ["mynet"]),
        (
            "slirp4netns:allow_host_loopback=true,mtu=1500,port_handler=slirp4netns,enable_ipv6=false,"
            "cidr=10.5.0.0/24,outbound_addr=192.0.2.9",
            True,
            "slirp4netns",
            {
                "allow_host_loopback": True,
                "mtu": 1500,
                "port_handler": "slirp4netns",
                "enable_ipv6": False,
                "cidr": "10.5.0.0/24",
                "outbound_addr": "192.0.2.9",
            },
            [],
        ),
    ],
)  # fmt: skip
def test_network_modes(value, rootless, mode, options, networks) -> None:
    assert parse_network(value, rootless) == (mode, options, networks)


@pytest.mark.parametrize(
    "value, message",
    [
        ("slirp4netns:foo=bar", 'unknown option for slirp4netns: "foo=bar"'),
        ("slirp4netns:mtu=abc", 'invalid mtu "abc"'),
        ("slirp4netns:mtu=0", 'invalid mtu "0"'),
        ("slirp4netns:mtu=70000", 'invalid mtu "70000"'),
        ("slirp4netns:allow_host_loopback=maybe", 'invalid value of allow_host_loopback for slirp4netns: "maybe"'),
        ("slirp4netns:enable_ipv6=foo", 'invalid value of enable_ipv6 for slirp4netns: "foo"'),
        ("slirp4netns:cidr=bad", 'invalid cidr "bad"'),
        ("slirp4netns:cidr=10.0.3.0/16", 'invalid cidr "10.0.3.0/16"'),
        ("slirp4netns:outbound_addr=bad", 'invalid outbound_addr "bad"'),
        ("slirp4netns:outbound_addr6=x", 'invalid outbound_addr6: "x"'),
        ("slirp4netns:port_handler=foo", 'unknown port_handler for slirp4netns: "foo"'),
        ("container:", "invalid config provided: namespace mode container requires a value"),
        ("ns:", "invalid config provided: namespace mode path requires a value"),
        ("host:foo", "invalid option for network host: unknown bridge network option: foo"),
        ("none:x", "invalid option for network none: unknown bridge network option: x"),
    ],
)  # fmt: skip
def test_network_errors_match_podman(value: str, message: str) -> None:
    with pytest.raises(NetworkOptionError) as info:
        parse_network(value, True)
    assert info.value.message == message


def test_add_host_dns_and_mac_validation() -> None:
    assert parse_add_host("foo:1.2.3.4") == ("foo", "1.2.3.4")
    assert parse_add_host("foo:::1") == ("foo", "::1")
    for bad, message in [
        ("foo", 'bad format for add-host: "foo"'),
        (":1.2.3.4", 'bad format for add-host: ":1.2.3.4"'),
        ("foo:bar", 'invalid IP address in add-host: "bar"'),
        ("x:[::1]", 'invalid IP address in add-host: "[::1]"'),
    ]:
        with pytest.raises(NetworkOptionError) as info:
            parse_add_host(bad)
        assert info.value.message == message
    with pytest.raises(NetworkOptionError, match="^bogus is not an ip address$"):
        parse_network_spec(None, rootless=True, dns=["bogus"])
    assert parse_mac_address("92:D0:C6:0A:29:33") == "92:d0:c6:0a:29:33"
    with pytest.raises(NetworkOptionError, match="address bogus: invalid MAC address"):
        parse_mac_address("bogus")
    with pytest.raises(NetworkOptionError, match="multicast"):
        parse_mac_address("01:02:03:04:05:06")


def test_flags_that_conflict_with_the_mode() -> None:
    with pytest.raises(
        NetworkOptionError, match="conflicting options: dns and the network mode: none"
    ):
        parse_network_spec("none", rootless=True, dns=["1.1.1.1"])
    # podman 4.3.1's words; slirp4netns is refused too
    for mode in ("host", "slirp4netns", "none"):
        for flag, kwargs in (
            ("--mac-address", {"mac_address": "92:d0:c6:0a:29:33"}),
            ("--ip", {"ip": "10.0.2.9"}),
            ("--network-alias", {"aliases": ["web"]}),
        ):
            with pytest.raises(
                NetworkOptionError,
                match=f"^{flag} can only be set when the network mode is bridge: invalid argument$",
            ):
                parse_network_spec(mode, rootless=True, **kwargs)
    with pytest.raises(NetworkOptionError, match="--ip can only be set for a single network"):
        parse_network_spec("a,b", rootless=True, ip="10.89.0.5")
    with pytest.raises(NetworkOptionError, match='invalid exposed port "0"'):
        parse_network_spec("none", rootless=True, expose=["0"])
    spec = parse_network_spec("host", rootless=True, publish=["8080:80"])
    assert spec.ports == [] and spec.warnings == [PORTS_DISCARDED_WARNING]


def test_network_spec_round_trips_through_json() -> None:
    spec = parse_network_spec(
        "net1:alias=db",
        rootless=True,
        publish=["127.0.0.1:8080:80", "53/udp"],
        publish_all_ports=True,
        exposed=["443/tcp"],
        add_hosts=["db:10.0.0.5"],
        dns=["9.9.9.9"],
        dns_search=["example.com"],
        dns_options=["ndots:2"],
        mac_address="92:D0:C6:0a:29:33",
        ip="10.89.0.7",
        aliases=["web"],
        expose=["8080"],
    )
    assert spec.options == {"aliases": ["db", "web"], "ip": "10.89.0.7", "mac": "92:d0:c6:0a:29:33"}
    assert {p.container_port for p in spec.ports} == {80, 53, 443, 8080}
    data = json.loads(json.dumps(spec.to_dict()))
    again = NetworkSpec.from_dict(data)
    assert again == spec
    assert again.ports[0] == PortMapping("127.0.0.1", 8080, 80, "tcp")
    assert str(again.ports[0]) == "80/tcp -> 127.0.0.1:8080"
    assert again.add_hosts == [("db", "10.0.0.5")]


# --- host port checks ----------------------------------------------------------------------------


@pytest.fixture
def listening_tcp() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("0.0.0.0", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_taken_tcp_port_gives_podmans_one_line_error(listening_tcp: int) -> None:
    with pytest.raises(ports.PortInUse) as info:
        ports.check_port_free("tcp", "", listening_tcp, rootless=True)
    assert info.value.message == (
        f"rootlessport listen tcp 0.0.0.0:{listening_tcp}: bind: address already in use"
    )
    assert info.value.port == listening_tcp and str(listening_tcp) in (info.value.hint or "")
    with pytest.raises(ports.PortInUse, match=r"^listen tcp 0\.0\.0\.0:\d+: bind"):
        ports.check_port_free("tcp", "", listening_tcp, rootless=False)


def test_taken_udp_port_is_detected() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    port = sock.getsockname()[1]
    try:
        with pytest.raises(
            ports.PortInUse, match=f"listen udp 0.0.0.0:{port}: bind: address already in use"
        ):
            ports.check_port_free("udp", "", port)
        ports.check_port_free("tcp", "", port)  # the other protocol is still free
    finally:
        sock.close()


def test_foreign_address_is_reported() -> None:
    with pytest.raises(ports.PortInUse, match="cannot assign requested address"):
        ports.check_port_free("tcp", "192.0.2.254", 8080, rootless=True)


def test_resolve_host_ports_picks_distinct_free_ports(listening_tcp: int) -> None:
    wanted = parse_publish("80-83") + parse_publish("53/udp")
    resolved = ports.resolve_host_ports(wanted)
    host_ports = [m.host_port for m in resolved]
    assert all(p > 0 for p in host_ports)
    assert len(set(host_ports[:4])) == 4 and listening_tcp not in host_ports
    assert [m.container_port for m in resolved] == [80, 81, 82, 83, 53]
    for mapping in resolved:  # each picked port really is bindable now
        ports.check_port_free(mapping.protocol, mapping.host_ip, mapping.host_port)
    with pytest.raises(ports.PortInUse, match=str(listening_tcp)):
        ports.resolve_host_ports(parse_publish(f"{listening_tcp}:80"))


@pytest.mark.parametrize(
    "module", ["netns_helpers.slirp", "netns_helpers.pasta", "netns_helpers.forward"]
)
def test_monitor_side_modules_stay_light(module: str) -> None:
    # The monitor imports these for the container's whole life: no parser (dataclasses,
    # ipaddress), no shutil/subprocess, and never pyroute2.
    repo = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {repo!r}); import {module}; "
        "print(' '.join(m for m in ('dataclasses', 'ipaddress', 'shutil', 'subprocess', "
        "'pyroute2', 'podpy.engine') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


# --- the port forwarder (netns_helpers/forward.py), in this network namespace ---------------


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


class _Servers:
    """Upstream test servers on 127.0.0.1: a TCP server that reads everything, answers with
    the byte count and sha256 after the client's half-close, and a UDP echo."""

    def __init__(self) -> None:
        import threading

        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(512)  # many at once: an overflowing accept queue loses data
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp_peers: List[Tuple[str, int]] = []
        for target in (self._serve_tcp, self._serve_udp):
            threading.Thread(target=target, daemon=True).start()

    def _serve_tcp(self) -> None:
        import hashlib

        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                digest, size = hashlib.sha256(), 0
                while True:
                    data = conn.recv(1 << 20)
                    if not data:
                        break
                    digest.update(data)
                    size += len(data)
                conn.sendall(f"{size} {digest.hexdigest()}".encode())

    def _serve_udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            self.udp_peers.append(peer)
            self.udp.sendto(b"echo:" + data, peer)

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()


@pytest.fixture
def forwarder() -> Iterator[Tuple[_Servers, int, int, object]]:
    from netns_helpers import forward

    servers = _Servers()
    tcp_port, udp_port = _free_port(), _free_port(socket.SOCK_DGRAM)
    mappings = [
        {
            "host_ip": "127.0.0.1",
            "host_port": tcp_port,
            "container_port": servers.tcp.getsockname()[1],
            "protocol": "tcp",
        },
        {
            "host_ip": "127.0.0.1",
            "host_port": udp_port,
            "container_port": servers.udp.getsockname()[1],
            "protocol": "udp",
        },
    ]
    process = forward.forward_ports(mappings, "127.0.0.1", None)
    process.wait_ready()
    try:
        yield servers, tcp_port, udp_port, process
    finally:
        pid = process.pid
        process.stop()
        servers.close()
        assert not _alive(pid), "stop() left the forwarder running"


def test_forwarder_relays_tcp_both_ways_with_half_close(forwarder) -> None:
    import hashlib
    import os

    _servers, tcp_port, _udp_port, _process = forwarder
    payload = os.urandom(8 << 20) + b"end"
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # the server answers only after seeing our EOF
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
    for _ in range(20):  # many short connections (each one two relay threads)
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as sock:
            sock.sendall(b"x")
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100).startswith(b"1 ")


def _exchange_all(port: int, count: int) -> List[bytes]:
    """`count` connections opened at once, each sends one byte and half-closes; answers."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    try:
        for sock in socks:
            sock.sendall(b"x")
            sock.shutdown(socket.SHUT_WR)
        return [sock.recv(100) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_forwarder_serves_many_connections_at_once(forwarder) -> None:
    _servers, tcp_port, _udp_port, _process = forwarder
    answers = _exchange_all(tcp_port, 200)
    assert all(answer.startswith(b"1 ") for answer in answers), sorted(set(answers))[:5]


def test_forwarder_out_of_fds_pauses_accepting_then_resumes(forwarder) -> None:
    # 40 fds: a few connections at a time; the rest wait in the backlog (no busy loop on a
    # listener it cannot accept from) and are served as earlier ones finish.
    _servers, tcp_port, _udp_port, process = forwarder
    subprocess.run(["prlimit", f"--pid={process.pid}", "--nofile=40:40"], check=True)
    answers = _exchange_all(tcp_port, 60)
    assert all(answer.startswith(b"1 ") for answer in answers)


def test_forwarder_gives_each_udp_client_its_own_flow(forwarder) -> None:
    servers, _tcp_port, udp_port, _process = forwarder
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for index, client in enumerate(clients):
            client.settimeout(5)
            client.sendto(f"ping{index}".encode(), ("127.0.0.1", udp_port))
        for index, client in enumerate(clients):
            data, source = client.recvfrom(100)
            assert data == f"echo:ping{index}".encode()
            assert source == ("127.0.0.1", udp_port)  # from the published port, as a client expects
        clients[0].sendto(b"again", ("127.0.0.1", udp_port))
        assert clients[0].recvfrom(100)[0] == b"echo:again"
        assert len(set(servers.udp_peers)) == 2  # one upstream socket per client
    finally:
        for client in clients:
            client.close()


def test_forwarder_answers_udp_from_the_address_the_client_used() -> None:
    # A host socket on 0.0.0.0: a client that sent to 127.0.0.2 (any second address of the
    # host) and connect()ed its socket only accepts a reply from 127.0.0.2 (IP_PKTINFO).
    from netns_helpers import forward

    servers = _Servers()
    port = _free_port(socket.SOCK_DGRAM)
    process = forward.forward_ports(
        [
            {
                "host_ip": "",
                "host_port": port,
                "container_port": servers.udp.getsockname()[1],
                "protocol": "udp",
            }
        ],  # fmt: skip
        "127.0.0.1",
        None,
    )
    try:
        process.wait_ready()
        for address in ("127.0.0.1", "127.0.0.2"):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(5)
                client.connect((address, port))
                client.send(b"hi")
                assert client.recv(100) == b"echo:hi"
    finally:
        process.stop()
        servers.close()


def test_forwarder_closes_a_connection_nothing_answers() -> None:
    from netns_helpers import forward

    port, dead = _free_port(), _free_port()
    process = forward.forward_ports(
        [{"host_ip": "127.0.0.1", "host_port": port, "container_port": dead}],
        "127.0.0.1",
        None,
    )
    try:
        process.wait_ready()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert sock.recv(10) == b""
    finally:
        process.stop()


def test_forwarder_bind_conflict_is_podmans_line_and_leaves_nothing(listening_tcp: int) -> None:
    from netns_helpers import forward

    free = _free_port()
    with pytest.raises(ports.PortInUse) as caught:
        forward.bind_listeners(
            [
                {"host_ip": "127.0.0.1", "host_port": free, "container_port": 80},
                {"host_ip": "", "host_port": listening_tcp, "container_port": 80},
            ]
        )
    assert caught.value.message.endswith(
        f"listen tcp 0.0.0.0:{listening_tcp}: bind: address already in use"
    )
    with socket.socket() as sock:  # the first, successful bind was released
        sock.bind(("127.0.0.1", free))


def test_forwarder_reports_a_netns_it_cannot_enter(tmp_path: Path) -> None:
    from netns_helpers import forward
    from podpy.errors import PodpyError

    not_a_netns = tmp_path / "plain-file"
    not_a_netns.write_text("")
    process = forward.forward_ports(
        [{"host_ip": "127.0.0.1", "host_port": _free_port(), "container_port": 80}],
        "10.0.2.100",
        str(not_a_netns),
    )
    with pytest.raises(PodpyError) as caught:
        process.wait_ready()
    process.stop()
    assert caught.value.message.startswith("port forwarder: entering the container's network: ")
    assert "\n" not in caught.value.message


def test_forwarder_process_imports_little() -> None:
    # It lives as long as the container and starts on the `run -p` path: its bootstrap skips
    # the zipapp's __main__ (runpy), JSON, the parser (dataclasses, ipaddress), even typing.
    from netns_helpers import forward

    argv = forward.forwarder_argv([], "127.0.0.1", -1, -1, -1, None)
    code = argv[4].replace("main(sys.argv[3:])", "print(' '.join(sorted(sys.modules)))")
    result = subprocess.run(argv[:4] + [code] + argv[5:], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "netns_helpers.forward" in loaded
    unwanted = {"json", "typing", "platform", "dataclasses", "ipaddress", "runpy", "threading"}
    assert not loaded & unwanted, loaded & unwanted
    assert not [m for m in loaded if m.startswith("podpy.engine")]
