"""Pod commands: pod create, start, stop, restart, kill, rm, ps, inspect, top, exists, prune."""

from __future__ import annotations

import sys
from typing import Any, Callable, List, Optional

import typer

from podpy.cli import _groups, engine

_POD_PS_FORMAT = (
    "table {{.ID}}\t{{.Name}}\t{{.Status}}\t{{.CreatedHuman}}\t{{.InfraID}}\t"
    "{{.NumberOfContainers}}"
)
_POD_PS_HEADERS = {
    "ID": "POD ID",
    "CreatedHuman": "CREATED",
    "InfraID": "INFRA ID",
    "NumberOfContainers": "# OF CONTAINERS",
    "ContainerIds": "IDS",
    "ContainerNames": "NAMES",
    "ContainerStatuses": "STATUS",
}


def _pods_or_all(eng: Any, pods: Optional[List[str]], all_: bool) -> List[str]:
    from podpy.errors import PodpyError

    targets = list(pods or [])
    if all_:
        targets += [row["id"] for row in eng.db.list("pods", order_by="created")]
    elif not targets:
        raise PodpyError("you must provide at least one name or id", hint="or use --all")
    return targets


def _for_each(refs: List[str], action: Callable[[str], Any]) -> None:
    """Act on every pod, print each pod id, report every error, exit non-zero if any failed."""
    from podpy.cli import print_error
    from podpy.errors import PodpyError

    code = 0
    for ref in refs:
        try:
            pod_id = action(ref)
        except PodpyError as err:
            print_error(err)
            code = err.exit_code
            continue
        typer.echo(pod_id)
    if code:
        raise typer.Exit(code)


def create(
    ctx: typer.Context,
    name_arg: Optional[str] = typer.Argument(None, metavar="[NAME]", help="Pod name"),
    name: Optional[str] = typer.Option(None, "-n", "--name", help="Pod name"),
    publish: List[str] = typer.Option([], "-p", "--publish", help="Publish a port of the pod"),
    network: Optional[str] = typer.Option(None, "--network", "--net", help="Network mode"),
    label: List[str] = typer.Option([], "-l", "--label", help="Set metadata KEY=VALUE"),
    infra: bool = typer.Option(True, "--infra/--no-infra", help="Create an infra container"),
    hostname: Optional[str] = typer.Option(None, "--hostname", help="The pod's host name"),
    pod_id_file: Optional[str] = typer.Option(None, "--pod-id-file", help="Write the pod ID"),
) -> None:
    """Create a new empty pod; prints its ID."""
    from podpy.engine import pods
    from podpy.errors import PodpyError

    if name and name_arg and name != name_arg:
        raise PodpyError("cannot specify a pod name both as an argument and with --name")
    labels = {}
    for item in label:
        key, _, value = item.partition("=")
        labels[key] = value
    eng = engine(ctx)
    row = pods.create(
        eng,
        name=name or name_arg,
        publish=publish,
        network=network,
        labels=labels,
        infra=infra,
        hostname=hostname,
        create_command=["podpy", *sys.argv[1:]],
    )
    if pod_id_file:
        try:
            with open(pod_id_file, "x") as f:
                f.write(row["id"])
        except OSError as err:
            pods.remove(eng, row["id"], force=True)
            raise PodpyError(
                f"writing pod ID file {pod_id_file}: {err.strerror}",
                hint="choose a new, writable --pod-id-file path",
            ) from err
    typer.echo(row["id"])


def start(
    ctx: typer.Context,
    pods_: List[str] = typer.Argument(None, metavar="POD...", help="Pods"),
    all_: bool = typer.Option(False, "-a", "--all", help="Start all pods"),
) -> None:
    """Start one or more pods (the infra container first, then the members)."""
    from podpy.engine import pods

    eng = engine(ctx)
    _for_each(_pods_or_all(eng, pods_, all_), lambda ref: pods.start(eng, ref)["id"])


def stop(
    ctx: typer.Context,
    pods_: List[str] = typer.Argument(None, metavar="POD...", help="Pods"),
    all_: bool = typer.Option(False, "-a", "--all", help="Stop all pods"),
    timeout: Optional[int] = typer.Option(None, "-t", "--time", help="Seconds before SIGKILL"),
    ignore: bool = typer.Option(False, "-i", "--ignore", help="Ignore missing pods"),
) -> None:
    """Stop one or more pods (members first, then the infra container)."""
    from podpy.engine import pods
    from podpy.errors import NoSuchObject

    eng = engine(ctx)
    targets = _pods_or_all(eng, pods_, all_)
    if ignore:
        targets = [t for t in targets if eng.db.find_id("pods", t)]
    try:
        _for_each(targets, lambda ref: pods.stop(eng, ref, timeout)["id"])
    except NoSuchObject:
        if not ignore:
            raise


def restart(
    ctx: typer.Context,
    pods_: List[str] = typer.Argument(None, metavar="POD...", help="Pods"),
    all_: bool = typer.Option(False, "-a", "--all", help="Restart all pods"),
) -> None:
    """Restart one or more pods."""
    from podpy.engine import pods

    eng = engine(ctx)
    _for_each(_pods_or_all(eng, pods_, all_), lambda ref: pods.restart(eng, ref)["id"])


