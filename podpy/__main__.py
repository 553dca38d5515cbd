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
        return code
    from podpy.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
