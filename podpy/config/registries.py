"""containers-registries.conf(5): search registries, per-prefix registry settings, mirrors, aliases.

Mirrors containers/image's sysregistriesv2: the same file choice, drop-in merge (registries
by prefix, later wins), v1 conversion, longest-prefix lookup and pull-source rewriting.
"""

from __future__ import annotations

import os
import re

from podpy.config._toml import MergedToml, describe, drop_in_files, read_toml
from podpy.errors import ConfigError
from podpy.image import reference as refs
from podpy.record import asdict, field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple

SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")
PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")
KIND = "registries.conf"

_TAG_CHARS = frozenset("_.-")


def _has_tag(segment: str) -> bool:
    """Whether a reference's last segment ends in a tag: regex `:[\\w][\\w.-]{0,127}$` searched,
    by hand (compiling it, and the repository regex, cost every command's start-up)."""
    if segment.endswith("\n"):  # a regex's `$` also matches before one final newline
        segment = segment[:-1]
    tail = segment[segment.rfind(":") + 1 :] if ":" in segment else ""
    return (
        0 < len(tail) <= 128
        and (tail[0].isalnum() or tail[0] == "_")
        and all(c.isalnum() or c in _TAG_CHARS for c in tail)
    )


@record(frozen=True)
class Mirror:
    """One `[[registry.mirror]]`: tried in order before the registry's own location."""

    location: str
    insecure: bool = False
    # "" behaves like "all"; otherwise "digest-only" or "tag-only".
    pull_from_mirror: str = ""


@record(frozen=True)
class RegistryEntry:
    """One `[[registry]]` table after validation (prefix defaults to location)."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: Tuple[Mirror, ...] = ()
    source: str = ""


@record(frozen=True)
class PullSource:
    """Where to try pulling `reference` from: a mirror or the registry's location."""

    reference: str
    endpoint: str
    insecure: bool
    mirror: bool


def match_prefix(reference: str, prefix: str) -> int:
    """Length of the match of `prefix` against `reference`, or -1 (containers/image rules).

    Plain prefixes must end at `:`, `/`, `@` or the end of the reference; `*.example.com`
    matches any subdomain of example.com (not example.com itself) in the host part only.
    """
    if prefix.startswith("*."):
        suffix = prefix[1:]
        index = reference.find(suffix)
        if index == -1 or "/" in reference[:index]:
            return -1
        end = index + len(suffix)
        if end == len(reference) or reference[end] in ":/@":
            return end
        return -1
    if len(reference) < len(prefix) or not reference.startswith(prefix):
        return -1
    if len(reference) == len(prefix) or reference[len(prefix)] in ":/@":
        return len(prefix)
    return -1


def _host(reference: str) -> str:
    return reference.split("/", 1)[0]


