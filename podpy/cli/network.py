"""Network commands: network create, ls, inspect, rm, prune, exists, connect, disconnect."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import typer

from podpy.cli import _groups, engine

_LS_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}"
_LS_HEADERS = {"ID": "NETWORK ID"}


def _key_values(items: List[str]) -> Dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def create(
    ctx: typer.Context,
    name: Optional[str] = typer.Argument(None, metavar="[NAME]", help="Network name"),
    subnet: Optional[str] = typer.Option(None, "--subnet", help="Subnet in CIDR form"),
    gateway: Optional[str] = typer.Option(None, "--gateway", help="Gateway of the subnet"),
    internal: bool = typer.Option(False, "--internal", help="No outbound traffic"),
    label: List[str] = typer.Option([], "--label", help="Set metadata KEY=VALUE"),
    driver: str = typer.Option("bridge", "-d", "--driver", help="Driver (bridge)"),
    opt: List[str] = typer.Option([], "-o", "--opt", help="Driver options KEY=VALUE"),
    disable_dns: bool = typer.Option(False, "--disable-dns", help="No DNS for this network"),
    ignore: bool = typer.Option(False, "--ignore", help="Do not fail if the network exists"),
) -> None:
    """Create a network; prints its name."""
    from podpy.engine import networks

    row = networks.create(
        engine(ctx),
        name=name,
        subnet=subnet,
        gateway=gateway,
        internal=internal,
        labels=_key_values(label),
        driver=driver,
        dns_enabled=not disable_dns,
        options=_key_values(opt),
        ignore_existing=ignore,
    )
    typer.echo(row["name"])


def ls(
    ctx: typer.Context,
    format_: Optional[str] = typer.Option(None, "--format", help="json or a Go template"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only network names"),
    noheading: bool = typer.Option(False, "-n", "--noheading", help="No header row"),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate IDs"),
    filters: List[str] = typer.Option(
        [], "-f", "--filter", help="name=, id=, driver=, label=KEY[=VALUE], dangling=true|false"
    ),
) -> None:
    """List networks."""
    from podpy.engine import networks
    from podpy.output import emit_list

    eng = engine(ctx)
    found = networks.list_networks(eng)
    if filters:
        found = networks.filter_networks(eng, found, filters)
    rows = []
    for row in found:
        item: Any = networks.inspect_json(row)
        if format_ and format_.strip() == "json":
            rows.append(item)
            continue
        item = dict(item)
        # Go-template fields as podman's network ls offers them.
        item.update(
            {
                "ID": row["id"] if no_trunc else row["id"][:12],
                "Name": row["name"],
                "Driver": row["driver"],
                "Labels": item.get("labels") or {},
                "Internal": item["internal"],
                "NetworkInterface": item["network_interface"],
                "Subnets": item["subnets"],
            }
        )
        rows.append(item)
    emit_list(
        rows,
        format_,
        _LS_FORMAT,
        quiet_field="Name" if quiet else None,
        no_header=noheading,
        headers=_LS_HEADERS,
    )


def inspect(
    ctx: typer.Context,
    names: List[str] = typer.Argument(..., metavar="NETWORK...", help="Networks"),
    format_: Optional[str] = typer.Option(None, "-f", "--format", help="json or a Go template"),
) -> None:
    """Display the configuration of one or more networks (podman 4's netavark JSON)."""
    import json
    import sys

    from podpy.cli import print_error
    from podpy.cli.system import template_data
    from podpy.engine import networks
    from podpy.errors import PodpyError
    from podpy.output import render, unescape

    eng = engine(ctx)
    results, failed = [], None
    for name in names:
        try:
            results.append(networks.inspect(eng, [name])[0])
        except PodpyError as err:
            failed = err
    if format_ and format_.strip() != "json":
        for item in results:
            # podman's Go field names ({{.Name}}, {{.DNSEnabled}}) over the JSON keys.
            sys.stdout.write(render(unescape(format_), template_data(item)) + "\n")
    else:
        sys.stdout.write(json.dumps(results, indent=4) + "\n")
    if failed is not None:
        print_error(failed)
        raise typer.Exit(failed.exit_code)


def rm(
    ctx: typer.Context,
    names: List[str] = typer.Argument(..., metavar="NETWORK...", help="Networks"),
    force: bool = typer.Option(False, "-f", "--force", help="Remove its containers too"),
) -> None:
    """Remove one or more networks."""
    from podpy.cli import print_error
    from podpy.engine import networks
    from podpy.errors import PodpyError

    eng = engine(ctx)
    code = 0
    for name in names:
        try:
            typer.echo(networks.remove(eng, name, force=force))
        except networks.NetworkNotFound as err:
            if force:  # podman: -f ignores a missing network
                continue
            print_error(err)
            code = 1  # podman 4.3 exits 1 for a missing network
        except PodpyError as err:
            print_error(err)
            code = 2 if "is being used" in err.message else err.exit_code
    if code:
        raise typer.Exit(code)


def prune(
    ctx: typer.Context,
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation"),
) -> None:
    """Remove every network that no container uses."""
    from podpy.engine import networks

    if not force:
        typer.confirm(
            "WARNING! This will remove all networks not used by at least one container.\n"
            "Are you sure you want to continue?",
            abort=True,
        )
    for name in networks.prune(engine(ctx)):
        typer.echo(name)


def exists(ctx: typer.Context, name: str = typer.Argument(..., help="Network")) -> None:
    """Exit 0 if the network exists, 1 if not."""
    from podpy.engine import networks

    try:
        networks.lookup(engine(ctx), name)
    except networks.NetworkNotFound:
        raise typer.Exit(1) from None


def connect(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Network"),
    container: str = typer.Argument(..., help="Container"),
    ip: Optional[str] = typer.Option(None, "--ip", help="Static IPv4 address"),
    alias: List[str] = typer.Option([], "--alias", help="Network-scoped alias"),
) -> None:
    """Connect a container to a network."""
    from podpy.engine import networks

    networks.connect(engine(ctx), name, container, ip=ip, aliases=alias)


def disconnect(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Network"),
    container: str = typer.Argument(..., help="Container"),
    force: bool = typer.Option(False, "-f", "--force", help="Force"),
) -> None:
    """Disconnect a container from a network."""
    from podpy.engine import networks

    networks.disconnect(engine(ctx), name, container)


def register(app: typer.Typer) -> None:
    group = _groups.network
    for name, fn in (
        ("create", create),
        ("ls", ls),
        ("inspect", inspect),
        ("rm", rm),
        ("prune", prune),
        ("exists", exists),
        ("connect", connect),
        ("disconnect", disconnect),
    ):
        group.command(name)(fn)
    group.command("list", hidden=True)(ls)
    group.command("remove", hidden=True)(rm)
