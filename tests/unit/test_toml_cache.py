"""podpy.config._toml's parsed-document cache: hits, every kind of miss, and never a stale or
foreign document.

Each test points XDG_CACHE_HOME at its own directory and reads through `read`, which writes
the queued entries as podpy.config.load does after a successful load. Files written by a test are brand new,
which the cache refuses on purpose (timestamps are coarse), so most tests lower `_RACY_NS`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from podpy.config import _toml
from podpy.config._toml import flush_cache, read_toml
from podpy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

DOC = '# a comment\n[engine]\nevents_logger = "file"\nnum = [1, 2.5, true]\n[engine.env]\nA = "b"\n'


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setattr(_toml, "_PENDING", [])  # nothing queued by an earlier test
    return home


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch, cache_home: Path) -> List[int]:
    """Counts real parses (calls for the TOML module); accepts just-written files."""
    calls: List[int] = []
    real = _toml._toml_module

    def counting() -> Any:
        calls.append(1)
        return real()

    monkeypatch.setattr(_toml, "_toml_module", counting)
    monkeypatch.setattr(_toml, "_RACY_NS", 0)
    return calls


def read(path: str, kind: str) -> Optional[Dict[str, Any]]:
    """read_toml as podpy.config.load uses it: entries are written once the load succeeded."""
    document = read_toml(path, kind)
    flush_cache()
    return document


def cache_files(cache_home: Path) -> List[Path]:
    directory = cache_home / "podpy" / "toml"
    return sorted(directory.iterdir()) if directory.is_dir() else []


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_second_read_is_a_hit(tmp_path: Path, cache_home: Path, parses: List[int]) -> None:
    conf = write(tmp_path / "containers.conf", DOC)
    first = read(str(conf), "containers.conf")
    assert len(parses) == 1
    [entry] = cache_files(cache_home)
    assert entry.stat().st_mode & 0o777 == 0o600
    assert str(conf) in entry.name.replace("%2F", "/")
    second = read(str(conf), "containers.conf")
    assert len(parses) == 1  # no parse: from the cache
    assert (
        second
        == first
        == {"engine": {"events_logger": "file", "num": [1, 2.5, True], "env": {"A": "b"}}}
    )
    assert type(second["engine"]["num"]) is list
    second["engine"]["env"]["A"] = "changed"  # callers get their own copy every time
    assert read(str(conf), "containers.conf") == first


def test_relative_path_shares_the_entry_of_its_absolute_path(
    tmp_path: Path, cache_home: Path, parses: List[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "c.conf", DOC)
    monkeypatch.chdir(tmp_path)
    first = read("c.conf", "containers.conf")
    assert read(str(tmp_path / "c.conf"), "containers.conf") == first
    assert len(parses) == 1 and len(cache_files(cache_home)) == 1


def test_hit_imports_no_toml_parser(tmp_path: Path, cache_home: Path, parses: List[int]) -> None:
    conf = write(tmp_path / "containers.conf", DOC)
    expected = read(str(conf), "containers.conf")
    code = (
        f"import sys, json; sys.path.insert(0, {str(REPO)!r})\n"
        "from podpy.config._toml import read_toml\n"
        f"doc = read_toml({str(conf)!r}, 'containers.conf')\n"
        "print(json.dumps([doc, [m for m in ('tomllib', 'tomli') if m in sys.modules]]))\n"
    )
    env = {"XDG_CACHE_HOME": str(cache_home), "PATH": os.environ.get("PATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert json.loads(out) == [expected, []]


def test_in_place_edit_with_same_size_and_mtime_misses(
    tmp_path: Path, cache_home: Path, parses: List[int]
) -> None:
    conf = write(tmp_path / "c.conf", 'a = "one"\n')
    assert read(str(conf), "c") == {"a": "one"}
    before = conf.stat()
    with open(conf, "r+") as handle:  # same inode, same size
        handle.write('a = "two"\n')
    os.utime(conf, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back
    after = conf.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert read(str(conf), "c") == {"a": "two"}  # the ctime gave it away
    assert len(parses) == 2


def test_replaced_file_with_same_size_and_mtime_misses(
    tmp_path: Path, cache_home: Path, parses: List[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = write(tmp_path / "c.conf", 'a = "one"\n')
    assert read(str(conf), "c") == {"a": "one"}
    before = conf.stat()
    new = write(tmp_path / "c.conf.new", 'a = "two"\n')
    os.utime(new, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(new, conf)
    assert read(str(conf), "c") == {"a": "two"}
    assert len(parses) == 2


def test_only_the_inode_differs(
    tmp_path: Path, cache_home: Path, parses: List[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Everything but st_ino equal (as after a same-tick replace): still a miss.
    conf = write(tmp_path / "c.conf", 'a = "one"\n')
    read(str(conf), "c")
    real_stat = os.stat

    def other_inode(path: Any, *args: Any, **kwargs: Any) -> Any:
        st = real_stat(path, *args, **kwargs)
        if str(path) != str(conf):
            return st
        fields = list(st)
        fields[1] += 1  # st_ino
        return os.stat_result(
            fields, {"st_mtime_ns": st.st_mtime_ns, "st_ctime_ns": st.st_ctime_ns}
        )

    monkeypatch.setattr(os, "stat", other_inode)
    assert read(str(conf), "c") == {"a": "one"}
    assert len(parses) == 2
    # What was read does not match what was looked up (the file changed in between, as
    # far as the reader can tell), so it was not stored under the looked-up identity.
    assert read(str(conf), "c") == {"a": "one"}
    assert len(parses) == 3


def test_deleted_file_is_none_despite_its_cache_entry(
    tmp_path: Path, cache_home: Path, parses: List[int]
) -> None:
    conf = write(tmp_path / "c.conf", DOC)
    read(str(conf), "c")
    conf.unlink()
    assert read(str(conf), "c") is None
    conf.mkdir()  # and a directory in its place gives today's error, not the old document
    with pytest.raises(ConfigError) as info:
        read(str(conf), "containers.conf")
    assert info.value.message == f"{conf}: is a directory, expected a containers.conf file"


@pytest.mark.parametrize("damage", ["header", "checksum", "truncated", "garbage", "empty"])
def test_damaged_cache_file_is_ignored_and_rewritten(
    tmp_path: Path, cache_home: Path, parses: List[int], damage: str
) -> None:
    conf = write(tmp_path / "c.conf", DOC)
    expected = read(str(conf), "c")
    [entry] = cache_files(cache_home)
    data = entry.read_bytes()
    header = _toml._CACHE_HEADER
    if damage == "header":
        data = data.replace(b"podpy-toml-cache", b"podpy-toml-cachX")
    elif damage == "checksum":  # still valid marshal data, but not what was written
        assert data.count(b"events_logger") == 1
        data = data.replace(b"events_logger", b"events_loggex")
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":  # a valid checksum over bytes that are no marshal data
        import zlib

        body = b"\xff\x00garbage"
        data = header + zlib.crc32(body).to_bytes(4, "little") + body
    else:
        data = b""
    entry.write_bytes(data)
    entry.chmod(0o600)
    assert read(str(conf), "c") == expected
    assert len(parses) == 2
    assert read(str(conf), "c") == expected  # rewritten: a hit again
    assert len(parses) == 2


def test_valid_entry_of_another_file_is_not_trusted(
    tmp_path: Path, cache_home: Path, parses: List[int]
) -> None:
    a = write(tmp_path / "a.conf", 'x = "from a"\n')
    b = write(tmp_path / "b.conf", 'x = "from b"\n')
    read(str(a), "c")
    read(str(b), "c")
    entry_a, entry_b = cache_files(cache_home)
    entry_b.write_bytes(entry_a.read_bytes())  # well-formed, but keyed for a.conf
    assert read(str(b), "c") == {"x": "from b"}
    assert len(parses) == 3


def test_other_python_or_format_misses(
    tmp_path: Path, cache_home: Path, parses: List[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = write(tmp_path / "c.conf", DOC)
    read(str(conf), "c")
    monkeypatch.setattr(_toml, "_CACHE_HEADER", b"podpy-toml-cache 1 cpython-99 4\n")
    assert read(str(conf), "c") == read_toml(str(conf), "c")
    assert len(parses) == 2  # the first read under the new header rewrote the entry


def test_entry_of_another_uid_or_writable_by_others_is_ignored(
    tmp_path: Path, cache_home: Path, parses: List[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = write(tmp_path / "c.conf", DOC)
    read(str(conf), "c")
    [entry] = cache_files(cache_home)
    entry.chmod(0o622)  # group/world-writable: anyone could have put it there
    read(str(conf), "c")
    assert len(parses) == 2
    entry.chmod(0o600)
    read(str(conf), "c")
    assert len(parses) == 2
    # Seen by another user (root with this user's HOME): neither trusted nor written.
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 12345)
    inode = entry.stat().st_ino
    read(str(conf), "c")
    assert len(parses) == 3
    assert entry.stat().st_ino == inode  # not replaced


def test_unwritable_cache_is_skipped_silently(
    tmp_path: Path, parses: List[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = write(tmp_path / "c.conf", DOC)
    not_a_dir = write(tmp_path / "file", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_dir / "cache"))
    assert read(str(conf), "c") == read_toml(str(conf), "c") is not None
    assert len(parses) == 2
    # A read-only cache directory (as a rootless user whose HOME is not its own).
    ro = tmp_path / "ro"
    (ro / "podpy" / "toml").mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(ro))
    real_makedirs = os.makedirs

    def read_only(*args: Any, **kwargs: Any) -> None:
        real_makedirs(*args, **kwargs)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "makedirs", read_only)
    assert read(str(conf), "c") == read_toml(str(conf), "c") is not None
    assert len(parses) == 4 and cache_files(ro) == []


def test_no_home_means_no_cache(
    tmp_path: Path, parses: List[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME", raising=False)
    conf = write(tmp_path / "c.conf", DOC)
    assert read(str(conf), "c") == read_toml(str(conf), "c")
    assert len(parses) == 2
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # ignored, as the XDG spec says
    assert _toml._cache_base() is None
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert _toml._cache_base() == str(tmp_path / "h" / ".cache")


def test_documents_with_dates_are_not_cached(
    tmp_path: Path, cache_home: Path, parses: List[int]
) -> None:
    conf = write(tmp_path / "c.conf", "[t]\nwhen = 1979-05-27T07:32:00Z\nday = 1979-05-27\n")
    first = read(str(conf), "c")
    assert first is not None and first["t"]["day"].year == 1979
    assert read(str(conf), "c") == first
    assert len(parses) == 2 and cache_files(cache_home) == []


def test_marshal_safe_types() -> None:
    ok: Dict[str, Any] = {"a": [1, 2.0, "s", True, {"b": []}], "c": {}}
    assert _toml._marshal_safe(ok)
    import datetime

    assert not _toml._marshal_safe({"a": [datetime.time(1, 2)]})
    assert not _toml._marshal_safe({"a": (1, 2)})  # tuples would come back as tuples
    assert not _toml._marshal_safe({1: "x"})


def test_just_changed_file_is_not_stored(tmp_path: Path, cache_home: Path) -> None:
    # The default racy window: a file written a moment ago could change again in the same
    # timestamp tick without its identity changing, so it is parsed but not remembered.
    conf = write(tmp_path / "c.conf", DOC)
    assert read(str(conf), "c") is not None
    assert cache_files(cache_home) == []
    old = 1_600_000_000_000_000_000
    os.utime(conf, ns=(old, old))  # an old mtime is not enough: the ctime is now
    assert read(str(conf), "c") is not None
    assert cache_files(cache_home) == []


def test_broken_toml_gives_the_same_error_and_is_never_cached(
    tmp_path: Path, cache_home: Path, parses: List[int]
) -> None:
    conf = write(tmp_path / "c.conf", 'a = "ok"\n')
    assert read(str(conf), "c") == {"a": "ok"}
    conf.write_text("[engine]\nx = 1\nevents_logger = \n")
    messages = []
    for _ in range(2):
        with pytest.raises(ConfigError) as info:
            read(str(conf), "c")
        messages.append(info.value.message)
    assert messages == [f"{conf}: line 3: Invalid value"] * 2
    assert len(parses) == 3
    [entry] = cache_files(cache_home)  # still only the old, now stale, entry
    assert b"ok" in entry.read_bytes()


def test_invalid_utf8_error_unchanged(tmp_path: Path, cache_home: Path, parses: List[int]) -> None:
    conf = tmp_path / "c.conf"
    conf.write_bytes(b'a = "\xff"\n')
    for _ in range(2):
        with pytest.raises(ConfigError) as info:
            read(str(conf), "c")
        assert info.value.message == f"{conf}: line 1: invalid UTF-8 (byte 0xff)"
    assert cache_files(cache_home) == []


def test_nothing_is_written_before_flush(
    tmp_path: Path, cache_home: Path, parses: List[int]
) -> None:
    # A load that fails on a later file (or on a bad value) never flushes, so a failing
    # command leaves no cache entry behind, not even for the good files it read first.
    good = write(tmp_path / "good.conf", DOC)
    bad = write(tmp_path / "bad.conf", "x = \n")
    read_toml(str(good), "c")
    with pytest.raises(ConfigError):
        read_toml(str(bad), "c")
    assert cache_files(cache_home) == []
    del _toml._PENDING[:]  # what a new process starts with
    document = read_toml(str(good), "c")
    assert document is not None
    document["engine"]["env"]["A"] = "changed after the read"  # serialized at read time
    flush_cache()
    [entry] = cache_files(cache_home)
    assert read_toml(str(good), "c")["engine"]["env"]["A"] == "b"
    assert len(parses) == 3 and _toml._PENDING == []
