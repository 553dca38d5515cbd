"""Run Debian's `docker-registry` (distribution 2.8) on a free local port for tests.

Plain HTTP by default; `start_registry(..., secure=True)` adds TLS from a throwaway CA and
htpasswd (bcrypt) basic auth, as a private registry with `podman login` would have.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REGISTRY_BINARY = "/usr/bin/docker-registry"


@dataclass
class Registry:
    """A running registry; `host` is what goes in image references (`HOST/busybox:latest`)."""

    host: str
    url: str
    workdir: Path
    process: subprocess.Popen
    ca_cert: Optional[Path] = None
    username: Optional[str] = None
    password: Optional[str] = None

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    @property
    def cert_dir(self) -> Optional[Path]:
        """A directory holding only the CA (`ca.crt`): skopeo/podman `--cert-dir`, or copy it
        to `/etc/containers/certs.d/HOST/`."""
        return self.ca_cert.parent / "certs" if self.ca_cert else None

    @property
    def log_file(self) -> Path:
        return self.workdir / "registry.log"

    def stop(self) -> None:
        """Terminate the registry, reap it, and delete its storage and config."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _die_with_parent() -> None:
    """Runs in the registry child: SIGTERM it when pytest dies, even by SIGKILL (no teardown)."""
    import signal

    from podpy.linux import set_pdeathsig

    set_pdeathsig(signal.SIGTERM)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (start_registry retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(argv: list, **kwargs) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")


def make_tls_files(directory: Path) -> tuple:
    """A self-signed CA and a server certificate it signed for 127.0.0.1/localhost.

    Returns (ca_cert, server_cert, server_key).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    _run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2"]
        + ["-subj", "/CN=podpy test CA", "-keyout", str(ca_key), "-out", str(ca_cert)]
    )
    _run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", "/CN=127.0.0.1"]
        + ["-keyout", str(key), "-out", str(csr)]
    )
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key)]
        + ["-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert)]
    )
    ca_cert.chmod(0o644)
    (directory / "certs").mkdir(exist_ok=True)
    shutil.copy2(ca_cert, directory / "certs" / "ca.crt")
    return ca_cert, cert, key


def write_htpasswd(path: Path, username: str, password: str) -> None:
    """A bcrypt htpasswd file (the only hash distribution's htpasswd auth accepts)."""
    result = subprocess.run(
        ["htpasswd", "-nbB", username, password], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"htpasswd failed (install apache2-utils): {result.stderr.strip()}")
    path.write_text(result.stdout.strip() + "\n")


def _config_yaml(storage: Path, addr: str, tls: Optional[tuple], htpasswd: Optional[Path]) -> str:
    # The http secret only matters for multi-instance setups; fixing it silences a warning.
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  formatter: text",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: {addr}",
        f"  secret: {uuid.uuid4().hex}",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if tls:
        _, cert, key = tls
        lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: podpy-test", f"    path: {htpasswd}"]
    return "\n".join(lines) + "\n"


def _ping(url: str, ca_cert: Optional[Path]) -> Optional[int]:
    """HTTP status of GET /v2/, or None while nothing answers."""
    context = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else None
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=2, context=context) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return None


def start_registry(
    workdir: Path,
    *,
    secure: bool = False,
    username: str = "podpyuser",
    password: str = "",
    timeout: float = 20,
    attempts: int = 3,
) -> Registry:
    """Start a registry storing under `workdir`; returns once GET /v2/ answers.

    secure=True: HTTPS with a fresh CA (`Registry.ca_cert`) and htpasswd basic auth
    (`Registry.username`/`.password`); GET /v2/ then answers 401 until you log in.
    """
    if not Path(REGISTRY_BINARY).exists():
        raise RuntimeError(f"{REGISTRY_BINARY} is missing: apt-get install docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    tls = make_tls_files(workdir / "tls") if secure else None
    htpasswd = None
    if secure:
        password = password or uuid.uuid4().hex[:16]
        htpasswd = workdir / "htpasswd"
        write_htpasswd(htpasswd, username, password)
    scheme = "https" if secure else "http"
    expected = 401 if secure else 200
    last_error = ""
    for _ in range(attempts):
        host = f"127.0.0.1:{free_port()}"
        config = workdir / "config.yml"
        config.write_text(_config_yaml(workdir / "storage", host, tls, htpasswd))
        log = open(workdir / "registry.log", "ab")
        try:
            process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        registry = Registry(
            host=host,
            url=f"{scheme}://{host}",
            workdir=workdir,
            process=process,
            ca_cert=tls[0] if tls else None,
            username=username if secure else None,
            password=password if secure else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            status = _ping(registry.url, registry.ca_cert)
            if status == expected:
                return registry
            if status is not None:
                last_error = f"GET /v2/ answered {status}, expected {expected}"
            time.sleep(0.05)
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)
        log_text = (workdir / "registry.log").read_text(errors="replace")
        last_error = last_error or log_text[-2000:]
        if "address already in use" not in log_text:
            break
    shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError(f"docker-registry did not start: {last_error}")


def push_oci_layout(registry: Registry, oci_ref: str, repository: str) -> str:
    """Copy an image (`oci:DIR:TAG`) into the registry with skopeo; returns `HOST/REPOSITORY`.

    `repository` includes the tag (`busybox:latest`). Uses the registry's CA and credentials
    when it has them; `--insecure-policy` so the host's policy.json does not matter.
    """
    reference = f"{registry.host}/{repository}"
    argv = ["skopeo", "--insecure-policy", "copy", "--quiet", "--retry-times", "2"]
    if registry.cert_dir:
        argv += ["--dest-cert-dir", str(registry.cert_dir)]
    else:
        argv += ["--dest-tls-verify=false"]
    if registry.username:
        argv += ["--dest-creds", f"{registry.username}:{registry.password}"]
    _run(argv + [oci_ref, f"docker://{reference}"], timeout=300)
    return reference
