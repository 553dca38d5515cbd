"""The bodies of `podpy oci create|start|state|kill|delete|list|pause|resume|run`, without typer.

Each takes the `oci` group's options (runc's global flags: `--root`, and the ones accepted
for runc compatibility) and the verb's, as `podpy.cliopts.parse_group()` (or typer, from
the same tables) produced them, prints what the typer command printed, and returns the exit
code; failures raise PodpyError for the caller to report. `podpy/cli/oci.py` (typer) and
`podpy/fastpath.py` both call these: standard OCI tooling runs one `podpy oci` process per
operation, so none of them should pay for typer.

Imports only podpy.ctrverbs' echo (sys only): the runtime is imported when
a verb runs.
"""

from __future__ import annotations

from podpy.ctrverbs import echo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from podpy.runtime.builtin import BuiltinRuntime


def runtime(group: dict, enter_userns: bool = False) -> BuiltinRuntime:
    """The built-in runtime for this invocation; rootless callers first become namespace root."""
    from podpy.runtime.builtin import BuiltinRuntime, default_root

    root = group.get("root") or default_root()
    if enter_userns:
        from podpy.rootless import become_root_in_userns, needs_userns

        if needs_userns():
            import os

            os.makedirs(root, mode=0o700, exist_ok=True)
            become_root_in_userns()
    return BuiltinRuntime(root)


def create(group: dict, kw: dict) -> int:
    """Create a container from a bundle; its process waits for `start`."""
    runtime(group, enter_userns=True).create(
        kw["bundle"],
        kw["container_id"],
        pid_file=kw["pid_file"],
        console_socket=kw["console_socket"],
        preserve_fds=kw["preserve_fds"],
    )
    return 0


def start(group: dict, kw: dict) -> int:
    """Start the process of a created container."""
    runtime(group).start(kw["container_id"])
    return 0


def state(group: dict, kw: dict) -> int:
    """Print the OCI state JSON of a container."""
    import json

    echo(json.dumps(runtime(group).state(kw["container_id"]), indent=2))
    return 0


def kill(group: dict, kw: dict) -> int:
    """Send a signal (default TERM) to a container's init process."""
    runtime(group).kill(kw["container_id"], kw["signal"], all_processes=kw["all_processes"])
    return 0


def delete(group: dict, kw: dict) -> int:
    """Delete a stopped container's runtime state (the bundle is left alone)."""
    runtime(group).delete(kw["container_id"], force=kw["force"])
    return 0


def pause(group: dict, kw: dict) -> int:
    """Freeze every process of a running container (needs its cgroup)."""
    runtime(group).pause(kw["container_id"], True)
    return 0


def resume(group: dict, kw: dict) -> int:
    """Thaw a paused container."""
    runtime(group).pause(kw["container_id"], False)
    return 0


def list_containers(group: dict, kw: dict) -> int:
    """List containers under the state root."""
    items = runtime(group).list()
    if kw["quiet"]:
        for item in items:
            echo(item["id"])
        return 0
    if kw["fmt"] == "json":
        import json

        echo(json.dumps(items))
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    for item in items:
        rows.append(
            (
                item["id"],
                str(item["pid"]),
                item["status"],
                item["bundle"],
                item["created"],
                item.get("owner") or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def run(group: dict, kw: dict) -> int:
    """Create and start a container, wait for it, delete it; exits with its exit code."""
    return runtime(group, enter_userns=True).run(
        kw["bundle"],
        kw["container_id"],
        console_socket=kw["console_socket"],
        detach=kw["detach"],
        pid_file=kw["pid_file"],
    )


# Verb -> body (podpy.cliopts.OCI_TABLES has the same keys); looked up at call time.
VERBS = {
    "create": create,
    "start": start,
    "state": state,
    "kill": kill,
    "delete": delete,
    "list": list_containers,
    "pause": pause,
    "resume": resume,
    "run": run,
}
