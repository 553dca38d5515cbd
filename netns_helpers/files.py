"""Content of a container's /etc/hosts, /etc/resolv.conf and /etc/hostname, as podman writes
them. The *_content functions are pure; the read_host_* helpers read this host's files.
"""

from __future__ import annotations

from podpy.engine.network_opts import MODE_HOST, MODE_NONE, MODE_PASTA, MODE_SLIRP, NetworkSpec
from podpy.record import field, record

TYPE_CHECKING = False  # typing costs ~5 ms of every `podpy run`
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

    HostEntry = Tuple[str, List[str]]  # (ip, names)

HOST_HOSTS = "/etc/hosts"
HOST_RESOLV = "/etc/resolv.conf"
# systemd-resolved's stub (127.0.0.53) is useless inside a container: podman reads the real
# upstream list from here instead.
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"
HOST_CONTAINERS_INTERNAL = "host.containers.internal"
# Used when the host lists no usable nameserver (containers/common's defaults).
FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")
FALLBACK_DNS6 = ("2001:4860:4860::8888", "2001:4860:4860::8844")
DEFAULT_LOCALHOST = (
    ("127.0.0.1", ("localhost", "localhost.localdomain", "localhost4", "localhost4.localdomain4")),
    ("::1", ("localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6")),
)


# --- /etc/hosts ----------------------------------------------------------------------------------


def parse_hosts(text: str) -> List[HostEntry]:
    """Entries of a hosts file, comments and malformed lines dropped."""
    entries: List[HostEntry] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2:
            entries.append((fields[0], fields[1:]))
    return entries


def hosts_content(
    *,
    hostname: str,
    container_name: str = "",
    container_ips: Sequence[str] = (),
    host_ip: Optional[str] = None,
    add_hosts: Sequence[Tuple[str, str]] = (),
    base_hosts: str = "",
    host_network: bool = False,
) -> str:
    """The container's /etc/hosts, in podman 4's order (checked against podman 4.3.1):

    --add-host entries, the base file's entries (the host's /etc/hosts, podman's
    `base_hosts_file` default), the default localhost lines if the base had none,
    `host.containers.internal` -> host_ip, then the container's own line
    (`IP hostname name`; 127.0.0.1 when it has no address, none with --network host).
    """
    entries: List[HostEntry] = [(ip, [name]) for name, ip in add_hosts]
    base = parse_hosts(base_hosts)
    entries += base
    if not any("localhost" in names for _, names in base):
        entries += [(ip, list(names)) for ip, names in DEFAULT_LOCALHOST]
    if host_ip:
        entries.append((host_ip, [HOST_CONTAINERS_INTERNAL]))
    if not host_network:
        names = [n for n in (hostname, container_name) if n]
        names = sorted(set(names), key=names.index)
        if names:
            for ip in container_ips or ["127.0.0.1"]:
                entries.append((ip, names))
    return "".join(f"{ip}\t{' '.join(names)}\n" for ip, names in entries)


def hostname_content(hostname: str) -> str:
    return f"{hostname}\n"


# --- /etc/resolv.conf ----------------------------------------------------------------------------


@record
class ResolvConf:
    nameservers: List[str] = field(default_factory=list)
    search: List[str] = field(default_factory=list)
    options: List[str] = field(default_factory=list)


def parse_resolv_conf(text: str) -> ResolvConf:
    conf = ResolvConf()
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            conf.nameservers.append(values[0])
        elif key in ("search", "domain"):
            conf.search = list(values)  # the last search/domain line wins (resolv.conf(5))
        elif key == "options":
            conf.options += values
    return conf


def _is_loopback(ip: str) -> bool:
    parts = ip.split(".")
    if len(parts) == 4 and all(
        p.isdigit() and p.isascii() and (p == "0" or p[0] != "0") and int(p) <= 255 for p in parts
    ):
        return parts[0] == "127"  # a plain dotted quad (the host's address, usually)
    import ipaddress  # not at import time: `run --network none` needs no more than the above

    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return True  # unparsable: useless inside the container too


def _is_ipv6(ip: str) -> bool:
    return ":" in ip


def resolv_conf_content(
    *,
    host_resolv: str,
    dns_servers: Sequence[str] = (),
    dns_search: Sequence[str] = (),
    dns_options: Sequence[str] = (),
    slirp_dns: Optional[str] = None,
    ipv6: bool = False,
    host_network: bool = False,
) -> str:
    """The container's /etc/resolv.conf.

    --dns replaces every nameserver; otherwise the host's nameservers minus loopback ones
    (unreachable from the container's namespace) and minus IPv6 ones without IPv6, with
    slirp4netns's forwarder (`slirp_dns`, 10.0.2.3) first. --dns-search replaces the host's
    search list ("." clears it); --dns-option replaces the host's options. With the host's
    network and no overrides the host's file is used as is.
    """
    if host_network and not (dns_servers or dns_search or dns_options):
        return host_resolv if host_resolv.endswith("\n") or not host_resolv else host_resolv + "\n"
    host = parse_resolv_conf(host_resolv)
    if dns_servers:
        servers = list(dns_servers)
    elif host_network:
        servers = host.nameservers
    else:
        servers = [s for s in host.nameservers if not _is_loopback(s) and (ipv6 or not _is_ipv6(s))]
        if slirp_dns:
            servers = [slirp_dns] + [s for s in servers if s != slirp_dns]
        elif not servers:
            servers = list(FALLBACK_DNS) + (list(FALLBACK_DNS6) if ipv6 else [])
    if list(dns_search) == ["."]:
        search: List[str] = []
    elif dns_search:
        search = list(dns_search)
    else:
        search = host.search
    options = list(dns_options) if dns_options else host.options
    lines = []
    if search:
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "".join(line + "\n" for line in lines)


