"""Pods: a group of containers sharing the net, ipc and uts namespaces of one infra container.

The infra container is an ordinary container row (flagged `infra` in its config) whose root is
a small directory built here holding /pause, a ~200-byte static executable that podpy/pause.py
assembles (x86_64, aarch64; podman runs catatonit -P). On other machines the root gets the host's
/usr bound read-only and pause.py, run by the host's python3. The infra goes through the normal
container path, so its monitor sets up the pod's network (slirp4netns rootless, the podpy0
bridge as root) and publishes the pod's ports. Members are created with
`--network container:<infra>` and, when started, also join the infra's ipc, uts and (rootless)
user namespaces and see its /etc/hosts, /etc/hostname and /etc/resolv.conf.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

from podpy.errors import AlreadyExists, InvalidState, NoSuchObject, PodpyError

if TYPE_CHECKING:
    from podpy.engine import Engine
    from podpy.engine.types import CreateOptions

SHARED_NAMESPACES = ["uts", "ipc", "net"]
INFRA_IMAGE_NAME = "localhost/podpy-pause:latest"
# What the infra root needs from the host besides /usr (merged-/usr hosts have symlinks here).
_HOST_TOP_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


# --- lookup -----------------------------------------------------------------------------------


def lookup(eng: Engine, ref: str) -> Dict[str, Any]:
    """A pod by full id, name or unique id prefix."""
    found = eng.db.find_id("pods", ref)
    row = eng.db.get("pods", found) if found else None
    if row is None:
        raise NoSuchObject(f"no pod with name or ID {ref} found: no such pod")
    return row


def containers_of(eng: Engine, pod_id: str) -> List[Dict[str, Any]]:
    """The pod's containers (infra first), with their state re-synced."""
    from podpy.engine import containers

    rows = [containers.refresh(eng, r) for r in eng.db.list("containers", {"pod_id": pod_id})]
    rows.sort(key=lambda r: (not _is_infra(r), r["created"]))
    return rows


def _is_infra(row: Dict[str, Any]) -> bool:
    return bool((row.get("config") or {}).get("infra"))


def status(rows: Sequence[Dict[str, Any]]) -> str:
    """podman's pod state from its containers' states (libpod GetPodStatus)."""
    if not rows:
        return "Created"
    states = [r["status"] for r in rows]
    total = len(states)
    running = states.count("running")
    if states.count("created") == total:
        return "Created"
    if running == total:
        return "Running"
    if running:
        return "Degraded"
    if states.count("paused") == total:
        return "Paused"
    if states.count("stopped") == total:
        return "Stopped"
    if "exited" in states or "stopped" in states:
        return "Exited"
    return "Created"


# --- create -----------------------------------------------------------------------------------


def create(
    eng: Engine,
    name: Optional[str] = None,
    publish: Sequence[str] = (),
    network: Optional[str] = None,
    labels: Optional[Dict[str, str]] = None,
    infra: bool = True,
    hostname: Optional[str] = None,
    create_command: Optional[List[str]] = None,
) -> Dict[str, Any]:
    """Record a pod and create (not start) its infra container. Nothing is left on failure."""
    from podpy.engine import containers

    if name is not None and not containers.NAME_RE.match(name):
        raise PodpyError(
            f"pod name {name!r} is invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )
    if name and eng.db.get_by_name("pods", name) is not None:
        raise AlreadyExists(
            f'adding pod to state: name "{name}" is in use: pod already exists',
            hint="choose another name, or remove the pod with `podpy pod rm`",
        )
    if not infra and (publish or network):
        raise PodpyError(
            "you must have an infra container to publish port bindings or set the network of a pod",
            hint="drop --no-infra, or set ports and networks on each container",
        )
    pod_id = secrets.token_hex(32)
    name = name or _random_pod_name(eng)
    now = time.time()
    config = {
        "labels": dict(labels or {}),
        "infra": infra,
        "publish": list(publish),
        "network": network,
        "hostname": hostname or name,
        "create_command": list(create_command or []),
        "shared_namespaces": SHARED_NAMESPACES if infra else [],
        "infra_id": None,
    }
    row = {
        "id": pod_id,
        "name": name,
        "created": now,
        "status": "created",
        "config": config,
        "state": {},
    }
    try:
        eng.db.insert("pods", row)
    except AlreadyExists as err:
        raise AlreadyExists(
            f'adding pod to state: name "{name}" is in use: pod already exists'
        ) from err
    if infra:
        try:
            infra_row = _create_infra(eng, pod_id, name, config)
        except BaseException:
            eng.db.delete("pods", pod_id)
            raise
        config["infra_id"] = infra_row["id"]
        eng.db.update("pods", pod_id, config=config)
    eng.db.add_event("pod", "create", name=name, object_id=pod_id)
    return eng.db.get("pods", pod_id) or row


def _random_pod_name(eng: Engine) -> str:
    from podpy.engine.containers import _ADJECTIVES, _NAMES

    for _ in range(50):
        name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NAMES)}"
        if eng.db.get_by_name("pods", name) is None:
            return name
    return "pod_" + secrets.token_hex(4)


