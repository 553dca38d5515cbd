"""Which user namespace this process is in, read from /proc/self/uid_map.

One cheap answer for every layer (no ctypes, no id-map parser: the CLI, the monitor and the
network helper ask at every start), instead of each module reading the file itself.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

# podpy.rootless records the user's host uid here before it enters podpy's user namespace.
ROOTLESS_UID_ENV = "_PODPY_ROOTLESS_UID"

_IDENTITY_MAP = ["0", "0", "4294967295"]


def in_initial_userns() -> bool:
    """Outside any user namespace (podpy's or anyone's). Unreadable /proc counts as the host."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == _IDENTITY_MAP
    except OSError:
        return True


def effective_uid(env: Mapping[str, str]) -> int:
    """geteuid(), except inside podpy's user namespace (uid 0 there, e.g. under `podpy
    unshare`), where the host uid podpy.rootless recorded keeps the store rootless."""
    import os

    euid = os.geteuid()
    recorded = env.get(ROOTLESS_UID_ENV, "")
    if euid == 0 and recorded.isdigit() and not in_initial_userns():
        return int(recorded)
    return euid
