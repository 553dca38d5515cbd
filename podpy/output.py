"""The one place commands format output: --format templates, JSON, aligned tables, sizes and ages.

Mirrors podman's report package: `json` prints indented JSON, `table ...` prints a header derived
from the field names and aligns columns like Go's tabwriter (minimum width 12, padding 2), and
any other format is a Go text/template rendered once per row. Writes to sys.stdout; no rich.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple


def render(template: str, data: Any) -> str:
    """podpy.gotemplate.render, imported on first use (the default tables rarely need it)."""
    from podpy.gotemplate import render as go_render

    return go_render(template, data)


def to_jsonable(value: Any) -> Any:
    from podpy.gotemplate import to_jsonable as convert

    return convert(value)


_PLAIN_FIELD = re.compile(r"^\{\{\s*\.([A-Za-z_]\w*)\s*\}\}$")


def _plain_rows(body: str, rows: Sequence[Any]) -> Optional[str]:
    """Render `{{.A}}\t{{.B}}` over dict rows of plain strings/ints without the template
    engine (what every default table is); None when the body or a value needs real Go
    semantics, so the result is always what render() would give."""
    fields = []
    for cell in body.split("\t"):
        match = _PLAIN_FIELD.match(cell)
        if not match:
            return None
        fields.append(match.group(1))
    lines = []
    for row in rows:
        if not isinstance(row, dict):
            return None
        cells = []
        for name in fields:
            value = row.get(name)
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                return None
            cells.append(str(value))
        lines.append("\t".join(cells) + "\n")
    return "".join(lines)


__all__ = [
    "camel_case_header",
    "emit",
    "emit_list",
    "format_ago",
    "format_duration",
    "format_size",
    "tabwrite",
    "unescape",
]

# podman's report.NewWriterDefault: tabwriter.NewWriter(out, 12, 2, 2, ' ', 0).
TABLE_MIN_WIDTH = 12
TABLE_PADDING = 2

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_TABLE_PREFIX = re.compile(r"^\s*table(?:\s+|$)")
_WHOLE_LIST_RANGE = re.compile(r"^\s*\{\{-?\s*range\s+\.\s*-?\}\}")
# `.Field` or `.A.B` that is not a variable's field ($x.A) nor a call result's field ((x).A).
_FIELD_REF = re.compile(r"(?<![\w$)\]])\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")


def unescape(fmt: str) -> str:
    r"""Turn the literal `\t`, `\n` and `\r` shell users type into real characters (outside actions).

    Inside `{{...}}` Go's own string-literal escapes already apply, and turning `\n` into a real
    newline there would break a quoted string, so actions are left alone.
    """
    out: List[str] = []
    pos = 0
    for match in _ACTION.finditer(fmt):
        out.append(_unescape_text(fmt[pos : match.start()]))
        out.append(match.group(0))
        pos = match.end()
    out.append(_unescape_text(fmt[pos:]))
    return "".join(out)


def _unescape_text(text: str) -> str:
    return text.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r")


def _is_json(fmt: str) -> bool:
    return fmt.strip() == "json"


def _split_table(fmt: str) -> Tuple[bool, str]:
    match = _TABLE_PREFIX.match(fmt)
    if not match:
        return False, fmt
    return True, fmt[match.end() :]


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def emit(data: Any, fmt: Optional[str], default: Callable[[Any], str]) -> None:
    """Print one object (info, inspect, version): default text, `json`, or a Go template."""
    if not fmt:
        text = default(data)
        if text:
            sys.stdout.write(_with_newline(text))
        return
    if _is_json(fmt):
        sys.stdout.write(json.dumps(to_jsonable(data), indent=4, ensure_ascii=False) + "\n")
        return
    if _split_table(fmt)[0]:
        emit_list([data], fmt, fmt)
        return
    sys.stdout.write(_with_newline(render(unescape(fmt), data)))


def emit_list(
    rows: Sequence[Any],
    fmt: Optional[str],
    default_format: str,
    *,
    quiet_field: Optional[str] = None,
    no_header: bool = False,
    headers: Optional[Mapping[str, str]] = None,
) -> None:
    """Print many objects (ps, images, volume ls) as a table, JSON array, or per-row template.

    `quiet_field` (for -q) prints only that field of each row. `headers` overrides the header
    derived from a field name, like podman's `{"ID": "CONTAINER ID"}`.
    """
    if quiet_field:
        template = "{{." + quiet_field + "}}"
        sys.stdout.write("".join(_with_newline(render(template, row)) for row in rows))
        return
    if not fmt:
        fmt = default_format
    if _is_json(fmt):
        payload = [to_jsonable(row) for row in rows]
        sys.stdout.write(json.dumps(payload, indent=4, ensure_ascii=False) + "\n")
        return
    if fmt.strip() == "table":
        # `--format table` means the command's default table.
        fmt = default_format if _split_table(default_format)[0] else "table " + default_format
    is_table, body = _split_table(fmt)
    body = unescape(body)
    if _WHOLE_LIST_RANGE.match(body):
        rendered = render(body, list(rows))
        text = _with_newline(rendered) if rendered else ""
    else:
        text = _plain_rows(body, rows)
        if text is None:
            text = "".join(_with_newline(render(body, row)) for row in rows)
    if not is_table:
        sys.stdout.write(text)
        return
    if not no_header:
        text = table_header(body, headers) + "\n" + text
    sys.stdout.write(tabwrite(text))


# --------------------------------------------------------------------------- headers


def camel_case_header(name: str) -> str:
    """`CreatedAt` -> `CREATED AT`, `ImageID` -> `IMAGE ID`, `IPAddress` -> `IP ADDRESS`."""
    return " ".join(_camel_split(name)).upper()


def _char_class(ch: str) -> int:
    if ch.islower():
        return 1
    if ch.isupper():
        return 2
    if ch.isdigit():
        return 3
    return 4


def _camel_split(name: str) -> List[str]:
    """fatih/camelcase.Split, which podman uses to turn field names into headers."""
    runs: List[List[str]] = []
    last_class = 0
    for ch in name:
        ch_class = _char_class(ch)
        if runs and ch_class == last_class:
            runs[-1].append(ch)
        else:
            runs.append([ch])
        last_class = ch_class
    # An upper-case run followed by lower case gives its last letter to the next word: "IPAddress".
    for index in range(len(runs) - 1):
        if runs[index][0].isupper() and runs[index + 1][0].islower():
            runs[index + 1].insert(0, runs[index].pop())
    words = ["".join(run) for run in runs if run]
    return [word for word in words if word not in ("_",)]


def _field_header(dotted: str, headers: Optional[Mapping[str, str]]) -> str:
    last = dotted.rsplit(".", 1)[-1]
    if headers:
        for key in (dotted, last):
            if key in headers:
                return headers[key]
    return " ".join(camel_case_header(part) for part in dotted.split("."))


def _action_header(inner: str, headers: Optional[Mapping[str, str]]) -> str:
    refs = _FIELD_REF.findall(inner)
    if len(refs) == 1:
        return _field_header(refs[0], headers)
    # Not a single field (a literal, several fields, a variable): upper-cased best effort.
    cleaned = re.sub(r"[\"`$]|(?<!\w)\.", "", inner)
    return " ".join(cleaned.split()).upper()


_OPENERS = ("if", "range", "with", "block", "define")


def _column_header(column: str, headers: Optional[Mapping[str, str]]) -> str:
    pieces: List[str] = []
    skip_depth = 0  # inside a control block the header comes from its opening action only
    pos = 0
    for match in _ACTION.finditer(column):
        if not skip_depth:
            pieces.append(column[pos : match.start()].upper())
        pos = match.end()
        inner = match.group(1)
        if inner.startswith("/*"):
            continue
        keyword = inner.split(None, 1)[0] if inner.split() else ""
        if keyword == "end":
            skip_depth = max(skip_depth - 1, 0)
            continue
        if keyword in ("else", "break", "continue"):
            continue
        if skip_depth:
            skip_depth += keyword in _OPENERS
            continue
        if keyword in _OPENERS:
            skip_depth = 1
            inner = inner[len(keyword) :]
        pieces.append(_action_header(inner, headers))
    if not skip_depth:
        pieces.append(column[pos:].upper())
    return "".join(pieces).strip()


def table_header(body: str, headers: Optional[Mapping[str, str]] = None) -> str:
    """The header line podman prints for a `table` format: one upper-cased title per column."""
    if _WHOLE_LIST_RANGE.match(body):
        body = _WHOLE_LIST_RANGE.sub("", body, count=1)
    first_line = body.strip("\n").split("\n", 1)[0]
    return "\t".join(_column_header(column, headers) for column in first_line.split("\t"))


# --------------------------------------------------------------------------- alignment


def tabwrite(text: str, min_width: int = TABLE_MIN_WIDTH, padding: int = TABLE_PADDING) -> str:
    """Align tab-separated cells like Go's text/tabwriter (padchar ' ', flags 0), minus trailing blanks.

    A cell is text followed by a tab; the text after a line's last tab is not part of a column.
    Consecutive lines that have a cell in column N form a block aligned to its widest cell.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    out: List[str] = []
    widths: List[int] = []

    def write_lines(first: int, stop: int) -> None:
        for cells in lines[first:stop]:
            parts = []
            for index, cell in enumerate(cells):
                if index < len(widths):
                    parts.append(cell + " " * (widths[index] - len(cell)))
                else:
                    parts.append(cell)
            out.append("".join(parts).rstrip(" "))

    def format_block(first: int, stop: int) -> None:
        column = len(widths)
        line = first
        while line < stop:
            if column >= len(lines[line]) - 1:
                line += 1
                continue
            write_lines(first, line)
            first = line
            width = min_width
            while line < stop and column < len(lines[line]) - 1:
                width = max(width, len(lines[line][column]) + padding)
                line += 1
            widths.append(width)
            format_block(first, line)
            widths.pop()
            first = line
        write_lines(first, stop)

    format_block(0, len(lines))
    return "\n".join(out)


