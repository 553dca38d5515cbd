"""`podpy save/load/import` and `image copy` between archive transports, as the rootless user
and as root: round trips keep the image ID, hostile or broken archives store nothing."""

from __future__ import annotations

import gzip
import io
import json
import os
import pty
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Dict, List

import pytest

pytestmark = pytest.mark.registry

Runner = Any


def graph_root(runner: Runner) -> Path:
    if "--root" in runner.extra_args:
        return Path(runner.extra_args[runner.extra_args.index("--root") + 1])
    return runner.home / ".local" / "share" / "podpy" / "storage"


def store_files(runner: Runner) -> List[str]:
    """Every blob and layer entry in the store (temporaries included)."""
    root = graph_root(runner)
    found: List[str] = []
    for sub in ("blobs/sha256", "layers"):
        folder = root / sub
        if folder.is_dir():
            found += sorted(f"{sub}/{p.name}" for p in folder.iterdir())
    return found


def image_ids(runner: Runner) -> List[str]:
    return sorted(set(runner.ok("images", "-q", "--no-trunc").split()))


def _members(path: Path) -> Dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


def _write_tar(path: Path, members: Dict[str, bytes], extra: Dict[str, bytes] = {}) -> None:  # noqa: B006
    with tarfile.open(path, "w") as tf:
        for name, data in {**members, **extra}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    path.chmod(0o644)


def test_save_load_round_trip_keeps_id(
    as_each: Runner, busybox_image: str, multilayer_image: str, multilayer_layout: Any
) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image, multilayer_image)
    before = image_ids(as_each)
    archive = as_each.home / "both.tar"
    as_each.ok("save", "-o", str(archive), busybox_image, multilayer_image)
    manifest = json.loads(_members(archive)["manifest.json"])
    assert [entry["RepoTags"] for entry in manifest] == [[busybox_image], [multilayer_image]]
    # Layers are plain tars named by diff ID; the shared busybox layer is stored once.
    layers = [name for entry in manifest for name in entry["Layers"]]
    assert f"{multilayer_layout.diff_ids[1].split(':')[1]}.tar" in layers
    assert len(set(layers)) == len(multilayer_layout.diff_ids)

    as_each.ok("rmi", "-a")
    assert image_ids(as_each) == []
    loaded = as_each.ok("load", "-i", str(archive))
    assert loaded.splitlines() == [
        f"Loaded image: {busybox_image}",
        f"Loaded image: {multilayer_image}",
    ]
    assert image_ids(as_each) == before
    # The loaded image runs from its unpacked layers (whiteouts applied).
    inspect = json.loads(as_each.ok("image", "inspect", multilayer_image))[0]
    assert inspect["RootFS"]["Layers"] == multilayer_layout.diff_ids

    # gzip'd on stdin, and an existing image is simply re-tagged.
    zipped = gzip.compress(archive.read_bytes())
    as_each.ok("rmi", "-a")
    result = subprocess.run(
        as_each._wrap(
            ["/usr/bin/python3", "-I", str(as_each.pyz), *as_each.extra_args, "load", "-q"]
        ),
        input=zipped,
        capture_output=True,
        env=as_each.env(),
        cwd=str(as_each.home),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert image_ids(as_each) == before


def test_oci_archive_and_dir_formats(
    as_each: Runner, multilayer_image: str, multilayer_layout: Any
) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", multilayer_image)
    oci_archive = as_each.home / "ml-oci.tar"
    as_each.ok("save", "--format", "oci-archive", "-o", str(oci_archive), multilayer_image)
    members = _members(oci_archive)
    index = json.loads(members["index.json"])
    entry = index["manifests"][0]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == multilayer_image
    # Unchanged blobs: the pulled manifest itself is in the archive.
    assert entry["digest"] == multilayer_layout.manifest_digest
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}

    oci_dir = as_each.home / "ml-oci-dir"
    as_each.ok("save", "--format", "oci-dir", "-o", str(oci_dir), multilayer_image)
    docker_dir = as_each.home / "ml-docker-dir"
    as_each.ok("save", "--format", "docker-dir", "-o", str(docker_dir), multilayer_image)
    dir_manifest = json.loads((docker_dir / "manifest.json").read_text())
    assert dir_manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert (docker_dir / "version").read_text() == "Directory Transport Version: 1.1\n"

    as_each.ok("rmi", "-a")
    assert as_each.ok("load", "-q", "-i", str(oci_archive)).strip() == (
        f"Loaded image: {multilayer_image}"
    )
    assert image_ids(as_each) == ["sha256:" + multilayer_layout.image_id]

    # image copy reads each layout back (the ID never changes).
    as_each.ok("image", "copy", "-q", f"oci:{oci_dir}", "containers-storage:copied:oci")
    as_each.ok("image", "copy", "-q", f"dir:{docker_dir}", "copied:dir")
    archive = as_each.home / "copied.tar"
    as_each.ok("image", "copy", "-q", "copied:dir", f"docker-archive:{archive}:localhost/x:1")
    as_each.ok("image", "copy", "-q", f"docker-archive:{archive}", "copied:archive")
    for name in ("copied:oci", "copied:dir", "copied:archive"):
        info = json.loads(as_each.ok("image", "inspect", name))[0]
        assert info["Id"] == multilayer_layout.image_id, name


