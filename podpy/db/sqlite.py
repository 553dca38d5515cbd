"""The SQLite module podpy uses: the C extension `_sqlite3` itself where it exists.

`import sqlite3` also runs sqlite3/dbapi2.py, which imports datetime (~1.5 ms of every
command's start-up) only to register the default date/datetime adapters and converters.
podpy stores times as REAL seconds and documents as JSON text, so it needs none of them.
Classes and exceptions are the very same objects either way (`sqlite3.Row is _sqlite3.Row`,
`sqlite3.OperationalError is _sqlite3.OperationalError`), so code that imports the public
module and catches its errors keeps working. Other interpreters fall back to `sqlite3`.
"""

from __future__ import annotations

try:
    import _sqlite3 as sqlite3
except ImportError:  # pragma: no cover - CPython always has it next to sqlite3
    import sqlite3  # type: ignore[no-redef]

__all__ = ["sqlite3"]
