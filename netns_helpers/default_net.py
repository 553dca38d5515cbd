"""The rootful default network ("podman", host bridge podpy0): one per host, shared by all stores.

Every rootful store (each --root/--runroot) attaches its default-network containers to the same
host bridge, so the addresses must come from one pool: podman keeps the IPAM of rootful networks
host-wide for the same reason (/run/containers/networks, "the network namespace is shared for
all libpod instances"). podpy keeps it in STATE_DIR/podman.json, changed only under an flock of
STATE_DIR/podman.lock:

    {"subnet": "10.88.0.0/16", "gateway": "10.88.0.1",
     "allocations": {CID: {"address": "10.88.0.2", "store": DB_FILE}},
     "ports": {CID: [{"host_ip", "host_port", "container_port", "protocol"}]}}

The subnet is chosen when the first address is handed out: the configured default_subnet
(10.88.0.0/16) unless the host already routes it through another interface (podman's own
podman0 uses the same range), else the first free one of 10.87.0.0/16 downwards.

The `ip podpy` nft table is rebuilt from the state whenever it changes: masquerade for traffic
leaving the subnet, DNAT of the published ports of running containers (TCP and UDP, from other
hosts and from the host itself; 127.0.0.1 works through route_localnet on the bridge and a
masquerade of 127.0.0.0/8 towards the subnet, as netavark does). When the last address is
released (rm, `system reset`, or a store whose DB is gone), the table is deleted and the caller
deletes the bridge. Stdlib only: the monitor calls unpublish() when its container stops.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

STATE_DIR = "/run/podpy/networks"
BRIDGE = "podpy0"
TABLE = "podpy"
FALLBACK_SECOND_OCTETS = range(87, 79, -1)  # 10.87.0.0/16 ... 10.80.0.0/16


@contextmanager
def locked(state_dir: str = STATE_DIR) -> Iterator[Dict[str, Any]]:
    """The state, exclusively; written back (atomically) when the block ends without error."""
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    path = os.path.join(state_dir, "podman.json")
    with open(os.path.join(state_dir, "podman.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
        before = json.dumps(state, sort_keys=True)
        yield state
        if json.dumps(state, sort_keys=True) == before:
            return
        if not state.get("allocations"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        temp = f"{path}.{os.getpid()}.tmp"
        with open(temp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temp, path)


def read_state(state_dir: str = STATE_DIR) -> Dict[str, Any]:
    """A snapshot (no lock): for inspect."""
    try:
        with open(os.path.join(state_dir, "podman.json")) as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return {}


def _drop_stale(state: Dict[str, Any]) -> None:
    """Allocations of stores whose DB file is gone (a deleted --root) free their addresses."""
    allocations = state.setdefault("allocations", {})
    for cid, entry in list(allocations.items()):
        if not os.path.exists(str(entry.get("store") or "")):
            del allocations[cid]
            (state.get("ports") or {}).pop(cid, None)


def choose_subnet(preferred: str, routed: Sequence[Any]) -> Any:
    """The preferred subnet unless `routed` (host routes not on our bridge) overlaps it."""
    import ipaddress

    candidates = [ipaddress.ip_network(preferred, strict=False)]
    candidates += [ipaddress.ip_network(f"10.{n}.0.0/16") for n in FALLBACK_SECOND_OCTETS]
    for candidate in candidates:
        if not any(candidate.overlaps(other) for other in routed):
            return candidate
    from podpy.errors import PodpyError

    raise PodpyError(
        f"the default network found no free subnet: {preferred} and 10.80-10.87.0.0/16 are "
        "all routed on this host",
        hint="set another default_subnet in the [network] table of containers.conf",
    )


def allocate(
    store: str,
    container_id: str,
    preferred_subnet: str,
    static_ip: Optional[str] = None,
    state_dir: str = STATE_DIR,
) -> Dict[str, str]:
    """An address for the container (the same one again if it has one): {address, subnet,
    gateway}."""
    from netns_helpers import ipam

    with locked(state_dir) as state:
        _drop_stale(state)
        allocations = state["allocations"]
        if not state.get("subnet") or not allocations:
            routed = ipam.host_route_subnets(exclude_ifaces=(BRIDGE,))
            subnet = choose_subnet(preferred_subnet, routed)
            state["subnet"] = str(subnet)
            state["gateway"] = ipam.parse_gateway(None, subnet)
        subnet = ipam.parse_subnet(state["subnet"])
        mine = allocations.get(container_id)
        if mine is None or static_ip:
            in_use = {e["address"] for cid, e in allocations.items() if cid != container_id}
            if static_ip:
                address = ipam.check_static_address(static_ip, subnet, state["gateway"], in_use)
            else:
                address = ipam.allocate_address(subnet, state["gateway"], in_use)
            allocations[container_id] = {"address": address, "store": store}
        return {
            "address": allocations[container_id]["address"],
            "subnet": state["subnet"],
            "gateway": state["gateway"],
        }


def ruleset(state: Mapping[str, Any]) -> str:
    """The `ip podpy` table for the state (an nft -f script that replaces it atomically)."""
    lines = [f"table ip {TABLE}", f"delete table ip {TABLE}"]
    subnet = state.get("subnet")
    if not subnet or not state.get("allocations"):
        return "\n".join(lines) + "\n"
    lines.append(f"table ip {TABLE} {{")
    lines.append("  chain hostports {")
    allocations = state.get("allocations") or {}
    for cid, ports in sorted((state.get("ports") or {}).items()):
        entry = allocations.get(cid)
        if not entry:
            continue
        for port in ports:
            proto = port.get("protocol") or "tcp"
            if proto not in ("tcp", "udp", "sctp"):
                continue
            match = f"ip daddr {port['host_ip']} " if port.get("host_ip") else ""
            lines.append(
                f"    {match}{proto} dport {int(port['host_port'])} "
                f"dnat to {entry['address']}:{int(port['container_port'])}"
                f' comment "{cid[:12]}"'
            )
    lines.append("  }")
    lines.append("  chain prerouting {")
    lines.append("    type nat hook prerouting priority dstnat; policy accept;")
    lines.append("    fib daddr type local jump hostports")
    lines.append("  }")
    lines.append("  chain output {")
    lines.append("    type nat hook output priority -100; policy accept;")
    lines.append("    fib daddr type local jump hostports")
    lines.append("  }")
    lines.append("  chain postrouting {")
    lines.append("    type nat hook postrouting priority srcnat; policy accept;")
    lines.append(f"    ip saddr {subnet} ip daddr != {subnet} masquerade")
    lines.append(f"    ip saddr 127.0.0.0/8 ip daddr {subnet} masquerade")
    lines.append(f"    ip saddr {subnet} ip daddr {subnet} ct status dnat masquerade")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def apply(state: Mapping[str, Any]) -> None:
    done = subprocess.run(
        ["nft", "-f", "-"], input=ruleset(state), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        from podpy.errors import PodpyError

        raise PodpyError(
            f"nft: {done.stderr.strip()}", hint="podpy needs nftables (the `nft` command) as root"
        )


def publish(
    container_id: str, ports: Sequence[Mapping[str, Any]], state_dir: str = STATE_DIR
) -> None:
    """Helper side, at attach: the table with the container's masquerade and port DNAT."""
    with locked(state_dir) as state:
        taken = {
            (int(p["host_port"]), p.get("protocol") or "tcp"): cid
            for cid, published in (state.get("ports") or {}).items()
            for p in published
            if cid != container_id and cid in (state.get("allocations") or {})
        }
        for p in ports:
            other = taken.get((int(p["host_port"]), str(p.get("protocol") or "tcp")))
            if other:
                from podpy.errors import PodpyError

                raise PodpyError(
                    f"port {p['host_port']}/{p.get('protocol') or 'tcp'} is already published "
                    f"by container {other[:12]}",
                    hint="choose another host port with -p HOSTPORT:CTRPORT",
                )
        if ports:
            state.setdefault("ports", {})[container_id] = [
                {
                    "host_ip": str(p.get("host_ip") or ""),
                    "host_port": int(p["host_port"]),
                    "container_port": int(p["container_port"]),
                    "protocol": str(p.get("protocol") or "tcp"),
                }
                for p in ports
            ]
        apply(state)