def test_load_refuses_hostile_and_broken_archives(
    as_each: Runner, busybox_image: str, shared_tmp: Path
) -> None:
    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image)
    good = as_each.home / "good.tar"
    as_each.ok("save", "-o", str(good), busybox_image)
    members = _members(good)
    as_each.ok("rmi", "-a")
    before = store_files(as_each)

    cases = {
        "dotdot": ({**members}, {"../escape.txt": b"x"}, 'unsafe path "../escape.txt"'),
        "absolute": ({**members}, {"/etc/evil": b"x"}, 'unsafe path "/etc/evil"'),
        "badjson": (
            {**members, "manifest.json": b'[{"Config": "abc'},
            {},
            "manifest.json is not valid JSON",
        ),
        "noconfig": ({**members, "manifest.json": b'[{"Layers": []}]'}, {}, "has no Config"),
        "missing-layer": (
            {**members, "manifest.json": json.dumps([{"Config": "a.json", "Layers": []}]).encode()},
            {},
            "refers to a.json, which is missing",
        ),
        "not-a-tar": ({}, {}, "not a tar archive"),
    }
    for label, (content, extra, message) in cases.items():
        path = shared_tmp / f"load-{label}-{os.getpid()}.tar"
        if label == "not-a-tar":
            path.write_bytes(b"this is not an archive at all" * 40)
            path.chmod(0o644)
        else:
            _write_tar(path, content, extra)
        result = as_each.podpy("load", "-i", str(path))
        path.unlink()
        assert result.returncode == 125, (label, result.stderr)
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(error_lines) == 1 and message in error_lines[0], (label, result.stderr)
        assert image_ids(as_each) == [], label
        assert store_files(as_each) == before, label
    assert not (graph_root(as_each).parent / "escape.txt").exists()

    # A layer that does not match its diff ID is refused with nothing of it kept.
    layer_name = next(n for n in members if n.endswith(".tar"))
    corrupt = bytearray(members[layer_name])
    corrupt[1024] ^= 0xFF
    path = shared_tmp / f"load-corrupt-{os.getpid()}.tar"
    _write_tar(path, {**members, layer_name: bytes(corrupt)})
    result = as_each.podpy("load", "-i", str(path))
    path.unlink()
    assert result.returncode == 125 and "digest mismatch" in result.stderr
    assert image_ids(as_each) == [] and store_files(as_each) == before


def test_load_is_all_or_nothing(
    as_each: Runner,
    busybox_image: str,
    multilayer_image: str,
    multilayer_layout: Any,
    shared_tmp: Path,
) -> None:
    """A corrupt layer in the second image of an archive also drops the first image."""
    as_each.ok("pull", "-q", "--tls-verify=false", busybox_image, multilayer_image)
    both = as_each.home / "both.tar"
    as_each.ok("save", "-o", str(both), busybox_image, multilayer_image)
    members = _members(both)
    as_each.ok("rmi", "-a")
    before = store_files(as_each)
    top_layer = multilayer_layout.diff_ids[-1].split(":")[1] + ".tar"
    corrupt = bytearray(members[top_layer])
    corrupt[600] ^= 0xFF
    path = shared_tmp / f"load-half-{os.getpid()}.tar"
    _write_tar(path, {**members, top_layer: bytes(corrupt)})
    try:
        result = as_each.podpy("load", "-i", str(path))
    finally:
        path.unlink()
    assert result.returncode == 125 and "digest mismatch" in result.stderr
    assert image_ids(as_each) == []
    assert store_files(as_each) == before


