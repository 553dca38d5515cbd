"""Sub-id ranges from /etc/subuid and /etc/subgid, and the uid/gid maps podpy builds from them."""

from __future__ import annotations

import os
from collections import namedtuple

TYPE_CHECKING = False  # typing costs ~5 ms; the rootless monitor imports this at every start
if TYPE_CHECKING:
    from typing import List, Optional

SUBUID_FILE = "/etc/subuid"
SUBGID_FILE = "/etc/subgid"


# Named tuples rather than dataclasses: importing dataclasses (and inspect) costs ~15 ms, and
# this module is imported on paths that must stay cheap (so collections', not typing's).
class IdMapping(namedtuple("IdMapping", "container_id host_id size")):
    """One line of a uid_map/gid_map: ids container_id.. map to host_id.. for size ids
    (all int)."""

    __slots__ = ()

    def to_oci(self) -> dict:
        """The runtime-spec form (`linux.uidMappings[]`)."""
        return {"containerID": self.container_id, "hostID": self.host_id, "size": self.size}

    def to_line(self) -> str:
        return f"{self.container_id} {self.host_id} {self.size}"


class SubIdRange(namedtuple("SubIdRange", "start count")):
    """A range of host ids delegated to a user: start, start+1, ..., start+count-1 (ints)."""

    __slots__ = ()


def parse_subid_text(text: str, user: str, uid: Optional[int] = None) -> List[SubIdRange]:
    """Ranges delegated to `user` (or to the numeric `uid`), in file order.

    Format (subuid(5)): `owner:start:count` per line, owner a login name or a uid;
    blank lines and `#` comments are ignored, as are malformed lines (shadow-utils does the same).
    """
    owners = {user}
    if uid is not None:
        owners.add(str(uid))
    ranges: List[SubIdRange] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or parts[0] not in owners:
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            ranges.append(SubIdRange(start, count))
    return ranges


def read_subid_file(path: str, user: str, uid: Optional[int] = None) -> List[SubIdRange]:
    """Like parse_subid_text on a file; a missing file means no ranges."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_subid_text(f.read(), user, uid)
    except FileNotFoundError:
        return []


def build_mappings(host_id: int, ranges: List[SubIdRange]) -> List[IdMapping]:
    """Podman's rootless layout: container 0 -> host_id, then 1.. -> the sub-ranges in order."""
    mappings = [IdMapping(0, host_id, 1)]
    next_id = 1
    for sub in ranges:
        mappings.append(IdMapping(next_id, sub.start, sub.count))
        next_id += sub.count
    return mappings


def newidmap_args(mappings: List[IdMapping]) -> List[str]:
    """The triplets newuidmap/newgidmap take after the pid."""
    args: List[str] = []
    for m in mappings:
        args += [str(m.container_id), str(m.host_id), str(m.size)]
    return args


def current_user_name(uid: Optional[int] = None) -> str:
    """The login name for uid (the uid as text when there is no passwd entry)."""
    import pwd

    uid = os.geteuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class UserIdMaps(namedtuple("UserIdMaps", "user uid gid uid_ranges gid_ranges")):
    """Everything needed to set up a rootless user namespace for one user: the login name,
    uid, gid, and the delegated ranges (tuples of SubIdRange)."""

    __slots__ = ()

    @property
    def single_id(self) -> bool:
        """No delegated ranges: only the user's own uid/gid can be mapped."""
        return not self.uid_ranges or not self.gid_ranges

    @property
    def uid_mappings(self) -> List[IdMapping]:
        if self.single_id:
            return [IdMapping(0, self.uid, 1)]
        return build_mappings(self.uid, list(self.uid_ranges))

    @property
    def gid_mappings(self) -> List[IdMapping]:
        if self.single_id:
            return [IdMapping(0, self.gid, 1)]
        return build_mappings(self.gid, list(self.gid_ranges))


def user_id_maps(
    uid: Optional[int] = None,
    gid: Optional[int] = None,
    user: Optional[str] = None,
    subuid_file: str = SUBUID_FILE,
    subgid_file: str = SUBGID_FILE,
) -> UserIdMaps:
    """The calling user's sub-id ranges (defaults: effective uid/gid and its login name)."""
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    user = current_user_name(uid) if user is None else user
    return UserIdMaps(
        user=user,
        uid=uid,
        gid=gid,
        uid_ranges=tuple(read_subid_file(subuid_file, user, uid)),
        gid_ranges=tuple(read_subid_file(subgid_file, user, uid)),
    )


def read_proc_map(path: str = "/proc/self/uid_map") -> List[IdMapping]:
    """Parse a /proc/PID/uid_map or gid_map."""
    with open(path) as f:
        mappings = []
        for line in f:
            fields = line.split()
            if len(fields) == 3:
                mappings.append(IdMapping(int(fields[0]), int(fields[1]), int(fields[2])))
        return mappings
