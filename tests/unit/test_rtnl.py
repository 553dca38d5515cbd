"""netns_helpers/rtnl.py against the kernel, checked with pyroute2 (the dev venv's) as the
oracle (and iproute2's `ip -j`): in a throw-away user + network namespace (`unshare -Urn`), so
it runs as any user and touches nothing on the host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    from netns_helpers.rtnl import RTNL
    from podpy import linux
    from pyroute2 import IPRoute

    out = {}
    with RTNL() as rtnl, IPRoute() as ipr:
        out["missing"] = rtnl.link_index("nosuch0")
        rtnl.add_bridge("br9")
        bridge = rtnl.link_index("br9")
        out["bridge_matches"] = ipr.link_lookup(ifname="br9") == [bridge]
        try:
            rtnl.add_bridge("br9")
        except FileExistsError:
            out["duplicate"] = "FileExistsError"
        rtnl.add_ipv4_address(bridge, "10.99.0.1", 24)
        rtnl.set_link(bridge, up=True)
        out["ours"] = rtnl.ipv4_addresses(bridge)
        out["theirs"] = [
            (a["index"], a.get("address"), a["prefixlen"], a.get("broadcast"))
            for a in ipr.get_addr(index=bridge, family=2)
        ]
        rtnl.add_veth("vh9", "vp9")
        host, peer = rtnl.link_index("vh9"), rtnl.link_index("vp9")
        rtnl.set_link(host, master=bridge, up=True)
        link = ipr.get_links(host)[0]
        out["master"] = link.get("master") == bridge
        out["host_up"] = bool(link["flags"] & 1)
        rtnl.set_link(peer, ifname="eth9", mac="02:42:0a:63:00:02")
        out["renamed"] = rtnl.link_index("eth9") == peer and rtnl.link_index("vp9") is None
        out["mac"] = rtnl.link_address(peer)
        out["mac_theirs"] = ipr.get_links(peer)[0].get("address")

        # a second network namespace (a child), where the peer goes and is configured
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                linux.unshare(linux.CLONE_NEWNET)
            finally:
                os.write(to_parent_w, b"r")
            os.read(to_child_r, 1)  # the peer has been moved in
            with RTNL() as inner:  # (pyroute2 hangs in a forked child: iproute2 checks here)
                index = inner.link_index("eth9")
                inner.add_ipv4_address(index, "10.99.0.2", 24)
                inner.set_link(index, up=True)
                inner.add_default_route("10.99.0.1")
            shown = subprocess.run(["ip", "-j", "route", "show"], capture_output=True, text=True)
            routes = [(r["dst"], r.get("gateway")) for r in json.loads(shown.stdout)]
            os.write(to_parent_w, json.dumps(routes).encode())
            os._exit(0)  # (an exception above ends the child too: the parent reads EOF)
        os.read(to_parent_r, 1)
        rtnl.set_link(peer, netns_pid=child)
        out["moved_away"] = rtnl.link_index("eth9") is None
        os.write(to_child_w, b"g")
        os.close(to_parent_w)
        out["child_routes"] = json.loads(os.read(to_parent_r, 65536))
        os.waitpid(child, 0)
        for _ in range(200):  # the kernel frees a dead namespace (and the pair) asynchronously
            if rtnl.link_index("vh9") is None:
                break
            time.sleep(0.01)
        out["child_removed_peer"] = rtnl.link_index("vh9") is None
        rtnl.add_veth("vh8", "vp8")
        rtnl.delete_link(rtnl.link_index("vh8"))
        out["deleted"] = rtnl.link_index("vh8") is None and rtnl.link_index("vp8") is None
        try:
            rtnl.delete_link(99999)
        except OSError as err:
            out["bad_delete"] = err.errno
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def results() -> Dict[str, Any]:
    if shutil.which("unshare") is None:
        pytest.fail("util-linux `unshare` is needed (Debian package util-linux)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        ["unshare", "-Urn", sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_links_are_looked_up_created_and_refused_twice(results: Dict[str, Any]) -> None:
    assert results["missing"] is None
    assert results["bridge_matches"]
    assert results["duplicate"] == "FileExistsError"


def test_ipv4_address_with_broadcast_as_netavark(results: Dict[str, Any]) -> None:
    index = results["ours"][0][0]
    assert results["ours"] == [[index, "10.99.0.1", 24]]
    assert results["theirs"] == [[index, "10.99.0.1", 24, "10.99.0.255"]]


def test_veth_master_up_rename_mac(results: Dict[str, Any]) -> None:
    assert results["master"] and results["host_up"] and results["renamed"]
    assert results["mac"] == results["mac_theirs"] == "02:42:0a:63:00:02"


def test_move_to_another_namespace_and_default_route(results: Dict[str, Any]) -> None:
    assert results["moved_away"]
    assert results["child_routes"] == [["default", "10.99.0.1"], ["10.99.0.0/24", None]]
    assert results["child_removed_peer"]


def test_delete(results: Dict[str, Any]) -> None:
    assert results["deleted"]
    assert results["bad_delete"] == 19  # ENODEV, as the kernel says it
