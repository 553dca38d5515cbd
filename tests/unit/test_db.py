"""StateDB on a temporary directory: creation, migrations, version checks, and the helpers."""

from __future__ import annotations

import sqlite3
import stat
import time
from pathlib import Path

import pytest

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
