"""`podpy pull` against real and misbehaving registries, as the rootless user and as root."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import images
import pytest

from podpy.storage.layers import materialize

pytestmark = pytest.mark.registry

# The top-level tests/conftest.py (shadowed as `conftest` by tests/integration/conftest.py).
Runner = Any
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

# --- a tiny registry that misbehaves on purpose (corrupt, drop once, trickle) -------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    def __init__(self) -> None:
        self.blobs: Dict[str, bytes] = {}
        self.manifests: Dict[Tuple[str, str], Tuple[bytes, str]] = {}
        self.modes: Dict[str, str] = {}
        self.slow_bytes_per_sec = 512 * 1024
        self.requests: List[Tuple[str, str, str]] = []
        self._dropped: set = set()
        self._flaky: Dict[str, int] = {}
        # Bearer-token auth (user, password) and redirects of blobs to another "host".
        self.token_auth: Optional[Tuple[str, str]] = None
        self.token_requests: List[str] = []
        self.redirect_blobs = False
        self.storage_saw_auth: List[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._handle(send_body=False)

            def do_GET(self) -> None:
                self._handle(send_body=True)

            def _reply(
                self, status: int, body: bytes, headers: Dict[str, str], send_body: bool
            ) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _authorized(self, send_body: bool) -> bool:
                if registry.token_auth is None or not self.path.startswith("/v2/"):
                    return True
                parts = self.path.split("/")
                repo = "/".join(parts[2:-2]) if len(parts) >= 5 else ""
                scope = f"repository:{repo}:pull" if repo else ""
                header = self.headers.get("Authorization", "")
                if repo and header == f"Bearer tok-{scope}":
                    return True
                challenge = f'Bearer realm="http://{registry.host}/token",service="fake"'
                if scope:
                    challenge += f',scope="{scope}"'
                self._reply(401, b"", {"WWW-Authenticate": challenge}, send_body)
                return False

            def _token(self, send_body: bool) -> None:
                import base64
                import urllib.parse

                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scope = " ".join(query.get("scope", []))
                registry.token_requests.append(scope)
                user, password = registry.token_auth or ("", "")
                expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                if self.headers.get("Authorization", "") != expected:
                    self._reply(401, b"{}", {}, send_body)
                    return
                body = json.dumps({"token": f"tok-{scope}", "expires_in": 300}).encode()
                self._reply(200, body, {"Content-Type": "application/json"}, send_body)

            def _handle(self, send_body: bool) -> None:
                registry.requests.append((self.command, self.path, self.headers.get("Range", "")))
                if self.path.startswith("/token"):
                    self._token(send_body)
                    return
                if self.path.startswith("/storage/"):
                    registry.storage_saw_auth.append(self.headers.get("Authorization", ""))
                    self._blob(self.path.rsplit("/", 1)[-1], send_body)
                    return
                if not self._authorized(send_body):
                    return
                parts = self.path.split("/")
                if registry.redirect_blobs and len(parts) >= 5 and parts[-2] == "blobs":
                    # "localhost" is another host name for the same server: credentials
                    # must not follow the redirect there.
                    port = registry.server.server_address[1]
                    location = f"http://localhost:{port}/storage/{parts[-1]}"
                    self._reply(307, b"", {"Location": location}, send_body)
                    return
                if self.path == "/v2/":
                    self._reply(200, b"{}", {"Content-Type": "application/json"}, send_body)
                    return
                if len(parts) >= 5 and parts[-2] == "manifests":
                    repo = "/".join(parts[2:-2])
                    found = registry.manifests.get((repo, parts[-1]))
                    if found is None:
                        error = {
                            "errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]
                        }
                        self._reply(
                            404,
                            json.dumps(error).encode(),
                            {"Content-Type": "application/json"},
                            send_body,
                        )
                        return
                    body, media_type = found
                    self._reply(
                        200,
                        body,
                        {"Content-Type": media_type, "Docker-Content-Digest": digest_of(body)},
                        send_body,
                    )
                    return
                if len(parts) >= 5 and parts[-2] == "blobs":
                    self._blob(parts[-1], send_body)
                    return
                self._reply(404, b"", {}, send_body)

            def _blob(self, digest: str, send_body: bool) -> None:
                data = registry.blobs.get(digest)
                if data is None:
                    self._reply(404, b"", {}, send_body)
                    return
                mode = registry.modes.get(digest, "")
                if mode == "flaky":
                    # A 503 then a 429, each asking for a (zero) Retry-After, then success.
                    failures = registry._flaky.get(digest, 0)
                    if failures < 2:
                        registry._flaky[digest] = failures + 1
                        status = 503 if failures == 0 else 429
                        self._reply(status, b"", {"Retry-After": "0"}, send_body)
                        return
                if mode == "corrupt":
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = 0
                range_header = self.headers.get("Range", "")
                if range_header.startswith("bytes="):
                    start = int(range_header[len("bytes=") :].split("-")[0])
                if mode == "drop_once" and digest not in registry._dropped and start == 0:
                    # Promise the whole blob, send half, then hang up.
                    registry._dropped.add(digest)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not send_body:
                    return
                if mode == "slow":
                    chunk = 16 * 1024
                    delay = chunk / registry.slow_bytes_per_sec
                    try:
                        for i in range(0, len(body), chunk):
                            self.wfile.write(body[i : i + chunk])
                            time.sleep(delay)
                    except OSError:
                        return
                else:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_blob(self, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[digest] = data
        return digest

    def add_image(
        self,
        repo: str,
        tag: str,
        layer_tars: Sequence[bytes],
        architecture: str,
        manifest_override: Optional[Dict[str, Any]] = None,
        config_override: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Publish an OCI image of gzip layers; returns its digests."""
        descriptors = []
        for tar in layer_tars:
            blob = gzip.compress(tar, mtime=0)
            descriptors.append(
                {"mediaType": OCI_LAYER_GZIP, "digest": self.add_blob(blob), "size": len(blob)}
            )
        config = {
            "architecture": architecture,
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Cmd": ["sh"], "Labels": {"podpy.test": "yes"}},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(t) for t in layer_tars]},
            "history": [
                {"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"}
                for i in range(len(layer_tars))
            ],
        }
        config.update(config_override or {})
        config_bytes = json.dumps(config).encode()
        config_digest = self.add_blob(config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": descriptors,
        }
        manifest.update(manifest_override or {})
        body = json.dumps(manifest).encode()
        self.manifests[(repo, tag)] = (body, manifest.get("mediaType") or OCI_MANIFEST)
        self.manifests[(repo, digest_of(body))] = (body, manifest.get("mediaType") or OCI_MANIFEST)
        return {
            "config_digest": config_digest,
            "image_id": config_digest.split(":", 1)[1],
            "layer_digests": [d["digest"] for d in descriptors],
            "manifest_digest": digest_of(body),
        }


