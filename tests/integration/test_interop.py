"""Interoperability with the reference tools: what podpy pushes or saves, skopeo and podman read,
and what they push or save, podpy reads, with the same image IDs and digests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

pytestmark = pytest.mark.registry

Runner = Any
Podman = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def podman() -> Iterator[Podman]:
    """podman as root with a private vfs store (no mounts to leak), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("podman with a private --root needs root")
    base = Path(tempfile.mkdtemp(prefix="podpy-podman-"))
    argv = [
        "podman",
        "--root",
        str(base / "root"),
        "--runroot",
        str(base / "runroot"),
        "--storage-driver",
        "vfs",
    ]

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            argv + list(args), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )
        if check:
            assert result.returncode == 0, f"podman {args}: {result.stderr}"
        return result

    yield run
    run("system", "reset", "--force", check=False)
    shutil.rmtree(base, ignore_errors=True)


def _skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"skopeo {args}: {result.stderr}"
    return result.stdout


def _podman_id(podman: Podman, name: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def test_podpy_push_is_read_by_skopeo_and_podman(
    as_each: Runner, registry: Any, multilayer_image: str, multilayer_layout: Any, podman: Podman
) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", multilayer_image)
    for fmt in ("oci", "v2s2"):
        target = f"{registry.host}/interop-{as_each.uid}/pushed:{fmt}"
        digest_file = as_each.home / f"digest-{fmt}"
        as_each.ok(
            "push",
            "-q",
            "--tls-verify=false",
            "--format",
            fmt,
            "--digestfile",
            str(digest_file),
            multilayer_image,
            target,
        )
        info = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{target}"))
        assert info["Digest"] == digest_file.read_text().strip()
        assert info["Layers"] == multilayer_layout.layer_digests
        raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target}").encode()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == info["Digest"]
        podman("pull", "-q", "--tls-verify=false", target)
        assert _podman_id(podman, target) == multilayer_layout.image_id
        # podman sees the same files (whiteouts applied); vfs "mounts" are plain directories.
        rootfs = Path(podman("image", "mount", target).stdout.strip())
        try:
            assert (rootfs / "data" / "hello.txt").read_text() == "hello from layer 3\n"
            assert not (rootfs / "data" / "removed.txt").exists()
        finally:
            podman("image", "unmount", target, check=False)


def test_podman_push_is_pulled_by_podpy(
    as_each: Runner, registry: Any, busybox_image: str, busybox_layout: Any, podman: Podman
) -> None:
    # busybox_image itself was pushed by skopeo (the fixture); podpy pulls it.
    assert as_each.ok("pull", "-q", "--tls-verify=false", busybox_image).strip() == (
        busybox_layout.image_id
    )
    podman("pull", "-q", "--tls-verify=false", busybox_image)
    target = f"{registry.host}/interop-{as_each.uid}/from-podman:v2s2"
    podman("push", "-q", "--tls-verify=false", "--format", "v2s2", busybox_image, target)
    as_each.ok("rmi", "-a")
    pulled = as_each.podpy("pull", "-q", "--tls-verify=false", target)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == busybox_layout.image_id
    info = json.loads(as_each.ok("image", "inspect", target))[0]
    assert info["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json"


def test_archives_cross_between_podpy_and_podman(
    as_each: Runner,
    busybox_image: str,
    multilayer_image: str,
    multilayer_layout: Any,
    podman: Podman,
    shared_tmp: Path,
) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image, multilayer_image)
    ids: List[str] = as_each.ok("images", "-q", "--no-trunc").split()

    # podpy save -> podman load (docker-archive with two images, and oci-archive).
    both = as_each.home / "podpy-both.tar"
    as_each.ok("save", "-o", str(both), busybox_image, multilayer_image)
    loaded = podman("load", "-i", str(both)).stdout
    assert f"Loaded image: {busybox_image}" in loaded
    assert f"Loaded image: {multilayer_image}" in loaded
    assert _podman_id(podman, multilayer_image) == multilayer_layout.image_id
    oci = as_each.home / "podpy-oci.tar"
    as_each.ok("save", "--format", "oci-archive", "-o", str(oci), multilayer_image)
    podman("rmi", "-a", "-f")
    podman("load", "-i", str(oci))
    assert _podman_id(podman, multilayer_image) == multilayer_layout.image_id

    # podman save -> podpy load, both formats.
    as_each.ok("rmi", "-a")
    for fmt in ("docker-archive", "oci-archive"):
        path = shared_tmp / f"podman-{fmt}-{as_each.uid}.tar"
        podman("save", "-q", "--format", fmt, "-o", str(path), multilayer_image)
        path.chmod(0o644)
        try:
            out = as_each.ok("load", "-i", str(path))
        finally:
            path.unlink()
        assert f"Loaded image: {multilayer_image}" in out, out
        info = json.loads(as_each.ok("image", "inspect", multilayer_image))[0]
        assert "sha256:" + info["Id"] in ids
        as_each.ok("rmi", "-a")


def test_layouts_cross_between_podpy_and_skopeo(
    as_each: Runner, multilayer_image: str, multilayer_layout: Any, shared_tmp: Path
) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", multilayer_image)
    layout = as_each.home / "layout"
    as_each.ok("image", "copy", "-q", multilayer_image, f"oci:{layout}:v1")
    info = json.loads(_skopeo("inspect", f"oci:{layout}:v1"))
    assert info["Layers"] == multilayer_layout.layer_digests
    config = json.loads(_skopeo("inspect", "--config", f"oci:{layout}:v1"))
    assert config["rootfs"]["diff_ids"] == multilayer_layout.diff_ids

    # skopeo writes a dir: copy and a docker-archive; podpy reads them back.
    skopeo_dir = shared_tmp / f"skopeo-dir-{as_each.uid}"
    skopeo_archive = shared_tmp / f"skopeo-{as_each.uid}.tar"
    try:
        _skopeo("copy", "-q", multilayer_layout.oci_ref, f"dir:{skopeo_dir}")
        _skopeo(
            "copy", "-q", multilayer_layout.oci_ref, f"docker-archive:{skopeo_archive}:sk/ml:v1"
        )
        for path in [skopeo_dir, *skopeo_dir.iterdir(), skopeo_archive]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        as_each.ok("image", "copy", "-q", f"dir:{skopeo_dir}", "from-dir:v1")
        as_each.ok("image", "copy", "-q", f"docker-archive:{skopeo_archive}", "from-archive:v1")
        for name in ("from-dir:v1", "from-archive:v1"):
            got = json.loads(as_each.ok("image", "inspect", name))[0]
            assert got["Id"] == multilayer_layout.image_id, name
    finally:
        shutil.rmtree(skopeo_dir, ignore_errors=True)
        skopeo_archive.unlink(missing_ok=True)
