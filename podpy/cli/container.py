"""Container commands: run, create, start, stop, kill, rm, ps, wait, logs, inspect, cleanup."""

from __future__ import annotations

import sys
import time
from typing import Any, Dict, List, Optional

import typer

from podpy.cli import _groups, engine

# Options after IMAGE belong to the container's command (`podpy run IMG ls -l`).
_RUN_CONTEXT = {"allow_interspersed_args": False, "help_option_names": ["--help"]}
_PS_FORMAT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
_PS_HEADERS = {"ID": "CONTAINER ID", "CreatedHuman": "CREATED"}


def _typer_command(name: str, table: Any, doc: str) -> Any:
    """A typer command for `table` (podpy.cliopts): its signature, annotations and defaults
    are built from the same table the fast path parses with, so the two never disagree; the
    body is podpy.ctrverbs.<name>."""
    from podpy import ctrverbs
    from podpy.cli._tablecmd import typer_command

    def body(ctx: typer.Context, options: Dict[str, Any]) -> int:
        return getattr(ctrverbs, name)(engine(ctx), options)

    return typer_command(name, table, doc, body)


def _build_lifecycle_commands() -> Dict[str, Any]:
    from podpy import cliopts

    return {
        "run": _typer_command("run", cliopts.RUN, "Run a command in a new container."),
        "create": _typer_command(
            "create", cliopts.CREATE, "Create a container without starting it; prints its ID."
        ),
        "start": _typer_command("start", cliopts.START, "Start one or more containers."),
        "stop": _typer_command("stop", cliopts.STOP, "Stop one or more containers."),
        "kill": _typer_command("kill", cliopts.KILL, "Send a signal to one or more containers."),
        "rm": _typer_command("rm", cliopts.RM, "Remove one or more containers."),
    }


_LIFECYCLE = _build_lifecycle_commands()
run = _LIFECYCLE["run"]
create = _LIFECYCLE["create"]
start = _LIFECYCLE["start"]
stop = _LIFECYCLE["stop"]
kill = _LIFECYCLE["kill"]
rm = _LIFECYCLE["rm"]


def _for_each(ctx: typer.Context, refs: List[str], action: Any) -> None:
    """Apply action to every target, print each result, report every error, exit non-zero
    if any failed (podman's multi-target behaviour)."""
    from podpy.ctrverbs import for_each

    code = for_each(refs, action)
    if code:
        raise typer.Exit(code)


def wait(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(..., metavar="CONTAINER...", help="Containers"),
    interval: str = typer.Option("250ms", "-i", "--interval", help="Polling interval"),
) -> None:
    """Wait for containers to exit and print their exit codes."""
    from podpy.engine import containers

    eng = engine(ctx)
    seconds = _duration(interval)
    from podpy.ctrverbs import resolve_all

    resolve_all(eng, containers_)  # podman: an unknown name fails before waiting on any
    _for_each(ctx, containers_, lambda ref: str(containers.wait(eng, ref, seconds)))


def _duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * units[suffix]
    if text.replace(".", "", 1).isdigit():
        return float(text) / 1000.0  # podman: a bare number is milliseconds
    from podpy.errors import PodpyError

    raise PodpyError(f"invalid duration {text!r}", hint="use e.g. 250ms, 2s, 1m")


def _parse_time(text: Optional[str]) -> Optional[float]:
    """--since/--until: RFC 3339, a Unix timestamp, or a duration ago (10m)."""
    if text is None:
        return None
    if text.replace(".", "", 1).isdigit():
        return float(text)
    try:
        return time.time() - _duration(text)
    except Exception:
        pass
    from podpy.monitor.logfile import parse_rfc3339

    for candidate in (text, text + "T00:00:00Z"):
        try:
            return parse_rfc3339(
                candidate if candidate.endswith("Z") or "+" in candidate[10:] else candidate + "Z"
            )
        except ValueError:
            continue
    from podpy.errors import PodpyError

    raise PodpyError(f"invalid time {text!r}", hint="use RFC 3339, a Unix time, or a duration")


def logs(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(..., metavar="CONTAINER...", help="Containers"),
    follow: bool = typer.Option(False, "-f", "--follow", help="Follow log output"),
    since: Optional[str] = typer.Option(None, "--since", help="Show logs since TIMESTAMP"),
    until: Optional[str] = typer.Option(None, "--until", help="Show logs until TIMESTAMP"),
    tail: int = typer.Option(-1, "-n", "--tail", help="Number of lines from the end"),
    timestamps: bool = typer.Option(False, "-t", "--timestamps", help="Show timestamps"),
    names: bool = typer.Option(False, "--names", help="Prefix lines with the container name"),
) -> None:
    """Fetch the logs of one or more containers (stdout and stderr kept apart)."""
    from podpy.engine import containers

    eng = engine(ctx)
    stdout = sys.stdout.buffer
    stderr = sys.stderr.buffer

    def write(rec: Any) -> None:
        out = stdout if rec.stream == "stdout" else stderr
        prefix = (rec.raw_time.encode() + b" ") if timestamps else b""
        out.write(prefix + rec.text + (b"" if rec.partial else b"\n"))
        out.flush()

    containers.logs(
        eng,
        containers_,
        follow=follow,
        since=_parse_time(since),
        until=_parse_time(until),
        tail=tail,
        write=write,
    )