def _python_for_infra() -> str:
    """The host python3 the infra runs; its installation is bound into the infra's root."""
    exe = os.path.realpath(sys.executable)
    if not os.access(exe, os.X_OK):
        raise PodpyError(f"the pod infra process needs python3, and {exe} is not executable")
    return exe


def _python_prefix() -> Optional[str]:
    """The python installation's directory when it lives outside /usr (pyenv, /opt)."""
    prefix = os.path.realpath(sys.base_prefix)
    return None if prefix == "/usr" or prefix.startswith("/usr/") else prefix


def _pause_source() -> bytes:
    import pkgutil

    data = pkgutil.get_data("podpy", "pause.py")
    if not data:
        raise PodpyError("podpy's pause script is missing from this build")
    return data


def _build_infra_root(root: str, elf: Optional[bytes]) -> None:
    """A minimal root: /etc and /pause (the ELF); without one, mount points for /usr and the
    host's top-level lib dirs, and pause.py for the host's python3."""
    from podpy.atomic import write_atomic

    os.makedirs(root, mode=0o755)
    for sub in ("etc", "proc", "sys", "dev", "tmp", "run"):
        os.makedirs(os.path.join(root, sub), mode=0o755, exist_ok=True)
    etc = os.path.join(root, "etc")
    write_atomic(os.path.join(etc, "passwd"), b"root:x:0:0:root:/:/sbin/nologin\n", mode=0o644)
    write_atomic(os.path.join(etc, "group"), b"root:x:0:\n", mode=0o644)
    for name in ("hosts", "hostname", "resolv.conf"):
        write_atomic(os.path.join(etc, name), b"", mode=0o644)
    if elf is not None:
        write_atomic(os.path.join(root, "pause"), elf, mode=0o755)
        return
    os.makedirs(os.path.join(root, "usr"), mode=0o755)
    for top in _HOST_TOP_DIRS:
        host = "/" + top
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(root, top))
        elif os.path.isdir(host):
            os.makedirs(os.path.join(root, top), mode=0o755)
    write_atomic(os.path.join(root, "pause.py"), _pause_source(), mode=0o644)
    prefix = _python_prefix()
    if prefix:
        os.makedirs(root + prefix, mode=0o755, exist_ok=True)


