"""The Engine facade: the only API the CLI sees. Everything behind it is opened lazily."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

if TYPE_CHECKING:
    from podpy.config import Config
    from podpy.db.state import StateDB
    from podpy.paths import Paths


@dataclass
class GlobalOptions:
    """What the user passed before the verb (`podpy --root X --log-level debug ps`)."""

    root: Optional[str] = None
    runroot: Optional[str] = None
    log_level: str = "warn"
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)


class Engine:
    """Lazily wires paths, configuration and the state database for one podpy invocation."""

    def __init__(self, options: Optional[GlobalOptions] = None):
        self.options = options or GlobalOptions()
        self._cache: Dict[str, Any] = {}

    @property
    def config(self) -> Config:
        if "config" not in self._cache:
            from podpy.config import load

            self._cache["config"] = load(env=self.options.env)
        return self._cache["config"]

    @property
    def paths(self) -> Paths:
        if "paths" not in self._cache:
            from podpy.paths import resolve

            self._cache["paths"] = resolve(
                root=self.options.root, runroot=self.options.runroot, env=self.options.env
            )
        return self._cache["paths"]

    @property
    def db(self) -> StateDB:
        """The state database, created (and migrated) on first use."""
        if "db" not in self._cache:
            from podpy.db.state import StateDB

            self._cache["db"] = StateDB.open(self.paths)
        return self._cache["db"]

    def close(self) -> None:
        db = self._cache.pop("db", None)
        if db is not None:
            db.close()
