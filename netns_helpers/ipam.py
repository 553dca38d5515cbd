"""IP address management for bridge networks: pure functions over the subnets and addresses in use.

The caller (podpy.engine.networks) runs them inside one state-DB transaction, which is what
makes concurrent `network create` and container starts collision-free; nothing here touches
files, locks or the network. IPv4 only (podman's defaults are IPv4 too).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, List, Optional, Set

from podpy.errors import PodpyError

# podman: the default network is 10.88.0.0/16; new networks get the next free /24 from 10.89.0.0.
DEFAULT_SUBNET = "10.88.0.0/16"
FIRST_USER_SUBNET = "10.89.0.0/24"
IPv4Network = ipaddress.IPv4Network


class IpamError(PodpyError):
    """A subnet, gateway or address that cannot be used (podman's wording)."""


def parse_subnet(text: str) -> IPv4Network:
    """A CIDR like 10.89.3.0/24 (host bits are masked off: 10.89.3.7/24 is 10.89.3.0/24)."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as err:
        raise IpamError(
            f"invalid CIDR address: {text}", hint="give a subnet like 10.89.7.0/24"
        ) from err
    if not isinstance(network, ipaddress.IPv4Network):
        raise IpamError(f"IPv6 subnets are not supported yet: {text}", hint="use an IPv4 subnet")
    if network.prefixlen > 30:
        raise IpamError(
            f"subnet {network} is too small: it leaves no address for a container",
            hint="use a /30 or larger subnet",
        )
    return network


def parse_gateway(text: Optional[str], subnet: IPv4Network) -> str:
    """The gateway: given (must be a host address of the subnet) or the subnet's first host."""
    if not text:
        return str(next(subnet.hosts()))
    try:
        gateway = ipaddress.ip_address(text.strip())
    except ValueError as err:
        raise IpamError(f"invalid gateway address: {text}") from err
    if gateway not in subnet:
        raise IpamError(f"gateway {gateway} not in subnet {subnet}")
    if gateway in (subnet.network_address, subnet.broadcast_address):
        raise IpamError(f"gateway {gateway} is the network or broadcast address of {subnet}")
    return str(gateway)


def overlaps(candidate: IPv4Network, used: Iterable[IPv4Network]) -> bool:
    return any(candidate.overlaps(other) for other in used)


def check_free(subnet: IPv4Network, used: Iterable[IPv4Network]) -> None:
    if overlaps(subnet, used):
        raise IpamError(
            f"subnet {subnet} is already used on the host or by another config",
            hint="choose another --subnet, or leave it out to get a free one",
        )


def next_free_subnet(used: Iterable[IPv4Network]) -> IPv4Network:
    """The first /24 from 10.89.0.0 upwards that overlaps nothing in `used`."""
    taken = list(used)
    candidate = ipaddress.ip_network(FIRST_USER_SUBNET)
    while True:
        if not overlaps(candidate, taken):
            return candidate  # type: ignore[return-value]
        following = int(candidate.network_address) + candidate.num_addresses
        if following >= int(ipaddress.ip_address("11.0.0.0")):
            raise IpamError(
                "could not find a free subnet in 10.89.0.0-10.255.255.0: all /24s are in use",
                hint="remove unused networks (`podpy network prune`) or pass --subnet",
            )
        candidate = ipaddress.ip_network(f"{ipaddress.ip_address(following)}/24")


def allocate_address(subnet: IPv4Network, gateway: str, in_use: Set[str]) -> str:
    """The lowest host address of the subnet that is neither the gateway nor in use."""
    reserved = set(in_use) | {gateway}
    for host in subnet.hosts():
        text = str(host)
        if text not in reserved:
            return text
    raise IpamError(
        f"IPAM error: failed to find free IP in subnet {subnet}: all addresses are in use",
        hint="remove containers from the network, or create a network with a larger subnet",
    )


def check_static_address(address: str, subnet: IPv4Network, gateway: str, in_use: Set[str]) -> str:
    """A --ip request: inside the subnet, not reserved, not taken."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as err:
        raise IpamError(f"{address} is not an IP address") from err
    if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
        raise IpamError(f"requested ip address {ip} is not in subnet {subnet}")
    if str(ip) == gateway or str(ip) in in_use:
        raise IpamError(f"requested ip address {ip} is already allocated to another container")
    return str(ip)


def host_route_subnets(
    route_file: str = "/proc/net/route", exclude_ifaces: Iterable[str] = ()
) -> List[IPv4Network]:
    """Subnets the host already routes (podman refuses to reuse them): /proc/net/route, no
    netlink needed. The default route and routes through `exclude_ifaces` are left out."""
    excluded = set(exclude_ifaces)
    out: List[IPv4Network] = []
    try:
        with open(route_file) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[0] in excluded:
            continue
        try:
            destination = _le_hex_ip(fields[1])
            mask = _le_hex_ip(fields[7])
        except ValueError:
            continue
        if mask == "0.0.0.0":
            continue
        try:
            out.append(ipaddress.ip_network(f"{destination}/{mask}", strict=False))  # type: ignore[arg-type]
        except ValueError:
            continue
    return out


def _le_hex_ip(text: str) -> str:
    value = int(text, 16)
    return ".".join(str((value >> shift) & 0xFF) for shift in (0, 8, 16, 24))
