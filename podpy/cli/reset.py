"""`podpy system reset`: remove all podpy state of the current user."""

from __future__ import annotations

import sys

import typer

from podpy.cli import _groups, engine

_WARNING = """WARNING! This will remove:
        - all containers
        - all pods
        - all images
        - all networks
        - all build cache
        - all volumes
"""


def reset(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", "-f", help="Do not prompt for confirmation"),
) -> None:
    """Reset podpy storage back to its initial state."""
    from podpy.errors import PodpyError

    if not force:
        if not sys.stdin.isatty():
            raise PodpyError(
                "refusing to reset without confirmation: stdin is not a terminal",
                hint="run `podpy system reset --force` to reset without a prompt",
            )
        sys.stdout.write(_WARNING)
        sys.stdout.write("Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return
    from podpy.engine.reset import system_reset

    system_reset(engine(ctx).paths)


def register(app: typer.Typer) -> None:
    _groups.system.command("reset")(reset)
