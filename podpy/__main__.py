"""Entry point for every role of the zipapp; dispatches on argv[1] before importing anything heavy.

Roles: `__monitor` (the per-container monitor, stdlib only), `__netns` (network helper),
otherwise the CLI. `--version` is answered here so it never pays for typer.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:  # no `typing` import: start-up matters
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == "__monitor":
        from podpy.monitor.main import main as monitor_main

        return monitor_main(args[1:])
    if args and args[0] == "__netns":
        from netns_helpers.__main__ import main as netns_main

        return netns_main(args[1:])
    if args and args[0] == "__pause":
        from podpy.pause import main as pause_main

        return pause_main(args[1:])
    if args in (["--version"], ["-v"]):
        from podpy import __version__

        sys.stdout.write(f"podpy version {__version__}\n")
        return 0
    from podpy.fastpath import try_fast

    code = try_fast(args)
    if code is not None:
        if argv is None:
            _end_now(code)
        return code
    from podpy.cli import main as cli_main

    return cli_main(args)


def _end_now(code: int) -> None:
    """End a fast-path command without the interpreter's teardown (module and object
    finalisation, ~10-20 ms) and without closing the state DB: closing SQLite's last
    connection checkpoints the WAL with fsyncs, work the next writer's checkpoint does anyway
    (an unclosed WAL database is SQLite's normal state after a process ends). Everything
    the command wrote is committed; only stdio buffers are left to flush."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the output has nowhere to go
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
