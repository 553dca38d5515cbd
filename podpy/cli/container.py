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


def _labels(items: List[str]) -> Dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _create_options(image: str, command: List[str], **kw: Any) -> Any:
    from podpy.engine.types import CreateOptions

    entrypoint = kw.pop("entrypoint")
    if entrypoint is not None:
        if entrypoint.startswith("["):
            import json

            entrypoint = json.loads(entrypoint)
        else:
            entrypoint = [entrypoint] if entrypoint else []
    from podpy.cli.image import _parse_bool

    tls = _parse_bool(kw.pop("tls_verify"), "--tls-verify")  # podman's --tls-verify=false
    return CreateOptions(
        image=image,
        command=list(command or []),
        entrypoint=entrypoint,
        labels=_labels(kw.pop("label")),
        tls_verify=None if tls is None else tls,
        **kw,
    )


def _common_create(
    ctx: typer.Context,
    image: str,
    command: Optional[List[str]],
    **kw: Any,
) -> Any:
    from podpy.engine import containers

    opts = _create_options(image, command or [], **kw)
    eng = engine(ctx)
    from podpy.cli.image import _progress

    return eng, containers.create(eng, opts, progress=_progress(opts.quiet))


def run(
    ctx: typer.Context,
    image: str = typer.Argument(..., help="Image to run"),
    command: Optional[List[str]] = typer.Argument(None, help="Command and arguments"),
    detach: bool = typer.Option(
        False, "-d", "--detach", help="Run in the background, print the ID"
    ),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="Keep STDIN open"),
    tty: bool = typer.Option(False, "-t", "--tty", help="Allocate a pseudo-TTY"),
    remove: bool = typer.Option(False, "--rm", help="Remove the container when it exits"),
    name: Optional[str] = typer.Option(None, "--name", help="Container name"),
    env: List[str] = typer.Option([], "-e", "--env", help="Set environment variables"),
    env_files: List[str] = typer.Option([], "--env-file", help="Read environment from a file"),
    entrypoint: Optional[str] = typer.Option(None, "--entrypoint", help="Override ENTRYPOINT"),
    workdir: Optional[str] = typer.Option(None, "-w", "--workdir", help="Working directory"),
    user: Optional[str] = typer.Option(None, "-u", "--user", help="USER[:GROUP]"),
    hostname: Optional[str] = typer.Option(None, "-h", "--hostname", help="Container host name"),
    label: List[str] = typer.Option([], "-l", "--label", help="Set metadata KEY=VALUE"),
    volumes: List[str] = typer.Option([], "-v", "--volume", help="Bind mount SRC:DST[:OPTS]"),
    mounts: List[str] = typer.Option([], "--mount", help="Attach a filesystem mount"),
    tmpfs: List[str] = typer.Option([], "--tmpfs", help="Mount a tmpfs DST[:OPTS]"),
    init: bool = typer.Option(False, "--init", help="Run an init that reaps zombies as PID 1"),
    read_only: bool = typer.Option(False, "--read-only", help="Read-only root filesystem"),
    privileged: bool = typer.Option(False, "--privileged", help="Give extended privileges"),
    cap_add: List[str] = typer.Option([], "--cap-add", help="Add capabilities"),
    cap_drop: List[str] = typer.Option([], "--cap-drop", help="Drop capabilities"),
    security_opt: List[str] = typer.Option([], "--security-opt", help="Security options"),
    stop_signal: Optional[str] = typer.Option(None, "--stop-signal", help="Signal to stop"),
    stop_timeout: Optional[int] = typer.Option(None, "--stop-timeout", help="Seconds to wait"),
    log_driver: Optional[str] = typer.Option(
        None, "--log-driver", help="k8s-file|none|passthrough"
    ),
    log_opts: List[str] = typer.Option([], "--log-opt", help="Logging options (max-size=...)"),
    cidfile: Optional[str] = typer.Option(None, "--cidfile", help="Write the container ID here"),
    replace: bool = typer.Option(False, "--replace", help="Replace a container of the same name"),
    pull: str = typer.Option("missing", "--pull", help="always|missing|never|newer"),
    tls_verify: Optional[str] = typer.Option(
        None, "--tls-verify", help="Verify registry TLS (--tls-verify=false for plain HTTP)"
    ),
    platform: Optional[str] = typer.Option(None, "--platform", help="OS/ARCH[/VARIANT]"),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="OCI runtime: podpy|runc|PATH"),
    network: Optional[str] = typer.Option(None, "--network", "--net", help="Network mode"),
    publish: List[str] = typer.Option([], "-p", "--publish", help="Publish a port"),
    publish_all: bool = typer.Option(False, "-P", "--publish-all", help="Publish exposed ports"),
    dns: List[str] = typer.Option([], "--dns", help="DNS servers"),
    dns_search: List[str] = typer.Option([], "--dns-search", help="DNS search domains"),
    add_host: List[str] = typer.Option([], "--add-host", help="Add HOST:IP to /etc/hosts"),
    memory: Optional[str] = typer.Option(None, "-m", "--memory", help="Memory limit"),
    memory_swap: Optional[str] = typer.Option(None, "--memory-swap", help="Memory + swap"),
    cpus: Optional[float] = typer.Option(None, "--cpus", help="Number of CPUs"),
    cpu_shares: Optional[int] = typer.Option(None, "-c", "--cpu-shares", help="CPU shares"),
    pids_limit: Optional[int] = typer.Option(None, "--pids-limit", help="Process limit"),
    ulimits: List[str] = typer.Option([], "--ulimit", help="Ulimit options"),
    sysctls: List[str] = typer.Option([], "--sysctl", help="Sysctl options"),
    sdnotify: str = typer.Option("conmon", "--sdnotify", help="conmon|container|ignore"),
    sig_proxy: bool = typer.Option(True, "--sig-proxy/--no-sig-proxy", help="Proxy signals"),
    detach_keys: Optional[str] = typer.Option(None, "--detach-keys", help="Detach key sequence"),
    pod: Optional[str] = typer.Option(None, "--pod", help="Run in a pod"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Suppress pull output"),
) -> None:
    """Run a command in a new container."""
    from podpy.engine import containers

    eng, row = _common_create(
        ctx,
        image,
        command,
        name=name,
        env=env,
        env_files=env_files,
        entrypoint=entrypoint,
        workdir=workdir,
        user=user,
        hostname=hostname,
        label=label,
        volumes=volumes,
        mounts=mounts,
        tmpfs=tmpfs,
        tty=tty,
        interactive=interactive,
        detach=detach,
        remove=remove,
        init=init,
        read_only=read_only,
        privileged=privileged,
        cap_add=cap_add,
        cap_drop=cap_drop,
        security_opt=security_opt,
        stop_signal=stop_signal,
        stop_timeout=stop_timeout,
        log_driver=log_driver,
        log_opts=log_opts,
        cidfile=cidfile,
        replace=replace,
        pull=pull,
        tls_verify=tls_verify,
        platform=platform,
        runtime=runtime,
        network=network,
        publish=publish,
        publish_all=publish_all,
        dns=dns,
        dns_search=dns_search,
        add_host=add_host,
        memory=memory,
        memory_swap=memory_swap,
        cpus=cpus,
        cpu_shares=cpu_shares,
        pids_limit=pids_limit,
        ulimits=ulimits,
        sysctls=sysctls,
        sdnotify=sdnotify,
        sig_proxy=sig_proxy,
        detach_keys=detach_keys,
        pod=pod,
        quiet=quiet,
    )
    from podpy.errors import NoSuchObject, PodpyError

    try:
        if detach:
            containers.start(eng, row["id"])
            typer.echo(row["id"])
            return
        containers.exec_monitor(eng, row)
    except PodpyError:
        # Refused before the monitor ran (a taken port, say): --rm leaves nothing behind.
        if remove:
            try:
                containers.remove(eng, row["id"], force=True)
            except NoSuchObject:
                pass  # the monitor already removed it
        raise


