"""Parse the network flags of `run`/`create` (--network, -p, -P, --add-host, --dns*, --mac-address)
into a JSON-serialisable NetworkSpec, with podman's validation messages. Pure stdlib.
"""

from __future__ import annotations

import re

from podpy.errors import PodpyError
from podpy.record import asdict, field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# Network modes a NetworkSpec can carry.
MODE_NONE = "none"
MODE_HOST = "host"
MODE_SLIRP = "slirp4netns"
MODE_PASTA = "pasta"
MODE_BRIDGE = "bridge"  # one or more named networks (podman's default network is "podman")
MODE_CONTAINER = "container"
MODE_NS = "ns"

DEFAULT_NETWORK_NAME = "podman"
PROTOCOLS = ("tcp", "udp", "sctp")
# slirp4netns refuses anything above this (its --help: max=65521).
SLIRP_MAX_MTU = 65521
SLIRP_PORT_HANDLERS = ("slirp4netns", "rootlesskit")
SLIRP_BOOL_OPTIONS = ("allow_host_loopback", "enable_ipv6")
# Modes in which published ports make no sense: podman drops them with this warning.
PORTLESS_MODES = (MODE_NONE, MODE_HOST, MODE_CONTAINER)
PORTS_DISCARDED_WARNING = (
    "Port mappings have been discarded as one of the Host, Container, Pod, and None "
    "network modes are in use"
)
# Patterns compiled by re.match on first use: most runs need neither.
_ATOI_RE = r"^[+-]?[0-9]+$"
_MAC_RE = r"^[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}$"


class NetworkOptionError(PodpyError):
    """A network flag could not be parsed; the message is podman's for the same input."""


@record
class PortMapping:
    """One published port: host_port 0 means "pick a free host port at start"."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PortMapping:
        return cls(
            host_ip=str(data.get("host_ip", "")),
            host_port=int(data.get("host_port", 0)),
            container_port=int(data["container_port"]),
            protocol=str(data.get("protocol", "tcp")),
        )

    def __str__(self) -> str:
        """podman port's format: `80/tcp -> 0.0.0.0:8080`."""
        return (
            f"{self.container_port}/{self.protocol} -> "
            f"{format_host_addr(self.host_ip or '0.0.0.0')}:{self.host_port}"
        )


@record
class NetworkSpec:
    """What the user asked for, network-wise; the monitor receives it as JSON."""

    mode: str
    # slirp4netns/pasta/bridge options; for container/ns modes {"target": NAME_OR_PATH}.
    options: Dict[str, Any] = field(default_factory=dict)
    networks: List[str] = field(default_factory=list)  # bridge mode: named networks
    ports: List[PortMapping] = field(default_factory=list)
    dns_servers: List[str] = field(default_factory=list)
    dns_search: List[str] = field(default_factory=list)
    dns_options: List[str] = field(default_factory=list)
    add_hosts: List[Tuple[str, str]] = field(default_factory=list)  # (hostname, ip)
    mac_address: Optional[str] = None
    warnings: List[str] = field(default_factory=list)  # for the CLI to print on stderr

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["add_hosts"] = [list(pair) for pair in self.add_hosts]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkSpec:
        return cls(
            mode=str(data["mode"]),
            options=dict(data.get("options") or {}),
            networks=list(data.get("networks") or []),
            ports=[PortMapping.from_dict(p) for p in data.get("ports") or []],
            dns_servers=list(data.get("dns_servers") or []),
            dns_search=list(data.get("dns_search") or []),
            dns_options=list(data.get("dns_options") or []),
            add_hosts=[(str(h), str(ip)) for h, ip in data.get("add_hosts") or []],
            mac_address=data.get("mac_address"),
            warnings=list(data.get("warnings") or []),
        )


def format_host_addr(ip: str) -> str:
    """An address as it appears before `:PORT` (IPv6 in brackets)."""
    return f"[{ip}]" if ":" in ip else ip


# --- -p / --publish ------------------------------------------------------------------------------


