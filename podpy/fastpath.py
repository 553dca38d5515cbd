"""Start-up fast path (no `typing` import either: every millisecond here is paid by `ps`):
`podpy ps` (the command scripts and prompts run most), `exec`, and the lifecycle verbs
`run`, `create`, `start`, `stop`, `kill`, `rm`, and `oci VERB` (the built-in runtime's
runc-compatible CLI, one process per call from OCI tooling) answered without importing
typer/click, which cost more than podman's whole `ps`. The lifecycle and oci verbs parse
argv with the same option tables typer's commands are built from (podpy/cliopts.py) and
run the same bodies (podpy/ctrverbs.py, podpy/ociverbs.py). Any flag or form the fast
parser does not know sends the command to the full CLI, so behaviour and messages never
differ, only speed."""

from __future__ import annotations

_PS_PATHS = (["ps"], ["container", "ps"], ["container", "ls"], ["container", "list"])
_EXEC_PATHS = (["exec"], ["container", "exec"])  # podpy.engine.exec.fast_exec parses the rest
# podpy.cliopts.TABLES parses the rest (`container remove` is rm's hidden alias).
_VERBS = ("run", "create", "start", "stop", "kill", "rm")
_VERB_PATHS = tuple([v] for v in _VERBS) + tuple(["container", v] for v in _VERBS + ("remove",))
_OCI_PATH = ["oci"]  # podpy.cliopts.parse_group parses the group options, verb and its args
_GLOBAL_VALUE = {"--root": "root", "--runroot": "runroot", "--log-level": "log_level"}
_BOOL_FLAGS = {
    "-a": "all",
    "--all": "all",
    "-q": "quiet",
    "--quiet": "quiet",
    "-l": "latest",
    "--latest": "latest",
    "--no-trunc": "no_trunc",
    "--noheading": "noheading",
}
_VALUE_FLAGS = {
    "-n": "last",
    "--last": "last",
    "-f": "filters",
    "--filter": "filters",
    "--format": "format",
}


def _split(args: list[str]) -> tuple[dict, list[str], list[str]] | None:
    """(global options, command words, command args) or None when not a plain ps call."""
    globals_: dict = {}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name, eq, value = args[i].partition("=")
        if name not in _GLOBAL_VALUE:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            value = args[i + 1]
            i += 1
        globals_[_GLOBAL_VALUE[name]] = value
        i += 1
    for path in _PS_PATHS + _EXEC_PATHS + _VERB_PATHS + (_OCI_PATH,):
        if args[i : i + len(path)] == path:
            return globals_, path, args[i + len(path) :]
    return None


def _parse_ps(args: list[str]) -> dict | None:
    opts: dict = {"filters": []}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in _VALUE_FLAGS:
            if not eq:
                if i + 1 >= len(args):
                    return None
                value = args[i + 1]
                i += 1
            key = _VALUE_FLAGS[name]
            if key == "filters":
                opts["filters"].append(value)
            elif key == "last":
                if not value.lstrip("-").isdigit():
                    return None
                opts["last"] = int(value)
            else:
                opts[key] = value
        elif arg in _BOOL_FLAGS:
            opts[_BOOL_FLAGS[arg]] = True
        elif (
            len(arg) > 2
            and arg[0] == "-"
            and arg[1] != "-"
            and all(f"-{c}" in _BOOL_FLAGS for c in arg[1:])
        ):
            for c in arg[1:]:
                opts[_BOOL_FLAGS[f"-{c}"]] = True
        else:
            return None  # --help, unknown flags, arguments: the full CLI answers
        i += 1
    return opts


def _flush(stream: object) -> None:
    try:
        stream.flush()  # type: ignore[attr-defined]
    except (OSError, ValueError):  # a closed pipe (`| head`): the output has nowhere to go
        pass


def _run_verb(globals_: dict, verb: str, rest: list[str]) -> int | None:
    from podpy.cliopts import TABLES, parse

    kw = parse(TABLES[verb], rest)
    if kw is None:
        return None

    def call() -> int:
        from podpy.ctrverbs import VERBS
        from podpy.engine import Engine, GlobalOptions

        return VERBS[verb](Engine(GlobalOptions(**globals_)), kw)

    return _answer(globals_, call)


def _run_oci(globals_: dict, rest: list[str]) -> int | None:
    """`podpy oci [--root R ...] VERB ...`: podpy's own global options only set the log
    level there, as in the typer CLI (the oci verbs use no Engine)."""
    from podpy.cliopts import OCI, OCI_TABLES, parse_group

    parsed = parse_group(OCI, OCI_TABLES, rest)
    if parsed is None:
        return None
    group, verb, kw = parsed

    def call() -> int:
        from podpy.ociverbs import VERBS

        return VERBS[verb](group, kw)

    return _answer(globals_, call)


def _answer(globals_: dict, call: object) -> int:
    """Run a verb body as podpy.cli.main would: errors reported, exit codes mapped."""
    import sys

    from podpy import log
    from podpy.errors import PodpyError, print_error, report_internal_error

    try:
        log.set_level(globals_.get("log_level", "warn"))
        return call()  # type: ignore[operator]
    except PodpyError as err:
        print_error(err)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # a bug: as podpy.cli.main reports it
        return report_internal_error(err)
    finally:
        _flush(sys.stdout)


def try_fast(args: list[str]) -> int | None:
    """The exit code if this invocation was handled here, None to use the full CLI."""
    split = _split(args)
    if split is None:
        return None
    globals_, path, rest = split
    if path == _OCI_PATH:
        return _run_oci(globals_, rest)
    if path[-1] == "exec":
        from podpy.engine.exec import fast_exec

        return fast_exec(globals_, rest)
    if path[-1] != "ps":
        return _run_verb(globals_, path[-1], rest)
    opts = _parse_ps(rest)
    if opts is None:
        return None
    import sys

    from podpy import log
    from podpy.engine import Engine, GlobalOptions
    from podpy.errors import PodpyError, print_error
    from podpy.psview import PsOptions, print_ps

    try:
        log.set_level(globals_.get("log_level", "warn"))
        eng = Engine(GlobalOptions(**globals_))
        print_ps(eng, PsOptions(**opts))
    except PodpyError as err:
        print_error(err)
        return err.exit_code
    except BrokenPipeError:
        return 0
    finally:
        _flush(sys.stdout)
    return 0