def ps(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "-a", "--all", help="Show all containers"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only IDs"),
    latest: bool = typer.Option(False, "-l", "--latest", help="Only the latest container"),
    last: int = typer.Option(-1, "-n", "--last", help="Print the n last created containers"),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate output"),
    filters: List[str] = typer.Option([], "-f", "--filter", help="Filter output"),
    fmt: Optional[str] = typer.Option(None, "--format", help="Go template or json"),
    noheading: bool = typer.Option(False, "--noheading", help="Do not print headers"),
    sort: str = typer.Option(
        "created", "--sort", help="Sort by command, created, id, image, names, runningfor, size, status"
    ),
) -> None:
    """List containers."""
    from podpy.psview import PsOptions, print_ps

    print_ps(
        engine(ctx),
        PsOptions(
            all=all_,
            quiet=quiet,
            latest=latest,
            last=last,
            no_trunc=no_trunc,
            filters=list(filters),
            format=fmt,
            noheading=noheading,
            sort=sort,
        ),
    )


def inspect(
    ctx: typer.Context,
    refs: List[str] = typer.Argument(None, metavar="NAME...", help="Containers or images"),
    fmt: Optional[str] = typer.Option(None, "-f", "--format", help="Go template or json"),
    kind: str = typer.Option("all", "-t", "--type", help="container, image or all"),
    latest: bool = typer.Option(False, "-l", "--latest", help="The latest container"),
) -> None:
    """Display the configuration of containers (or images) as JSON."""
    import json

    from podpy.cli._output import emit
    from podpy.engine import containers
    from podpy.errors import NoSuchObject, PodpyError

    eng = engine(ctx)
    if ctx.parent is not None and ctx.parent.info_name == "container":
        kind = "container"  # `container inspect` never answers with an image
    refs = list(refs or [])
    if latest:
        if refs:
            raise PodpyError("--latest and containers cannot be used together")
        from podpy.cli.container_ops import _latest

        refs, kind = [_latest(eng)], "container"
    elif not refs:
        raise PodpyError("no names or ids specified")
    results = []
    failed: Optional[PodpyError] = None
    for ref in refs:
        try:
            if kind in ("all", "container"):
                try:
                    results.append(containers.inspect(eng, ref))
                    continue
                except NoSuchObject:
                    if kind == "container":
                        raise
            from podpy.engine import images

            results.append(images.inspect(eng, ref))
        except NoSuchObject:
            # podman's wording per --type
            what = {"container": f"no such container {ref}", "image": f"{ref}: image not known"}
            failed = NoSuchObject("inspecting object: " + what.get(kind, f'no such object: "{ref}"'))
            from podpy.cli import print_error

            print_error(failed)
    if fmt and fmt != "json":
        for item in results:
            emit(item, fmt, lambda d: json.dumps(d, indent=4))
    else:
        sys.stdout.write(json.dumps(results, indent=4) + "\n")
    if failed:
        raise typer.Exit(125)


def container_exists(ctx: typer.Context, ref: str = typer.Argument(..., help="Container")) -> None:
    """Exit 0 if the container exists, 1 if not."""
    eng = engine(ctx)
    raise typer.Exit(0 if eng.db.find_id("containers", ref) else 1)


def cleanup(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Container"),
    rm_: bool = typer.Option(False, "--rm", help="Remove the container"),
) -> None:
    """Clean up after a container exits (run by its monitor)."""
    from podpy.engine import containers

    containers.cleanup(engine(ctx), ref, rm_)


def register(app: typer.Typer) -> None:
    group = _groups.container
    for name, fn, top in (
        ("run", run, True),
        ("create", create, True),
        ("start", start, True),
        ("stop", stop, True),
        ("kill", kill, True),
        ("rm", rm, True),
        ("wait", wait, True),
        ("logs", logs, True),
        ("ps", ps, True),
        ("inspect", inspect, False),
    ):
        settings = _RUN_CONTEXT if name in ("run", "create") else None
        if top:
            app.command(name, context_settings=settings)(fn)
        group.command(name, context_settings=settings)(fn)
    group.command("ls", hidden=True)(ps)
    group.command("list", hidden=True)(ps)
    group.command("remove", hidden=True)(rm)
    group.command("exists")(container_exists)
    group.command("cleanup", hidden=True)(cleanup)
    app.command("inspect")(inspect)
