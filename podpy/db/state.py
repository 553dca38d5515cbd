"""StateDB: the one SQLite database of a graph root, safe for many podpy processes at once.

Concurrency model: WAL journal (readers never block the writer), a long busy_timeout, every
write in a short BEGIN IMMEDIATE transaction (so a writer never has to upgrade a read lock, the
one case where SQLite fails with SQLITE_BUSY at once), and a jittered retry when the lock is
still not available after the timeout. Never hold a transaction across slow work (pulls,
unpacking, container start): read, do the work, then write the result in a new transaction.

Rows come back as dicts; columns named `<x>_json` come back decoded under the key `<x>`, and
insert/update accept either `<x>` (any JSON-able value) or `<x>_json` (already-encoded text).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time

from podpy.db.schema import MIGRATIONS, TABLES
from podpy.db.sqlite import sqlite3
from podpy.errors import AlreadyExists, NoSuchObject, PodpyError

TYPE_CHECKING = False  # typing costs every command's start-up; annotations are strings here
if TYPE_CHECKING:
    from typing import (
        Any,
        Callable,
        Dict,
        Iterator,
        List,
        Mapping,
        Optional,
        Sequence,
        Tuple,
        TypeVar,
    )

    from podpy.db.schema import Migration, TableInfo
    from podpy.paths import Paths

    T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 30.0
# Total time to keep retrying after SQLite's own busy handler gave up.
RETRY_BUDGET_SECONDS = 120.0
# For messages: "no container with name or ID ..."
_KIND = {
    "layers": "layer",
    "images": "image",
    "image_names": "image name",
    "pods": "pod",
    "containers": "container",
    "volumes": "volume",
    "networks": "network",
    "events": "event",
}


class DatabaseError(PodpyError):
    """The state database is unusable (corrupt, from a newer podpy, or a failed migration)."""


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


def _with_busy_retry(action: Callable[[], T], budget: float = RETRY_BUDGET_SECONDS) -> T:
    """Run action, retrying with jittered exponential backoff while the DB stays locked."""
    deadline = time.monotonic() + budget
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as err:
            if not _is_busy(err) or time.monotonic() >= deadline:
                raise
        import random  # only when contended: not worth its import on every open

        time.sleep(random.uniform(delay / 2, delay))
        delay = min(delay * 2, 0.5)


def _is_hex(text: str) -> bool:
    """Lower-case hex digits only (an ID prefix). No regex: compiling one at import cost
    every command ~0.1 ms."""
    return bool(text) and not text.strip("0123456789abcdef")


def _header_says_wal(header: bytes) -> bool:
    """Whether a database file header records WAL mode (file format read/write versions 2).

    Only ever skips switching to WAL: a header that says anything else, or a short or
    foreign one, leaves the switch to SQLite, which checks the file properly.
    """
    return (
        len(header) == 100
        and header[:16] == b"SQLite format 3\x00"
        and header[18:20] == b"\x02\x02"
    )


def _decode_row(row: sqlite3.Row) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key in row.keys():
        value = row[key]
        if key.endswith("_json"):
            out[key[:-5]] = None if value is None else json.loads(value)
        else:
            out[key] = value
    return out


def _encode_columns(info: Optional[TableInfo], values: Mapping[str, Any]) -> Dict[str, Any]:
    """Map friendly keys (`config`) to columns (`config_json`), JSON-encoding as needed."""
    json_columns = info.json_columns if info else ()
    out: Dict[str, Any] = {}
    for key, value in values.items():
        column = key
        if f"{key}_json" in json_columns:
            column = f"{key}_json"
            value = None if value is None else json.dumps(value, sort_keys=True)
        elif key in json_columns and not (value is None or isinstance(value, str)):
            value = json.dumps(value, sort_keys=True)
        if not re.match(r"^[a-z_]+$", column):
            raise ValueError(f"invalid column name {column!r}")
        out[column] = value
    return out


def _table(table: str) -> TableInfo:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    return TABLES[table]


class StateDB:
    """One open connection to the state database. Not shared between processes or threads."""

    def __init__(self, conn: sqlite3.Connection, path: str):
        self.conn = conn
        self.path = path
        self._depth = 0

    # --- opening and migration ---------------------------------------------------------------

    @classmethod
    def open(cls, paths: Paths) -> StateDB:
        """Open (creating the graph root 0700 and the schema as needed) the DB for `paths`."""
        return cls.open_file(paths.db_file)

    @classmethod
    def open_file(cls, path: str, migrations: Sequence[Migration] = MIGRATIONS) -> StateDB:
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            # Created 0600 up front: SQLite gives the -wal/-shm files the same mode.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                header = os.pread(fd, 100, 0)
            finally:
                os.close(fd)
        except OSError as err:
            raise DatabaseError(
                f"cannot create the state database {path}: {err.strerror}",
                hint="check the ownership and permissions of the graph root (--root)",
            ) from err
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        db = cls(conn, path)
        try:
            db._configure(wal=_header_says_wal(header))
            db._migrate(migrations)
        except sqlite3.DatabaseError as err:
            conn.close()
            raise DatabaseError(
                f"cannot use the state database {path}: {err}",
                hint="if the file is damaged, remove all podpy state with `podpy system reset`",
            ) from err
        except BaseException:
            conn.close()
            raise
        return db

    def _configure(self, wal: bool = False) -> None:
        """Per-connection settings; `wal` when the file is known to be in WAL mode already.

        The busy timeout is connect()'s `timeout` (sqlite3_busy_timeout), no PRAGMA needed.
        """
        conn = self.conn
        conn.execute("PRAGMA foreign_keys = ON")
        # WAL is a property of the database file (kept in its header), so it is switched on
        # once, by the first process, which takes an exclusive lock for it.
        if not wal:
            _with_busy_retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        # NORMAL is durable against process crashes under WAL (a power cut may lose the
        # last commits, never consistency). Per connection, so set every time.
        conn.execute("PRAGMA synchronous = NORMAL")

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_not_newer(self, version: int, latest: int) -> None:
        if version > latest:
            raise DatabaseError(
                f"the state database {self.path} has schema version {version}, newer than "
                f"this podpy understands ({latest})",
                hint="upgrade podpy, or remove all podpy state with `podpy system reset`",
            )

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        latest = migrations[-1].version if migrations else 0
        version = self.schema_version()
        self._check_not_newer(version, latest)
        if version == latest:
            return
        # Several processes may get here on a fresh DB: BEGIN IMMEDIATE serialises them
        # and the version is re-read inside, so only the first one migrates.
        with self.transaction():
            version = self.schema_version()
            self._check_not_newer(version, latest)
            for migration in migrations:
                if migration.version <= version:
                    continue
                try:
                    for statement in migration.statements:
                        self.conn.execute(statement)
                except sqlite3.DatabaseError as err:
                    raise DatabaseError(
                        f"migrating the state database {self.path} to version "
                        f"{migration.version} ({migration.description}) failed: {err}",
                        hint="the database was left at its previous version",
                    ) from err
                # PRAGMA user_version is transactional: it rolls back with the DDL.
                self.conn.execute(f"PRAGMA user_version = {int(migration.version)}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error). Nested use joins the outer one.

        Keep the body short and free of slow work: other podpy processes wait for it.
        """
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        _with_busy_retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            _with_busy_retry(lambda: self.conn.execute("COMMIT"))
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise

    def run_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) in a transaction, re-running it whole if SQLite reports busy midway."""
        if self._depth:
            return fn(self.conn)

        def attempt() -> T:
            with self.transaction() as conn:
                return fn(conn)

        return _with_busy_retry(attempt)

    # --- raw queries -------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement; outside a transaction it autocommits and is retried when busy."""
        if self._depth:
            return self.conn.execute(sql, params)
        return _with_busy_retry(lambda: self.conn.execute(sql, params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> List[Dict[str, Any]]:
        """All rows of a SELECT as decoded dicts."""
        if self._depth:
            rows = self.conn.execute(sql, params).fetchall()
        else:
            rows = _with_busy_retry(lambda: self.conn.execute(sql, params).fetchall())
        return [_decode_row(row) for row in rows]

    # --- generic object helpers --------------------------------------------------------------

    def get(self, table: str, key: Any) -> Optional[Dict[str, Any]]:
        """The row whose primary key equals `key`, or None."""
        info = _table(table)
        rows = self.query(f"SELECT * FROM {table} WHERE {info.key} = ?", (key,))
        return rows[0] if rows else None

    def get_by_name(self, table: str, name: str) -> Optional[Dict[str, Any]]:
        info = _table(table)
        column = info.name_column or info.key
        rows = self.query(f"SELECT * FROM {table} WHERE {column} = ?", (name,))
        return rows[0] if rows else None

    def find_id(self, table: str, ref: str) -> Optional[str]:
        """Resolve a user reference like podman: full id, then exact name, then a unique id
        prefix (images also by tag, and `sha256:` is accepted). None when nothing matches;
        PodpyError when a prefix is ambiguous."""
        info = _table(table)
        if table == "images":
            rows = self.query("SELECT image_id FROM image_names WHERE name = ?", (ref,))
            if rows:
                return rows[0]["image_id"]
            if ref.startswith("sha256:"):
                ref = ref[len("sha256:") :]
        key_rows = self.query(f"SELECT {info.key} FROM {table} WHERE {info.key} = ?", (ref,))
        if key_rows:
            return key_rows[0][info.key]
        if info.name_column:
            rows = self.query(
                f"SELECT {info.key} FROM {table} WHERE {info.name_column} = ?", (ref,)
            )
            if rows:
                return rows[0][info.key]
        if info.prefix_lookup and _is_hex(ref):
            rows = self.query(
                f"SELECT {info.key} FROM {table} WHERE {info.key} GLOB ? LIMIT 2", (ref + "*",)
            )
            if len(rows) > 1:
                raise PodpyError(
                    f'more than one result for {_KIND[table]} ID "{ref}"',
                    hint="use more characters of the ID, or the name",
                )
            if rows:
                return rows[0][info.key]
        return None

    def lookup(self, table: str, ref: str) -> Dict[str, Any]:
        """Like find_id, returning the row; NoSuchObject (podman's wording) when missing."""
        found = self.find_id(table, ref)
        row = self.get(table, found) if found is not None else None
        if row is None:
            kind = _KIND.get(table, table)
            raise NoSuchObject(f'no {kind} with name or ID "{ref}" found: no such {kind}')
        return row

    def list(
        self, table: str, where: Optional[Mapping[str, Any]] = None, order_by: str = ""
    ) -> List[Dict[str, Any]]:
        """Rows matching column = value for every item of `where` (all rows if empty)."""
        info = _table(table)
        clauses, params = self._where(info, where or {})
        sql = f"SELECT * FROM {table}{clauses}"
        if order_by:
            if not re.match(r"^[a-z_]+( (ASC|DESC))?$", order_by):
                raise ValueError(f"invalid order_by {order_by!r}")
            sql += f" ORDER BY {order_by}"
        return self.query(sql, params)

    @staticmethod
    def _where(info: TableInfo, where: Mapping[str, Any]) -> Tuple[str, List[Any]]:
        if not where:
            return "", []
        encoded = _encode_columns(info, where)
        parts, params = [], []
        for column, value in encoded.items():
            if value is None:
                parts.append(f"{column} IS NULL")
            else:
                parts.append(f"{column} = ?")
                params.append(value)
        return " WHERE " + " AND ".join(parts), params

    def insert(self, table: str, row: Mapping[str, Any]) -> None:
        """Insert one row; AlreadyExists if its key or name is taken."""
        info = _table(table)
        encoded = _encode_columns(info, row)
        columns = ", ".join(encoded)
        marks = ", ".join("?" for _ in encoded)
        try:
            self.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(encoded.values())
            )
        except sqlite3.IntegrityError as err:
            text = " ".join(str(err).split())
            kind = _KIND.get(table, table)
            if "UNIQUE" in text:
                label = row.get(info.name_column) if info.name_column else None
                label = label or row.get(info.key)
                raise AlreadyExists(
                    f'{kind} name or ID "{label}" is already in use',
                    hint=f"remove that {kind} or choose another name",
                ) from err
            raise PodpyError(f"cannot store {kind}: {text}") from err

    def update(self, table: str, key: Any, **changes: Any) -> bool:
        """Set columns of one row (friendly JSON keys accepted); False if the row is missing."""
        info = _table(table)
        if not changes:
            return self.get(table, key) is not None
        encoded = _encode_columns(info, changes)
        assignments = ", ".join(f"{column} = ?" for column in encoded)
        cursor = self.execute(
            f"UPDATE {table} SET {assignments} WHERE {info.key} = ?",
            [*encoded.values(), key],
        )
        return cursor.rowcount > 0

    def update_state(
        self,
        table: str,
        key: Any,
        state: Optional[Mapping[str, Any]] = None,
        replace: bool = False,
        **columns: Any,
    ) -> Dict[str, Any]:
        """Merge `state` into the row's state JSON (or replace it) and set `columns` (e.g.
        status, exit_code, pid), atomically; `updated` is stamped where the table has it.
        Returns the new row; NoSuchObject if it is gone (e.g. removed meanwhile)."""
        info = _table(table)

        def apply(_conn: sqlite3.Connection) -> Dict[str, Any]:
            row = self.get(table, key)
            if row is None:
                kind = _KIND.get(table, table)
                raise NoSuchObject(f'no {kind} with name or ID "{key}" found: no such {kind}')
            changes: Dict[str, Any] = dict(columns)
            if state is not None:
                merged = dict(state) if replace else {**(row.get("state") or {}), **state}
                changes["state"] = merged
            if table == "containers":
                changes.setdefault("updated", time.time())
            if changes:
                encoded = _encode_columns(info, changes)
                assignments = ", ".join(f"{column} = ?" for column in encoded)
                self.conn.execute(
                    f"UPDATE {table} SET {assignments} WHERE {info.key} = ?",
                    [*encoded.values(), key],
                )
            return self.get(table, key) or row

        try:
            return self.run_transaction(apply)
        except sqlite3.IntegrityError as err:
            detail = " ".join(str(err).split())
            raise PodpyError(
                f"invalid state for {_KIND.get(table, table)} {key}: {detail}"
            ) from err

    def delete(self, table: str, key: Any) -> bool:
        """Delete one row by key; False if it did not exist."""
        info = _table(table)
        try:
            cursor = self.execute(f"DELETE FROM {table} WHERE {info.key} = ?", (key,))
        except sqlite3.IntegrityError as err:
            kind = _KIND.get(table, table)
            raise PodpyError(f"{kind} {key} is still in use: {err}") from err
        return cursor.rowcount > 0

    def counts(self) -> Dict[str, int]:
        """Number of rows per table (for `podpy info`), plus containers per status as
        `containers_<status>`."""
        result: Dict[str, int] = {}
        for table in TABLES:
            result[table] = int(self.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])
        for status in ("created", "running", "paused", "stopped", "exited", "removing"):
            result[f"containers_{status}"] = 0
        for row in self.query("SELECT status, COUNT(*) AS n FROM containers GROUP BY status"):
            result[f"containers_{row['status']}"] = int(row["n"])
        return result

    # --- events journal ----------------------------------------------------------------------

    def add_event(
        self,
        type: str,
        status: str,
        name: str = "",
        object_id: str = "",
        attributes: Optional[Mapping[str, Any]] = None,
        when: Optional[float] = None,
    ) -> int:
        """Append one event (podman: type container|image|pod|volume|network|system,
        status create|start|died|remove|pull|...); returns its sequence number."""
        cursor = self.execute(
            "INSERT INTO events (time, type, name, object_id, status, attributes_json) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                time.time() if when is None else when,
                type,
                name,
                object_id,
                status,
                json.dumps(dict(attributes or {}), sort_keys=True),
            ),
        )
        return int(cursor.lastrowid or 0)

    def events(
        self,
        since: Optional[float] = None,
        until: Optional[float] = None,
        after_seq: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        """Events in order; `after_seq` lets a follower poll for new ones cheaply."""
        clauses: List[str] = []
        params: List[Any] = []
        if since is not None:
            clauses.append("time >= ?")
            params.append(since)
        if until is not None:
            clauses.append("time <= ?")
            params.append(until)
        if after_seq is not None:
            clauses.append("seq > ?")
            params.append(after_seq)
        sql = "SELECT * FROM events"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.query(sql, params)
