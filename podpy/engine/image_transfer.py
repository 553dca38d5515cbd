"""Image transfer verbs behind the Engine: login/logout, push, save, load, import, copy and
remote inspect; each validates its input fully before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import TYPE_CHECKING, Any, BinaryIO, Dict, List, Optional, Tuple

from podpy.errors import PodpyError
from podpy.record import field, record

if TYPE_CHECKING:
    from podpy.engine import Engine
    from podpy.image.copy import ImageSource, RegistryOptions
    from podpy.image.pull import PullProgress

SAVE_FORMATS = ("docker-archive", "oci-archive", "oci-dir", "docker-dir")


# --- login / logout ----------------------------------------------------------------------------


def registry_key(eng: Engine, text: Optional[str]) -> str:
    """The auth.json key for a login argument: `host[:port][/path]` (schemes and `docker://`
    dropped); without one, the first unqualified-search registry, as podman does."""
    from podpy.image.auth import normalize_key

    if not text:
        search = []
        try:
            search = list(eng.config.registries.search_registries or [])
        except AttributeError:
            pass
        if not search:
            raise PodpyError(
                "no registry given and no unqualified-search-registries configured",
                hint="name the registry: podpy login HOST[:PORT]",
            )
        return search[0]
    cleaned = text[len("docker://") :] if text.startswith("docker://") else text
    key = normalize_key(cleaned)
    if not key or " " in key:
        raise PodpyError(f'invalid registry "{text}"', hint="use HOST[:PORT][/NAMESPACE]")
    return key


@record
class LoginOptions:
    username: str
    password: str
    authfile: Optional[str] = None
    tls_verify: Optional[bool] = None
    cert_dir: Optional[str] = None


def login(eng: Engine, registry: Optional[str], options: LoginOptions) -> str:
    """Check the credentials against the registry, then store them; returns the key."""
    from podpy.image import auth
    from podpy.image.copy import RegistryOptions, registry_client
    from podpy.image.registry import Unauthorized

    key = registry_key(eng, registry)
    host = key.split("/", 1)[0]
    if not options.username:
        raise PodpyError("username is empty", hint="pass -u USERNAME")
    if not options.password:
        raise PodpyError("password is empty", hint="pass -p PASSWORD or --password-stdin")
    client = registry_client(
        eng,
        "docker.io" if host == "docker.io" else host,
        "",
        RegistryOptions(
            tls_verify=options.tls_verify,
            creds=f"{options.username}:{options.password}",
            cert_dir=options.cert_dir,
        ),
    )
    try:
        client.ping()
        if client._challenge is not None:
            response = client.request("GET", "/v2/", scopes=[])
            response.read_all(64 * 1024)
            if response.status in (401, 403):
                raise Unauthorized("invalid username/password", status=response.status)
    except Unauthorized as err:
        raise PodpyError(
            f'logging into "{key}": invalid username/password',
            hint="check the user name and password",
        ) from err
    auth.store(key, options.username, options.password, eng.options.env, options.authfile)
    return key


def get_login(eng: Engine, registry: Optional[str], authfile: Optional[str]) -> str:
    from podpy.image import auth

    key = registry_key(eng, registry)
    found = auth.lookup(key, eng.options.env, authfile)
    if not found:
        raise PodpyError(f"not logged into {key}", hint=f"log in with podpy login {key}")
    return found[0]


def logout(
    eng: Engine, registry: Optional[str], all_registries: bool, authfile: Optional[str]
) -> str:
    """Remove stored credentials; returns the message podman prints."""
    from podpy.image import auth

    if all_registries:
        auth.remove_all(eng.options.env, authfile)
        return "Removed login credentials for all registries"
    key = registry_key(eng, registry)
    if auth.remove(key, eng.options.env, authfile):
        return f"Removed login credentials for {key}"
    elsewhere = auth.stored_in_read_only(key, eng.options.env)
    if elsewhere:
        raise PodpyError(
            f"not logged into {key} with podpy; credentials for it are in {elsewhere}",
            hint="remove them with the tool that wrote that file (e.g. docker logout)",
        )
    raise PodpyError(f"not logged into {key}")


# --- push / copy / remote inspect -------------------------------------------------------------


@record
class PushOptions:
    tls_verify: Optional[bool] = None
    creds: Optional[str] = None
    authfile: Optional[str] = None
    cert_dir: Optional[str] = None
    format: Optional[str] = None
    digestfile: Optional[str] = None
    compression: Optional[str] = None

    def registry(self) -> RegistryOptions:
        from podpy.image.copy import RegistryOptions

        return RegistryOptions(self.tls_verify, self.creds, self.authfile, self.cert_dir)


def push(
    eng: Engine,
    image: str,
    destination: Optional[str],
    options: PushOptions,
    progress: Optional[PullProgress] = None,
) -> Optional[str]:
    """`podman push IMAGE [DEST]`; DEST may be any transport (default: the registry the
    image's name points at). Returns the manifest digest when one was written."""
    from podpy.image import copy as cp
    from podpy.image.push import check_compression, normalize_format

    fmt = normalize_format(options.format)
    check_compression(options.compression)
    source = cp.store_source(eng, image)
    try:
        if destination is None:
            if not source.names:
                raise PodpyError(
                    f"{image}: the image has no name to push to",
                    hint="give a destination: podpy push IMAGE HOST/REPO[:TAG]",
                )
            destination = "docker://" + source.names[0]
        elif "://" not in destination and destination.split(":", 1)[0] not in (
            "oci",
            "oci-archive",
            "docker-archive",
            "dir",
            "containers-storage",
        ):
            destination = "docker://" + destination
        endpoint = cp.parse_endpoint(destination)
        if progress:
            progress.message("Getting image source signatures")
        result = cp.write_destination(
            eng, source, endpoint, options.registry(), fmt, progress, options.digestfile
        )
        if progress:
            progress.message("Storing signatures")
        return result.manifest_digest
    finally:
        source.close()


def copy(
    eng: Engine,
    src: str,
    dst: str,
    options: PushOptions,
    src_options: Optional[PushOptions] = None,
    progress: Optional[PullProgress] = None,
) -> Tuple[str, Optional[str]]:
    from podpy.image import copy as cp
    from podpy.image.push import normalize_format

    result = cp.copy(
        eng,
        src,
        dst,
        (src_options or options).registry(),
        options.registry(),
        normalize_format(options.format),
        progress,
        options.digestfile,
    )
    return result.image_id, result.manifest_digest


def inspect_remote(
    eng: Engine, text: str, options: PushOptions, raw: bool = False, config: bool = False
) -> Any:
    """skopeo-inspect-shaped JSON for `docker://REF` (raw: the manifest bytes as served)."""
    from podpy.image import copy as cp
    from podpy.image import manifest as mf

    reference = text[len("docker://") :] if text.startswith("docker://") else text
    remote = cp.fetch_remote(eng, reference, options.registry(), with_tags=not (raw or config))
    if raw:
        return remote.raw_manifest
    if config:
        return remote.config_raw
    data = json.loads(remote.config_raw)
    container_config = data.get("config") or {}
    return {
        "Name": remote.reference.name,
        "Digest": remote.digest,
        "RepoTags": remote.tags,
        "Created": data.get("created", ""),
        "DockerVersion": data.get("docker_version", ""),
        "Labels": container_config.get("Labels"),
        "Architecture": data.get("architecture", ""),
        "Os": data.get("os", ""),
        "Layers": [d.digest for d in remote.manifest.layers],
        "LayersData": [
            {
                "MIMEType": d.media_type,
                "Digest": d.digest,
                "Size": d.size,
                "Annotations": d.annotations or None,
            }
            for d in remote.manifest.layers
        ],
        "Env": container_config.get("Env"),
        "ManifestType": remote.manifest.media_type
        if remote.manifest.media_type
        else mf.OCI_MANIFEST,
    }


# --- save -------------------------------------------------------------------------------------


def save(
    eng: Engine,
    images: List[str],
    fmt: str,
    output: Optional[str],
    stdout: Optional[BinaryIO] = None,
) -> None:
    """`podman save`: one archive (or directory) holding `images`."""
    from podpy.image import archive
    from podpy.image import copy as cp

    if fmt not in SAVE_FORMATS:
        raise PodpyError(f'unsupported save format "{fmt}"', hint="use " + ", ".join(SAVE_FORMATS))
    if not images:
        raise PodpyError("need at least 1 argument", hint="podpy save [-o FILE] IMAGE...")
    if fmt in ("oci-dir", "docker-dir"):
        if not output:
            raise PodpyError(f"--format {fmt} needs a directory", hint="pass -o DIRECTORY")
        if len(images) > 1:
            raise PodpyError(f"--format {fmt} holds one image", hint="save one image per directory")
    sources: List[ImageSource] = []
    try:
        by_id: Dict[str, ImageSource] = {}
        for text in images:
            source = cp.store_source(eng, text)
            if source.image_id in by_id:
                kept = by_id[source.image_id]
                kept.names += [n for n in source.names if n not in kept.names]
                continue
            by_id[source.image_id] = source
            sources.append(source)
        tmp_dir = cp.scratch_dir(eng)
        try:
            target: Any = output if output else stdout
            if fmt == "docker-archive":
                archive.write_docker_archive(target, [(s, list(s.names)) for s in sources], tmp_dir)
            elif fmt == "oci-archive":
                archive.write_oci_archive(target, [(s, None) for s in sources])
            elif fmt == "oci-dir":
                assert output is not None
                archive.write_oci_layout(output, [(sources[0], None)])
            else:
                assert output is not None
                archive.write_docker_dir(output, sources[0], tmp_dir)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    finally:
        for source in sources:
            source.close()


# --- load -------------------------------------------------------------------------------------


def _loaded_names(source: ImageSource) -> List[str]:
    from podpy.image import reference as refs

    names = []
    for tag in source.names:
        try:
            names.append(refs.parse_local_name(tag).tagged_name)
        except PodpyError as err:
            raise PodpyError(f'the archive names an invalid image "{tag}": {err.message}') from err
    return names


def load(
    eng: Engine,
    input_path: Optional[str],
    stdin: Optional[BinaryIO] = None,
    progress: Optional[PullProgress] = None,
) -> List[str]:
    """`podman load`: store every image of a docker-archive or oci-archive (plain or gzip'd);
    returns the names loaded (`sha256:<id>` for an untagged image)."""
    from podpy.image import archive
    from podpy.image import copy as cp

    tmp_dir = cp.scratch_dir(eng)
    files = None
    try:
        if input_path:
            if os.path.isdir(input_path):
                files = archive.DirFiles(input_path)
            elif not os.path.exists(input_path):
                raise PodpyError(f"{input_path}: no such file", hint="check the -i/--input path")
            else:
                files, _temps = archive.open_archive(input_path, tmp_dir)
        else:
            assert stdin is not None
            spooled = archive.spool_input(stdin, tmp_dir)
            files = archive.TarFiles(spooled, label="stdin")
        kind = archive.archive_kind(files)
        if kind == "docker-archive":
            sources = archive.read_docker_archive(files)
        else:
            sources = archive.read_oci_images(files)
        plans = [(s, _loaded_names(s)) for s in sources]
        loaded: List[str] = []
        added: List[str] = []
        from podpy.engine.images import store

        try:
            for source, names in plans:
                existed = store(eng).get(source.image_id) is not None
                image_id = cp.store_image(eng, source, names, progress)
                if not existed:
                    added.append(image_id)
                loaded.extend(names or ["sha256:" + image_id])
        except BaseException:
            # All or nothing: drop the images this load added before the failure.
            _remove_images(eng, added)
            raise
        return loaded
    finally:
        if files is not None:
            files.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _remove_images(eng: Engine, image_ids: List[str]) -> None:
    from podpy.engine import images as image_engine

    if image_ids:
        report = image_engine.remove(eng, image_ids, force=True)
        for err in report.errors:
            from podpy import log

            log.warn(f"rolling back the load: {err.message}")


# --- import -------------------------------------------------------------------------------------

CHANGE_INSTRUCTIONS = (
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _json_or_shell(value: str) -> List[str]:
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
            if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
                return parsed
        except ValueError:
            pass
    return ["/bin/sh", "-c", stripped]


def _pairs(value: str, instruction: str) -> List[Tuple[str, str]]:
    import shlex

    try:
        words = shlex.split(value)
    except ValueError as err:
        raise PodpyError(f'invalid change "{instruction} {value}": {err}') from err
    if len(words) >= 1 and "=" not in words[0]:
        key = words[0]
        return [(key, value.strip()[len(key) :].strip())]
    out = []
    for word in words:
        key, sep, val = word.partition("=")
        if not sep or not key:
            raise PodpyError(
                f'invalid change "{instruction} {value}": expected KEY=VALUE',
                hint=f'e.g. --change "{instruction} KEY=VALUE"',
            )
        out.append((key, val))
    return out


def apply_changes(config: Dict[str, Any], changes: List[str]) -> None:
    """Apply Dockerfile-style `--change` instructions to an image config's `config` map."""
    for change in changes:
        text = change.strip()
        split_at = min([i for i in (text.find("="), text.find(" ")) if i > 0] or [len(text)])
        instruction = text[:split_at].upper()
        value = text[split_at + 1 :] if split_at < len(text) else ""
        if instruction not in CHANGE_INSTRUCTIONS:
            raise PodpyError(
                f'invalid change "{change}": unsupported instruction "{text[:split_at]}"',
                hint="supported: " + ", ".join(CHANGE_INSTRUCTIONS),
            )
        if not value.strip():
            raise PodpyError(f'invalid change "{change}": {instruction} needs a value')
        if instruction == "CMD":
            config["Cmd"] = _json_or_shell(value)
        elif instruction == "ENTRYPOINT":
            config["Entrypoint"] = _json_or_shell(value)
        elif instruction == "ENV":
            env = [e for e in config.get("Env") or []]
            for key, val in _pairs(value, instruction):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={_unquote(val)}"]
            config["Env"] = env
        elif instruction == "LABEL":
            labels = dict(config.get("Labels") or {})
            for key, val in _pairs(value, instruction):
                labels[_unquote(key)] = _unquote(val)
            config["Labels"] = labels
        elif instruction == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for port in value.split():
                number, _, proto = port.partition("/")
                if not number.isdigit() or not 0 < int(number) < 65536:
                    raise PodpyError(f'invalid change "{change}": bad port "{port}"')
                ports[f"{int(number)}/{(proto or 'tcp').lower()}"] = {}
            config["ExposedPorts"] = ports
        elif instruction == "VOLUME":
            stripped = value.strip()
            paths = json.loads(stripped) if stripped.startswith("[") else stripped.split()
            volumes = dict(config.get("Volumes") or {})
            for path in paths:
                volumes[str(path)] = {}
            config["Volumes"] = volumes
        elif instruction == "USER":
            config["User"] = value.strip()
        elif instruction == "WORKDIR":
            config["WorkingDir"] = value.strip()
        elif instruction == "STOPSIGNAL":
            config["StopSignal"] = value.strip()
        elif instruction == "ONBUILD":
            config["OnBuild"] = list(config.get("OnBuild") or []) + [value.strip()]


def _rfc3339_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


def _fetch_import_source(source: str, stdin: Optional[BinaryIO], tmp_dir: str) -> str:
    """The tarball as a local file: a path as is, `-` and URLs copied to `tmp_dir`."""
    import tempfile

    if source != "-" and not source.startswith(("http://", "https://")):
        if not os.path.isfile(source):
            raise PodpyError(f"{source}: no such file", hint="give a tarball path, a URL or -")
        return source
    fd, path = tempfile.mkstemp(prefix=".podpy-import-", dir=tmp_dir)
    with os.fdopen(fd, "wb") as out:
        if source == "-":
            assert stdin is not None
            shutil.copyfileobj(stdin, out, 1024 * 1024)
        else:
            import urllib.error
            import urllib.request

            try:
                with urllib.request.urlopen(source, timeout=60) as response:
                    shutil.copyfileobj(response, out, 1024 * 1024)
            except (urllib.error.URLError, OSError) as err:
                raise PodpyError(f"downloading {source}: {err}") from err
    return path


def _plain_tarball(path: str, tmp_dir: str) -> Tuple[str, str]:
    """(path of the layer blob to store, its media type); xz/bzip2 are decompressed, gzip kept."""
    import bz2
    import lzma
    import tempfile

    from podpy.image import manifest as mf

    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        return path, mf.OCI_LAYER_GZIP
    opener = None
    if head[:3] == b"BZh":
        opener = bz2.open
    elif head == b"\xfd7zXZ\x00":
        opener = lzma.open
    elif head[:4] == b"\x28\xb5\x2f\xfd":
        raise PodpyError("zstd-compressed tarballs are not supported", hint="decompress it first")
    if opener is None:
        return path, mf.OCI_LAYER
    fd, plain = tempfile.mkstemp(prefix=".podpy-import-", dir=tmp_dir)
    with os.fdopen(fd, "wb") as out, opener(path, "rb") as src:  # type: ignore[operator]
        shutil.copyfileobj(src, out, 1024 * 1024)
    return plain, mf.OCI_LAYER


def _check_tar_and_diff_id(path: str, where: str) -> str:
    """The layer's diff ID; refuses input that is not a tar archive."""
    import hashlib
    import tarfile

    from podpy.storage.layers import open_uncompressed

    hasher = hashlib.sha256()
    with open(path, "rb") as raw:
        stream = open_uncompressed(raw)  # type: ignore[arg-type]
        try:
            first = stream.read(512)
        except (OSError, EOFError) as err:
            raise PodpyError(f"{where}: cannot decompress: {err}") from err
        hasher.update(first)
        try:
            if len(first) < 512:
                raise tarfile.HeaderError("truncated")
            if first != bytes(512):
                tarfile.TarInfo.frombuf(first, "utf-8", "surrogateescape")
        except tarfile.HeaderError as err:
            raise PodpyError(
                f"{where} is not a tar archive ({err})",
                hint="podpy import takes a tarball of a root filesystem (tar, tar.gz, tar.xz)",
            ) from err
        while True:
            chunk = stream.read(1024 * 1024)
            if not chunk:
                break
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


@record
class ImportOptions:
    changes: List[str] = field(default_factory=list)
    message: str = ""
    platform: Optional[str] = None


def import_image(
    eng: Engine,
    source: str,
    reference: Optional[str],
    options: ImportOptions,
    stdin: Optional[BinaryIO] = None,
    progress: Optional[PullProgress] = None,
) -> str:
    """`podman import`: a root filesystem tarball as a one-layer image; returns its ID."""
    from podpy.image import copy as cp
    from podpy.image import manifest as mf
    from podpy.image import reference as refs

    name = refs.parse_local_name(reference).tagged_name if reference else None
    container_config: Dict[str, Any] = {}
    apply_changes(container_config, options.changes)
    platform = mf.parse_platform(options.platform) if options.platform else mf.host_platform()
    tmp_dir = cp.scratch_dir(eng)
    try:
        fetched = _fetch_import_source(source, stdin, tmp_dir)
        blob_path, media_type = _plain_tarball(fetched, tmp_dir)
        diff_id = _check_tar_and_diff_id(blob_path, source if source != "-" else "stdin")
        import hashlib

        hasher = hashlib.sha256()
        size = 0
        with open(blob_path, "rb") as f:
            for chunk in iter(lambda: f.read(1024 * 1024), b""):
                hasher.update(chunk)
                size += len(chunk)
        created = _rfc3339_now()
        config: Dict[str, Any] = {
            "created": created,
            "architecture": platform.architecture,
            "os": platform.os,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [
                {
                    "created": created,
                    "created_by": f"/bin/sh -c #(nop) ADD file:{diff_id.split(':', 1)[1]} in /",
                    "comment": options.message or "imported from tarball",
                }
            ],
        }
        if platform.variant:
            config["variant"] = platform.variant
        if options.message:
            config["comment"] = options.message
        layer = cp.LayerBlob(
            "sha256:" + hasher.hexdigest(),
            size,
            media_type,
            diff_id,
            lambda: open(blob_path, "rb"),  # noqa: SIM115 - the store closes it
        )
        image = cp.ImageSource(
            config_raw=json.dumps(config, separators=(",", ":")).encode(), layers=[layer]
        )
        if progress:
            progress.message("Getting image source signatures")
        image_id = cp.store_image(eng, image, [name] if name else [], progress)
        if progress:
            progress.message("Storing signatures")
        return image_id
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