def unpublish(container_id: str, state_dir: str = STATE_DIR) -> None:
    """The container stopped: its DNAT rules go (its address stays until rm)."""
    with locked(state_dir) as state:
        if (state.get("ports") or {}).pop(container_id, None) is not None:
            apply(state)


def release(
    container_ids: Sequence[str] = (),
    store: Optional[str] = None,
    remove_bridge: Optional[Callable[[], None]] = None,
    state_dir: str = STATE_DIR,
) -> None:
    """Give addresses back (by container, or every one of a store); when none is left, delete
    the table and (through `remove_bridge`, still under the lock) the bridge."""
    if not os.path.exists(os.path.join(state_dir, "podman.json")) and not os.path.exists(
        f"/sys/class/net/{BRIDGE}"
    ):
        return
    with locked(state_dir) as state:
        _drop_stale(state)
        allocations = state["allocations"]
        ports = state.setdefault("ports", {})
        for cid in list(allocations):
            if cid in container_ids or (store and allocations[cid].get("store") == store):
                del allocations[cid]
                ports.pop(cid, None)
        if allocations:
            apply(state)
            return
        state.clear()
        apply(state)
        if remove_bridge is not None and os.path.exists(f"/sys/class/net/{BRIDGE}"):
            remove_bridge()


def release_containers(container_ids: Sequence[str] = (), store: Optional[str] = None) -> None:
    """Root: give back default-network addresses; podpy0 goes with the last one. For the
    engine (`rm`, `system reset`) and for the monitor's own --rm removal."""
    release(container_ids, store=store, remove_bridge=_remove_bridge)


