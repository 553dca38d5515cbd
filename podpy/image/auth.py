"""Registry credentials as podman keeps them: auth.json files, Docker's config files, credential helpers.

Read order (the first file holding a matching key wins): `--authfile` / `$REGISTRY_AUTH_FILE`,
else `${XDG_RUNTIME_DIR}/containers/auth.json`; then `$XDG_CONFIG_HOME/containers/auth.json`,
`~/.docker/config.json` and `~/.dockercfg` (read-only). Within a file the most specific key
wins: `host/ns/repo`, then `host/ns`, then `host`. `login` and `logout` only write the first
file (mode 0600).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from typing import Any, Dict, List, Mapping, Optional, Tuple

from podpy.errors import PodpyError

AUTHFILE_ENV = "REGISTRY_AUTH_FILE"
DOCKER_HUB_KEYS = (
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "https://index.docker.io/v1/",
)

Credentials = Tuple[str, str]


class AuthFileError(PodpyError):
    """An auth file that cannot be read, parsed or written."""


def _env(env: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if env is None else env


def primary_authfile(
    env: Optional[Mapping[str, str]] = None, authfile: Optional[str] = None
) -> str:
    """The file `login`/`logout` write: --authfile, $REGISTRY_AUTH_FILE, else the runtime dir's."""
    from podpy.paths import runtime_dir

    env = _env(env)
    if authfile:
        return authfile
    if env.get(AUTHFILE_ENV):
        return env[AUTHFILE_ENV]
    return os.path.join(runtime_dir(env, os.geteuid()), "containers", "auth.json")


def read_only_authfiles(env: Optional[Mapping[str, str]] = None) -> List[str]:
    """Fallback files consulted after the primary one (never written by podpy)."""
    from podpy.paths import config_home, home_dir

    env = _env(env)
    home = home_dir(env)
    return [
        os.path.join(config_home(env), "containers", "auth.json"),
        os.path.join(home, ".docker", "config.json"),
        os.path.join(home, ".dockercfg"),
    ]


def _load(path: str) -> Dict[str, Any]:
    """The parsed file in the `{"auths": {...}}` shape; {} when it does not exist."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise AuthFileError(f"reading auth file {path}: {err.strerror}") from err
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise AuthFileError(
            f"auth file {path} is not valid JSON: {err}",
            hint="fix or remove the file, then log in again",
        ) from err
    if not isinstance(data, dict):
        raise AuthFileError(f"auth file {path} is not a JSON object")
    if os.path.basename(path) == ".dockercfg":
        return {"auths": data}  # legacy format: the auths map itself
    return data


def normalize_key(key: str) -> str:
    """`https://host/v1/` -> `host`; Docker Hub's aliases -> `docker.io`; trailing `/` dropped."""
    text = key.strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            text = text.split("/", 1)[0] if text.endswith("/v1/") or text.endswith("/v2/") else text
    text = text.rstrip("/")
    if text in ("index.docker.io", "registry-1.docker.io", "index.docker.io/v1"):
        return "docker.io"
    return text


def _candidate_keys(target: str) -> List[str]:
    """`host/ns/repo` -> [`host/ns/repo`, `host/ns`, `host`] (most specific first)."""
    parts = normalize_key(target).split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _decode(entry: Any, where: str) -> Optional[Credentials]:
    if not isinstance(entry, dict):
        return None
    encoded = entry.get("auth")
    if encoded:
        try:
            user, sep, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as err:
            raise AuthFileError(f"invalid auth entry for {where}: {err}") from err
        if not sep:
            raise AuthFileError(f"invalid auth entry for {where}: expected base64(user:password)")
        return user, password
    if entry.get("username"):
        return str(entry["username"]), str(entry.get("password", ""))
    return None


