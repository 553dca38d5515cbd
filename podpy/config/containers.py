"""containers.conf(5): which files are read, in what order, and the typed settings podpy uses."""

from __future__ import annotations

import os
import re

from podpy.config._toml import LazyRegex, MergedToml, Section, drop_in_files, read_toml
from podpy.errors import ConfigError
from podpy.record import asdict, field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple

# podman's defaults (containers/common pkg/config/default.go) where podpy follows them.
DEFAULT_SUBNET = "10.88.0.0/16"
DEFAULT_SHM_SIZE = "65536k"
DEFAULT_UMASK = "0022"
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
]
DEFAULT_SYSCTLS = ["net.ipv4.ping_group_range=0 0"]
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"]
DEFAULT_HELPER_BINARIES_DIR = [
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
]
DEFAULT_INIT_PATH = "/usr/libexec/podman/catatonit"
# "podpy" is the built-in OCI runtime; other names are looked up in `runtimes`.
BUILTIN_RUNTIME = "podpy"
DEFAULT_RUNTIMES: Dict[str, List[str]] = {
    "runc": [
        "/usr/bin/runc",
        "/usr/sbin/runc",
        "/usr/local/bin/runc",
        "/usr/local/sbin/runc",
        "/sbin/runc",
        "/bin/runc",
        "/usr/lib/cri-o-runc/sbin/runc",
        "/run/current-system/sw/bin/runc",
    ],
    "crun": [
        "/usr/bin/crun",
        "/usr/sbin/crun",
        "/usr/local/bin/crun",
        "/usr/local/sbin/crun",
        "/sbin/crun",
        "/bin/crun",
        "/run/current-system/sw/bin/crun",
    ],
}

LOG_DRIVERS = ("k8s-file", "json-file", "journald", "none", "passthrough", "passthrough-tty")
PULL_POLICIES = {
    "always": "always",
    "missing": "missing",
    "ifmissing": "missing",
    "never": "never",
    "newer": "newer",
    "ifnewer": "newer",
}
_SHM_SIZE = LazyRegex(r"^\d+(\.\d+)?[bkmg]?b?$", re.I)
_ULIMIT = LazyRegex(r"^[a-z]+=(-?\d+|unlimited)(:(-?\d+|unlimited))?$")
_UMASK = LazyRegex(r"^[0-7]{1,4}$")


def _systemd_running() -> bool:
    # The same probe podman uses to pick systemd/journald over cgroupfs/file defaults.
    return os.path.isdir("/run/systemd/system")


