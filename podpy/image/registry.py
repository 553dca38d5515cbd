"""Distribution-spec (registry v2) client on http.client/ssl: auth, TLS, redirects, retries."""

from __future__ import annotations

import base64
import glob
import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from podpy import __version__, log
from podpy.errors import PodpyError
from podpy.image.manifest import ACCEPT_MANIFEST_TYPES, MAX_MANIFEST_SIZE, ManifestError
from podpy.record import field, record
from podpy.storage.blobs import TransientFetchError

# `host[:port][/repository]` -> (username, password/secret) or None. The key names the
# repository when one is known, so an auth.json lookup can try `host/ns/repo`, `host/ns`,
# then `host` (most specific first), as containers-auth.json(5) specifies.
CredentialLookup = Callable[[str], Optional[Tuple[str, str]]]

USER_AGENT = f"podpy/{__version__}"
MAX_REDIRECTS = 10
RETRY_STATUSES = (429, 500, 502, 503, 504)
DEFAULT_ATTEMPTS = 5
CERT_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
_PLAIN_HINT = (
    "if this registry is plain HTTP, use --tls-verify=false or mark it insecure in registries.conf"
)


class RegistryError(PodpyError):
    """The registry refused or failed a request; `code` is the distribution error code."""

    def __init__(self, message: str, hint: Optional[str] = None, status: int = 0, code: str = ""):
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


class Unauthorized(RegistryError):
    pass


class NotFound(RegistryError):
    pass


def static_credentials(creds: Optional[str]) -> Optional[CredentialLookup]:
    """`--creds user[:password]` as a lookup that answers for every host."""
    if not creds:
        return None
    user, sep, password = creds.partition(":")
    if not user:
        raise PodpyError('invalid --creds "": expected USERNAME[:PASSWORD]')
    pair = (user, password)
    return lambda _host: pair


