"""Resolve `--user NAME|UID[:GROUP|GID]` against the container's /etc/passwd and /etc/group."""

from __future__ import annotations

from podpy.errors import PodpyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple


class ResolvedUser:
    """A container user (a plain class: dataclasses cost the monitor ~10 ms of imports)."""

    def __init__(
        self,
        uid: int,
        gid: int,
        additional_gids: Optional[List[int]] = None,
        home: str = "/",
        name: Optional[str] = None,
    ):
        self.uid = uid
        self.gid = gid
        self.additional_gids: List[int] = list(additional_gids or [])
        self.home = home
        self.name = name

    def __repr__(self) -> str:
        return f"ResolvedUser({self.__dict__!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResolvedUser) and self.__dict__ == other.__dict__


def _read_db(rootfs: str, path: str) -> List[List[str]]:
    from podpy.runtime.mounts import secure_join

    try:
        # Resolved inside the rootfs: a symlink to /etc/passwd must not read the host's file.
        with open(secure_join(rootfs, path), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [line.split(":") for line in lines if line and not line.startswith("#")]


def _passwd(rootfs: str) -> List[Tuple[str, int, int, str]]:
    entries = []
    for fields in _read_db(rootfs, "/etc/passwd"):
        if len(fields) >= 6 and fields[2].isdigit() and fields[3].isdigit():
            entries.append((fields[0], int(fields[2]), int(fields[3]), fields[5] or "/"))
    return entries


def _groups(rootfs: str) -> List[Tuple[str, int, List[str]]]:
    entries = []
    for fields in _read_db(rootfs, "/etc/group"):
        if len(fields) >= 3 and fields[2].isdigit():
            members = [m for m in (fields[3].split(",") if len(fields) > 3 else []) if m]
            entries.append((fields[0], int(fields[2]), members))
    return entries


def resolve_user(rootfs: str, spec: Optional[str]) -> ResolvedUser:
    """podman's lookup: names must exist in the image; numeric ids need not (uid 1000 -> gid 0)."""
    spec = (spec or "").strip()
    if not spec:
        spec = "0"
    user_part, _, group_part = spec.partition(":")
    passwd = _passwd(rootfs)
    groups = _groups(rootfs)

    name: Optional[str] = None
    home = "/"
    if user_part.isdigit():
        uid = int(user_part)
        match = next((e for e in passwd if e[1] == uid), None)
        gid = match[2] if match else 0
        if match:
            name, home = match[0], match[3]
    else:
        match = next((e for e in passwd if e[0] == user_part), None)
        if match is None:
            raise PodpyError(
                f"unable to find user {user_part}: no matching entries in passwd file",
                hint="use a numeric UID, or a user that exists in the image's /etc/passwd",
            )
        name, uid, gid, home = match

    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            group = next((g for g in groups if g[0] == group_part), None)
            if group is None:
                raise PodpyError(
                    f"unable to find group {group_part}: no matching entries in group file",
                    hint="use a numeric GID, or a group that exists in the image's /etc/group",
                )
            gid = group[1]

    additional: List[int] = []
    if name is not None and not group_part:
        for _gname, ggid, members in groups:
            if name in members and ggid != gid and ggid not in additional:
                additional.append(ggid)
    return ResolvedUser(uid=uid, gid=gid, additional_gids=additional, home=home, name=name)
