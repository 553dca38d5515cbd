"""User-defined networks: create, list, inspect, remove, prune, and their IP allocations, all in
the state DB (podman 4 netavark's JSON shape for inspect).

Each network row's config holds the subnet, gateway, interface name, flags and `allocations`
(container id -> address). Subnet choice and address allocation run inside one BEGIN IMMEDIATE
transaction, so concurrent podpy processes never hand out the same subnet or address. The
default network "podman" (10.88.0.0/16, bridge podpy0) is stored on first use like any other;
as root its addresses, subnet and published ports are host-wide instead (every store shares the
podpy0 bridge: netns_helpers/default_net.py), as podman keeps rootful IPAM host-wide.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from podpy.errors import AlreadyExists, InvalidState, NoSuchObject, PodpyError

if TYPE_CHECKING:
    from podpy.engine import Engine

DEFAULT_NETWORK = "podman"
DEFAULT_INTERFACE = "podpy0"
INTERFACE_PREFIX = "podpy"  # podpy0, podpy1, ... (podman's are podman0..., cni-podman0)
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
SUPPORTED_DRIVERS = ("bridge",)


class NetworkNotFound(NoSuchObject):
    """podman: `unable to find network with name or ID X: network not found`."""


def _not_found(ref: str) -> NetworkNotFound:
    return NetworkNotFound(f"unable to find network with name or ID {ref}: network not found")


# --- rows -------------------------------------------------------------------------------------


def _default_row() -> Dict[str, Any]:
    from netns_helpers import ipam

    subnet = ipam.parse_subnet(ipam.DEFAULT_SUBNET)
    return {
        "id": hashlib.sha256(DEFAULT_NETWORK.encode()).hexdigest(),  # podman's id for it too
        "name": DEFAULT_NETWORK,
        "driver": "bridge",
        "created": time.time(),
        "config": {
            "network_interface": DEFAULT_INTERFACE,
            "subnets": [{"subnet": str(subnet), "gateway": ipam.parse_gateway(None, subnet)}],
            "internal": False,
            "dns_enabled": False,
            "labels": {},
            "options": {},
            "allocations": {},
        },
    }


def ensure_default(eng: Engine) -> None:
    """Store the default network once (its allocations need a row like any network's)."""
    if eng.db.get_by_name("networks", DEFAULT_NETWORK) is not None:
        return
    try:
        eng.db.insert("networks", _default_row())
    except AlreadyExists:
        pass  # another podpy stored it first


def host_default(eng: Engine, name: str) -> bool:
    """Is this the rootful default network (host-wide state, not the store's)?"""
    return name == DEFAULT_NETWORK and not eng.paths.rootless


def _with_host_state(row: Dict[str, Any]) -> Dict[str, Any]:
    """The default network as root: the host's subnet and addresses in the row's place."""
    from netns_helpers import default_net

    state = default_net.read_state()
    config = dict(row["config"])
    if state.get("subnet"):
        config["subnets"] = [{"subnet": state["subnet"], "gateway": state["gateway"]}]
    else:  # the subnet the first container will get (10.88.0.0/16 unless routed elsewhere)
        from netns_helpers import ipam

        subnet = default_net.choose_subnet(
            config["subnets"][0]["subnet"],
            ipam.host_route_subnets(exclude_ifaces=(default_net.BRIDGE,)),
        )
        config["subnets"] = [{"subnet": str(subnet), "gateway": ipam.parse_gateway(None, subnet)}]
    config["allocations"] = {
        cid: entry["address"] for cid, entry in (state.get("allocations") or {}).items()
    }
    return dict(row, config=config)


def lookup(eng: Engine, ref: str) -> Dict[str, Any]:
    """A network by name, full id or unique id prefix."""
    ensure_default(eng)
    try:
        row = eng.db.lookup("networks", ref)
    except NoSuchObject as err:
        raise _not_found(ref) from err
    return _with_host_state(row) if host_default(eng, row["name"]) else row


def list_networks(eng: Engine) -> List[Dict[str, Any]]:
    ensure_default(eng)
    rows = [
        _with_host_state(r) if host_default(eng, r["name"]) else r for r in eng.db.list("networks")
    ]
    return sorted(rows, key=lambda r: r["name"])


_FILTER_KEYS = ("name", "id", "driver", "label", "dangling")


def filter_networks(
    eng: Engine, rows: List[Dict[str, Any]], filters: Sequence[str]
) -> List[Dict[str, Any]]:
    """`network ls --filter`: podman's keys; values of one key OR, different keys AND."""
    wanted: Dict[str, List[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if key not in _FILTER_KEYS or not sep:
            raise PodpyError(
                f'invalid filter "{key}"', hint="use name=, id=, driver=, label=, dangling="
            )
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise PodpyError(f'invalid dangling filter value "{value}"')
        wanted.setdefault(key, []).append(value)

    def match(row: Dict[str, Any], key: str, value: str) -> bool:
        if key == "name":
            return re.search(value, row["name"]) is not None
        if key == "id":
            return row["id"].startswith(value)
        if key == "driver":
            return row["driver"] == value
        if key == "label":
            label, has_value, want = value.partition("=")
            labels = row["config"].get("labels") or {}
            return label in labels and (not has_value or labels[label] == want)
        # dangling: no container uses it; as podman, the default network never is
        dangling = row["name"] != DEFAULT_NETWORK and not users(eng, row)
        return dangling == (value.lower() in ("true", "1"))

    return [
        row
        for row in rows
        if all(any(match(row, key, v) for v in values) for key, values in wanted.items())
    ]


# --- create -----------------------------------------------------------------------------------


def _used_subnets(rows: Sequence[Dict[str, Any]]) -> List[Any]:
    from netns_helpers import ipam

    used = []
    for row in rows:
        for entry in row["config"].get("subnets") or []:
            used.append(ipam.parse_subnet(entry["subnet"]))
    return used


def _free_interface(rows: Sequence[Dict[str, Any]], rootless: bool) -> str:
    """podpyN: unused by this store's networks and, as root, by the host (another store's
    bridge, or anything else with that name)."""
    taken = {r["config"].get("network_interface") for r in rows}
    index = 1
    while f"{INTERFACE_PREFIX}{index}" in taken or (
        not rootless and os.path.exists(f"/sys/class/net/{INTERFACE_PREFIX}{index}")
    ):
        index += 1
    return f"{INTERFACE_PREFIX}{index}"


def create(
    eng: Engine,
    name: Optional[str] = None,
    subnet: Optional[str] = None,
    gateway: Optional[str] = None,
    internal: bool = False,
    labels: Optional[Dict[str, str]] = None,
    driver: str = "bridge",
    dns_enabled: bool = True,
    options: Optional[Dict[str, str]] = None,
    ignore_existing: bool = False,
) -> Dict[str, Any]:
    """Record a network; the subnet is checked (or chosen) against every other network and the
    host's routes in the same transaction that stores it."""
    from netns_helpers import ipam

    if driver not in SUPPORTED_DRIVERS:
        raise PodpyError(
            f"unsupported driver {driver}: invalid argument", hint="podpy supports -d bridge"
        )
    if name is not None and not NAME_RE.match(name):
        raise PodpyError(
            f"network name {name} invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: "
            "invalid argument"
        )
    if gateway and not subnet:
        raise PodpyError("cannot set gateway without subnet", hint="pass --subnet with --gateway")
    requested = ipam.parse_subnet(subnet) if subnet else None
    gateway_ip = ipam.parse_gateway(gateway, requested) if requested else None
    ensure_default(eng)
    host_subnets = ipam.host_route_subnets()

    def store(_conn: Any) -> Dict[str, Any]:
        rows = eng.db.list("networks")
        chosen_name = name or _free_name(rows)
        existing = next((r for r in rows if r["name"] == chosen_name), None)
        if existing is not None:
            if ignore_existing:
                return existing
            raise AlreadyExists(
                f"network name {chosen_name} already used: network already exists",
                hint="choose another name, or remove the network with `podpy network rm`",
            )
        used = _used_subnets(rows) + host_subnets
        if requested is not None:
            ipam.check_free(requested, used)
            chosen, chosen_gateway = requested, gateway_ip
        else:
            chosen = ipam.next_free_subnet(used)
            chosen_gateway = ipam.parse_gateway(None, chosen)
        row = {
            "id": secrets.token_hex(32),
            "name": chosen_name,
            "driver": driver,
            "created": time.time(),
            "config": {
                "network_interface": _free_interface(rows, eng.paths.rootless),
                "subnets": [{"subnet": str(chosen), "gateway": chosen_gateway}],
                "internal": bool(internal),
                "dns_enabled": bool(dns_enabled),
                "labels": dict(labels or {}),
                "options": dict(options or {}),
                "allocations": {},
            },
        }
        eng.db.insert("networks", row)
        return row

    row = eng.db.run_transaction(store)
    eng.db.add_event("network", "create", name=row["name"], object_id=row["id"])
    return row


def _free_name(rows: Sequence[Dict[str, Any]]) -> str:
    """podman names an unnamed network podman1, podman2, ..."""
    taken = {r["name"] for r in rows}
    index = 1
    while f"{DEFAULT_NETWORK}{index}" in taken:
        index += 1
    return f"{DEFAULT_NETWORK}{index}"


# --- users of a network -----------------------------------------------------------------------


def container_networks(row: Dict[str, Any]) -> List[str]:
    """The named networks a container is attached to (from its stored network spec)."""
    network = (row.get("config") or {}).get("network") or {}
    if network.get("mode") != "bridge":
        return []
    return list(network.get("networks") or [DEFAULT_NETWORK])


def users(eng: Engine, network: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Containers attached to the network (by their spec, or holding an address in it)."""
    allocated = set((network["config"].get("allocations") or {}).keys())
    return [
        r
        for r in eng.db.list("containers")
        if network["name"] in container_networks(r) or r["id"] in allocated
    ]


# --- remove / prune ---------------------------------------------------------------------------


def remove(eng: Engine, ref: str, force: bool = False) -> str:
    """Remove a network; with force, its containers first (podman's -f). Returns the name."""
    from podpy.engine import containers

    network = lookup(eng, ref)
    if network["name"] == DEFAULT_NETWORK:
        raise PodpyError(
            f"default network {DEFAULT_NETWORK} cannot be removed",
            hint="remove user-defined networks only",
        )
    attached = users(eng, network)
    if attached and not force:
        raise InvalidState(
            f'"{network["name"]}" has associated containers with it. Use -f to forcibly delete '
            "containers and pods: network is being used",
            hint=f"remove {', '.join(r['name'] for r in attached)} first, or use -f",
        )
    for row in attached:
        if eng.db.get("containers", row["id"]) is not None:  # not gone with its pod already
            containers.remove(eng, row["id"], force=True, depend=True)
    eng.db.delete("networks", network["id"])
    remove_bridge(eng, network)
    eng.db.add_event("network", "remove", name=network["name"], object_id=network["id"])
    return network["name"]


def prune(eng: Engine) -> List[str]:
    """Remove every user-defined network no container uses; returns their names."""
    removed = []
    for network in list_networks(eng):
        if network["name"] != DEFAULT_NETWORK and not users(eng, network):
            removed.append(remove(eng, network["id"]))
    return removed


# --- addresses --------------------------------------------------------------------------------


def allocate(eng: Engine, ref: str, container_id: str, static_ip: Optional[str] = None) -> str:
    """An address in the network for the container (the same one again if it has one)."""
    from netns_helpers import ipam

    network = lookup(eng, ref)
    if host_default(eng, network["name"]):
        return _allocate_host(eng, container_id, static_ip)["address"]
    network_id = network["id"]

    def take(_conn: Any) -> str:
        row = eng.db.get("networks", network_id)
        if row is None:
            raise _not_found(ref)
        config = row["config"]
        allocations = dict(config.get("allocations") or {})
        if container_id in allocations and not static_ip:
            return str(allocations[container_id])
        entry = config["subnets"][0]
        subnet = ipam.parse_subnet(entry["subnet"])
        in_use = {ip for cid, ip in allocations.items() if cid != container_id}
        if static_ip:
            address = ipam.check_static_address(static_ip, subnet, entry["gateway"], in_use)
        else:
            address = ipam.allocate_address(subnet, entry["gateway"], in_use)
        allocations[container_id] = address
        config["allocations"] = allocations
        eng.db.update("networks", network_id, config=config)
        return address

    return eng.db.run_transaction(take)


def _allocate_host(eng: Engine, container_id: str, static_ip: Optional[str]) -> Dict[str, str]:
    from netns_helpers import default_net

    preferred = getattr(eng.config.containers, "default_subnet", "") or "10.88.0.0/16"
    store = os.path.abspath(eng.paths.db_file)
    return default_net.allocate(store, container_id, preferred, static_ip)


def release_host_default(container_ids: Sequence[str] = (), store: Optional[str] = None) -> None:
    """Root: give back default-network addresses; the bridge goes with the last one."""
    from netns_helpers import default_net

    default_net.release_containers(container_ids, store=store)


def release(eng: Engine, ref: str, container_id: str) -> None:
    """Give the container's address in the network back (no-op if it has none)."""
    if host_default(eng, ref) or (not eng.paths.rootless and ref == _default_row()["id"]):
        release_host_default([container_id])
        return

    def drop(_conn: Any) -> None:
        found = eng.db.find_id("networks", ref)
        row = eng.db.get("networks", found) if found else None
        if row is None:
            return
        config = row["config"]
        allocations = dict(config.get("allocations") or {})
        if allocations.pop(container_id, None) is not None:
            config["allocations"] = allocations
            eng.db.update("networks", row["id"], config=config)

    eng.db.run_transaction(drop)


# --- reading ----------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    from podpy.engine.containers import _iso as iso

    return iso(ts)


def inspect_json(row: Dict[str, Any]) -> Dict[str, Any]:
    """podman 4 (netavark) network JSON."""
    config = row["config"]
    out: Dict[str, Any] = {
        "name": row["name"],
        "id": row["id"],
        "driver": row["driver"],
        "network_interface": config.get("network_interface") or "",
        "created": _iso(row["created"]),
        "subnets": [
            {"subnet": s["subnet"], "gateway": s["gateway"]} for s in config.get("subnets") or []
        ],
        "ipv6_enabled": False,
        "internal": bool(config.get("internal")),
        "dns_enabled": bool(config.get("dns_enabled")),
    }
    if config.get("labels"):
        out["labels"] = dict(config["labels"])
    if config.get("options"):
        out["options"] = dict(config["options"])
    out["ipam_options"] = {"driver": "host-local"}
    return out


def inspect(eng: Engine, refs: Sequence[str]) -> List[Dict[str, Any]]:
    return [inspect_json(lookup(eng, ref)) for ref in refs]


# --- connect / disconnect ---------------------------------------------------------------------


def _attachable_spec(row: Dict[str, Any]) -> Dict[str, Any]:
    spec = dict((row.get("config") or {}).get("network") or {})
    mode = spec.get("mode")
    if mode != "bridge":
        raise PodpyError(
            f'"{mode}" is not supported: invalid network mode',
            hint="only containers created on bridge networks (--network NAME) can be connected",
        )
    return spec


def _save_spec(eng: Engine, row: Dict[str, Any], spec: Dict[str, Any]) -> None:
    config = dict(row["config"])
    config["network"] = spec
    eng.db.update("containers", row["id"], config=config)


def _hotplug(eng: Engine, request: Dict[str, Any]) -> Dict[str, Any]:
    from netns_helpers.bridge import call_helper

    return call_helper(helper_argv(), request)


def connect(
    eng: Engine,
    ref: str,
    container: str,
    ip: Optional[str] = None,
    aliases: Sequence[str] = (),
) -> None:
    """Attach a container to one more network; a running one gets the interface at once."""
    from podpy.engine import containers

    network = lookup(eng, ref)
    row = containers.lookup(eng, container)
    spec = _attachable_spec(row)
    names = list(spec.get("networks") or [])
    if network["name"] in names:
        raise AlreadyExists(
            f"container {row['id']} is already connected to network {network['name']}"
        )
    if ip:  # validate (and hold) the address before anything changes
        allocate(eng, network["id"], row["id"], static_ip=ip)
    options = dict(spec.get("options") or {})
    if aliases:
        options["aliases"] = list(options.get("aliases") or []) + list(aliases)
    spec["options"] = options
    spec["networks"] = names + [network["name"]]
    if row["status"] == "running" and row.get("pid"):
        entry = network["config"]["subnets"][0]
        address = allocate(eng, network["id"], row["id"], static_ip=ip)
        request: Dict[str, Any] = {
            "op": "bridge-attach",
            "pid": row["pid"],
            "first_index": len(names),
            "interfaces": [
                {
                    "network": network["name"],
                    "bridge": network["config"]["network_interface"],
                    "subnet": entry["subnet"],
                    "gateway": entry["gateway"],
                    "prefixlen": int(entry["subnet"].split("/")[1]),
                    "address": address,
                    "internal": bool(network["config"].get("internal")),
                    "default_route": not names and not network["config"].get("internal"),
                }
            ],
        }
        request.update(_nat_lists(eng))
        if host_default(eng, network["name"]):  # the host's `ip podpy` table: its NAT
            request["default_net"] = {"container_id": row["id"], "dnat": False}
        if eng.paths.rootless:
            holder = ensure_rootless_netns(eng)
            request["netns"] = f"/proc/{holder}/ns/net"
            request["userns_path"] = f"/proc/{holder}/ns/user"
        try:
            _hotplug(eng, request)
        except PodpyError:
            release(eng, network["id"], row["id"])
            raise
    _save_spec(eng, row, spec)
    eng.db.add_event(
        "network", "connect", name=network["name"], object_id=network["id"],
        attributes={"container": row["id"]},
    )  # fmt: skip


def disconnect(eng: Engine, ref: str, container: str) -> None:
    """Detach a container from a network (a running one loses the interface at once)."""
    from podpy.engine import containers

    network = lookup(eng, ref)
    row = containers.lookup(eng, container)
    spec = _attachable_spec(row)
    names = list(spec.get("networks") or [])
    if network["name"] not in names:
        raise PodpyError(
            f"container {row['id']} is not connected to network {network['name']}: "
            "network not found"
        )
    address = (network["config"].get("allocations") or {}).get(row["id"])
    if row["status"] == "running" and row.get("pid") and address:
        request: Dict[str, Any] = {"op": "bridge-detach", "pid": row["pid"], "address": address}
        if eng.paths.rootless:
            holder = ensure_rootless_netns(eng)
            request["userns_path"] = f"/proc/{holder}/ns/user"
        _hotplug(eng, request)
    spec["networks"] = [n for n in names if n != network["name"]]
    _save_spec(eng, row, spec)
    release(eng, network["id"], row["id"])
    eng.db.add_event(
        "network", "disconnect", name=network["name"], object_id=network["id"],
        attributes={"container": row["id"]},
    )  # fmt: skip


# --- data path (rootful bridges) --------------------------------------------------------------


def check_attachable(eng: Engine, names: Sequence[str], has_ports: bool) -> None:
    """At create: the named networks exist and podpy can connect this kind of container."""
    for name in names:
        lookup(eng, name)


def nft_table(db_file: str) -> str:
    """This store's own nft table: stores (--root) must not rebuild each other's rules."""
    return "podpy_" + hashlib.sha256(os.path.abspath(db_file).encode()).hexdigest()[:10]


def _nat_lists(eng: Engine) -> Dict[str, Any]:
    masquerade, isolated = [], []
    for row in eng.db.list("networks"):
        if row["name"] == DEFAULT_NETWORK:
            continue
        for entry in row["config"].get("subnets") or []:
            (isolated if row["config"].get("internal") else masquerade).append(entry["subnet"])
    return {"masquerade": masquerade, "isolated": isolated, "table": nft_table(eng.paths.db_file)}


def helper_argv() -> List[str]:
    from podpy.selfexec import podpy_argv

    return podpy_argv(lean=True) + ["__netns"]


def attach_request(eng: Engine, row: Dict[str, Any], network: Dict[str, Any]) -> Dict[str, Any]:
    """At start: addresses from IPAM and what the netns helper needs to wire the container."""
    interfaces = []
    options = network.get("options") or {}
    for position, name in enumerate(network.get("networks") or []):
        net = lookup(eng, name)
        entry = net["config"]["subnets"][0]
        static = options.get("ip") if position == 0 else None
        if host_default(eng, net["name"]):  # host-wide pool: podpy0 is every store's
            entry = _allocate_host(eng, row["id"], static)
            address = entry["address"]
        else:
            address = allocate(eng, net["id"], row["id"], static_ip=static)
        interfaces.append(
            {
                "network": net["name"],
                "bridge": net["config"]["network_interface"],
                "subnet": entry["subnet"],
                "gateway": entry["gateway"],
                "prefixlen": int(entry["subnet"].split("/")[1]),
                "address": address,
                "internal": bool(net["config"].get("internal")),
            }
        )
        if position == 0 and options.get("mac"):  # --mac-address / NET:mac=
            interfaces[-1]["mac_address"] = options["mac"]
    for iface in interfaces:  # the first non-internal network carries the default route
        if not iface["internal"]:
            iface["default_route"] = True
            break
    request: Dict[str, Any] = {"interfaces": interfaces, "helper": helper_argv()}
    request.update(_nat_lists(eng))
    if any(host_default(eng, i["network"]) for i in interfaces):
        # the helper rebuilds the host's `ip podpy` table; ports of a container whose first
        # network is the default one are published there by DNAT (TCP and UDP)
        request["default_net"] = {
            "container_id": row["id"],
            "dnat": host_default(eng, interfaces[0]["network"]),
        }
    if eng.paths.rootless:
        holder = ensure_rootless_netns(eng)
        request["netns"] = f"/proc/{holder}/ns/net"
        request["userns_path"] = f"/proc/{holder}/ns/user"  # the monitor joins it
    dns_networks = [i for i in interfaces if lookup(eng, i["network"])["config"].get("dns_enabled")]
    if dns_networks and not network.get("dns_servers"):
        from podpy import log
        from podpy.errors import PodpyError as _Error

        try:
            ensure_dns(eng, lookup(eng, dns_networks[0]["network"]))
        except _Error as err:  # name resolution is a convenience: the container still runs
            log.warn(f"network {dns_networks[0]['network']}: DNS responder not started: {err}")
        else:
            from netns_helpers.dns import SEARCH_DOMAIN

            network["dns_servers"] = [dns_networks[0]["gateway"]]
            network["dns_search"] = list(network.get("dns_search") or []) + [SEARCH_DOMAIN]
    return request


def _dns_dir(eng: Engine, row: Dict[str, Any]) -> str:
    return os.path.join(eng.paths.run_root, "networks", row["id"])


def _dns_pid(eng: Engine, row: Dict[str, Any]) -> int:
    """The pid of the network's running DNS responder, or 0."""
    try:
        with open(os.path.join(_dns_dir(eng, row), "dns.pid")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"dns-serve" in f.read():
                return pid
    except (OSError, ValueError):
        pass
    return 0


def ensure_dns(eng: Engine, row: Dict[str, Any]) -> int:
    """Start the network's DNS responder (detached) unless it runs; returns its pid."""
    import json

    pid = _dns_pid(eng, row)
    if pid:
        return pid
    directory = _dns_dir(eng, row)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pid_file = os.path.join(directory, "dns.pid")
    try:
        os.unlink(pid_file)
    except FileNotFoundError:
        pass
    request: Dict[str, Any] = {
        "op": "dns-serve",
        "address": row["config"]["subnets"][0]["gateway"],
        "db": eng.paths.db_file,
        "network_id": row["id"],
        "pid_file": pid_file,
    }
    if eng.paths.rootless:
        from netns_helpers.rootless_netns import SLIRP_DNS

        holder = ensure_rootless_netns(eng)
        request["userns"] = f"/proc/{holder}/ns/user"
        request["netns"] = f"/proc/{holder}/ns/net"
        request["upstreams"] = [SLIRP_DNS]
    log_path = os.path.join(directory, "dns.log")
    _spawn_detached(helper_argv() + [json.dumps(request)], log_path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = _dns_pid(eng, row)
        if pid:
            return pid
        time.sleep(0.02)
    raise PodpyError(f"the DNS responder did not start (see {log_path})")


def stop_dns(eng: Engine, row: Dict[str, Any]) -> None:
    import shutil
    import signal

    pid = _dns_pid(eng, row)
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    shutil.rmtree(_dns_dir(eng, row), ignore_errors=True)


def release_container(eng: Engine, container_id: str) -> None:
    """Give back every address the container holds (at rm)."""
    if not eng.paths.rootless:
        release_host_default([container_id])
    for row in eng.db.list("networks"):
        if container_id in (row["config"].get("allocations") or {}):
            release(eng, row["id"], container_id)


def remove_bridge(eng: Engine, row: Dict[str, Any]) -> None:
    """After `network rm` as root: delete its host bridge and its NAT rule."""
    stop_dns(eng, row)
    bridge = row["config"].get("network_interface") or ""
    if eng.paths.rootless or not bridge or not os.path.exists(f"/sys/class/net/{bridge}"):
        return
    from netns_helpers.bridge import call_helper

    request: Dict[str, Any] = {"op": "bridge-remove", "bridge": bridge}
    request.update(_nat_lists(eng))
    call_helper(helper_argv(), request)


def teardown_store(db_file: str, run_root: str, rootless: bool) -> None:
    """For `system reset`: stop the store's DNS responders; as root, delete its bridges and
    its nft table. Reads the DB directly (the reset must not need a working engine)."""
    import glob
    import signal
    import sqlite3

    for pid_file in glob.glob(os.path.join(run_root, "networks", "*", "dns.pid")):
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"dns-serve" in f.read():
                    os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            continue
    stop_rootless_netns(run_root)
    if rootless:
        return
    release_host_default(store=os.path.abspath(db_file))
    if not os.path.exists(db_file):
        return
    try:
        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT name, config_json FROM networks").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return
    import json

    bridges = []
    for name, config_text in rows:
        bridge = json.loads(config_text).get("network_interface") or ""
        if name != DEFAULT_NETWORK and bridge and os.path.exists(f"/sys/class/net/{bridge}"):
            bridges.append(bridge)
    if not bridges:  # no pyroute2 needed: just drop the table if there is one
        import subprocess

        subprocess.run(
            ["nft", "delete", "table", "ip", nft_table(db_file)], capture_output=True, check=False
        )
        return
    from netns_helpers.bridge import call_helper

    request = {"op": "bridge-remove", "bridges": bridges, "table": nft_table(db_file)}
    call_helper(helper_argv(), request)


def _spawn_detached(argv: List[str], log_path: str) -> None:
    """fork, setsid, fork again, exec: a daemon no podpy command or terminal owns."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDWR)
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(devnull, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.waitpid(child, 0)


def _rootless_netns_pids(run_root: str) -> Dict[str, int]:
    """{"keeper", "holder", "slirp"} of the running rootless netns, or {}."""
    import json

    try:
        with open(os.path.join(run_root, "networks", "rootless-netns.json")) as f:
            pids = {k: int(v) for k, v in json.load(f).items()}
        with open(f"/proc/{pids['holder']}/cmdline", "rb") as f:
            if b"rootless-netns" in f.read():
                return pids
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return {}


def ensure_rootless_netns(eng: Engine) -> int:
    """The holder pid of the user's rootless network namespace, started if needed (under a
    file lock: concurrent starts share one)."""
    import fcntl
    import json

    directory = os.path.join(eng.paths.run_root, "networks")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.path.join(directory, "rootless-netns.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pids = _rootless_netns_pids(eng.paths.run_root)
        if pids:
            return pids["holder"]
        pid_file = os.path.join(directory, "rootless-netns.json")
        try:
            os.unlink(pid_file)
        except FileNotFoundError:
            pass
        request = {"op": "rootless-netns", "run_dir": directory, "pid_file": pid_file}
        log_path = os.path.join(directory, "rootless-netns.log")
        _spawn_detached(helper_argv() + [json.dumps(request)], log_path)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pids = _rootless_netns_pids(eng.paths.run_root)
            if pids:
                return pids["holder"]
            time.sleep(0.02)
    try:
        with open(log_path) as f:
            reason = f.read().strip().splitlines()[-1]
    except (OSError, IndexError):
        reason = "no reason logged"
    raise PodpyError(f"the rootless network namespace did not start: {reason}")


def stop_rootless_netns(run_root: str) -> None:
    import signal

    pids = _rootless_netns_pids(run_root)
    if pids:
        try:
            os.kill(pids["keeper"], signal.SIGTERM)
        except ProcessLookupError:
            pass


def container_settings(eng: Engine, row: Dict[str, Any]) -> Dict[str, Any]:
    """The bridge part of a container's inspect NetworkSettings (podman's keys)."""
    spec = (row.get("config") or {}).get("network") or {}
    aliases = list((spec.get("options") or {}).get("aliases") or [])
    per_network: Dict[str, Any] = {}
    for name in spec.get("networks") or []:
        try:
            network = lookup(eng, name)
        except NetworkNotFound:
            continue
        entry = network["config"]["subnets"][0]
        address = (network["config"].get("allocations") or {}).get(row["id"], "")
        per_network[name] = {
            "EndpointID": "",
            "Gateway": entry["gateway"] if address else "",
            "IPAddress": address,
            "IPPrefixLen": int(entry["subnet"].split("/")[1]) if address else 0,
            "MacAddress": "",
            "NetworkID": network["id"],
            "Aliases": [row["id"][:12], *aliases],
        }
    first = next(iter(per_network.values()), None)
    return {
        "IPAddress": first["IPAddress"] if first else "",
        "Gateway": first["Gateway"] if first else "",
        "IPPrefixLen": first["IPPrefixLen"] if first else 0,
        "Networks": per_network,
    }