def parse_challenge(header: str) -> Tuple[str, Dict[str, str]]:
    """`Bearer realm="x",service="y",scope="a b"` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: Dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1
            params[key] = "".join(value)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme.lower(), params


def _error_detail(body: bytes) -> Tuple[str, str]:
    """(code, message) from a `{"errors":[...]}` body, best effort."""
    try:
        data = json.loads(body)
        first = data["errors"][0]
        code = str(first.get("code", ""))
        message = str(first.get("message", "")) or code.lower().replace("_", " ")
        return code, message
    except Exception:
        text = body.decode("utf-8", "replace").strip().splitlines()
        return "", text[0][:200] if text else ""


@record
class _Token:
    value: str
    expires: float


@record
class Response:
    """A response whose body is still unread (`stream`) or already read (`body`)."""

    status: int
    headers: Mapping[str, str]
    conn: Optional[http.client.HTTPConnection]
    raw: Optional[http.client.HTTPResponse]
    url: str
    body: bytes = b""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def read_all(self, limit: Optional[int] = None) -> bytes:
        if self.raw is None:
            return self.body
        try:
            data = self.raw.read() if limit is None else self.raw.read(limit + 1)
        finally:
            self.close()
        if limit is not None and len(data) > limit:
            raise ManifestError(f"response from {self.url} is larger than the {limit} byte limit")
        self.body = data
        return data

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()
            self.raw = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _BlobStream:
    """A response body that reports a broken transfer as TransientFetchError (so it resumes)."""

    def __init__(self, response: Response):
        self.response = response

    def read(self, n: int = -1) -> bytes:
        raw = self.response.raw
        if raw is None:
            return b""
        try:
            return raw.read(n) if n >= 0 else raw.read()
        except (http.client.HTTPException, OSError) as err:
            raise TransientFetchError(f"connection to the registry broke: {err}") from err

    def close(self) -> None:
        self.response.close()


@record
class RegistryClient:
    """One registry host. Thread-safe: blobs are fetched from several threads at once."""

    host: str
    insecure: bool = False
    tls_verify: bool = True
    credentials: Optional[CredentialLookup] = None
    cert_dirs: Iterable[str] = CERT_DIRS  # each holds one sub-directory per host[:port]
    cert_dir: Optional[str] = None  # --cert-dir: *.crt / *.cert / *.key for this registry
    timeout: float = 60.0
    attempts: int = DEFAULT_ATTEMPTS
    _scheme: Optional[str] = None
    _challenge: Optional[Tuple[str, Dict[str, str]]] = None
    _tokens: Dict[str, _Token] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ssl: Optional[ssl.SSLContext] = None

    @property
    def api_host(self) -> str:
        """docker.io's API lives on registry-1.docker.io."""
        return "registry-1.docker.io" if self.host == "docker.io" else self.host

    @property
    def allow_plain(self) -> bool:
        return self.insecure or not self.tls_verify

    # --- TLS ------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is not None:
            return self._ssl
        if self.allow_plain:
            ctx = ssl._create_unverified_context()
        else:
            ctx = ssl.create_default_context()
        folders = [os.path.join(base, self.host) for base in self.cert_dirs]
        if self.cert_dir:
            folders.insert(0, self.cert_dir)
        for folder in folders:
            for ca in sorted(glob.glob(os.path.join(folder, "*.crt"))):
                try:
                    ctx.load_verify_locations(cafile=ca)
                except (ssl.SSLError, OSError) as err:
                    raise PodpyError(f"cannot load CA certificate {ca}: {err}") from err
            for cert in sorted(glob.glob(os.path.join(folder, "*.cert"))):
                key = cert[: -len(".cert")] + ".key"
                if not os.path.exists(key):
                    raise PodpyError(
                        f"client certificate {cert} has no matching key {key}",
                        hint="put the key next to the certificate with the same base name",
                    )
                ctx.load_cert_chain(cert, key)
        self._ssl = ctx
        return ctx

    # --- low-level ------------------------------------------------------------------------

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(
                netloc, timeout=self.timeout, context=self.ssl_context()
            )
        return http.client.HTTPConnection(netloc, timeout=self.timeout)

    def base_url(self) -> str:
        if self._scheme is None:
            self.ping()
        return f"{self._scheme}://{self.api_host}"

    def _send_once(
        self, method: str, url: str, headers: Dict[str, str], body: Optional[bytes]
    ) -> Response:
        parts = urllib.parse.urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn = self._connect(parts.scheme, parts.netloc)
        all_headers = {"User-Agent": USER_AGENT, **headers}
        try:
            conn.request(method, path, body=body, headers=all_headers)
            raw = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        lowered = {k.lower(): v for k, v in raw.getheaders()}
        return Response(raw.status, lowered, conn, raw, url)

    def _send(
        self,
        method: str,
        url: str,
        headers: Dict[str, str],
        body: Optional[bytes] = None,
        attempts: Optional[int] = None,
    ) -> Response:
        """Send with retries on dropped connections, 5xx and 429, and follow redirects."""
        max_attempts = attempts or self.attempts
        original_netloc = urllib.parse.urlsplit(url).netloc
        redirects = 0
        attempt = 0
        while True:
            try:
                response = self._send_once(method, url, headers, body)
            except (OSError, http.client.HTTPException) as err:
                if isinstance(err, ssl.SSLCertVerificationError):
                    raise PodpyError(
                        f"pinging container registry {self.host}: {err.verify_message}",
                        hint=f"trust its CA in /etc/containers/certs.d/{self.host}/ca.crt, "
                        "or use --tls-verify=false for a test registry",
                    ) from err
                attempt += 1
                # Name resolution and TLS protocol failures do not heal on a retry.
                permanent = isinstance(err, (socket.gaierror, ssl.SSLError))
                if attempt >= max_attempts or permanent:
                    raise RegistryError(f"{method} {url}: {err}") from err
                self._backoff(attempt, None)
                continue
            if response.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = response.header("location")
                response.close()
                if not location or redirects >= MAX_REDIRECTS:
                    raise RegistryError(f"{method} {url}: too many or bad redirects")
                redirects += 1
                url = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(url).netloc != original_netloc:
                    # Blob storage (S3, CDN) must never see our registry credentials.
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                continue
            if response.status in RETRY_STATUSES and attempt + 1 < max_attempts:
                retry_after = response.header("retry-after")
                response.close()
                attempt += 1
                self._backoff(attempt, retry_after)
                continue
            return response

    @staticmethod
    def _backoff(attempt: int, retry_after: Optional[str]) -> None:
        delay = min(0.25 * (2 ** (attempt - 1)), 8.0) * (0.75 + random.random() / 2)
        if retry_after:
            try:
                delay = min(float(retry_after), 60.0)
            except ValueError:
                pass
        log.debug(f"registry: retrying in {delay:.2f}s (attempt {attempt + 1})")
        time.sleep(delay)

    # --- ping and auth ---------------------------------------------------------------------

    def ping(self) -> None:
        """`GET /v2/`: choose the scheme (https, plain http only if allowed) and learn the auth."""
        with self._lock:
            if self._scheme is not None:
                return
            schemes = ["https", "http"] if self.allow_plain else ["https"]
            last_error: Optional[BaseException] = None
            for scheme in schemes:
                # Probing https before falling back to http must not sit through retries.
                probe_attempts = 1 if scheme == "https" and self.allow_plain else None
                try_url = f"{scheme}://{self.api_host}/v2/"
                try:
                    response = self._send("GET", try_url, {}, attempts=probe_attempts)
                except PodpyError as err:
                    last_error = err
                    if scheme == "https" and self.allow_plain:
                        continue
                    if isinstance(err, RegistryError):
                        cause = err.__cause__ or err
                        raise PodpyError(
                            f"pinging container registry {self.host}: {cause}",
                            hint=None if self.allow_plain else _PLAIN_HINT,
                        ) from err
                    raise
                except (OSError, http.client.HTTPException) as err:
                    last_error = err
                    continue
                body = response.read_all(64 * 1024)
                if response.status == 401:
                    challenge = response.header("www-authenticate")
                    if challenge:
                        self._challenge = parse_challenge(challenge)
                elif response.status == 404 and not body:
                    pass  # some registries have no /v2/ but serve the API anyway
                elif response.status >= 400:
                    last_error = RegistryError(
                        f"pinging container registry {self.host}: HTTP {response.status}",
                        status=response.status,
                    )
                    if scheme == "https" and self.allow_plain:
                        continue
                    raise last_error
                self._scheme = scheme
                return
            raise PodpyError(
                f"pinging container registry {self.host}: {last_error}",
                hint=None if self.allow_plain else _PLAIN_HINT,
            ) from last_error

    def _basic_header(self, scopes: Optional[List[str]] = None) -> Optional[str]:
        key = self.host
        for scope in scopes or []:
            kind, _, rest = scope.partition(":")
            if kind == "repository" and rest:
                key = f"{self.host}/{rest.rsplit(':', 1)[0]}"
                break
        creds = self.credentials(key) if self.credentials else None
        if not creds:
            return None
        token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        return f"Basic {token}"

    def _bearer_token(self, params: Dict[str, str], scopes: List[str]) -> str:
        key = " ".join(sorted(scopes))
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached.expires > time.time() + 5:
                return cached.value
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.host} sent a Bearer challenge without a realm")
        query = [("service", params["service"])] if params.get("service") else []
        query += [("scope", s) for s in scopes]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {}
        basic = self._basic_header(scopes)
        if basic:
            headers["Authorization"] = basic
        response = self._send("GET", url, headers)
        body = response.read_all(1024 * 1024)
        if response.status in (401, 403):
            if basic is None:
                raise Unauthorized(
                    f"{self.host}: authentication required",
                    hint=f"log in first (podpy login {self.host}) or pass --creds USER:PASSWORD",
                    status=response.status,
                    code="UNAUTHORIZED",
                )
            raise Unauthorized(
                f"authenticating to {self.host}: invalid username/password",
                hint=f"check the credentials (podpy login {self.host})",
                status=response.status,
                code="UNAUTHORIZED",
            )
        if response.status != 200:
            raise RegistryError(
                f"getting a token from {realm}: HTTP {response.status}", status=response.status
            )
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
            expires_in = int(data.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError) as err:
            raise RegistryError(f"token server {realm} sent an invalid response") from err
        if not token:
            raise RegistryError(f"token server {realm} sent no token")
        with self._lock:
            self._tokens[key] = _Token(token, time.time() + expires_in)
        return token

    def _auth_header(self, scopes: List[str]) -> Optional[str]:
        if self._challenge is None:
            return None
        scheme, params = self._challenge
        if scheme == "basic":
            return self._basic_header(scopes)
        if scheme == "bearer":
            return f"Bearer {self._bearer_token(params, scopes)}"
        return None

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: List[str],
        headers: Optional[Dict[str, str]] = None,
        body: Optional[bytes] = None,
    ) -> Response:
        """An authenticated request; `path` is `/v2/...` or an absolute URL (upload Locations)."""
        url = path if "://" in path else self.base_url() + path
        hdrs = dict(headers or {})
        auth = self._auth_header(scopes)
        if auth:
            hdrs["Authorization"] = auth
        response = self._send(method, url, hdrs, body)
        if response.status == 401:
            challenge = response.header("www-authenticate")
            response.read_all(64 * 1024)
            if not challenge:
                raise Unauthorized(f"{self.host}: unauthorized", status=401)
            new_challenge = parse_challenge(challenge)
            scheme, params = new_challenge
            extra_scope = params.get("scope")
            with self._lock:
                self._challenge = new_challenge
                if scheme == "bearer":
                    self._tokens.pop(" ".join(sorted(scopes)), None)
            if extra_scope and extra_scope not in scopes:
                scopes = scopes + [extra_scope]
            auth = self._auth_header(scopes)
            if not auth:
                raise Unauthorized(
                    f"{self.host}: authentication required",
                    hint=f"log in first (podpy login {self.host}) or pass --creds USER:PASSWORD",
                    status=401,
                    code="UNAUTHORIZED",
                )
            hdrs["Authorization"] = auth
            response = self._send(method, url, hdrs, body)
            if response.status == 401:
                response.read_all(64 * 1024)
                raise Unauthorized(
                    f"{self.host}: authentication failed: invalid username/password",
                    hint=f"check the credentials (podpy login {self.host})",
                    status=401,
                    code="UNAUTHORIZED",
                )
        return response

    def raise_for(self, response: Response, what: str) -> None:
        """Turn an error response into a RegistryError naming the operation."""
        body = response.read_all(64 * 1024) if response.raw is not None else response.body
        code, message = _error_detail(body)
        status = response.status
        text = f"{what}: {message or f'HTTP {status}'}"
        if status == 404:
            raise NotFound(text, status=status, code=code)
        if status in (401, 403):
            raise Unauthorized(
                text,
                hint=f"check that you may access it (podpy login {self.host})",
                status=status,
                code=code,
            )
        if status == 429:
            raise RegistryError(
                text,
                hint="the registry is rate limiting; try again later",
                status=status,
                code=code,
            )
        raise RegistryError(text, status=status, code=code)

    # --- pull API ---------------------------------------------------------------------------

    @staticmethod
    def pull_scope(repo: str) -> List[str]:
        return [f"repository:{repo}:pull"]

    @staticmethod
    def push_scope(repo: str, mount_from: Optional[str] = None) -> List[str]:
        """A push asks for pull,push up front (and pull on a cross-repo mount source)."""
        scopes = [f"repository:{repo}:pull,push"]
        if mount_from and mount_from != repo:
            scopes.append(f"repository:{mount_from}:pull")
        return scopes

    def get_manifest(
        self, repo: str, reference: str, accept: Iterable[str] = ACCEPT_MANIFEST_TYPES
    ) -> Tuple[bytes, str, str]:
        """(raw bytes, content type, Docker-Content-Digest header) of a manifest or index."""
        response = self.request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            scopes=self.pull_scope(repo),
            headers={"Accept": ", ".join(accept)},
        )
        if response.status != 200:
            self.raise_for(response, f"reading manifest {reference} in {self.host}/{repo}")
        length = response.header("content-length")
        if length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
            response.close()
            raise ManifestError(
                f"manifest {reference} in {self.host}/{repo} is {length} bytes, "
                f"larger than the {MAX_MANIFEST_SIZE} byte limit"
            )
        raw = response.read_all(MAX_MANIFEST_SIZE)
        return raw, response.header("content-type"), response.header("docker-content-digest")

    def open_blob(self, repo: str, digest: str, offset: int = 0) -> Tuple[_BlobStream, int]:
        """A stream of the blob from `offset` (Range), and the offset it really starts at."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = self.request(
                "GET", f"/v2/{repo}/blobs/{digest}", scopes=self.pull_scope(repo), headers=headers
            )
        except RegistryError as err:
            if isinstance(err.__cause__, (OSError, http.client.HTTPException)):
                raise TransientFetchError(str(err)) from err
            raise
        if response.status == 206:
            start = _range_start(response.header("content-range"))
            return _BlobStream(response), start
        if response.status == 200:
            return _BlobStream(response), 0
        if response.status == 416 and offset:
            response.close()
            return self.open_blob(repo, digest, 0)
        self.raise_for(response, f"fetching blob {digest} from {self.host}/{repo}")
        raise AssertionError("unreachable")

    def get_blob_bytes(self, repo: str, digest: str, limit: int) -> bytes:
        stream, _ = self.open_blob(repo, digest)
        try:
            data = stream.read(limit + 1)
        finally:
            stream.close()
        if len(data) > limit:
            raise ManifestError(f"blob {digest} is larger than the {limit} byte limit")
        return data

    def head_blob(
        self, repo: str, digest: str, scopes: Optional[List[str]] = None
    ) -> Optional[int]:
        """Size of the blob if the repository has it, else None."""
        response = self.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", scopes=scopes or self.pull_scope(repo)
        )
        response.close()
        if response.status == 200:
            length = response.header("content-length")
            return int(length) if length.isdigit() else 0
        if response.status == 404:
            return None
        self.raise_for(response, f"checking blob {digest} in {self.host}/{repo}")
        return None


def _range_start(content_range: str) -> int:
    """`bytes 100-199/200` -> 100."""
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return 0


def is_connection_error(err: BaseException) -> bool:
    return isinstance(err, (OSError, socket.timeout, http.client.HTTPException))
