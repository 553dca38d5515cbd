"""`podpy ps`: rows, filters and rendering, free of typer so the start-up fast path
(podpy/fastpath.py) and the typer command share one implementation."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

PS_FORMAT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
PS_HEADERS = {"ID": "CONTAINER ID", "CreatedHuman": "CREATED"}


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
    ):
        self.all, self.quiet, self.latest, self.last = all, quiet, latest, last
        self.no_trunc, self.filters = no_trunc, list(filters or [])
        self.format, self.noheading = format, noheading


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
        [ps_row(r, opts.no_trunc) for r in rows],
        opts.format,
        PS_FORMAT,
        quiet_field="ID" if opts.quiet else None,
        no_header=opts.noheading,
        headers=PS_HEADERS,
    )
