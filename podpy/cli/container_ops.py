"""Container commands beyond the lifecycle core: exec, attach, restart, pause, unpause, top, rename,
port, stats, events and container prune (top-level and under `podpy container`, like podman)."""

from __future__ import annotations

import sys
from typing import Any, List, Optional

import typer

from podpy.cli import _groups, engine

# Options after CONTAINER belong to the command (`podpy exec CTR ls -l`).
_EXEC_CONTEXT = {"allow_interspersed_args": False, "help_option_names": ["--help"]}
_STATS_FORMAT = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
    "{{.BlockIO}}\t{{.PIDs}}\t{{.CPU}}\t{{.AVGCPU}}"
)
_STATS_HEADERS = {
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET IO",
    "BlockIO": "BLOCK IO",
    "PIDs": "PIDS",
    "CPU": "CPU TIME",
    "AVGCPU": "AVG CPU %",
}


def _for_each(refs: List[str], action: Any) -> None:
    """Run action per target, print each result, report every error, exit non-zero on any."""
    from podpy.cli import print_error
    from podpy.errors import PodpyError

    code = 0
    for ref in refs:
        try:
            out = action(ref)
        except PodpyError as err:
            print_error(err)
            code = err.exit_code
            continue
        if out is not None:
            typer.echo(out)
    if code:
        raise typer.Exit(code)


def _need_targets(refs: Optional[List[str]], all_: bool, latest: bool = False) -> None:
    from podpy.errors import PodpyError

    if not refs and not all_ and not latest:
        raise PodpyError("you must provide at least one name or id")
    if refs and (all_ or latest):
        raise PodpyError("--all, --latest and containers cannot be used together")


def _latest(eng: Any) -> str:
    from podpy.engine import containers
    from podpy.errors import NoSuchObject

    rows = containers.list_containers(eng)
    if not rows:
        raise NoSuchObject("no containers to act on: no such container")
    return rows[0]["id"]


def exec_(
    ctx: typer.Context,
    container: str = typer.Argument(..., help="Container"),
    command: Optional[List[str]] = typer.Argument(None, help="Command and arguments"),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="Keep STDIN open"),
    tty: bool = typer.Option(False, "-t", "--tty", help="Allocate a pseudo-TTY"),
    detach: bool = typer.Option(False, "-d", "--detach", help="Run in the background"),
    env: List[str] = typer.Option([], "-e", "--env", help="Set environment variables"),
    env_files: List[str] = typer.Option([], "--env-file", help="Read environment from a file"),
    user: Optional[str] = typer.Option(None, "-u", "--user", help="USER[:GROUP]"),
    workdir: Optional[str] = typer.Option(None, "-w", "--workdir", help="Working directory"),
    privileged: bool = typer.Option(False, "--privileged", help="All capabilities"),
    detach_keys: Optional[str] = typer.Option(None, "--detach-keys", help="Accepted, unused"),
) -> None:
    """Run a process in a running container."""
    from podpy.engine.exec import ExecOptions, exec_in

    opts = ExecOptions(
        command=list(command or []),
        interactive=interactive,
        tty=tty,
        detach=detach,
        env=env,
        env_files=env_files,
        user=user,
        workdir=workdir,
        privileged=privileged,
    )
    code, session = exec_in(engine(ctx), container, opts)
    if detach:
        typer.echo(session)
    sys.stdout.flush()
    raise typer.Exit(code)


def attach(
    ctx: typer.Context,
    container: str = typer.Argument(..., help="Container"),
    detach_keys: Optional[str] = typer.Option(
        None, "--detach-keys", help="Key sequence to detach (default ctrl-p,ctrl-q)"
    ),
    no_stdin: bool = typer.Option(False, "--no-stdin", help="Do not attach STDIN"),
    sig_proxy: bool = typer.Option(True, "--sig-proxy/--no-sig-proxy", help="Proxy signals"),
) -> None:
    """Attach to a running container's output (and input)."""
    from podpy.engine.container_ops import attach as attach_to

    raise typer.Exit(attach_to(engine(ctx), container, detach_keys, no_stdin, sig_proxy))