def _parse_port(text: str) -> int:
    # Go's strconv.Atoi: optional sign and ASCII digits only (Python's int() also takes
    # spaces and underscores).
    if not re.match(_ATOI_RE, text):
        raise NetworkOptionError(
            f'invalid port number: strconv.Atoi: parsing "{text}": invalid syntax'
        )
    number = int(text, 10)
    if number < 1 or number > 65535:
        raise NetworkOptionError(
            f"port numbers must be between 1 and 65535 (inclusive), got {number}"
        )
    return number


def _parse_range(text: str) -> Tuple[int, int]:
    """`8080` -> (8080, 1); `8080-8082` -> (8080, 3)."""
    parts = text.split("-")
    if len(parts) > 2:
        raise NetworkOptionError(
            "invalid port format - port ranges are formatted as startPort-stopPort"
        )
    if parts[0] == "":
        raise NetworkOptionError("port numbers cannot be negative")
    start = _parse_port(parts[0])
    if len(parts) == 1:
        return start, 1
    if parts[1] == "":
        raise NetworkOptionError("must provide ending number for port range")
    end = _parse_port(parts[1])
    if end <= start:
        raise NetworkOptionError(
            f"the end port of a range must be higher than the start port - "
            f"{end} is not higher than {start}"
        )
    return start, end - start + 1


def _prefixed(prefix: str, err: NetworkOptionError) -> NetworkOptionError:
    return NetworkOptionError(f"{prefix}: {err.message}", hint=err.hint)


def parse_publish(value: str) -> List[PortMapping]:
    """One `-p [IP:][HOSTPORT:]CTRPORT[/PROTO[,PROTO]]` value -> one mapping per port and protocol.

    Ranges are expanded (`8080-8081:80-81` gives two mappings); an empty or absent host port
    is 0, which ports.resolve_host_ports() later replaces with a free port.
    """
    try:
        return _parse_publish(value)
    except NetworkOptionError as err:
        if err.hint is None:
            err.hint = "use -p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], e.g. -p 8080:80"
        raise


def _parse_publish(value: str) -> List[PortMapping]:
    split_proto = value.split("/")
    if len(split_proto) > 2:
        raise NetworkOptionError("invalid port format - protocol can only be specified once")
    protocols = ["tcp"]
    if len(split_proto) == 2:
        if split_proto[1] == "":
            raise NetworkOptionError("must provide a non-empty protocol to publish")
        protocols = []
        for proto in split_proto[1].split(","):
            proto = proto.lower()
            if proto not in PROTOCOLS:
                raise NetworkOptionError(f'unrecognized protocol "{proto}" in port mapping')
            if proto not in protocols:
                protocols.append(proto)
    remainder = split_proto[0]
    host_ip: Optional[str] = None
    have_v6 = False
    split_v6 = remainder.split("]")
    if len(split_v6) == 2:
        have_v6 = True
        if not split_v6[0].startswith("["):
            raise NetworkOptionError("invalid port format - IPv6 addresses must be enclosed by []")
        if not split_v6[1].startswith(":"):
            raise NetworkOptionError(
                "invalid port format - IPv6 address must be followed by a colon (':')"
            )
        host_ip = split_v6[0][1:]
        remainder = split_v6[1][1:]
    elif len(split_v6) > 2:
        raise NetworkOptionError(
            "invalid port format - at most one IPv6 address can be specified in a --publish"
        )
    parts = remainder.split(":")
    host_port_text: Optional[str] = None
    if len(parts) == 1:
        if have_v6:
            raise NetworkOptionError(
                "invalid port format - must provide host and destination port if specifying an IP"
            )
        ctr_text = parts[0]
    elif len(parts) == 2:
        host_port_text, ctr_text = parts
    elif len(parts) == 3 and not have_v6:
        host_ip, host_port_text, ctr_text = parts
    elif len(parts) == 3:
        raise NetworkOptionError(
            "invalid port format - when v6 address specified, must be [ipv6]:hostPort:ctrPort"
        )
    else:
        raise NetworkOptionError(
            "invalid port format - format is [[hostIP:]hostPort:]containerPort"
        )

    if ctr_text == "":
        raise NetworkOptionError("must provide a non-empty container port to publish")
    try:
        ctr_start, ctr_len = _parse_range(ctr_text)
    except NetworkOptionError as err:
        raise _prefixed("parsing container port", err) from None
    ip_text = ""
    if host_ip is not None:
        if host_ip == "":
            raise NetworkOptionError("must provide a non-empty container host IP to publish")
        if host_ip != "0.0.0.0":
            import ipaddress  # lazily: `run --network none` never needs it (~2 ms)

            try:
                ip_text = str(ipaddress.ip_address(host_ip))
            except ValueError:
                raise NetworkOptionError(f'cannot parse "{host_ip}" as an IP address') from None
    host_start = 0
    if host_port_text:
        try:
            host_start, host_len = _parse_range(host_port_text)
        except NetworkOptionError as err:
            raise _prefixed("parsing host port", err) from None
        if host_len != ctr_len:
            raise NetworkOptionError(
                f"host and container port ranges have different lengths: {host_len} vs {ctr_len}"
            )
    mappings = []
    for proto in protocols:
        for offset in range(ctr_len):
            host_port = host_start + offset if host_start else 0
            mappings.append(PortMapping(ip_text, host_port, ctr_start + offset, proto))
    return mappings


