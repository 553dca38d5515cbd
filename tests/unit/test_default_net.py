"""netns_helpers/default_net.py: the host-wide pool of the rootful default network (state file
under an flock, per-store addresses), its subnet choice and the `ip podpy` ruleset; nft itself
is not run here (tests/integration/test_networks.py does, as root)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from netns_helpers import default_net
from podpy.errors import PodpyError


def net(text: str) -> Any:
    return ipaddress.ip_network(text)


def test_subnet_is_the_preferred_one_unless_routed_elsewhere() -> None:
    assert str(default_net.choose_subnet("10.88.0.0/16", [net("192.0.2.0/24")])) == "10.88.0.0/16"
    # podman's podman0 holds 10.88.0.0/16: the next one down
    assert str(default_net.choose_subnet("10.88.0.0/16", [net("10.88.0.0/16")])) == "10.87.0.0/16"
    routed = [net("10.88.0.0/16"), net("10.87.5.0/24")]
    assert str(default_net.choose_subnet("10.88.0.0/16", routed)) == "10.86.0.0/16"
    with pytest.raises(PodpyError, match="no free subnet"):
        default_net.choose_subnet("10.88.0.0/16", [net("10.0.0.0/8")])


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> List[str]:
    applied: List[Dict[str, Any]] = []
    monkeypatch.setattr(default_net, "apply", lambda state: applied.append(json.loads(json.dumps(state))))  # fmt: skip
    paths = []
    for name in ("a", "b"):
        db = tmp_path / name / "podpy.db"
        db.parent.mkdir()
        db.write_text("")
        paths.append(str(db))
    return paths


def test_two_stores_share_one_pool(tmp_path: Path, stores: List[str]) -> None:
    state_dir = str(tmp_path / "run")
    a = default_net.allocate(stores[0], "c1", "10.88.0.0/16", state_dir=state_dir)
    b = default_net.allocate(stores[1], "c2", "10.88.0.0/16", state_dir=state_dir)
    assert a["subnet"] == b["subnet"] and a["address"] != b["address"]
    assert default_net.allocate(stores[0], "c1", "10.88.0.0/16", state_dir=state_dir) == a
    gateway = ipaddress.ip_address(a["gateway"])
    assert ipaddress.ip_address(a["address"]) == gateway + 1
    static = str(ipaddress.ip_network(a["subnet"]).network_address + 200)
    assert default_net.allocate(stores[1], "c3", "10.88.0.0/16", static_ip=static, state_dir=state_dir)["address"] == static  # fmt: skip
    with pytest.raises(PodpyError, match="already allocated"):
        default_net.allocate(stores[0], "c4", "10.88.0.0/16", static_ip=static, state_dir=state_dir)
    # a reset of store b releases only its addresses
    default_net.release(store=stores[1], state_dir=state_dir)
    assert set(default_net.read_state(state_dir)["allocations"]) == {"c1"}
    # a store whose DB is gone frees its addresses at the next change
    Path(stores[0]).unlink()
    default_net.allocate(stores[1], "c5", "10.88.0.0/16", state_dir=state_dir)
    assert set(default_net.read_state(state_dir)["allocations"]) == {"c5"}
    default_net.release(["c5"], state_dir=state_dir)
    assert default_net.read_state(state_dir) == {}  # the last address gone: no state left
    assert not (tmp_path / "run" / "podman.json").exists()


def test_published_ports_and_conflicts(tmp_path: Path, stores: List[str]) -> None:
    state_dir = str(tmp_path / "run")
    address = default_net.allocate(stores[0], "c1", "10.88.0.0/16", state_dir=state_dir)["address"]
    default_net.allocate(stores[1], "c2", "10.88.0.0/16", state_dir=state_dir)
    ports = [{"host_ip": "127.0.0.1", "host_port": 8080, "container_port": 80, "protocol": "tcp"},
             {"host_ip": "", "host_port": 5353, "container_port": 53, "protocol": "udp"}]  # fmt: skip
    default_net.publish("c1", ports, state_dir=state_dir)
    with pytest.raises(PodpyError, match="already published by container c1"):
        default_net.publish("c2", [{"host_port": 5353, "container_port": 9, "protocol": "udp"}], state_dir=state_dir)  # fmt: skip
    rules = default_net.ruleset(default_net.read_state(state_dir))
    subnet = default_net.read_state(state_dir)["subnet"]
    assert f"ip daddr 127.0.0.1 tcp dport 8080 dnat to {address}:80" in rules
    assert f"    udp dport 5353 dnat to {address}:53" in rules
    assert f"ip saddr {subnet} ip daddr != {subnet} masquerade" in rules
    assert f"ip saddr 127.0.0.0/8 ip daddr {subnet} masquerade" in rules
    assert "fib daddr type local jump hostports" in rules
    default_net.unpublish("c1", state_dir=state_dir)
    assert "dnat to" not in default_net.ruleset(default_net.read_state(state_dir))
    assert default_net.ruleset({}) == "table ip podpy\ndelete table ip podpy\n"
