"""`podpy unshare [--] CMD...`: run a command inside podpy's user namespace (podman unshare)."""

from __future__ import annotations

from typing import List, Optional

import typer

from podpy.cli import engine


def unshare(
    ctx: typer.Context,
    command: Optional[List[str]] = typer.Argument(
        None, metavar="[COMMAND [ARG...]]", help="Command to run (default: $SHELL)"
    ),
) -> None:
    """Run a command in a modified user namespace."""
    from podpy.rootless import unshare as run_unshare

    code = run_unshare(engine(ctx).paths, command or [])
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    # Everything after COMMAND belongs to it, including its own flags and --help.
    app.command(
        "unshare",
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "allow_interspersed_args": False,
        },
    )(unshare)
