"""Go text/template semantics as podman and docker users rely on them in --format.

Expected strings for printf, print, html/js/urlquery, number literals and most error messages
were checked against podman 4.3.1 (`podman volume inspect --format ...`) on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import pytest

from podpy.errors import PodpyError
from podpy.gotemplate import MISSING, TemplateError, go_str, render, to_jsonable
from podpy.record import field as rfield
from podpy.record import record

CONTAINER: Dict[str, Any] = {
    "ID": "3c1fbf4a1b7e",
    "Image": "docker.io/library/busybox:latest",
    "Names": "web",
    "Name": "web",
    "Status": "Up 2 minutes",
    "Args": ["sh", "-c", "sleep 1"],
    "Labels": {"zone": "b", "app": "shop"},
    "State": {"Running": True, "Status": "running", "Pid": 4242, "ExitCode": 0},
    "Config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": None, "Tty": False},
    "Host": {"Arch": "amd64", "Os": "linux"},
    "NetworkSettings": {
        "Networks": {
            "podman": {"IPAddress": "10.88.0.2"},
            "backend": {"IPAddress": "10.89.0.7"},
        },
        "Ports": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
    },
    "Mounts": [],
    "Size": 1234.5,
    "Restarts": 3,
}


@dataclass
class Image:
    """An object with attributes and a method, like a Go struct with a method."""

    Repository: str
    Tag: str
    Digests: List[str] = field(default_factory=list)

    def Label(self, key: str) -> str:  # noqa: N802 - Go-style exported method name
        return f"label:{key}"


DOC_EXAMPLES = [
    # podman ps / images / info / inspect documentation
    ("{{.ID}} {{.Image}}", "3c1fbf4a1b7e docker.io/library/busybox:latest"),
    ("{{.Host.Arch}}", "amd64"),
    ("{{.State.Status}} pid={{.State.Pid}}", "running pid=4242"),
    ("{{json .Config}}", '{"Env":["PATH=/bin"],"Cmd":["sh"],"Entrypoint":null,"Tty":false}'),
    ("{{json .Labels}}", '{"zone":"b","app":"shop"}'),
    ("{{json .Mounts}}", "[]"),
    ("{{.Config.Env}}", "[PATH=/bin]"),
    ("{{.Labels}}", "map[app:shop zone:b]"),
    ("{{.State.Running}} {{.Config.Tty}}", "true false"),
    ("{{.Config.Entrypoint}}", "<nil>"),
    ("{{.NoSuchKey}}", "<no value>"),
    ("{{.State.NoSuchKey.Deeper}}", "<no value>"),
    ("{{.Size}} {{.Restarts}}", "1234.5 3"),
    # docker inspect documentation
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "10.89.0.7 10.88.0.2 "),
    (
        "{{range $p, $conf := .NetworkSettings.Ports}}{{$p}} -> {{(index $conf 0).HostPort}}{{end}}",
        "80/tcp -> 8080",
    ),
    ('{{index .Labels "app"}}', "shop"),
    ('{{index .Labels "missing"}}', "<no value>"),
    ("{{.Labels.app}}", "shop"),
    ('{{join .Args " , "}}', "sh , -c , sleep 1"),
    ("{{upper .Name}} {{lower .Image}}", "WEB docker.io/library/busybox:latest"),
    ('{{printf "%-10s|" .Name}}', "web       |"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .Config.Tty}}tty{{else}}notty{{end}}", "notty"),
    ("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", "app=shop;zone=b;"),
    ("{{title .Name}}", "Web"),
    ('{{split .Image "/"}}', "[docker.io library busybox:latest]"),
    ("{{truncate .ID 5}}", "3c1fb"),
    ("{{pad .Name 2 1}}|", "  web |"),
    ('{{replace .Name "w" "W"}}', "Web"),
    ("{{len .Args}} {{len .Labels}} {{len .Name}}", "3 2 3"),
    # trim markers, comments, whitespace
    ("a  {{- .Name -}}  b", "awebb"),
    ("{{/* a comment */}}x", "x"),
    ("x {{- /* trimmed comment */ -}} y", "xy"),
    ("{{- 3}}", "3"),
    ("{{-3}}", "-3"),
    ("{{ .Name }}", "web"),
    ("{{.Name\n}}", "web"),
    # variables and scoping
    ("{{$n := .Name}}{{$n}}", "web"),
    ("{{with .Host}}{{.Os}}/{{.Arch}} {{$.Name}}{{end}}", "linux/amd64 web"),
    ("{{with .Nope}}yes{{else}}no{{end}}", "no"),
    ("{{with $h := .Host}}{{$h.Arch}}{{end}}", "amd64"),
    ("{{$last := 0}}{{range .Args}}{{$last = .}}{{end}}{{$last}}", "sleep 1"),
    ("{{range $i, $a := .Args}}{{if $i}},{{end}}{{$a}}{{end}}", "sh,-c,sleep 1"),
    ("{{range $a := .Args}}[{{$a}}]{{end}}", "[sh][-c][sleep 1]"),
    ("{{range .Mounts}}m{{else}}no mounts{{end}}", "no mounts"),
    ("{{range .Nope}}x{{else}}none{{end}}", "none"),
    ("{{range 3}}{{.}}{{end}}", "012"),
    ('{{range .Args}}{{if eq . "-c"}}{{continue}}{{end}}{{.}};{{end}}', "sh;sleep 1;"),
    ('{{range .Args}}{{if eq . "-c"}}{{break}}{{end}}{{.}};{{end}}', "sh;"),
    # if / else if chains and comparisons
    (
        '{{if eq .State.Status "exited"}}E{{else if eq .State.Status "running"}}R{{else}}?{{end}}',
        "R",
    ),
    ('{{if eq .Name "db" "web"}}match{{end}}', "match"),
    ('{{if ne .Name "db"}}not db{{end}}', "not db"),
    ("{{if and .State.Running (gt .Restarts 2)}}flapping{{end}}", "flapping"),
    ("{{if or .Config.Tty .Mounts}}x{{else}}neither{{end}}", "neither"),
    ("{{if not .Config.Tty}}no tty{{end}}", "no tty"),
    ('{{lt 1 2}} {{le 2 2}} {{gt 1.5 2.5}} {{ge "b" "a"}}', "true true false true"),
    ('{{and 1 0 2}} {{and 1 2}} {{or 0 "" "x"}} {{or 0 ""}}', "0 2 x "),
    # pipelines and parentheses
    ('{{.Name | upper | printf "%q"}}', '"WEB"'),
    ('{{.Name | printf "%s-%s" "x"}}', "x-web"),
    ("{{(index .Args 2) | upper}}", "SLEEP 1"),
    ('{{len (split .Image "/")}}', "3"),
    ("{{slice .Args 1 2}} {{slice .Name 1}}", "[-c] eb"),
    # literals
    (
        "{{ 3 }} {{ -3 }} {{ 0x10 }} {{ 010 }} {{ 1_000 }} {{ 'a' }} {{ 1.5e3 }}",
        "3 -3 16 8 1000 97 1500",
    ),
    ("{{ 0b101 }} {{ 0o17 }} {{ true }} {{ nil }}", "5 15 true <nil>"),
    ('{{"\\x41\\u00e9\\101\\t|"}}', "Aé A\t|".replace(" ", "")),
    ("{{`raw \\n {{ not an action }}`}}", "raw \\n {{ not an action }}"),
    # printf verbs (checked against podman)
    ('{{printf "%v %v %v %v %v" 1.0 1e6 123456.0 0.0001 0.00001}}', "1 1e+06 123456 0.0001 1e-05"),
    (
        '{{printf "%g %e %.3e %G %.2g" 1234567.0 1234.5678 1234.5678 1e-7 123.0}}',
        "1.234567e+06 1.234568e+03 1.235e+03 1E-07 1.2e+02",
    ),
    (
        '{{printf "%5d|%-5d|%05d|%x|%X|%o|%b|%#x|%#o|%c|%U" 42 42 -42 255 255 8 5 255 8 65 65}}',
        "   42|42   |-0042|ff|FF|10|101|0xff|010|A|U+0041",
    ),
    (
        '{{printf "%q|%#q|%8.3s|%-8s|%x|% d|%+.2f" "a\\"b\\n" "raw" "abcdef" "ab" "hi" 5 3.14159}}',
        '"a\\"b\\n"|`raw`|     abc|ab      |6869| 5|+3.14',
    ),
    (
        '{{printf "%q %v %5.2f|%-6s|%x %t %%" .Name 1.5 3.14159 "ab" 255 true}}',
        '"web" 1.5  3.14|ab    |ff true %',
    ),
    (
        '{{printf "%d %s" "x" 5}}|{{printf "%d"}}|{{printf "%d" 1 2}}|{{printf "%t" 1}}',
        "%!d(string=x) %!s(int=5)|%!d(MISSING)|1%!(EXTRA int=2)|%!t(int=1)",
    ),
    (
        '{{printf "%s" .Args}} {{printf "%v" .Labels}} {{printf "%T" .Name}}',
        "[sh -c sleep 1] map[app:shop zone:b] string",
    ),
    ('{{print 1 2 "a" "b" 3 true false}}|{{print "a" 1 2 "b"}}', "1 2ab3 true false|a1 2b"),
    ('{{println "a" 1}}', "a 1\n"),
    # escapers (checked against podman)
    ('{{html "<a href=\'x\'>&\\"</a>"}}', "&lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt;"),
    ('{{js "a\'b\\"c<d>e&f=g\\\\h\\n"}}', "a\\'b\\\"c\\u003Cd\\u003Ee\\u0026f\\u003Dg\\\\h\\u000A"),
    ('{{urlquery "a b/c?d=e&f"}}', "a+b%2Fc%3Fd%3De%26f"),
    ('{{title "hello world_foo bar-baz 9lives élan"}}', "Hello World_foo Bar-Baz 9lives Élan"),
    ('{{len "héllo"}} {{split "abc" ""}}', "6 [a b c]"),
    # json function
    (
        '{{json "a<b>&c"}} {{json 1.5}} {{json 2.0}} {{json .State}}',
        '"a<b>&c" 1.5 2 {"Running":true,"Status":"running","Pid":4242,"ExitCode":0}',
    ),
    # define / template / block
    (
        '{{define "row"}}<{{.}}>{{end}}{{template "row" .Name}}{{template "row" .ID}}',
        "<web><3c1fbf4a1b7e>",
    ),
    ('{{block "b" .Host}}{{.Arch}}{{end}}', "amd64"),
    # call
    ("{{call .Fn 2 3}}", "5"),
    # the table marker is plain text to the engine; the output layer strips it
    ("table {{.Names}}\t{{.Status}}", "table web\tUp 2 minutes"),
]


@pytest.mark.parametrize("template,expected", DOC_EXAMPLES)
def test_documented_examples(template: str, expected: str) -> None:
    data = dict(CONTAINER, Fn=lambda a, b: a + b)
    assert render(template, data) == expected


def test_control_flow_details() -> None:
    assert render("{{if true -}}\n  x\n{{- else -}} y {{- end}}", {}) == "x"
    template = "{{with .A}}a{{else with .B}}b={{.}}{{else}}none{{end}}"
    assert render(template, {"B": 2}) == "b=2"
    assert render(template, {}) == "none"
    nested = "{{range $i, $x := .L}}{{range $j, $y := $x}}{{$i}}{{$j}}{{$y}} {{end}}{{end}}"
    assert render(nested, {"L": [[1, 2], [3]]}) == "001 012 103 "
    multi_line = "{{- range .Mounts}}\n{{.Source}} -> {{.Destination}}\n{{- end}}"
    mounts = [{"Source": "/a", "Destination": "/b"}, {"Source": "/c", "Destination": "/d"}]
    assert render(multi_line, {"Mounts": mounts}) == "\n/a -> /b\n/c -> /d"


def test_huge_widths_and_ranges_do_not_exhaust_memory() -> None:
    assert render('{{printf "%*d|%.*f|%-*s|" "x" 1 2 3.14159 -4 "ab"}}', {}) == (
        "%!(BADWIDTH)1|3.14|ab  |"
    )
    assert render('{{printf "%*d" 99999999999 1}}', {}) == "%!(BADWIDTH)1"
    with pytest.raises(TemplateError, match="padding larger than"):
        render('{{pad "x" 99999999999 0}}', {})
    # range over an int is lazy, so a break ends it at once; zero iterations take the else.
    template = "{{range 0}}x{{else}}empty{{end}}{{range 10000000000}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}}"
    assert render(template, {}) == "empty01"


def test_top_level_list_and_dot() -> None:
    rows = [{"Name": "a"}, {"Name": "b"}]
    assert render("{{range .}}{{.Name}}\n{{end}}", rows) == "a\nb\n"
    assert render("{{.}}", ["x", 1, True, None]) == "[x 1 true <nil>]"
    assert render("{{len .}}", rows) == "2"


def test_objects_attributes_and_methods() -> None:
    image = Image("docker.io/library/alpine", "3.19", ["sha256:ab"])
    assert render("{{.Repository}}:{{.Tag}}", image) == "docker.io/library/alpine:3.19"
    assert render('{{.Label "x"}}', image) == "label:x"
    assert render('{{"y" | .Label}}', image) == "label:y"
    assert render("{{.}}", image) == "{docker.io/library/alpine 3.19 [sha256:ab]}"
    assert render("{{json .}}", image) == (
        '{"Repository":"docker.io/library/alpine","Tag":"3.19","Digests":["sha256:ab"]}'
    )
    assert render("{{range .Digests}}{{.}}{{end}}", image) == "sha256:ab"


def test_maps_iterate_in_sorted_key_order() -> None:
    data = {"M": {"b": 2, "a": 1, "c": 3}, "N": {3: "c", 1: "a", 2: "b"}}
    assert render("{{range $k, $v := .M}}{{$k}}{{$v}}{{end}}", data) == "a1b2c3"
    assert render("{{range .N}}{{.}}{{end}}", data) == "abc"
    assert render("{{.M}}", data) == "map[a:1 b:2 c:3]"


def test_variables_are_scoped_to_their_block() -> None:
    template = "{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}"
    assert render(template, {}) == "21"
    with pytest.raises(TemplateError, match='undefined variable "\\$y"'):
        render("{{if true}}{{$y := 1}}{{end}}{{$y}}", {})


ERROR_CASES = [
    ("{{.Name", "line 1, col 1: unclosed action"),
    ("ok\n{{.Name | foo}}", 'line 2, col 11: function "foo" not defined'),
    (
        "{{.Name.Foo}}",
        "line 1, col 3: executing at <.Name.Foo>: can't evaluate field Foo in type string",
    ),
    ("{{.Restarts.Foo}}", "can't evaluate field Foo in type int"),
    ("{{.Args.Foo}}", "can't evaluate field Foo in type []interface {}"),
    ("{{if .Name}}x", "unexpected EOF"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{else}}", "unexpected {{else}}"),
    ("{{$y}}", 'undefined variable "$y"'),
    ("{{}}", "missing value for command"),
    ("{{if}}{{end}}", "missing value for if"),
    ('{{"a" | "b"}}', "non executable command in pipeline stage 2"),
    ('{{join "a"}}', "executing at <join>: wrong number of args for join: want 2 got 1"),
    (
        "{{index .Args 9}}",
        "executing at <index .Args 9>: error calling index: index out of range: 9",
    ),
    ("{{range .Name}}{{end}}", "range can't iterate over web"),
    ("{{/* x", "unclosed comment"),
    ("{{/* x */ .Name}}", "comment ends before closing delimiter"),
    ('{{lt 1 "a"}}', "error calling lt: incompatible types for comparison"),
    ("{{break}}", "{{break}} outside {{range}}"),
    ('{{.Name "x"}}', "Name is not a method but has arguments"),
    ('{{"abc}}', "unterminated quoted string"),
    ("{{(1}}", "unclosed left paren"),
    ("{{ ! }}", "bad character U+0021 '!'"),
    ("{{len 3}}", "error calling len: len of type int"),
    ('{{slice "abc" 2 1}}', "error calling slice: invalid slice index: 2 > 1"),
    ('{{template "nope"}}', 'template "nope" not defined'),
    ('{{"x" 3}}', 'can\'t give argument to non-function "x"'),
    ("{{ 1x }}", "bad number syntax"),
]


@pytest.mark.parametrize("template,message", ERROR_CASES)
def test_errors_say_what_and_where(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, CONTAINER)
    text = str(caught.value)
    assert text.startswith("template: line ")
    assert message in text
    assert "\n" not in text


def test_template_error_is_a_podpy_error_with_a_hint() -> None:
    with pytest.raises(PodpyError) as caught:
        render("{{nope}}", {})
    assert caught.value.exit_code == 125
    assert caught.value.hint and "template" in caught.value.hint


def test_attribute_errors_name_the_python_type() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field Nope in type Image"):
        render("{{.Nope}}", Image("r", "t"))
    with pytest.raises(TemplateError, match="Tag has arguments but cannot be invoked"):
        render('{{.Tag "x"}}', Image("r", "t"))


def test_recursive_template_stops_at_a_depth_limit() -> None:
    with pytest.raises(TemplateError, match="exceeded maximum template depth"):
        render('{{define "loop"}}{{template "loop" .}}{{end}}{{template "loop" .}}', {})


def test_go_str_and_to_jsonable() -> None:
    assert go_str(MISSING) == "<no value>"
    assert go_str(None) == "<nil>"
    assert go_str(2.0) == "2"
    assert go_str(1e21) == "1e+21"
    assert go_str(-0.5) == "-0.5"
    assert go_str(float("inf")) == "+Inf"
    assert go_str(("a", ("b", 1))) == "[a [b 1]]"
    assert to_jsonable({"t": (1, 2.0), "s": {3, 1}, "i": Image("r", "t")}) == {
        "t": [1, 2],
        "s": [1, 3],
        "i": {"Repository": "r", "Tag": "t", "Digests": []},
    }


@record
class RecordImage:
    """The same shape as Image, as a podpy.record (what podpy's engine types are)."""

    Repository: str
    Tag: str
    Digests: List[str] = rfield(default_factory=list)
    _Private: int = 0


def test_records_render_as_go_structs_like_dataclasses() -> None:
    rec_image = RecordImage("r", "t", ["d"], 7)
    assert go_str(rec_image) == "{r t [d] 7}" and go_str(Image("r", "t", ["d"])) == "{r t [d]}"
    assert render("{{.}}", rec_image) == "{r t [d] 7}"
    # All fields, as for a dataclass (a plain object would drop the _-prefixed one).
    assert to_jsonable(rec_image) == {
        "Repository": "r",
        "Tag": "t",
        "Digests": ["d"],
        "_Private": 7,
    }
    assert render("{{.Repository}}:{{.Tag}} {{json .}}", rec_image) == (
        'r:t {"Repository":"r","Tag":"t","Digests":["d"],"_Private":7}'
    )
    assert to_jsonable(RecordImage) != to_jsonable(rec_image), "a record class is not a struct"