# --- reading the host ----------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def read_host_hosts(path: str = HOST_HOSTS) -> str:
    return _read(path)


def read_host_resolv(path: str = HOST_RESOLV) -> str:
    """The host's resolv.conf; if it only points at systemd-resolved's stub, the upstream one."""
    text = _read(path)
    servers = parse_resolv_conf(text).nameservers
    if servers and all(s.startswith("127.0.0.53") for s in servers):
        upstream = _read(RESOLVED_UPSTREAM)
        if parse_resolv_conf(upstream).nameservers:
            return upstream
    return text


def host_primary_ip() -> Optional[str]:
    """The host's source address for outbound traffic (what podman 4 puts on
    host.containers.internal); None without a default route. Sends no packet."""
    # The C module under `socket`: socket.py builds four IntEnums at import (~4 ms of every
    # `podpy run`, which computes these files) for nothing used here.
    import _socket

    for family, probe in ((_socket.AF_INET, "198.51.100.1"), (_socket.AF_INET6, "2001:db8::1")):
        sock = _socket.socket(family, _socket.SOCK_DGRAM)
        try:
            sock.connect((probe, 9))
            address = sock.getsockname()[0]
        except OSError:
            continue
        finally:
            sock.close()
        if not _is_loopback(address):
            return address
    return None


# --- all three for a NetworkSpec -----------------------------------------------------------------


def container_etc_files(
    spec: NetworkSpec,
    *,
    hostname: str,
    container_name: str = "",
    container_ips: Sequence[str] = (),
    host_hosts: Optional[str] = None,
    host_resolv: Optional[str] = None,
    host_ip: Optional[str] = None,
) -> Dict[str, Optional[str]]:
    """{"hosts", "resolv.conf", "hostname"} for a container with this network spec; a None
    value means "do not provide the file" (resolv.conf with --network none, as podman).

    For slirp4netns the container's address and DNS come from the spec's options; other
    modes pass container_ips (bridge) or get 127.0.0.1. container:/ns: modes are the
    caller's business (podman reuses the other container's files for container:).
    """
    host_hosts = read_host_hosts() if host_hosts is None else host_hosts
    host_resolv = read_host_resolv() if host_resolv is None else host_resolv
    host_ip = host_primary_ip() if host_ip is None else host_ip
    host_network = spec.mode == MODE_HOST
    ips = list(container_ips)
    slirp_dns = None
    ipv6 = bool(spec.options.get("enable_ipv6"))
    if spec.mode == MODE_SLIRP:
        from netns_helpers.slirp import IPV6_DNS, SlirpConfig

        config = SlirpConfig.from_options(spec.options)
        ips = ips or [config.guest_address]
        slirp_dns = config.dns_address
        dns_extra = [IPV6_DNS] if ipv6 else []
    elif spec.mode == MODE_PASTA:
        from netns_helpers.pasta import DNS_FORWARD

        slirp_dns = DNS_FORWARD
        ipv6 = True
        dns_extra = []
    else:
        dns_extra = []
    if spec.mode == MODE_PASTA and not ips:
        ips = [host_ip] if host_ip else []  # pasta copies the host's address into the netns
    resolv: Optional[str] = None
    if spec.mode != MODE_NONE:
        resolv = resolv_conf_content(
            host_resolv=host_resolv,
            dns_servers=spec.dns_servers,
            dns_search=spec.dns_search,
            dns_options=spec.dns_options,
            slirp_dns=slirp_dns,
            ipv6=ipv6,
            host_network=host_network,
        )
        if dns_extra and not spec.dns_servers:
            resolv = resolv.replace(
                f"nameserver {slirp_dns}\n",
                f"nameserver {slirp_dns}\n" + "".join(f"nameserver {s}\n" for s in dns_extra),
                1,
            )
    return {
        "hosts": hosts_content(
            hostname=hostname,
            container_name=container_name,
            container_ips=ips,
            host_ip=host_ip,
            add_hosts=spec.add_hosts,
            base_hosts=host_hosts,
            host_network=host_network,
        ),
        "resolv.conf": resolv,
        "hostname": hostname_content(hostname),
    }
