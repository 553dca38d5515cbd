"""How podpy re-invokes itself (monitor, cleanup command, systemd units): the zipapp, or the
source tree when run as `python -m podpy`."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List


def podpy_argv(lean: bool = False) -> List[str]:
    """argv prefix that runs this same podpy. `lean` adds -S (no site-packages) when the
    zipapp carries its dependencies, which is what the monitor wants."""
    main = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if main and os.path.isfile(main) and not main.endswith(".py"):
        return [sys.executable, "-I", *(["-S"] if lean else []), main]
    # Source checkout or installed package: keep site-packages (typer lives there).
    return [sys.executable, "-m", "podpy"]


def source_env() -> dict:
    """Environment additions so `python -m podpy` finds this source tree."""
    if podpy_argv()[1:2] == ["-m"]:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        current = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": root + (os.pathsep + current if current else "")}
    return {}
