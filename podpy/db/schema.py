"""The state database's tables, as an ordered list of migrations keyed by PRAGMA user_version.

Append new migrations; never edit a released one. Each runs inside the single BEGIN IMMEDIATE
transaction that StateDB uses to migrate, so a failure leaves the previous version intact.
Conventions: `*_json` columns hold JSON text; times are Unix seconds (REAL); object ids are
64-hex strings. Configs are written once; `state_json` and the status columns change.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs every command's start-up; annotations are strings here
if TYPE_CHECKING:
    from typing import Dict, Tuple


class Migration:
    """One schema step. A plain class: a NamedTuple (typing + namedtuple's generated code)
    or a dataclass would cost every command's start-up for two tiny records."""

    __slots__ = ("version", "description", "statements")

    def __init__(self, version: int, description: str, statements: Tuple[str, ...]):
        self.version = version
        self.description = description
        self.statements = statements

    def __repr__(self) -> str:
        return f"Migration({self.version!r}, {self.description!r}, {self.statements!r})"


_V1 = (
    # Layers: chain id -> one unpacked tree. 'incomplete' rows exist while unpacking, so
    # readers must only use 'complete' ones (a killed unpack leaves an incomplete row to clean).
    """CREATE TABLE layers (
        id                TEXT PRIMARY KEY,
        diff_id           TEXT NOT NULL,
        parent_id         TEXT REFERENCES layers(id) ON DELETE RESTRICT,
        compressed_digest TEXT,
        compressed_size   INTEGER,
        size              INTEGER NOT NULL DEFAULT 0,
        state             TEXT NOT NULL DEFAULT 'incomplete'
                          CHECK (state IN ('incomplete', 'complete')),
        created           REAL NOT NULL,
        metadata_json     TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX layers_diff_id ON layers(diff_id)",
    "CREATE INDEX layers_parent ON layers(parent_id)",
    # Images: id = hex of the config digest (podman's image ID).
    """CREATE TABLE images (
        id            TEXT PRIMARY KEY,
        digest        TEXT,
        names_json    TEXT NOT NULL DEFAULT '[]',
        manifest_json TEXT,
        config_json   TEXT NOT NULL DEFAULT '{}',
        created       REAL,
        added         REAL NOT NULL,
        size          INTEGER NOT NULL DEFAULT 0,
        top_layer     TEXT REFERENCES layers(id) ON DELETE RESTRICT,
        metadata_json TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX images_digest ON images(digest)",
    "CREATE INDEX images_top_layer ON images(top_layer)",
    # One row per tag: a name points at exactly one image (retagging moves it).
    """CREATE TABLE image_names (
        name     TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    )""",
    "CREATE INDEX image_names_image ON image_names(image_id)",
    """CREATE TABLE pods (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created     REAL NOT NULL,
        status      TEXT NOT NULL DEFAULT 'created',
        config_json TEXT NOT NULL DEFAULT '{}',
        state_json  TEXT NOT NULL DEFAULT '{}'
    )""",
    # Containers: immutable config plus mutable state (podman's ContainerConfig/ContainerState).
    """CREATE TABLE containers (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        pod_id      TEXT REFERENCES pods(id) ON DELETE RESTRICT,
        image_id    TEXT,
        created     REAL NOT NULL,
        config_json TEXT NOT NULL DEFAULT '{}',
        status      TEXT NOT NULL DEFAULT 'created'
                    CHECK (status IN ('created', 'running', 'paused', 'stopped', 'exited',
                                      'removing')),
        exit_code   INTEGER,
        pid         INTEGER NOT NULL DEFAULT 0,
        state_json  TEXT NOT NULL DEFAULT '{}',
        updated     REAL NOT NULL
    )""",
    "CREATE INDEX containers_pod ON containers(pod_id)",
    "CREATE INDEX containers_image ON containers(image_id)",
    "CREATE INDEX containers_status ON containers(status)",
    """CREATE TABLE volumes (
        name        TEXT PRIMARY KEY,
        driver      TEXT NOT NULL DEFAULT 'local',
        mountpoint  TEXT NOT NULL,
        created     REAL NOT NULL,
        config_json TEXT NOT NULL DEFAULT '{}',
        state_json  TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE networks (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        driver      TEXT NOT NULL DEFAULT 'bridge',
        created     REAL NOT NULL,
        config_json TEXT NOT NULL DEFAULT '{}'
    )""",
    # A persistent journal for `podpy events` (podman's "file" events logger).
    """CREATE TABLE events (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        time            REAL NOT NULL,
        type            TEXT NOT NULL,
        name            TEXT NOT NULL DEFAULT '',
        object_id       TEXT NOT NULL DEFAULT '',
        status          TEXT NOT NULL,
        attributes_json TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX events_time ON events(time)",
)

MIGRATIONS: Tuple[Migration, ...] = (Migration(1, "initial schema", _V1),)

LATEST_VERSION = MIGRATIONS[-1].version


class TableInfo:
    """What the generic StateDB helpers need to know about a table."""

    __slots__ = ("key", "name_column", "prefix_lookup", "json_columns")

    def __init__(
        self, key: str, name_column: str, prefix_lookup: bool, json_columns: Tuple[str, ...]
    ):
        self.key = key  # primary key column
        self.name_column = name_column  # column a user may refer to the object by ('' if none)
        self.prefix_lookup = prefix_lookup  # whether a unique prefix of the key names a row
        self.json_columns = json_columns

    def __repr__(self) -> str:
        return (
            f"TableInfo({self.key!r}, {self.name_column!r}, {self.prefix_lookup!r}, "
            f"{self.json_columns!r})"
        )


TABLES: Dict[str, TableInfo] = {
    "layers": TableInfo("id", "", True, ("metadata_json",)),
    "images": TableInfo(
        "id", "", True, ("names_json", "manifest_json", "config_json", "metadata_json")
    ),
    "image_names": TableInfo("name", "", False, ()),
    "pods": TableInfo("id", "name", True, ("config_json", "state_json")),
    "containers": TableInfo("id", "name", True, ("config_json", "state_json")),
    "volumes": TableInfo("name", "", False, ("config_json", "state_json")),
    "networks": TableInfo("id", "name", True, ("config_json",)),
    "events": TableInfo("seq", "", False, ("attributes_json",)),
}
