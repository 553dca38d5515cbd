"""`podpy ps`: rows, filters and rendering, free of typer so the start-up fast path
(podpy/fastpath.py) and the typer command share one implementation."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

PS_FORMAT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
PS_HEADERS = {"ID": "CONTAINER ID", "CreatedHuman": "CREATED"}
# podman ps --sort: the values it accepts, and the row field each orders by (default: created,
# oldest first; runningfor: most recently started first; size: podpy keeps creation order)
SORT_KEYS = ("command", "created", "id", "image", "names", "runningfor", "size", "status")


class PsOptions:
    """ps flags (a plain class: dataclasses would cost the fast path an import)."""

    def __init__(
        self,
        all: bool = False,
        quiet: bool = False,
        latest: bool = False,
        last: int = -1,
        no_trunc: bool = False,
        filters: Optional[List[str]] = None,
        format: Optional[str] = None,
        noheading: bool = False,
        sort: str = "created",
    ):
        self.all, self.quiet, self.latest, self.last = all, quiet, latest, last
        self.no_trunc, self.filters = no_trunc, list(filters or [])
        self.format, self.noheading = format, noheading
        self.sort = sort


def ps_row(row: Dict[str, Any], no_trunc: bool) -> Dict[str, Any]:
    from podpy.engine.containers import status_text
    from podpy.output import format_ago

    config = row["config"]
    command = " ".join(config.get("command") or [])
    if not no_trunc and len(command) > 17:
        command = command[:17] + "..."
    state = row.get("state") or {}
    return {
        "ID": row["id"] if no_trunc else row["id"][:12],
        "Image": config.get("image_name"),
        "ImageID": row.get("image_id"),
        "Command": command,
        "CreatedHuman": format_ago(row["created"]),
        "Created": int(row["created"]),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(row["created"])),
        "Status": status_text(row),
        "State": row["status"],
        "Ports": ", ".join(
            f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p['protocol']}"
            for p in state.get("ports") or []
        ),
        "Names": row["name"],
        "Labels": config.get("labels") or {},
        "Pid": row.get("pid") or 0,
        "ExitCode": row.get("exit_code") or 0,
        "Exited": row["status"] == "exited",
        "StartedAt": int(state.get("started_at") or 0),
        "Pod": row.get("pod_id") or "",
    }


def filter_rows(rows: List[Dict[str, Any]], filters: List[str]) -> List[Dict[str, Any]]:
    from podpy.errors import PodpyError

    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise PodpyError(f"invalid filter {item!r}", hint="use KEY=VALUE")
        if key == "status":
            rows = [r for r in rows if r["status"] == value]
        elif key == "name":
            import re

            rows = [r for r in rows if re.search(value, r["name"])]
        elif key == "id":
            rows = [r for r in rows if r["id"].startswith(value)]
        elif key == "label":
            lkey, has_value, lval = value.partition("=")
            rows = [
                r
                for r in rows
                if lkey in (r["config"].get("labels") or {})
                and (not has_value or r["config"]["labels"][lkey] == lval)
            ]
        elif key == "ancestor":
            rows = [
                r
                for r in rows
                if value in (r["config"].get("image"), r["config"].get("image_name"))
                or (r.get("image_id") or "").startswith(value)
            ]
        elif key == "exited":
            rows = [r for r in rows if r["status"] == "exited" and str(r.get("exit_code")) == value]
        else:
            raise PodpyError(
                f"{key} is an invalid filter",
                hint="filters: status, name, id, label, ancestor, exited",
            )
    return rows


def sort_rows(rows: List[Dict[str, Any]], key: str, no_trunc: bool = False) -> List[Dict[str, Any]]:
    """ps_row() dicts for the engine's rows in podman's ps order: by creation, oldest first,
    unless --sort names another field (ties keep creation order; runningfor: the oldest
    start first, never-started first of all; size: podpy keeps creation order)."""
    if key not in SORT_KEYS:
        from podpy.errors import PodpyError

        raise PodpyError(
            f'invalid argument "{key}" for "--sort" flag: "{key}" is not a valid value.  '
            f'Choose from: "{", ".join(SORT_KEYS)}"'
        )
    rows = sorted(rows, key=lambda r: r["created"])
    if key == "runningfor":
        rows = sorted(rows, key=lambda r: (r.get("state") or {}).get("started_at") or 0)
    out = [ps_row(r, no_trunc) for r in rows]
    field = {
        "command": "Command",
        "id": "ID",
        "image": "Image",
        "names": "Names",
        "status": "State",
    }.get(key)
    return sorted(out, key=lambda r: str(r[field] or "")) if field else out


def print_ps(eng: Any, opts: PsOptions) -> None:
    from podpy.engine import containers
    from podpy.output import emit_list

    wanted_all = opts.all or opts.latest or opts.last >= 0 or bool(opts.filters)
    rows = filter_rows(containers.list_containers(eng, all_containers=wanted_all), opts.filters)
    if opts.latest:
        rows = rows[:1]
    elif opts.last >= 0:
        rows = rows[: opts.last]
    emit_list(
        sort_rows(rows, opts.sort, opts.no_trunc),
        opts.format,
        PS_FORMAT,
        quiet_field="ID" if opts.quiet else None,
        no_header=opts.noheading,
        headers=PS_HEADERS,
    )
