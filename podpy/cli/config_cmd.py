"""Hidden `podpy system config-files`: the config files read and the effective values, as JSON."""

from __future__ import annotations

import typer

from podpy.cli import _groups


def config_files(ctx: typer.Context) -> None:
    """Print the containers/registries/storage config files read and the values in effect."""
    import json

    from podpy.cli import engine

    typer.echo(json.dumps(engine(ctx).config.to_dict(), indent=2))


def register(app: typer.Typer) -> None:
    _groups.system.command("config-files", hidden=True)(config_files)