def kill(
    ctx: typer.Context,
    pods_: List[str] = typer.Argument(None, metavar="POD...", help="Pods"),
    all_: bool = typer.Option(False, "-a", "--all", help="Signal all pods"),
    signal_: str = typer.Option("KILL", "-s", "--signal", help="Signal to send"),
) -> None:
    """Send a signal to every running container of one or more pods."""
    from podpy.engine import pods

    eng = engine(ctx)
    _for_each(_pods_or_all(eng, pods_, all_), lambda ref: pods.kill(eng, ref, signal_)["id"])


def rm(
    ctx: typer.Context,
    pods_: List[str] = typer.Argument(None, metavar="POD...", help="Pods"),
    all_: bool = typer.Option(False, "-a", "--all", help="Remove all pods"),
    force: bool = typer.Option(False, "-f", "--force", help="Stop and remove running pods"),
    ignore: bool = typer.Option(False, "-i", "--ignore", help="Ignore missing pods"),
) -> None:
    """Remove one or more pods and their containers."""
    from podpy.engine import pods
    from podpy.errors import NoSuchObject

    def remove(ref: str) -> str:
        try:
            return pods.remove(eng, ref, force)
        except NoSuchObject as err:
            err.exit_code = 1  # podman 4.3: `pod rm` of a missing pod exits 1
            raise

    eng = engine(ctx)
    targets = _pods_or_all(eng, pods_, all_)
    if ignore or force:  # as podman, --force also ignores missing pods
        targets = [t for t in targets if eng.db.find_id("pods", t)]
    _for_each(targets, remove)


def ps(
    ctx: typer.Context,
    format_: Optional[str] = typer.Option(None, "--format", help="json or a Go template"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only pod IDs"),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate IDs"),
    ctr_names: bool = typer.Option(False, "--ctr-names", help="Show container names"),
    ctr_ids: bool = typer.Option(False, "--ctr-ids", help="Show container IDs"),
    ctr_status: bool = typer.Option(False, "--ctr-status", help="Show container states"),
    noheading: bool = typer.Option(False, "-n", "--noheading", help="No header row"),
    filters: List[str] = typer.Option(
        [], "-f", "--filter", help="id=, name=, label=, status=, network=, ctr-names=, ..."
    ),
) -> None:
    """List pods."""
    from podpy.engine import pods
    from podpy.output import emit_list

    rows = pods.list_pods(engine(ctx))
    if filters:
        rows = pods.filter_pods(rows, filters)
    if no_trunc:
        for row in rows:
            row["ID"], row["InfraID"] = row["Id"], row["InfraId"]
    fmt = _POD_PS_FORMAT
    if ctr_ids:
        fmt += "\t{{.ContainerIds}}"
    if ctr_names:
        fmt += "\t{{.ContainerNames}}"
    if ctr_status:
        fmt += "\t{{.ContainerStatuses}}"
    if ctr_ids or ctr_names or ctr_status:
        fmt = fmt.replace("\t{{.NumberOfContainers}}", "")
    emit_list(
        rows,
        format_,
        fmt,
        quiet_field="ID" if quiet else None,
        no_header=noheading,
        headers=_POD_PS_HEADERS,
    )


def inspect(
    ctx: typer.Context,
    pod: str = typer.Argument(..., help="Pod"),
    format_: Optional[str] = typer.Option(None, "-f", "--format", help="json or a Go template"),
) -> None:
    """Display a pod's configuration and state (podman's JSON keys)."""
    import json

    from podpy.engine import pods
    from podpy.output import emit

    emit(pods.inspect(engine(ctx), pod), format_, lambda d: json.dumps(d, indent=4))


def top(
    ctx: typer.Context,
    pod: str = typer.Argument(..., help="Pod"),
    descriptors: Optional[List[str]] = typer.Argument(None, help="Columns (user pid args ...)"),
) -> None:
    """Display the running processes of every container of a pod."""
    from podpy.engine import pods
    from podpy.output import tabwrite

    table = pods.top(engine(ctx), pod, list(descriptors or []))
    sys.stdout.write(tabwrite("\n".join("\t".join(cells) for cells in table)) + "\n")


def exists(ctx: typer.Context, pod: str = typer.Argument(..., help="Pod")) -> None:
    """Exit 0 if the pod exists, 1 if not."""
    raise typer.Exit(0 if engine(ctx).db.find_id("pods", pod) else 1)


def prune(
    ctx: typer.Context,
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation"),
) -> None:
    """Remove every pod that has no running container."""
    from podpy.engine import pods

    if not force:
        typer.confirm(
            "WARNING! This will remove all stopped/exited pods..\nAre you sure?", abort=True
        )
    for pod_id in pods.prune(engine(ctx)):
        typer.echo(pod_id)


def register(app: typer.Typer) -> None:
    group = _groups.pod
    for name, fn in (
        ("create", create),
        ("start", start),
        ("stop", stop),
        ("restart", restart),
        ("kill", kill),
        ("rm", rm),
        ("ps", ps),
        ("inspect", inspect),
        ("top", top),
        ("exists", exists),
        ("prune", prune),
    ):
        group.command(name)(fn)
    group.command("ls", hidden=True)(ps)
    group.command("list", hidden=True)(ps)