@record(frozen=True)
class RegistriesConfig:
    """The effective registries.conf: search list, registry entries (sorted by prefix), aliases."""

    search_registries: List[str] = field(default_factory=list)
    short_name_mode: str = "permissive"
    credential_helpers: List[str] = field(default_factory=lambda: ["containers-auth.json"])
    registries: List[RegistryEntry] = field(default_factory=list)
    # short name -> fully qualified repository (machine-generated aliases win).
    aliases: Dict[str, str] = field(default_factory=dict)

    def find(self, reference: str) -> Optional[RegistryEntry]:
        """The `[[registry]]` whose prefix is the longest match of a fully qualified reference.

        `reference` is `host[:port]/path[:tag|@digest]` (or just a host); short names must be
        resolved first. The first entry wins among equally long matches, as in podman.
        """
        best: Optional[RegistryEntry] = None
        best_length = 0
        for entry in self.registries:
            length = match_prefix(reference, entry.prefix)
            if length > best_length:
                best, best_length = entry, length
        return best

    def is_blocked(self, reference: str) -> bool:
        entry = self.find(reference)
        return bool(entry and entry.blocked)

    def is_insecure(self, host: str) -> bool:
        """Whether plain HTTP / unverified TLS is allowed for `host[:port]` (or a reference).

        True when the entry matching it is insecure, or its host is the location of an
        insecure registry or mirror (so rewritten and mirrored pulls work too).
        """
        entry = self.find(host)
        if entry is not None and entry.insecure:
            return True
        host = _host(host)
        for item in self.registries:
            if item.insecure and item.location and _host(item.location) == host:
                return True
            for mirror in item.mirrors:
                if mirror.insecure and _host(mirror.location) == host:
                    return True
        return False

    def resolve_alias(self, short_name: str) -> Optional[str]:
        return self.aliases.get(short_name)

    def pull_sources(self, reference: str) -> List[PullSource]:
        """Where to pull a fully qualified reference from, in order (mirrors, then location).

        A reference with no matching entry is pulled from where it names.
        """
        entry = self.find(reference)
        if entry is None:
            return [PullSource(reference, _host(reference), self.is_insecure(reference), False)]
        by_digest = "@" in reference
        endpoints: List[Tuple[str, bool, bool]] = []
        for mirror in entry.mirrors:
            if entry.mirror_by_digest_only and not by_digest:
                continue
            if mirror.pull_from_mirror == "digest-only" and not by_digest:
                continue
            if mirror.pull_from_mirror == "tag-only" and by_digest:
                continue
            endpoints.append((mirror.location, mirror.insecure, True))
        endpoints.append((entry.location, entry.insecure, False))
        matched = match_prefix(reference, entry.prefix)
        sources = []
        for location, insecure, is_mirror in endpoints:
            # An empty location (only allowed for *.example.com prefixes) keeps the reference.
            rewritten = location + reference[matched:] if location else reference
            sources.append(PullSource(rewritten, _host(rewritten), insecure, is_mirror))
        return sources

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


# ---- locating the files ----


def registries_conf_files(
    env: Mapping[str, str], config_home: str, sysroot: str
) -> Tuple[str, List[str]]:
    """The main file and its drop-ins, as containers/image chooses them."""
    system_file = sysroot + "/etc/containers/registries.conf"
    system_dir = system_file + ".d"
    user_file = os.path.join(config_home, "containers", "registries.conf")
    user_dir = user_file + ".d"
    explicit = env.get("CONTAINERS_REGISTRIES_CONF")
    if explicit:
        if not os.path.exists(explicit):
            raise ConfigError(
                f"CONTAINERS_REGISTRIES_CONF file {explicit} does not exist",
                hint="point CONTAINERS_REGISTRIES_CONF at an existing file, or unset it",
            )
        main, dirs = explicit, [explicit + ".d", system_dir, user_dir]
    elif os.path.exists(user_file):
        # A per-user registries.conf replaces the system one and its drop-ins entirely.
        main, dirs = user_file, [user_dir]
    else:
        main, dirs = system_file, [system_dir, user_dir]
    drop_ins: List[str] = []
    for directory in dict.fromkeys(dirs):
        drop_ins.extend(drop_in_files(directory))
    # containers/image sorts drop-ins by full path across all directories.
    return main, sorted(drop_ins)


def alias_cache_file(env: Mapping[str, str], rootless: bool, home: str, sysroot: str) -> str:
    """Where `podman pull` records short-name choices; these aliases win over registries.conf."""
    if not rootless:
        return sysroot + "/var/cache/containers/short-name-aliases.conf"
    cache_home = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return os.path.join(cache_home, "containers", "short-name-aliases.conf")


# ---- parsing one file ----


