"""System verbs behind `podpy version`, `info` and `doctor`: gather facts into podman-shaped data."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from podpy import __version__
from podpy.errors import PodpyError

if TYPE_CHECKING:
    from podpy.doctor import DoctorReport
    from podpy.engine import Engine
    from podpy.hostinfo import Host, UserInfo

# The podman API level podpy's commands and output mirror.
API_VERSION = "4.3.1"
# statfs names podman (containers/storage) prints as the backing filesystem.
BACKING_FS_NAMES = {"ext2": "extfs", "ext3": "extfs", "ext4": "extfs"}


def _zipapp_path() -> Optional[str]:
    """The .pyz we run from, if any (its mtime is the build time)."""
    here = os.path.abspath(__file__)
    marker = here.find(".pyz" + os.sep)
    return here[: marker + 4] if marker >= 0 else None


def version_info() -> Dict[str, Any]:
    """Podman's `version` structure (`Client`), with PythonVersion in place of GoVersion."""
    from podpy.hostinfo import go_arch

    built = 0
    archive = _zipapp_path()
    if archive:
        try:
            built = int(os.stat(archive).st_mtime)
        except OSError:
            built = 0
    arch = go_arch(platform.machine())
    return {
        "APIVersion": API_VERSION,
        "Version": __version__,
        "PythonVersion": f"python{platform.python_version()}",
        "GitCommit": "",
        "BuiltTime": time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(built)),
        "Built": built,
        "OsArch": f"linux/{arch}",
        "Os": "linux",
    }


def version(engine: Optional[Engine] = None) -> Dict[str, Any]:
    return {"Client": version_info()}


# -- info ----------------------------------------------------------------------------------


def _tool(host: Host, name: str, flag: str = "--version") -> Dict[str, str]:
    from podpy.hostinfo import dpkg_package, tool_version

    path = host.which(name)
    if not path:
        return {"executable": "", "package": "", "version": ""}
    return {
        "executable": path,
        "package": dpkg_package(host, path),
        "version": tool_version(host, path, flag),
    }


def _idmap_helper(host: Host, name: str) -> Dict[str, Any]:
    from podpy.hostinfo import idmap_helper

    info = idmap_helper(host, name)
    package = info.get("package", "")
    # shadow's helpers have no --version: the package version is the honest answer.
    parts = package.split("_")
    info["version"] = parts[1] if len(parts) == 3 else ""
    return info


def _mappings(host: Host, user: UserInfo) -> Tuple[Any, Any, Dict[str, List[Dict[str, int]]]]:
    from podpy.hostinfo import subid_ranges
    from podpy.idmap import build_mappings

    uids = subid_ranges(host, "/etc/subuid", user)
    gids = subid_ranges(host, "/etc/subgid", user)
    ranges = {
        "uids": [{"start": r.start, "count": r.count} for r in uids],
        "gids": [{"start": r.start, "count": r.count} for r in gids],
    }
    if user.uid == 0:
        return None, None, ranges  # podman prints null maps for root

    def as_dicts(host_id: int, subs: List[Any]) -> List[Dict[str, int]]:
        return [
            {"container_id": m.container_id, "host_id": m.host_id, "size": m.size}
            for m in build_mappings(host_id, subs)
        ]

    return as_dicts(user.uid, uids), as_dicts(user.gid, gids), ranges


def _oci_runtime(host: Host, configured: str) -> Dict[str, Any]:
    """podpy's built-in runtime, plus which external runc/crun are around to choose instead."""
    available = []
    for name in ("runc", "crun"):
        path = host.which(name)
        if path:
            available.append({"name": name, "path": path})
    name = configured or "podpy"
    runtime = {
        "name": name,
        "package": f"podpy_{__version__}",
        "path": _zipapp_path() or sys.argv[0],
        "version": f"podpy built-in runtime {__version__}\nspec: 1.2.0",
        "builtin": name == "podpy",
        "available": available,
    }
    if name != "podpy":
        for entry in available:
            if entry["name"] == name:
                runtime.update(path=entry["path"], package="", version="")
    return runtime


