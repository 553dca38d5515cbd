"""`podpy cp|diff|commit|export` (top level and under `podpy container`): parse, call
podpy.engine.container_fs, print."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from podpy.cli import _groups, engine


def cp(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="CONTAINER:PATH, a host path, or - (tar on stdin)"),
    dest: str = typer.Argument(..., help="CONTAINER:PATH, a host path, or - (tar on stdout)"),
    archive: str = typer.Option(
        "true",
        "-a",
        "--archive",
        flag_value="true",
        is_flag=False,
        help="Give copied files to the container's user (--archive=false keeps their owners)",
    ),
) -> None:
    """Copy files/folders between a container and the local filesystem."""
    from podpy.engine import container_fs
    from podpy.errors import PodpyError

    if archive.lower() not in ("true", "false", "1", "0"):
        raise PodpyError(f'invalid argument "{archive}" for "--archive"', hint="use true or false")
    container_fs.copy(engine(ctx), source, dest, archive=archive.lower() in ("true", "1"))


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
        app.command(name)(fn)
        _groups.container.command(name)(fn)