class _FileParser:
    """Validates one registries.conf document into the partial config it contributes."""

    def __init__(self, path: str, document: Dict[str, Any]):
        self.path = path
        self.doc = document

    def fail(self, where: str, problem: str, hint: Optional[str] = None) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {problem}", hint=hint)

    def typed(self, table: Dict[str, Any], key: str, where: str, kind: type, default: Any) -> Any:
        if key not in table:
            return default
        value = table[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is list:
            ok = ok and all(isinstance(item, str) for item in value)
        if not ok:
            names = {
                str: "a string",
                bool: "a boolean (true or false)",
                list: "an array of strings",
            }
            raise self.fail(
                where, f"expected {names.get(kind, kind.__name__)}, got {describe(value)}"
            )
        return value

    def location(self, value: str, where: str) -> str:
        trimmed = value.rstrip("/")
        if trimmed.startswith(("http://", "https://")):
            raise self.fail(
                where,
                f'invalid location "{value}": URI schemes are not supported',
                hint='write just "host[:port][/path]"; mark plain-HTTP registries insecure = true',
            )
        return trimmed

    def parse(self) -> Dict[str, Any]:
        """Keys present in this file: search, mode, helpers, registries, aliases."""
        out: Dict[str, Any] = {}
        v1 = self.doc.get("registries")
        has_v2 = bool(self.doc.get("registry")) or bool(
            self.doc.get("unqualified-search-registries")
        )
        if v1 is not None:
            if not isinstance(v1, dict):
                raise self.fail("registries", f"expected a table, got {describe(v1)}")
            v1_values = self._v1(v1)
            if v1_values["registries"] or v1_values["search"]:
                if has_v2:
                    raise self.fail(
                        "registries",
                        "mixing the v1 [registries.*] format with v2 keys is not supported",
                        hint="convert [registries.search/insecure/block] to "
                        "unqualified-search-registries and [[registry]] tables",
                    )
                out["registries"] = v1_values["registries"]
                out["search"] = v1_values["search"]
        if "unqualified-search-registries" in self.doc:
            out["search"] = self._search_list()
        if "short-name-mode" in self.doc:
            mode = self.typed(self.doc, "short-name-mode", "short-name-mode", str, "")
            if mode and mode not in SHORT_NAME_MODES:
                raise self.fail(
                    "short-name-mode",
                    f'unsupported value "{mode}"',
                    hint="use one of: " + ", ".join(SHORT_NAME_MODES),
                )
            if mode:
                out["mode"] = mode
        if "credential-helpers" in self.doc:
            out["helpers"] = list(
                self.typed(self.doc, "credential-helpers", "credential-helpers", list, [])
            )
        if "registry" in self.doc:
            tables = self.doc["registry"]
            if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
                raise self.fail("registry", "expected [[registry]] tables, got " + describe(tables))
            out["registries"] = [self._registry(t, i) for i, t in enumerate(tables)]
            self._check_conflicts(out["registries"])
        if "aliases" in self.doc:
            out["aliases"] = parse_aliases(self.path, self.doc["aliases"])
        return out

    def _check_conflicts(self, entries: List[RegistryEntry]) -> None:
        """One location listed under several prefixes must agree on insecure and blocked."""
        seen: Dict[str, RegistryEntry] = {}
        for entry in entries:
            key = entry.location or entry.prefix
            first = seen.setdefault(key, entry)
            for setting in ("insecure", "blocked"):
                if getattr(first, setting) != getattr(entry, setting):
                    raise self.fail(
                        f'registry "{key}"',
                        f"defined several times with conflicting '{setting}' settings",
                        hint=f"use the same {setting} value in every [[registry]] for {key}",
                    )

    def _search_list(self) -> List[str]:
        where = "unqualified-search-registries"
        result = []
        for item in self.typed(self.doc, where, where, list, []):
            host = self.location(item, where)
            if not refs.is_domain(host, dots_in_brackets=True):
                raise self.fail(
                    where,
                    f'invalid entry "{item}"',
                    hint='list registries as "host[:port]", e.g. "docker.io"',
                )
            result.append(host)
        return result

    def _v1(self, v1: Dict[str, Any]) -> Dict[str, Any]:
        entries: Dict[str, Dict[str, Any]] = {}

        def entry(location: str, where: str) -> Dict[str, Any]:
            location = self.location(location, where)
            return entries.setdefault(location, {"prefix": location, "location": location})

        search: List[str] = []
        for section in ("search", "insecure", "block"):
            table = v1.get(section)
            if table is None:
                continue
            where = f"registries.{section}"
            if not isinstance(table, dict):
                raise self.fail(where, f"expected a table, got {describe(table)}")
            names = self.typed(table, "registries", where + ".registries", list, [])
            for name in names:
                if section == "search":
                    search.append(self.location(name, where))
                elif section == "insecure":
                    entry(name, where)["insecure"] = True
                else:
                    entry(name, where)["blocked"] = True
        registries = [
            RegistryEntry(
                prefix=e["prefix"],
                location=e["location"],
                insecure=e.get("insecure", False),
                blocked=e.get("blocked", False),
                source=self.path,
            )
            for e in entries.values()
        ]
        return {"registries": registries, "search": search}

    def _registry(self, table: Dict[str, Any], index: int) -> RegistryEntry:
        label = table.get("prefix") or table.get("location") or f"#{index + 1}"
        where = f'registry "{label}"' if isinstance(label, str) else f"registry #{index + 1}"
        location = self.location(self.typed(table, "location", where, str, ""), where)
        prefix = self.typed(table, "prefix", where, str, "")
        if not prefix:
            if not location:
                raise self.fail(
                    f"registry #{index + 1}",
                    "both location and prefix are unset",
                    hint='set location = "host[:port][/path]"',
                )
            prefix = location
        else:
            prefix = self.location(prefix, where)
            if prefix.startswith("*."):
                if re.search(r"[/:@]", prefix):
                    raise self.fail(
                        where,
                        "a wildcard prefix must be a plain *.domain (no port, path, tag or digest)",
                    )
            elif "*" in prefix:
                raise self.fail(
                    where, "wildcards are only allowed as a leading *. (e.g. *.example.com)"
                )
            elif not location:
                raise self.fail(
                    where,
                    "location is unset and prefix is not in the format *.example.com",
                    hint="set location, or use a *.example.com prefix",
                )
        if "pull-from-mirror" in table:
            raise self.fail(
                where,
                "pull-from-mirror must only be set on [[registry.mirror]] tables",
            )
        by_digest_only = self.typed(table, "mirror-by-digest-only", where, bool, False)
        mirrors_raw = table.get("mirror", [])
        if not isinstance(mirrors_raw, list) or not all(isinstance(m, dict) for m in mirrors_raw):
            raise self.fail(
                where, "expected [[registry.mirror]] tables, got " + describe(mirrors_raw)
            )
        mirrors = []
        for mirror in mirrors_raw:
            mirror_where = where + " mirror"
            mirror_location = self.location(
                self.typed(mirror, "location", mirror_where, str, ""), mirror_where
            )
            if not mirror_location:
                raise self.fail(mirror_where, "mirror location is unset")
            pull_from = self.typed(mirror, "pull-from-mirror", mirror_where, str, "")
            if pull_from and pull_from not in PULL_FROM_MIRROR:
                raise self.fail(
                    mirror_where,
                    f'unsupported pull-from-mirror value "{pull_from}"',
                    hint="use one of: " + ", ".join(PULL_FROM_MIRROR),
                )
            if pull_from and by_digest_only:
                raise self.fail(
                    where,
                    "mirror-by-digest-only and a mirror's pull-from-mirror cannot both be set",
                )
            mirrors.append(
                Mirror(
                    location=mirror_location,
                    insecure=self.typed(mirror, "insecure", mirror_where, bool, False),
                    pull_from_mirror=pull_from,
                )
            )
        return RegistryEntry(
            prefix=prefix,
            location=location,
            insecure=self.typed(table, "insecure", where, bool, False),
            blocked=self.typed(table, "blocked", where, bool, False),
            mirror_by_digest_only=by_digest_only,
            mirrors=tuple(mirrors),
            source=self.path,
        )


def _normalize_repository(value: str) -> str:
    """docker.io/alpine -> docker.io/library/alpine, as podman normalizes alias targets."""
    host, _, rest = value.partition("/")
    if host == "index.docker.io":
        host = "docker.io"
    if host == "docker.io" and "/" not in rest:
        rest = "library/" + rest
    return f"{host}/{rest}"


def parse_aliases(path: str, table: Any) -> Dict[str, str]:
    """`[aliases]`: short name -> fully qualified repository; "" means remove the alias."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: aliases: expected a table, got {describe(table)}")
    result: Dict[str, str] = {}
    for name, value in table.items():
        where = f'{path}: aliases: "{name}"'
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {describe(value)}")
        if (
            "@" in name
            or _has_tag(name.rsplit("/", 1)[-1])
            or not refs.is_repository(name, dots_in_brackets=True)
        ):
            raise ConfigError(
                f"{where}: invalid short name (no tag or digest allowed)",
                hint='write e.g. "fedora" = "registry.fedoraproject.org/fedora"',
            )
        first = name.split("/", 1)[0]
        if "/" in name and ("." in first or ":" in first or first == "localhost"):
            raise ConfigError(f"{where}: a short name must not contain a registry")
        if value == "":
            result[name] = ""
            continue
        host = value.split("/", 1)[0]
        if (
            "@" in value
            or _has_tag(value.rsplit("/", 1)[-1])
            or not refs.is_repository(value, dots_in_brackets=True)
            or "/" not in value
            or not ("." in host or ":" in host or host == "localhost")
        ):
            raise ConfigError(
                f'{where}: invalid alias "{value}": it must be registry/repository '
                "without a tag or digest",
                hint='write e.g. "fedora" = "registry.fedoraproject.org/fedora"',
            )
        result[name] = _normalize_repository(value)
    return result


def load_registries(
    env: Mapping[str, str],
    rootless: bool,
    home: str,
    config_home: str,
    sysroot: str,
) -> Tuple[RegistriesConfig, Dict[str, Any], List[str]]:
    """Read, validate and merge every registries file: (config, raw merged docs, files read)."""
    main, drop_ins = registries_conf_files(env, config_home, sysroot)
    search: List[str] = []
    mode = "permissive"
    helpers = ["containers-auth.json"]
    by_prefix: Dict[str, RegistryEntry] = {}
    aliases: Dict[str, str] = {}
    # Raw keys layered like containers.conf, for settings podpy does not model yet;
    # `[[registry]]` arrays there are the last file's, use RegistriesConfig.registries instead.
    raw = MergedToml()
    read: List[str] = []
    for path in [main] + drop_ins:
        document = read_toml(path, KIND)
        if document is None:
            continue
        read.append(path)
        raw.add(document, path)
        partial = _FileParser(path, document).parse()
        if "search" in partial:
            search = partial["search"]
        mode = partial.get("mode", mode)
        helpers = partial.get("helpers", helpers)
        for entry in partial.get("registries", []):
            # Same prefix in a later file replaces the whole entry.
            by_prefix[entry.prefix] = entry
        aliases.update(partial.get("aliases", {}))
    cache = alias_cache_file(env, rootless, home, sysroot)
    cache_doc = read_toml(cache, "short-name-aliases.conf")
    if cache_doc is not None:
        read.append(cache)
        raw.add({"aliases": cache_doc.get("aliases", {})}, cache)
        aliases.update(parse_aliases(cache, cache_doc.get("aliases", {})))
    config = RegistriesConfig(
        search_registries=search,
        short_name_mode=mode,
        credential_helpers=helpers or ["containers-auth.json"],
        registries=[by_prefix[prefix] for prefix in sorted(by_prefix)],
        aliases={name: target for name, target in aliases.items() if target},
    )
    return config, raw.data, read