def parse_exposed(exposed: Iterable[str]) -> List[Tuple[int, str]]:
    """Image config `ExposedPorts` keys / `--expose` values (`80`, `80/udp`, `8000-8002/tcp`)."""
    result: List[Tuple[int, str]] = []
    for item in exposed:
        port_text, _, proto = str(item).partition("/")
        proto = (proto or "tcp").lower()
        if proto not in PROTOCOLS:
            raise NetworkOptionError(f'invalid protocol "{proto}" in exposed port "{item}"')
        try:
            start, length = _parse_range(port_text)
        except NetworkOptionError as err:
            raise _prefixed(f'invalid exposed port "{item}"', err) from None
        for port in range(start, start + length):
            if (port, proto) not in result:
                result.append((port, proto))
    return result


def publish_all(exposed: Iterable[str], already: Sequence[PortMapping] = ()) -> List[PortMapping]:
    """`-P`: every exposed port not already published gets a random host port."""
    taken = {(m.container_port, m.protocol) for m in already}
    return [
        PortMapping("", 0, port, proto)
        for port, proto in parse_exposed(exposed)
        if (port, proto) not in taken
    ]


def check_port_conflicts(ports: Sequence[PortMapping]) -> None:
    """Two mappings may not claim the same host port and protocol on overlapping addresses."""
    seen: Dict[Tuple[int, str], List[str]] = {}
    for mapping in ports:
        if not mapping.host_port:
            continue
        key = (mapping.host_port, mapping.protocol)
        ips = seen.setdefault(key, [])
        wildcard = mapping.host_ip in ("", "0.0.0.0", "::")
        if mapping.host_ip in ips or (ips and (wildcard or "" in ips)):
            raise NetworkOptionError(
                f"conflicting port mappings for host port {mapping.host_port} "
                f"(protocol {mapping.protocol})",
                hint="publish each host port only once",
            )
        ips.append("" if wildcard else mapping.host_ip)


# --- --network -----------------------------------------------------------------------------------


def _slirp_options(text: str) -> Dict[str, Any]:
    options: Dict[str, Any] = {}
    for item in [o for o in text.split(",") if o]:
        key, sep, value = item.partition("=")
        if key in SLIRP_BOOL_OPTIONS and sep:
            if value not in ("true", "false"):
                raise NetworkOptionError(f'invalid value of {key} for slirp4netns: "{value}"')
            options[key] = value == "true"
        elif key == "mtu" and sep:
            try:
                mtu = int(value, 10)
            except ValueError:
                mtu = 0
            if mtu < 1:
                raise NetworkOptionError(f'invalid mtu "{value}"')
            if mtu > SLIRP_MAX_MTU:
                raise NetworkOptionError(
                    f'invalid mtu "{value}"', hint=f"slirp4netns allows at most {SLIRP_MAX_MTU}"
                )
            options["mtu"] = mtu
        elif key == "cidr" and sep:
            import ipaddress

            try:
                network = ipaddress.IPv4Network(value, strict=True)
            except ValueError:
                raise NetworkOptionError(
                    f'invalid cidr "{value}"', hint="use a network address like 10.0.2.0/24"
                ) from None
            if network.prefixlen > 25:
                raise NetworkOptionError(
                    f'invalid cidr "{value}"', hint="slirp4netns needs a /25 or larger network"
                )
            options["cidr"] = str(network)
        elif key == "outbound_addr" and sep:
            options["outbound_addr"] = _outbound(key, value, 4)
        elif key == "outbound_addr6" and sep:
            options["outbound_addr6"] = _outbound(key, value, 6)
        elif key == "port_handler" and sep:
            if value not in SLIRP_PORT_HANDLERS:
                raise NetworkOptionError(f'unknown port_handler for slirp4netns: "{value}"')
            options["port_handler"] = value
        else:
            raise NetworkOptionError(
                f'unknown option for slirp4netns: "{item}"',
                hint="known options: allow_host_loopback, cidr, enable_ipv6, mtu, "
                "outbound_addr, outbound_addr6, port_handler",
            )
    return options


