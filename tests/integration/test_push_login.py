"""`podpy login/logout/push` and `image inspect docker://` against real registries (TLS +
htpasswd, and plain HTTP), as the rootless user and as root."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.registry

Runner = Any


def _uid_gid(runner: Runner) -> tuple:
    return runner.uid, runner.gid


@pytest.fixture
def user_cert_dir(as_each: Runner, auth_registry: Any) -> Iterator[Path]:
    """The registry's CA in a directory the runner can read (rootless users cannot read the
    fixture's 0700 temp dir)."""
    folder = Path(tempfile.mkdtemp(prefix="podpy-certs-"))
    shutil.copy(auth_registry.ca_cert, folder / "ca.crt")
    folder.chmod(0o755)
    (folder / "ca.crt").chmod(0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _auth_file(runner: Runner) -> Path:
    return runner.runtime_dir / "containers" / "auth.json"


def _skopeo_raw(reference: str, *extra: str) -> bytes:
    result = subprocess.run(
        ["skopeo", "inspect", "--raw", *extra, f"docker://{reference}"],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_login_push_pull_logout_over_tls(
    as_each: Runner,
    auth_registry: Any,
    busybox_image: str,
    busybox_layout: Any,
    user_cert_dir: Path,
) -> None:
    host = auth_registry.host
    cert = str(user_cert_dir)
    auth_file = _auth_file(as_each)
    try:
        wrong = as_each.podpy(
            "login", "--cert-dir", cert, "-u", auth_registry.username, "-p", "wrong", host
        )
        assert wrong.returncode == 125
        assert wrong.stderr.strip().splitlines()[0] == (
            f'Error: logging into "{host}": invalid username/password'
        )
        assert not auth_file.exists() or host not in auth_file.read_text()

        good = as_each.podpy(
            "login",
            "--cert-dir",
            cert,
            "-u",
            auth_registry.username,
            "--password-stdin",
            host,
            input=auth_registry.password + "\n",
        )
        assert good.returncode == 0, good.stderr
        assert good.stdout.strip() == "Login Succeeded!"
        st = auth_file.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == as_each.uid
        assert host in json.loads(auth_file.read_text())["auths"]
        assert as_each.ok("login", "--get-login", host).strip() == auth_registry.username

        # Push (credentials from auth.json) an image pulled from the plain registry.
        as_each.ok("pull", "-q", "--tls-verify=false", busybox_image)
        target = f"{host}/pushed/busybox:v1"
        digest_file = as_each.home / "digest.txt"
        pushed = as_each.podpy(
            "push", "--cert-dir", cert, "--digestfile", str(digest_file), busybox_image, target
        )
        assert pushed.returncode == 0, pushed.stderr
        assert "Writing manifest to image destination" in pushed.stderr
        raw = _skopeo_raw(
            target,
            "--cert-dir",
            str(auth_registry.cert_dir),
            "--creds",
            f"{auth_registry.username}:{auth_registry.password}",
        )
        import hashlib

        assert digest_file.read_text().strip() == "sha256:" + hashlib.sha256(raw).hexdigest()
        # Unchanged blobs: the manifest pushed is the one pulled (same digest).
        source_raw = _skopeo_raw(busybox_image, "--tls-verify=false")
        assert raw == source_raw

        # Remote inspect without pulling; --raw gives the exact manifest.
        info = json.loads(as_each.ok("image", "inspect", "--cert-dir", cert, f"docker://{target}"))
        assert info[0]["Name"] == f"{host}/pushed/busybox"
        assert info[0]["RepoTags"] == ["v1"]
        assert info[0]["Layers"] == busybox_layout.layer_digests
        raw_out = as_each.ok("image", "inspect", "--raw", "--cert-dir", cert, f"docker://{target}")
        assert raw_out.strip().encode() == raw.strip()

        # Pull it back by name with the stored credentials.
        as_each.ok("rmi", "-a")
        back = as_each.podpy("pull", "-q", "--cert-dir", cert, target)
        assert back.returncode == 0, back.stderr
        assert back.stdout.strip() == busybox_layout.image_id

        out = as_each.ok("logout", host)
        assert out.strip() == f"Removed login credentials for {host}"
        assert host not in json.loads(auth_file.read_text())["auths"]
        again = as_each.podpy("logout", host)
        assert again.returncode == 125 and f"not logged into {host}" in again.stderr
        denied = as_each.podpy("pull", "--cert-dir", cert, target)
        assert denied.returncode == 125 and "authentication required" in denied.stderr
    finally:
        as_each.podpy("logout", "-a")


def test_ca_from_user_certs_d_and_authfile_option(
    as_each: Runner, auth_registry: Any, busybox_image: str
) -> None:
    """The CA found in $XDG_CONFIG_HOME/containers/certs.d/HOST/, credentials in --authfile."""
    host = auth_registry.host
    certs_d = as_each.home / ".config" / "containers" / "certs.d" / host
    certs_d.mkdir(parents=True)
    shutil.copy(auth_registry.ca_cert, certs_d / "ca.crt")
    for path in [certs_d / "ca.crt", *list(certs_d.parents)[:3]]:
        os.chown(path, as_each.uid, as_each.gid)
    authfile = as_each.home / "my-auth.json"
    try:
        login = as_each.podpy(
            "login",
            "--authfile",
            str(authfile),
            "-u",
            auth_registry.username,
            "-p",
            auth_registry.password,
            host,
        )
        assert login.returncode == 0, login.stderr
        assert host in json.loads(authfile.read_text())["auths"]
        primary = _auth_file(as_each)
        assert not primary.exists() or host not in primary.read_text()
        as_each.ok("pull", "-q", "--tls-verify=false", busybox_image)
        target = f"{host}/authfile/busybox:v2"
        without = as_each.podpy("push", "-q", busybox_image, target)
        assert without.returncode == 125 and "authentication required" in without.stderr
        pushed = as_each.podpy("push", "-q", "--authfile", str(authfile), busybox_image, target)
        assert pushed.returncode == 0, pushed.stderr
        assert pushed.stderr == ""
        # --creds wins over files, and a wrong one is a clear error.
        bad = as_each.podpy("push", "--creds", "nobody:nothing", busybox_image, target)
        assert bad.returncode == 125 and "invalid username/password" in bad.stderr
        missing = as_each.podpy(
            "push", "--authfile", "/nonexistent/auth.json", busybox_image, target
        )
        assert missing.returncode == 125 and "/nonexistent/auth.json" in missing.stderr
    finally:
        shutil.rmtree(as_each.home / ".config" / "containers", ignore_errors=True)
        authfile.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def multilayer_archive(shared_tmp: Path) -> Path:
    """The multilayer test image as a docker-archive (uncompressed layers), world-readable."""
    import images

    path = shared_tmp / "push-multilayer.tar"
    images.write_docker_archive(
        path,
        images.multilayer_layers(images.busybox_layer()),
        repo_tags=["localhost/pushtest:latest"],
    )
    path.chmod(0o644)
    return path


def test_push_converts_and_uploads_in_chunks(
    as_each: Runner, registry: Any, multilayer_archive: Path, multilayer_layout: Any, tmp_path: Path
) -> None:
    """Uncompressed (loaded) layers are gzip'd for the registry, v2s2 media types on request,
    and a small chunk size makes the upload go through PATCH requests."""
    as_each.ok("load", "-q", "-i", str(multilayer_archive))
    target = f"{registry.host}/converted-{as_each.uid}/ml:v2s2"
    pushed = as_each.podpy(
        "push",
        "-q",
        "--tls-verify=false",
        "--format",
        "v2s2",
        "localhost/pushtest:latest",
        target,
        env={"PODPY_PUSH_CHUNK_SIZE": "65536"},
    )
    assert pushed.returncode == 0, pushed.stderr
    manifest = json.loads(_skopeo_raw(target, "--tls-verify=false"))
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }
    # The config (hence the image ID) survives the conversion.
    assert manifest["config"]["digest"] == multilayer_layout.config_digest
    log = registry.log_file.read_text(errors="replace")
    patches = [
        line
        for line in log.splitlines()
        if f'"PATCH /v2/converted-{as_each.uid}/ml/blobs/uploads/' in line
    ]
    assert len(patches) > len(multilayer_layout.layer_digests)
    # skopeo verifies every blob digest while copying it out.
    copied = subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            "--src-tls-verify=false",
            f"docker://{target}",
            f"dir:{tmp_path}/d",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert copied.returncode == 0, copied.stderr


def test_push_mounts_across_repositories(
    as_each: Runner, registry: Any, multilayer_image: str, multilayer_layout: Any
) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", multilayer_image)
    target = f"{registry.host}/mounted-{as_each.uid}/ml:oci"
    pushed = as_each.podpy(
        "push", "--tls-verify=false", "--format", "oci", multilayer_image, target
    )
    assert pushed.returncode == 0, pushed.stderr
    log = registry.log_file.read_text(errors="replace")
    repo = target.split("/", 1)[1].split(":")[0]
    mounted = [
        line
        for line in log.splitlines()
        if f'"POST /v2/{repo}/blobs/uploads/?mount=' in line and '" 201 ' in line
    ]
    # Every layer and the config come by mount, none by upload.
    assert len(mounted) == len(multilayer_layout.layer_digests) + 1, mounted
    manifest = json.loads(_skopeo_raw(target, "--tls-verify=false"))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    # Pushing again: every blob is already there.
    again = as_each.podpy("push", "--tls-verify=false", multilayer_image, target)
    assert again.returncode == 0
    assert again.stderr.count("skipped: already exists") == len(multilayer_layout.layer_digests)


def test_push_errors_are_one_line(as_each: Runner, registry: Any, busybox_image: str) -> None:
    missing = as_each.podpy("push", "--tls-verify=false", "nosuchimage", f"{registry.host}/x:1")
    assert missing.returncode == 125 and "nosuchimage: image not known" in missing.stderr
    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image)
    bad_format = as_each.podpy("push", "--format", "v2s1", busybox_image, f"{registry.host}/x:1")
    assert (
        bad_format.returncode == 125 and 'unsupported manifest format "v2s1"' in bad_format.stderr
    )
    bad_compression = as_each.podpy(
        "push", "--compression-format", "zstd", busybox_image, f"{registry.host}/x:1"
    )
    assert bad_compression.returncode == 125 and "zstd" in bad_compression.stderr
    plain = as_each.podpy("push", busybox_image, f"{registry.host}/x:1")
    assert plain.returncode == 125 and "--tls-verify=false" in plain.stderr


