"""The fast parser (podpy.cliopts.parse, parse_group for `podpy oci`) and typer, built from
the same tables, agree.

For every argv below, and for a few hundred generated ones, the options the typer command
would hand its body are captured (the body is replaced for the test) and compared with the
fast parser's answer: equal whenever the fast parser answers, and the fast parser must
decline (None) whatever typer rejects. Common forms must be answered by the fast parser."""

from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Tuple

import pytest

from podpy import cliopts, ctrverbs, ociverbs
from podpy.cli import main as cli_main
from podpy.fastpath import _split

VERB_TABLES = {
    "run": cliopts.RUN,
    "create": cliopts.CREATE,
    "start": cliopts.START,
    "stop": cliopts.STOP,
    "kill": cliopts.KILL,
    "rm": cliopts.RM,
}


def typer_options(
    monkeypatch: pytest.MonkeyPatch, verb: str, args: List[str], noun: bool = False
) -> Optional[Dict[str, Any]]:
    """What typer passes the body of `podpy [container] VERB ARGS`, None if it does not call
    the body (a usage error, --help)."""
    captured: List[Dict[str, Any]] = []

    def body(_eng: Any, kw: Dict[str, Any]) -> int:
        captured.append(dict(kw))
        return 0

    monkeypatch.setattr(ctrverbs, "rm" if verb == "remove" else verb, body)
    code = cli_main((["container"] if noun else []) + [verb, *args])
    if not captured:
        return None  # a usage error, or --help
    assert code == 0
    return captured[0]


def fast_options(verb: str, args: List[str]) -> Optional[Dict[str, Any]]:
    return cliopts.parse(cliopts.TABLES[verb], list(args))


ACCEPTED = [
    ("run", ["--rm", "busybox", "true"]),
    ("run", ["--rm", "--network", "none", "localhost/busybox", "true"]),
    ("run", ["-d", "busybox", "sleep", "600"]),
    ("run", ["-dit", "--name=web", "-p", "8080:80", "-e", "A=1", "-eB=2", "nginx"]),
    ("run", ["-it", "--rm", "-v", "/src:/dst:ro", "-w", "/dst", "img", "sh", "-c", "ls -l"]),
    ("run", ["busybox", "ls", "-l", "--rm", "--", "x"]),
    ("run", ["--", "busybox", "echo"]),
    ("run", ["-h", "host", "-u", "1000:1000", "--init", "--read-only", "img"]),
    ("run", ["--stop-timeout", "5", "--cpus=1.5", "-c", "512", "--pids-limit", "-1", "img"]),
    ("run", ["--no-sig-proxy", "--sig-proxy", "--no-sig-proxy", "img"]),
    ("run", ["--label", "a=b", "-l", "c", "--cap-add", "NET_ADMIN", "--cap-drop=ALL", "img"]),
    ("run", ["--tls-verify=false", "--pull", "never", "--platform", "linux/amd64", "img"]),
    ("run", ["-m", "64m", "--memory-swap", "-1", "--ulimit", "nofile=10:10", "img"]),
    ("run", ["--name", "--rm", "img"]),  # click: an option's value may start with '-'
    ("run", ["-e", "", "img", ""]),
    ("run", ["-", "x"]),
    ("run", ["--entrypoint", "", '--entrypoint=["/bin/sh"]', "img"]),
    ("run", ["-e=X", "img"]),  # click reads `-e=X` as -e with the value "=X"
    ("run", ["-P", "-q", "--replace", "--privileged", "--pod", "new:p", "img"]),
    ("create", ["--name", "c1", "busybox"]),
    ("create", ["-it", "busybox", "sh"]),
    ("start", ["c1"]),
    ("start", ["-ai", "c1", "c2"]),
    ("stop", []),
    ("stop", ["-t", "0", "c1", "c2"]),
    ("stop", ["c1", "--time=3", "-a", "-i", "--cidfile", "f1", "--cidfile=f2"]),
    ("stop", ["--timeout", "7", "--", "-weird"]),
    ("kill", ["c1"]),
    ("kill", ["-s", "TERM", "c1", "-a"]),
    ("kill", ["--signal=9", "c1"]),
    ("rm", ["-f", "-t", "0", "c1"]),
    ("rm", ["-fv", "c1", "c2"]),
    ("rm", ["-af", "-t0"]),
    ("rm", ["--force", "--volumes", "--ignore", "--all", "--time", "3"]),
    ("remove", ["-f", "x"]),
]

