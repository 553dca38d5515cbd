"""run's per-container network flags: --network-alias, --ip, --mac-address, --dns-option and
--expose (with -P), as podman 4.3.1 takes them, as the rootless user and as root."""

from __future__ import annotations

import json

import pytest

from tests.conftest import unique_name


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--network-alias", "x"],
            "--network-alias can only be set when the network mode is bridge",
        ),
        (["--ip", "10.0.2.50"], "--ip can only be set when the network mode is bridge"),
        (
            ["--mac-address", "92:d0:c6:0a:29:33"],
            "--mac-address can only be set when the network mode is bridge",
        ),
        (["--dns-option", "ndots:2"], "conflicting options: dns-option and the network mode: none"),
    ],
)
def test_bridge_only_flags_are_refused_elsewhere(as_each, image: str, flags, message) -> None:
    name = unique_name()
    for network in ("none", "slirp4netns"):
        if flags[0] == "--dns-option" and network != "none":
            continue
        result = as_each.podpy("run", "--name", name, "--network", network, *flags, image, "true")
        assert result.returncode == 125, result.stderr
        assert result.stderr.splitlines()[0].startswith(f"Error: {message}"), result.stderr
    assert as_each.ok("ps", "-a", "-q") == ""  # nothing created


def test_bad_values_are_one_line_errors(as_each, image: str) -> None:
    net = unique_name("n")
    as_each.ok("network", "create", net)
    try:
        cases = [
            (["--network", net, "--ip", "bogus"], 'Error: "bogus" is not an ip address'),
            (
                ["--network", f"podman,{net}", "--ip", "10.88.0.9"],
                "Error: --ip can only be set for a single network: invalid argument",
            ),
            (
                ["--network", net, "--mac-address", "01:02:03:04:05:06"],
                "Error: address 01:02:03:04:05:06: a multicast MAC address cannot be assigned",
            ),
            (["--expose", "70000"], 'Error: invalid exposed port "70000"'),
        ]
        for flags, start in cases:
            result = as_each.podpy("run", "--rm", *flags, image, "true")
            assert result.returncode == 125, (flags, result.stderr)
            assert result.stderr.startswith(start), (flags, result.stderr)
        assert as_each.ok("ps", "-a", "-q") == ""
    finally:
        as_each.podpy("network", "rm", "-f", net)


def test_alias_ip_mac_and_dns_option_on_a_user_network(as_each, image: str) -> None:
    net = unique_name("n")
    as_each.ok("network", "create", "--subnet", "10.131.7.0/24", net)
    server = unique_name("srv")
    try:
        as_each.ok(
            "run", "-d", "--name", server, "--network", net,
            "--network-alias", "web", "--network-alias", "www",
            "--ip", "10.131.7.77", "--mac-address", "92:D0:C6:0A:29:33",
            image, "httpd", "-f", "-p", "80", "-h", "/etc",
        )  # fmt: skip
        server_id = as_each.ok("inspect", "--format", "{{.Id}}", server).strip()
        settings = json.loads(as_each.ok("inspect", server))[0]["NetworkSettings"]
        assert settings["Networks"][net]["IPAddress"] == "10.131.7.77"
        assert {"web", "www"} <= set(settings["Networks"][net]["Aliases"])
        script = (
            "cat /etc/resolv.conf; "
            "wget -qO- http://web/hostname; echo; wget -qO- http://www/hostname; echo; "
            "wget -qO- http://10.131.7.77/hostname"
        )
        out = as_each.ok(
            "run", "--rm", "--network", net, "--dns-option", "ndots:3", image, "sh", "-c", script
        )
        assert "options ndots:3" in out
        assert out.count(server_id[:12]) == 3  # by both aliases and by the static address
        # the MAC inside the server, normalised as podman does
        mac = as_each.ok("exec", server, "cat", "/sys/class/net/eth0/address").strip()
        assert mac == "92:d0:c6:0a:29:33"
        # a second container cannot take the same static address
        taken = as_each.podpy("run", "--rm", "--network", net, "--ip", "10.131.7.77", image, "true")
        assert taken.returncode != 0 and "10.131.7.77" in taken.stderr
    finally:
        as_each.podpy("rm", "-f", "-t", "0", server)
        as_each.podpy("network", "rm", "-f", net)


def test_expose_with_publish_all(as_each, image: str) -> None:
    name = unique_name()
    as_each.ok(
        "run", "-d", "--name", name, "--network", "slirp4netns",
        "--expose", "8080", "--expose", "9000-9001/udp", "-P", image, "sleep", "60",
    )  # fmt: skip
    try:
        lines = as_each.ok("port", name).splitlines()
        published = {line.split(" -> ")[0]: line.split(" -> ")[1] for line in lines}
        assert set(published) == {"8080/tcp", "9000/udp", "9001/udp"}, lines
        assert all(int(addr.rsplit(":", 1)[1]) > 0 for addr in published.values())
    finally:
        as_each.podpy("rm", "-f", "-t", "0", name)