def _disk_usage(path: str) -> Tuple[int, int, str]:
    """(allocated, used, existing path) for the filesystem holding path or its nearest ancestor."""
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        st = os.statvfs(probe or "/")
    except OSError:
        return 0, 0, probe
    return st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize, probe


def _backing_fs(host: Host, path: str) -> str:
    best, fstype = "", ""
    for line in (host.read_text("/proc/self/mountinfo") or "").splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        point = fields[4]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, right.split()[0]
    return BACKING_FS_NAMES.get(fstype, fstype)


def _counts(engine: Engine) -> Dict[str, int]:
    try:
        return dict(engine.db.counts())
    except PodpyError:
        raise
    except OSError as err:
        raise PodpyError(
            f"cannot open the state database {engine.paths.db_file}: {err.strerror or err}",
            hint="check that the graph root is writable by this user",
        ) from err


def _config_parts(engine: Engine) -> Tuple[Any, str, List[str], str, str, str, str]:
    """(config, storage.conf path, search registries, runtime, cgroup manager, events, log driver)."""
    config = engine.config
    containers = getattr(config, "containers", None)
    registries = getattr(config, "registries", None)
    storage_conf = getattr(getattr(config, "storage", None), "source", None) or ""
    if not storage_conf:
        # Like podman: name the file this user would edit, even when none exists yet.
        from podpy.paths import config_home

        env = engine.options.env
        storage_conf = (
            os.path.join(config_home(env), "containers", "storage.conf")
            if engine.paths.rootless
            else "/etc/containers/storage.conf"
        )
    return (
        config,
        storage_conf,
        list(getattr(registries, "search_registries", None) or []),
        getattr(containers, "runtime", "") or "podpy",
        getattr(containers, "cgroup_manager", "") or "cgroupfs",
        getattr(containers, "events_logger", "") or "file",
        getattr(containers, "log_driver", "") or "k8s-file",
    )