# --------------------------------------------------------------------------- sizes and ages

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def format_size(size: float) -> str:
    """Podman's human size: base 1000, 3 significant digits (`1.23 kB`, `5.14 MB`, `12.8 MB`)."""
    value = float(size)
    unit = 0
    while abs(value) >= 1000 and unit < len(_SIZE_UNITS) - 1:
        value /= 1000
        unit += 1
    text = f"{value:.3g}"
    # go-units prints 999999 as "1e+03kB"; move to the next unit instead.
    if abs(float(text)) >= 1000 and unit < len(_SIZE_UNITS) - 1:
        value /= 1000
        unit += 1
        text = f"{value:.3g}"
    return f"{text} {_SIZE_UNITS[unit]}"


def format_duration(seconds: float) -> str:
    """go-units HumanDuration: `Less than a second`, `About a minute`, `3 hours`, `2 weeks`."""
    whole_seconds = int(seconds)
    if whole_seconds < 1:
        return "Less than a second"
    if whole_seconds == 1:
        return "1 second"
    if whole_seconds < 60:
        return f"{whole_seconds} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(math.floor(seconds / 3600 + 0.5))  # Go's math.Round: halves away from zero
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def format_ago(ts: float, now: Optional[float] = None) -> str:
    """`2 minutes ago`, `About an hour ago`: the age of a Unix timestamp as podman ps shows it."""
    current = time.time() if now is None else now
    return format_duration(current - ts) + " ago"