def _create_infra(eng: Engine, pod_id: str, pod_name: str, pod_config: Dict[str, Any]) -> Any:
    from podpy.engine import containers
    from podpy.engine.types import CreateOptions
    from podpy.pause import elf_pause

    elf = elf_pause()
    command = ["/pause"] if elf is not None else [_python_for_infra(), "-I", "-S", "/pause.py"]
    opts = CreateOptions(
        image=INFRA_IMAGE_NAME,
        command=command,
        name=f"{pod_id[:12]}-infra",
        hostname=pod_config["hostname"],
        network=pod_config.get("network"),
        publish=list(pod_config.get("publish") or []),
    )
    network = containers._network_spec(eng, opts, {})
    fields = containers._run_options(eng, opts, {})
    fields["volumes"] = [] if elf is not None else [f"/{d}:/{d}:ro" for d in _host_bind_dirs()]
    if elf is None and _python_prefix():
        fields["volumes"].append(f"{_python_prefix()}:{_python_prefix()}:ro")
    cid = secrets.token_hex(32)
    cdir = containers.container_dir(eng, cid)
    merged = os.path.join(cdir, "rootfs")
    config = {
        "image": INFRA_IMAGE_NAME,
        "image_name": INFRA_IMAGE_NAME,
        "image_id": None,
        "command": list(opts.command),
        "create_options": {"command": list(opts.command), "network": opts.network},
        "run_options": fields,
        "image_config": {},
        "rootfs": {"driver": "dir", "lower": [], "upper": merged, "work": "", "merged": merged},
        "bundle": os.path.join(cdir, "userdata"),
        "log": {
            "driver": "none",
            "path": os.path.join(cdir, "userdata", "ctr.log"),
            "max_size": -1,
        },
        "stop_signal": "SIGTERM",
        "stop_timeout": 10,
        "remove": False,
        "tty": False,
        "stdin": False,
        "runtime": getattr(eng.config.containers, "runtime", None),
        "labels": {},
        "sdnotify": "ignore",
        "sig_proxy": True,
        "network": network,
        "infra": True,
    }
    now = time.time()
    row = {
        "id": cid,
        "name": opts.name,
        "pod_id": pod_id,
        "image_id": None,
        "created": now,
        "config": config,
        "status": "created",
        "state": {},
        "updated": now,
    }
    try:
        _build_infra_root(merged, elf)
        os.makedirs(config["bundle"], mode=0o700, exist_ok=True)
        eng.db.insert("containers", row)
    except BaseException:
        containers._remove_dirs(eng, cid)
        raise
    containers._event(eng, row, "create")
    return row


def _host_bind_dirs() -> List[str]:
    dirs = ["usr"]
    for top in _HOST_TOP_DIRS:
        if os.path.isdir("/" + top) and not os.path.islink("/" + top):
            dirs.append(top)
    return dirs


# --- members ----------------------------------------------------------------------------------


def member_network(eng: Engine, opts: CreateOptions) -> Dict[str, Any]:
    """For `create/run --pod P|new:P`: the pod id and the member's network spec (the infra's
    namespace). `--pod new:NAME` creates the pod and moves -p to it, as podman does."""
    from podpy.engine import network_opts as netopts

    ref = opts.pod or ""
    if ref.startswith("new:"):
        pod = create(
            eng,
            name=ref[len("new:") :] or None,
            publish=list(opts.publish),
            network=opts.network,
        )
        created = True
    else:
        pod = lookup(eng, ref)
        created = False
        if opts.publish or opts.publish_all or opts.network:
            raise PodpyError(
                "invalid config provided: published or exposed ports must be defined when the "
                "pod is created: network cannot be configured when it is shared with a pod",
                hint=f"publish the ports with `podpy pod create -p ... {pod['name']}`",
            )
    infra_id = pod["config"].get("infra_id")
    if not infra_id:  # no infra: the member gets its own namespaces and default network
        spec = netopts.parse_network_spec(
            None,
            rootless=eng.paths.rootless,
            add_hosts=opts.add_host,
            dns=opts.dns,
            dns_search=opts.dns_search,
        )
        if spec.mode == netopts.MODE_BRIDGE and eng.paths.rootless:
            spec.mode, spec.options, spec.networks = netopts.MODE_SLIRP, {}, []
        network = spec.to_dict()
    else:
        network = netopts.parse_network_spec(
            f"container:{infra_id}", rootless=eng.paths.rootless
        ).to_dict()
    return {"pod_id": pod["id"], "network": network, "created_pod": created}


