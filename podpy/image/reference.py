"""Image references: parse and normalise `[host[:port]/]path[:tag][@digest]` and expand short names."""

from __future__ import annotations

import re

from podpy.errors import PodpyError
from podpy.record import record, replace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Mapping, Optional

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAINS = ("index.docker.io", "registry-1.docker.io")
OFFICIAL_REPO_PREFIX = "library/"
LOCAL_DOMAIN = "localhost"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

# The grammar of github.com/distribution/reference (reference/regexp.go).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
# Patterns, not compiled regexes: re.match() compiles each on first use (and caches it), so
# start-up pays only for the ones a command needs (~1.5 ms for all six). The path and
# domain ones, needed by every parse, are checked by hand instead (is_repository_path,
# is_domain: the same languages, tests/unit/test_reference.py compares them on random input).
_PATH_RE = rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$"
_DOMAIN_RE = rf"^{_DOMAIN}$"
_TAG_RE = rf"^{_TAG}$"
_DIGEST_RE = rf"^{_DIGEST}$"
_SHA256_RE = r"^sha256:[0-9a-f]{64}$"
_HEX_ID_RE = r"^[0-9a-f]{3,64}$"


class ReferenceError(PodpyError):
    """A string that is not a valid image reference."""


@record(frozen=True)
class Reference:
    """A parsed reference; `domain` is empty for a short name such as `busybox:1.36`."""

    domain: str
    path: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    @property
    def name(self) -> str:
        """`domain/path` (just `path` for a short name)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def is_short(self) -> bool:
        return not self.domain

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def tagged_name(self) -> str:
        """`name:tag`, the form stored as an image name (tag defaults to latest)."""
        return f"{self.name}:{self.tag or DEFAULT_TAG}"

    @property
    def remote_reference(self) -> str:
        """What a registry is asked for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: Optional[str]) -> Reference:
        return replace(self, tag=tag)

    def with_default_tag(self) -> Reference:
        """Add `latest` when neither a tag nor a digest was given, as podman does."""
        if self.tag or self.digest:
            return self
        return replace(self, tag=DEFAULT_TAG)

    def in_domain(self, domain: str) -> Reference:
        """This short name qualified with `domain` (docker.io names gain `library/`)."""
        path = self.path
        if _is_docker_hub(domain) and "/" not in path:
            path = OFFICIAL_REPO_PREFIX + path
        return replace(self, domain=_canonical_domain(domain), path=path)


def _is_docker_hub(domain: str) -> bool:
    return domain == DEFAULT_DOMAIN or domain in LEGACY_DEFAULT_DOMAINS


def _canonical_domain(domain: str) -> str:
    return DEFAULT_DOMAIN if domain in LEGACY_DEFAULT_DOMAINS else domain


_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DOMAIN_CHARS = _ALNUM | {"-"}
_DIGITS = frozenset("0123456789")
_HEX_COLON = frozenset("0123456789abcdefABCDEF:")


def _anchored(text: str) -> str:
    # A regex's `$` also matches before one final newline; keep that for exact equivalence.
    return text[:-1] if text.endswith("\n") else text


def _is_path_component(part: str) -> bool:
    """`[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`: alnum runs split by '.', '_', '__' or dashes."""
    if not part or part[0] not in _LOWER_ALNUM or part[-1] not in _LOWER_ALNUM:
        return False
    separator = ""
    for char in part:
        if char in _LOWER_ALNUM:
            if separator:
                if separator not in (".", "_", "__") and separator.strip("-"):
                    return False
                separator = ""
        elif char in "._-":
            separator += char
        else:
            return False
    return True


def _path_ok(text: str) -> bool:
    return all(_is_path_component(part) for part in text.split("/"))


def _domain_ok(text: str, dots_in_brackets: bool) -> bool:
    if text.startswith("["):
        end = text.find("]")
        allowed = _HEX_COLON | {"."} if dots_in_brackets else _HEX_COLON
        if end < 2 or not set(text[1:end]) <= allowed:
            return False
        rest = text[end + 1 :]
        return not rest or (rest[0] == ":" and len(rest) > 1 and set(rest[1:]) <= _DIGITS)
    host, colon, port = text.partition(":")
    if colon and (not port or not set(port) <= _DIGITS):
        return False
    for label in host.split("."):
        if not label or label[0] == "-" or label[-1] == "-" or not set(label) <= _DOMAIN_CHARS:
            return False
    return True


def is_repository_path(text: str) -> bool:
    """Whether `text` is a repository path: lower-case components joined by '/'."""
    return _path_ok(_anchored(text))


def is_domain(text: str, dots_in_brackets: bool = False) -> bool:
    """Whether `text` is a registry host[:port] (DNS name or [IPv6]), as distribution's regex.
    `dots_in_brackets` also allows '.' inside [...] (containers/image's registries.conf)."""
    return _domain_ok(_anchored(text), dots_in_brackets)


def is_repository(text: str, dots_in_brackets: bool = False) -> bool:
    """Whether `text` is `[domain/]path` (no tag or digest)."""
    text = _anchored(text)
    if _path_ok(text):
        return True
    first, slash, rest = text.partition("/")
    return bool(slash) and _domain_ok(first, dots_in_brackets) and _path_ok(rest)


