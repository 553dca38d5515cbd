"""Image reference parsing, docker.io normalisation and short-name expansion."""

from __future__ import annotations

import random
import re

import pytest

from podpy.config import registries
from podpy.image import reference as refs
from podpy.image.reference import ReferenceError, parse, parse_local_name, parse_qualified

DIGEST = "sha256:" + "ab" * 32

# (input, fully qualified name, tag, digest) -- docker's normalisation table.
NORMALISATION = [
    ("busybox", "docker.io/library/busybox", "latest", None),
    ("busybox:1.36", "docker.io/library/busybox", "1.36", None),
    ("library/busybox", "docker.io/library/busybox", "latest", None),
    ("docker.io/busybox", "docker.io/library/busybox", "latest", None),
    ("index.docker.io/busybox", "docker.io/library/busybox", "latest", None),
    ("docker.io/library/busybox:musl", "docker.io/library/busybox", "musl", None),
    ("bitnami/redis:7", "docker.io/bitnami/redis", "7", None),
    ("quay.io/podman/stable", "quay.io/podman/stable", "latest", None),
    ("localhost/app:v1", "localhost/app", "v1", None),
    ("localhost:5000/app", "localhost:5000/app", "latest", None),
    ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c", "t", None),
    (
        "registry.example.com/ns/app_x-y.z:1.0-rc.1",
        "registry.example.com/ns/app_x-y.z",
        "1.0-rc.1",
        None,
    ),
    (f"busybox@{DIGEST}", "docker.io/library/busybox", None, DIGEST),
    (f"quay.io/a/b:t@{DIGEST}", "quay.io/a/b", "t", DIGEST),
]


@pytest.mark.parametrize("text,name,tag,digest", NORMALISATION)
def test_docker_normalisation(text: str, name: str, tag: str, digest: str) -> None:
    ref = parse_qualified(text)
    if digest is None:
        ref = ref.with_default_tag()
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)


def test_short_names_stay_short_until_qualified() -> None:
    ref = parse("busybox:1")
    assert ref.is_short and ref.name == "busybox" and ref.tag == "1"
    assert str(ref.in_domain("quay.io")) == "quay.io/busybox:1"
    assert str(ref.in_domain("docker.io")) == "docker.io/library/busybox:1"