def join_pod_namespaces(eng: Engine, row: Dict[str, Any], run_options: Dict[str, Any]) -> Any:
    """Before a member starts: start the infra if needed, point run_options at its ipc and uts
    namespaces and /etc files; returns the user namespace path to join (rootless) or None."""
    from podpy.engine import containers

    pod = eng.db.get("pods", row.get("pod_id"))
    infra_id = (pod or {}).get("config", {}).get("infra_id")
    if not infra_id or infra_id == row["id"]:
        return None
    infra = containers.lookup(eng, infra_id)
    if infra["status"] not in containers.RUNNING_STATES:
        infra = containers.start(eng, infra_id)
    pid = infra.get("pid")
    if not pid:
        raise InvalidState(f"the infra container of pod {pod['name']} is not running")  # type: ignore[index]
    run_options["ipc_ns"] = f"/proc/{pid}/ns/ipc"
    run_options["uts_ns"] = f"/proc/{pid}/ns/uts"
    net_dir = os.path.join(infra["config"]["bundle"], "net")
    mounts = list(run_options.get("mounts") or [])
    for name in ("hosts", "hostname", "resolv.conf"):
        source = os.path.join(net_dir, name)
        if os.path.exists(source):
            mounts.append(
                {
                    "destination": "/etc/" + name,
                    "type": "bind",
                    "source": source,
                    "options": ["bind", "rprivate"],
                }
            )
    run_options["mounts"] = mounts
    return f"/proc/{pid}/ns/user" if eng.paths.rootless else None


# --- verbs ------------------------------------------------------------------------------------


def _each(rows: Sequence[Dict[str, Any]], action: Callable[[Dict[str, Any]], Any]) -> List[str]:
    """Apply action to every row; collect error messages instead of stopping at the first."""
    errors = []
    for r in rows:
        try:
            action(r)
        except PodpyError as err:
            errors.append(f"{r['name']}: {err.message}")
    return errors


def _raise_if(errors: List[str], what: str, pod: Dict[str, Any]) -> None:
    if errors:
        raise PodpyError(f"{what} pod {pod['id']}: " + "; ".join(errors))


def start(eng: Engine, ref: str) -> Dict[str, Any]:
    """Start the infra, then every member (already running ones are left alone)."""
    from podpy.engine import containers

    pod = lookup(eng, ref)
    rows = containers_of(eng, pod["id"])
    errors = _each(
        [r for r in rows if r["status"] not in containers.RUNNING_STATES],
        lambda r: containers.start(eng, r["id"]),
    )
    _raise_if(errors, "starting", pod)
    eng.db.add_event("pod", "start", name=pod["name"], object_id=pod["id"])
    return pod


def stop(eng: Engine, ref: str, timeout: Optional[int] = None) -> Dict[str, Any]:
    """Stop the members, then the infra (podman's order)."""
    from podpy.engine import containers

    pod = lookup(eng, ref)
    rows = containers_of(eng, pod["id"])
    members = [r for r in rows if not _is_infra(r)]
    errors = _each(members, lambda r: containers.stop(eng, r["id"], timeout))
    errors += _each(
        [r for r in rows if _is_infra(r)], lambda r: containers.stop(eng, r["id"], timeout)
    )
    _raise_if(errors, "stopping", pod)
    eng.db.add_event("pod", "stop", name=pod["name"], object_id=pod["id"])
    return pod


def restart(eng: Engine, ref: str) -> Dict[str, Any]:
    stop(eng, ref)
    return start(eng, ref)


def kill(eng: Engine, ref: str, sig: Any = "KILL") -> Dict[str, Any]:
    from podpy.engine import containers

    pod = lookup(eng, ref)
    running = [r for r in containers_of(eng, pod["id"]) if r["status"] in containers.RUNNING_STATES]
    if not running:
        raise InvalidState(f"pod {pod['id']} has no running containers: container state improper")
    containers.signal_number(sig)
    errors = _each(running, lambda r: containers.kill(eng, r["id"], sig))
    _raise_if(errors, "killing", pod)
    eng.db.add_event("pod", "kill", name=pod["name"], object_id=pod["id"])
    return pod


