"""Monitor start-up work that needs privileges: enter the user namespace (same pid), take a
private mount namespace, mount the container's rootfs there, and write the OCI bundle.

The mount namespace is the monitor's own, so the rootfs mount disappears with the monitor and
its container: a killed monitor cannot leak a mount on the host.
"""

from __future__ import annotations

import os
from typing import Any, Dict


def enter_namespaces(spec: Dict[str, Any]) -> None:
    from podpy import linux

    if spec.get("rootless"):
        from podpy import rootless

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
        )
    return merged


def unmount_rootfs(spec: Dict[str, Any]) -> None:
    """Detach the rootfs before the cleanup command (which runs in this mount namespace)."""
    from podpy import linux

    try:
        linux.umount2(spec["rootfs"]["merged"], linux.MNT_DETACH)
    except OSError:
        pass  # never mounted (start failed early) or already gone


def write_bundle(spec: Dict[str, Any], rootfs: str) -> None:
    """Generate config.json now that the image's /etc/passwd is readable (podman does this at
    init time too, so a bad --user fails at start, as there)."""
    from podpy.spec.generate import RunOptions, generate, write_network_files
    from podpy.spec.generate import write_bundle as write_config

    fields = dict(spec["run_options"])
    fields["container_id"] = spec["id"]
    fields["rootfs"] = rootfs
    opts = RunOptions(**fields)
    hostname = opts.hostname or spec["id"][:12]
    mounts = write_network_files(
        os.path.join(spec["bundle"], "net"),
        hostname,
        spec.get("name"),
        dns_servers=opts.dns_servers,
        add_hosts=opts.add_hosts,
    )
    opts.mounts = list(opts.mounts) + mounts
    config = generate(spec.get("image_config"), opts)
    write_config(spec["bundle"], config)
