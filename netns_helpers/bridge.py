"""Rootful bridge networks: a host bridge per network, a veth pair into each container, IP
forwarding and NAT masquerade; plus the small client the monitor uses to ask for it.

Two halves. `attach_container(request, pid)` is the client: stdlib only (the monitor imports
it), it runs `python3 podpy.pyz __netns` with the request and waits for its JSON answer. The
`bridge-*` operations are the helper's side: links, addresses and routes through
netns_helpers/rtnl.py (rtnetlink), and the part that must run inside the container's network
namespace runs in a forked child that setns()es into it (the helper itself stays in the host's).
The nftables ruleset is written with the `nft` CLI: one `ip podpy` table, rebuilt atomically
from the full list of masqueraded subnets each time.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Sequence

if TYPE_CHECKING:
    from netns_helpers.rtnl import RTNL

DEFAULT_NFT_TABLE = "podpy"  # the request names the store's own table (podpy_<hash>)
CONTAINER_IFNAMES = ("eth0", "eth1", "eth2", "eth3", "eth4", "eth5", "eth6", "eth7")


class _Failure(Exception):
    pass


# --- client (monitor side, stdlib only) -------------------------------------------------------


def call_helper(
    argv: Sequence[str], request: Mapping[str, Any], timeout: float = 60
) -> Dict[str, Any]:
    """Run one helper operation; PodpyError with the helper's message when it fails.

    Root in the host's namespaces runs the bridge operations in this process: they need no
    namespace change there, and a helper interpreter costs ~0.1 s per container start."""
    from podpy.errors import PodpyError

    if _in_process(request):
        return _run_in_process(request)
    try:
        done = subprocess.run(
            list(argv),
            input=json.dumps(dict(request)),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PodpyError(f"running the network helper: {err}") from err
    try:
        reply = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        reply = {"error": (done.stderr.strip() or "no answer").splitlines()[-1]}
    if done.returncode != 0 or "error" in reply:
        raise PodpyError(
            f"setting up the container network: {reply.get('error')}", hint=reply.get("hint")
        )
    return reply


def _in_process(request: Mapping[str, Any]) -> bool:
    if request.get("op") not in _IN_PROCESS or request.get("netns") or request.get("userns_path"):
        return False
    from podpy.userns import in_initial_userns

    return os.geteuid() == 0 and in_initial_userns()  # the host's, not podpy's own


def _run_in_process(request: Mapping[str, Any]) -> Dict[str, Any]:
    """As netns_helpers/__main__.py runs an operation, with call_helper's error wording."""
    from podpy.errors import PodpyError

    operation = _IN_PROCESS[str(request["op"])]
    try:
        return operation(request)
    except PodpyError as err:
        raise PodpyError(f"setting up the container network: {err.message}", hint=err.hint) from err
    except (KeyError, TypeError, ValueError) as err:
        raise PodpyError(
            f"setting up the container network: invalid {request['op']} request: {err!r}"
        ) from err
    except OSError as err:
        raise PodpyError(f"setting up the container network: {type(err).__name__}: {err}") from err


def attach_container(request: Mapping[str, Any], pid: int, ports: Sequence[Any] = ()) -> Any:
    """Connect the container whose init is `pid` to its bridge networks (monitor side).
    With published ports, returns the running port forwarder (its stop() ends it), else None:
    the host ports are bound first (a taken one fails before any link is made), and the
    forwarder dials the container's address on its first network from inside its netns."""
    if (request.get("default_net") or {}).get("dnat"):
        from netns_helpers.default_net import attach_published

        return attach_published(request, pid, ports)  # rootful default network: DNAT
    listeners = []
    if ports:
        from netns_helpers.forward import bind_listeners

        listeners = bind_listeners(ports)
    body = dict(request)
    body.update({"op": "bridge-attach", "pid": pid})
    try:
        call_helper(request["helper"], body)
    except BaseException:
        for listener in listeners:
            listener.sock.close()
        raise
    if not listeners:
        return None
    from netns_helpers.forward import start_forwarder

    forwarder = start_forwarder(
        listeners,
        request["interfaces"][0]["address"],
        f"/proc/{pid}/ns/net",
        userns=f"/proc/{pid}/ns/user",
    )
    try:
        forwarder.wait_ready()
    except BaseException:
        forwarder.stop()
        raise
    return forwarder


# --- helper side (rtnetlink) ------------------------------------------------------------------


def _rtnl() -> RTNL:
    from netns_helpers.rtnl import RTNL

    return RTNL()


def _link_index(rtnl: RTNL, name: str) -> int:
    index = rtnl.link_index(name)
    if index is None:
        raise _Failure(f"link {name} vanished")
    return index