def _outbound(key: str, value: str, version: int) -> str:
    import ipaddress

    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None or address.version != version:
        sep = ":" if version == 6 else ""
        kind = "IPv6" if version == 6 else "IPv4"
        raise NetworkOptionError(
            f'invalid {key}{sep} "{value}"', hint=f"{key} takes an {kind} address of this host"
        )
    return str(address)


def parse_network(value: Optional[str], rootless: bool) -> Tuple[str, Dict[str, Any], List[str]]:
    """`--network VALUE` -> (mode, options, networks). None means the default for the identity."""
    if value is None or value == "" or value == "default":
        value = MODE_SLIRP if rootless else MODE_BRIDGE
    name, sep, rest = value.partition(":")
    if name == "private":
        name = MODE_SLIRP if rootless else MODE_BRIDGE
    if name == MODE_SLIRP:
        return MODE_SLIRP, _slirp_options(rest), []
    if name == MODE_PASTA:
        args = [a for a in rest.split(",") if a] if rest else []
        return MODE_PASTA, {"args": args}, []
    if name in (MODE_NONE, MODE_HOST):
        if rest:
            raise NetworkOptionError(
                f"invalid option for network {name}: unknown bridge network option: {rest}"
            )
        return name, {}, []
    if name == MODE_CONTAINER:
        if not rest:
            raise NetworkOptionError(
                "invalid config provided: namespace mode container requires a value",
                hint="use --network container:NAME",
            )
        return MODE_CONTAINER, {"target": rest}, []
    if name == MODE_NS:
        if not rest:
            raise NetworkOptionError(
                "invalid config provided: namespace mode path requires a value",
                hint="use --network ns:/run/netns/NAME",
            )
        if not rest.startswith("/"):
            raise NetworkOptionError(
                f'invalid config provided: namespace path "{rest}" must be absolute',
                hint="use --network ns:/run/netns/NAME",
            )
        return MODE_NS, {"path": rest}, []
    if name == MODE_BRIDGE:
        return MODE_BRIDGE, _bridge_options(rest), [DEFAULT_NETWORK_NAME]
    # Anything else names user-defined networks: `net1,net2` or `net1:ip=...,alias=...`.
    if sep:
        return MODE_BRIDGE, _bridge_options(rest), [name]
    networks = [n for n in value.split(",") if n]
    return MODE_BRIDGE, {}, networks


def _bridge_options(text: str) -> Dict[str, Any]:
    options: Dict[str, Any] = {}
    for item in [o for o in text.split(",") if o]:
        key, sep, val = item.partition("=")
        if not sep or key not in ("ip", "ip6", "mac", "alias", "interface_name"):
            raise NetworkOptionError(f"unknown bridge network option: {item}")
        if key == "alias":
            options.setdefault("aliases", []).append(val)
        else:
            options[key] = val
    return options


# --- DNS, hosts, MAC -----------------------------------------------------------------------------


def parse_add_host(value: str) -> Tuple[str, str]:
    """`--add-host NAME:IP` (IPv6 allowed unbracketed, as in podman: `h:::1`)."""
    name, sep, ip = value.partition(":")
    if not sep or not name or not ip:
        raise NetworkOptionError(
            f'bad format for add-host: "{value}"', hint="use --add-host HOSTNAME:IP"
        )
    import ipaddress

    try:
        ip = str(ipaddress.ip_address(ip))
    except ValueError:
        raise NetworkOptionError(
            f'invalid IP address in add-host: "{ip}"', hint="use --add-host HOSTNAME:IP"
        ) from None
    return name, ip


