"""`podpy version`, `info`, `doctor` and the `system` group: parse flags, call the engine, print."""

from __future__ import annotations

import re
import sys
from typing import Any, Callable, Dict, List, Optional

import typer

from podpy.cli import _groups

# Go (template) field names that are not just the JSON key with a capital first letter.
_GO_ALIASES = {"cgroupsversion": "cgroupversion", "goversion": "pythonversion"}
# A YAML plain scalar must not start with an indicator nor contain ": " or " #".
_YAML_INDICATOR_START = re.compile(r"^[-?:,\[\]{}#&*!|>'\"%@`\s]")
_YAML_SPECIAL_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


class FieldMap(dict):
    """A dict whose keys also answer to their Go spellings (`Arch`, `GraphRoot`, `IDMappings`).

    JSON renders the real lower-camel keys; a `{{.Host.Arch}}` template finds the same value.
    """

    def _resolve(self, key: Any) -> Any:
        if not isinstance(key, str):
            return None
        folded = key.lower().replace("_", "")
        folded = _GO_ALIASES.get(folded, folded)
        for real in dict.keys(self):
            if isinstance(real, str) and real.lower().replace("_", "").replace(" ", "") == folded:
                return real
        return None

    def __missing__(self, key: Any) -> Any:
        real = self._resolve(key)
        if real is None:
            raise KeyError(key)
        return dict.__getitem__(self, real)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._resolve(key) is not None

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def template_data(value: Any) -> Any:
    """Wrap every nested dict in a FieldMap so templates can use podman's Go field names."""
    if isinstance(value, dict):
        return FieldMap({k: template_data(v) for k, v in value.items()})
    if isinstance(value, list):
        return [template_data(v) for v in value]
    return value


def _emit(data: Any, fmt: Optional[str], default: Callable[[Any], str]) -> None:
    if not fmt:
        # The default text needs no template engine; skipping its import keeps `version` fast.
        text = default(data)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    from podpy.cli._output import emit

    emit(template_data(data), fmt, default)


# -- version -------------------------------------------------------------------------------


def aligned(rows: List[List[str]]) -> str:
    """`Label:` columns padded like podman's tabwriter (longest label + 2 spaces)."""
    width = max(len(label) for label, _ in rows) + 2
    return "".join(f"{label:<{width}}{value}\n" for label, value in rows)


def version_text(data: Dict[str, Any]) -> str:
    client = data["Client"]
    return aligned(
        [
            ["Version:", client["Version"]],
            ["API Version:", client["APIVersion"]],
            ["Python Version:", client["PythonVersion"]],
            ["Built:", client["BuiltTime"]],
            ["OS/Arch:", client["OsArch"]],
        ]
    )


def version(
    ctx: typer.Context,
    format: Optional[str] = typer.Option(
        None, "--format", "-f", help="Change the output format to JSON or a Go template"
    ),
) -> None:
    """Display the podpy version information."""
    from podpy.engine.system import version as engine_version

    _emit(engine_version(), format, version_text)


