"""The monitor's two writes to the state DB (container running / exited), in plain sqlite3 so
the monitor never imports the engine. Column meanings are podpy/db/schema.py's."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Dict


def _update(
    db_path: str, cid: str, name: str, status: str, columns: Dict[str, Any], state: Dict[str, Any]
) -> None:
    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        # As StateDB: WAL with NORMAL sync survives a killed process; FULL cost an fsync
        # per commit on the container's start path.
        conn.execute("PRAGMA synchronous = NORMAL")
        for attempt in range(50):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError:
                time.sleep(0.05 * (attempt + 1))
        row = conn.execute(
            "SELECT state_json, name FROM containers WHERE id = ?", (cid,)
        ).fetchone()
        if row is None:  # removed meanwhile (rm -f): nothing to record
            conn.execute("ROLLBACK")
            return
        name = row[1] or name  # renamed while running: events carry the current name
        merged = json.loads(row[0] or "{}")
        merged.update(state)
        sets = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(
            f"UPDATE containers SET status = ?, state_json = ?, updated = ?"
            f"{', ' + sets if sets else ''} WHERE id = ?",
            (status, json.dumps(merged), time.time(), *columns.values(), cid),
        )
        conn.execute(
            "INSERT INTO events (time, type, name, object_id, status, attributes_json) "
            "VALUES (?, 'container', ?, ?, ?, ?)",
            (
                time.time(),
                name,
                cid,
                "start" if status == "running" else "died",
                json.dumps({k: v for k, v in state.items() if k == "exit_code"}),
            ),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def mark_running(db_path: str, cid: str, name: str, pid: int, monitor: Dict[str, Any]) -> None:
    _update(db_path, cid, name, "running", {"pid": pid, "exit_code": None}, dict(monitor))


def mark_exited(db_path: str, cid: str, name: str, code: int, finished: float, oom: bool) -> None:
    state = {"finished_at": finished, "oom_killed": oom, "exit_code": code}
    _update(db_path, cid, name, "exited", {"pid": 0, "exit_code": code}, state)