def graph_root(runner: Runner) -> Path:
    if "--root" in runner.extra_args:
        return Path(runner.extra_args[runner.extra_args.index("--root") + 1])
    return runner.home / ".local" / "share" / "podpy" / "storage"


def temporaries(root: Path) -> List[str]:
    found = []
    for sub in ("layers", "blobs/sha256"):
        folder = root / sub
        if folder.is_dir():
            found += [p.name for p in folder.iterdir() if p.name.startswith(".podpy-tmp-")]
    return found


def tar_of(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    yield reg
    reg.stop()


def test_pull_busybox(
    as_each: Runner, busybox_image: str, busybox_layout: images.BuiltImage
) -> None:
    result = as_each.podpy("pull", "--tls-verify=false", busybox_image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == busybox_layout.image_id
    assert f"Copying blob {busybox_layout.layer_digests[0]} done" in result.stderr
    assert f"Copying config {busybox_layout.config_digest} done" in result.stderr

    listing = as_each.ok("images")
    header, *rows = listing.strip().splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    repo, tag = busybox_image.rsplit(":", 1)
    assert rows and rows[0].split()[:3] == [repo, tag, busybox_layout.image_id[:12]]
    assert as_each.ok("images", "-q").split() == [busybox_layout.image_id[:12]]

    # The layer was unpacked once, owned (in the namespace) by root, with busybox executable.
    root = graph_root(as_each)
    layer_dirs = [p for p in (root / "layers").iterdir() if not p.name.startswith(".")]
    assert len(layer_dirs) == 1
    busybox = layer_dirs[0] / "diff" / "bin" / "busybox"
    assert busybox.stat().st_mode & stat.S_IXUSR
    assert busybox.stat().st_uid == as_each.uid
    assert temporaries(root) == []

    # A second pull reuses the layer and gives the same ID.
    again = as_each.podpy("pull", "--tls-verify=false", busybox_image)
    assert again.returncode == 0, again.stderr
    assert "skipped: already exists" in again.stderr
    assert again.stdout.strip() == busybox_layout.image_id

    quiet = as_each.podpy("pull", "-q", "--tls-verify=false", busybox_image)
    assert quiet.stdout.strip() == busybox_layout.image_id and quiet.stderr == ""


def test_pull_multilayer_whiteouts(as_each: Runner, multilayer_image: str, tmp_path: Path) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", multilayer_image)
    info = json.loads(as_each.ok("image", "inspect", multilayer_image))[0]
    assert len(info["RootFS"]["Layers"]) == 3
    root = graph_root(as_each)
    dirs = [d for d in info["GraphDriver"]["Data"].get("LowerDir", "").split(":") if d]
    dirs = list(reversed(dirs)) + [info["GraphDriver"]["Data"]["UpperDir"]]
    assert all(d.startswith(str(root)) for d in dirs)
    rootless = as_each.user is not None
    merged = tmp_path / "merged"
    materialize(dirs, str(merged), rootless=rootless)
    for path, content in images.MULTILAYER_FILES.items():
        assert (merged / path.lstrip("/")).read_text() == content, path
    for path in images.MULTILAYER_ABSENT:
        assert not os.path.lexists(merged / path.lstrip("/")), path
    # No `.wh.` file was materialised in any layer dir.
    for layer in dirs:
        assert not [p for p in Path(layer).rglob(".wh.*")]


def test_short_name_uses_search_registries(as_each: Runner, fake_registry: FakeRegistry) -> None:
    # A name no shortnames.conf alias covers, so the search list decides.
    meta = fake_registry.add_image(
        "podpyshort", "latest", [tar_of({"f": b"short"})], images.host_architecture()
    )
    host = fake_registry.host
    conf = Path(tempfile.mkdtemp(prefix="podpy-regconf-")) / "registries.conf"
    conf.write_text(
        f'unqualified-search-registries = ["podpy-nowhere.invalid", "{host}"]\n'
        f'[[registry]]\nlocation = "{host}"\ninsecure = true\n'
    )
    conf.parent.chmod(0o755)
    conf.chmod(0o644)
    try:
        env = {"CONTAINERS_REGISTRIES_CONF": str(conf)}
        result = as_each.podpy("pull", "podpyshort", env=env)
        assert result.returncode == 0, result.stderr
        assert "Trying to pull podpy-nowhere.invalid/podpyshort:latest..." in result.stderr
        assert f"Trying to pull {host}/podpyshort:latest..." in result.stderr
        assert result.stdout.strip() == meta["image_id"]
        # Local lookup by short name finds the qualified image.
        assert as_each.podpy("image", "exists", "podpyshort", env=env).returncode == 0
        assert as_each.podpy("image", "exists", "podpyshort:other", env=env).returncode == 1
    finally:
        conf.unlink()
        conf.parent.rmdir()


def test_corrupted_blob_stores_nothing(as_each: Runner, fake_registry: FakeRegistry) -> None:
    meta = fake_registry.add_image(
        "bad/img", "v1", [tar_of({"f": os.urandom(4096)})], images.host_architecture()
    )
    fake_registry.modes[meta["layer_digests"][0]] = "corrupt"
    result = as_each.podpy("pull", "--tls-verify=false", f"{fake_registry.host}/bad/img:v1")
    assert result.returncode == 125
    assert "digest mismatch" in result.stderr
    assert result.stderr.count("Error:") == 1
    assert as_each.ok("images", "-q").strip() == ""
    root = graph_root(as_each)
    blob = root / "blobs" / "sha256" / meta["layer_digests"][0].split(":", 1)[1]
    assert not blob.exists()
    assert temporaries(root) == []
    layers = root / "layers"
    assert not layers.exists() or [p for p in layers.iterdir()] == []


def test_dropped_connection_is_resumed(as_each: Runner, fake_registry: FakeRegistry) -> None:
    payload = os.urandom(600_000)
    meta = fake_registry.add_image(
        "drop/img", "v1", [tar_of({"big": payload})], images.host_architecture()
    )
    fake_registry.modes[meta["layer_digests"][0]] = "drop_once"
    result = as_each.podpy("pull", "-q", "--tls-verify=false", f"{fake_registry.host}/drop/img:v1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == meta["image_id"]
    ranges = [
        r for (_m, path, r) in fake_registry.requests if meta["layer_digests"][0] in path and r
    ]
    assert ranges and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"


def test_schema1_and_missing_are_clear_errors(as_each: Runner, fake_registry: FakeRegistry) -> None:
    fake_registry.manifests[("old/img", "v1")] = (
        json.dumps({"schemaVersion": 1, "name": "old/img", "tag": "v1", "fsLayers": []}).encode(),
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    )
    result = as_each.podpy("pull", "--tls-verify=false", f"{fake_registry.host}/old/img:v1")
    assert result.returncode == 125
    assert "schema 1" in result.stderr
    missing = as_each.podpy("pull", "--tls-verify=false", f"{fake_registry.host}/no/such:v1")
    assert missing.returncode == 125
    assert "manifest unknown" in missing.stderr
    plain = as_each.podpy("pull", f"{fake_registry.host}/no/such:v1")
    assert plain.returncode == 125 and "--tls-verify=false" in plain.stderr


def test_kill_during_pull_then_pull_again(as_each: Runner, fake_registry: FakeRegistry) -> None:
    arch = images.host_architecture()
    many = {f"d{i // 500}/f{i}": b"x" * 64 for i in range(3000)}
    meta = fake_registry.add_image(
        "kill/img", "v1", [tar_of({"big": os.urandom(1_500_000)}), tar_of(many)], arch
    )
    fake_registry.modes[meta["layer_digests"][0]] = "slow"
    fake_registry.slow_bytes_per_sec = 2_000_000
    reference = f"{fake_registry.host}/kill/img:v1"
    root = graph_root(as_each)
    argv = [
        SYSTEM_PYTHON,
        "-I",
        str(as_each.pyz),
        *as_each.extra_args,
        "pull",
        "-q",
        "--tls-verify=false",
        reference,
    ]
    for delay in (0.3, 0.6, 0.9, 1.2):
        proc = subprocess.Popen(
            as_each._wrap(argv),
            env=as_each.env(),
            cwd=str(as_each.home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(delay)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        # Whatever moment it died at, the store shows either nothing or the whole image.
        listing = as_each.ok("images", "-q", "--no-trunc").split()
        assert listing in ([], ["sha256:" + meta["image_id"]])
    fake_registry.modes.clear()
    result = as_each.podpy("pull", "-q", "--tls-verify=false", reference)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == meta["image_id"]
    info = json.loads(as_each.ok("image", "inspect", reference))[0]
    upper = Path(info["GraphDriver"]["Data"]["UpperDir"])
    assert len(list(upper.rglob("f*"))) == 3000
    assert as_each.ok("images", "-q", "--no-trunc").split() == ["sha256:" + meta["image_id"]]
    assert temporaries(root) == []


def test_platform_selection_from_index(as_each: Runner, fake_registry: FakeRegistry) -> None:
    arch = images.host_architecture()
    native = fake_registry.add_image("multi/img", "native", [tar_of({"which": b"native"})], arch)
    other_arch = "s390x" if arch != "s390x" else "ppc64le"
    other = fake_registry.add_image("multi/img", "other", [tar_of({"which": b"other"})], other_arch)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": other["manifest_digest"],
                "size": len(fake_registry.manifests[("multi/img", "other")][0]),
                "platform": {"os": "linux", "architecture": other_arch},
            },
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": native["manifest_digest"],
                "size": len(fake_registry.manifests[("multi/img", "native")][0]),
                "platform": {"os": "linux", "architecture": arch},
            },
        ],
    }
    body = json.dumps(index).encode()
    fake_registry.manifests[("multi/img", "latest")] = (body, index["mediaType"])
    reference = f"{fake_registry.host}/multi/img"
    assert as_each.ok("pull", "-q", "--tls-verify=false", reference).strip() == native["image_id"]
    got = as_each.ok("pull", "-q", "--tls-verify=false", "--arch", other_arch, reference).strip()
    assert got == other["image_id"]
    bad = as_each.podpy("pull", "--tls-verify=false", "--platform", "linux/mips64", reference)
    assert bad.returncode == 125 and "no image found in manifest list" in bad.stderr
    assert as_each.podpy("image", "exists", "no-such-image-here").returncode == 1


def test_bearer_token_auth_and_redirects(as_each: Runner, fake_registry: FakeRegistry) -> None:
    meta = fake_registry.add_image(
        "tok/img", "v1", [tar_of({"f": os.urandom(2048)})], images.host_architecture()
    )
    fake_registry.token_auth = ("alice", "s3cret")
    fake_registry.redirect_blobs = True
    reference = f"{fake_registry.host}/tok/img:v1"
    anonymous = as_each.podpy("pull", "--tls-verify=false", reference)
    assert anonymous.returncode == 125
    assert "authentication required" in anonymous.stderr and "podpy login" in anonymous.stderr
    wrong = as_each.podpy("pull", "--tls-verify=false", "--creds", "alice:nope", reference)
    assert wrong.returncode == 125 and "invalid username/password" in wrong.stderr
    fake_registry.token_requests.clear()
    good = as_each.podpy("pull", "-q", "--tls-verify=false", "--creds", "alice:s3cret", reference)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == meta["image_id"]
    # One token for the repository scope, reused for the manifest and every blob.
    assert fake_registry.token_requests == ["repository:tok/img:pull"]
    # Blobs came through the redirect, which never carried the registry credentials.
    assert fake_registry.storage_saw_auth and not any(fake_registry.storage_saw_auth)


def test_basic_auth_over_tls(as_each: Runner, auth_registry: Any, busybox_layout: Any) -> None:
    from registry import push_oci_layout

    reference = push_oci_layout(auth_registry, busybox_layout.oci_ref, "secure/busybox:latest")
    # A CA directory the rootless user can read.
    cert_dir = Path(tempfile.mkdtemp(prefix="podpy-certs-"))
    try:
        shutil.copy(auth_registry.ca_cert, cert_dir / "ca.crt")
        cert_dir.chmod(0o755)
        (cert_dir / "ca.crt").chmod(0o644)
        untrusted = as_each.podpy("pull", reference)
        assert untrusted.returncode == 125
        assert "certificate" in untrusted.stderr and "certs.d" in untrusted.stderr
        creds = f"{auth_registry.username}:{auth_registry.password}"
        denied = as_each.podpy("pull", "--cert-dir", str(cert_dir), "--creds", "x:y", reference)
        assert denied.returncode == 125 and "invalid username/password" in denied.stderr
        good = as_each.podpy("pull", "-q", "--cert-dir", str(cert_dir), "--creds", creds, reference)
        assert good.returncode == 0, good.stderr
        assert good.stdout.strip() == busybox_layout.image_id
    finally:
        shutil.rmtree(cert_dir, ignore_errors=True)


def test_wrong_diff_id_is_refused(as_each: Runner, fake_registry: FakeRegistry) -> None:
    layers = [tar_of({"a": b"first"}), tar_of({"b": b"second"}), tar_of({"c": b"third"})]
    wrong = [
        "sha256:" + hashlib.sha256(layers[0]).hexdigest(),
        "sha256:" + "0" * 64,
        "sha256:" + hashlib.sha256(layers[2]).hexdigest(),
    ]
    fake_registry.add_image(
        "tamper/img",
        "v1",
        layers,
        images.host_architecture(),
        config_override={"rootfs": {"type": "layers", "diff_ids": wrong}},
    )
    result = as_each.podpy("pull", "--tls-verify=false", f"{fake_registry.host}/tamper/img:v1")
    assert result.returncode == 125
    assert "does not match the config's diff_id" in result.stderr
    assert as_each.ok("images", "-q").strip() == ""
    assert temporaries(graph_root(as_each)) == []


def test_server_errors_are_retried(as_each: Runner, fake_registry: FakeRegistry) -> None:
    meta = fake_registry.add_image(
        "flaky/img", "v1", [tar_of({"f": b"eventually"})], images.host_architecture()
    )
    fake_registry.modes[meta["layer_digests"][0]] = "flaky"
    result = as_each.podpy("pull", "-q", "--tls-verify=false", f"{fake_registry.host}/flaky/img:v1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == meta["image_id"]
    blob_gets = [p for (m, p, _r) in fake_registry.requests if meta["layer_digests"][0] in p]
    assert len(blob_gets) == 3


def test_pull_by_digest(as_each: Runner, fake_registry: FakeRegistry) -> None:
    meta = fake_registry.add_image(
        "dig/img", "v1", [tar_of({"f": b"pinned"})], images.host_architecture()
    )
    repo = f"{fake_registry.host}/dig/img"
    reference = f"{repo}@{meta['manifest_digest']}"
    assert as_each.ok("pull", "-q", "--tls-verify=false", reference).strip() == meta["image_id"]
    rows = as_each.ok("images", "--format", "{{.Repository}} {{.Tag}}").splitlines()
    assert rows == [f"{repo} <none>"]
    info = json.loads(as_each.ok("image", "inspect", reference))[0]
    assert info["RepoTags"] == [] and info["RepoDigests"] == [reference]
    wrong = f"{repo}@sha256:{'1' * 64}"
    missing = as_each.podpy("pull", "--tls-verify=false", wrong)
    assert missing.returncode == 125 and "manifest unknown" in missing.stderr


def test_mirrors_and_blocked_registries(as_each: Runner, fake_registry: FakeRegistry) -> None:
    meta = fake_registry.add_image(
        "mir/img", "v1", [tar_of({"f": b"mirrored"})], images.host_architecture()
    )
    conf_dir = Path(tempfile.mkdtemp(prefix="podpy-regconf-"))
    conf = conf_dir / "registries.conf"
    conf.write_text(
        "[[registry]]\n"
        'prefix = "podpy-origin.invalid"\n'
        'location = "podpy-origin.invalid"\n'
        "[[registry.mirror]]\n"
        'location = "podpy-dead-mirror.invalid"\n'
        "[[registry.mirror]]\n"
        f'location = "{fake_registry.host}"\n'
        "insecure = true\n"
        "[[registry]]\n"
        'prefix = "podpy-blocked.invalid"\n'
        'location = "podpy-blocked.invalid"\n'
        "blocked = true\n"
    )
    conf_dir.chmod(0o755)
    conf.chmod(0o644)
    try:
        env = {"CONTAINERS_REGISTRIES_CONF": str(conf)}
        result = as_each.podpy("pull", "-q", "podpy-origin.invalid/mir/img:v1", env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == meta["image_id"]
        names = as_each.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()
        assert names == ["podpy-origin.invalid/mir/img:v1"]
        blocked = as_each.podpy("pull", "podpy-blocked.invalid/x:1", env=env)
        assert blocked.returncode == 125 and "blocked" in blocked.stderr
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)


def test_rmi_waits_for_a_pull_sharing_its_layers(
    as_each: Runner, fake_registry: FakeRegistry
) -> None:
    arch = images.host_architecture()
    base = tar_of({"base": b"shared base layer"})
    first = fake_registry.add_image("share/a", "v1", [base], arch)
    second = fake_registry.add_image(
        "share/b", "v1", [base, tar_of({"big": os.urandom(1_000_000)})], arch
    )
    fake_registry.modes[second["layer_digests"][1]] = "slow"
    fake_registry.slow_bytes_per_sec = 1_000_000
    host = fake_registry.host
    as_each.ok("pull", "-q", "--tls-verify=false", f"{host}/share/a:v1")
    argv = [SYSTEM_PYTHON, "-I", str(as_each.pyz), *as_each.extra_args]
    puller = subprocess.Popen(
        as_each._wrap([*argv, "pull", "-q", "--tls-verify=false", f"{host}/share/b:v1"]),
        env=as_each.env(),
        cwd=str(as_each.home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.4)  # the pull has planned to reuse the base layer and is downloading
        removed = as_each.podpy("rmi", f"{host}/share/a:v1")
        assert removed.returncode == 0, removed.stderr
        out, err = puller.communicate(timeout=120)
    finally:
        if puller.poll() is None:
            puller.kill()
            puller.wait()
    assert puller.returncode == 0, err
    assert out.strip() == second["image_id"]
    assert f"Deleted: {first['image_id']}" in removed.stdout
    info = json.loads(as_each.ok("image", "inspect", second["image_id"]))[0]
    dirs = [d for d in info["GraphDriver"]["Data"].get("LowerDir", "").split(":") if d]
    dirs.append(info["GraphDriver"]["Data"]["UpperDir"])
    assert len(dirs) == 2 and all(Path(d).is_dir() for d in dirs)
