"""Capability sets: podman's defaults, --cap-add/--cap-drop/--privileged, and applying a spec's sets."""

from __future__ import annotations

from podpy.errors import PodpyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Sequence

# containers.conf default_capabilities in podman 4.3 (containers-common 0.50).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
)


def all_capabilities() -> List[str]:
    """Every capability this kernel knows (cap_last_cap), by name."""
    from podpy import linux

    return list(linux.CAPABILITIES[: linux.last_cap() + 1])


def normalize(name: str) -> str:
    """`net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` all name CAP_NET_ADMIN; `ALL` stays ALL."""
    from podpy import linux

    key = name.strip().upper()
    if key == "ALL":
        return key
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    if key not in linux.CAP_NUMBERS:
        raise PodpyError(
            f"unknown capability {name!r}",
            hint="use a name from capabilities(7), e.g. NET_ADMIN or CAP_NET_ADMIN",
        )
    return key


def effective_set(
    cap_add: Sequence[str] = (),
    cap_drop: Sequence[str] = (),
    privileged: bool = False,
    defaults: Optional[Iterable[str]] = None,
) -> List[str]:
    """The container's capability list as podman computes it (drop ALL, then add, etc.)."""
    if privileged:
        return all_capabilities()
    adds = [normalize(c) for c in cap_add]
    drops = [normalize(c) for c in cap_drop]
    base = [normalize(c) for c in (DEFAULT_CAPABILITIES if defaults is None else defaults)]
    if "ALL" in adds:
        base = all_capabilities()
    if "ALL" in drops:
        base = []
    result = [c for c in base if c not in drops]
    for cap in adds:
        if cap != "ALL" and cap not in result:
            result.append(cap)
    return sorted(result, key=lambda c: _number(c))


def _number(name: str) -> int:
    from podpy import linux

    return linux.CAP_NUMBERS[name]


def spec_capabilities(caps: Sequence[str], uid: int) -> Dict[str, List[str]]:
    """The OCI process.capabilities object podman writes: effective/permitted only for root."""
    caps = list(caps)
    if uid == 0:
        return {
            "bounding": caps,
            "effective": caps,
            "inheritable": [],
            "permitted": caps,
            "ambient": [],
        }
    # podman 4.3 gives a non-root user no effective/permitted caps unless --cap-add'ed.
    return {"bounding": caps, "effective": [], "inheritable": [], "permitted": [], "ambient": []}


def mask(names: Iterable[str]) -> int:
    from podpy import linux

    try:
        return linux.cap_mask(names)
    except ValueError as err:
        raise PodpyError(str(err)) from err


def drop_bounding(spec_caps: Dict[str, List[str]]) -> None:
    """Drop everything outside the bounding set (needs CAP_SETPCAP, so before the user switch)."""
    from podpy import linux

    linux.drop_bounding_except(mask(spec_caps.get("bounding") or []))


def apply_sets(spec_caps: Dict[str, List[str]]) -> None:
    """capset the effective/permitted/inheritable sets, then raise the ambient ones."""
    from podpy import linux

    effective = mask(spec_caps.get("effective") or [])
    permitted = mask(spec_caps.get("permitted") or [])
    inheritable = mask(spec_caps.get("inheritable") or [])
    ambient = mask(spec_caps.get("ambient") or [])
    # Ambient caps must also be permitted and inheritable (capabilities(7)).
    inheritable |= ambient
    permitted |= ambient
    linux.capset(effective, permitted, inheritable)
    if ambient:
        linux.raise_ambient(ambient)
