"""Atomic file/dir publication survives a SIGKILL at any step; leftovers are repaired."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path
from typing import Callable

import pytest

from podpy import atomic
from podpy.atomic import (
    TEMP_PREFIX,
    atomic_dir,
    remove_tree,
    repair_temporaries,
    temp_sibling,
    write_atomic,
)


def _temporaries(directory: Path) -> list:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX))


def _killed_child(action: Callable[[], None]) -> int:
    """Run action in a forked child; return the child's pid after it has died."""
    pid = os.fork()
    if pid == 0:
        try:
            action()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return pid


def _sigkill_instead(monkeypatch_target: str) -> Callable[[], None]:
    """Replace os.<name> in the child so it dies exactly at that step."""

    def install() -> None:
        setattr(os, monkeypatch_target, lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))

    return install


def test_write_atomic_creates_and_replaces_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    write_atomic(str(target), b"one", mode=0o600)
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(str(target), b"two" * 1000)
    assert target.read_bytes() == b"two" * 1000
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _temporaries(tmp_path) == []


def test_write_atomic_failure_keeps_old_content_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state"
    target.write_bytes(b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_killed_before_rename_leaves_old_content_and_a_repairable_temporary(
    tmp_path: Path, step: str
) -> None:
    target = tmp_path / "state"
    target.write_bytes(b"old content")
    install = _sigkill_instead(step)

    def child() -> None:
        install()
        write_atomic(str(target), b"new content")

    dead_pid = _killed_child(child)
    assert target.read_bytes() == b"old content"
    leftovers = _temporaries(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].startswith(f"{TEMP_PREFIX}{dead_pid}-")
    repaired = repair_temporaries(str(tmp_path))
    assert repaired == [str(tmp_path / leftovers[0])]
    assert _temporaries(tmp_path) == []
    assert target.read_bytes() == b"old content"


def test_killed_after_rename_has_new_content(tmp_path: Path) -> None:
    target = tmp_path / "state"
    target.write_bytes(b"old")

    def child() -> None:
        # Dies at the directory fsync, i.e. after the rename happened.
        real_open = os.open

        def open_then_die(path, flags, *args):  # type: ignore[no-untyped-def]
            if flags & os.O_DIRECTORY:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_open(path, flags, *args)

        os.open = open_then_die  # type: ignore[assignment]
        write_atomic(str(target), b"new")

    _killed_child(child)
    assert target.read_bytes() == b"new"
    assert _temporaries(tmp_path) == []


def test_repair_keeps_temporaries_of_live_writers(tmp_path: Path) -> None:
    live = Path(temp_sibling(str(tmp_path / "sub" / "x")))
    live.parent.mkdir()
    live.write_bytes(b"being written")
    assert repair_temporaries(str(tmp_path)) == []
    assert live.exists()


def test_repair_removes_dead_temp_dirs_deep_in_the_store_but_not_beyond_max_depth(
    tmp_path: Path,
) -> None:
    def dead_temp_dir(parent: Path) -> Path:
        pid = _killed_child(lambda: os.kill(os.getpid(), signal.SIGKILL))
        path = parent / f"{TEMP_PREFIX}{pid}-0123abcd-layer"
        (path / "usr" / "bin").mkdir(parents=True)
        (path / "usr" / "bin" / "sh").write_bytes(b"x")
        (path / "usr").chmod(0o000)
        return path

    shallow = dead_temp_dir(tmp_path / "layers")
    deep_parent = tmp_path / "a" / "b" / "c" / "d" / "e"
    deep_parent.mkdir(parents=True)
    deep = dead_temp_dir(deep_parent)
    assert repair_temporaries(str(tmp_path)) == [str(shallow)]
    assert not shallow.exists()
    assert deep.exists()
    assert repair_temporaries(str(tmp_path), max_depth=10) == [str(deep)]


def test_repair_on_missing_root_is_empty(tmp_path: Path) -> None:
    assert repair_temporaries(str(tmp_path / "nope")) == []


def test_atomic_dir_publishes_on_success(tmp_path: Path) -> None:
    final = tmp_path / "layer"
    with atomic_dir(str(final)) as tmp:
        assert os.path.basename(tmp).startswith(TEMP_PREFIX)
        Path(tmp, "file").write_text("hi")
        assert not final.exists()
    assert (final / "file").read_text() == "hi"
    assert _temporaries(tmp_path) == []


def test_atomic_dir_removes_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "layer"
    with pytest.raises(RuntimeError):
        with atomic_dir(str(final)) as tmp:
            Path(tmp, "file").write_text("half")
            raise RuntimeError("unpack failed")
    assert not final.exists()
    assert _temporaries(tmp_path) == []


def test_atomic_dir_refuses_existing_unless_replace(tmp_path: Path) -> None:
    final = tmp_path / "layer"
    final.mkdir()
    (final / "old").write_text("old")
    with pytest.raises(FileExistsError):
        with atomic_dir(str(final)):
            pass
    assert _temporaries(tmp_path) == []
    with atomic_dir(str(final), replace=True) as tmp:
        Path(tmp, "new").write_text("new")
    assert sorted(os.listdir(final)) == ["new"]
    assert _temporaries(tmp_path) == []


def test_remove_tree_handles_modeless_dirs_files_and_missing(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_text("x")
    os.symlink("/etc", tree / "link")
    (tree / "a" / "b").chmod(0)
    (tree / "a").chmod(0)
    remove_tree(str(tree))
    assert not tree.exists()
    assert os.path.isdir("/etc")
    single = tmp_path / "file"
    single.write_text("x")
    remove_tree(str(single))
    assert not single.exists()
    remove_tree(str(tmp_path / "missing"))


def test_temporary_of_a_zombie_writer_is_repaired(tmp_path):
    """A killed writer may linger as a zombie where PID 1 reaps slowly: its temporary is
    still garbage (kill(pid, 0) would call it alive)."""
    import os
    import time

    from podpy.atomic import repair_temporaries

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        leftover = tmp_path / f".podpy-tmp-{pid}-deadbeef-layer"
        leftover.mkdir()
        (leftover / "file").write_text("half")
        assert repair_temporaries(str(tmp_path), max_depth=1) == [str(leftover)]
        assert not leftover.exists()
    finally:
        os.waitpid(pid, 0)