def _from_helper(helper: str, server: str) -> Optional[Credentials]:
    """Ask `docker-credential-HELPER get` (the Docker credential-helper protocol)."""
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run(
            [program, "get"], input=server, capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError as err:
        raise AuthFileError(
            f"credential helper {program} for {server} is not installed",
            hint=f"install {program} or remove it from credHelpers",
        ) from err
    if result.returncode != 0:
        return None  # "credentials not found in native keychain"
    try:
        data = json.loads(result.stdout)
        return str(data["Username"]), str(data["Secret"])
    except (ValueError, KeyError, TypeError) as err:
        raise AuthFileError(f"credential helper {program} gave an invalid answer") from err


def _lookup_in(data: Dict[str, Any], target: str) -> Optional[Credentials]:
    auths = data.get("auths") or {}
    helpers = data.get("credHelpers") or {}
    if not isinstance(auths, dict):
        auths = {}
    normalized = {normalize_key(k): v for k, v in auths.items()}
    for key in _candidate_keys(target):
        if isinstance(helpers, dict) and key in helpers:
            found = _from_helper(str(helpers[key]), key)
            if found:
                return found
        if key in normalized:
            found = _decode(normalized[key], key)
            if found:
                return found
    return None


def lookup(
    target: str, env: Optional[Mapping[str, str]] = None, authfile: Optional[str] = None
) -> Optional[Credentials]:
    """Credentials for `host[/path]` from the first file that has a matching key."""
    env = _env(env)
    files = [primary_authfile(env, authfile)]
    if not authfile and not env.get(AUTHFILE_ENV):
        files += read_only_authfiles(env)
    for path in files:
        found = _lookup_in(_load(path), target)
        if found:
            return found
    return None


def credential_lookup(
    creds: Optional[str] = None,
    authfile: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    repository: Optional[str] = None,
) -> Any:
    """A RegistryClient `credentials` hook: `--creds` if given, else the auth files.

    `repository` (the path inside the registry) lets `host/ns/repo` keys match first.
    """
    from podpy.image.registry import static_credentials

    static = static_credentials(creds)
    if static is not None:
        return static
    if authfile and not os.path.exists(authfile):
        raise AuthFileError(
            f"credential file is not accessible: stat {authfile}: no such file or directory",
            hint="log in with --authfile to create it, or drop --authfile",
        )
    cache: Dict[str, Optional[Credentials]] = {}

    def find(key: str) -> Optional[Credentials]:
        # The client passes `host/repository` when it knows the repository, else `host`.
        target = f"{key}/{repository}" if repository and "/" not in key else key
        if target not in cache:
            cache[target] = lookup(target, env, authfile)
        return cache[target]

    return find


def _write(path: str, data: Dict[str, Any]) -> None:
    from podpy.atomic import write_atomic

    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        write_atomic(path, (json.dumps(data, indent="\t") + "\n").encode(), mode=0o600)
    except OSError as err:
        raise AuthFileError(f"writing auth file {path}: {err.strerror or err}") from err


def store(
    key: str,
    username: str,
    password: str,
    env: Optional[Mapping[str, str]] = None,
    authfile: Optional[str] = None,
) -> str:
    """Record credentials for `key` (host[/path]) in the primary file; returns its path."""
    path = primary_authfile(env, authfile)
    data = _load(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    key = normalize_key(key)
    for existing in [k for k in auths if normalize_key(k) == key]:
        del auths[existing]
    auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    data["auths"] = auths
    _write(path, data)
    return path


def remove(
    key: str, env: Optional[Mapping[str, str]] = None, authfile: Optional[str] = None
) -> bool:
    """Delete `key`'s entry from the primary file; False when it had none."""
    path = primary_authfile(env, authfile)
    data = _load(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return False
    key = normalize_key(key)
    matches = [k for k in auths if normalize_key(k) == key]
    if not matches:
        return False
    for existing in matches:
        del auths[existing]
    _write(path, data)
    return True


def remove_all(env: Optional[Mapping[str, str]] = None, authfile: Optional[str] = None) -> None:
    """Drop every credential from the primary file (other keys, e.g. credHelpers, stay)."""
    path = primary_authfile(env, authfile)
    data = _load(path)
    if not data:
        return
    data["auths"] = {}
    _write(path, data)


def stored_in_read_only(key: str, env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The read-only file that holds `key`, if any (for logout's error message)."""
    for path in read_only_authfiles(env):
        try:
            auths = _load(path).get("auths") or {}
        except AuthFileError:
            continue
        if isinstance(auths, dict) and any(normalize_key(k) == normalize_key(key) for k in auths):
            return path
    return None