def remove(eng: Engine, ref: str, force: bool = False) -> str:
    """Remove the pod and its containers; running ones only with force (they are killed)."""
    from podpy.engine import containers

    pod = lookup(eng, ref)
    rows = containers_of(eng, pod["id"])
    running = [r for r in rows if r["status"] in containers.RUNNING_STATES]
    if running and not force:
        raise InvalidState(
            f"pod {pod['id']} has containers that are not ready to be removed: cannot remove "
            "container as it is running - running or paused containers cannot be removed "
            "without force: container state improper",
            hint="stop the pod first, or use `podpy pod rm -f`",
        )
    members = [r for r in rows if not _is_infra(r)]
    errors = _each(members, lambda r: containers.remove(eng, r["id"], force=True))
    errors += _each(
        [r for r in rows if _is_infra(r)],
        lambda r: containers.remove(eng, r["id"], force=True, pod_removal=True),
    )
    _raise_if(errors, "removing", pod)
    eng.db.delete("pods", pod["id"])
    eng.db.add_event("pod", "remove", name=pod["name"], object_id=pod["id"])
    return pod["id"]


def prune(eng: Engine) -> List[str]:
    """Remove every stopped or exited pod (podman's PrunePods: a Created pod stays)."""
    removed = []
    for pod in eng.db.list("pods", order_by="created"):
        if status(containers_of(eng, pod["id"])) in ("Stopped", "Exited"):
            removed.append(remove(eng, pod["id"], force=True))
    return removed


def top(eng: Engine, ref: str, descriptors: Sequence[str] = ()) -> List[List[str]]:
    """podman pod top: the processes of every running container, with one header row."""
    from podpy.engine import container_ops

    pod = lookup(eng, ref)
    table: List[List[str]] = []
    for r in containers_of(eng, pod["id"]):
        if r["status"] != "running":
            continue
        rows = container_ops.top(eng, r["id"], descriptors)
        table.extend(rows if not table else rows[1:])
    if not table:
        raise InvalidState(f"pod {pod['id']} is not running: no running containers in the pod")
    return table


def list_pods(eng: Engine) -> List[Dict[str, Any]]:
    """Rows for `pod ps`: the pod, its containers and its computed status."""
    from podpy.output import format_ago

    out = []
    for pod in eng.db.list("pods", order_by="created DESC"):
        rows = containers_of(eng, pod["id"])
        infra_id = pod["config"].get("infra_id") or ""
        out.append(
            {
                "Id": pod["id"],
                "ID": pod["id"][:12],
                "Name": pod["name"],
                "Status": status(rows),
                "Created": _iso(pod["created"]),
                "CreatedHuman": format_ago(pod["created"]),
                "InfraId": infra_id,
                "InfraID": infra_id[:12],
                "NumberOfContainers": len(rows),
                "Containers": [
                    {"Id": r["id"], "Names": r["name"], "Status": r["status"]} for r in rows
                ],
                "ContainerIds": ",".join(r["id"][:12] for r in rows),
                "ContainerNames": ",".join(r["name"] for r in rows),
                "ContainerStatuses": ",".join(r["status"] for r in rows),
                "Labels": pod["config"].get("labels") or {},
                "Networks": [pod["config"].get("network") or "podman"]
                if pod["config"].get("infra")
                else [],
            }
        )
    return out


_CTR_STATES = ("created", "running", "paused", "stopped", "exited", "unknown")
_POD_STATES = ("stopped", "running", "paused", "exited", "dead", "created", "degraded")