# -- info ----------------------------------------------------------------------------------


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if text == "" or text.lower() in _YAML_SPECIAL_WORDS or _looks_numeric(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    needs_quotes = (
        _YAML_INDICATOR_START.match(text)
        or ": " in text
        or " #" in text
        or text.endswith((":", " "))
        or any(ord(ch) < 32 for ch in text)
    )
    if not needs_quotes:
        return text
    return "'" + text.replace("'", "''") + "'"


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _yaml_lines(value: Any, indent: int) -> List[str]:
    pad = " " * indent
    lines: List[str] = []
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            lines.extend(_yaml_entry(f"{pad}{key}:", value[key], indent))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                inner = _yaml_lines(item, indent + 2)
                inner[0] = f"{pad}- " + inner[0][indent + 2 :]
                lines.extend(inner)
            else:
                lines.extend(_yaml_entry(f"{pad}-", item, indent))
    return lines


def _yaml_entry(head: str, value: Any, indent: int) -> List[str]:
    if isinstance(value, dict):
        return [f"{head} {{}}"] if not value else [head, *_yaml_lines(value, indent + 2)]
    if isinstance(value, list):
        return [f"{head} []"] if not value else [head, *_yaml_lines(value, indent)]
    if isinstance(value, str) and "\n" in value:
        block = " " * (indent + 2)
        return [f"{head} |-", *(f"{block}{line}" if line else "" for line in value.split("\n"))]
    return [f"{head} {_yaml_scalar(value)}"]


def yaml_text(data: Any) -> str:
    """Podman's `info` default: YAML with keys sorted, lists at their key's indentation."""
    return "\n".join(_yaml_lines(data, 0)) + "\n"


def info(
    ctx: typer.Context,
    format: Optional[str] = typer.Option(
        None, "--format", "-f", help="Change the output format to JSON or a Go template"
    ),
) -> None:
    """Display podpy system information."""
    from podpy.cli import engine
    from podpy.engine.system import info as engine_info

    _emit(engine_info(engine(ctx)), format, yaml_text)


# -- df ------------------------------------------------------------------------------------

_DF_FORMAT = "table {{.Type}}\t{{.Total}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"


def df_rows(usage: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Template rows as podman's: sizes in go-units (`2.844MB`), Reclaimable with its %."""
    from podpy.engine.container_ops import human_size

    rows = []
    for item in usage:
        size, reclaimable = item["Size"], item["Reclaimable"]
        percent = int(reclaimable / size * 100 + 0.5) if size else 0
        rows.append(
            dict(
                item,
                Size=human_size(size),
                Reclaimable=f"{human_size(reclaimable)} ({percent}%)",
            )
        )
    return rows


def df(
    ctx: typer.Context,
    format: Optional[str] = typer.Option(
        None, "--format", help="Pretty-print with a Go template, or json"
    ),
) -> None:
    """Show podpy disk usage (images, containers, volumes)."""
    from podpy.cli import engine
    from podpy.engine.system import disk_usage
    from podpy.output import emit_list

    usage = disk_usage(engine(ctx))
    if format and format.strip() == "json":
        rows = usage  # raw byte counts, as podman's `{{json .}}`
    else:
        rows = df_rows(usage)
    emit_list(rows, format, _DF_FORMAT)


# -- prune ---------------------------------------------------------------------------------


def prune(
    ctx: typer.Context,
    all_: bool = typer.Option(
        False, "-a", "--all", help="Remove all unused images, not only dangling"
    ),
    force: bool = typer.Option(False, "-f", "--force", help="Do not prompt for confirmation"),
    volumes: bool = typer.Option(False, "--volumes", help="Prune volumes too"),
    filters: List[str] = typer.Option([], "--filter", help="label=KEY[=VALUE], until=TIME"),
) -> None:
    """Remove unused pods, containers, networks, images (and, --volumes, volumes)."""
    from podpy.cli import engine, print_error
    from podpy.engine.container_ops import human_size
    from podpy.engine.system import system_prune

    if not force:
        images = (
            "all images without at least one container associated with them"
            if all_
            else ("all dangling images")
        )
        sys.stdout.write(
            "WARNING! This command removes:\n"
            "\t- all stopped containers\n"
            "\t- all networks not used by at least one container\n"
            + ("\t- all volumes not used by at least one container\n" if volumes else "")
            + f"\t- {images}\n"
            "\t- all dangling build cache\n\n"
            "Are you sure you want to continue? [y/N] "
        )
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return
    removed, errors, reclaimed = system_prune(engine(ctx), all_, volumes, filters)
    for section, names in removed.items():
        if names:
            sys.stdout.write(f"Deleted {section}\n" + "".join(n + "\n" for n in names))
    sys.stdout.write(f"Total reclaimed space: {human_size(reclaimed)}\n")
    for error in errors:
        print_error(error)  # type: ignore[arg-type]
    if errors:
        raise typer.Exit(125)


# -- doctor --------------------------------------------------------------------------------


def _symbols() -> Dict[str, str]:
    encoding = (getattr(sys.stdout, "encoding", "") or "").lower()
    if sys.stdout.isatty() and "utf" in encoding:
        return {"ok": "✓", "warn": "!", "fail": "✗"}
    return {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


def doctor_text(data: Dict[str, Any]) -> str:
    symbols = _symbols()
    checks = data["checks"]
    width = max((len(c["name"]) for c in checks), default=0)
    mark = max(len(symbol) for symbol in symbols.values())
    if data["rootless"]:
        lines = [f"Rootless checks for user {data['user']} (uid {data['uid']}):"]
    else:
        lines = ["Checks for running containers as root:"]
    for check in checks:
        status = check["status"]
        if status == "fail" and not check["required"]:
            status = "warn"
        lines.append(f"{symbols[status]:<{mark}} {check['name']:<{width}}  {check['message']}")
        if check["fix"] and check["status"] != "ok":
            lines.append(f"{'':<{mark}} {'':<{width}}  fix: {check['fix']}")
    failed = [c for c in checks if c["status"] == "fail" and c["required"]]
    warned = [
        c for c in checks if c["status"] == "warn" or (c["status"] == "fail" and not c["required"])
    ]
    if data.get("note"):
        lines.append(f"Note: {data['note']}")
    if failed:
        lines.append(f"{len(failed)} required check(s) failed; run the fix commands above.")
    else:
        lines.append(f"All required checks passed ({len(warned)} warning(s)).")
    return "\n".join(lines) + "\n"


def doctor(
    ctx: typer.Context,
    user: Optional[str] = typer.Option(
        None, "--user", "-u", help="Check rootless prerequisites for this user (root only)"
    ),
    format: Optional[str] = typer.Option(
        None, "--format", "-f", help="Change the output format to JSON or a Go template"
    ),
) -> None:
    """Check rootless prerequisites; print the fix for each failure."""
    from podpy.cli import engine
    from podpy.engine.system import doctor as engine_doctor

    report = engine_doctor(engine(ctx), user)
    _emit(report.to_dict(), format, doctor_text)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    for command, func in (("version", version), ("info", info), ("doctor", doctor)):
        app.command(command)(func)
        _groups.system.command(command)(func)
    _groups.system.command("df")(df)
    _groups.system.command("prune")(prune)
