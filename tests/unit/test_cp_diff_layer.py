"""Pure parts of cp/diff/commit and volumes on temp dirs: `-v` parsing, cp placement rules, the
overlay upper dir read as A/C/D changes and as a layer tar (whiteouts, opaque dirs, order)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from podpy.engine import container_fs as cfs
from podpy.engine import volumes
from podpy.errors import PodpyError


def test_volume_specs_split_binds_named_and_anonymous() -> None:
    binds, named = volumes.split_specs(["/h:/c:ro", "./rel:/r", "data:/d", "/anon", "/anon2:ro"])
    assert binds == ["/h:/c:ro", os.path.abspath("./rel") + ":/r"]
    assert named == ["data:/d", "/anon", "/anon2:ro"]
    assert volumes._parse_named("data:/d/:ro,nocopy") == ("data", "/d", ["ro", "nocopy"])
    assert volumes._parse_named("/anon2:ro") == (None, "/anon2", ["ro"])
    with pytest.raises(PodpyError, match="must be an absolute path"):
        volumes._parse_named("data:rel")
    with pytest.raises(PodpyError, match="invalid volume option"):
        volumes._parse_named("data:/d:bogus")
    with pytest.raises(PodpyError, match="names must match"):
        volumes._parse_named("-bad:/d")


def test_split_location() -> None:
    assert cfs.split_location("ctr:/etc/passwd") == ("ctr", "/etc/passwd")
    assert cfs.split_location("ctr:") == ("ctr", "")
    assert cfs.split_location("/host:odd") == (None, "/host:odd")
    assert cfs.split_location("./a:b") == (None, "./a:b")
    assert cfs.split_location("-") == (None, "-")
    assert cfs.split_location("dir/file:x") == (None, "dir/file:x")


def test_cp_placement_rules(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    d, f, new = str(tmp_path / "dir"), str(tmp_path / "file"), str(tmp_path / "new")
    plan = cfs._plan(d, False, False, "src", False, "w")
    assert (plan.directory, plan.top) == (d, "src")  # into an existing dir
    plan = cfs._plan(d, False, True, "src", True, "w")
    assert plan.strip_top  # SRC/. copies the contents
    plan = cfs._plan(f, False, False, "src", False, "w")
    assert (plan.directory, plan.top) == (str(tmp_path), "file")  # overwrite a file
    plan = cfs._plan(new, False, True, "src", False, "w")
    assert (plan.directory, plan.top) == (str(tmp_path), "new")  # a new name
    with pytest.raises(PodpyError, match="cannot copy a directory onto the file"):
        cfs._plan(f, False, True, "src", False, "w")
    with pytest.raises(PodpyError, match="does not exist"):
        cfs._plan(new + "/", True, False, "src", False, "w")
    with pytest.raises(PodpyError, match="could not be found"):
        cfs._plan(str(tmp_path / "no" / "x"), False, False, "src", False, "w")


def _archive(*names: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    buf.seek(0)
    return buf


def test_archive_entries_outside_the_destination_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PodpyError, match="refusing to extract"):
        cfs._place_archive(_archive("ok", "../evil"), str(tmp_path), False, False, None, "w", False)
    assert not (tmp_path.parent / "evil").exists()
    cfs._place_archive(_archive("a", "a2"), str(tmp_path / "b"), False, False, None, "w")
    assert (tmp_path / "b").read_bytes() == b"x"  # the top entry renamed to DEST


def _overlay_fixture(tmp_path: Path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for path in ("etc", "opq/old", "keep"):
        (lower / path).mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root\n")
    (lower / "etc" / "shadow").write_text("s\n")
    (lower / "opq" / "old" / "f").write_text("o\n")
    (lower / "opq" / "gone").write_text("g\n")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "passwd").write_text("root\nuser\n")
    os.mknod(upper / "etc" / "shadow", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # a whiteout
    (upper / "opq").mkdir()
    os.setxattr(upper / "opq", "user.overlay.opaque", b"y")
    (upper / "opq" / "fresh").write_text("n\n")
    (upper / "new").write_text("n\n")
    return {"lower": [str(lower)], "upper": str(upper)}


def test_changes_from_the_upper_dir(tmp_path: Path) -> None:
    rootfs = _overlay_fixture(tmp_path)
    assert cfs._changes(rootfs, rootless=True) == [
        ("C", "/etc"),
        ("C", "/etc/passwd"),
        ("D", "/etc/shadow"),
        ("A", "/new"),
        ("C", "/opq"),
        ("A", "/opq/fresh"),
        ("D", "/opq/gone"),
        ("D", "/opq/old"),
    ]


def _layer_bytes(upper: str) -> bytes:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader:
        pid = os.fork()
        if pid == 0:
            try:
                reader.close()
                cfs._write_layer(write_fd, upper, rootless=True)
            finally:
                os._exit(0)
        os.close(write_fd)
        data = reader.read()
    os.waitpid(pid, 0)
    return data


def test_layer_tar_has_whiteouts_and_is_deterministic(tmp_path: Path) -> None:
    rootfs = _overlay_fixture(tmp_path)
    first = _layer_bytes(rootfs["upper"])
    assert first == _layer_bytes(rootfs["upper"])
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
        assert tar.extractfile("etc/passwd").read() == b"root\nuser\n"  # type: ignore[union-attr]
        assert tar.getmember("etc/.wh.shadow").isfile()
    assert names == [
        "etc",
        "etc/passwd",
        "etc/.wh.shadow",  # in the order of the names they hide
        "new",
        "opq",
        "opq/.wh..wh..opq",
        "opq/fresh",
    ]


def test_copy_tree_keeps_types_modes_and_hardlinks(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("f")
    (src / "sub" / "f").chmod(0o604)
    os.link(src / "sub" / "f", src / "hard")
    os.symlink("sub/f", src / "link")
    (src / "sub").chmod(0o711)
    dst.mkdir()
    volumes.copy_tree(str(src), str(dst))
    assert (dst / "sub").stat().st_mode & 0o7777 == 0o711
    assert (dst / "sub" / "f").stat().st_mode & 0o7777 == 0o604
    assert os.readlink(dst / "link") == "sub/f"
    assert (dst / "hard").stat().st_ino == (dst / "sub" / "f").stat().st_ino
