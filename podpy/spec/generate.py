"""Image config + run options -> an OCI runtime config.json dict with podman's defaults.

Pure apart from reading the rootfs's /etc/passwd and /etc/group (for --user) and checking
that bind-mount sources exist; `write_network_files` writes /etc/hosts, hostname, resolv.conf.
"""

from __future__ import annotations

import os
import re

from podpy.errors import PodpyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
INIT_PATH = "/run/podpy-init"
# Where podman binds its init (catatonit) for --init; external runtimes get the same.
PODMAN_INIT_PATH = "/run/podman-init"
# Annotation that asks the built-in runtime to run its own reaping init as PID 1 (--init).
INIT_ANNOTATION = "io.podpy.init"
# Annotation (JSON {"lower": [...], "upper": DIR, "work": DIR}) asking the built-in runtime to
# mount the rootfs overlay itself, inside the container's mount namespace: a rootless overlay
# has to be mounted from inside the user namespace, and podpy keeps no namespace alive between
# commands. External runtimes need the engine to mount it first.
OVERLAY_ANNOTATION = "io.podpy.rootfs.overlay"

MASKED_PATHS = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
]
READONLY_PATHS = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]

_RLIMITS = {
    "as": "RLIMIT_AS",
    "core": "RLIMIT_CORE",
    "cpu": "RLIMIT_CPU",
    "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS",
    "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE",
    "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC",
    "rss": "RLIMIT_RSS",
    "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING",
    "stack": "RLIMIT_STACK",
}
# Compiled on first use (re's own cache): most runs never parse a size.
_SIZE_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$"


class RunOptions:
    """What the user asked for (podman run flags), already split into lists and numbers.

    Declared like a dataclass (keyword arguments, defaults below; a list or dict default is
    copied per instance) but a plain class: importing dataclasses costs the monitor ~10 ms.
    """

    container_id: str
    rootfs: str
    name: Optional[str] = None
    command: Optional[List[str]] = None  # replaces the image's Cmd
    entrypoint: Optional[List[str]] = None  # replaces Entrypoint and clears Cmd
    env: List[str] = []  # KEY=VALUE, applied over the image's Env
    workdir: Optional[str] = None
    user: Optional[str] = None
    hostname: Optional[str] = None
    terminal: bool = False
    read_only: bool = False
    tmpfs: List[str] = []  # "/dst[:opt,opt]"
    volumes: List[str] = []  # "-v SRC:DST[:OPTS]" with absolute SRC
    mounts: List[Dict[str, Any]] = []  # ready OCI mount entries
    cap_add: List[str] = []
    cap_drop: List[str] = []
    privileged: bool = False
    no_new_privileges: bool = False
    seccomp_profile: Optional[str] = None  # None: podman's default; "unconfined"; or a JSON path
    init: bool = False
    # --init under an external runtime (runc/crun): the host's init binary (containers.conf
    # init_path, podman's catatonit), bound at PODMAN_INIT_PATH and run as `init -- CMD`.
    # None: the built-in runtime's own reaping init (INIT_ANNOTATION).
    init_binary: Optional[str] = None
    memory: Optional[int] = None
    memory_swap: Optional[int] = None  # -1 = unlimited
    memory_reservation: Optional[int] = None
    cpus: Optional[float] = None
    cpu_shares: Optional[int] = None
    pids_limit: Optional[int] = None
    ulimits: List[str] = []  # "nofile=1024:2048"
    sysctls: Dict[str, str] = {}
    annotations: Dict[str, str] = {}
    network_ns: Optional[str] = None  # None: new netns; "host": none; else a netns path to join
    ipc_ns: Optional[str] = None  # None: new ipc namespace; else a path to join (pod members)
    uts_ns: Optional[str] = None  # None: new uts namespace; else a path to join (no hostname then)
    cgroupns: Optional[str] = None  # "private" / "host"; default as podman (private on v2 only)
    shm_size: int = DEFAULT_SHM_SIZE
    cgroups_path: Optional[str] = None
    network_files_dir: Optional[str] = None  # where hosts/hostname/resolv.conf are written
    dns_servers: List[str] = []
    add_hosts: List[str] = []  # "name:ip"
    rootless: Optional[bool] = None  # default: not running as root on the host
    umask: str = "0022"
    userns_mappings: Optional[Tuple[List[Dict[str, int]], List[Dict[str, int]]]] = None
    rootfs_overlay: Optional[Dict[str, Any]] = None  # {"lower": [...], "upper": .., "work": ..}

    def __init__(self, container_id: str, rootfs: str, **fields: Any):
        unknown = set(fields) - set(_RUN_OPTION_DEFAULTS)
        if unknown:
            raise TypeError(f"RunOptions: unexpected fields {', '.join(sorted(unknown))}")
        self.container_id = container_id
        self.rootfs = rootfs
        for key, default in _RUN_OPTION_DEFAULTS.items():
            if key in fields:
                setattr(self, key, fields[key])
            else:
                setattr(
                    self, key, type(default)() if isinstance(default, (list, dict)) else default
                )

    def __repr__(self) -> str:
        return f"RunOptions({self.__dict__!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunOptions) and self.__dict__ == other.__dict__