def restart(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(None, metavar="CONTAINER...", help="Containers"),
    timeout: Optional[int] = typer.Option(None, "-t", "--time", help="Seconds before killing"),
    all_: bool = typer.Option(False, "-a", "--all", help="Restart all containers"),
    running: bool = typer.Option(False, "--running", help="With --all: only running ones"),
    latest: bool = typer.Option(False, "-l", "--latest", help="The latest container"),
) -> None:
    """Restart one or more containers (same id, name and storage)."""
    from podpy.engine import container_ops, containers

    eng = engine(ctx)
    _need_targets(containers_, all_, latest)
    refs = list(containers_ or [])
    if latest:
        refs = [_latest(eng)]
    elif all_:
        rows = containers.list_containers(eng)
        refs = [r["id"] for r in rows if not running or r["status"] == "running"]
    from podpy.ctrverbs import resolve_all

    resolve_all(eng, refs)  # podman: an unknown name fails before any restarts
    _for_each(refs, lambda ref: (container_ops.restart(eng, ref, timeout), ref)[1])


def pause(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(None, metavar="CONTAINER...", help="Containers"),
    all_: bool = typer.Option(False, "-a", "--all", help="Pause all running containers"),
) -> None:
    """Pause all the processes of one or more containers (cgroup freezer)."""
    from podpy.engine import container_ops

    eng = engine(ctx)
    _need_targets(containers_, all_)
    refs = list(containers_ or []) or container_ops.running_refs(eng)
    _for_each(refs, lambda ref: (container_ops.pause(eng, ref), ref)[1])


def unpause(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(None, metavar="CONTAINER...", help="Containers"),
    all_: bool = typer.Option(False, "-a", "--all", help="Unpause all paused containers"),
) -> None:
    """Unpause the processes of one or more containers."""
    from podpy.engine import container_ops

    eng = engine(ctx)
    _need_targets(containers_, all_)
    refs = list(containers_ or []) or container_ops.running_refs(eng, ("paused",))
    _for_each(refs, lambda ref: (container_ops.unpause(eng, ref), ref)[1])


def top(
    ctx: typer.Context,
    container: str = typer.Argument(..., help="Container"),
    descriptors: Optional[List[str]] = typer.Argument(None, help="Columns (user pid args ...)"),
    latest: bool = typer.Option(False, "-l", "--latest", help="The latest container"),
) -> None:
    """Display the running processes of a container."""
    from podpy.cli._output import tabwrite
    from podpy.engine import container_ops, containers
    from podpy.errors import NoSuchObject

    eng = engine(ctx)
    words = list(descriptors or [])
    if latest:
        words.insert(0, container)
        container = _latest(eng)
    try:
        containers.lookup(eng, container)
    except NoSuchObject as err:
        raise NoSuchObject(f"unable to look up requested container: {err.message}") from err
    try:
        table = container_ops.top(eng, container, words)
    except container_ops.UnknownDescriptor:
        if not (words and words[0].startswith("-")):
            raise
        # ps(1) options (`top CTR -ef`): the container's own ps answers, as with podman.
        from podpy.errors import CommandNotFound

        try:
            code = container_ops.top_with_ps(eng, container, words)
        except CommandNotFound:
            code = -1
        if code == 0:
            return
        raise
    sys.stdout.write(tabwrite("\n".join("\t".join(cells) for cells in table)) + "\n")


def rename(
    ctx: typer.Context,
    container: str = typer.Argument(..., help="Container"),
    new_name: str = typer.Argument(..., metavar="NAME", help="New name"),
) -> None:
    """Rename an existing container."""
    from podpy.engine import container_ops

    container_ops.rename(engine(ctx), container, new_name)


def port(
    ctx: typer.Context,
    container: Optional[str] = typer.Argument(None, help="Container"),
    private: Optional[str] = typer.Argument(None, metavar="[PORT[/PROTO]]", help="Private port"),
    all_: bool = typer.Option(False, "-a", "--all", help="All containers"),
    latest: bool = typer.Option(False, "-l", "--latest", help="The latest container"),
) -> None:
    """List the published port mappings of a container."""
    from podpy.engine import container_ops, containers
    from podpy.errors import PodpyError

    eng = engine(ctx)
    if all_:
        if container is not None:
            raise PodpyError("the --all option and a container cannot be used together")
        for row in containers.list_containers(eng, all_containers=False):
            for line in container_ops.port(eng, row["id"]):
                typer.echo(f"{row['id'][:12]}\t{line}")
        return
    if latest:
        private, container = container, _latest(eng)
    if container is None:
        raise PodpyError("you must supply a running container name or id")
    for line in container_ops.port(eng, container, private):
        typer.echo(line)