def _ensure_bridge(rtnl: RTNL, name: str, gateway: str, prefixlen: int) -> int:
    index = rtnl.link_index(name)
    if index is None:
        try:
            rtnl.add_bridge(name)
        except FileExistsError:  # created meanwhile by another container's helper
            pass
        index = _link_index(rtnl, name)
    if gateway not in {address for _, address, _ in rtnl.ipv4_addresses(index)}:
        try:
            rtnl.add_ipv4_address(index, gateway, prefixlen)
        except FileExistsError:
            pass
    rtnl.set_link(index, up=True)
    return index


def _enable_forwarding() -> None:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        if f.read().strip() == "1":
            return
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1\n")


def apply_nat(
    masquerade: Sequence[str], isolated: Sequence[str] = (), table: str = DEFAULT_NFT_TABLE
) -> None:
    """Rebuild the `ip podpy` nft table: masquerade each subnet's traffic leaving it; drop
    forwarding out of internal networks. Atomic (one nft transaction)."""
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{"]
    lines.append("  chain postrouting {")
    lines.append("    type nat hook postrouting priority srcnat; policy accept;")
    for subnet in masquerade:
        lines.append(f"    ip saddr {subnet} ip daddr != {subnet} masquerade")
    lines.append("  }")
    lines.append("  chain forward {")
    lines.append("    type filter hook forward priority filter; policy accept;")
    for subnet in isolated:
        lines.append(f"    ip saddr {subnet} ip daddr != {subnet} drop")
        lines.append(f"    ip daddr {subnet} ip saddr != {subnet} drop")
    lines.append("  }")
    lines.append("}")
    if not masquerade and not isolated:
        lines = [f"table ip {table}", f"delete table ip {table}"]
    done = subprocess.run(
        ["nft", "-f", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True
    )
    if done.returncode != 0:
        from podpy.errors import PodpyError

        raise PodpyError(
            f"nft: {done.stderr.strip()}", hint="podpy needs nftables (the `nft` command) as root"
        )


def _route_localnet(bridge: str) -> None:
    """Let DNATed connections from 127.0.0.1 be routed to the bridge (netavark does too)."""
    with open(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet", "w") as f:
        f.write("1\n")


def _mac_for(address: str) -> str:
    return "02:42:" + ":".join(f"{int(part):02x}" for part in address.split("."))


def _configure_inside(pid: int, links: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """In a forked child: join the container's netns, rename, address, bring up, route."""
    from podpy import linux

    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        try:
            linux.setns_path(f"/proc/{pid}/ns/net", linux.CLONE_NEWNET)
            result = []
            with _rtnl() as rtnl:
                for link in links:
                    index = _link_index(rtnl, link["temp"])
                    # Docker's MAC from the IP (unless --mac-address): a neighbour's ARP cache
                    # stays right when an address comes back (restart, reconnect) on a new veth.
                    mac = link.get("mac_address") or _mac_for(link["address"])
                    rtnl.set_link(index, ifname=link["ifname"], mac=mac)
                    rtnl.add_ipv4_address(index, link["address"], link["prefixlen"])
                    rtnl.set_link(index, up=True)
                    result.append({"ifname": link["ifname"], "mac": rtnl.link_address(index)})
                gateways = [link for link in links if link.get("default_route")]
                if gateways:
                    rtnl.add_default_route(gateways[0]["gateway"])
            os.write(write_fd, json.dumps({"links": result}).encode())
            code = 0
        except BaseException as err:  # report anything to the parent
            os.write(write_fd, json.dumps({"error": f"{type(err).__name__}: {err}"}).encode())
            code = 1
        os._exit(code)
    os.close(write_fd)
    chunks = []
    while True:
        data = os.read(read_fd, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(read_fd)
    os.waitpid(child, 0)
    reply = json.loads(b"".join(chunks) or b'{"error": "the namespace child died"}')
    if "error" in reply:
        raise _Failure(reply["error"])
    return list(reply["links"])


def _ifname(index: int) -> str:
    return CONTAINER_IFNAMES[index] if index < len(CONTAINER_IFNAMES) else f"eth{index}"


def _join_userns(request: Mapping[str, Any]) -> None:
    """Rootless, called by podpy itself (connect/disconnect): become root of the rootless
    netns' user namespace first (the monitor's helper already is)."""
    if request.get("userns_path") and os.geteuid() != 0:
        from podpy.rootless import join_userns_in_place

        join_userns_in_place(str(request["userns_path"]))


def bridge_detach(request: Mapping[str, Any]) -> Dict[str, Any]:
    """Helper op: inside the container's netns, delete the interface holding `address` (its
    veth peer on the bridge goes with it)."""
    from podpy.errors import PodpyError

    _join_userns(request)
    pid, address = int(request["pid"]), str(request["address"])
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        code = 1
        try:
            from podpy import linux

            linux.setns_path(f"/proc/{pid}/ns/net", linux.CLONE_NEWNET)
            with _rtnl() as rtnl:
                found = [i for i, have, _ in rtnl.ipv4_addresses() if have == address]
                for index in found:
                    rtnl.delete_link(index)
            os.write(write_fd, json.dumps({"deleted": len(found)}).encode())
            code = 0
        except BaseException as err:
            os.write(write_fd, json.dumps({"error": f"{type(err).__name__}: {err}"}).encode())
        os._exit(code)
    os.close(write_fd)
    data = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    os.waitpid(child, 0)
    reply = json.loads(data or b'{"error": "the namespace child died"}')
    if "error" in reply:
        raise PodpyError(f"disconnecting the container: {reply['error']}")
    return reply


def bridge_attach(request: Mapping[str, Any]) -> Dict[str, Any]:
    """Helper op: bridges up, veth pairs created and moved, the container side configured."""
    import secrets

    from podpy.errors import PodpyError

    pid = int(request["pid"])
    interfaces = list(request["interfaces"])
    _join_userns(request)
    if request.get("netns"):  # rootless: the bridges live in the user's rootless netns
        from podpy import linux

        linux.setns_path(str(request["netns"]), linux.CLONE_NEWNET)
    _enable_forwarding()
    if request.get("masquerade") or request.get("isolated"):
        # (with neither, the table has nothing to hold: `network rm`'s rebuild removed it)
        apply_nat(
            request.get("masquerade") or [],
            request.get("isolated") or [],
            str(request.get("table") or DEFAULT_NFT_TABLE),
        )
    links = []
    created: List[str] = []
    try:
        with _rtnl() as rtnl:
            for position, iface in enumerate(interfaces):
                bridge = _ensure_bridge(
                    rtnl, iface["bridge"], iface["gateway"], int(iface["prefixlen"])
                )
                if request.get("default_net") and iface.get("network") == "podman":
                    _route_localnet(iface["bridge"])
                token = secrets.token_hex(4)
                host_name, temp = f"veth{token}", f"pp{token}"
                rtnl.add_veth(host_name, temp)
                created.append(host_name)
                host_index = _link_index(rtnl, host_name)
                peer_index = _link_index(rtnl, temp)
                rtnl.set_link(host_index, master=bridge, up=True)
                rtnl.set_link(peer_index, netns_pid=pid)
                links.append(
                    {
                        "temp": temp,
                        "ifname": _ifname(position + int(request.get("first_index") or 0)),
                        "address": iface["address"],
                        "prefixlen": int(iface["prefixlen"]),
                        "gateway": iface["gateway"],
                        "default_route": bool(iface.get("default_route")),
                        "host": host_name,
                        "mac_address": iface.get("mac_address"),
                    }
                )
        configured = _configure_inside(pid, links)
        if request.get("default_net") and not request.get("netns"):
            from netns_helpers import default_net

            default_net.publish(
                str(request["default_net"]["container_id"]), request.get("publish") or []
            )
    except (_Failure, OSError, Exception) as err:
        with _rtnl() as rtnl:
            for name in created:
                index = rtnl.link_index(name)
                if index is not None:
                    try:
                        rtnl.delete_link(index)
                    except OSError:
                        pass
        raise PodpyError(f"connecting the container to its networks: {err}") from err
    for link, done in zip(links, configured):
        link["mac"] = done["mac"]
    return {"links": links}


def bridge_remove(request: Mapping[str, Any]) -> Dict[str, Any]:
    """Helper op: delete a network's bridge (its veths went with their containers) and rebuild
    the nft table without it (unless `keep_nat`)."""
    with _rtnl() as rtnl:
        for name in request["bridges"] if "bridges" in request else [request["bridge"]]:
            index = rtnl.link_index(str(name))
            if index is not None:
                rtnl.delete_link(index)
    if not request.get("keep_nat"):  # (set when the caller has just rebuilt the table)
        apply_nat(
            request.get("masquerade") or [],
            request.get("isolated") or [],
            str(request.get("table") or DEFAULT_NFT_TABLE),
        )
    return {"removed": list(request["bridges"] if "bridges" in request else [request["bridge"]])}


# The operations call_helper runs in-process for root in the host's namespaces.
_IN_PROCESS: Dict[str, Callable[[Mapping[str, Any]], Dict[str, Any]]] = {
    "bridge-attach": bridge_attach,
    "bridge-detach": bridge_detach,
    "bridge-remove": bridge_remove,
}
