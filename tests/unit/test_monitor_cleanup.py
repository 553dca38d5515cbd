"""The shutil-free removals on the `run --rm` path: podpy.atomic.remove_tree's fd walk (the
monitor's container directories, `podpy rm`) and the built-in runtime's state directory, and
the runtime's line reader on its sync socket."""

from __future__ import annotations

import _socket
import os
import sys

from podpy.atomic import remove_tree
from podpy.runtime import builtin


def _tree(root: str) -> None:
    os.makedirs(os.path.join(root, "upper", "etc", "deep", "er"))
    os.makedirs(os.path.join(root, "work", "work"))
    for rel in ("upper/etc/hosts", "upper/etc/deep/er/f", "config.json"):
        with open(os.path.join(root, rel), "w") as f:
            f.write("x")
    os.mkfifo(os.path.join(root, "fifo"))
    os.symlink("/nonexistent", os.path.join(root, "upper", "dangling"))


def test_remove_tree_removes_everything(tmp_path):
    root = str(tmp_path / "ctr")
    _tree(root)
    remove_tree(root)
    assert not os.path.lexists(root)


def test_remove_tree_never_follows_symlinks(tmp_path):
    """A container can leave symlinks to anything: what they point at survives."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep").write_text("precious")
    (outside / "sub" / "keep2").write_text("precious")
    root = tmp_path / "ctr"
    (root / "upper").mkdir(parents=True)
    (root / "upper" / "link-dir").symlink_to(outside)
    (root / "upper" / "link-file").symlink_to(outside / "keep")
    (root / "link-sub").symlink_to(outside / "sub")
    remove_tree(str(root))
    assert not root.exists()
    assert (outside / "keep").read_text() == "precious"
    assert (outside / "sub" / "keep2").read_text() == "precious"


def test_remove_tree_missing_file_and_symlink(tmp_path):
    remove_tree(str(tmp_path / "missing"))  # no error
    target = tmp_path / "dir"
    target.mkdir()
    (target / "x").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    remove_tree(str(link))  # the link goes, its target stays
    assert not os.path.lexists(link) and (target / "x").exists()
    plain = tmp_path / "file"
    plain.write_text("x")
    remove_tree(str(plain))
    assert not plain.exists()


def test_remove_tree_falls_back_to_the_slow_paths_on_errors(tmp_path, monkeypatch):
    """Anything but a vanished entry (here an rmdir refused once, as for a directory without
    rwx, which root would not hit) is finished by the mode-fixing slow path."""
    root = tmp_path / "ctr"
    _tree(str(root))
    real_rmdir = os.rmdir
    refused = []

    def rmdir(path, *, dir_fd=None):
        if path == "deep" and not refused:
            refused.append(path)
            raise PermissionError(13, "Permission denied", path)
        return real_rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rmdir", rmdir)
    remove_tree(str(root))
    assert refused == ["deep"]
    assert not root.exists()


def test_remove_tree_imports_no_shutil(tmp_path):
    root = str(tmp_path / "ctr")
    _tree(root)
    saved = sys.modules.pop("shutil", None)
    try:
        remove_tree(root)
        assert "shutil" not in sys.modules
    finally:
        if saved is not None:
            sys.modules["shutil"] = saved
    assert not os.path.lexists(root)


def test_runtime_state_dir_removal(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text("{}")
    os.mkfifo(state / "exec.fifo")
    builtin._remove_state_dir(str(state))
    assert not state.exists()
    builtin._remove_state_dir(str(state))  # already gone: fine
    # something unexpected inside (a directory): still removed, through shutil
    (state / "odd" / "deeper").mkdir(parents=True)
    (state / "odd" / "deeper" / "f").write_text("x")
    builtin._remove_state_dir(str(state))
    assert not state.exists()


def test_line_reader_splits_and_joins_messages():
    left, right = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        reader = builtin._LineReader(left)
        right.sendall(b'{"pid": 5}\n{"stage": "mou')
        assert reader.readline() == b'{"pid": 5}\n'
        right.sendall(b'nted"}\n{"ready": true}\n')
        assert reader.readline() == b'{"stage": "mounted"}\n'
        assert reader.readline() == b'{"ready": true}\n'
        right.sendall(b"partial")
        right.close()
        assert reader.readline() == b"partial"
        assert reader.readline() == b""
    finally:
        left.close()
