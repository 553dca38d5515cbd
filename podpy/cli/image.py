"""Image commands: pull, images/image ls, rmi/image rm, tag, untag, image inspect/exists/history/prune."""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

import typer

from podpy.cli import _groups, engine

_IMAGES_FORMAT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Created}}\t{{.Size}}"
_IMAGES_DIGEST_FORMAT = (
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.Created}}\t{{.Size}}"
)
_HISTORY_FORMAT = "table {{.ID}}\t{{.Created}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY"}
_HISTORY_HEADERS = {"CreatedBy": "CREATED BY"}


def _parse_bool(value: Optional[str], flag: str) -> Optional[bool]:
    from podpy.cliopts import parse_bool  # one definition, shared with run/create's fast path

    return parse_bool(value, flag)


# --- progress -------------------------------------------------------------------------------


class PlainProgress:
    """podman's non-terminal output: one line per step and per finished blob, on stderr."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._kinds: Dict[str, str] = {}

    def _line(self, text: str) -> None:
        with self._lock:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def message(self, text: str) -> None:
        self._line(text)

    def blob_start(self, digest: str, size: int, kind: str) -> None:
        self._kinds[digest] = kind

    def blob_advance(self, digest: str, nbytes: int) -> None:
        pass

    def blob_done(self, digest: str, skipped: bool = False) -> None:
        kind = self._kinds.get(digest, "blob")
        self._line(f"Copying {kind} {digest} {'skipped: already exists' if skipped else 'done'}")

    def close(self) -> None:
        pass


class RichProgress(PlainProgress):
    """Progress bars on a terminal (rich is imported only here, only on a TTY)."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("Copying {task.fields[kind]} {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self._tasks: Dict[str, Any] = {}
        self._progress.start()

    def message(self, text: str) -> None:
        self._progress.console.print(text, highlight=False, markup=False)

    def blob_start(self, digest: str, size: int, kind: str) -> None:
        with self._lock:
            if digest not in self._tasks:
                short = digest.split(":", 1)[-1][:12]
                self._tasks[digest] = self._progress.add_task(short, total=size or None, kind=kind)

    def blob_advance(self, digest: str, nbytes: int) -> None:
        task = self._tasks.get(digest)
        if task is not None:
            self._progress.advance(task, nbytes)

    def blob_done(self, digest: str, skipped: bool = False) -> None:
        task = self._tasks.get(digest)
        if task is not None:
            total = self._progress.tasks[task].total if hasattr(self._progress, "tasks") else None
            if skipped:
                self._progress.update(
                    task, description=f"{digest.split(':', 1)[-1][:12]} skipped: already exists"
                )
            self._progress.update(task, completed=total or 0)

    def close(self) -> None:
        self._progress.stop()


class QuietProgress(PlainProgress):
    def message(self, text: str) -> None:
        pass

    def blob_done(self, digest: str, skipped: bool = False) -> None:
        pass


def _progress(quiet: bool) -> PlainProgress:
    if quiet:
        return QuietProgress()
    if sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()


# --- pull -----------------------------------------------------------------------------------


def pull(
    ctx: typer.Context,
    images: List[str] = typer.Argument(..., help="Image references to pull"),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Suppress output information when pulling images"
    ),
    tls_verify: Optional[str] = typer.Option(
        None,
        "--tls-verify",
        help="Require HTTPS and verify certificates (--tls-verify=false for a plain-HTTP registry)",
    ),
    creds: Optional[str] = typer.Option(
        None, "--creds", help="Credentials (USERNAME:PASSWORD) for the registry"
    ),
    platform: Optional[str] = typer.Option(None, "--platform", help="Pull for OS/ARCH[/VARIANT]"),
    arch: Optional[str] = typer.Option(
        None, "--arch", help="Use ARCH instead of the host's architecture"
    ),
    os_name: Optional[str] = typer.Option(None, "--os", help="Use OS instead of the host's OS"),
    variant: Optional[str] = typer.Option(
        None, "--variant", help="Use VARIANT of the architecture"
    ),
    cert_dir: Optional[str] = typer.Option(
        None, "--cert-dir", help="Directory with certificates (*.crt) for the registry"
    ),
    max_parallel: int = typer.Option(
        0, "--max-parallel", hidden=True, help="Layers downloaded at once"
    ),
    authfile: Optional[str] = typer.Option(
        None, "--authfile", help="Path of the authentication file (default: podman's auth.json)"
    ),
) -> None:
    """Pull an image from a registry."""
    from podpy.engine import images as image_engine
    from podpy.image.auth import credential_lookup
    from podpy.image.manifest import parse_platform
    from podpy.image.pull import PullOptions
    from podpy.image.registry import static_credentials

    eng = engine(ctx)
    options = PullOptions(
        platform=parse_platform(platform, os_name, arch, variant),
        tls_verify=_parse_bool(tls_verify, "--tls-verify"),
        credentials=static_credentials(creds) or credential_lookup(None, authfile, eng.options.env),
        parallel=max_parallel,
        cert_dir=cert_dir,
    )
    for image in images:
        if image.startswith("docker://"):  # podman's explicit registry transport
            image = image[len("docker://") :]
        progress = _progress(quiet)
        try:
            result = image_engine.pull(eng, image, options, progress)
        finally:
            progress.close()
        typer.echo(result.image_id)