def parse_dns_server(value: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise NetworkOptionError(
            f"{value} is not an ip address", hint="--dns takes an IPv4 or IPv6 address"
        ) from None


def parse_mac_address(value: str) -> str:
    if not re.match(_MAC_RE, value):
        raise NetworkOptionError(
            f"address {value}: invalid MAC address",
            hint="use six hex pairs, e.g. 92:d0:c6:0a:29:33",
        )
    mac = value.replace("-", ":").lower()
    if int(mac[:2], 16) & 1:
        raise NetworkOptionError(
            f"address {value}: a multicast MAC address cannot be assigned",
            hint="the first byte must be even",
        )
    return mac


def parse_network_spec(
    network: Optional[str] = None,
    *,
    rootless: bool,
    publish: Sequence[str] = (),
    publish_all_ports: bool = False,
    exposed: Iterable[str] = (),
    add_hosts: Sequence[str] = (),
    dns: Sequence[str] = (),
    dns_search: Sequence[str] = (),
    dns_options: Sequence[str] = (),
    mac_address: Optional[str] = None,
    ip: Optional[str] = None,
    aliases: Sequence[str] = (),
    expose: Sequence[str] = (),
) -> NetworkSpec:
    """Everything network-related from `run`/`create` flags; `exposed` = image ExposedPorts keys,
    `expose` = --expose values (both only used with -P, both validated always, as podman)."""
    mode, options, networks = parse_network(network, rootless)
    parse_exposed(expose)
    exposed = [*exposed, *expose]
    for flag, given in (
        ("--network-alias", bool(aliases)),
        ("--ip", ip is not None),
        ("--mac-address", mac_address is not None),
    ):
        if given and mode != MODE_BRIDGE:
            raise NetworkOptionError(
                f"{flag} can only be set when the network mode is bridge: invalid argument",
                hint=f"drop {flag}, or use a bridge network (--network NAME)",
            )
    if ip is not None:
        if len(networks) > 1:
            raise NetworkOptionError(
                "--ip can only be set for a single network: invalid argument",
                hint="use --network NAME:ip=ADDR for each network instead",
            )
        import ipaddress

        try:
            options["ip"] = str(ipaddress.ip_address(ip))
        except ValueError:
            raise NetworkOptionError(
                f'"{ip}" is not an ip address', hint="--ip takes an IPv4 address"
            ) from None
    if aliases:
        options["aliases"] = list(options.get("aliases") or []) + list(aliases)
    if mac_address is not None:
        options["mac"] = parse_mac_address(mac_address)
    elif options.get("mac"):
        options["mac"] = parse_mac_address(options["mac"])
    ports: List[PortMapping] = []
    for value in publish:
        ports.extend(parse_publish(value))
    if publish_all_ports:
        ports.extend(publish_all(exposed, ports))
    check_port_conflicts(ports)
    spec = NetworkSpec(mode=mode, options=options, networks=networks)
    if ports and mode in PORTLESS_MODES:
        spec.warnings.append(PORTS_DISCARDED_WARNING)
        ports = []
    spec.ports = ports
    spec.dns_servers = [parse_dns_server(d) for d in dns]
    for domain in dns_search:
        if not domain or any(c.isspace() for c in domain):
            raise NetworkOptionError(f'invalid --dns-search domain "{domain}"')
    spec.dns_search = list(dns_search)
    spec.dns_options = list(dns_options)
    spec.add_hosts = [parse_add_host(h) for h in add_hosts]
    if mode == MODE_NONE:
        for flag, given in (("dns", dns), ("dns-search", dns_search), ("dns-option", dns_options)):
            if given:
                raise NetworkOptionError(
                    f"conflicting options: {flag} and the network mode: none",
                    hint=f"drop --{flag} or use another --network",
                )
    if options.get("mac"):
        spec.mac_address = options["mac"]
    return spec
