"""The Engine facade: the only API the CLI sees. Everything behind it is opened lazily."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping, Optional

    from podpy.config import Config
    from podpy.db.state import StateDB
    from podpy.paths import Paths


class GlobalOptions:
    """What the user passed before the verb (`podpy --root X --log-level debug ps`).

    A plain class, not a dataclass: importing dataclasses costs `ps` start-up time."""

    def __init__(
        self,
        root: Optional[str] = None,
        runroot: Optional[str] = None,
        log_level: str = "warn",
        env: Optional[Mapping[str, str]] = None,
    ):
        self.root = root
        self.runroot = runroot
        self.log_level = log_level
        self.env: Mapping[str, str] = os.environ if env is None else env


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