# `create` takes run's options, as podman's does, minus the ones about running attached.
_RUN_ONLY = ("detach", "sig_proxy", "detach_keys")


def create(ctx: typer.Context, **options: Any) -> None:
    """Create a container without starting it; prints its ID."""
    for name in _RUN_ONLY:
        options.pop(name, None)
    _, row = _common_create(ctx, options.pop("image"), options.pop("command"), **options)
    typer.echo(row["id"])


def _share_run_options() -> None:
    """Give `create` run's parameters (typer reads __signature__ and the annotations), so the
    two commands can never disagree on a flag."""
    import inspect

    signature = inspect.signature(run)
    create.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name not in _RUN_ONLY]
    )
    create.__annotations__ = {k: v for k, v in run.__annotations__.items() if k not in _RUN_ONLY}


_share_run_options()


def _for_each(ctx: typer.Context, refs: List[str], action: Any) -> None:
    """Apply action to every target, print each result, report every error, exit non-zero
    if any failed (podman's multi-target behaviour)."""
    from podpy.cli import print_error
    from podpy.errors import PodpyError

    failed = 0
    code = 125
    for ref in refs:
        try:
            out = action(ref)
        except PodpyError as err:
            print_error(err)
            failed += 1
            code = err.exit_code
            continue
        if out is not None:
            typer.echo(out)
    if failed:
        raise typer.Exit(code)


def start(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(..., metavar="CONTAINER...", help="Containers"),
    attach: bool = typer.Option(False, "-a", "--attach", help="Attach to the container's output"),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="Attach STDIN"),
) -> None:
    """Start one or more containers."""
    from podpy.engine import containers

    eng = engine(ctx)
    if attach:
        if len(containers_) != 1:
            from podpy.errors import PodpyError

            raise PodpyError("you cannot start and attach multiple containers at once")
        row = containers.lookup(eng, containers_[0])
        containers.exec_monitor(eng, row)
        return
    _for_each(ctx, containers_, lambda ref: (containers.start(eng, ref), ref)[1])