REJECTED = [
    ("run", []),
    ("run", ["--help"]),
    ("run", ["--rm=true", "img"]),
    ("run", ["--bogus", "img"]),
    ("run", ["-dx", "img"]),
    ("run", ["--name"]),
    ("run", ["-e"]),
    ("run", ["--stop-timeout", "x", "img"]),
    ("run", ["--cpus", "many", "img"]),
    ("create", ["-d", "img"]),  # create has no --detach
    ("create", ["--sig-proxy", "img"]),
    ("start", []),
    ("start", ["-h"]),
    ("stop", ["-t"]),
    ("stop", ["-t", "soon", "c"]),
    ("kill", ["--signal"]),
    ("rm", ["-h"]),
    ("rm", ["--help"]),
    ("rm", ["-t", "x", "c"]),
    ("rm", ["-fz", "c"]),
]


@pytest.mark.parametrize("verb, args", ACCEPTED)
def test_fast_parser_answers_and_matches_typer(monkeypatch, verb, args):
    fast = fast_options(verb, args)
    assert fast is not None, f"the fast parser declined {verb} {args}"
    assert fast == typer_options(monkeypatch, verb, args, noun=verb == "remove")


@pytest.mark.parametrize("verb, args", REJECTED)
def test_fast_parser_declines_what_typer_rejects(monkeypatch, verb, args, capsys):
    assert fast_options(verb, args) is None
    assert typer_options(monkeypatch, verb, args) is None


def test_rm_alias_and_noun_forms_use_the_same_table(monkeypatch):
    args = ["-f", "abc"]
    expected = typer_options(monkeypatch, "rm", args)
    assert typer_options(monkeypatch, "rm", args, noun=True) == expected
    assert typer_options(monkeypatch, "remove", args, noun=True) == expected
    assert fast_options("remove", args) == expected


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "img"], ({}, ["run"], ["img"])),
        (
            ["--root", "/r", "container", "run", "img"],
            ({"root": "/r"}, ["container", "run"], ["img"]),
        ),
        (["--runroot=/x", "rm", "-f", "c"], ({"runroot": "/x"}, ["rm"], ["-f", "c"])),
        (["container", "remove", "c"], ({}, ["container", "remove"], ["c"])),
        (["container", "kill", "c"], ({}, ["container", "kill"], ["c"])),
        (["oci", "state", "c"], ({}, ["oci"], ["state", "c"])),
        (
            ["--log-level", "debug", "oci", "--root", "/r", "list"],
            ({"log_level": "debug"}, ["oci"], ["--root", "/r", "list"]),
        ),
    ],
)
def test_split_recognises_lifecycle_verbs(argv, expected):
    assert _split(argv) == expected


@pytest.mark.parametrize("argv", [["remove", "c"], ["-v"], ["--help", "run"], ["run2"]])
def test_split_leaves_other_forms(argv):
    assert _split(argv) is None


# Tokens that exercise every option kind, clustering, `=`, `--`, and values that look like
# options; generated argvs are mostly nonsense, which is the point.
def _tokens(table: cliopts.Table) -> List[str]:
    tokens = ["--", "-", "img", "c1", "x=1", "-1", "7", "--bogus", "-z", "--help", "-h"]
    shorts = []
    for opt in table.options:
        tokens.extend(opt.flags + opt.off)
        if opt.kind != cliopts.FLAG:
            tokens.extend(f"{flag}=v" for flag in opt.flags if flag.startswith("--"))
        shorts.extend(f[1] for f in opt.flags if len(f) == 2)
    for _ in range(8):
        tokens.append("-" + "".join(random.sample(shorts, min(len(shorts), 3))))
    return tokens


@pytest.mark.parametrize("verb", sorted(VERB_TABLES))
def test_generated_argvs_agree(monkeypatch, capsys, verb):
    random.seed(f"cliopts-{verb}")
    tokens = _tokens(VERB_TABLES[verb])
    answered = 0
    for _ in range(120):  # enough that options added to a table keep >= 5 answered
        args = [random.choice(tokens) for _ in range(random.randint(0, 6))]
        fast = fast_options(verb, args)
        slow = typer_options(monkeypatch, verb, args)
        if fast is not None:
            answered += 1
            assert fast == slow, f"{verb} {args}: fast {fast} != typer {slow}"
    assert answered >= 5, f"the fast parser answered only {answered} generated {verb} argvs"


# --- podpy oci: the group's options (runc's global flags) come before the verb -------------