def _remove_bridge() -> None:
    """Under release()'s lock, once the last address is gone: delete podpy0 (in this process
    as root of the host's namespaces, see bridge.call_helper)."""
    from netns_helpers.bridge import call_helper
    from podpy.selfexec import podpy_argv

    # release() has just emptied the table: the removal leaves nft alone
    request = {"op": "bridge-remove", "bridges": [BRIDGE], "keep_nat": True}
    call_helper(podpy_argv(lean=True) + ["__netns"], request)


def reserve(ports: Sequence[Mapping[str, Any]]) -> List[Any]:
    """Bound (not listening) sockets on the published host ports, held while the container
    runs, as conmon holds them for podman: nothing else on the host can take those ports."""
    import socket

    from podpy.errors import PodpyError

    held = []
    try:
        for port in ports:
            udp = (port.get("protocol") or "tcp") == "udp"
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
            held.append(sock)
            host_ip = str(port.get("host_ip") or "0.0.0.0")
            try:
                sock.bind((host_ip, int(port["host_port"])))
            except OSError as err:
                raise PodpyError(
                    f"listen {'udp' if udp else 'tcp'} {host_ip}:{port['host_port']}: bind: "
                    f"{(err.strerror or str(err)).lower()}",
                    hint="choose another host port with -p HOSTPORT:CTRPORT",
                ) from err
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held


def _spawn_keeper(argv: Sequence[str]) -> Any:
    """A tiny /bin/sh that waits for EOF on a pipe, then runs `argv` (the unpublish): the
    pipe's write end stays with the monitor, so the rules go when the container stops and
    also when the monitor is killed. Returns (pid, write fd)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()  # no terminal signal may end it before its job is done
            os.dup2(read_fd, 0)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.closerange(3, 65536)
            # TERM/INT/HUP ignored (kept across exec): the slimmed monitor's hand-over escalates
            # to SIGTERM after 1 s, which must not cut a slow unpublish short on a busy host
            script = 'trap "" TERM INT HUP; read -r _; exec "$@"'
            os.execv("/bin/sh", ["/bin/sh", "-c", script, "podpy-unpublish", *argv])
        finally:
            os._exit(127)
    os.close(read_fd)
    return pid, write_fd


def attach_published(request: Mapping[str, Any], pid: int, ports: Sequence[Any]) -> Any:
    """Monitor side: host ports reserved, the container wired (netns helper: veth, table with
    its DNAT rules), and a keeper that removes the rules again. None without ports."""
    from netns_helpers.bridge import call_helper

    ports = [dict(p) for p in ports]
    held = reserve(ports)
    container_id = str(request["default_net"]["container_id"])
    try:
        body = dict(request)
        body.update({"op": "bridge-attach", "pid": pid, "publish": ports})
        call_helper(request["helper"], body)
        if not ports:
            return None
        unpublish_request = {"op": "default-unpublish", "container_id": container_id}
        keeper, write_fd = _spawn_keeper(list(request["helper"]) + [json.dumps(unpublish_request)])
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return Published(keeper, write_fd, held)


class Published:
    """The monitor's handle on a container's published ports: the reserved sockets and the
    keeper; stop() (or handing both over to the slimmed monitor, which closes the fds)."""

    def __init__(self, keeper: int, write_fd: int, sockets: Sequence[Any]):
        self.keeper = keeper
        self.write_fd = write_fd
        self.sockets = list(sockets)

    def handoff(self) -> Dict[str, Any]:
        """For podpy/monitor/main.py HandedOverProcess: close the fds, wait for the pid."""
        fds = [self.write_fd] + [sock.detach() for sock in self.sockets]
        self.sockets = []
        return {"pid": self.keeper, "fds": fds}

    def stop(self) -> None:
        import time

        if self.write_fd >= 0:
            os.close(self.write_fd)  # the keeper wakes up and removes the rules
            self.write_fd = -1
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(self.keeper, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(0.01)
