"""The output layer: tables aligned like podman's tabwriter, derived headers, JSON, escapes, sizes, ages.

Table layouts were compared with podman 4.3.1 `volume ls` output on this machine (minimum
column width 12, two spaces of padding, literal tabs without `table`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Dict, List

import pytest

from podpy.cli._output import (
    camel_case_header,
    emit,
    emit_list,
    format_ago,
    format_duration,
    format_size,
    table_header,
    tabwrite,
    unescape,
)
from podpy.gotemplate import TemplateError

VOLUMES: List[Dict[str, Any]] = [
    {"Driver": "local", "Name": "averyveryverylongvolumename_b", "Labels": {}},
    {"Driver": "local", "Name": "vol_a", "Labels": {"k": "v"}},
]


@dataclass
class Row:
    ID: str
    Names: str
    CreatedAt: str
    Ports: str = ""


ROWS = [
    Row("3c1fbf4a1b7e", "web", "2 minutes ago"),
    Row("0a1b2c3d4e5f", "db-primary", "1 hour ago"),
]


def test_unescape_turns_typed_escapes_into_characters_outside_actions() -> None:
    assert unescape(r"{{.ID}}\t{{.Names}}\n") == "{{.ID}}\t{{.Names}}\n"
    assert unescape(r"a\r\nb") == "a\r\nb"
    # Inside an action Go's own string escapes apply; a real newline would break the literal.
    assert unescape(r'{{join .Names "\n"}}\t') == '{{join .Names "\\n"}}\t'


def test_table_matches_podman_volume_ls(capsys: pytest.CaptureFixture[str]) -> None:
    emit_list(VOLUMES, None, "table {{.Driver}}\t{{.Name}}", headers={"Name": "VOLUME NAME"})
    assert capsys.readouterr().out == (
        "DRIVER      VOLUME NAME\nlocal       averyveryverylongvolumename_b\nlocal       vol_a\n"
    )


def test_table_from_user_format_with_typed_tabs(capsys: pytest.CaptureFixture[str]) -> None:
    emit_list(VOLUMES, r"table {{.Name}}\t{{upper .Driver}}\t{{json .Labels}}", "unused")
    assert capsys.readouterr().out == (
        "NAME                           DRIVER      LABELS\n"
        "averyveryverylongvolumename_b  LOCAL       {}\n"
        'vol_a                          LOCAL       {"k":"v"}\n'
    )


def test_table_headers_are_derived_from_field_names(capsys: pytest.CaptureFixture[str]) -> None:
    emit_list(
        ROWS, None, "table {{.ID}}\t{{.CreatedAt}}\t{{.Names}}", headers={"ID": "CONTAINER ID"}
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "CONTAINER ID  CREATED AT     NAMES",
        "3c1fbf4a1b7e  2 minutes ago  web",
        "0a1b2c3d4e5f  1 hour ago     db-primary",
    ]


def test_no_trailing_spaces_when_the_last_column_is_empty(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emit_list(ROWS, "table {{.ID}}\t{{.Ports}}", "unused")
    out = capsys.readouterr().out
    assert out.splitlines() == ["ID            PORTS", "3c1fbf4a1b7e", "0a1b2c3d4e5f"]
    assert all(line == line.rstrip() for line in out.splitlines())


def test_empty_list_prints_only_the_header(capsys: pytest.CaptureFixture[str]) -> None:
    emit_list([], None, "table {{.ID}}\t{{.Names}}")
    assert capsys.readouterr().out == "ID          NAMES\n"


def test_no_header(capsys: pytest.CaptureFixture[str]) -> None:
    emit_list(ROWS, None, "table {{.ID}}\t{{.Names}}", no_header=True)
    assert capsys.readouterr().out == "3c1fbf4a1b7e  web\n0a1b2c3d4e5f  db-primary\n"


def test_format_table_alone_means_the_default_table(capsys: pytest.CaptureFixture[str]) -> None:
    emit_list(ROWS, "table", "table {{.ID}}\t{{.Names}}")
    assert capsys.readouterr().out.splitlines()[0] == "ID            NAMES"


def test_plain_format_prints_one_line_per_row_without_header_or_alignment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emit_list(VOLUMES, r"{{.Driver}}\t{{.Name}}", "table {{.Driver}}")
    assert capsys.readouterr().out == ("local\taveryveryverylongvolumename_b\nlocal\tvol_a\n")


def test_range_format_runs_once_over_the_whole_list(capsys: pytest.CaptureFixture[str]) -> None:
    emit_list(VOLUMES, r"{{range .}}{{.Name}}\n{{end}}", "unused")
    assert capsys.readouterr().out == "averyveryverylongvolumename_b\nvol_a\n"
    emit_list(VOLUMES, r"{{range .}}{{.Name}},{{end}}", "unused")
    assert capsys.readouterr().out == "averyveryverylongvolumename_b,vol_a,\n"


def test_json_list_and_per_row_json(capsys: pytest.CaptureFixture[str]) -> None:
    emit_list(ROWS, "json", "unused")
    out = capsys.readouterr().out
    assert json.loads(out)[1] == {
        "ID": "0a1b2c3d4e5f",
        "Names": "db-primary",
        "CreatedAt": "1 hour ago",
        "Ports": "",
    }
    assert out.startswith('[\n    {\n        "ID"')
    emit_list([], "json", "unused")
    assert capsys.readouterr().out == "[]\n"
    emit_list(ROWS, "{{json .}}", "unused")
    assert capsys.readouterr().out.splitlines()[0] == (
        '{"ID":"3c1fbf4a1b7e","Names":"web","CreatedAt":"2 minutes ago","Ports":""}'
    )


def test_quiet_prints_only_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    emit_list(ROWS, "table {{.Names}}", "unused", quiet_field="ID")
    assert capsys.readouterr().out == "3c1fbf4a1b7e\n0a1b2c3d4e5f\n"


def test_emit_single_object(capsys: pytest.CaptureFixture[str]) -> None:
    info = {"Host": {"Arch": "amd64", "Os": "linux"}, "Store": {"GraphRoot": "/g"}}
    emit(info, "{{.Host.Arch}}", lambda d: "unused")
    assert capsys.readouterr().out == "amd64\n"
    emit(info, r"{{.Host.Os}}\t{{.Host.Arch}}\n", lambda d: "unused")
    assert capsys.readouterr().out == "linux\tamd64\n"
    emit(info, "json", lambda d: "unused")
    out = capsys.readouterr().out
    assert out == json.dumps(info, indent=4) + "\n"
    emit(info, None, lambda d: f"host: {d['Host']['Os']}")
    assert capsys.readouterr().out == "host: linux\n"
    emit(info, "", lambda d: "default\n")
    assert capsys.readouterr().out == "default\n"


def test_emit_with_a_table_format_prints_header_and_row(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"Name": "web", "ImageID": "abc"}, r"table {{.Name}}\t{{.ImageID}}", lambda d: "unused")
    assert capsys.readouterr().out == "NAME        IMAGE ID\nweb         abc\n"


def test_template_errors_propagate_and_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TemplateError, match="can't evaluate field Nope in type Row"):
        emit_list(ROWS, "table {{.ID}}\t{{.Nope}}", "unused")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "name,header",
    [
        ("ID", "ID"),
        ("Names", "NAMES"),
        ("CreatedAt", "CREATED AT"),
        ("ImageID", "IMAGE ID"),
        ("IPAddress", "IP ADDRESS"),
        ("RunningFor", "RUNNING FOR"),
        ("Size2", "SIZE 2"),
    ],
)
def test_camel_case_header(name: str, header: str) -> None:
    assert camel_case_header(name) == header


@pytest.mark.parametrize(
    "body,header",
    [
        ("{{.ID}}\t{{.Names}}", "ID\tNAMES"),
        ("{{upper .Names}}\t{{.Names | lower}}", "NAMES\tNAMES"),
        ("{{json .Labels}}", "LABELS"),
        ("{{.State.Status}}", "STATE STATUS"),
        ("id={{.ID}}", "ID=ID"),
        ("{{range .Ports}}{{.HostPort}},{{end}}", "PORTS"),
        ("{{if .Running}}{{.Pid}}{{else}}-{{end}}\t{{.Name}}", "RUNNING\tNAME"),
        ('{{printf "%s:%s" .Repository .Tag}}', "PRINTF %S:%S REPOSITORY TAG"),
        ("{{- .ID -}}", "ID"),
    ],
)
def test_table_header_for_columns(body: str, header: str) -> None:
    assert table_header(body) == header


def test_tabwrite_aligns_blocks_like_go() -> None:
    text = "a\tbb\tc\nxxxxxxxxxxxxxxxx\ty\tz\nno tabs here\nq\tr\n"
    assert tabwrite(text) == (
        "a                 bb          c\n"
        "xxxxxxxxxxxxxxxx  y           z\n"
        "no tabs here\n"
        "q           r\n"
    )
    assert tabwrite("") == ""
    assert tabwrite("a\tb", min_width=0, padding=1) == "a b"


@pytest.mark.parametrize(
    "size,text",
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 kB"),
        (1234, "1.23 kB"),
        (5_140_000, "5.14 MB"),
        (12_800_000, "12.8 MB"),
        (123_456_789, "123 MB"),
        (999_499, "999 kB"),
        (999_999, "1 MB"),
        (4_300_000_000, "4.3 GB"),
        (2 * 10**15, "2 PB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    "seconds,text",
    [
        (-5, "Less than a second"),
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5399, "About an hour"),
        (5400, "2 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (100 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_ago() -> None:
    assert format_ago(1000.0, now=1120.0) == "2 minutes ago"
    assert format_ago(1000.0, now=1000.0 + 3600) == "About an hour ago"
    assert format_ago(time.time() - 150) == "2 minutes ago"  # defaults to now


def test_plain_table_rows_match_the_template_engine():
    """The template-free path for `{{.A}}\\t{{.B}}` bodies gives exactly render()'s output,
    and declines anything needing Go semantics (bools, lists, functions, missing keys)."""
    from podpy import output
    from podpy.gotemplate import render

    body = "{{.ID}}\t{{ .Names }}\t{{.Size}}"
    rows = [{"ID": "abc", "Names": "web", "Size": 12}, {"ID": "", "Names": "x y", "Size": 0}]
    expected = "".join(render(body, row) + "\n" for row in rows)
    assert output._plain_rows(body, rows) == expected
    assert output._plain_rows(body, [{"ID": "a", "Names": True, "Size": 1}]) is None
    assert output._plain_rows(body, [{"ID": "a", "Names": ["x"], "Size": 1}]) is None
    assert output._plain_rows("{{upper .ID}}", [{"ID": "a"}]) is None
    assert output._plain_rows(body, [{"ID": "a"}]) is None
