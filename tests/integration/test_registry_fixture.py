"""The registry fixtures serve real images: skopeo sees the right manifest, podman pulls and runs them."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, List

import images
import pytest
from registry import Registry, push_oci_layout


def run(argv: List[str], timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} exited {result.returncode}: {result.stderr}"
    return result


def skopeo_inspect(reference: str, *extra: str) -> dict:
    out = run(["skopeo", "--insecure-policy", "inspect", *extra, f"docker://{reference}"]).stdout
    return json.loads(out)


def test_registry_answers_distribution_api(registry: Registry) -> None:
    with urllib.request.urlopen(f"{registry.url}/v2/", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert registry.host.startswith("127.0.0.1:") and registry.port > 0


def test_busybox_image_has_host_arch_and_one_layer(
    busybox_image: str, busybox_layout: images.BuiltImage
) -> None:
    info = skopeo_inspect(busybox_image, "--tls-verify=false")
    assert info["Architecture"] == images.host_architecture() == busybox_layout.architecture
    assert info["Os"] == "linux"
    assert info["Layers"] == busybox_layout.layer_digests and len(info["Layers"]) == 1
    assert info["Digest"] == busybox_layout.manifest_digest
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in info["Env"]
    raw = skopeo_inspect(busybox_image, "--tls-verify=false", "--raw")
    assert raw["mediaType"] == images.MT_OCI_MANIFEST
    assert raw["config"]["digest"] == busybox_layout.config_digest


def test_multilayer_image_shares_the_base_layer(
    multilayer_image: str, busybox_layout: images.BuiltImage
) -> None:
    info = skopeo_inspect(multilayer_image, "--tls-verify=false")
    assert len(info["Layers"]) == 3
    assert info["Layers"][0] == busybox_layout.layer_digests[0]


def test_images_are_reproducible(tmp_path: Path, busybox_layout: images.BuiltImage) -> None:
    again = images.build_busybox_image(tmp_path / "again")
    assert again.manifest_digest == busybox_layout.manifest_digest
    assert again.diff_ids == busybox_layout.diff_ids


def test_docker_archive_is_readable_by_skopeo(tmp_path: Path) -> None:
    layers = images.multilayer_layers(images.busybox_layer())
    archive = tmp_path / "busybox.tar"
    config_digest = images.write_docker_archive(archive, layers, repo_tags=["localhost/bb:v1"])
    out = run(["skopeo", "--insecure-policy", "inspect", "--config", f"docker-archive:{archive}"])
    config = json.loads(out.stdout)
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in layers]
    assert config_digest == images.sha256_digest(archive_member(archive, config_digest))


def archive_member(archive: Path, config_digest: str) -> bytes:
    import tarfile

    with tarfile.open(archive) as tar:
        member = tar.extractfile(config_digest.split(":", 1)[1] + ".json")
        assert member is not None
        return member.read()


def test_many_files_layer_has_the_requested_files(tmp_path: Path) -> None:
    image = images.write_oci_layout(tmp_path / "many", [images.many_files_layer(2500, size=32)])
    assert len(image.layer_digests) == 1
    import gzip
    import tarfile

    blob = image.layout / "blobs" / "sha256" / image.layer_digests[0].split(":", 1)[1]
    with tarfile.open(fileobj=gzip.open(blob)) as tar:
        files = [m for m in tar.getmembers() if m.isfile()]
    assert len(files) == 2500 and all(m.size == 32 for m in files)


@pytest.fixture(scope="module")
def podman() -> Iterator[Callable[..., subprocess.CompletedProcess]]:
    """Root podman with a private store, runc and cgroupfs (what works on this host)."""
    if os.geteuid() != 0:
        pytest.skip("the podman cross-check runs podman as root")
    base = Path(tempfile.mkdtemp(prefix="podpy-podman-"))
    flags = [
        "--root", str(base / "root"),
        "--runroot", str(base / "runroot"),
        "--tmpdir", str(base / "tmp"),
        "--storage-driver", "vfs",
        "--runtime", "runc",
        "--cgroup-manager", "cgroupfs",
        "--events-backend", "file",
    ]  # fmt: skip

    # Root podman raises RLIMIT_NOFILE/NPROC to 1048576/4194304, which runc cannot set without
    # CAP_SYS_RESOURCE (this VM lacks it; nofile hard limit 20000): ask for modest limits.
    limits = ["--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024"]

    def podman_cmd(*args: str) -> subprocess.CompletedProcess:
        if args and args[0] == "run":
            args = ("run", *limits, *args[1:])
        return run(["podman", *flags, *args])

    try:
        yield podman_cmd
    finally:
        subprocess.run(["podman", *flags, "rm", "-a", "-f"], capture_output=True, timeout=120)
        subprocess.run(["podman", *flags, "rmi", "-a", "-f"], capture_output=True, timeout=120)
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f if line.split()[4].startswith(str(base))]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_podman_pulls_and_runs_busybox(podman, busybox_image: str) -> None:
    podman("pull", "--quiet", "--tls-verify=false", busybox_image)
    assert podman("run", "--rm", "--network=none", busybox_image, "echo", "hi").stdout == "hi\n"
    who = podman("run", "--rm", "--network=none", "--user", "bob", busybox_image, "id").stdout
    assert who.startswith("uid=1000(bob) gid=1000(bob)")
    mode = podman("run", "--rm", "--network=none", busybox_image, "stat", "-c", "%a", "/tmp")
    assert mode.stdout.strip() == "1777"


def test_podman_applies_multilayer_whiteouts(podman, multilayer_image: str) -> None:
    podman("pull", "--quiet", "--tls-verify=false", multilayer_image)
    script = "; ".join(
        [f"echo {path}=$(cat {path})" for path in images.MULTILAYER_FILES]
        + [f"test -e {path} && echo {path}=present" for path in images.MULTILAYER_ABSENT]
        + ["stat -c %h /data/kept.txt", "true"]
    )
    out = podman("run", "--rm", "--network=none", multilayer_image, "sh", "-c", script).stdout
    lines = out.splitlines()
    for path, content in images.MULTILAYER_FILES.items():
        assert f"{path}={content.strip()}" in lines
    assert not [line for line in lines if line.endswith("=present")]
    assert lines[-1] == "2"  # kept.txt and its hardlink share an inode


def test_auth_registry_requires_login_over_tls(
    auth_registry: Registry, busybox_layout: images.BuiltImage
) -> None:
    assert auth_registry.ca_cert is not None and auth_registry.cert_dir is not None
    context = ssl.create_default_context(cafile=str(auth_registry.ca_cert))
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{auth_registry.url}/v2/", timeout=5, context=context)
    assert denied.value.code == 401
    assert "Basic" in denied.value.headers["WWW-Authenticate"]

    reference = push_oci_layout(auth_registry, busybox_layout.oci_ref, "private/busybox:v1")
    cert_dir = ["--cert-dir", str(auth_registry.cert_dir)]
    creds = ["--creds", f"{auth_registry.username}:{auth_registry.password}"]
    assert skopeo_inspect(reference, *cert_dir, *creds)["Digest"] == busybox_layout.manifest_digest
    anonymous = subprocess.run(
        ["skopeo", "inspect", "--no-creds", *cert_dir, f"docker://{reference}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert anonymous.returncode != 0 and "unauthorized" in anonymous.stderr.lower()
    wrong_ca = subprocess.run(
        ["skopeo", "inspect", *creds, f"docker://{reference}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong_ca.returncode != 0 and "certificate" in wrong_ca.stderr.lower()
