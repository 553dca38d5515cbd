"""Archive and layout formats (docker-archive, OCI layout/archive, dir:), layer re-encoding,
transport names and import's --change parsing, on hand-made images (no store, no root)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Dict, Tuple

import pytest

from podpy.engine.image_transfer import apply_changes
from podpy.errors import PodpyError
from podpy.image import archive
from podpy.image import manifest as mf
from podpy.image.copy import (
    CopyError,
    ImageSource,
    LayerBlob,
    build_manifest,
    gzip_layer,
    parse_endpoint,
)


def _tar(files: Dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(data: bytes, compressed: bool) -> LayerBlob:
    diff_id = _digest(data)
    blob = gzip.compress(data, mtime=0) if compressed else data
    media = mf.OCI_LAYER_GZIP if compressed else mf.OCI_LAYER
    return LayerBlob(_digest(blob), len(blob), media, diff_id, lambda: io.BytesIO(blob))


def _image(compressed: bool = True, names: Tuple[str, ...] = ("localhost/app:v1",)) -> ImageSource:
    tars = [_tar({"etc/hello": b"hello\n"}), _tar({"etc/second": b"two\n" * 100})]
    layers = [_layer(t, compressed) for t in tars]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    config_raw = json.dumps(config).encode()
    manifest = build_manifest(config_raw, layers, "oci")
    return ImageSource(config_raw, layers, manifest, mf.OCI_MANIFEST, list(names))


def _read_all(layer: LayerBlob) -> bytes:
    stream = layer.open()
    try:
        return stream.read()
    finally:
        stream.close()


# --- docker-archive ---------------------------------------------------------------------------


def test_docker_archive_round_trip_decompresses_layers(tmp_path: Path) -> None:
    first = _image(compressed=True)
    second = _image(compressed=False, names=("docker.io/library/other:latest",))
    path = tmp_path / "out.tar"
    archive.write_docker_archive(str(path), [(first, first.names), (second, ["other:1"])])
    with tarfile.open(path) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["Config"] == f"{first.image_id}.json"
    assert manifest[0]["RepoTags"] == ["localhost/app:v1"]
    # Layers are plain tars named by diff ID, written once even when shared.
    assert manifest[0]["Layers"] == [f"{lay.diff_id.split(':')[1]}.tar" for lay in first.layers]
    assert manifest[1]["Layers"] == manifest[0]["Layers"]
    # podman 4.3's legacy layout beside it: <v1 id>/{VERSION,json,layer.tar -> ../<diff>.tar}.
    with tarfile.open(path) as tf:
        repositories = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
        top = repositories["localhost/app"]["v1"]
        assert repositories["other"]["1"] == top  # same layers, same chain of v1 IDs
        top_json = json.load(tf.extractfile(f"{top}/json"))  # type: ignore[arg-type]
        assert top_json["id"] == top and top_json["config"] == {"Cmd": ["sh"]}
        assert tf.extractfile(f"{top}/VERSION").read() == b"1.0"  # type: ignore[union-attr]
        link = tf.getmember(f"{top}/layer.tar")
        assert link.issym() and link.linkname == "../" + manifest[0]["Layers"][-1]
        base = top_json["parent"]
        assert "parent" not in json.load(tf.extractfile(f"{base}/json"))  # type: ignore[arg-type]
    assert sorted(n for n in names if n.endswith(".tar") and "/" not in n) == sorted(
        manifest[0]["Layers"]
    )

    files = archive.TarFiles(str(path))
    try:
        images = archive.read_docker_archive(files)
        assert [i.names for i in images] == [["localhost/app:v1"], ["other:1"]]
        assert images[0].config_raw == first.config_raw
        for got, want in zip(images[0].layers, first.layers):
            assert got.diff_id == want.diff_id
            assert got.digest == want.diff_id  # a plain layer's digest is its diff ID
            assert _read_all(got) == gzip.decompress(_read_all(want))
    finally:
        files.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".podpy-tmp-")]


def _archive_with(tmp_path: Path, members: Dict[str, bytes], name: str = "a.tar") -> Path:
    path = tmp_path / name
    path.write_bytes(_tar(members))
    return path


@pytest.mark.parametrize(
    "manifest, message",
    [
        (b"{}", "expected a non-empty list"),
        (b"[]", "expected a non-empty list"),
        (b"[1]", "entry 0 is not an object"),
        (b'[{"Layers": []}]', "has no Config"),
        (b'[{"Config": "c.json"}]', "has no Layers"),
        (b'[{"Config": "c.json", "Layers": [], "RepoTags": "x"}]', "invalid RepoTags"),
        (b'[{"Config": "missing.json", "Layers": []}]', "missing.json, which is missing"),
        (b'[{"Config": "../c.json", "Layers": []}]', "unsafe path"),
        (b"[{", "not valid JSON"),
    ],
)
def test_broken_docker_manifests(tmp_path: Path, manifest: bytes, message: str) -> None:
    path = _archive_with(tmp_path, {"manifest.json": manifest, "c.json": b"{}"})
    files = archive.TarFiles(str(path))
    try:
        with pytest.raises(archive.ArchiveError, match=message):
            archive.read_docker_archive(files)
    finally:
        files.close()


def test_config_layer_count_mismatch(tmp_path: Path) -> None:
    image = _image(compressed=False)
    manifest = [{"Config": "c.json", "Layers": ["l.tar"]}]
    path = _archive_with(
        tmp_path,
        {
            "manifest.json": json.dumps(manifest).encode(),
            "c.json": image.config_raw,
            "l.tar": _read_all(image.layers[0]),
        },
    )
    files = archive.TarFiles(str(path))
    try:
        with pytest.raises(CopyError, match="1 layers but the config has 2 diff_ids"):
            archive.read_docker_archive(files)
    finally:
        files.close()


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "./../x"])
def test_unsafe_member_names_are_refused(tmp_path: Path, bad: str) -> None:
    path = _archive_with(tmp_path, {"manifest.json": b"[]", bad: b"x"})
    with pytest.raises(archive.ArchiveError, match="unsafe path"):
        archive.TarFiles(str(path))
    assert archive.safe_member_name("./a//b/./c", "w") == "a/b/c"


def test_symlinks_resolve_inside_the_archive_only(tmp_path: Path) -> None:
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as tf:
        data = b"layer bytes"
        info = tarfile.TarInfo("abc.tar")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        for name, target in (("v1/layer.tar", "../abc.tar"), ("v2/layer.tar", "../../etc/passwd")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            tf.addfile(link)
    files = archive.TarFiles(str(path))
    try:
        with files.open("v1/layer.tar") as f:
            assert f.read() == b"layer bytes"
        assert files.exists("v2/layer.tar") is False
    finally:
        files.close()


def test_spool_input_decompresses_gzip(tmp_path: Path) -> None:
    payload = _tar({"manifest.json": b"[]"})
    spooled = archive.spool_input(io.BytesIO(gzip.compress(payload)), str(tmp_path))
    assert Path(spooled).read_bytes() == payload
    with pytest.raises(archive.ArchiveError, match="zstd"):
        archive.spool_input(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\0" * 10), str(tmp_path))


# --- OCI layouts and dir: -----------------------------------------------------------------------


def test_oci_archive_keeps_manifest_and_names(tmp_path: Path) -> None:
    image = _image()
    path = tmp_path / "oci.tar"
    archive.write_oci_archive(str(path), [(image, None)])
    files = archive.TarFiles(str(path))
    try:
        index = json.loads(files.read_small("index.json", "index"))
        entry = index["manifests"][0]
        assert entry["digest"] == _digest(image.manifest_raw or b"")
        assert entry["annotations"][archive.REF_NAME] == "localhost/app:v1"
        (read,) = archive.read_oci_images(files)
        assert read.names == ["localhost/app:v1"]
        assert read.manifest_raw == image.manifest_raw
        assert [_read_all(a) for a in read.layers] == [_read_all(b) for b in image.layers]
    finally:
        files.close()


def test_oci_layout_replaces_same_ref_and_selects(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    one, two = _image(), _image(compressed=False)
    archive.write_oci_layout(str(layout), [(one, "v1")])
    archive.write_oci_layout(str(layout), [(two, "v2")])
    archive.write_oci_layout(str(layout), [(one, "v2")])
    index = json.loads((layout / "index.json").read_text())
    refs = [m["annotations"][archive.REF_NAME] for m in index["manifests"]]
    assert refs == ["v1", "v2"]
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    picked = archive.read_oci_layout_image(str(layout), "v2")
    assert picked.config_raw == one.config_raw
    assert picked.names == []  # a bare tag is not an image name
    with pytest.raises(archive.ArchiveError, match="2 images"):
        archive.read_oci_layout_image(str(layout), None)
    with pytest.raises(archive.ArchiveError, match='no image with the reference name "v9"'):
        archive.read_oci_layout_image(str(layout), "v9")


def test_oci_layout_detects_tampered_blobs(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    image = _image()
    archive.write_oci_layout(str(layout), [(image, "v1")])
    manifest_path = layout / "blobs" / "sha256" / _digest(image.manifest_raw or b"").split(":")[1]
    manifest_path.write_bytes(manifest_path.read_bytes().replace(b'"size"', b'"size" '))
    with pytest.raises(mf.DigestMismatch):
        archive.read_oci_layout_image(str(layout), "v1")


def test_dir_round_trip_and_v2s2_conversion(tmp_path: Path) -> None:
    image = _image()
    digest = archive.write_dir(str(tmp_path / "d"), image)
    assert digest == _digest(image.manifest_raw or b"")
    assert (tmp_path / "d" / "version").read_bytes() == archive.DIR_VERSION
    back = archive.read_dir_image(str(tmp_path / "d"))
    assert back.manifest_raw == image.manifest_raw and back.config_raw == image.config_raw

    archive.write_dir(str(tmp_path / "v2"), image, "v2s2")
    manifest = json.loads((tmp_path / "v2" / "manifest.json").read_text())
    assert manifest["mediaType"] == mf.DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == mf.DOCKER_CONFIG
    assert {x["mediaType"] for x in manifest["layers"]} == {mf.DOCKER_LAYER_GZIP}
    assert [x["digest"] for x in manifest["layers"]] == [x.digest for x in image.layers]


def test_gzip_layer_is_deterministic_and_lossless(tmp_path: Path) -> None:
    plain = _image(compressed=False).layers[0]
    first = gzip_layer(plain, str(tmp_path), "v2s2")
    second = gzip_layer(plain, str(tmp_path), "v2s2")
    assert first.digest == second.digest and first.media_type == mf.DOCKER_LAYER_GZIP
    data = _read_all(first)
    assert _digest(data) == first.digest and len(data) == first.size
    assert gzip.decompress(data) == _read_all(plain)
    already = _image(compressed=True).layers[0]
    assert gzip_layer(already, str(tmp_path)) is already


# --- transports and --change --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("docker://quay.io/a/b:1", ("docker", "quay.io/a/b:1", None)),
        ("oci:/tmp/l:v1", ("oci", "/tmp/l", "v1")),
        ("oci:/tmp/l", ("oci", "/tmp/l", None)),
        ("oci-archive:/x.tar:localhost/a:1", ("oci-archive", "/x.tar", "localhost/a:1")),
        ("docker-archive:/x.tar", ("docker-archive", "/x.tar", None)),
        ("dir:/tmp/d", ("dir", "/tmp/d", None)),
        ("containers-storage:busybox", ("containers-storage", "busybox", None)),
        ("busybox:1.36", ("containers-storage", "busybox:1.36", None)),
        ("localhost:5000/app:v1", ("containers-storage", "localhost:5000/app:v1", None)),
    ],
)
def test_parse_endpoint(text: str, expected: Tuple[str, str, object]) -> None:
    endpoint = parse_endpoint(text)
    assert (endpoint.transport, endpoint.path, endpoint.reference) == expected


@pytest.mark.parametrize("text", ["docker://", "oci:", "docker:busybox", "bad:trans:port"])
def test_parse_endpoint_errors(text: str) -> None:
    with pytest.raises(PodpyError):
        parse_endpoint(text)


def test_apply_changes() -> None:
    config: Dict[str, object] = {}
    apply_changes(
        config,
        [
            'CMD ["/bin/app", "--flag"]',
            "ENTRYPOINT=/bin/sh -c",
            "ENV A=1 B=two",
            "ENV C some value",
            'LABEL "com.example.x"="y z" plain=1',
            "EXPOSE 80 53/udp",
            "VOLUME /data /cache",
            "USER 1000:1000",
            "workdir /srv",
            "STOPSIGNAL SIGINT",
        ],
    )
    assert config["Cmd"] == ["/bin/app", "--flag"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "/bin/sh -c"]
    assert config["Env"] == ["A=1", "B=two", "C=some value"]
    assert config["Labels"] == {"com.example.x": "y z", "plain": "1"}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}, "/cache": {}}
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/srv"
    assert config["StopSignal"] == "SIGINT"
    apply_changes(config, ["ENV A=3"])
    assert config["Env"] == ["B=two", "C=some value", "A=3"]


@pytest.mark.parametrize(
    "change, message",
    [
        ("RUN echo", 'unsupported instruction "RUN"'),
        ("CMD", "needs a value"),
        ("EXPOSE http", 'bad port "http"'),
        ("ENV =x", "expected KEY=VALUE"),
    ],
)
def test_apply_changes_errors(change: str, message: str) -> None:
    with pytest.raises(PodpyError, match=message):
        apply_changes({}, [change])
