"""Host side of published ports: check that requested host ports are free and pick free ports
for `-p CTRPORT` / `-P`, so a conflict fails before anything is started. Stdlib only.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import (
    TYPE_CHECKING,
    Any,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from podpy.errors import PodpyError
from podpy.userns import in_initial_userns

if TYPE_CHECKING:
    from podpy.engine.network_opts import PortMapping

# A published port as a PortMapping or its JSON form (what the monitor reads from its spec);
# the monitor-side code takes both so it need not import the parser (dataclasses, ipaddress).
PortLike = Union["PortMapping", Mapping[str, Any]]

# Go's wording for the errnos a bind can fail with (what podman users see).
_BIND_ERRORS = {
    errno.EADDRINUSE: "address already in use",
    errno.EACCES: "permission denied",
    errno.EADDRNOTAVAIL: "cannot assign requested address",
}
_SOCKET_TYPES = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


class PortInUse(PodpyError):
    """A host port cannot be bound (taken, privileged, or an address this host lacks)."""

    def __init__(self, message: str, port: int, protocol: str, hint: Optional[str] = None):
        super().__init__(message, hint=hint)
        self.port = port
        self.protocol = protocol


def port_fields(port: PortLike) -> Tuple[str, int, int, str]:
    """(host_ip, host_port, container_port, protocol) of a PortMapping or its dict form."""
    if isinstance(port, Mapping):
        return (
            str(port.get("host_ip", "")),
            int(port.get("host_port", 0)),
            int(port["container_port"]),
            str(port.get("protocol", "tcp")),
        )
    return port.host_ip, port.host_port, port.container_port, port.protocol


def bind_error(
    protocol: str, host_ip: str, port: int, err: OSError, rootless: Optional[bool] = None
) -> PortInUse:
    """The one-line error podman prints when a published port cannot be bound."""
    if rootless is None:
        rootless = os.geteuid() != 0 or not in_initial_userns()
    reason = _BIND_ERRORS.get(err.errno or 0, err.strerror or str(err))
    ip = host_ip or "0.0.0.0"
    addr = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    prefix = "rootlessport " if rootless else ""
    message = f"{prefix}listen {protocol} {addr}: bind: {reason}"
    if err.errno == errno.EACCES:
        hint = (
            f"ports below 1024 need privileges: publish on a higher host port (-p 8080:...), "
            f"or lower net.ipv4.ip_unprivileged_port_start to {port}"
        )
    elif err.errno == errno.EADDRNOTAVAIL:
        hint = f"{host_ip} is not an address of this host: use one it has, or omit it"
    else:
        hint = f"choose another host port, or stop whatever listens on {protocol} port {port}"
    return PortInUse(message, port, protocol, hint=hint)


def _family(host_ip: str) -> int:
    return socket.AF_INET6 if ":" in host_ip else socket.AF_INET


def _bind_probe(protocol: str, host_ip: str, port: int) -> int:
    """Bind (and for TCP listen) the way a forwarder would; returns the bound port."""
    sock = socket.socket(_family(host_ip), _SOCKET_TYPES[protocol])
    try:
        if protocol == "tcp":
            # Forwarders set SO_REUSEADDR, so TIME_WAIT leftovers must not count as "in use";
            # a listening socket still makes bind fail.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or "0.0.0.0", port))
        if protocol == "tcp":
            sock.listen(1)
        return sock.getsockname()[1]
    finally:
        sock.close()


def check_port_free(
    protocol: str, host_ip: str, port: int, rootless: Optional[bool] = None
) -> None:
    """Raise PortInUse if `protocol` port `port` on `host_ip` cannot be bound now."""
    if protocol not in _SOCKET_TYPES:
        return  # sctp: no portable probe; the forwarder reports it
    try:
        _bind_probe(protocol, host_ip, port)
    except OSError as err:
        raise bind_error(protocol, host_ip, port, err, rootless) from None


def find_free_port(
    protocol: str, host_ip: str = "", exclude: Iterable[int] = (), attempts: int = 50
) -> int:
    """A port the kernel considers free for `protocol` on `host_ip` (bind to port 0)."""
    excluded = set(exclude)
    proto = protocol if protocol in _SOCKET_TYPES else "tcp"
    for _ in range(attempts):
        try:
            port = _bind_probe(proto, host_ip, 0)
        except OSError as err:
            raise bind_error(proto, host_ip, 0, err) from None
        if port not in excluded:
            return port
    raise PodpyError(f"could not find a free {protocol} host port", hint="free some ports")


def resolve_host_ports(
    ports: Sequence[PortLike], rootless: Optional[bool] = None
) -> List[PortMapping]:
    """Check every fixed host port is free and give every host_port 0 a free port.

    Returns new mappings; raises PortInUse naming the first port that cannot be bound.
    """
    from podpy.engine.network_opts import PortMapping

    fields = [port_fields(p) for p in ports]
    taken: Set[Tuple[str, int]] = {(proto, hport) for _, hport, _, proto in fields if hport}
    resolved: List[PortMapping] = []
    for host_ip, host_port, container_port, protocol in fields:
        if host_port:
            check_port_free(protocol, host_ip, host_port, rootless)
        else:
            used = {port for proto, port in taken if proto == protocol}
            host_port = find_free_port(protocol, host_ip, used)
            taken.add((protocol, host_port))
        resolved.append(PortMapping(host_ip, host_port, container_port, protocol))
    return resolved
