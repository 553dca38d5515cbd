"""Layer application: hostile tars never touch anything outside the layer; whiteouts; diff IDs."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import List, Optional

import pytest

from podpy.storage import layers
from podpy.storage.layers import LayerError, UnsafeLayerError, apply_layer, materialize


def make_tar(
    entries: List[tarfile.TarInfo], contents: Optional[dict] = None, gz: bool = False
) -> bytes:
    contents = contents or {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info in entries:
            data = contents.get(info.name) if info.isreg() else None
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    raw = buf.getvalue()
    return gzip.compress(raw) if gz else raw


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.mtime = 1_600_000_000
    return info


@pytest.fixture
def sandbox(tmp_path: Path):
    """A layer target dir next to a 'victim' dir whose contents must never change."""
    target = tmp_path / "layer"
    target.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "passwd").write_text("original\n")
    return target, victim


def snapshot(path: Path) -> dict:
    return {
        str(p.relative_to(path)): (
            p.is_symlink(),
            p.read_bytes() if p.is_file() and not p.is_symlink() else None,
        )
        for p in sorted(path.rglob("*"))
    }


def apply_bytes(data: bytes, target: Path, rootless: bool = False):
    return apply_layer(io.BytesIO(data), str(target), rootless)


def test_regular_tree_and_diff_id(tmp_path: Path) -> None:
    target = tmp_path / "layer"
    target.mkdir()
    data = make_tar(
        [
            entry("./etc/", tarfile.DIRTYPE, mode=0o755),
            entry("./etc/hostname"),
            entry("/bin/tool", mode=0o4755),
            entry("bin/alias", tarfile.SYMTYPE, linkname="tool"),
            entry("bin/hard", tarfile.LNKTYPE, linkname="bin/tool"),
        ],
        {"./etc/hostname": b"box\n", "/bin/tool": b"#!/bin/sh\n"},
    )
    result = apply_bytes(gzip.compress(data), target)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.size == len(data)
    assert (target / "etc/hostname").read_text() == "box\n"
    assert stat.S_IMODE((target / "bin/tool").stat().st_mode) == 0o4755
    assert os.readlink(target / "bin/alias") == "tool"
    assert (target / "bin/hard").stat().st_ino == (target / "bin/tool").stat().st_ino
    assert int((target / "etc/hostname").stat().st_mtime) == 1_600_000_000


def test_dotdot_is_refused(sandbox) -> None:
    target, victim = sandbox
    before = snapshot(victim)
    data = make_tar([entry("../victim/passwd")], {"../victim/passwd": b"pwned\n"})
    with pytest.raises(UnsafeLayerError, match=r"\.\."):
        apply_bytes(data, target)
    assert snapshot(victim) == before


def test_nested_dotdot_is_refused(sandbox) -> None:
    target, victim = sandbox
    before = snapshot(victim)
    data = make_tar([entry("a/b/../../../victim/passwd")], {"a/b/../../../victim/passwd": b"x"})
    with pytest.raises(UnsafeLayerError):
        apply_bytes(data, target)
    assert snapshot(victim) == before


def test_absolute_name_is_made_relative(sandbox) -> None:
    target, victim = sandbox
    before = snapshot(victim)
    absolute = str(victim / "passwd")
    data = make_tar([entry(absolute)], {absolute: b"inside\n"})
    apply_bytes(data, target)
    assert snapshot(victim) == before
    assert (target / absolute.lstrip("/")).read_text() == "inside\n"


def test_write_through_symlink_is_refused(sandbox) -> None:
    target, victim = sandbox
    before = snapshot(victim)
    data = make_tar(
        [entry("a", tarfile.SYMTYPE, linkname=str(victim)), entry("a/passwd")],
        {"a/passwd": b"pwned\n"},
    )
    with pytest.raises(UnsafeLayerError, match="symlink"):
        apply_bytes(data, target)
    assert snapshot(victim) == before


def test_relative_symlink_escape_is_refused(sandbox) -> None:
    target, victim = sandbox
    before = snapshot(victim)
    data = make_tar(
        [entry("up", tarfile.SYMTYPE, linkname="../victim"), entry("up/new")], {"up/new": b"x"}
    )
    with pytest.raises(UnsafeLayerError):
        apply_bytes(data, target)
    assert snapshot(victim) == before
    assert not (victim / "new").exists()


def test_symlink_replaced_by_file_does_not_follow(sandbox) -> None:
    """A later regular file with the symlink's name replaces the link, never writes its target."""
    target, victim = sandbox
    before = snapshot(victim)
    data = make_tar(
        [entry("p", tarfile.SYMTYPE, linkname=str(victim / "passwd")), entry("p")],
        {"p": b"replaced\n"},
    )
    apply_bytes(data, target)
    assert snapshot(victim) == before
    assert not (target / "p").is_symlink()
    assert (target / "p").read_text() == "replaced\n"