def test_image_copy_between_registries(
    as_each: Runner,
    registry: Any,
    auth_registry: Any,
    multilayer_image: str,
    multilayer_layout: Any,
    user_cert_dir: Path,
) -> None:
    """Registry to registry without the local store: blobs stream through, the manifest (and
    so its digest) is unchanged."""
    target = f"{auth_registry.host}/copied-{as_each.uid}/ml:v1"
    creds = f"{auth_registry.username}:{auth_registry.password}"
    result = as_each.podpy(
        "image",
        "copy",
        "--src-tls-verify=false",
        "--dest-cert-dir",
        str(user_cert_dir),
        "--dest-creds",
        creds,
        f"docker://{multilayer_image}",
        f"docker://{target}",
    )
    assert result.returncode == 0, result.stderr
    assert as_each.ok("images", "-q") == ""  # nothing went through the local store
    raw = _skopeo_raw(target, "--cert-dir", str(auth_registry.cert_dir), "--creds", creds)
    import hashlib

    assert "sha256:" + hashlib.sha256(raw).hexdigest() == multilayer_layout.manifest_digest
    # The same copy without credentials is refused with a clear message.
    denied = as_each.podpy(
        "image",
        "copy",
        "--src-tls-verify=false",
        "--dest-cert-dir",
        str(user_cert_dir),
        f"docker://{multilayer_image}",
        f"docker://{target}",
    )
    assert denied.returncode == 125 and "authentication required" in denied.stderr
