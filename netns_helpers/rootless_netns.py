"""The rootless network namespace (podman 4's "rootless netns"): one per user and store, in its
own user namespace, holding the bridges of the user's networks, with one slirp4netns for
outbound traffic. Rootless containers on user-defined networks join its user namespace (so
veth pairs can link the two network namespaces) and get a veth onto its bridges.

Helper op `rootless-netns` (run detached by podpy.engine.networks): a keeper process stays in
the host's namespaces and runs slirp4netns; its forked child enters a new user namespace and a
new network namespace and just waits (it is the namespace holder). The pid file lists both.
SIGTERM to the keeper ends all three. Stdlib only.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any, Dict, Mapping

SLIRP_DNS = "10.0.2.3"


def _loopback_up() -> None:
    """A new network namespace has `lo` down (SIOCGIFFLAGS / SIOCSIFFLAGS with IFF_UP)."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, 0x8913, request))[1]
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 0x1))


def _hold(ready_w: int) -> None:
    """The child: new user + network namespace, lo up, then wait to be killed."""
    from podpy import linux, rootless

    try:
        rootless.enter_userns_in_place()
        linux.unshare(linux.CLONE_NEWNET)
        _loopback_up()
        os.write(ready_w, b"R")
    except BaseException as err:  # tell the keeper why
        os.write(ready_w, b"E" + str(err).encode(errors="replace")[:1000])
        os._exit(1)
    os.close(ready_w)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()


def serve(request: Mapping[str, Any]) -> Dict[str, Any]:
    from netns_helpers.slirp import SlirpConfig, start_slirp4netns
    from podpy import linux
    from podpy.errors import PodpyError

    run_dir = str(request["run_dir"])
    pid_file = str(request["pid_file"])
    linux.set_child_subreaper()
    ready_r, ready_w = os.pipe()
    holder = os.fork()
    if holder == 0:
        os.close(ready_r)
        linux.set_pdeathsig(signal.SIGKILL)
        _hold(ready_w)
    os.close(ready_w)
    answer = os.read(ready_r, 2048)
    os.close(ready_r)
    if answer != b"R":
        os.waitpid(holder, 0)
        raise PodpyError(
            "creating the rootless network namespace: "
            + (answer[1:].decode(errors="replace") or "the holder died")
        )
    try:
        slirp = start_slirp4netns(
            holder, SlirpConfig(), None, log_path=os.path.join(run_dir, "slirp4netns.log")
        )
    except BaseException:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
        raise
    tmp = f"{pid_file}.tmp"
    with open(tmp, "w") as f:
        json.dump({"keeper": os.getpid(), "holder": holder, "slirp": slirp.pid}, f)
    os.replace(tmp, pid_file)

    def finish(*_args: object) -> None:
        try:
            os.kill(holder, signal.SIGKILL)
        except OSError:
            pass
        slirp.stop()
        os._exit(0)

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    while True:  # reap; if the holder or slirp4netns dies, the namespace is useless: end
        try:
            pid, _status = os.waitpid(-1, 0)
        except ChildProcessError:
            finish()
        except InterruptedError:
            continue
        if pid in (holder, slirp.pid):
            finish()