# --- images ---------------------------------------------------------------------------------


def images(
    ctx: typer.Context,
    repository: Optional[str] = typer.Argument(None, help="Show only images of this repository"),
    all_images: bool = typer.Option(
        False, "--all", "-a", help="Show all images (default hides intermediate images)"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Display only image IDs"),
    digests: bool = typer.Option(False, "--digests", help="Show digests"),
    filters: List[str] = typer.Option(
        [], "--filter", "-f", help="Filter output based on conditions provided"
    ),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="Change the output format to JSON or a Go template"
    ),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate output"),
    noheading: bool = typer.Option(False, "--noheading", "-n", help="Do not print column headings"),
    sort: str = typer.Option(
        "created", "--sort", help="Sort by created, id, repository, size or tag"
    ),
) -> None:
    """List images in local storage."""
    from podpy.cli._output import emit_list
    from podpy.engine import images as image_engine
    from podpy.errors import PodpyError

    eng = engine(ctx)
    all_filters = list(filters)
    if repository:
        all_filters.append(f"reference={repository}")
    found = image_engine.list_images(eng, all_images, all_filters)
    if fmt is not None and fmt.strip() == "json":
        emit_list([image_engine.image_json(eng, i) for i in found], "json", "json")
        return
    if quiet:
        seen = []
        for image in found:
            shown = ("sha256:" + image.id) if no_trunc else image.id[:12]
            if shown not in seen:
                seen.append(shown)
        sys.stdout.write("".join(s + "\n" for s in seen))
        return
    patterns = image_engine.reference_patterns(all_filters)
    rows = image_engine.image_rows(eng, found, no_trunc, patterns)
    keys = {
        "created": None,
        "id": lambda r: r.Id,
        "repository": lambda r: r.Repository,
        "size": lambda r: -_row_size(eng, r),
        "tag": lambda r: r.Tag,
    }
    if sort not in keys:
        raise PodpyError(f'invalid sort "{sort}"', hint="use created, id, repository, size or tag")
    if keys[sort] is not None:
        rows.sort(key=keys[sort])  # type: ignore[arg-type]
    default = _IMAGES_DIGEST_FORMAT if digests else _IMAGES_FORMAT
    emit_list(rows, fmt, default, no_header=noheading, headers=_HEADERS)


def _row_size(eng: Any, row: Any) -> int:
    from podpy.engine.images import store

    image = store(eng).get(row.Id)
    return image.size if image else 0


# --- rmi / tag / untag ----------------------------------------------------------------------


def rmi(
    ctx: typer.Context,
    images: List[str] = typer.Argument(None, help="Images to remove"),
    force: bool = typer.Option(
        False, "--force", "-f", help="Force removal of the image and any containers using it"
    ),
    all_images: bool = typer.Option(False, "--all", "-a", help="Remove all images"),
    ignore: bool = typer.Option(
        False, "--ignore", "-i", help="Ignore errors if a specified image does not exist"
    ),
) -> None:
    """Remove one or more images from local storage."""
    from podpy.cli import print_error
    from podpy.engine import images as image_engine
    from podpy.errors import PodpyError

    if not images and not all_images:
        raise PodpyError(
            "image name or ID must be specified",
            hint="give the images to remove, or --all to remove every image",
        )
    if images and all_images:
        raise PodpyError("when using the --all switch, you may not pass any images names or IDs")
    # As podman (and docker): --force also ignores images that do not exist.
    report = image_engine.remove(engine(ctx), images or [], force, all_images, ignore or force)
    for name in report.untagged:
        typer.echo(f"Untagged: {name}")
    for image_id in report.deleted:
        typer.echo(f"Deleted: {image_id}")
    for err in report.errors:
        print_error(err)
    if report.errors:
        raise typer.Exit(report.exit_code)


def tag(
    ctx: typer.Context,
    image: str = typer.Argument(..., help="Source image"),
    targets: List[str] = typer.Argument(..., help="New names (NAME[:TAG])"),
) -> None:
    """Add an additional name to a local image."""
    from podpy.engine import images as image_engine

    image_engine.tag(engine(ctx), image, targets)