def stats(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(None, metavar="[CONTAINER...]", help="Containers"),
    all_: bool = typer.Option(False, "-a", "--all", help="All containers (default: running)"),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print one sample and exit"),
    fmt: Optional[str] = typer.Option(None, "--format", help="Go template or json"),
    interval: int = typer.Option(5, "-i", "--interval", help="Seconds between samples"),
    no_reset: bool = typer.Option(False, "--no-reset", help="Do not clear the screen"),
) -> None:
    """Display the resource usage of containers (cgroup memory, CPU, pids, network, block I/O)."""
    import time

    from podpy.cli._output import emit_list
    from podpy.engine import container_ops

    eng = engine(ctx)
    targets = container_ops.stats_targets(eng, list(containers_ or []), all_)
    sampler = container_ops.StatsSampler(eng)
    clear = not no_reset and not no_stream and sys.stdout.isatty()
    while True:
        samples = [sampler.sample(row) for row in targets]
        if clear:
            sys.stdout.write("\033[2J\033[H")
        if fmt and fmt.strip() == "json":
            import json

            keys = {
                "ID": "id",
                "Name": "name",
                "CPU": "cpu_time",
                "CPUPerc": "cpu_percent",
                "AVGCPU": "avg_cpu",
                "MemUsage": "mem_usage",
                "MemPerc": "mem_percent",
                "NetIO": "net_io",
                "BlockIO": "block_io",
                "PIDs": "pids",
            }
            payload = [{v: s[k] for k, v in keys.items()} for s in samples]
            sys.stdout.write(json.dumps(payload, indent=1) + "\n")
        else:
            emit_list(samples, fmt, _STATS_FORMAT, headers=_STATS_HEADERS)
        sys.stdout.flush()
        if no_stream:
            return
        time.sleep(max(interval, 1))


def events(
    ctx: typer.Context,
    since: Optional[str] = typer.Option(None, "--since", help="Show events since TIME"),
    until: Optional[str] = typer.Option(None, "--until", help="Show events until TIME"),
    filters: List[str] = typer.Option([], "-f", "--filter", help="type=, event=, container="),
    fmt: Optional[str] = typer.Option(None, "--format", help="Go template or json"),
    stream: Optional[str] = typer.Option(
        None, "--stream", help="Keep following new events (default true; --stream=false)"
    ),
    no_trunc: bool = typer.Option(True, "--no-trunc", help="Do not truncate (default)"),
) -> None:
    """Show podpy's events (create, start, died, remove, ...) from its persistent journal."""
    import json

    from podpy.engine import container_ops
    from podpy.gotemplate import render

    def emit(event: Any) -> None:
        public = {k: v for k, v in event.items() if not k.startswith("_")}
        if fmt and fmt.strip() == "json":
            line = json.dumps({k: v for k, v in public.items() if k != "TimeNano"})
        elif fmt:
            from podpy.cli._output import unescape

            fields = dict(public, Time=container_ops.go_time_string(event["_time"]))
            line = render(unescape(fmt), fields)
        else:
            line = container_ops.event_line(event)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    follow = True
    if stream is not None:
        if stream.lower() not in ("true", "false", "1", "0"):
            from podpy.errors import PodpyError

            raise PodpyError(
                f'invalid argument "{stream}" for "--stream" flag', hint="use true or false"
            )
        follow = stream.lower() in ("true", "1")
    container_ops.events(
        engine(ctx), emit, since=since, until=until, filters=filters, stream=follow
    )


def prune(
    ctx: typer.Context,
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation"),
    filters: List[str] = typer.Option([], "--filter", help="until=TIME, label=KEY[=VALUE]"),
) -> None:
    """Remove all stopped (exited or created) containers."""
    from podpy.cli import print_error
    from podpy.engine import container_ops

    if not force:
        sys.stdout.write(
            "WARNING! This will remove all non running containers.\n"
            "Are you sure you want to continue? [y/N] "
        )
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return
    failed = 0
    for cid, error in container_ops.prune(engine(ctx), filters):
        if error is None:
            typer.echo(cid)
        else:
            print_error(error)  # type: ignore[arg-type]
            failed = 1
    if failed:
        raise typer.Exit(125)


def register(app: typer.Typer) -> None:
    group = _groups.container
    for name, fn in (
        ("exec", exec_),
        ("attach", attach),
        ("restart", restart),
        ("pause", pause),
        ("unpause", unpause),
        ("top", top),
        ("rename", rename),
        ("port", port),
        ("stats", stats),
    ):
        # `exec CTR ls -l` and `top CTR -ef`: what follows the container is not ours to parse.
        settings = _EXEC_CONTEXT if name in ("exec", "top") else None
        app.command(name, context_settings=settings)(fn)
        group.command(name, context_settings=settings)(fn)
    app.command("events")(events)
    _groups.system.command("events", hidden=True)(events)
    group.command("prune")(prune)