def _pod_filter(key: str, value: str) -> Callable[[Dict[str, Any]], bool]:
    """One `pod ps --filter KEY=VALUE` test of a list_pods() row (podman 4.3's keys)."""
    import re

    def ctrs(row: Dict[str, Any]) -> List[Dict[str, Any]]:
        return row["Containers"]

    if key == "id":  # a regular expression, as podman's (not an ID prefix)
        return lambda row: re.search(value, row["Id"]) is not None
    if key == "name":
        return lambda row: re.search(value, row["Name"]) is not None
    if key == "label":
        label, has_value, want = value.partition("=")
        return lambda row: label in row["Labels"] and (
            not has_value or row["Labels"][label] == want
        )
    if key == "status":
        if value.lower() not in _POD_STATES:
            raise PodpyError(f"{value} is not a valid pod status")
        return lambda row: row["Status"].lower() == value.lower()
    if key == "network":
        return lambda row: value in row["Networks"]
    if key == "ctr-names":
        return lambda row: any(re.search(value, c["Names"]) for c in ctrs(row))
    if key == "ctr-ids":
        return lambda row: any(c["Id"].startswith(value) for c in ctrs(row))
    if key == "ctr-status":
        if value not in _CTR_STATES:
            raise PodpyError(f"{value} is not a valid status")
        return lambda row: any(c["Status"] == value for c in ctrs(row))
    if key == "ctr-number":
        try:
            number = int(value)
        except ValueError:
            return lambda row: False  # podman matches nothing, without an error
        return lambda row: row["NumberOfContainers"] == number
    raise PodpyError(f"{key} is an invalid filter")


def filter_pods(rows: List[Dict[str, Any]], filters: Sequence[str]) -> List[Dict[str, Any]]:
    """`pod ps --filter`: values of one key OR, different keys AND (as podman)."""
    tests: Dict[str, List[Callable[[Dict[str, Any]], bool]]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise PodpyError(f"filter input must be in the form of filter=value: {item} is invalid")
        tests.setdefault(key, []).append(_pod_filter(key, value))
    return [row for row in rows if all(any(t(row) for t in ts) for ts in tests.values())]


def _iso(ts: float) -> str:
    from podpy.engine.containers import _iso as iso

    return iso(ts)


def inspect(eng: Engine, ref: str) -> Dict[str, Any]:
    """podman 4's pod inspect JSON."""
    pod = lookup(eng, ref)
    config = pod["config"]
    rows = containers_of(eng, pod["id"])
    infra_id = config.get("infra_id") or ""
    bindings: Dict[str, Any] = {}
    infra = next((r for r in rows if r["id"] == infra_id), None)
    for port in ((infra or {}).get("config") or {}).get("network", {}).get("ports") or []:
        bindings.setdefault(f"{port['container_port']}/{port['protocol']}", []).append(
            {
                "HostIp": port.get("host_ip") or "",
                "HostPort": str(port["host_port"]) if port.get("host_port") else "",
            }
        )
    result: Dict[str, Any] = {
        "Id": pod["id"],
        "Name": pod["name"],
        "Created": _iso(pod["created"]),
        "CreateCommand": config.get("create_command") or [],
        "ExitPolicy": "continue",
        "State": status(rows),
        "Hostname": config.get("hostname") or "",
        "Labels": config.get("labels") or {},
        "CreateCgroup": True,
        "CgroupParent": "/podpy_parent",
        "CgroupPath": f"/podpy_parent/{pod['id']}",
        "CreateInfra": bool(config.get("infra")),
        "InfraContainerID": infra_id,
        "SharedNamespaces": list(config.get("shared_namespaces") or []),
        "NumContainers": len(rows),
        "Containers": [{"Id": r["id"], "Name": r["name"], "State": r["status"]} for r in rows],
    }
    if config.get("infra"):
        network = config.get("network")
        result["InfraConfig"] = {
            "PortBindings": bindings,
            "HostNetwork": network == "host",
            "StaticIP": "",
            "StaticMAC": "",
            "NoManageResolvConf": False,
            "DNSServer": None,
            "DNSSearch": None,
            "DNSOption": None,
            "NoManageHosts": False,
            "HostAdd": None,
            "Networks": [network or ("slirp4netns" if eng.paths.rootless else "podman")],
            "NetworkOptions": None,
            "pid_ns": "private",
            "userns": "host",
            "uts_ns": "private",
        }
    return result