def test_import_rootfs_tarball_runs(as_each: Runner, shared_tmp: Path) -> None:
    rootfs = shared_tmp / f"rootfs-{os.getpid()}.tar.gz"
    with tarfile.open(rootfs, "w:gz") as tf:
        tf.add("/bin/busybox", arcname="bin/busybox")
        info = tarfile.TarInfo("etc/motd")
        data = b"imported motd\n"
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    rootfs.chmod(0o644)
    try:
        out = as_each.ok(
            "import",
            "-q",
            "--change",
            'CMD ["/bin/busybox", "cat", "/etc/motd"]',
            "-c",
            "ENV GREETING=hello",
            "-c",
            "WORKDIR /etc",
            "-m",
            "from a tarball",
            str(rootfs),
            "imported:v1",
        )
        image_id = out.strip()
        assert image_id.startswith("sha256:") and len(image_id) == 71
        info = json.loads(as_each.ok("image", "inspect", "imported:v1"))[0]
        assert info["Id"] == image_id.split(":", 1)[1]
        assert info["RepoTags"] == ["localhost/imported:v1"]
        assert info["Config"]["Cmd"] == ["/bin/busybox", "cat", "/etc/motd"]
        assert info["Config"]["Env"] == ["GREETING=hello"]
        assert info["Config"]["WorkingDir"] == "/etc"
        assert info["History"][0]["comment"] == "from a tarball"
        run = as_each.podpy("run", "--rm", "imported:v1")
        assert run.returncode == 0, run.stderr
        assert run.stdout == "imported motd\n"
        shell = as_each.podpy("run", "--rm", "imported:v1", "/bin/busybox", "pwd")
        assert shell.stdout.strip() == "/etc"

        # Shell-form CMD like podman: /bin/sh -c.
        as_each.ok("import", "-q", "-c", "CMD=/bin/busybox true", str(rootfs), "imported:v2")
        info = json.loads(as_each.ok("image", "inspect", "imported:v2"))[0]
        assert info["Config"]["Cmd"] == ["/bin/sh", "-c", "/bin/busybox true"]

        bad = as_each.podpy("import", "-c", "FROM scratch", str(rootfs))
        assert bad.returncode == 125 and 'unsupported instruction "FROM"' in bad.stderr
        not_tar = as_each.podpy("import", "/etc/hostname")
        assert not_tar.returncode == 125 and "is not a tar archive" in not_tar.stderr
    finally:
        rootfs.unlink()


def test_import_from_url_and_stdin(as_each: Runner) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add("/bin/busybox", arcname="bin/busybox")
    payload = buf.getvalue()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/rootfs.tar":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        from_url = as_each.ok("import", "-q", f"{url}/rootfs.tar", "fromurl:v1").strip()
        missing = as_each.podpy("import", f"{url}/nothing.tar")
        assert missing.returncode == 125 and "404" in missing.stderr
    finally:
        server.shutdown()
        server.server_close()
    result = subprocess.run(
        as_each._wrap(
            ["/usr/bin/python3", "-I", str(as_each.pyz), *as_each.extra_args, "import", "-q", "-"]
        ),
        input=payload,
        capture_output=True,
        env=as_each.env(),
        cwd=str(as_each.home),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    # Same content and (nearly) same config: one layer with the tarball's digest as diff ID.
    from_stdin = result.stdout.decode().strip()
    import hashlib

    for image_id in (from_url, from_stdin):
        info = json.loads(as_each.ok("image", "inspect", image_id.split(":", 1)[1]))[0]
        assert info["RootFS"]["Layers"] == ["sha256:" + hashlib.sha256(payload).hexdigest()]
    assert "localhost/fromurl:v1" in as_each.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert as_each.ok("images", "-q", "--filter", "dangling=true").strip()


def test_save_refuses_terminal_and_bad_formats(rootful: Runner, busybox_image: str) -> None:
    rootful.ok("pull", "-q", "--tls-verify=false", busybox_image)
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run(
            [
                "/usr/bin/python3",
                "-I",
                str(rootful.pyz),
                *rootful.extra_args,
                "save",
                busybox_image,
            ],
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=rootful.env(),
            timeout=60,
        )
    finally:
        os.close(secondary)
        os.close(primary)
    assert result.returncode == 125
    assert b"refusing to save to terminal" in result.stderr
    bad = rootful.podpy("save", "--format", "tarball", "-o", "/tmp/x.tar", busybox_image)
    assert bad.returncode == 125 and 'unsupported save format "tarball"' in bad.stderr
    missing = rootful.podpy("save", "-o", str(rootful.home / "x.tar"), "nosuchimage")
    assert missing.returncode == 125 and "nosuchimage: image not known" in missing.stderr
    assert not (rootful.home / "x.tar").exists()
    assert [p for p in rootful.home.iterdir() if p.name.startswith(".podpy-tmp-")] == []
