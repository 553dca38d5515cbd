"""`podpy volume create|ls|inspect|rm|prune|exists`: parse, call podpy.engine.volumes, print."""

from __future__ import annotations

import sys
from typing import Dict, List, Optional

import typer

from podpy.cli import _groups, engine

_LS_FORMAT = "table {{.Driver}}\t{{.Name}}"
_LS_HEADERS = {"Name": "VOLUME NAME"}


def _pairs(items: List[str], what: str) -> Dict[str, str]:
    from podpy.errors import PodpyError

    out: Dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise PodpyError(f"invalid {what} {item!r}", hint=f"use {what} KEY=VALUE")
        out[key] = value if sep else ""
    return out


def create(
    ctx: typer.Context,
    name: Optional[str] = typer.Argument(None, help="Volume name (random when omitted)"),
    labels: List[str] = typer.Option([], "-l", "--label", help="Set a label KEY=VALUE"),
    options: List[str] = typer.Option([], "-o", "--opt", help="Driver option (o=uid=N,gid=N)"),
    driver: str = typer.Option("local", "-d", "--driver", help="Volume driver (local)"),
    ignore: bool = typer.Option(False, "--ignore", help="Do not fail if the volume exists"),
) -> None:
    """Create a new volume."""
    from podpy.engine import volumes
    from podpy.errors import PodpyError

    if driver != "local":
        raise PodpyError(f"volume driver {driver!r} is not supported", hint="use --driver local")
    row = volumes.create(
        engine(ctx),
        name,
        labels=_pairs(labels, "--label"),
        options=_pairs(options, "--opt"),
        ignore_existing=ignore,
    )
    typer.echo(row["name"])


def ls(
    ctx: typer.Context,
    filters: List[str] = typer.Option([], "-f", "--filter", help="name=, label=, dangling=..."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Go template or json"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the volume names"),
    noheading: bool = typer.Option(False, "-n", "--noheading", help="Do not print headers"),
) -> None:
    """List volumes."""
    from podpy.cli._output import emit_list
    from podpy.engine import volumes

    rows = volumes.list_volumes(engine(ctx), filters)
    if not rows and (fmt or "").strip() != "json":
        return  # podman prints no header over an empty volume list (json still gives [])
    emit_list(
        rows,
        fmt,
        _LS_FORMAT,
        quiet_field="Name" if quiet else None,
        no_header=noheading,
        headers=_LS_HEADERS,
    )


def inspect(
    ctx: typer.Context,
    names: Optional[List[str]] = typer.Argument(None, help="Volumes to inspect"),
    all_: bool = typer.Option(False, "-a", "--all", help="Inspect every volume"),
    fmt: Optional[str] = typer.Option(None, "-f", "--format", help="Go template or json"),
) -> None:
    """Display detailed information on one or more volumes."""
    import json

    from podpy.cli import print_error
    from podpy.engine import volumes
    from podpy.errors import PodpyError

    eng = engine(ctx)
    if all_:
        targets = [v["Name"] for v in volumes.list_volumes(eng)]
    elif names:
        targets = list(names)
    else:
        raise PodpyError("provide one or more volume names or use --all")
    found, code = [], 0
    for name in targets:
        try:
            found.append(volumes.inspect(eng, name))
        except PodpyError as err:
            print_error(err)
            code = err.exit_code
    if fmt and fmt.strip() != "json":
        from podpy.cli._output import emit

        for item in found:
            emit(item, fmt, lambda _d: "")
    else:
        sys.stdout.write(json.dumps(found, indent=4) + "\n")
    if code:
        raise typer.Exit(code)


def rm(
    ctx: typer.Context,
    names: Optional[List[str]] = typer.Argument(None, help="Volumes to remove"),
    force: bool = typer.Option(False, "-f", "--force", help="Also remove containers using it"),
    all_: bool = typer.Option(False, "-a", "--all", help="Remove every volume"),
) -> None:
    """Remove one or more volumes."""
    from podpy.cli import print_error
    from podpy.engine import volumes
    from podpy.errors import NoSuchObject, PodpyError

    eng = engine(ctx)
    if all_ and names:
        raise PodpyError("when using the --all flag, you may not pass any volume names")
    if not all_ and not names:
        raise PodpyError("choose either one or more volumes or all")
    targets = [v["Name"] for v in volumes.list_volumes(eng)] if all_ else list(names or [])
    # As podman 4.3: missing volumes are reported first (exit 1; --force ignores them), then
    # the removals (in use: exit 2); the last error decides the exit code.
    code = 0
    found = []
    for name in targets:
        try:
            volumes.lookup(eng, name)
        except NoSuchObject as err:
            if not force:
                print_error(err)
                code = 1
            continue
        found.append(name)
    for name in found:
        try:
            typer.echo(volumes.remove(eng, name, force=force))
        except PodpyError as err:
            print_error(err)
            code = 2 if "volume is being used" in err.message else err.exit_code
    if code:
        raise typer.Exit(code)


def prune(
    ctx: typer.Context,
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation"),
    filters: List[str] = typer.Option([], "--filter", help="label=, name=..."),
) -> None:
    """Remove all volumes not used by any container."""
    from podpy.engine import volumes

    if not force:
        sys.stdout.write(
            "WARNING! This will remove all volumes not used by at least one container. "
            "The following volumes will be removed:\n"
        )
        eng = engine(ctx)
        for vol in volumes.list_volumes(eng, filters):
            if not volumes.users(eng, vol["Name"]):
                sys.stdout.write(vol["Name"] + "\n")
        sys.stdout.write("Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return
    for name in volumes.prune(engine(ctx), filters):
        typer.echo(name)


def exists(ctx: typer.Context, name: str = typer.Argument(..., help="Volume name")) -> None:
    """Exit 0 if the volume exists, 1 if it does not."""
    from podpy.engine import volumes

    raise typer.Exit(0 if volumes.exists(engine(ctx), name) else 1)


def register(app: typer.Typer) -> None:
    group = _groups.volume
    group.command("create")(create)
    group.command("ls")(ls)
    group.command("list", hidden=True)(ls)
    group.command("inspect")(inspect)
    group.command("rm")(rm)
    group.command("remove", hidden=True)(rm)
    group.command("prune")(prune)
    group.command("exists")(exists)
