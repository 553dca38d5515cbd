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


def _print_version(value: bool) -> None:
    """Eager: answered before click looks for a command (`podpy --root X --version`)."""
    if value:
        from podpy import __version__

        typer.echo(f"podpy version {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    ctx: typer.Context,
    root: Optional[str] = typer.Option(None, "--root", help="Path to the graph root directory"),
    runroot: Optional[str] = typer.Option(None, "--runroot", help="Path to the run root directory"),
    log_level: str = typer.Option(
        "warn", "--log-level", help="Log messages at and above this level"
    ),
    version: bool = typer.Option(
        False,
        "--version",
        "-v",
        help="Print the version and exit",
        is_eager=True,
        callback=_print_version,
    ),
) -> None:
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
    from podpy.cli import (
        _groups,
        config_cmd,
        container,
        container_fs,
        container_ops,
        image,
        image_transfer,
        network,
        oci,
        pod,
        reset,
        system,
        unshare,
        volume,
    )

    for module in (
        system,
        unshare,
        reset,
        config_cmd,
        image,
        image_transfer,
        container,
        container_ops,
        container_fs,
        volume,
        pod,
        network,
        oci,
    ):
        module.register(app)
    for name, group in _groups.ALL.items():
        if group.registered_commands or group.registered_groups:
            app.add_typer(group, name=name)


_register()


def print_error(err: PodpyError) -> None:
    from podpy.errors import print_error as report

    report(err)


_GLOBAL_OPTIONS_WITH_VALUE = ("--root", "--runroot", "--log-level")


def _command_path(args: List[str]) -> List[str]:
    """The command words in argv (`image ls` in `--root X image ls -a`), skipping global flags."""
    words: List[str] = []
    i = 0
    while i < len(args) and len(words) < 2:
        arg = args[i]
        if arg == "--":
            break
        if arg in _GLOBAL_OPTIONS_WITH_VALUE:
            i += 2
            continue
        if arg.startswith("-"):
            if words:
                break  # options of the command itself: the path is complete
            i += 1
            continue
        words.append(arg)
        i += 1
    return words


def _command_name(info: typer.models.CommandInfo) -> str:
    return info.name or info.callback.__name__.lower().replace("_", "-")  # type: ignore[union-attr]


def _pruned(instance: typer.Typer, path: List[str]) -> typer.Typer:
    """A shallow copy of the app holding only the command being invoked.

    Typer converts every registered command to click (inspecting signatures) on each run;
    with ~100 commands that costs more than podpy's whole start-up budget.
    """
    import copy

    if not path:
        return instance
    commands = [c for c in instance.registered_commands if _command_name(c) == path[0]]
    groups = [g for g in instance.registered_groups if g.name == path[0]]
    if not commands and not groups:
        return instance  # unknown: let click report it against the full list
    clone = copy.copy(instance)
    clone.registered_commands = commands
    clone.registered_groups = []
    for group in groups:
        pruned_group = copy.copy(group)
        pruned_group.typer_instance = _pruned(group.typer_instance, path[1:])  # type: ignore[arg-type]
        clone.registered_groups.append(pruned_group)
    return clone


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI and return podman-compatible exit codes (125 for podpy's own errors)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        target = app if "--help" in args or "-h" in args[:1] else _pruned(app, _command_path(args))
        result = target(args=args, prog_name="podpy", standalone_mode=False)
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
    except Exception as err:  # a bug: one line for the user, the traceback at debug level
        from podpy.errors import report_internal_error

        return report_internal_error(err)
    return result if isinstance(result, int) else 0