def test_hardlink_outside_is_refused(sandbox) -> None:
    target, victim = sandbox
    before = snapshot(victim)
    for linkname in ("../victim/passwd", str(victim / "passwd")):
        data = make_tar([entry("h", tarfile.LNKTYPE, linkname=linkname)])
        with pytest.raises(UnsafeLayerError):
            apply_bytes(data, target)
    assert snapshot(victim) == before
    assert (victim / "passwd").stat().st_nlink == 1


def test_hardlink_through_symlink_is_refused(sandbox) -> None:
    target, victim = sandbox
    data = make_tar(
        [
            entry("s", tarfile.SYMTYPE, linkname=str(victim)),
            entry("h", tarfile.LNKTYPE, linkname="s/passwd"),
        ]
    )
    with pytest.raises(UnsafeLayerError):
        apply_bytes(data, target)
    assert (victim / "passwd").stat().st_nlink == 1


def test_whiteouts_become_overlay_markers(tmp_path: Path) -> None:
    target = tmp_path / "layer"
    target.mkdir()
    data = make_tar(
        [
            entry("etc/", tarfile.DIRTYPE, mode=0o755),
            entry("etc/.wh.motd"),
            entry("opt/", tarfile.DIRTYPE, mode=0o755),
            entry("opt/.wh..wh..opq"),
            entry("opt/kept"),
            entry("var/.wh..wh.plnk"),
        ],
        {"opt/kept": b"k"},
    )
    apply_bytes(data, target, rootless=True)
    st = os.lstat(target / "etc/motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(target / "opt", "user.overlay.opaque") == b"y"
    assert not any(p.name.startswith(".wh.") for p in target.rglob("*"))
    assert (target / "opt/kept").read_bytes() == b"k"


def test_layer_cannot_forge_overlay_xattrs(tmp_path: Path) -> None:
    target = tmp_path / "layer"
    target.mkdir()
    info = entry("d", tarfile.DIRTYPE, mode=0o755)
    info.pax_headers = {"SCHILY.xattr.user.overlay.opaque": "y", "SCHILY.xattr.user.note": "hi"}
    apply_bytes(make_tar([info]), target, rootless=True)
    assert "user.overlay.opaque" not in os.listxattr(target / "d")
    assert os.getxattr(target / "d", "user.note") == b"hi"


def test_materialize_applies_whiteouts_and_opaque(tmp_path: Path) -> None:
    lower, upper, out = tmp_path / "lower", tmp_path / "upper", tmp_path / "rootfs"
    lower.mkdir()
    upper.mkdir()
    apply_bytes(
        make_tar(
            [entry("etc/motd"), entry("etc/keep"), entry("opt/old"), entry("opt/sub/deep")],
            {"etc/motd": b"m", "etc/keep": b"k", "opt/old": b"o", "opt/sub/deep": b"d"},
        ),
        lower,
        rootless=True,
    )
    apply_bytes(
        make_tar(
            [entry("etc/.wh.motd"), entry("opt/.wh..wh..opq"), entry("opt/new")], {"opt/new": b"n"}
        ),
        upper,
        rootless=True,
    )
    materialize([str(lower), str(upper)], str(out), rootless=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "etc",
        "etc/keep",
        "opt",
        "opt/new",
    ]


def test_corrupt_stream_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "layer"
    target.mkdir()
    data = gzip.compress(make_tar([entry("f")], {"f": b"x" * 5000}))
    with pytest.raises(LayerError):
        apply_bytes(data[: len(data) // 2], target)


def test_zstd_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="zstd"):
        apply_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64, tmp_path)


def test_unpack_checks_diff_id(tmp_path: Path) -> None:
    store = layers.LayerStore(str(tmp_path / "layers"))
    blob = tmp_path / "blob"
    blob.write_bytes(make_tar([entry("f")], {"f": b"data"}))
    tmp = store.new_temp_dir("sha256:" + "a" * 64)
    with pytest.raises(LayerError, match="diff_id"):
        layers.unpack_into_temp(str(blob), tmp, "sha256:" + "0" * 64, rootless=False)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_and_formats(tmp_path: Path, fmt: int) -> None:
    target = tmp_path / "layer"
    target.mkdir()
    deep = "/".join(["d" * 40] * 3) + "/" + "f" * 60  # > 100 bytes: pax/GNU/ustar prefix
    if fmt == tarfile.USTAR_FORMAT:
        deep = "/".join(["d" * 40] * 3) + "/short"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        info = tarfile.TarInfo(deep)
        info.size, info.mode, info.mtime = 3, 0o640, 1_650_000_000
        info.uid = info.gid = 0
        tf.addfile(info, io.BytesIO(b"abc"))
        if fmt != tarfile.USTAR_FORMAT:  # ustar cannot hold a link name over 100 bytes
            link = tarfile.TarInfo("hard-" + "h" * 120)
            link.type, link.linkname = tarfile.LNKTYPE, deep
            tf.addfile(link)
    data = buf.getvalue()
    result = apply_bytes(data, target)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (target / deep).read_bytes() == b"abc"
    assert stat.S_IMODE((target / deep).stat().st_mode) == 0o640
    assert (target / deep).stat().st_nlink == (1 if fmt == tarfile.USTAR_FORMAT else 2)


def test_big_ids_use_base256(tmp_path: Path) -> None:
    target = tmp_path / "layer"
    target.mkdir()
    info = entry("owned")
    info.uid = info.gid = 3_000_000  # above octal's 7-digit range: GNU base-256
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    apply_bytes(buf.getvalue(), target)
    assert (target / "owned").stat().st_uid == 3_000_000


def test_bad_checksum_is_an_error(tmp_path: Path) -> None:
    data = bytearray(make_tar([entry("f")], {"f": b"x"}))
    data[0] ^= 0x01  # corrupt the first header's name byte
    with pytest.raises(LayerError, match="checksum"):
        apply_bytes(bytes(data), tmp_path)


def test_sparse_files_are_refused(tmp_path: Path) -> None:
    info = entry("sparse")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    with pytest.raises(LayerError, match="sparse"):
        apply_bytes(make_tar([info]), tmp_path)


def test_image_store_layer_dirs_match_the_layer_store(tmp_path: Path) -> None:
    """ImageStore.layer_dirs spells out LayerStore.diff_dir's layout (to keep `run` from
    importing this module): the two must name the same directories."""
    from podpy.engine import Engine, GlobalOptions
    from podpy.storage.images import ImageRecord, ImageStore

    eng = Engine(GlobalOptions(root=str(tmp_path / "s"), runroot=str(tmp_path / "r")))
    chain = ["sha256:" + "a" * 64, "sha256:" + "b" * 64]
    image = ImageRecord(
        id="c" * 64,
        digest="",
        names=[],
        manifest={},
        config={},
        created=0.0,
        added=0.0,
        size=0,
        top_layer=None,
        metadata={"layers": chain},
    )
    store = ImageStore(eng)
    assert store.layer_dirs(image) == [store.layers.diff_dir(h) for h in chain]
    assert store.layer_dirs(image)[0].startswith(str(tmp_path / "s"))
