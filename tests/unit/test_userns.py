"""podpy/userns.py: the one reader of /proc/self/uid_map, on the host and inside a throw-away
user namespace (`unshare -Ur`, any user), where podpy's recorded host uid takes over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from podpy import userns
from podpy.idmap import IdMapping, read_proc_map

REPO = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, os, sys; sys.path.insert(0, sys.argv[1]);"
    "from podpy import userns;"
    "print(json.dumps([userns.in_initial_userns(), os.geteuid(),"
    " userns.effective_uid({userns.ROOTLESS_UID_ENV: '4321'}), userns.effective_uid({})]))"
)


def test_agrees_with_the_id_map_parser() -> None:
    assert userns.in_initial_userns() is (read_proc_map() == [IdMapping(0, 0, 4294967295)])


def test_recorded_uid_counts_only_inside_a_user_namespace() -> None:
    if userns.in_initial_userns():  # on the host the record is ignored
        assert userns.effective_uid({userns.ROOTLESS_UID_ENV: "4321"}) == os.geteuid()
    done = subprocess.run(
        ["unshare", "-Ur", sys.executable, "-c", PROBE, str(REPO)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    initial, euid, recorded, plain = json.loads(done.stdout)
    assert (initial, euid, recorded, plain) == (False, 0, 4321, 0)


def test_the_rootless_modules_share_its_names() -> None:
    import podpy.config
    import podpy.rootless

    assert podpy.rootless.ROOTLESS_UID_ENV == podpy.config.ROOTLESS_UID_ENV == "_PODPY_ROOTLESS_UID"
    assert podpy.rootless.in_initial_userns is userns.in_initial_userns
