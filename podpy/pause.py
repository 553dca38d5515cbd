"""The pod infra process: holds the pod's namespaces open, reaps orphans, exits on TERM/INT/HUP.

Stdlib only and self-contained (no podpy imports): the pod engine copies this very file into the
infra container's root and runs it with the host's python3 (`python3 -I -S /pause.py`), and the
zipapp can run it too (`podpy.pyz __pause`). As PID 1 of a pid namespace a process ignores every
signal it has no handler for, so the handlers below are what make `pod stop` quick.
"""

import os
import signal
import sys


def _reap(*_args: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _leave(signum: int, _frame: object) -> None:
    _reap()
    os._exit(0 if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) else 128 + signum)


def main(argv: object = None) -> int:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _leave)
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