def _looks_like_domain(component: str) -> bool:
    """docker's rule: a first component is a host if it has '.' or ':' or is localhost."""
    return (
        "." in component
        or ":" in component
        or component == LOCAL_DOMAIN
        or (component[:1] == "[" and component[-1:] == "]")
    )


def parse(text: str) -> Reference:
    """Parse without qualifying: `busybox` stays short; `docker.io/busybox` gains `library/`."""
    original = text
    if not text:
        raise ReferenceError("invalid reference format: empty image name")
    if text != text.strip() or any(c.isspace() for c in text):
        raise ReferenceError(f'invalid reference format "{original}": contains whitespace')
    digest: Optional[str] = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not re.match(_DIGEST_RE, digest):
            raise ReferenceError(f'invalid reference format "{original}": bad digest "{digest}"')
        algorithm, hex_part = digest.split(":", 1)
        if algorithm == "sha256" and not re.match(_SHA256_RE, digest):
            raise ReferenceError(
                f'invalid reference format "{original}": a sha256 digest has 64 lower-case hex digits'
            )
    tag: Optional[str] = None
    last_slash = text.rfind("/")
    last_colon = text.rfind(":")
    if last_colon > last_slash:
        text, tag = text[:last_colon], text[last_colon + 1 :]
        if not re.match(_TAG_RE, tag):
            raise ReferenceError(f'invalid reference format "{original}": bad tag "{tag}"')
    domain = ""
    path = text
    first, sep, rest = text.partition("/")
    if sep and _looks_like_domain(first):
        domain, path = first, rest
        if not is_domain(domain):
            raise ReferenceError(f'invalid reference format "{original}": bad registry "{domain}"')
    if not path:
        raise ReferenceError(f'invalid reference format "{original}": missing repository name')
    if not is_repository_path(path):
        if is_repository_path(path.lower()):
            raise ReferenceError(
                f'invalid reference format "{original}": repository name must be lowercase'
            )
        raise ReferenceError(
            f'invalid reference format "{original}"',
            hint="names are [host[:port]/]path[:tag][@sha256:digest] with lower-case path components",
        )
    if len(f"{domain}/{path}") > NAME_TOTAL_MAX:
        raise ReferenceError(
            f'invalid reference format "{original}": name longer than {NAME_TOTAL_MAX} characters'
        )
    ref = Reference(domain=domain, path=path, tag=tag, digest=digest)
    return ref.in_domain(domain) if domain else ref


def parse_qualified(text: str, default_domain: str = DEFAULT_DOMAIN) -> Reference:
    """Parse and qualify like docker: short names live on docker.io (`library/` for one component)."""
    ref = parse(text)
    return ref.in_domain(default_domain) if ref.is_short else ref


def parse_local_name(text: str) -> Reference:
    """A name for a local image (tag, commit, import): short names go to `localhost/`."""
    ref = parse(text)
    if ref.digest:
        raise ReferenceError(
            f'invalid image name "{text}": a local name cannot carry a digest',
            hint="give a name[:tag], for example localhost/myimage:v1",
        )
    if ref.is_short:
        ref = ref.in_domain(LOCAL_DOMAIN)
    return ref.with_default_tag()


def is_id_like(text: str) -> bool:
    """Could `text` be a (possibly shortened) image ID, optionally with a `sha256:` prefix?"""
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    return bool(re.match(_HEX_ID_RE, text))


def is_full_digest(text: str) -> bool:
    return bool(re.match(_SHA256_RE, text))


def short_name_candidates(
    ref: Reference,
    search_registries: Iterable[str],
    aliases: Optional[Mapping[str, str]] = None,
) -> List[Reference]:
    """Fully qualified candidates for a short name, in the order a pull tries them.

    An alias (registries.conf `[aliases]`, keyed by the name without tag) wins outright.
    Otherwise each unqualified-search registry is tried in order; with none configured,
    docker.io is used, which is what a docker user expects of `alias docker=podpy`.
    """
    if not ref.is_short:
        return [ref]
    if aliases:
        target = aliases.get(ref.path)
        if target is not None:
            aliased = parse_qualified(target)
            return [replace(aliased, tag=ref.tag, digest=ref.digest)]
    registries = [r for r in search_registries if r] or [DEFAULT_DOMAIN]
    seen: List[Reference] = []
    for registry in registries:
        candidate = ref.in_domain(registry)
        if candidate not in seen:
            seen.append(candidate)
    return seen


def local_name_candidates(ref: Reference, search_registries: Iterable[str]) -> List[Reference]:
    """Names a short name may have in local storage: `localhost/` first, then search registries."""
    if not ref.is_short:
        return [ref]
    out = [ref.in_domain(LOCAL_DOMAIN)]
    for registry in list(search_registries) + [DEFAULT_DOMAIN]:
        candidate = ref.in_domain(registry)
        if candidate not in out:
            out.append(candidate)
    return out


def split_name(full_name: str) -> tuple:
    """`docker.io/library/busybox:latest` -> (`docker.io/library/busybox`, `latest`)."""
    slash = full_name.rfind("/")
    colon = full_name.rfind(":")
    if colon > slash:
        return full_name[:colon], full_name[colon + 1 :]
    return full_name, ""