def typer_oci(monkeypatch: pytest.MonkeyPatch, args: List[str]) -> Optional[Tuple[Any, ...]]:
    """(group options, verb, verb options) typer hands the body of `podpy oci ARGS`, None
    if it does not call a body (a usage error, --help)."""
    captured: List[Tuple[Any, ...]] = []
    for verb in list(ociverbs.VERBS):

        def body(group: Dict[str, Any], kw: Dict[str, Any], verb: str = verb) -> int:
            captured.append((dict(group), verb, dict(kw)))
            return 0

        monkeypatch.setitem(ociverbs.VERBS, verb, body)
    code = cli_main(["oci", *args])
    if not captured:
        return None
    assert code == 0
    return captured[0]


def fast_oci(args: List[str]) -> Optional[Tuple[Any, ...]]:
    return cliopts.parse_group(cliopts.OCI, cliopts.OCI_TABLES, list(args))


OCI_ACCEPTED = [
    ["state", "c1"],
    ["--root", "/r", "state", "c1"],
    ["--root=/r", "--log", "/l", "--log-format=json", "--systemd-cgroup", "kill", "c1", "KILL"],
    ["--root", "--log", "state", "c1"],  # click: a value may start with '-'
    ["--root=", "start", "c1"],
    ["--", "state", "c1"],
    ["kill", "c1"],
    ["kill", "-a", "c1"],
    ["kill", "c1", "--all", "9"],
    ["create", "-b", "/b", "--pid-file", "/p", "--console-socket=/s", "--no-pivot", "c1"],
    ["create", "--preserve-fds", "2", "c1"],
    ["create", "c1", "--bundle=/b", "--preserve-fds=-1"],
    ["run", "-d", "-b", "/b", "c1"],
    ["run", "--detach", "--console-socket", "/s", "--pid-file=/p", "c1"],
    ["run", "-db/b", "c1"],
    ["delete", "-f", "c1"],
    ["delete", "--force", "c1"],
    ["list"],
    ["list", "-q"],
    ["list", "--format", "json"],
    ["list", "-qf", "json"],
    ["pause", "c1"],
    ["resume", "c1"],
    ["start", "--", "-c1"],
]

OCI_REJECTED = [
    [],
    ["--root"],
    ["--root", "/r"],
    ["bogus", "c1"],
    ["--help"],
    ["-h"],
    ["--bogus", "state", "c1"],
    ["--systemd-cgroup=1", "state", "c1"],
    ["state"],
    ["state", "a", "b"],
    ["state", "--help"],
    ["state", "-h", "c1"],
    ["create", "--preserve-fds", "x", "c1"],
    ["create", "-b"],
    ["kill", "c1", "TERM", "extra"],
    ["kill", "-x", "c1"],
    ["list", "c1"],
    ["list", "--quiet=1"],
    ["run", "--no-pivot", "c1"],  # create has it, run does not
    ["delete", "-fa", "c1"],
]


@pytest.mark.parametrize("args", OCI_ACCEPTED)
def test_oci_fast_parser_answers_and_matches_typer(monkeypatch, args):
    fast = fast_oci(args)
    assert fast is not None, f"the fast parser declined oci {args}"
    assert fast == typer_oci(monkeypatch, args)


@pytest.mark.parametrize("args", OCI_REJECTED)
def test_oci_fast_parser_declines_what_typer_rejects(monkeypatch, args, capsys):
    assert fast_oci(args) is None
    assert typer_oci(monkeypatch, args) is None


def test_oci_tables_cover_every_verb():
    assert list(cliopts.OCI_TABLES) == list(ociverbs.VERBS)


@pytest.mark.parametrize("verb", list(cliopts.OCI_TABLES))
def test_oci_generated_argvs_agree(monkeypatch, capsys, verb):
    random.seed(f"cliopts-oci-{verb}")
    group_tokens = _tokens(cliopts.OCI) + list(cliopts.OCI_TABLES)
    tokens = _tokens(cliopts.OCI_TABLES[verb]) + ["c1"] * 4  # most verbs need one ID
    answered = 0
    for _ in range(120):
        head = [random.choice(group_tokens) for _ in range(random.choice((0, 0, 1, 2, 3)))]
        args = head + [verb] + [random.choice(tokens) for _ in range(random.randint(0, 4))]
        fast = fast_oci(args)
        slow = typer_oci(monkeypatch, args)
        if fast is not None:
            answered += 1
            assert fast == slow, f"oci {args}: fast {fast} != typer {slow}"
    assert answered >= 5, f"the fast parser answered only {answered} generated oci {verb} argvs"