def untag(
    ctx: typer.Context,
    image: str = typer.Argument(..., help="Image"),
    names: List[str] = typer.Argument(None, help="Names to remove (all when none given)"),
) -> None:
    """Remove a name from a local image."""
    from podpy.engine import images as image_engine

    image_engine.untag(engine(ctx), image, names or [])


# --- inspect / exists / history / prune --------------------------------------------------------


def inspect(
    ctx: typer.Context,
    images: List[str] = typer.Argument(..., help="Images to inspect"),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="Format the output using a Go template or json"
    ),
    raw: bool = typer.Option(False, "--raw", help="docker://: print the manifest as served"),
    tls_verify: Optional[str] = typer.Option(
        None, "--tls-verify", help="docker://: require HTTPS and verify certificates"
    ),
    creds: Optional[str] = typer.Option(None, "--creds", help="docker://: USERNAME:PASSWORD"),
    authfile: Optional[str] = typer.Option(None, "--authfile", help="docker://: auth file"),
    cert_dir: Optional[str] = typer.Option(None, "--cert-dir", help="docker://: CA directory"),
) -> None:
    """Display the configuration of an image (docker://REF: of a remote one, without pulling)."""
    import json

    from podpy.cli import print_error
    from podpy.cli._output import emit
    from podpy.engine import images as image_engine
    from podpy.errors import PodpyError

    eng = engine(ctx)
    results = []
    errors: List[PodpyError] = []
    for image in images:
        if image.startswith("docker://"):
            from podpy.engine import image_transfer

            remote_options = image_transfer.PushOptions(
                _parse_bool(tls_verify, "--tls-verify"), creds, authfile, cert_dir
            )
            remote = image_transfer.inspect_remote(eng, image, remote_options, raw=raw)
            if raw:
                sys.stdout.write(remote.decode("utf-8", "replace") + "\n")
            else:
                results.append(remote)
            continue
        try:
            results.append(image_engine.inspect(eng, image))
        except PodpyError as err:
            errors.append(err)
    if raw and not errors and not results:
        return
    if fmt and fmt.strip() != "json":
        for data in results:
            emit(data, fmt, lambda d: json.dumps(d, indent=4))
    else:
        sys.stdout.write(json.dumps(results, indent=4, ensure_ascii=False) + "\n")
    for err in errors:
        print_error(err)
    if errors:
        raise typer.Exit(125)


def exists(ctx: typer.Context, image: str = typer.Argument(..., help="Image")) -> None:
    """Check if an image exists in local storage (exit 0 if it does, 1 if not)."""
    from podpy.engine import images as image_engine

    if not image_engine.exists(engine(ctx), image):
        raise typer.Exit(1)


def history(
    ctx: typer.Context,
    image: str = typer.Argument(..., help="Image"),
    human: bool = typer.Option(
        True, "--human", "-H", help="Display sizes and dates in human readable format"
    ),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate the output"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Display the numeric IDs only"),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="Change the output to JSON or a Go template"
    ),
) -> None:
    """Show the history of an image."""
    from podpy.cli._output import emit_list
    from podpy.engine import images as image_engine

    rows = image_engine.history(engine(ctx), image, no_trunc, human)
    if quiet:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return
    if fmt is not None and fmt.strip() == "json":
        keys = ("id", "created", "createdBy", "size", "comment", "tags")
        emit_list([{k: r[k] for k in keys} for r in rows], "json", "json")
        return
    emit_list(rows, fmt, _HISTORY_FORMAT, headers=_HISTORY_HEADERS)


def prune(
    ctx: typer.Context,
    all_images: bool = typer.Option(
        False, "--all", "-a", help="Remove all images not in use by containers"
    ),
    force: bool = typer.Option(False, "--force", "-f", help="Do not prompt for confirmation"),
    filters: List[str] = typer.Option(
        [], "--filter", help="Provide filter values (e.g. label=key)"
    ),
) -> None:
    """Remove unused images."""
    from podpy.engine import images as image_engine

    if not force:
        what = "all images not used by a container" if all_images else "all dangling images"
        sys.stdout.write(
            f"WARNING! This command removes {what}.\nAre you sure you want to continue? [y/N] "
        )
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return
    for image_id in image_engine.prune(engine(ctx), all_images, filters):
        typer.echo(image_id)


def register(app: typer.Typer) -> None:
    app.command("pull")(pull)
    app.command("images")(images)
    app.command("rmi")(rmi)
    app.command("tag")(tag)
    app.command("untag")(untag)
    app.command("history")(history)
    group = _groups.image
    group.command("pull")(pull)
    group.command("ls")(images)
    group.command("list")(images)
    group.command("rm")(rmi)
    group.command("tag")(tag)
    group.command("untag")(untag)
    group.command("inspect")(inspect)
    group.command("exists")(exists)
    group.command("history")(history)
    group.command("prune")(prune)
