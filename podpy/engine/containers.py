"""Container lifecycle: create, start (detached or as this very process), stop, kill, remove,
wait, list, inspect, logs, and the repair of containers whose monitor died.

Public methods follow podman's template: look up -> re-sync state -> check the state ->
act -> record an event. The monitor (podpy/monitor) owns a running container; this module
only talks to it through its pid, its files and the state DB.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

from podpy.errors import AlreadyExists, InvalidState, NoSuchObject, PodpyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence

    from podpy.engine import Engine
    from podpy.engine.types import CreateOptions

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
RUNNING_STATES = ("running", "paused")
_ADJECTIVES = (
    "admiring amazing boring brave busy clever cool dazzling eager elastic epic festive "
    "focused funny gallant gifted happy hopeful jolly keen kind loving modest nice optimistic "
    "peaceful practical quirky relaxed serene sharp stoic sweet tender trusting vibrant wizardly"
).split()
_NAMES = (
    "albattani banach bell bohr curie darwin dijkstra einstein euler feynman galileo gauss "
    "hopper hypatia kepler knuth lamarr lovelace maxwell meitner newton noether pascal "
    "ritchie shannon tesla thompson torvalds turing wozniak yalow"
).split()


# --- small helpers -------------------------------------------------------------------------


def _asdict(obj: Any) -> Dict[str, Any]:
    from podpy.record import asdict

    return asdict(obj)


def proc_start_time(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def _alive(pid: Optional[int], start_time: Optional[int] = None) -> bool:
    """Running (not a zombie: a dead detached monitor waits for a slow PID 1 to reap it)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return False
    if fields[0] in (b"Z", b"X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def _pick(words: Sequence[str]) -> str:
    # os.urandom rather than `secrets`, whose import (hmac, hashlib, OpenSSL) costs `run`.
    return words[int.from_bytes(os.urandom(4), "big") % len(words)]


def _random_name(eng: Engine) -> str:
    for _ in range(50):
        name = f"{_pick(_ADJECTIVES)}_{_pick(_NAMES)}"
        if eng.db.get_by_name("containers", name) is None:
            return name
    return "podpy_" + os.urandom(4).hex()


def signal_number(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    number = getattr(signal, text, None)
    if not isinstance(number, int):
        raise PodpyError(f"invalid signal: {value}", hint="use a name like TERM or a number")
    return int(number)


def container_dir(eng: Engine, cid: str) -> str:
    return os.path.join(eng.paths.containers_dir, cid)


def run_dir(eng: Engine, cid: str) -> str:
    return eng.paths.container_run_dir(cid)


def _event(eng: Engine, row: Dict[str, Any], status: str, **attrs: Any) -> None:
    attrs.setdefault("image", row["config"].get("image_name") or "")
    eng.db.add_event("container", status, name=row["name"], object_id=row["id"], attributes=attrs)


# --- lookup and repair ----------------------------------------------------------------------


def lookup(eng: Engine, ref: str) -> Dict[str, Any]:
    """A container by full id, name or unique id prefix, with its state re-synced."""
    try:
        row = eng.db.lookup("containers", ref)
    except NoSuchObject as err:
        raise NoSuchObject(
            f'no container with name or ID "{ref}" found: no such container'
        ) from err
    return refresh(eng, row)


def refresh(eng: Engine, row: Dict[str, Any]) -> Dict[str, Any]:
    """Notice a monitor that died (kill -9, OOM, reboot): mark the container exited, stop what
    is left of it, and say so in one line. Cheap: a /proc stat per running container."""
    if row["status"] not in RUNNING_STATES:
        return row
    state = row.get("state") or {}
    if _alive(state.get("monitor_pid"), state.get("monitor_start")):
        return row
    # The monitor might have just finished and written its exit: re-read before repairing.
    fresh = eng.db.get("containers", row["id"])
    if fresh is None or fresh["status"] not in RUNNING_STATES:
        return fresh or row
    code, finished = 137, time.time()
    exit_file = os.path.join(run_dir(eng, row["id"]), "exit.json")
    try:
        with open(exit_file) as f:
            recorded = json.load(f)
        code, finished = int(recorded["exit_code"]), float(recorded["finished_at"])
    except (OSError, ValueError, KeyError):
        pass
    if row.get("pid") and _alive(row["pid"]):
        try:
            os.kill(row["pid"], signal.SIGKILL)
        except OSError:
            pass
    _forget_runtime_state(eng, row)
    eng.db.update_state(
        "containers",
        row["id"],
        {"finished_at": finished, "exit_code": code},
        status="exited",
        exit_code=code,
        pid=0,
    )
    sys.stderr.write(
        f"podpy: container {row['name']} ({row['id'][:12]}) lost its monitor; "
        f"marked it exited ({code}) and released its resources\n"
    )
    _event(eng, row, "died", exitCode=code)
    return eng.db.get("containers", row["id"]) or row


def _forget_runtime_state(eng: Engine, row: Dict[str, Any]) -> None:
    """Drop the OCI runtime's record (and cgroup) of a container whose monitor died, which the
    monitor would have deleted; otherwise the next `start` fails with "container exists"."""
    from podpy.runtime.oci import get_runtime

    try:
        runtime = get_runtime(row["config"].get("runtime"), os.path.join(eng.paths.run_root, "oci"))
        runtime.delete(row["id"], force=True)
    except Exception:  # never recorded, or already gone
        pass


def list_containers(eng: Engine, all_containers: bool = True) -> List[Dict[str, Any]]:
    rows = eng.db.list("containers", order_by="created DESC")
    rows = [refresh(eng, r) for r in rows]
    if not all_containers:
        rows = [r for r in rows if r["status"] in RUNNING_STATES]
    return rows


# --- create ---------------------------------------------------------------------------------


def _run_options(eng: Engine, opts: CreateOptions, image_config: Dict[str, Any]) -> Dict[str, Any]:
    """The spec generator's RunOptions fields (container_id/rootfs are filled at start)."""
    env: List[str] = []
    for path in opts.env_files:
        env.extend(_read_env_file(path))
    for item in opts.env:
        if "=" in item:
            env.append(item)
        elif item in os.environ:  # `-e NAME` passes the host's value, as docker does
            env.append(f"{item}={os.environ[item]}")
    conf = eng.config.containers
    env = [*getattr(conf, "env", []), *env]
    no_new_privs = any(
        o.replace("=", ":") in ("no-new-privileges", "no-new-privileges:true")
        for o in opts.security_opt
    )
    seccomp_profile = None
    for item in opts.security_opt:
        if item.startswith("seccomp=") or item.startswith("seccomp:"):
            seccomp_profile = item.split("=", 1)[-1] if "=" in item else item.split(":", 1)[1]
            if seccomp_profile != "unconfined":
                seccomp_profile = os.path.abspath(seccomp_profile)
                if not os.path.isfile(seccomp_profile):
                    raise PodpyError(
                        f"opening seccomp profile failed: {seccomp_profile}: no such file",
                        hint="give the path of a JSON seccomp profile, or seccomp=unconfined",
                    )
        elif item.startswith("label=") or item.startswith("apparmor="):
            continue
        elif not item.startswith("no-new-privileges"):
            raise PodpyError(
                f"invalid --security-opt {item!r}",
                hint="supported: no-new-privileges, seccomp=unconfined|PATH",
            )
    from podpy.engine.volumes import split_specs

    # Host binds only; named and anonymous volumes are created by volumes.attach() in create().
    volumes, _named = split_specs(opts.volumes)
    fields: Dict[str, Any] = {
        "name": opts.name,
        "command": list(opts.command) or None,
        "entrypoint": opts.entrypoint,
        "env": env,
        "workdir": opts.workdir,
        "user": opts.user,
        "hostname": opts.hostname,
        "terminal": opts.tty,
        "read_only": opts.read_only,
        "tmpfs": list(opts.tmpfs),
        "volumes": volumes,
        "cap_add": list(opts.cap_add),
        "cap_drop": list(opts.cap_drop),
        "privileged": opts.privileged,
        "no_new_privileges": no_new_privs,
        "seccomp_profile": seccomp_profile,
        "init": opts.init,
        "memory": _parse_size(opts.memory) if opts.memory else None,
        "memory_swap": (-1 if opts.memory_swap == "-1" else _parse_size(opts.memory_swap))
        if opts.memory_swap
        else None,
        "cpus": opts.cpus,
        "cpu_shares": opts.cpu_shares,
        "pids_limit": opts.pids_limit,
        "ulimits": list(opts.ulimits),
        "sysctls": dict(s.split("=", 1) for s in opts.sysctls),
        "dns_servers": list(opts.dns),
        "add_hosts": list(opts.add_host),
        "annotations": {},
    }
    # Fail now on what can be checked now (podman validates bind sources at create).
    for spec in volumes:
        source = spec.split(":", 1)[0]
        if not os.path.exists(source):
            raise PodpyError(
                f"statfs {source}: no such file or directory",
                hint="create the host directory first, or fix the -v source path",
            )
    return fields


def _parse_size(text: str) -> int:
    # Imported only when a size is given: the spec generator is the monitor's module and
    # costs `podpy run` start-up time otherwise.
    from podpy.spec.generate import parse_size

    return parse_size(text)


def _read_env_file(path: str) -> List[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise PodpyError(f"reading env file {path}: {err.strerror}") from err
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            if line in os.environ:
                out.append(f"{line}={os.environ[line]}")
            continue
        out.append(line)
    return out


def _storage_driver(eng: Engine) -> str:
    """The rootfs driver, decided once per store and remembered (probing costs a mount)."""
    marker = os.path.join(eng.paths.graph_root, "rootfs-driver")
    try:
        with open(marker) as f:
            return f.read().strip()
    except OSError:
        pass
    from podpy.hostinfo import choose_storage_driver, probe_storage

    name, reason, _mount_program = choose_storage_driver(
        eng.config, probe_storage(probe_dir=eng.paths.graph_root)
    )
    if name != "overlay":
        raise PodpyError(
            f"storage driver {name} is not supported for containers yet ({reason})",
            hint="podpy runs containers on native overlayfs (Linux >= 5.11 for rootless)",
        )
    from podpy.atomic import write_atomic

    os.makedirs(eng.paths.graph_root, mode=0o700, exist_ok=True)
    write_atomic(marker, (name + "\n").encode())
    return name


def create(
    eng: Engine, opts: CreateOptions, progress: Any = None, make_progress: Any = None
) -> Dict[str, Any]:
    """Resolve (and maybe pull) the image, record the container, prepare its directories.

    Pull progress goes to `progress`, or to what `make_progress()` returns, called only when
    the image must be pulled (drawing progress costs imports a local image never needs)."""
    from podpy.engine import images as image_engine

    name = opts.name
    if name is not None and not NAME_RE.match(name):
        raise PodpyError(
            f"container name {name!r} is invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )
    if name and opts.replace:
        existing = eng.db.get_by_name("containers", name)
        if existing is not None:
            remove(eng, existing["id"], force=True)
    elif name and eng.db.get_by_name("containers", name) is not None:
        found = eng.db.get_by_name("containers", name)
        raise AlreadyExists(
            f'creating container storage: the container name "{name}" is already in use by '
            f"{found['id']}. You have to remove that container to be able to reuse that name: "
            "that name is already in use",
            hint="remove it with `podpy rm`, or use --replace",
        )
    image = _resolve_image(eng, opts, image_engine, progress, make_progress)
    image_config = (image.config or {}).get("config") or {}
    fields = _run_options(eng, opts, image_config)
    pod_member = None
    if opts.pod:  # --pod P / --pod new:P: the member uses the infra's namespaces
        from podpy.engine import pods

        pod_member = pods.member_network(eng, opts)
    network = pod_member["network"] if pod_member else _network_spec(eng, opts, image_config)
    driver = _storage_driver(eng)
    cid = os.urandom(32).hex()
    name = name or _random_name(eng)
    cdir = container_dir(eng, cid)
    store = image_engine.store(eng)
    lower = store.layer_dirs(image)
    log_path = os.path.join(cdir, "userdata", "ctr.log")
    log_driver = opts.log_driver or getattr(eng.config.containers, "log_driver", "k8s-file")
    if log_driver == "json-file":
        log_driver = "k8s-file"
    if log_driver not in ("k8s-file", "none", "passthrough"):
        raise PodpyError(
            f"unsupported log driver {log_driver!r}", hint="use k8s-file, none or passthrough"
        )
    max_size = -1
    for opt in opts.log_opts:
        key, _, value = opt.partition("=")
        if key == "max-size":
            max_size = _parse_size(value)
        elif key == "path":
            log_path = os.path.abspath(value)
    names = image.names
    command = list(opts.command) or list(image_config.get("Cmd") or [])
    entry = opts.entrypoint if opts.entrypoint is not None else image_config.get("Entrypoint")
    config = {
        "image": opts.image,
        "image_name": names[0] if names else image.id,
        "image_id": image.id,
        "command": list(entry or []) + (command if opts.entrypoint is None or opts.command else []),
        "create_options": _asdict(opts),
        "run_options": fields,
        "image_config": image.config,
        "rootfs": {
            "driver": driver,
            "lower": lower,
            "upper": os.path.join(cdir, "diff"),
            "work": os.path.join(cdir, "work"),
            "merged": os.path.join(cdir, "merged"),
        },
        "bundle": os.path.join(cdir, "userdata"),
        "log": {"driver": log_driver, "path": log_path, "max_size": max_size},
        "stop_signal": opts.stop_signal or image_config.get("StopSignal") or "SIGTERM",
        "stop_timeout": (
            opts.stop_timeout
            if opts.stop_timeout is not None
            else getattr(eng.config.containers, "stop_timeout", 10)
        ),
        "remove": opts.remove,
        "tty": opts.tty,
        "stdin": opts.interactive,
        "runtime": opts.runtime or getattr(eng.config.containers, "runtime", None),
        "labels": dict(opts.labels),
        "sdnotify": opts.sdnotify,
        "sig_proxy": opts.sig_proxy,
        "network": network,
    }
    signal_number(config["stop_signal"])
    from podpy.engine import volumes as volume_engine

    named_specs = volume_engine.split_specs(opts.volumes)[1]
    taken = [v.split(":")[1] for v in fields["volumes"]] + [t.split(":")[0] for t in opts.tmpfs]
    binds, config["volumes"] = volume_engine.attach(eng, named_specs, image_config, taken)
    fields["volumes"] = list(fields["volumes"]) + binds
    for sub in ("diff", "work", "merged", "userdata"):
        os.makedirs(os.path.join(cdir, sub), mode=0o700, exist_ok=True)
    # The overlay's root directory takes the upper dir's mode: 0700 would lock out `-u 1000`.
    os.chmod(os.path.join(cdir, "diff"), 0o755)
    now = time.time()
    row = {
        "id": cid,
        "name": name,
        "image_id": image.id,
        "created": now,
        "config": config,
        "status": "created",
        "state": {},
        "updated": now,
        "pod_id": pod_member["pod_id"] if pod_member else None,
    }
    try:
        eng.db.insert("containers", row)
    except AlreadyExists as err:
        _remove_dirs(eng, cid)
        raise AlreadyExists(
            f'the container name "{name}" is already in use', hint="use --replace"
        ) from err
    _event(eng, row, "create")
    if opts.cidfile:
        try:
            _write_cidfile(opts.cidfile, cid)
        except PodpyError:
            remove(eng, cid, force=True)  # nothing half-made: no container without its cidfile
            raise
    return eng.db.get("containers", cid) or row


def _network_spec(eng: Engine, opts: CreateOptions, image_config: Dict[str, Any]) -> Dict[str, Any]:
    """--network/-p/-P/--dns/--add-host as the monitor needs them (netns_helpers reads it)."""
    from podpy import log
    from podpy.engine import network_opts as netopts

    spec = netopts.parse_network_spec(
        opts.network,
        rootless=eng.paths.rootless,
        publish=opts.publish,
        publish_all_ports=opts.publish_all,
        exposed=list((image_config.get("ExposedPorts") or {}).keys()),
        add_hosts=opts.add_host,
        dns=opts.dns,
        dns_search=opts.dns_search,
        dns_options=opts.dns_option,
        mac_address=opts.mac_address,
        ip=opts.ip,
        aliases=opts.network_alias,
        expose=opts.expose,
    )
    if spec.mode == netopts.MODE_BRIDGE:
        if spec.networks not in ([], [netopts.DEFAULT_NETWORK_NAME]):
            from podpy.engine import networks

            # Rootful user-defined networks: a host bridge each (podpy.engine.networks).
            networks.check_attachable(eng, spec.networks, bool(spec.ports))
        elif eng.paths.rootless:
            # Rootless, the default network is served by slirp4netns (podman's default);
            # as root it is the host bridge podpy0 (podpy.engine.networks, default_net).
            spec.mode, spec.options, spec.networks = netopts.MODE_SLIRP, {}, []
        else:
            spec.networks = [netopts.DEFAULT_NETWORK_NAME]
    for warning in spec.warnings:
        log.warn(warning)
    spec.warnings = []
    return spec.to_dict()


def _write_cidfile(path: str, cid: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError as err:
        raise PodpyError(
            f"container id file exists. Ensure another container is not using it or delete {path}"
        ) from err
    except OSError as err:
        raise PodpyError(
            f"opening CIDFile {path}: {err.strerror}", hint="choose a writable --cidfile path"
        ) from err
    with os.fdopen(fd, "w") as f:
        f.write(cid)


def _resolve_image(
    eng: Engine, opts: CreateOptions, image_engine: Any, progress: Any, make_progress: Any = None
) -> Any:
    store = image_engine.store(eng)
    policy = opts.pull or getattr(eng.config.containers, "pull_policy", "missing")
    if policy not in ("always", "missing", "never", "newer"):
        raise PodpyError(
            f"invalid pull policy {policy!r}", hint="use always, missing, never or newer"
        )
    if policy in ("missing", "never"):
        # The common case: a local image. Look it up before importing the registry client.
        found = store.find(opts.image)
        if found is not None:
            return found
        if policy == "never":
            raise NoSuchObject(
                f"{opts.image}: image not known", hint="pull it first, or use --pull missing"
            )
    from podpy.image.auth import credential_lookup
    from podpy.image.manifest import parse_platform
    from podpy.image.pull import PullOptions

    # As `podpy pull`: credentials from auth.json / the docker config, as podman run does.
    pull_opts = PullOptions(
        tls_verify=opts.tls_verify, credentials=credential_lookup(None, None, eng.options.env)
    )
    if opts.platform:
        pull_opts.platform = parse_platform(opts.platform, None, None, None)
    made = None
    if progress is None and make_progress is not None:
        progress = made = make_progress()
    try:
        result = image_engine.pull(eng, opts.image, pull_opts, progress)
    finally:
        if made is not None and hasattr(made, "close"):
            made.close()  # ours to end (a terminal's progress bars restore the cursor)
    return store.lookup(result.image_id)


# --- start ----------------------------------------------------------------------------------


def monitor_spec(eng: Engine, row: Dict[str, Any], foreground: bool) -> str:
    """Write the monitor's JSON instructions; returns its path."""
    from podpy.atomic import write_atomic
    from podpy.monitor.prepare import etc_file_contents

    config = row["config"]
    rdir = run_dir(eng, row["id"])
    os.makedirs(rdir, mode=0o700, exist_ok=True)
    for stale in ("exit.json", "attach.sock"):
        try:
            os.unlink(os.path.join(rdir, stale))
        except FileNotFoundError:
            pass
    network = dict(config.get("network") or {"mode": "none"})
    run_options = dict(config["run_options"])
    if network.get("mode") == "bridge" and network.get("networks"):
        from podpy.engine import networks

        network["bridge"] = networks.attach_request(eng, row, network)
    userns_path = None
    if row.get("pod_id"):
        from podpy.engine import pods

        userns_path = pods.join_pod_namespaces(eng, row, run_options)
    run_options["network_ns"] = _network_namespace(eng, network)
    if network.get("ports"):
        from netns_helpers.ports import resolve_host_ports

        # Fail before anything starts when a host port is taken; pick the random ones.
        resolved = resolve_host_ports(network["ports"], rootless=eng.paths.rootless)
        network["ports"] = [_asdict(p) for p in resolved]
        eng.db.update_state("containers", row["id"], {"ports": network["ports"]})
    spec = {
        "id": row["id"],
        "name": row["name"],
        "bundle": config["bundle"],
        "run_dir": rdir,
        "rootfs": config["rootfs"],
        "run_options": run_options,
        "network": network,
        "image_config": (config.get("image_config") or {}).get("config") or {},
        "rootless": eng.paths.rootless,
        "runtime": config.get("runtime"),
        "runtime_root": os.path.join(eng.paths.run_root, "oci"),
        "tty": config.get("tty", False),
        "stdin": config.get("stdin", False),
        "foreground": foreground,
        "log": config["log"],
        "attach_socket": os.path.join(rdir, "attach.sock"),
        "exit_file": os.path.join(rdir, "exit.json"),
        "db": eng.paths.db_file,
        "sdnotify": config.get("sdnotify", "conmon"),
        "sig_proxy": config.get("sig_proxy", True),
        # --rm: the monitor removes the container itself once it has exited (no second
        # podpy process to start), through the same engine code as `podpy rm`.
        "remove": bool(config.get("remove")),
        # ... without the engine when nothing but the row and these dirs goes (monitor/main.py)
        "remove_dirs": removal_dirs(eng, row["id"]),
        "image_name": config.get("image_name") or "",
        "store": {"root": eng.paths.graph_root, "runroot": eng.paths.run_root},
        "userns_path": userns_path,  # pod members join the infra's user namespace (rootless)
        "volumes": config.get("volumes") or [],  # copied up at first mount (podpy.engine.volumes)
        # --init under runc/crun: podman's catatonit (containers.conf init_path)
        "init_path": eng.config.containers.init_path if run_options.get("init") else None,
        # /etc/hosts, hostname, resolv.conf: computed here, where the network modules are loaded
        "etc_files": etc_file_contents(
            network, run_options.get("hostname") or row["id"][:12], row["name"]
        ),
    }
    path = os.path.join(rdir, "monitor.json")
    # Atomic but not fsynced: the run root is volatile and the monitor reads it at once.
    write_atomic(path, json.dumps(spec).encode(), mode=0o600, durable=False)
    return path


def _network_namespace(eng: Engine, network: Dict[str, Any]) -> Optional[str]:
    """RunOptions.network_ns: None = a new netns, "host", or a netns path to join."""
    mode = network.get("mode")
    if mode == "host":
        return "host"
    if mode == "ns":
        return str(network["options"]["target"])
    if mode == "container":
        target = lookup(eng, str(network["options"]["target"]))
        if target["status"] not in RUNNING_STATES:
            raise InvalidState(
                f"container {target['name']} is not running: cannot join its network namespace"
            )
        return f"/proc/{target['pid']}/ns/net"
    return None


def _global_args(eng: Engine) -> List[str]:
    args = []
    if eng.options.root:
        args += ["--root", eng.paths.graph_root]
    if eng.options.runroot:
        args += ["--runroot", eng.paths.run_root]
    return args


def _monitor_env() -> Dict[str, str]:
    from podpy.selfexec import source_env

    env = dict(os.environ)
    env.update(source_env())
    return env


def _check_startable(row: Dict[str, Any]) -> None:
    if row["status"] in RUNNING_STATES:
        raise InvalidState(f"container {row['id'][:12]} is already running")


def start(eng: Engine, ref: str) -> Dict[str, Any]:
    """Start a container detached: spawn its monitor and wait until it runs (or failed)."""
    from podpy.selfexec import podpy_argv

    row = lookup(eng, ref)
    if row["status"] in RUNNING_STATES:
        return row  # podman: starting a running container is not an error
    spec_path = monitor_spec(eng, row, foreground=False)
    argv = podpy_argv(lean=True) + ["__monitor", spec_path]
    # From the fast path the forked child becomes the monitor without a new interpreter (it
    # re-execs lean 0.4 s later, as every monitor). SQLite state must not cross fork():
    # close our connection first; the monitor opens its own, and eng.db reopens on use.
    in_process = _can_monitor_in_process(row)
    if in_process:
        eng.close()
    read_fd, write_fd = os.pipe()
    env = _monitor_env()
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:
        # Double fork + setsid: the monitor belongs to no terminal and no podpy command.
        try:
            os.close(read_fd)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.set_inheritable(write_fd, True)
            if in_process:
                from podpy.monitor.main import main as monitor_main

                os.environ.clear()
                os.environ.update(env)
                os._exit(monitor_main([spec_path, str(write_fd)]))
            os.execve(argv[0], argv + [str(write_fd)], env)
        finally:
            os._exit(127)
    os.close(write_fd)
    os.waitpid(middle, 0)
    with os.fdopen(read_fd, "rb") as pipe:
        reply = pipe.readline()
    try:
        message = json.loads(reply) if reply else {}
    except ValueError:
        message = {}
    if "pid" not in message:
        error = message.get("error") or "the container monitor exited before the container started"
        raise PodpyError(error, exit_code=int(message.get("exit_code", 125)))
    return eng.db.get("containers", row["id"]) or row


def exec_monitor(eng: Engine, row: Dict[str, Any]) -> None:
    """Foreground run: this process becomes the container's monitor (same pid)."""
    from podpy.selfexec import podpy_argv, source_env

    spec_path = monitor_spec(eng, row, foreground=True)
    argv = podpy_argv(lean=True) + ["__monitor", spec_path]
    # The state DB is deliberately not closed: closing SQLite's last connection checkpoints
    # the WAL (fsyncs) on the way to the container. Its descriptors are close-on-exec, so
    # execve releases them and their locks, as if the process had ended; the monitor's own
    # DB writes checkpoint everything moments later.
    sys.stdout.flush()
    sys.stderr.flush()
    if _can_monitor_in_process(row):
        # The typer-free fast path has loaded nothing the monitor must shed, so this process
        # becomes the monitor without a second interpreter start; the monitor still re-execs
        # into its lean supervision-only form if the container outlives its first moments.
        from podpy.monitor.main import main as monitor_main

        os.environ.update(source_env())
        code = monitor_main([spec_path])
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    os.execve(argv[0], argv, _monitor_env())


def _can_monitor_in_process(row: Dict[str, Any]) -> bool:
    """Only from the fast path (no typer/rich loaded) and single-threaded (the monitor forks
    a helper to enter the user namespace, and unshares its mount namespace). Not with the
    built-in --init: that init is a fork of the monitor and lives as long as the container,
    so it must come from the lean interpreter, not from a CLI process."""
    if ((row.get("config") or {}).get("run_options") or {}).get("init"):
        return False
    if "typer" in sys.modules or "rich" in sys.modules:
        return False
    # Threads are counted by the kernel, not the threading module (~1 ms to import, and blind
    # to threads started with _thread).
    return len(os.listdir("/proc/self/task")) == 1


# --- stop / kill / wait ---------------------------------------------------------------------


def _wait_monitor_gone(row: Dict[str, Any], timeout: float) -> bool:
    """Wait until the container's monitor has exited; False on timeout. Woken by a pidfd the
    moment it exits (no polling interval added to `rm -f` or `stop`), else polls /proc."""
    state = row.get("state") or {}
    pid, start_time = state.get("monitor_pid"), state.get("monitor_start")
    deadline = time.monotonic() + timeout
    if not _alive(pid, start_time):
        return True
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # Linux < 5.3, or it exited meanwhile
        pidfd = None
    if pidfd is not None:
        import select

        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            # The pid was checked before the pidfd was opened: re-check it is still the
            # monitor (not a reused pid) now that the pidfd pins the process.
            while _alive(pid, start_time):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                poller.poll(max(1, min(int(left * 1000), 1000)))
            return True
        finally:
            os.close(pidfd)
    while _alive(pid, start_time):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def kill(eng: Engine, ref: str, sig: Any = "KILL") -> Dict[str, Any]:
    row = lookup(eng, ref)
    if row["status"] not in RUNNING_STATES:
        raise InvalidState(
            f"can only kill running containers. {row['id']} is in state {row['status']}: "
            "container state improper"
        )
    number = signal_number(sig)
    try:
        os.kill(row["pid"], number)
    except ProcessLookupError:
        pass
    _event(eng, row, "kill", signal=number)
    return row


def stop(eng: Engine, ref: str, timeout: Optional[int] = None) -> Dict[str, Any]:
    row = lookup(eng, ref)
    if row["status"] not in RUNNING_STATES:
        return row
    config = row["config"]
    wait = config.get("stop_timeout", 10) if timeout is None else timeout
    pid = row["pid"]
    try:
        if row["status"] == "paused":
            from podpy.engine.container_ops import thaw

            thaw(eng, row)  # frozen tasks ignore every signal, SIGKILL included
        os.kill(pid, signal_number(config.get("stop_signal", "SIGTERM")))
    except ProcessLookupError:
        pass
    if not _wait_monitor_gone(row, wait):
        # PID 1 of a pid namespace ignores signals it has no handler for: escalate, as podman.
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_monitor_gone(row, 30)
    _event(eng, row, "stop")
    return refresh(eng, eng.db.get("containers", row["id"]) or row)


def wait(eng: Engine, ref: str, interval: float = 0.05) -> int:
    row = lookup(eng, ref)
    while row["status"] in RUNNING_STATES:
        time.sleep(interval)
        fresh = eng.db.get("containers", row["id"])
        if fresh is None:
            raise NoSuchObject(f"container {ref} was removed while waiting")
        row = refresh(eng, fresh)
    return int(row.get("exit_code") or 0)


# --- remove ---------------------------------------------------------------------------------


def removal_dirs(eng: Engine, cid: str) -> List[str]:
    """What `rm` deletes on disk; the monitor of a --rm container gets the same list."""
    return [container_dir(eng, cid), run_dir(eng, cid)]


def _remove_dirs(eng: Engine, cid: str) -> None:
    """Delete the container's storage; rootless, inside the user namespace (sub-uid files)."""
    from podpy.atomic import remove_tree

    targets = removal_dirs(eng, cid)
    if eng.paths.rootless:
        # Usually every file is the user's (container root maps to the user): try as the
        # user first, and pay for entering the user namespace only when sub-uid owned
        # directories refuse.
        try:
            for target in targets:
                remove_tree(target)
            return
        except OSError:
            pass
        from podpy import rootless

        def work() -> int:
            for target in targets:
                remove_tree(target)
            return 0

        rootless.run_in_userns(work)
    for target in targets:
        remove_tree(target)


def remove(
    eng: Engine,
    ref: str,
    force: bool = False,
    volumes: bool = False,
    depend: bool = False,
    pod_removal: bool = False,
) -> str:
    """rm; an infra container only with its pod (`depend`, as `rm -a`, removes the pod)."""
    row = lookup(eng, ref)
    if row["config"].get("infra") and row.get("pod_id") and not pod_removal:
        from podpy.engine import pods

        if not depend:
            raise PodpyError(
                f"container {row['id']} is the infra container of pod {row['pod_id']} and "
                "cannot be removed without removing the pod",
                hint="remove the pod with `podpy pod rm`",
            )
        pods.remove(eng, row["pod_id"], force=force)
        return row["id"]
    if row["status"] in RUNNING_STATES:
        if not force:
            raise InvalidState(
                f"cannot remove container {row['id']} as it is {row['status']} - running or "
                "paused containers cannot be removed without force: container state improper",
                hint="stop it first, or use `podpy rm -f`",
            )
        if row["status"] == "paused":
            from podpy.engine.container_ops import thaw

            thaw(eng, row)  # frozen tasks ignore every signal, SIGKILL included
        try:
            os.kill(row["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_monitor_gone(row, 30)
    eng.db.delete("containers", row["id"])
    if (row["config"].get("network") or {}).get("mode") == "bridge":
        from podpy.engine import networks

        networks.release_container(eng, row["id"])
    _remove_dirs(eng, row["id"])
    _event(eng, row, "remove")
    if volumes:
        from podpy.engine.volumes import remove_anonymous

        remove_anonymous(eng, row["config"].get("volumes") or [])
    return row["id"]


def cleanup(eng: Engine, ref: str, remove_container: bool) -> None:
    """The monitor's exit command: for --rm containers, remove everything."""
    try:
        row = eng.db.lookup("containers", ref)
    except NoSuchObject:
        return
    _event(eng, row, "cleanup")
    if remove_container:
        remove(eng, row["id"], force=True, volumes=True)


# --- reading --------------------------------------------------------------------------------


def _iso(ts: Optional[float]) -> str:
    if not ts:
        return "0001-01-01T00:00:00Z"
    secs = int(ts)
    frac = int((ts - secs) * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def status_text(row: Dict[str, Any], now: Optional[float] = None) -> str:
    """podman ps's STATUS column."""
    from podpy.output import format_ago

    state = row.get("state") or {}
    status = row["status"]
    if status == "running":
        from podpy.output import format_duration

        return "Up " + format_duration(time.time() - (state.get("started_at") or row["created"]))
    if status == "paused":
        return "Paused"
    if status == "created":
        return "Created"
    return f"Exited ({row.get('exit_code') or 0}) " + format_ago(state.get("finished_at") or now)


def inspect(eng: Engine, ref: str) -> Dict[str, Any]:
    """podman's container inspect JSON (the keys scripts use)."""
    row = lookup(eng, ref)
    config = row["config"]
    state = row.get("state") or {}
    create_opts = config.get("create_options") or {}
    run_opts = config.get("run_options") or {}
    image_cfg = (config.get("image_config") or {}).get("config") or {}
    status = row["status"]
    command = config.get("command") or []
    return {
        "Id": row["id"],
        "Created": _iso(row["created"]),
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": {
            "OciVersion": "1.0.2-dev",
            "Status": status,
            "Running": status in RUNNING_STATES,  # podman: a paused container is still running
            "Paused": status == "paused",
            "Restarting": False,
            "OOMKilled": bool(state.get("oom_killed")),
            "Dead": False,
            "Pid": row.get("pid") or 0,
            "ConmonPid": state.get("monitor_pid") or 0,
            "ExitCode": row.get("exit_code") or 0,
            "Error": "",
            "StartedAt": _iso(state.get("started_at")),
            "FinishedAt": _iso(state.get("finished_at")),
        },
        "Image": row.get("image_id"),
        "ImageName": config.get("image_name"),
        "Rootfs": "",
        "Pod": row.get("pod_id") or "",
        "ResolvConfPath": os.path.join(config["bundle"], "net", "resolv.conf"),
        "HostnamePath": os.path.join(config["bundle"], "net", "hostname"),
        "HostsPath": os.path.join(config["bundle"], "net", "hosts"),
        "StaticDir": config["bundle"],
        "OCIConfigPath": os.path.join(config["bundle"], "config.json"),
        "OCIRuntime": config.get("runtime") or "podpy",
        "LogPath": config["log"]["path"],
        "Name": row["name"],
        "RestartCount": 0,
        "Driver": config["rootfs"]["driver"],
        "MountLabel": "",
        "ProcessLabel": "",
        "Mounts": [
            _mount_json(v, config.get("volumes") or []) for v in run_opts.get("volumes") or []
        ],
        "Dependencies": [],
        "NetworkSettings": {
            "IPAddress": "",
            "Gateway": "",
            "MacAddress": "",
            "Ports": _ports_json(state.get("ports") or []),
            "SandboxKey": f"/proc/{row['pid']}/ns/net" if row.get("pid") else "",
            **_network_settings(eng, row),
        },
        "Namespace": "",
        "IsInfra": bool(config.get("infra")),
        "Config": {
            "Hostname": run_opts.get("hostname") or row["id"][:12],
            "User": run_opts.get("user") or image_cfg.get("User") or "",
            "Env": list(image_cfg.get("Env") or []) + list(run_opts.get("env") or []),
            "Cmd": create_opts.get("command") or image_cfg.get("Cmd"),
            "Image": config.get("image_name"),
            "WorkingDir": run_opts.get("workdir") or image_cfg.get("WorkingDir") or "/",
            "Entrypoint": " ".join(
                create_opts.get("entrypoint") or image_cfg.get("Entrypoint") or []
            ),
            "Labels": config.get("labels") or {},
            "StopSignal": signal_number(config.get("stop_signal", "SIGTERM")),
            "StopTimeout": config.get("stop_timeout", 10),
            "Tty": bool(config.get("tty")),
            "OpenStdin": bool(config.get("stdin")),
            "CreateCommand": create_opts.get("create_command") or [],
        },
        "HostConfig": {
            "Binds": list(run_opts.get("volumes") or []),
            "AutoRemove": bool(config.get("remove")),
            "LogConfig": {
                "Type": config["log"]["driver"],
                "Config": None,
                "Path": config["log"]["path"],
                "Size": str(config["log"].get("max_size", -1)),
            },
            "NetworkMode": create_opts.get("network")
            or ("slirp4netns" if eng.paths.rootless else "bridge"),
            "Privileged": bool(run_opts.get("privileged")),
            "ReadonlyRootfs": bool(run_opts.get("read_only")),
            "CapAdd": run_opts.get("cap_add") or [],
            "CapDrop": run_opts.get("cap_drop") or [],
            "Memory": run_opts.get("memory") or 0,
            "PidsLimit": run_opts.get("pids_limit") or 0,
            "Init": bool(run_opts.get("init")),
            "Tmpfs": {
                t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "")
                for t in run_opts.get("tmpfs") or []
            },
        },
    }


def _network_settings(eng: Engine, row: Dict[str, Any]) -> Dict[str, Any]:
    """IPAddress/Gateway/Networks for containers on user-defined networks."""
    if (row["config"].get("network") or {}).get("mode") != "bridge":
        return {}
    from podpy.engine import networks

    return networks.container_settings(eng, row)


def _ports_json(ports: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for p in ports:
        out.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": p.get("host_ip") or "", "HostPort": str(p["host_port"])}
        )
    return out


def _mount_json(spec: str, volumes: Sequence[Dict[str, Any]] = ()) -> Dict[str, Any]:
    parts = spec.split(":")
    options = parts[2].split(",") if len(parts) > 2 else []
    mount = {
        "Type": "bind",
        "Source": parts[0],
        "Destination": parts[1] if len(parts) > 1 else parts[0],
        "Driver": "",
        "Mode": "",
        "Options": ["rbind"],
        "RW": "ro" not in options,
        "Propagation": "rprivate",
    }
    for vol in volumes:  # a named/anonymous volume (podpy.engine.volumes), shown as podman does
        if vol.get("mountpoint") == parts[0] and vol.get("destination") == mount["Destination"]:
            mount.update({"Type": "volume", "Name": vol["name"], "Driver": "local"})
            mount["Options"] = ["nosuid", "nodev", "rbind"]
            break
    return mount


def log_path(eng: Engine, ref: str) -> Dict[str, Any]:
    row = lookup(eng, ref)
    log = row["config"]["log"]
    if log["driver"] != "k8s-file":
        raise PodpyError(
            f'container {row["name"]} uses the "{log["driver"]}" log driver, which keeps no log',
            hint="run it with --log-driver k8s-file to read its logs",
        )
    return row


def logs(
    eng: Engine,
    refs: Sequence[str],
    follow: bool = False,
    since: Optional[float] = None,
    until: Optional[float] = None,
    tail: int = -1,
    write: Any = None,
) -> None:
    """Replay k8s-file logs (stdout to write(1, ...), stderr to write(2, ...)); -f follows."""
    from podpy.monitor import logfile

    rows = [log_path(eng, r) for r in refs]
    for row in rows:
        path = row["config"]["log"]["path"]
        records, offset = logfile.read_records(path)
        records = list(logfile.join_partials(records))
        records = [
            r
            for r in records
            if (since is None or r.time >= since) and (until is None or r.time <= until)
        ]
        if tail >= 0:
            records = records[-tail:] if tail else []
        for rec in records:
            write(rec)
        while follow:
            fresh = eng.db.get("containers", row["id"])
            running = fresh is not None and refresh(eng, fresh)["status"] in RUNNING_STATES
            more, offset = logfile.read_records(path, offset)
            for rec in logfile.join_partials(more):
                if until is None or rec.time <= until:
                    write(rec)
            if not running and not more:
                break
            time.sleep(0.1)
