"""The typer application: global flags, command registration, and error-to-exit-code mapping.

The CLI parses and prints; every verb makes one call into podpy.engine. Command modules
import only typer and podpy.cli helpers at top level, so registration stays cheap.
"""

from __future__ import annotations

import sys
from typing import List, Optional

import click
import typer

from podpy.engine import Engine, GlobalOptions
from podpy.errors import PodpyError

app = typer.Typer(
    name="podpy",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Manage pods, containers and images, rootless and daemonless.",
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    root: Optional[str] = typer.Option(None, "--root", help="Path to the graph root directory"),
    runroot: Optional[str] = typer.Option(None, "--runroot", help="Path to the run root directory"),
    log_level: str = typer.Option(
        "warn", "--log-level", help="Log messages at and above this level"
    ),
    version: bool = typer.Option(False, "--version", "-v", help="Print the version and exit"),
) -> None:
    if version:
        from podpy import __version__

        typer.echo(f"podpy version {__version__}")
        raise typer.Exit(0)
    from podpy import log

    log.set_level(log_level)
    ctx.obj = Engine(GlobalOptions(root=root, runroot=runroot, log_level=log_level))


def engine(ctx: typer.Context) -> Engine:
    """The Engine built by the global callback (a bare one when a command runs standalone)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Engine):
        root.obj = Engine()
    return root.obj


def _register() -> None:
    from podpy.cli import _groups, config_cmd, image, oci, reset, system, unshare

    for module in (system, unshare, reset, config_cmd, image, oci):
        module.register(app)
    for name, group in _groups.ALL.items():
        if group.registered_commands or group.registered_groups:
            app.add_typer(group, name=name)


_register()


def print_error(err: PodpyError) -> None:
    sys.stderr.write(f"Error: {err.message}\n")
    if err.hint:
        sys.stderr.write(f"Hint: {err.hint}\n")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI and return podman-compatible exit codes (125 for podpy's own errors)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        result = app(args=args, prog_name="podpy", standalone_mode=False)
    except PodpyError as err:
        print_error(err)
        return err.exit_code
    except click.exceptions.NoSuchOption as err:
        sys.stderr.write(f"Error: {err.format_message()}\nSee 'podpy --help'\n")
        return 125
    except click.exceptions.UsageError as err:
        sys.stderr.write(f"Error: {err.format_message()}\n")
        return 125
    except click.exceptions.Abort:
        return 130
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return result if isinstance(result, int) else 0