_RUN_OPTION_DEFAULTS: Dict[str, Any] = {
    key: getattr(RunOptions, key)
    for key in RunOptions.__annotations__
    if key not in ("container_id", "rootfs")
}


def parse_size(text: str) -> int:
    """`64m`, `1g`, `512k`, `100` (bytes) -> bytes, like podman's --memory."""
    match = re.match(_SIZE_PATTERN, str(text), re.IGNORECASE)
    if not match:
        raise PodpyError(
            f"invalid size: '{text}'", hint="use a number with an optional unit: b, k, m or g"
        )
    number = float(match.group(1))
    unit = match.group(2).lower()
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[unit]
    return int(number * scale)


def _image_section(image_config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if not image_config:
        return {}
    if isinstance(image_config.get("config"), dict):
        return image_config["config"]
    return image_config


def merge_env(image_env: Sequence[str], overrides: Sequence[str]) -> List[str]:
    """Image Env, then user overrides by key; PATH defaulted like podman."""
    merged: Dict[str, str] = {}
    for item in list(image_env) + list(overrides):
        key, sep, value = item.partition("=")
        if not key:
            raise PodpyError(f"invalid environment variable {item!r}", hint="use KEY=VALUE")
        if not sep:
            # `-e KEY` takes the value from podpy's own environment, as podman does.
            if key not in os.environ:
                continue
            value = os.environ[key]
        merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    return [f"{k}={v}" for k, v in merged.items()]


def command_line(image: Dict[str, Any], opts: RunOptions) -> List[str]:
    if opts.entrypoint is not None:
        entry = list(opts.entrypoint)
        cmd = list(opts.command or [])
    else:
        entry = list(image.get("Entrypoint") or [])
        cmd = list(opts.command) if opts.command else list(image.get("Cmd") or [])
    args = entry + cmd
    if not args:
        raise PodpyError(
            "no command or entrypoint provided, and no CMD or ENTRYPOINT from image",
            hint="give a command after the image name, e.g. `podpy run IMAGE sh`",
        )
    return args


def parse_volume(spec: str) -> Dict[str, Any]:
    """`-v /src:/dst[:ro|rw|z|Z|shared|rslave|...]` for a host path -> an OCI bind mount."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 3:
        raise PodpyError(f"invalid volume specification {spec!r}", hint="use -v SRC:DST[:OPTIONS]")
    source, dest = parts[0], parts[1]
    words = parts[2].split(",") if len(parts) == 3 and parts[2] else []
    if not dest.startswith("/"):
        raise PodpyError(
            f"invalid container path {dest!r}, must be an absolute path",
            hint=f"use -v {source}:/{dest.lstrip('/')}",
        )
    options = ["rbind"]
    propagation = "rprivate"
    for word in words:
        if word in ("ro", "rw"):
            options.append(word)
        elif word in ("shared", "rshared", "slave", "rslave", "private", "rprivate"):
            propagation = word
        elif word in ("z", "Z", "U", "nocopy", "copy", "O", "exec", "noexec", "suid", "nosuid"):
            if word in ("exec", "noexec", "suid", "nosuid"):
                options.append(word)
        elif word in ("dev", "nodev"):
            options.append(word)
        elif word == "bind":
            options[0] = "bind"
        else:
            raise PodpyError(
                f"invalid volume option {word!r} in {spec!r}",
                hint="use ro, rw, z, Z, U, shared, slave, private (and r-prefixed forms)",
            )
    options.append(propagation)
    return {"destination": dest, "type": "bind", "source": source, "options": options}


def parse_tmpfs(spec: str) -> Dict[str, Any]:
    dest, _, opts = spec.partition(":")
    if not dest.startswith("/"):
        raise PodpyError(f"invalid tmpfs destination {dest!r}, must be an absolute path")
    options = ["rw", "noexec", "nosuid", "nodev"]
    for word in [w for w in opts.split(",") if w]:
        if word in ("exec", "noexec", "suid", "nosuid", "dev", "nodev", "ro", "rw"):
            opposite = {
                "exec": "noexec",
                "noexec": "exec",
                "suid": "nosuid",
                "nosuid": "suid",
                "dev": "nodev",
                "nodev": "dev",
                "ro": "rw",
                "rw": "ro",
            }[word]
            options = [o for o in options if o != opposite]
            if word not in options:
                options.append(word)
        else:
            options.append(word)
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options}


def parse_ulimit(spec: str) -> Dict[str, Any]:
    name, sep, values = spec.partition("=")
    if not sep or name not in _RLIMITS:
        raise PodpyError(
            f"invalid ulimit {spec!r}",
            hint="use NAME=SOFT[:HARD], NAME one of " + ", ".join(sorted(_RLIMITS)),
        )
    soft_text, _, hard_text = values.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if hard_text else soft
    except ValueError as err:
        raise PodpyError(f"invalid ulimit value in {spec!r}", hint="use integers") from err
    unlimited = 0xFFFFFFFFFFFFFFFF
    soft = unlimited if soft < 0 else soft
    hard = unlimited if hard < 0 else hard
    if soft > hard:
        raise PodpyError(f"ulimit soft limit must be less than or equal to hard limit: {spec}")
    return {"type": _RLIMITS[name], "soft": soft, "hard": hard}


def _default_rlimits(rootless: bool) -> List[Dict[str, Any]]:
    import resource

    nofile, nproc = 1048576, 4194304
    if rootless or not _has_cap_sys_resource():
        # Without CAP_SYS_RESOURCE a hard limit cannot be raised: podman uses the current ones.
        nofile = min(nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        nproc = min(nproc, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    return [
        {"type": "RLIMIT_NOFILE", "soft": nofile, "hard": nofile},
        {"type": "RLIMIT_NPROC", "soft": nproc, "hard": nproc},
    ]


def _has_cap_sys_resource() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 24))
    except (OSError, ValueError):
        pass
    return False


def _default_mounts(opts: RunOptions, rootless: bool, cgroup_mode: str) -> List[Dict[str, Any]]:
    shm_kib = max(opts.shm_size // 1024, 1)
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    devpts.append("gid=5")
    mounts = [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts},
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
    ]
    if opts.network_ns == "host" and rootless:
        # sysfs cannot be mounted without owning the network namespace: bind the host's.
        mounts.append(
            {
                "destination": "/sys",
                "type": "bind",
                "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
            }
        )
    else:
        mounts.append(
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            }
        )
    if cgroup_mode == "v2" or not rootless:
        mounts.append(
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"],
            }
        )
    mounts.append(
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_kib}k"],
        }
    )
    return mounts


def _check_bind_sources(mounts: Sequence[Dict[str, Any]]) -> None:
    for mount in mounts:
        if mount.get("type") != "bind" and "bind" not in (mount.get("options") or []):
            continue
        source = mount.get("source") or ""
        if not os.path.isabs(source):
            raise PodpyError(
                f"bind mount source {source!r} must be an absolute path",
                hint="use an absolute host path, or a named volume",
            )
        if not os.path.exists(source):
            raise PodpyError(
                f"statfs {source}: no such file or directory",
                hint="create the directory first, or fix the path given to -v/--mount",
            )


def _resources(opts: RunOptions) -> Dict[str, Any]:
    resources: Dict[str, Any] = {}
    memory: Dict[str, Any] = {}
    if opts.memory is not None:
        if opts.memory < 6 * 1024 * 1024:
            raise PodpyError("minimum memory limit allowed is 6MB", hint="use --memory 6m or more")
        memory["limit"] = opts.memory
        if opts.memory_swap is None:
            memory["swap"] = 2 * opts.memory  # podman: swap defaults to twice the memory
    if opts.memory_swap is not None:
        if opts.memory is None:
            raise PodpyError(
                "you must provide a memory limit when specifying a memory swap limit",
                hint="add --memory",
            )
        if opts.memory_swap != -1 and opts.memory_swap < opts.memory:
            raise PodpyError(
                "minimum memoryswap limit should be larger than memory limit, see usage",
                hint="--memory-swap is memory plus swap; use -1 for unlimited swap",
            )
        memory["swap"] = opts.memory_swap
    if opts.memory_reservation is not None:
        memory["reservation"] = opts.memory_reservation
    if memory:
        resources["memory"] = memory
    cpu: Dict[str, Any] = {}
    if opts.cpus is not None:
        if opts.cpus <= 0:
            raise PodpyError(f"invalid --cpus value {opts.cpus}", hint="use a positive number")
        cpu["period"] = 100000
        cpu["quota"] = int(opts.cpus * 100000)
    if opts.cpu_shares is not None:
        cpu["shares"] = opts.cpu_shares
    if cpu:
        resources["cpu"] = cpu
    if opts.pids_limit is not None:
        resources["pids"] = {"limit": opts.pids_limit}
    return resources


def _seccomp(opts: RunOptions, caps: List[str]) -> Optional[Dict[str, Any]]:
    from podpy.runtime import seccomp

    if opts.privileged or opts.seccomp_profile == "unconfined":
        return None
    if opts.seccomp_profile:
        return seccomp.resolve_profile(seccomp.load_profile(opts.seccomp_profile), caps)
    return seccomp.resolve_default_profile(caps)


def write_network_files(
    directory: str,
    hostname: str,
    name: Optional[str] = None,
    dns_servers: Sequence[str] = (),
    add_hosts: Sequence[str] = (),
    host_resolv_conf: str = "/etc/resolv.conf",
) -> List[Dict[str, Any]]:
    """Write hosts/hostname/resolv.conf for one container; return their bind-mount entries."""
    from podpy.atomic import write_atomic

    os.makedirs(directory, exist_ok=True)
    names = " ".join(dict.fromkeys(n for n in (hostname, name) if n))
    hosts = [
        "127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4",
        "::1         localhost localhost.localdomain localhost6 localhost6.localdomain6",
        f"127.0.1.1   {names}",
    ]
    for entry in add_hosts:
        host, sep, ip = entry.rpartition(":")
        if not sep or not host or not ip:
            raise PodpyError(f"invalid --add-host {entry!r}", hint="use NAME:IP")
        hosts.append(f"{ip}\t{host}")
    resolv: List[str] = []
    if dns_servers:
        resolv = [f"nameserver {s}" for s in dns_servers]
    else:
        try:
            with open(host_resolv_conf) as f:
                for line in f:
                    fields = line.split()
                    # A loopback resolver on the host is unreachable from the container's netns.
                    if fields[:1] == ["nameserver"] and len(fields) > 1:
                        if fields[1].startswith("127.") or fields[1] == "::1":
                            continue
                    resolv.append(line.rstrip("\n"))
        except OSError:
            pass
    files = {
        "hosts": "\n".join(hosts) + "\n",
        "hostname": hostname + "\n",
        "resolv.conf": "\n".join(resolv) + ("\n" if resolv else ""),
    }
    mounts = []
    for filename, content in files.items():
        path = os.path.join(directory, filename)
        write_atomic(path, content.encode(), mode=0o644)
        mounts.append(
            {
                "destination": "/etc/" + filename,
                "type": "bind",
                "source": path,
                "options": ["bind", "rprivate"],
            }
        )
    return mounts


def generate(image_config: Optional[Dict[str, Any]], opts: RunOptions) -> Dict[str, Any]:
    """The OCI config.json dict for one container (podman 4.3's defaults)."""
    from podpy import log
    from podpy.runtime import caps as capmod
    from podpy.runtime import cgroups
    from podpy.runtime.users import resolve_user

    image = _image_section(image_config)
    rootless = (os.geteuid() != 0) if opts.rootless is None else opts.rootless
    if not rootless:
        from podpy.userns import in_initial_userns

        rootless = not in_initial_userns()
    cgroup_mode = cgroups.mode()
    args = command_line(image, opts)
    user = resolve_user(opts.rootfs, opts.user or image.get("User") or "")
    hostname = opts.hostname or opts.container_id[:12]
    env = merge_env(image.get("Env") or [], opts.env)
    if opts.terminal and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.append(f"HOSTNAME={hostname}")
    env.append("container=podman")
    cwd = opts.workdir or image.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise PodpyError(
            f"workdir {cwd!r} must be an absolute path", hint="use --workdir /path/in/container"
        )

    cap_list = capmod.effective_set(opts.cap_add, opts.cap_drop, opts.privileged)
    capabilities = capmod.spec_capabilities(cap_list, user.uid)
    if user.uid != 0 and opts.cap_add:
        added = [capmod.normalize(c) for c in opts.cap_add if c.upper() != "ALL"]
        for key in ("effective", "permitted"):
            capabilities[key] = [c for c in cap_list if c in added]

    rlimits = _default_rlimits(rootless)
    for spec in opts.ulimits:
        limit = parse_ulimit(spec)
        rlimits = [r for r in rlimits if r["type"] != limit["type"]] + [limit]

    user_mounts: List[Dict[str, Any]] = []
    for volume in opts.volumes:
        user_mounts.append(parse_volume(volume))
    user_mounts.extend(dict(m) for m in opts.mounts)
    for spec in opts.tmpfs:
        user_mounts.append(parse_tmpfs(spec))
    _check_bind_sources(user_mounts)

    mounts = _default_mounts(opts, rootless, cgroup_mode)
    if opts.network_files_dir:
        mounts.extend(
            write_network_files(
                opts.network_files_dir,
                hostname,
                opts.name,
                opts.dns_servers,
                opts.add_hosts,
            )
        )
    # A user mount replaces a default one at the same destination (e.g. -v /x:/dev/shm).
    user_dests = {m["destination"].rstrip("/") or "/" for m in user_mounts}
    mounts = [m for m in mounts if m["destination"] not in user_dests] + user_mounts
    if opts.init and opts.init_binary:
        mounts.append(_init_mount(opts.init_binary))
        args = [PODMAN_INIT_PATH, "--", *args]

    namespaces: List[Dict[str, Any]] = [{"type": "pid"}]
    if opts.network_ns != "host":
        net: Dict[str, Any] = {"type": "network"}
        if opts.network_ns:
            net["path"] = opts.network_ns
        namespaces.append(net)
    for kind, path in (("ipc", opts.ipc_ns), ("uts", opts.uts_ns)):
        namespaces.append({"type": kind, "path": path} if path else {"type": kind})
    namespaces.append({"type": "mount"})
    cgroupns = opts.cgroupns or ("private" if cgroup_mode == "v2" else "host")
    if cgroupns == "private":
        namespaces.append({"type": "cgroup"})

    linux: Dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": [] if opts.privileged else list(MASKED_PATHS),
        "readonlyPaths": [] if opts.privileged else list(READONLY_PATHS),
    }
    if opts.userns_mappings:
        uid_maps, gid_maps = opts.userns_mappings
        namespaces.insert(0, {"type": "user"})
        linux["uidMappings"] = uid_maps
        linux["gidMappings"] = gid_maps
    resources = _resources(opts)
    if resources and rootless and not cgroups.can_manage(True):
        log.warn_once(cgroups.ROOTLESS_V1_WARNING)
        resources = {}
    if resources:
        linux["resources"] = resources
    if not rootless or cgroups.can_manage(True):
        linux["cgroupsPath"] = opts.cgroups_path or f"/podpy_parent/podpy-{opts.container_id}"
    sysctls: Dict[str, str] = {}
    if opts.network_ns is None:
        # containers.conf default_sysctls (podman sets it only with a private netns): ping works.
        sysctls["net.ipv4.ping_group_range"] = "0 0"
    sysctls.update(opts.sysctls)
    if sysctls:
        linux["sysctl"] = sysctls
    seccomp_section = _seccomp(opts, cap_list)
    if seccomp_section is not None:
        linux["seccomp"] = seccomp_section

    annotations = dict(opts.annotations)
    if opts.init and not opts.init_binary:
        annotations[INIT_ANNOTATION] = "true"
    if opts.rootfs_overlay:
        import json

        annotations[OVERLAY_ANNOTATION] = json.dumps(opts.rootfs_overlay, sort_keys=True)
    process: Dict[str, Any] = {
        "terminal": bool(opts.terminal),
        "user": {"uid": user.uid, "gid": user.gid, "umask": int(opts.umask, 8)},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": capabilities,
        "rlimits": rlimits,
        "noNewPrivileges": bool(opts.no_new_privileges),
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    config = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": os.path.abspath(opts.rootfs), "readonly": bool(opts.read_only)},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }
    if opts.uts_ns:
        del config["hostname"]  # a joined uts namespace keeps its owner's (the pod's) name
    return config


def _init_mount(binary: str) -> Dict[str, Any]:
    """podman's --init: the host's catatonit, read-only at /run/podman-init."""
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        # One line with the fix: the monitor, which raises this at start, prints no hints.
        raise PodpyError(
            f"--init: the init binary {binary} does not exist or is not executable: install "
            "the catatonit package (podman's init), or set init_path in containers.conf"
        )
    return {
        "destination": PODMAN_INIT_PATH,
        "type": "bind",
        "source": binary,
        "options": ["bind", "ro", "rprivate"],
    }


def write_bundle(bundle_dir: str, config: Dict[str, Any], durable: bool = True) -> str:
    """Write config.json into bundle_dir atomically; returns its path. `durable=False` skips
    the fsyncs, for a config regenerated at every start (the monitor's)."""
    import json

    from podpy.atomic import write_atomic

    os.makedirs(bundle_dir, exist_ok=True)
    path = os.path.join(bundle_dir, "config.json")
    write_atomic(path, json.dumps(config, indent=1).encode(), mode=0o600, durable=durable)
    return path