@record(frozen=True)
class ContainersConfig:
    """The containers.conf settings podpy reads, merged over podman's defaults."""

    # [containers]
    default_capabilities: List[str] = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    default_sysctls: Dict[str, str] = field(
        default_factory=lambda: {"net.ipv4.ping_group_range": "0 0"}
    )
    default_ulimits: List[str] = field(default_factory=list)
    env: List[str] = field(default_factory=lambda: list(DEFAULT_ENV))
    dns_servers: List[str] = field(default_factory=list)
    log_driver: str = "k8s-file"
    log_size_max: int = -1
    pids_limit: int = 2048
    shm_size: str = DEFAULT_SHM_SIZE
    tz: str = ""
    umask: str = DEFAULT_UMASK
    init_path: str = DEFAULT_INIT_PATH
    # Empty: podpy's built-in default seccomp profile.
    seccomp_profile: str = ""
    no_hosts: bool = False
    netns: str = "private"
    userns: str = "host"
    volumes: List[str] = field(default_factory=list)
    # [engine]
    runtime: str = BUILTIN_RUNTIME
    runtimes: Dict[str, List[str]] = field(
        default_factory=lambda: {name: list(paths) for name, paths in DEFAULT_RUNTIMES.items()}
    )
    cgroup_manager: str = "cgroupfs"
    events_logger: str = "file"
    helper_binaries_dir: List[str] = field(
        default_factory=lambda: list(DEFAULT_HELPER_BINARIES_DIR)
    )
    image_default_transport: str = "docker://"
    pull_policy: str = "missing"
    stop_timeout: int = 10
    network_cmd_path: str = ""
    network_cmd_options: List[str] = field(default_factory=list)
    # None: podpy's own locations (see podpy.paths), not podman's /run/libpod or graphroot.
    tmp_dir: Optional[str] = None
    volume_path: Optional[str] = None
    # [network]
    default_network: str = "podman"
    default_subnet: str = DEFAULT_SUBNET
    default_rootless_network_cmd: str = "slirp4netns"

    def runtime_paths(self, name: Optional[str] = None) -> List[str]:
        """Candidate binaries for an OCI runtime name (empty for podpy's built-in one)."""
        return list(self.runtimes.get(name or self.runtime, []))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def containers_conf_files(
    env: Mapping[str, str], rootless: bool, config_home: str, sysroot: str
) -> List[str]:
    """The files podman would read, lowest precedence first (missing ones included)."""
    explicit = env.get("CONTAINERS_CONF")
    if explicit:
        # podman: CONTAINERS_CONF replaces the whole search path, and must exist.
        if not os.path.exists(explicit):
            raise ConfigError(
                f"CONTAINERS_CONF file {explicit} does not exist",
                hint="point CONTAINERS_CONF at an existing containers.conf, or unset it",
            )
        files = [explicit]
    else:
        bases = [
            sysroot + "/usr/share/containers/containers.conf",
            sysroot + "/etc/containers/containers.conf",
        ]
        if rootless:
            bases.append(os.path.join(config_home, "containers", "containers.conf"))
        files = []
        for base in bases:
            files.append(base)
            files.extend(drop_in_files(base + ".d"))
    override = env.get("CONTAINERS_CONF_OVERRIDE")
    if override:
        # Always read last so it wins over everything, as podman guarantees.
        if not os.path.exists(override):
            raise ConfigError(
                f"CONTAINERS_CONF_OVERRIDE file {override} does not exist",
                hint="point CONTAINERS_CONF_OVERRIDE at an existing file, or unset it",
            )
        files.append(override)
    return files


def read_containers_conf(files: List[str]) -> Tuple[MergedToml, List[str]]:
    """Parse and layer the files; returns the merged document and the files actually read."""
    merged = MergedToml()
    read: List[str] = []
    for path in files:
        document = read_toml(path, "containers.conf")
        if document is None:
            continue
        merged.add(document, path)
        read.append(path)
    return merged, read


def _capability_name(name: str) -> str:
    upper = name.strip().upper()
    return upper if upper.startswith("CAP_") else "CAP_" + upper


def _sysctls(section: Section) -> Dict[str, str]:
    result: Dict[str, str] = {}
    for item in section.strings("default_sysctls", DEFAULT_SYSCTLS):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise section.fail(
                "default_sysctls",
                f'invalid entry "{item}"',
                hint='write sysctls as "name=value", e.g. "net.ipv4.ping_group_range=0 0"',
            )
        result[key.strip()] = value
    return result


def _validated(section: Section, key: str, values: List[str], check, example: str) -> List[str]:
    for item in values:
        if not check(item):
            raise section.fail(key, f'invalid entry "{item}"', hint=f"expected e.g. {example}")
    return values


def _dns_servers(section: Section) -> List[str]:
    servers = section.strings("dns_servers", [])
    if servers:
        import ipaddress

        for server in servers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise section.fail(
                    "dns_servers",
                    f'"{server}" is not an IP address',
                    hint="list DNS servers by IP address",
                ) from None
    return servers


def _runtimes(section: Section) -> Dict[str, List[str]]:
    runtimes = {name: list(paths) for name, paths in DEFAULT_RUNTIMES.items()}
    for name, paths in section.table("runtimes").items():
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ConfigError(
                f"{section.source('runtimes')}: engine.runtimes.{name}: expected an array of paths",
                hint=f'write e.g. {name} = ["/usr/bin/{name}"]',
            )
        runtimes[name] = list(paths)
    return runtimes


def _subnet(section: Section) -> str:
    subnet = section.string("default_subnet", DEFAULT_SUBNET)
    if subnet == DEFAULT_SUBNET:
        return subnet  # known good: no ipaddress import (~2 ms) on every command
    import ipaddress

    try:
        ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise section.fail(
            "default_subnet", f'"{subnet}" is not a subnet', hint='write e.g. "10.88.0.0/16"'
        ) from None
    return subnet