def info(engine: Engine, host: Optional[Host] = None) -> Dict[str, Any]:
    """Podman's `info` structure (lower-camel keys), plus podpy's rootless diagnostics."""
    from podpy import hostinfo

    host = host or hostinfo.Host(engine.options.env)
    user = host.user()
    if user is None:
        raise PodpyError(
            f"uid {host.euid} has no passwd entry", hint="add the user to /etc/passwd (useradd)"
        )
    paths = engine.paths
    rootless = paths.rootless
    config, storage_conf, search, runtime, cgroup_manager, events, log_driver = _config_parts(
        engine
    )

    probes = hostinfo.probe_storage(host, user, paths.graph_root)
    driver, reason, mount_program = hostinfo.choose_storage_driver(config, probes)
    hostname, kernel, machine = host.uname()
    uidmap, gidmap, ranges = _mappings(host, user)
    fuse_tool = _tool(host, "fuse-overlayfs")
    counts = _counts(engine)
    containers_total = counts.get("containers", 0)
    running = counts.get("containers_running", 0)
    paused = counts.get("containers_paused", 0)
    allocated, used, _ = _disk_usage(paths.graph_root)
    swap = {"SwapTotal": 0, "SwapFree": 0}
    for line in (host.read_text("/proc/meminfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key in swap and value.split():
            swap[key] = int(value.split()[0]) * 1024

    graph_options: Dict[str, Any] = {}
    if mount_program:
        graph_options["overlay.mount_program"] = {
            "Executable": mount_program,
            "Package": fuse_tool["package"],
            "Version": fuse_tool["version"],
        }
    graph_status: Dict[str, str] = {}
    if driver == "overlay":
        graph_status = {
            "Backing Filesystem": _backing_fs(host, paths.graph_root),
            "Native Overlay Diff": "true" if mount_program is None else "false",
            "Supports d_type": "true",
            "Using metacopy": "false",
        }
    fuse_ok, fuse_reason = hostinfo.device_usable(host, "/dev/fuse", user)
    security = {
        "apparmorEnabled": (host.read_text("/sys/module/apparmor/parameters/enabled") or "").strip()
        == "Y",
        "rootless": rootless,
        "seccompEnabled": True,
        "selinuxEnabled": host.exists("/sys/fs/selinux/enforce"),
    }
    host_info: Dict[str, Any] = {
        "arch": hostinfo.go_arch(machine),
        "cgroupControllers": hostinfo.cgroup_controllers(host, rootless, user.uid),
        "cgroupManager": cgroup_manager,
        "cgroupVersion": hostinfo.cgroup_version(host),
        "cpus": os.cpu_count() or 1,
        "distribution": hostinfo.distribution(host),
        "eventLogger": events,
        "hostname": hostname,
        "idMappings": {"gidmap": gidmap, "uidmap": uidmap},
        "kernel": kernel,
        "logDriver": log_driver,
        "memFree": hostinfo.mem_free(host),
        "memTotal": hostinfo.mem_total(host),
        "ociRuntime": _oci_runtime(host, runtime),
        "os": "linux",
        "security": security,
        "serviceIsRemote": False,
        "slirp4netns": _tool(host, "slirp4netns"),
        "swapFree": swap["SwapFree"],
        "swapTotal": swap["SwapTotal"],
        "uptime": hostinfo.uptime_text(host),
        # podpy's own rootless diagnostics (see `podpy doctor` for fixes)
        "user": {"name": user.name, "uid": user.uid, "gid": user.gid},
        "subIdRanges": ranges,
        "newuidmap": _idmap_helper(host, "newuidmap"),
        "newgidmap": _idmap_helper(host, "newgidmap"),
        "nativeOverlay": probes.native_overlay,
        "nativeOverlayReason": probes.native_overlay_error or "",
        "fuseOverlayfs": fuse_tool,
        "devFuse": {"path": "/dev/fuse", "usable": fuse_ok, "reason": fuse_reason},
    }
    store = {
        "configFile": storage_conf,
        "containerStore": {
            "number": containers_total,
            "paused": paused,
            "running": running,
            "stopped": max(containers_total - running - paused, 0),
        },
        "graphDriverName": driver,
        "graphDriverReason": reason,
        "graphOptions": graph_options,
        "graphRoot": paths.graph_root,
        "graphRootAllocated": allocated,
        "graphRootUsed": used,
        "graphStatus": graph_status,
        "imageCopyTmpDir": "/var/tmp",
        "imageStore": {"number": counts.get("images", 0)},
        "runRoot": paths.run_root,
        "volumePath": paths.volumes_dir,
        "volumeStore": {"number": counts.get("volumes", 0)},
    }
    return {
        "host": host_info,
        "store": store,
        "registries": {"search": search},
        "version": version_info(),
    }


# -- doctor --------------------------------------------------------------------------------


def doctor(
    engine: Engine, user_name: Optional[str] = None, host: Optional[Host] = None
) -> DoctorReport:
    """Rootless prerequisites for user_name (default: the caller; root alone gets root checks)."""
    from podpy import doctor as checks
    from podpy.hostinfo import Host as RealHost

    host = host or RealHost(engine.options.env)
    if user_name:
        user = host.user(user_name)
        if user is None:
            raise PodpyError(
                f'user "{user_name}" does not exist',
                hint="pass an existing login name or uid to --user",
            )
        if host.euid != 0 and user.uid != host.euid:
            raise PodpyError(
                f"checking another user ({user.name}) needs root",
                hint=f"run: sudo podpy doctor --user {user.name}",
            )
    elif host.euid == 0:
        user = None
    else:
        user = host.user()
        if user is None:
            raise PodpyError(
                f"uid {host.euid} has no passwd entry", hint="add the user to /etc/passwd (useradd)"
            )
    probe_dir = None
    if user is not None and user.uid != 0:
        env = dict(engine.options.env) if user.uid == host.euid else None
        probe_dir = checks.default_probe_dir(user, env)
    return checks.run_checks(host, user, probe_dir)


# -- df ------------------------------------------------------------------------------------


def disk_usage(eng: Engine) -> List[Dict[str, Any]]:
    """`podman system df`'s summary rows: Type, Total, Active, Size, Reclaimable (bytes).

    As podman: Images' Size counts each layer once, their Reclaimable is the size of the
    images no container uses; Containers' is their writable layers (reclaimable when not
    running); Local Volumes' is their data (reclaimable when no container uses them)."""
    from podpy.engine import containers, volumes
    from podpy.engine.images import store
    from podpy.storage.images import tree_size

    st = store(eng)
    rows = containers.list_containers(eng)
    image_rows = st.list()
    used_images = {r.get("image_id") for r in rows}
    layer_sizes: Dict[str, int] = {}
    image_reclaimable = 0
    for image in image_rows:
        for layer in st.layer_rows(image):
            layer_sizes[layer["id"]] = int(layer.get("size") or 0)
        if image.id not in used_images:
            image_reclaimable += image.size
    ctr_size = ctr_reclaimable = ctr_active = 0
    for row in rows:
        size = tree_size(os.path.join(containers.container_dir(eng, row["id"]), "diff"))
        ctr_size += size
        if row["status"] == "running":
            ctr_active += 1
        else:
            ctr_reclaimable += size
    used_by = volumes.usage(eng)
    vol_rows = eng.db.list("volumes")
    vol_size = vol_reclaimable = 0
    for vol in vol_rows:
        size = tree_size(os.path.join(eng.paths.volumes_dir, vol["name"], "_data"))
        vol_size += size
        if vol["name"] not in used_by:
            vol_reclaimable += size
    return [
        {
            "Type": "Images",
            "Total": len(image_rows),
            "Active": sum(1 for i in image_rows if i.id in used_images),
            "Size": sum(layer_sizes.values()),
            "Reclaimable": image_reclaimable,
        },
        {
            "Type": "Containers",
            "Total": len(rows),
            "Active": ctr_active,
            "Size": ctr_size,
            "Reclaimable": ctr_reclaimable,
        },
        {
            "Type": "Local Volumes",
            "Total": len(vol_rows),
            "Active": sum(1 for v in vol_rows if v["name"] in used_by),
            "Size": vol_size,
            "Reclaimable": vol_reclaimable,
        },
    ]


# -- prune ---------------------------------------------------------------------------------


def system_prune(
    eng: Engine, all_images: bool = False, with_volumes: bool = False, filters: Sequence[str] = ()
) -> Tuple[Dict[str, List[str]], List[Exception], int]:
    """`podman system prune`: stopped pods, stopped containers, unused networks, (with
    `with_volumes`) unused volumes, then dangling (or, `all_images`, unused) images.

    Returns the removed names per section (podman's print order), the container errors, and
    the bytes reclaimed (what `system df` counted before minus after)."""
    from podpy.engine import container_ops, images, networks, pods, volumes

    def used() -> int:
        return sum(int(row["Size"]) for row in disk_usage(eng))

    for item in filters:
        key = item.partition("=")[0]
        if key not in ("label", "until"):
            raise PodpyError(f"{key} is an invalid filter", hint="filters: until, label")
    labels = [f for f in filters if f.startswith("label=")]
    before = used()
    removed: Dict[str, List[str]] = {}
    errors: List[Exception] = []
    removed["Pods"] = pods.prune(eng)
    removed["Containers"] = []
    for cid, error in container_ops.prune(eng, filters):
        if error is None:
            removed["Containers"].append(cid)
        else:
            errors.append(error)
    removed["Networks"] = networks.prune(eng)
    if with_volumes:
        removed["Volumes"] = volumes.prune(eng, labels)
    removed["Images"] = images.prune(eng, all_images, labels)
    order = ("Containers", "Pods", "Networks", "Volumes", "Images")
    return {key: removed[key] for key in order if key in removed}, errors, max(0, before - used())
