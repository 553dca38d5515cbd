"""The monitor's writes to the state DB (container running / exited, and the removal of a
`--rm` container), in plain sqlite3 so the monitor never imports the engine. Column meanings
are podpy/db/schema.py's; the removal is what `StateDB.delete` + the engine's `remove` event
write (tests/integration/test_lifecycle.py compares the two)."""

from __future__ import annotations

import json
import time

from podpy.db.sqlite import sqlite3  # the C module: no sqlite3.dbapi2 -> datetime (~1.5 ms)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional


def _update(
    db_path: str,
    cid: str,
    name: str,
    status: str,
    columns: Dict[str, Any],
    state: Dict[str, Any],
    remove_image: Optional[str] = None,
) -> bool:
    """One transaction: the new status, its event, and with `remove_image` (the image name
    for the event) the container's row deleted. False when the row was gone already."""
    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        # As StateDB: WAL with NORMAL sync survives a killed process; FULL cost an fsync
        # per commit on the container's start path.
        conn.execute("PRAGMA synchronous = NORMAL")
        if remove_image is not None:
            conn.execute("PRAGMA foreign_keys = ON")  # as StateDB, which `podpy rm` uses
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
            return False
        name = row[1] or name  # renamed while running: events carry the current name
        merged = json.loads(row[0] or "{}")
        merged.update(state)
        sets = ", ".join(f"{name} = ?" for name in columns)
        now = time.time()
        conn.execute(
            f"UPDATE containers SET status = ?, state_json = ?, updated = ?"
            f"{', ' + sets if sets else ''} WHERE id = ?",
            (status, json.dumps(merged), now, *columns.values(), cid),
        )
        events = [
            (
                "start" if status == "running" else "died",
                json.dumps({k: v for k, v in state.items() if k == "exit_code"}),
            )
        ]
        if remove_image is not None:
            conn.execute("DELETE FROM containers WHERE id = ?", (cid,))
            events.append(("remove", json.dumps({"image": remove_image}, sort_keys=True)))
        for event, attributes in events:
            conn.execute(
                "INSERT INTO events (time, type, name, object_id, status, attributes_json) "
                "VALUES (?, 'container', ?, ?, ?, ?)",
                (now, name, cid, event, attributes),
            )
        conn.execute("COMMIT")
        return True
    finally:
        conn.close()


def mark_running(db_path: str, cid: str, name: str, pid: int, monitor: Dict[str, Any]) -> None:
    _update(db_path, cid, name, "running", {"pid": pid, "exit_code": None}, dict(monitor))


def mark_exited(
    db_path: str,
    cid: str,
    name: str,
    code: int,
    finished: float,
    oom: bool,
    remove_image: Optional[str] = None,
) -> bool:
    """Record the exit; with `remove_image` (--rm) delete the row in the same transaction,
    with the `remove` event `podpy rm` writes. False when the row was already gone."""
    state = {"finished_at": finished, "oom_killed": oom, "exit_code": code}
    return _update(db_path, cid, name, "exited", {"pid": 0, "exit_code": code}, state, remove_image)
