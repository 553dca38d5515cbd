"""50 podpy processes open one fresh state DB at the same instant and write to it at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from podpy.db.state import StateDB

REPO = Path(__file__).resolve().parents[2]
WORKERS = 50
ROWS_PER_WORKER = 20

# Each worker: wait for the start signal, open the (not yet existing) DB with one extra
# migration that must run exactly once, then insert, update and increment concurrently.
WORKER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from podpy.db.schema import MIGRATIONS, Migration
from podpy.db.state import StateDB

db_path, start_flag, worker, rows = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
extra = MIGRATIONS + (Migration(MIGRATIONS[-1].version + 1, "test counter", (
    "CREATE TABLE migration_log (pid INTEGER)",
    "INSERT INTO migration_log VALUES (%d)" % os.getpid(),
    "CREATE TABLE counter (n INTEGER NOT NULL)",
    "INSERT INTO counter VALUES (0)",
)),)
while not os.path.exists(start_flag):
    time.sleep(0.001)
db = StateDB.open_file(db_path, migrations=extra)

def increment(conn):
    # Read-modify-write in Python: only correct if transactions really serialise.
    n = conn.execute("SELECT n FROM counter").fetchone()[0]
    conn.execute("UPDATE counter SET n = ?", (n + 1,))

for i in range(rows):
    cid = "%032x%032x" % (worker, i)
    now = time.time()
    db.insert("containers", {"id": cid, "name": "w%d-%d" % (worker, i), "created": now,
                             "updated": now, "config": {"worker": worker}})
    db.update_state("containers", cid, {"step": "started"}, status="running", pid=os.getpid())
    db.update_state("containers", cid, {"finished": True}, status="exited", exit_code=i)
    db.run_transaction(increment)
    db.add_event("container", "died", name="w%d-%d" % (worker, i), object_id=cid)
db.close()
print("ok")
"""


def test_fifty_processes_create_migrate_and_write_without_lock_errors(tmp_path: Path) -> None:
    db_path = tmp_path / "store" / "podpy.db"
    start_flag = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(REPO),
                str(db_path),
                str(start_flag),
                str(worker),
                str(ROWS_PER_WORKER),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(WORKERS)
    ]
    time.sleep(1.0)  # let every interpreter start and wait on the flag
    start_flag.write_text("go")
    failures = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0 or out.strip() != "ok" or err:
            failures.append(f"exit {proc.returncode}: {err.strip()[-500:]}")
    assert failures == []

    db = StateDB.open_file(str(db_path), migrations=_migrations_with_counter())
    try:
        total = WORKERS * ROWS_PER_WORKER
        rows = db.list("containers")
        assert len(rows) == total
        assert {r["status"] for r in rows} == {"exited"}
        assert all(r["state"] == {"step": "started", "finished": True} for r in rows)
        assert db.query("SELECT n FROM counter")[0]["n"] == total
        assert len(db.query("SELECT pid FROM migration_log")) == 1
        assert db.counts()["events"] == total
        assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def _migrations_with_counter():  # type: ignore[no-untyped-def]
    """The same migration list the workers used (reopening must not re-run anything)."""
    from podpy.db.schema import MIGRATIONS, Migration

    return MIGRATIONS + (Migration(MIGRATIONS[-1].version + 1, "test counter", ("SELECT 1",)),)
