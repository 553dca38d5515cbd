"""`podpy oci create|start|state|kill|delete|list|run`: the built-in runtime's runc-compatible CLI."""

from __future__ import annotations

from typing import Optional

import typer

from podpy.cli import _groups

_ROOT_KEY = "oci_root"


def _oci_options(
    ctx: typer.Context,
    root: Optional[str] = typer.Option(
        None,
        "--root",
        help="State directory (default $XDG_RUNTIME_DIR/podpy-oci or /run/podpy-oci)",
    ),
    log: Optional[str] = typer.Option(None, "--log", help="Accepted for runc compatibility"),
    log_format: Optional[str] = typer.Option(
        None, "--log-format", help="Accepted for runc compatibility"
    ),
    systemd_cgroup: bool = typer.Option(
        False, "--systemd-cgroup", help="Accepted for runc compatibility"
    ),
) -> None:
    ctx.meta[_ROOT_KEY] = root


def _runtime(ctx: typer.Context, enter_userns: bool = False):
    """The built-in runtime for this invocation; rootless callers first become namespace root."""
    from podpy.runtime.builtin import BuiltinRuntime, default_root

    root = ctx.meta.get(_ROOT_KEY) or default_root()
    if enter_userns:
        from podpy.rootless import become_root_in_userns, needs_userns

        if needs_userns():
            import os

            os.makedirs(root, mode=0o700, exist_ok=True)
            become_root_in_userns()
    return BuiltinRuntime(root)


def create(
    ctx: typer.Context,
    container_id: str = typer.Argument(..., metavar="ID"),
    bundle: str = typer.Option(".", "--bundle", "-b", help="Path to the OCI bundle"),
    pid_file: Optional[str] = typer.Option(None, "--pid-file", help="Write the init pid here"),
    console_socket: Optional[str] = typer.Option(
        None, "--console-socket", help="AF_UNIX socket that receives the pty master"
    ),
    preserve_fds: int = typer.Option(0, "--preserve-fds", help="Pass N extra fds (3..) through"),
    no_pivot: bool = typer.Option(False, "--no-pivot", help="Accepted for runc compatibility"),
) -> None:
    """Create a container from a bundle; its process waits for `start`."""
    runtime = _runtime(ctx, enter_userns=True)
    runtime.create(
        bundle,
        container_id,
        pid_file=pid_file,
        console_socket=console_socket,
        preserve_fds=preserve_fds,
    )


def start(ctx: typer.Context, container_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Start the process of a created container."""
    _runtime(ctx).start(container_id)


def state(ctx: typer.Context, container_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Print the OCI state JSON of a container."""
    import json

    typer.echo(json.dumps(_runtime(ctx).state(container_id), indent=2))


def kill(
    ctx: typer.Context,
    container_id: str = typer.Argument(..., metavar="ID"),
    signal: str = typer.Argument("TERM", metavar="[SIGNAL]"),
    all_processes: bool = typer.Option(False, "--all", "-a", help="Signal every process"),
) -> None:
    """Send a signal (default TERM) to a container's init process."""
    _runtime(ctx).kill(container_id, signal, all_processes=all_processes)


def delete(
    ctx: typer.Context,
    container_id: str = typer.Argument(..., metavar="ID"),
    force: bool = typer.Option(False, "--force", "-f", help="Kill the container first"),
) -> None:
    """Delete a stopped container's runtime state (the bundle is left alone)."""
    _runtime(ctx).delete(container_id, force=force)


def pause(ctx: typer.Context, container_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Freeze every process of a running container (needs its cgroup)."""
    _runtime(ctx).pause(container_id, True)


def resume(ctx: typer.Context, container_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Thaw a paused container."""
    _runtime(ctx).pause(container_id, False)


def list_containers(
    ctx: typer.Context,
    fmt: str = typer.Option("table", "--format", "-f", help="table or json"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print IDs"),
) -> None:
    """List containers under the state root."""
    import json

    items = _runtime(ctx).list()
    if quiet:
        for item in items:
            typer.echo(item["id"])
        return
    if fmt == "json":
        typer.echo(json.dumps(items))
        return
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    for item in items:
        rows.append(
            (
                item["id"],
                str(item["pid"]),
                item["status"],
                item["bundle"],
                item["created"],
                item.get("owner") or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def run(
    ctx: typer.Context,
    container_id: str = typer.Argument(..., metavar="ID"),
    bundle: str = typer.Option(".", "--bundle", "-b", help="Path to the OCI bundle"),
    pid_file: Optional[str] = typer.Option(None, "--pid-file", help="Write the init pid here"),
    console_socket: Optional[str] = typer.Option(None, "--console-socket"),
    detach: bool = typer.Option(False, "--detach", "-d", help="Do not wait for the exit"),
) -> None:
    """Create and start a container, wait for it, delete it; exits with its exit code."""
    runtime = _runtime(ctx, enter_userns=True)
    code = runtime.run(
        bundle, container_id, console_socket=console_socket, detach=detach, pid_file=pid_file
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    group = _groups.oci
    group.callback()(_oci_options)
    group.command("create")(create)
    group.command("start")(start)
    group.command("state")(state)
    group.command("kill")(kill)
    group.command("delete")(delete)
    group.command("list")(list_containers)
    group.command("pause")(pause)
    group.command("resume")(resume)
    group.command("run")(run)
