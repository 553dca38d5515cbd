"""/etc/hosts, /etc/resolv.conf and /etc/hostname content, compared with podman 4.3.1's output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from netns_helpers import files
from podpy.engine.network_opts import parse_network_spec

REPO = Path(__file__).resolve().parents[2]
HOST_HOSTS = "# static\n127.0.0.1 localhost\n127.0.0.1\truns vm   # alias\n\nbroken-line\n"
HOST_RESOLV = (
    "# generated\nsearch corp.example lab.example\nnameserver 127.0.0.53\n"
    "nameserver 10.255.255.53\nnameserver 2001:db8::53\noptions edns0 trust-ad\n"
)


def test_hosts_like_podman_under_slirp4netns() -> None:
    # podman 4.3.1: `run --add-host foo:1.2.3.4 --hostname hh` with slirp4netns
    text = files.hosts_content(
        hostname="hh",
        container_name="cool_greider",
        container_ips=["10.0.2.100"],
        host_ip="192.0.2.2",
        add_hosts=[("foo", "1.2.3.4")],
        base_hosts=HOST_HOSTS,
    )
    assert text == (
        "1.2.3.4\tfoo\n"
        "127.0.0.1\tlocalhost\n"
        "127.0.0.1\truns vm\n"
        "192.0.2.2\thost.containers.internal\n"
        "10.0.2.100\thh cool_greider\n"
    )


def test_hosts_defaults_when_base_has_no_localhost() -> None:
    text = files.hosts_content(hostname="web", container_name="web", base_hosts="")
    lines = text.splitlines()
    assert lines[0].startswith("127.0.0.1\tlocalhost localhost.localdomain")
    assert lines[1].startswith("::1\tlocalhost localhost.localdomain localhost6")
    # no address (network none): the container's names map to 127.0.0.1, once each
    assert lines[-1] == "127.0.0.1\tweb"
    assert "host.containers.internal" not in text


def test_hosts_with_host_network_has_no_container_line() -> None:
    text = files.hosts_content(
        hostname="ignored",
        container_name="c",
        base_hosts=HOST_HOSTS,
        host_ip="192.0.2.2",
        host_network=True,
    )
    assert "ignored" not in text and text.endswith("192.0.2.2\thost.containers.internal\n")


def test_parse_hosts_drops_comments_and_garbage() -> None:
    assert files.parse_hosts(HOST_HOSTS) == [
        ("127.0.0.1", ["localhost"]),
        ("127.0.0.1", ["runs", "vm"]),
    ]


def test_resolv_under_slirp_puts_its_dns_first_and_drops_loopback_and_v6() -> None:
    text = files.resolv_conf_content(host_resolv=HOST_RESOLV, slirp_dns="10.0.2.3")
    assert text == (
        "search corp.example lab.example\n"
        "nameserver 10.0.2.3\n"
        "nameserver 10.255.255.53\n"
        "options edns0 trust-ad\n"
    )
    with_v6 = files.resolv_conf_content(host_resolv=HOST_RESOLV, slirp_dns="10.0.2.3", ipv6=True)
    assert "nameserver 2001:db8::53\n" in with_v6


def test_resolv_overrides_like_podman() -> None:
    # podman 4.3.1: `--dns 9.9.9.9 --dns-option ndots:2` -> only those; search stays the host's
    text = files.resolv_conf_content(
        host_resolv=HOST_RESOLV,
        dns_servers=["9.9.9.9"],
        dns_options=["ndots:2"],
        slirp_dns="10.0.2.3",
    )
    assert text == "search corp.example lab.example\nnameserver 9.9.9.9\noptions ndots:2\n"
    cleared = files.resolv_conf_content(
        host_resolv=HOST_RESOLV, dns_search=["."], slirp_dns="10.0.2.3"
    )
    assert "search" not in cleared
    replaced = files.resolv_conf_content(
        host_resolv=HOST_RESOLV, dns_search=["a.example", "b.example"]
    )
    assert replaced.startswith("search a.example b.example\n")


def test_resolv_fallback_when_host_has_only_loopback() -> None:
    text = files.resolv_conf_content(host_resolv="nameserver 127.0.0.1\n")
    assert text == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_resolv_host_network_copies_the_host_file() -> None:
    assert files.resolv_conf_content(host_resolv=HOST_RESOLV, host_network=True) == HOST_RESOLV
    assert files.resolv_conf_content(host_resolv="nameserver 1.1.1.1", host_network=True) == (
        "nameserver 1.1.1.1\n"
    )


def test_read_host_resolv_follows_systemd_resolved(tmp_path: Path, monkeypatch) -> None:
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 10.1.1.1\n")
    monkeypatch.setattr(files, "RESOLVED_UPSTREAM", str(upstream))
    assert files.read_host_resolv(str(stub)) == "nameserver 10.1.1.1\n"
    upstream.unlink()
    assert files.read_host_resolv(str(stub)) == stub.read_text()


def test_host_primary_ip_is_a_local_non_loopback_address() -> None:
    address = files.host_primary_ip()
    if address is None:  # no default route at all: nothing to check against
        assert (
            subprocess.run(
                ["ip", "route", "show", "default"], capture_output=True, text=True
            ).stdout
            == ""
        )
        return
    shown = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert f" {address}/" in shown and not address.startswith("127.")


def test_container_etc_files_per_mode() -> None:
    common = dict(
        hostname="hh",
        container_name="web",
        host_hosts=HOST_HOSTS,
        host_resolv=HOST_RESOLV,
        host_ip="192.0.2.2",
    )
    slirp = files.container_etc_files(
        parse_network_spec("slirp4netns:cidr=10.9.0.0/24,enable_ipv6=true", rootless=True), **common
    )
    assert "10.9.0.100\thh web\n" in slirp["hosts"]
    assert slirp["resolv.conf"].splitlines()[1:3] == ["nameserver 10.9.0.3", "nameserver fd00::3"]
    assert slirp["hostname"] == "hh\n"
    none = files.container_etc_files(parse_network_spec("none", rootless=True), **common)
    assert none["resolv.conf"] is None and "127.0.0.1\thh web\n" in none["hosts"]
    host = files.container_etc_files(parse_network_spec("host", rootless=True), **common)
    assert host["resolv.conf"] == HOST_RESOLV and "hh" not in host["hosts"]
    pasta = files.container_etc_files(parse_network_spec("pasta", rootless=True), **common)
    assert pasta["resolv.conf"].splitlines()[1] == "nameserver 169.254.1.1"
    dns = files.container_etc_files(
        parse_network_spec(None, rootless=True, dns=["9.9.9.9"]), **common
    )
    assert "nameserver 9.9.9.9\n" in dns["resolv.conf"] and "10.0.2.3" not in dns["resolv.conf"]


def test_helper_process_etc_files_and_errors() -> None:
    request = {
        "op": "etc-files",
        "network": parse_network_spec(None, rootless=True, add_hosts=["db:10.0.0.5"]).to_dict(),
        "hostname": "abc",
        "container_name": "web",
    }
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from netns_helpers.__main__ import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["hosts"].startswith("10.0.0.5\tdb\n") and "10.0.2.100\tabc web\n" in reply["hosts"]
    assert reply["hostname"] == "abc\n"
    bad = subprocess.run(
        [sys.executable, "-I", "-c", code],
        input='{"op": "nope"}',
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        bad.returncode == 125
        and "unknown netns helper operation" in json.loads(bad.stdout)["error"]
    )


def test_is_loopback_matches_ipaddress_without_importing_it_for_dotted_quads() -> None:
    import ipaddress
    import sys

    from netns_helpers.files import _is_loopback

    def reference(ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip.split("%")[0]).is_loopback
        except ValueError:
            return True

    cases = ["127.0.0.1", "127.255.1.2", "10.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1"]
    cases += ["01.2.3.4", "1.2.3", "1.2.3.4.5", "1.2.3.04", "::1", "fe80::1%eth0", "2001:db8::1"]
    cases += ["", "abc", "\u0663.1.1.1", "192.168.1.1 ", "::ffff:127.0.0.1"]
    for ip in cases:
        assert _is_loopback(ip) == reference(ip), ip
    saved = sys.modules.pop("ipaddress")
    try:
        assert _is_loopback("192.0.2.7") is False and _is_loopback("127.0.0.53") is True
        assert "ipaddress" not in sys.modules
    finally:
        sys.modules["ipaddress"] = saved
