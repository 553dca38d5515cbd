"""`podpy cp|diff|commit|export` (top level and under `podpy container`): parse, call
podpy.engine.container_fs, print."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from podpy.cli import _groups, engine

_CP_CONTEXT = {"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}


def cp(
    ctx: typer.Context,
    args: List[str] = typer.Argument(
        ..., metavar="[-a|--archive[=false]] SRC DEST", help="CONTAINER:PATH, a host path, or -"
    ),
) -> None:
    """Copy files/folders between a container and the local filesystem.

    `-` as SRC reads a tar stream from stdin, as DEST writes one to stdout. With --archive
    (the default) copied-in files go to the container's user; --archive=false keeps owners.
    """
    from podpy.engine import container_fs
    from podpy.errors import PodpyError

    # Parsed here: click cannot take both `-a SRC DEST` and podman's `--archive=false`.
    archive, paths = True, []
    for arg in args:
        if arg in ("-a", "--archive"):
            archive = True
        elif arg.startswith("--archive="):
            value = arg.split("=", 1)[1].lower()
            if value not in ("true", "false", "1", "0"):
                raise PodpyError(
                    f'invalid argument "{value}" for "--archive"', hint="use true or false"
                )
            archive = value in ("true", "1")
        elif arg.startswith("-") and arg != "-" and not paths:
            raise PodpyError(f"unknown flag: {arg}", hint="see podpy cp --help")
        else:
            paths.append(arg)
    if len(paths) != 2:
        raise PodpyError(
            f"accepts 2 arg(s), received {len(paths)}", hint="podpy cp [--archive=false] SRC DEST"
        )
    container_fs.copy(engine(ctx), paths[0], paths[1], archive=archive)


def diff(
    ctx: typer.Context,
    container: str = typer.Argument(..., help="Container name or ID"),
    fmt: Optional[str] = typer.Option(None, "--format", help="json, or the default text"),
) -> None:
    """Inspect changes to a container's file system (A added, C changed, D deleted)."""
    import json

    from podpy.engine import container_fs
    from podpy.errors import PodpyError

    changes = container_fs.diff(engine(ctx), container)
    if fmt is None or not fmt.strip():
        sys.stdout.write("".join(f"{kind} {path}\n" for kind, path in changes))
        return
    if fmt.strip() != "json":
        raise PodpyError(f"unsupported --format {fmt!r}", hint="use --format json")
    groups = {"changed": "C", "added": "A", "deleted": "D"}
    payload = {
        key: [path for kind, path in changes if kind == letter]
        for key, letter in groups.items()
        if any(kind == letter for kind, _ in changes)
    }
    sys.stdout.write(json.dumps(payload, indent=4) + "\n")


def commit(
    ctx: typer.Context,
    container: str = typer.Argument(..., help="Container name or ID"),
    image: Optional[str] = typer.Argument(None, help="Name of the new image [NAME[:TAG]]"),
    changes: List[str] = typer.Option(
        [], "-c", "--change", help="Apply CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, ... to it"
    ),
    message: str = typer.Option("", "-m", "--message", help="Commit message"),
    author: str = typer.Option("", "-a", "--author", help="Author of the image"),
    pause: bool = typer.Option(False, "-p", "--pause", help="Pause the container meanwhile"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image ID"),
    fmt: str = typer.Option("oci", "-f", "--format", help="Image format (oci)"),
) -> None:
    """Create a new image from a container's changes."""
    from podpy.engine import container_fs
    from podpy.errors import PodpyError

    if fmt not in ("oci", "docker"):
        raise PodpyError(f"unrecognized image format {fmt!r}", hint="use oci or docker")
    options = container_fs.CommitOptions(
        changes=list(changes), message=message, author=author, pause=pause
    )
    image_id = container_fs.commit(engine(ctx), container, image, options)
    typer.echo(image_id)


def export(
    ctx: typer.Context,
    container: str = typer.Argument(..., help="Container name or ID"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write to FILE"),
) -> None:
    """Export a container's filesystem contents as a tar archive."""
    import os

    from podpy.engine import container_fs
    from podpy.errors import PodpyError

    eng = engine(ctx)
    if output is None:
        if sys.stdout.isatty():
            raise PodpyError(
                "refusing to export to terminal. Use -o flag or redirect",
                hint="podpy export -o FILE CTR, or podpy export CTR > FILE",
            )
        container_fs.export(eng, container, sys.stdout.buffer)
        return
    from podpy.atomic import temp_sibling

    final = os.path.abspath(output)
    if not os.path.isdir(os.path.dirname(final)):
        raise PodpyError(
            f"creating {output}: no such directory", hint="the output's directory must exist"
        )
    tmp = temp_sibling(final)
    try:
        with open(tmp, "wb") as out:
            container_fs.export(eng, container, out)
        os.replace(tmp, final)  # nothing half-written under the final name
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def register(app: typer.Typer) -> None:
    for name, fn in (("cp", cp), ("diff", diff), ("commit", commit), ("export", export)):
        settings = _CP_CONTEXT if name == "cp" else None
        app.command(name, context_settings=settings)(fn)
        _groups.container.command(name, context_settings=settings)(fn)