def build_containers_config(merged: MergedToml, fallback_source: str) -> ContainersConfig:
    """Typed view of the merged document; wrong types or values raise ConfigError."""
    ctr = Section(merged, ("containers",), fallback_source)
    eng = Section(merged, ("engine",), fallback_source)
    net = Section(merged, ("network",), fallback_source)

    # Defaults are known good: checking them would compile a regex on every command.
    shm_size = ctr.string("shm_size", DEFAULT_SHM_SIZE)
    if shm_size != DEFAULT_SHM_SIZE and not _SHM_SIZE.match(shm_size):
        raise ctr.fail("shm_size", f'invalid size "{shm_size}"', hint='write e.g. "64m"')
    umask = ctr.string("umask", DEFAULT_UMASK)
    if umask != DEFAULT_UMASK and (not _UMASK.match(umask) or int(umask, 8) > 0o777):
        raise ctr.fail("umask", f'invalid umask "{umask}"', hint='write an octal mask, e.g. "0022"')
    pull_policy = eng.string("pull_policy", "missing")
    if pull_policy.lower() not in PULL_POLICIES:
        raise eng.fail(
            "pull_policy",
            f'unsupported value "{pull_policy}"',
            hint="use one of: always, missing, never, newer",
        )
    stop_timeout = eng.integer("stop_timeout", 10)
    if stop_timeout < 0:
        raise eng.fail("stop_timeout", f"must not be negative, got {stop_timeout}")
    systemd = _systemd_running()

    return ContainersConfig(
        default_capabilities=[
            _capability_name(c) for c in ctr.strings("default_capabilities", DEFAULT_CAPABILITIES)
        ],
        default_sysctls=_sysctls(ctr),
        default_ulimits=_validated(
            ctr,
            "default_ulimits",
            ctr.strings("default_ulimits", []),
            lambda item: _ULIMIT.match(item),  # not `_ULIMIT.match`: that compiles it now
            '"nofile=1024:2048"',
        ),
        env=_validated(ctr, "env", ctr.strings("env", DEFAULT_ENV), bool, '"TERM=xterm"'),
        dns_servers=_dns_servers(ctr),
        # podman treats "json-file" as another name for its k8s-file format.
        log_driver=ctr.choice("log_driver", "k8s-file", LOG_DRIVERS).replace(
            "json-file", "k8s-file"
        ),
        log_size_max=ctr.integer("log_size_max", -1),
        pids_limit=ctr.integer("pids_limit", 2048),
        shm_size=shm_size,
        tz=ctr.string("tz", ""),
        umask=umask,
        init_path=ctr.string("init_path", "") or DEFAULT_INIT_PATH,
        seccomp_profile=ctr.string("seccomp_profile", ""),
        no_hosts=ctr.boolean("no_hosts", False),
        netns=ctr.string("netns", "private"),
        userns=ctr.string("userns", "host"),
        volumes=ctr.strings("volumes", []),
        runtime=eng.string("runtime", "") or BUILTIN_RUNTIME,
        runtimes=_runtimes(eng),
        cgroup_manager=eng.choice(
            "cgroup_manager", "systemd" if systemd else "cgroupfs", ("systemd", "cgroupfs")
        ),
        events_logger=eng.choice(
            "events_logger", "journald" if systemd else "file", ("file", "journald", "none")
        ),
        helper_binaries_dir=eng.strings("helper_binaries_dir", DEFAULT_HELPER_BINARIES_DIR),
        image_default_transport=eng.string("image_default_transport", "docker://"),
        pull_policy=PULL_POLICIES[pull_policy.lower()],
        stop_timeout=stop_timeout,
        network_cmd_path=eng.string("network_cmd_path", ""),
        network_cmd_options=eng.strings("network_cmd_options", []),
        tmp_dir=eng.optional_string("tmp_dir"),
        volume_path=eng.optional_string("volume_path"),
        default_network=net.string("default_network", "podman") or "podman",
        default_subnet=_subnet(net),
        default_rootless_network_cmd=net.choice(
            "default_rootless_network_cmd", "slirp4netns", ("slirp4netns", "pasta")
        ),
    )
