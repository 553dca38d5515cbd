"""StateDB on a temporary directory: creation, migrations, version checks, and the helpers."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podpy.db import state
from podpy.db.schema import LATEST_VERSION, MIGRATIONS, Migration
from podpy.db.state import DatabaseError, StateDB
from podpy.errors import AlreadyExists, NoSuchObject, PodpyError
from podpy.paths import Paths

CID = "ab" * 32
CID2 = "ac" * 32


@pytest.fixture
def db(tmp_path: Path) -> StateDB:
    database = StateDB.open_file(str(tmp_path / "podpy.db"))
    yield database
    database.close()


def _container(cid: str, name: str, **extra: object) -> dict:
    now = time.time()
    row = {"id": cid, "name": name, "created": now, "updated": now, "config": {"Image": "x"}}
    row.update(extra)
    return row


def test_open_creates_private_graph_root_wal_and_latest_schema(tmp_path: Path) -> None:
    graph = tmp_path / "deep" / "storage"
    paths = Paths(graph_root=str(graph), run_root=str(tmp_path / "run"), rootless=True)
    database = StateDB.open(paths)
    try:
        assert stat.S_IMODE(graph.stat().st_mode) == 0o700
        assert stat.S_IMODE(Path(paths.db_file).stat().st_mode) == 0o600
        assert database.schema_version() == LATEST_VERSION
        pragma = database.conn.execute
        assert pragma("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert pragma("PRAGMA foreign_keys").fetchone()[0] == 1
        assert pragma("PRAGMA busy_timeout").fetchone()[0] >= 30000
    finally:
        database.close()


def test_migrations_run_once_and_in_order(tmp_path: Path) -> None:
    path = str(tmp_path / "podpy.db")
    extra = MIGRATIONS + (
        Migration(
            LATEST_VERSION + 1,
            "log",
            (
                "CREATE TABLE migration_log (note TEXT)",
                "INSERT INTO migration_log VALUES ('ran')",
            ),
        ),
        Migration(LATEST_VERSION + 2, "more", ("INSERT INTO migration_log VALUES ('second')",)),
    )
    for _ in range(3):
        StateDB.open_file(path, migrations=extra).close()
    database = StateDB.open_file(path, migrations=extra)
    try:
        notes = [r["note"] for r in database.query("SELECT note FROM migration_log")]
        assert notes == ["ran", "second"]
        assert database.schema_version() == LATEST_VERSION + 2
    finally:
        database.close()


def test_failed_migration_leaves_previous_version_and_no_partial_ddl(tmp_path: Path) -> None:
    path = str(tmp_path / "podpy.db")
    StateDB.open_file(path).close()
    broken = MIGRATIONS + (
        Migration(
            LATEST_VERSION + 1,
            "broken",
            ("CREATE TABLE half_done (x)", "THIS IS NOT SQL"),
        ),
    )
    with pytest.raises(DatabaseError) as info:
        StateDB.open_file(path, migrations=broken)
    assert f"to version {LATEST_VERSION + 1} (broken) failed" in info.value.message
    database = StateDB.open_file(path)
    try:
        assert database.schema_version() == LATEST_VERSION
        tables = {r["name"] for r in database.query("SELECT name FROM sqlite_master")}
        assert "half_done" not in tables and "containers" in tables
    finally:
        database.close()


def test_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "podpy.db"
    StateDB.open_file(str(path)).close()
    conn = sqlite3.connect(str(path))
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 5}")
    conn.close()
    with pytest.raises(DatabaseError) as info:
        StateDB.open_file(str(path))
    assert info.value.message == (
        f"the state database {path} has schema version {LATEST_VERSION + 5}, newer than "
        f"this podpy understands ({LATEST_VERSION})"
    )
    assert "upgrade podpy" in (info.value.hint or "")


def test_garbage_file_is_reported_with_reset_hint(tmp_path: Path) -> None:
    path = tmp_path / "podpy.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(DatabaseError) as info:
        StateDB.open_file(str(path))
    assert "not a database" in info.value.message
    assert "podpy system reset" in (info.value.hint or "")


def test_unwritable_graph_root_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatabaseError) as info:
        StateDB.open_file(str(blocker / "podpy.db"))
    assert "cannot create the state database" in info.value.message


def test_insert_get_lookup_by_id_name_and_prefix(db: StateDB) -> None:
    db.insert("containers", _container(CID, "web"))
    db.insert("containers", _container(CID2, "db"))
    row = db.get("containers", CID)
    assert row is not None and row["config"] == {"Image": "x"} and row["status"] == "created"
    assert db.lookup("containers", "web")["id"] == CID
    assert db.lookup("containers", "abab")["id"] == CID
    assert db.lookup("containers", CID2)["name"] == "db"
    with pytest.raises(PodpyError, match='more than one result for container ID "a"'):
        db.lookup("containers", "a")
    with pytest.raises(NoSuchObject) as info:
        db.lookup("containers", "nope")
    assert info.value.message == 'no container with name or ID "nope" found: no such container'
    assert db.get("containers", "missing") is None


def test_name_ids_win_over_prefixes(db: StateDB) -> None:
    # A container literally named like another one's id prefix is found by name first.
    db.insert("containers", _container(CID, "web"))
    db.insert("containers", _container(CID2, "abab"))
    assert db.lookup("containers", "abab")["id"] == CID2


def test_duplicate_name_is_already_exists(db: StateDB) -> None:
    db.insert("containers", _container(CID, "web"))
    with pytest.raises(AlreadyExists, match='container name or ID "web" is already in use'):
        db.insert("containers", _container(CID2, "web"))
    assert len(db.list("containers")) == 1


def test_update_state_merges_json_and_rejects_bad_status(db: StateDB) -> None:
    db.insert("containers", _container(CID, "web"))
    db.update_state("containers", CID, {"started": 1}, status="running", pid=42)
    row = db.update_state("containers", CID, {"finished": 2}, status="exited", exit_code=3)
    assert row["state"] == {"started": 1, "finished": 2}
    assert (row["status"], row["exit_code"], row["pid"]) == ("exited", 3, 42)
    assert db.update_state("containers", CID, {"only": 1}, replace=True)["state"] == {"only": 1}
    with pytest.raises(PodpyError, match="CHECK constraint failed"):
        db.update_state("containers", CID, status="flying")
    assert db.get("containers", CID)["status"] == "exited"
    with pytest.raises(NoSuchObject):
        db.update_state("containers", CID2, status="running")


def test_images_by_tag_and_sha256_prefix(db: StateDB) -> None:
    iid = "cd" * 32
    db.insert("layers", {"id": "ee" * 32, "diff_id": "sha256:" + "ee" * 32, "created": 1.0})
    db.insert(
        "images",
        {"id": iid, "names": ["localhost/app:1"], "added": 1.0, "top_layer": "ee" * 32},
    )
    db.insert("image_names", {"name": "localhost/app:1", "image_id": iid})
    assert db.lookup("images", "localhost/app:1")["names"] == ["localhost/app:1"]
    assert db.lookup("images", "sha256:" + iid[:12])["id"] == iid
    # A layer still used by an image cannot be deleted (foreign keys are on).
    with pytest.raises(PodpyError, match="still in use"):
        db.delete("layers", "ee" * 32)
    assert db.delete("images", iid) is True
    assert db.list("image_names") == []
    assert db.delete("layers", "ee" * 32) is True
    assert db.delete("layers", "ee" * 32) is False


def test_layer_state_is_checked(db: StateDB) -> None:
    with pytest.raises(PodpyError):
        db.insert("layers", {"id": "aa", "diff_id": "x", "created": 1.0, "state": "half"})
    db.insert("layers", {"id": "aa", "diff_id": "x", "created": 1.0})
    assert db.list("layers", {"state": "complete"}) == []
    db.update("layers", "aa", state="complete")
    assert [r["id"] for r in db.list("layers", {"state": "complete"})] == ["aa"]


def test_transaction_rolls_back_on_error_and_nests(db: StateDB) -> None:
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.insert("containers", _container(CID, "web"))
            with db.transaction():
                db.insert("containers", _container(CID2, "db"))
            raise RuntimeError("boom")
    assert db.list("containers") == []
    assert not db.in_transaction
    with db.transaction():
        db.insert("containers", _container(CID, "web"))
    assert len(db.list("containers")) == 1


def test_counts_and_events(db: StateDB) -> None:
    db.insert("containers", _container(CID, "web", status="running"))
    db.insert("pods", {"id": "ff" * 32, "name": "p", "created": 1.0})
    db.insert("volumes", {"name": "v", "mountpoint": "/x", "created": 1.0})
    counts = db.counts()
    assert counts["containers"] == 1 and counts["containers_running"] == 1
    assert counts["pods"] == 1 and counts["volumes"] == 1 and counts["images"] == 0
    first = db.add_event("container", "create", name="web", object_id=CID, when=100.0)
    second = db.add_event("container", "start", name="web", attributes={"image": "x"}, when=200.0)
    assert second > first
    assert [e["status"] for e in db.events()] == ["create", "start"]
    assert [e["status"] for e in db.events(since=150.0)] == ["start"]
    assert db.events(after_seq=first)[0]["attributes"] == {"image": "x"}
    assert db.events(until=150.0, limit=5)[0]["object_id"] == CID


def test_unknown_table_and_bad_columns_are_programming_errors(db: StateDB) -> None:
    with pytest.raises(ValueError):
        db.get("nope", "x")
    with pytest.raises(ValueError):
        db.insert("containers", {"id; DROP TABLE containers": 1})


# ---- cheap opening: what every command pays ----------------------------------------------


def _pragmas(database: StateDB) -> tuple:
    pragma = database.conn.execute
    return (
        pragma("PRAGMA journal_mode").fetchone()[0],
        pragma("PRAGMA foreign_keys").fetchone()[0],
        pragma("PRAGMA synchronous").fetchone()[0],
        pragma("PRAGMA busy_timeout").fetchone()[0],
    )


def test_reopening_a_wal_database_keeps_every_setting(tmp_path: Path) -> None:
    # The second open sees WAL in the file header and skips switching; the per-connection
    # settings (foreign keys, synchronous=NORMAL, the busy timeout) must still be there.
    path = tmp_path / "podpy.db"
    StateDB.open_file(str(path)).close()
    assert state._header_says_wal(path.read_bytes()[:100])
    for _ in range(2):
        database = StateDB.open_file(str(path))
        try:
            assert _pragmas(database) == ("wal", 1, 1, 30000)
        finally:
            database.close()


def test_rollback_journal_database_is_switched_to_wal(tmp_path: Path) -> None:
    path = tmp_path / "podpy.db"
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("CREATE TABLE before_podpy (x)")
    conn.commit()
    conn.close()
    assert not state._header_says_wal(path.read_bytes()[:100])
    database = StateDB.open_file(str(path))
    try:
        assert _pragmas(database) == ("wal", 1, 1, 30000)
        assert database.schema_version() == LATEST_VERSION
    finally:
        database.close()
    assert state._header_says_wal(path.read_bytes()[:100])


@pytest.mark.parametrize(
    "header, wal",
    [
        (b"", False),
        (b"SQLite format 3\x00" + b"\x10\x00\x02\x02" + b"\x00" * 80, True),
        (b"SQLite format 3\x00" + b"\x10\x00\x01\x01" + b"\x00" * 80, False),
        (b"SQLite format 3\x00" + b"\x10\x00\x02\x02", False),
        (b"SQLite format 4\x00" + b"\x10\x00\x02\x02" + b"\x00" * 80, False),
    ],
    ids=["empty", "wal", "rollback", "short", "foreign"],
)
def test_header_says_wal(header: bytes, wal: bool) -> None:
    assert state._header_says_wal(header) is wal


def test_busy_retry_retries_only_while_locked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    attempts = []

    def locked_twice() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlite3.OperationalError("database is locked")
        return 7

    assert state._with_busy_retry(locked_twice) == 7 and len(attempts) == 3

    def broken() -> int:
        attempts.append(1)
        raise sqlite3.OperationalError("no such table: x")

    attempts.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        state._with_busy_retry(broken)
    assert len(attempts) == 1

    def always_locked() -> int:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        state._with_busy_retry(always_locked, budget=0.0)


def test_state_module_imports_nothing_it_does_not_need() -> None:
    # typing, random (only for contended retries), datetime (sqlite3.dbapi2's adapters) and
    # namedtuple machinery cost every command's start-up; the DB layer must not bring them.
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "import podpy.errors, json, re, contextlib\n"
        "before = set(sys.modules)\n"
        "import podpy.db.state\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    unwanted = {"typing", "random", "datetime", "sqlite3", "sqlite3.dbapi2", "dataclasses"}
    assert not unwanted & set(out), out
    assert "_sqlite3" in out and "podpy.db.schema" in out


def test_sqlite_module_is_the_public_one_underneath() -> None:
    from podpy.db.sqlite import sqlite3 as ours

    assert ours.Row is sqlite3.Row and ours.OperationalError is sqlite3.OperationalError
    assert ours.DatabaseError is sqlite3.DatabaseError and ours.Connection is sqlite3.Connection


@pytest.mark.parametrize(
    "text, hexadecimal",
    [("ab12", True), ("0", True), ("", False), ("AB12", False), ("ab-12", False),
     ("ab12\n", False), ("g", False), ("web", False), ("abcdefx0", False)],
)  # fmt: skip
def test_only_lower_case_hex_refs_are_id_prefixes(text: str, hexadecimal: bool) -> None:
    assert state._is_hex(text) is hexadecimal
