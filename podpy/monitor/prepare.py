"""Monitor start-up work that needs privileges: enter the user namespace (same pid), take a
private mount namespace, mount the container's rootfs there, and write the OCI bundle.

The mount namespace is the monitor's own, so the rootfs mount disappears with the monitor and
its container: a killed monitor cannot leak a mount on the host.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional


def enter_namespaces(spec: Dict[str, Any]) -> None:
    from podpy import linux

    if spec.get("rootless"):
        from podpy import rootless

        # A pod member joins its infra's user namespace; a container on user-defined
        # networks joins the rootless netns' one (so a veth can link the two).
        bridge = (spec.get("network") or {}).get("bridge") or {}
        join = spec.get("userns_path") or bridge.get("userns_path")
        if join:
            rootless.join_userns_in_place(join)
        else:
            rootless.enter_userns_in_place()
    linux.unshare(linux.CLONE_NEWNS)
    linux.make_rprivate("/")


def mount_rootfs(spec: Dict[str, Any]) -> str:
    rootfs = spec["rootfs"]
    merged = rootfs["merged"]
    if rootfs["driver"] == "overlay":
        from podpy.runtime.mounts import mount_overlay

        os.makedirs(merged, exist_ok=True)
        # overlay wants the top-most layer first; the store lists base first.
        mount_overlay(
            list(reversed(rootfs["lower"])),
            rootfs["upper"],
            rootfs["work"],
            merged,
            userxattr=bool(spec.get("rootless")),
            volatile=bool(spec.get("remove")),  # as podman: a --rm container's upper is scratch
        )
    return merged


def unmount_rootfs(spec: Dict[str, Any]) -> None:
    """Detach the rootfs before the cleanup command (which runs in this mount namespace)."""
    from podpy import linux

    try:
        linux.umount2(spec["rootfs"]["merged"], linux.MNT_DETACH)
    except OSError:
        pass  # never mounted (start failed early) or already gone


def etc_file_contents(
    network: Dict[str, Any], hostname: str, container_name: str
) -> Optional[Dict[str, Optional[str]]]:
    """hosts, hostname and resolv.conf for a container on `network` (None: the joined
    namespace's owner provides them). The engine calls this when it writes the monitor's
    spec: its modules are loaded there already, and the monitor then imports neither the
    network spec nor dataclasses (~20 ms of every start)."""
    from netns_helpers.files import container_etc_files
    from podpy.engine.network_opts import NetworkSpec

    net = network or {"mode": "none"}
    if net.get("mode") in ("container", "ns"):
        return None
    bridge_links = (net.get("bridge") or {}).get("interfaces") or []
    addresses = {}
    if bridge_links:  # user-defined networks: the IPAM address; the host is the gateway
        addresses = {
            "container_ips": [link["address"] for link in bridge_links],
            "host_ip": bridge_links[0]["gateway"],
        }
    return container_etc_files(
        NetworkSpec.from_dict(net),
        hostname=hostname,
        container_name=container_name,
        **addresses,
    )


def _etc_files(spec: Dict[str, Any], directory: str, hostname: str) -> List[Dict[str, Any]]:
    """Write hosts, hostname and resolv.conf for this container; their bind mounts."""
    from podpy.atomic import write_atomic

    if "etc_files" in spec:
        contents = spec["etc_files"]
    else:  # a spec from an engine that did not compute them
        contents = etc_file_contents(spec.get("network"), hostname, spec.get("name") or "")
    if contents is None:
        return []
    os.makedirs(directory, exist_ok=True)
    mounts = []
    for filename, content in contents.items():
        if content is None:
            continue
        path = os.path.join(directory, filename)
        # No fsync: regenerated at every start, a crash loses nothing that matters.
        write_atomic(path, content.encode(), mode=0o644, durable=False)
        mounts.append(
            {
                "destination": "/etc/" + filename,
                "type": "bind",
                "source": path,
                "options": ["bind", "rprivate"],
            }
        )
    return mounts


def write_bundle(spec: Dict[str, Any], rootfs: str) -> None:
    """Generate config.json now that the image's /etc/passwd is readable (podman does this at
    init time too, so a bad --user fails at start, as there)."""
    from podpy.runtime.oci import BUILTIN_NAMES
    from podpy.spec.generate import RunOptions, generate
    from podpy.spec.generate import write_bundle as write_config

    fields = dict(spec["run_options"])
    fields["container_id"] = spec["id"]
    fields["rootfs"] = rootfs
    if fields.get("init") and spec.get("runtime") not in BUILTIN_NAMES:
        # runc/crun have no init of their own: podman's catatonit, as podman does.
        init_path = spec.get("init_path")
        if not init_path:
            from podpy.config.containers import DEFAULT_INIT_PATH as init_path
        fields["init_binary"] = init_path
    opts = RunOptions(**fields)
    hostname = opts.hostname or spec["id"][:12]
    mounts = _etc_files(spec, os.path.join(spec["bundle"], "net"), hostname)
    opts.mounts = list(opts.mounts) + mounts
    config = generate(spec.get("image_config"), opts)
    write_config(spec["bundle"], config, durable=False)  # regenerated at every start
    if spec.get("volumes"):
        from podpy.engine.volumes import copy_up

        # Here, as root of the container's user namespace with the rootfs mounted: owners kept.
        copy_up(spec["volumes"], rootfs, (config.get("process") or {}).get("user") or {})
