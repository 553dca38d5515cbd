"""The bodies of run, create, start, stop, kill and rm, without typer.

Each takes the Engine and the keyword arguments `podpy.cliopts.parse()` (or typer, from the
same table) produced, prints what podman prints, and returns the exit code (0, or the code
of the last failed target for multi-target verbs); single failures raise PodpyError for the
caller to report. `podpy/cli/container.py` (typer) and `podpy/fastpath.py` both call these.
"""

from __future__ import annotations

import sys

# podman's exit status for `rm`: 1 = no such container, 2 = running or paused, 125 = other.
_RM_EXIT_NO_SUCH = 1
_RM_EXIT_STATE = 2


def echo(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def create_options(kw: dict) -> object:
    """engine.types.CreateOptions from run/create's parsed options (consumes `kw`)."""
    from podpy.cliopts import parse_bool
    from podpy.engine.types import CreateOptions

    entrypoint = kw.pop("entrypoint")
    if entrypoint is not None:
        if entrypoint.startswith("["):
            import json

            entrypoint = json.loads(entrypoint)
        else:
            entrypoint = [entrypoint] if entrypoint else []
    labels = {}
    for item in kw.pop("label"):
        key, _, value = item.partition("=")
        labels[key] = value
    image = kw.pop("image")
    command = list(kw.pop("command") or [])
    tls = parse_bool(kw.pop("tls_verify"), "--tls-verify")  # podman's --tls-verify=false
    return CreateOptions(
        image=image, command=command, entrypoint=entrypoint, labels=labels, tls_verify=tls, **kw
    )


def _make_progress(quiet: bool) -> object:
    """Pull progress, only built when the image must be pulled (it imports the typer CLI)."""
    from podpy.cli.image import _progress

    return _progress(quiet)


def _create(eng: object, kw: dict) -> dict:
    from podpy.engine import containers

    opts = create_options(kw)
    quiet = bool(getattr(opts, "quiet", False))
    return containers.create(eng, opts, make_progress=lambda: _make_progress(quiet))


def run(eng: object, kw: dict) -> int:
    """`podpy run`: create, then become the monitor (foreground) or start it detached."""
    from podpy.engine import containers
    from podpy.errors import NoSuchObject, PodpyError

    detach, remove = kw["detach"], kw["remove"]
    row = _create(eng, kw)
    try:
        if detach:
            containers.start(eng, row["id"])
            echo(row["id"])
            return 0
        containers.exec_monitor(eng, row)
    except PodpyError:
        # Refused before the monitor ran (a taken port, say): --rm leaves nothing behind.
        if remove:
            try:
                containers.remove(eng, row["id"], force=True)
            except NoSuchObject:
                pass  # the monitor already removed it
        raise
    return 0


def create(eng: object, kw: dict) -> int:
    """`podpy create`: prints the new container's id."""
    echo(_create(eng, kw)["id"])
    return 0


def for_each(refs: list, action: object) -> int:
    """Apply action to every target, print each result, report every error; the exit code
    of the last failure, 0 if none (podman's multi-target behaviour)."""
    from podpy.errors import PodpyError, print_error

    code = 0
    for ref in refs:
        try:
            out = action(ref)  # type: ignore[operator]
        except PodpyError as err:
            print_error(err)
            code = err.exit_code
            continue
        if out is not None:
            echo(out)
    return code


def resolve_all(eng: object, refs: list, skip_missing: bool = False) -> list:
    """(ref, row) for every target, looked up before any is acted on: like podman, one unknown
    name fails the whole command with nothing done (unless skip_missing: --ignore, rm -f)."""
    from podpy.engine import containers
    from podpy.errors import NoSuchObject

    out = []
    for ref in refs:
        try:
            out.append((ref, containers.lookup(eng, ref)))
        except NoSuchObject:
            if not skip_missing:
                raise
    return out


def targets(eng: object, refs: list | None, all_: bool, cidfiles: list, running_only: bool) -> list:
    """The containers a verb acts on: named ones, those in --cidfile files, or all."""
    from podpy.errors import PodpyError

    out = list(refs or [])
    for path in cidfiles:
        try:
            with open(path) as f:
                out.append(f.read().strip())
        except OSError as err:
            raise PodpyError(f"reading CIDFile {path}: {err.strerror}") from err
    if all_:
        from podpy.engine import containers

        rows = containers.list_containers(eng, all_containers=not running_only)
        out.extend(r["id"] for r in rows)
    if not out and not all_:
        raise PodpyError("you must provide at least one name or id")
    return out


def start(eng: object, kw: dict) -> int:
    from podpy.engine import containers

    refs = kw["containers_"]
    if kw["attach"]:
        if len(refs) != 1:
            from podpy.errors import PodpyError

            raise PodpyError("you cannot start and attach multiple containers at once")
        row = containers.lookup(eng, refs[0])
        containers.exec_monitor(eng, row)
        return 0
    # podman prints nothing for a container that was already running
    was_running = {
        ref for ref, row in resolve_all(eng, refs) if row["status"] in containers.RUNNING_STATES
    }

    def act(ref: str) -> str | None:
        containers.start(eng, ref)
        return None if ref in was_running else ref

    return for_each(refs, act)


def stop(eng: object, kw: dict) -> int:
    from podpy.engine import containers
    from podpy.errors import NoSuchObject

    # podman's stop --all covers every container (stopping a stopped one is no error)
    refs = targets(eng, kw["containers_"], kw["all_"], kw["cidfile"], running_only=False)
    refs = [ref for ref, _ in resolve_all(eng, refs, skip_missing=kw["ignore"])]

    def act(ref: str) -> str | None:
        try:
            containers.stop(eng, ref, kw["timeout"])
        except NoSuchObject:
            if kw["ignore"]:
                return None
            raise
        return ref

    return for_each(refs, act)


def kill(eng: object, kw: dict) -> int:
    from podpy.engine import containers
    from podpy.errors import PodpyError

    # podman checks the signal before any container (0 and >64 are no signals to send)
    number = containers.signal_number(kw["signal_"])
    if number == 0:
        raise PodpyError(f"invalid signal: {kw['signal_']}")
    if not 0 < number <= 64:
        raise PodpyError("valid signals are 1 through 64")
    refs = targets(eng, kw["containers_"], kw["all_"], [], running_only=True)
    resolve_all(eng, refs)
    return for_each(refs, lambda ref: (containers.kill(eng, ref, kw["signal_"]), ref)[1])


def rm(eng: object, kw: dict) -> int:
    from podpy.engine import containers
    from podpy.errors import InvalidState, NoSuchObject

    refs = targets(eng, kw["containers_"], kw["all_"], kw["cidfile"], running_only=False)
    # podman: --force implies --ignore; an unknown name fails before anything is removed
    ignore = kw["ignore"] or kw["force"] or kw["all_"]
    try:
        refs = [ref for ref, _ in resolve_all(eng, refs, skip_missing=ignore)]
    except NoSuchObject as err:
        err.exit_code = _RM_EXIT_NO_SUCH
        raise

    def act(ref: str) -> str | None:
        try:
            # -a implies --depend, as in podman 4: an infra container takes its pod along
            containers.remove(eng, ref, force=kw["force"], volumes=kw["volumes"], depend=kw["all_"])
            return ref  # podman prints the name or id as given
        except NoSuchObject as err:
            if ignore:  # -a: gone meanwhile (with its pod)
                return None
            err.exit_code = _RM_EXIT_NO_SUCH
            raise
        except InvalidState as err:
            err.exit_code = _RM_EXIT_STATE
            raise

    return for_each(refs, act)


VERBS = {
    "run": run,
    "create": create,
    "start": start,
    "stop": stop,
    "kill": kill,
    "rm": rm,
    "remove": rm,
}