def test_port_is_not_a_tag() -> None:
    ref = parse("localhost:5000/app")
    assert ref.domain == "localhost:5000" and ref.tag is None


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "empty"),
        ("Busybox", "lowercase"),
        ("docker.io/Library/busybox", "lowercase"),
        ("busybox:", "bad tag"),
        ("busybox:-x", "bad tag"),
        ("busybox@sha256:abc", "bad digest"),
        ("busybox@sha256:" + "AB" * 32, "64 lower-case"),
        ("a//b", "invalid reference"),
        ("bus box", "whitespace"),
        ("host:99999999999999999999999/", "missing repository"),
        ("x" * 300, "longer than"),
    ],
)
def test_invalid_references(text: str, fragment: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse(text)
    assert fragment in info.value.message


def test_local_names_go_to_localhost() -> None:
    assert parse_local_name("myimage").tagged_name == "localhost/myimage:latest"
    assert parse_local_name("team/app:v2").tagged_name == "localhost/team/app:v2"
    assert parse_local_name("quay.io/x/y:1").tagged_name == "quay.io/x/y:1"
    with pytest.raises(ReferenceError):
        parse_local_name(f"app@{DIGEST}")


def test_short_name_candidates_search_in_order() -> None:
    ref = parse("app:1")
    got = [str(c) for c in refs.short_name_candidates(ref, ["quay.io", "docker.io", "quay.io"])]
    assert got == ["quay.io/app:1", "docker.io/library/app:1"]


def test_short_name_alias_wins() -> None:
    ref = parse("fedora:39")
    got = refs.short_name_candidates(
        ref, ["docker.io"], {"fedora": "registry.fedoraproject.org/fedora"}
    )
    assert [str(c) for c in got] == ["registry.fedoraproject.org/fedora:39"]


def test_no_search_registries_means_docker_hub() -> None:
    assert [str(c) for c in refs.short_name_candidates(parse("alpine"), [])] == [
        "docker.io/library/alpine"
    ]


def test_qualified_name_is_its_own_candidate() -> None:
    ref = parse("quay.io/a/b:1")
    assert refs.short_name_candidates(ref, ["docker.io"]) == [ref]


def test_local_candidates_prefer_localhost() -> None:
    got = [c.tagged_name for c in refs.local_name_candidates(parse("app"), ["quay.io"])]
    assert got == [
        "localhost/app:latest",
        "quay.io/app:latest",
        "docker.io/library/app:latest",
    ]


def test_id_and_digest_helpers() -> None:
    assert refs.is_id_like("abc123") and refs.is_id_like("sha256:abc123")
    assert not refs.is_id_like("ab") and not refs.is_id_like("busybox")
    assert refs.is_full_digest(DIGEST) and not refs.is_full_digest("sha256:abc")
    assert refs.split_name("localhost:5000/app:v1") == ("localhost:5000/app", "v1")
    assert refs.split_name("localhost:5000/app") == ("localhost:5000/app", "")


# The regexes the hand-written checks replace (distribution's grammar, and registries.conf's
# variant with '.' allowed inside [IPv6] brackets): both must accept exactly the same strings.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*"
_REF_DOMAIN = _HOST + r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_CONF_DOMAIN = _HOST + r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
ORACLES = {
    "path": (re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$").match, refs.is_repository_path),
    "domain": (re.compile(rf"^{_REF_DOMAIN}$").match, refs.is_domain),
    "conf domain": (
        re.compile(rf"^{_CONF_DOMAIN}$").match,
        lambda text: refs.is_domain(text, dots_in_brackets=True),
    ),
    "conf repository": (
        re.compile(rf"^(?:{_CONF_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$").match,
        lambda text: refs.is_repository(text, dots_in_brackets=True),
    ),
    "repository": (
        re.compile(rf"^(?:{_REF_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$").match,
        refs.is_repository,
    ),
    "tag": (re.compile(r":[\w][\w.-]{0,127}$").search, registries._has_tag),
}
EDGE_CASES = [
    "", "a", "A", "-", "a-", "-a", "a--b", "a__b", "a___b", "a._b", "a.b", "a..b", "a_b", "a/b",
    "a//b", "/a", "a/", "localhost", "localhost:5000", "host:", "host:5a", ":80", "a.b.c:1",
    "a-.b", "[::1]", "[::1]:5000", "[]", "[::1", "[::1]x", "[::1]:", "[1.2.3.4]", "[g::]",
    "a\n", "a\n\n", "\na", "a:1\n", "x:tag", "x:" + "t" * 128, "x:" + "t" * 129, "x:_", "x:.a",
    "x:é", "x:٣", "x:a:b", "quay.io/a/b", "[::1]:5000/a", "Foo/bar", "foo/Bar", "a:b/c",
]  # fmt: skip


@pytest.mark.parametrize("kind", sorted(ORACLES))
def test_hand_written_checks_match_the_grammar_regexes(kind: str) -> None:
    regex, check = ORACLES[kind]
    rng = random.Random(f"podpy-{kind}")
    alphabet = "ab0Z.-_:/[]\né٣" if kind == "tag" else "ab9Z.-_:/[]\n"
    samples = list(EDGE_CASES)
    for _ in range(20000):
        samples.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))))
    # Mostly-valid shapes, so that accepting cases are exercised as well as rejecting ones.
    pieces = ["a", "b0", "x.y", "a-b", "a__b", "host:80", "[::1]", "/", ":", "\n", "-", "Z"]
    for _ in range(20000):
        samples.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 5))))
    accepted = 0
    for text in samples:
        expected = regex(text) is not None
        assert check(text) == expected, (kind, text)
        accepted += expected
    assert accepted > 500, f"too few valid samples for {kind}: {accepted}"