def stop(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(None, metavar="CONTAINER...", help="Containers"),
    timeout: Optional[int] = typer.Option(None, "-t", "--time", "--timeout", help="Seconds"),
    all_: bool = typer.Option(False, "-a", "--all", help="Stop all running containers"),
    ignore: bool = typer.Option(False, "-i", "--ignore", help="Ignore missing containers"),
    cidfile: List[str] = typer.Option([], "--cidfile", help="Read the container ID from a file"),
) -> None:
    """Stop one or more containers."""
    from podpy.engine import containers

    eng = engine(ctx)
    targets = _targets(eng, containers_, all_, cidfile, running_only=True)

    def act(ref: str) -> Optional[str]:
        try:
            containers.stop(eng, ref, timeout)
        except Exception as err:
            from podpy.errors import NoSuchObject

            if ignore and isinstance(err, NoSuchObject):
                return None
            raise
        return ref

    _for_each(ctx, targets, act)


def _targets(
    eng: Any, refs: Optional[List[str]], all_: bool, cidfiles: List[str], running_only: bool
) -> List[str]:
    from podpy.engine import containers

    out = list(refs or [])
    for path in cidfiles:
        try:
            with open(path) as f:
                out.append(f.read().strip())
        except OSError as err:
            from podpy.errors import PodpyError

            raise PodpyError(f"reading CIDFile {path}: {err.strerror}") from err
    if all_:
        rows = containers.list_containers(eng, all_containers=not running_only)
        out.extend(r["id"] for r in rows)
    if not out and not all_:
        from podpy.errors import PodpyError

        raise PodpyError("you must provide at least one name or id")
    return out


def kill(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(None, metavar="CONTAINER...", help="Containers"),
    signal_: str = typer.Option("KILL", "-s", "--signal", help="Signal to send"),
    all_: bool = typer.Option(False, "-a", "--all", help="Signal all running containers"),
) -> None:
    """Send a signal to one or more containers."""
    from podpy.engine import containers

    eng = engine(ctx)
    targets = _targets(eng, containers_, all_, [], running_only=True)
    _for_each(ctx, targets, lambda ref: (containers.kill(eng, ref, signal_), ref)[1])


def rm(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(None, metavar="CONTAINER...", help="Containers"),
    force: bool = typer.Option(False, "-f", "--force", help="Remove running containers too"),
    volumes: bool = typer.Option(False, "-v", "--volumes", help="Remove anonymous volumes"),
    all_: bool = typer.Option(False, "-a", "--all", help="Remove all containers"),
    ignore: bool = typer.Option(False, "-i", "--ignore", help="Ignore missing containers"),
    cidfile: List[str] = typer.Option([], "--cidfile", help="Read the container ID from a file"),
    time_: Optional[int] = typer.Option(None, "-t", "--time", help="Seconds before killing"),
) -> None:
    """Remove one or more containers."""
    from podpy.engine import containers
    from podpy.errors import InvalidState, NoSuchObject

    eng = engine(ctx)
    targets = _targets(eng, containers_, all_, cidfile, running_only=False)

    def act(ref: str) -> Optional[str]:
        # podman rm's exit status: 1 = no such container, 2 = running or paused, 125 = other
        try:
            # -a implies --depend, as in podman 4: an infra container takes its pod along
            return containers.remove(eng, ref, force=force, volumes=volumes, depend=all_)
        except NoSuchObject as err:
            if ignore or all_:  # -a: gone meanwhile (with its pod)
                return None
            err.exit_code = 1
            raise
        except InvalidState as err:
            err.exit_code = 2
            raise

    _for_each(ctx, targets, act)


def wait(
    ctx: typer.Context,
    containers_: List[str] = typer.Argument(..., metavar="CONTAINER...", help="Containers"),
    interval: str = typer.Option("250ms", "-i", "--interval", help="Polling interval"),
) -> None:
    """Wait for containers to exit and print their exit codes."""
    from podpy.engine import containers

    eng = engine(ctx)
    seconds = _duration(interval)
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
        ),
    )


def inspect(
    ctx: typer.Context,
    refs: List[str] = typer.Argument(..., metavar="NAME...", help="Containers or images"),
    fmt: Optional[str] = typer.Option(None, "-f", "--format", help="Go template or json"),
    kind: str = typer.Option("all", "-t", "--type", help="container, image or all"),
) -> None:
    """Display the configuration of containers (or images) as JSON."""
    import json

    from podpy.cli._output import emit
    from podpy.engine import containers
    from podpy.errors import NoSuchObject, PodpyError

    eng = engine(ctx)
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
            failed = NoSuchObject(f'no such object: "{ref}"')
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
