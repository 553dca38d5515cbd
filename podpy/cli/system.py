"""`podpy version`, `info`, `doctor` and the `system` group."""

from __future__ import annotations

import typer

from podpy.cli import _groups


def version(ctx: typer.Context) -> None:
    """Display the podpy version information."""
    import platform

    from podpy import __version__

    typer.echo(f"Version:        {__version__}")
    typer.echo(f"Python Version: {platform.python_version()}")
    typer.echo(f"OS/Arch:        linux/{platform.machine()}")


def register(app: typer.Typer) -> None:
    app.command("version")(version)
    _groups.system.command("version")(version)
