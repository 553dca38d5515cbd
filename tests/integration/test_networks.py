"""`podpy network` through the zipapp, as the rootless user and as root: create/ls/inspect/rm/
exists/prune with podman 4's JSON and errors, and 50 concurrent creates without a collision.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
import uuid

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
