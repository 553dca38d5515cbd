"""`podpy exec`: check the container runs, build the exec'd process from its OCI config, start it
through podpy.runtime.exec, and record the exec/exec_died events."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from podpy.errors import InvalidState, PodpyError

if TYPE_CHECKING:
    from podpy.engine import Engine


class ExecOptions(NamedTuple):
    """What `podpy exec` was asked for."""

    command: Sequence[str]
    interactive: bool = False
    tty: bool = False
    detach: bool = False
    env: Sequence[str] = ()
    env_files: Sequence[str] = ()
    user: Optional[str] = None
    workdir: Optional[str] = None
    privileged: bool = False


def read_oci_config(row: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
    """The container's config.json, as the monitor generated it for the running process, and
    a key naming this version of it (inode, mtime, size: the monitor rewrites it each start)."""
    path = os.path.join(row["config"]["bundle"], "config.json")
    try:
        with open(path) as f:
            st = os.fstat(f.fileno())
            return json.load(f), f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
    except (OSError, ValueError) as err:
        raise PodpyError(
            f"reading the OCI configuration of container {row['id'][:12]}: {err}",
            hint="restart the container to regenerate it",
        ) from err


def cgroup_dirs(eng: Engine, row: Dict[str, Any]) -> List[str]:
    """The container's cgroup directories, as the built-in runtime recorded them (none rootless v1)."""
    path = os.path.join(eng.paths.run_root, "oci", row["id"], "state.json")
    try:
        with open(path) as f:
            cgroup = json.load(f).get("cgroup") or {}
    except (OSError, ValueError):
        return []
    return sorted(set((cgroup.get("paths") or {}).values()))


def _merge_env(base: Sequence[str], extra: Sequence[str]) -> List[str]:
    merged: Dict[str, str] = {}
    for item in list(base) + list(extra):
        key, _, value = item.partition("=")
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def _extra_env(opts: ExecOptions) -> List[str]:
    env: List[str] = []
    for path in opts.env_files:
        from podpy.engine.containers import _read_env_file

        env.extend(_read_env_file(path))
    for item in opts.env:
        if "=" in item:
            env.append(item)
        elif item in os.environ:  # `-e NAME` passes the host's value, as docker does
            env.append(f"{item}={os.environ[item]}")
    return env


def _home_of(rootfs: str, uid: int) -> str:
    """The uid's home in the container's /etc/passwd ("/" if none), as podman sets HOME."""
    from podpy.runtime.mounts import secure_join

    try:
        with open(secure_join(rootfs, "/etc/passwd"), encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def _lookup_running(eng: Engine, ref: str) -> Dict[str, Any]:
    """The container row; the lifecycle module's full re-sync (and its imports) only when the
    monitor of a running container is not alive any more."""
    from podpy.errors import NoSuchObject

    try:
        row = eng.db.lookup("containers", ref)
    except NoSuchObject as err:
        raise NoSuchObject(
            f'no container with name or ID "{ref}" found: no such container'
        ) from err
    state = row.get("state") or {}
    if row["status"] == "running" and _started_at(state.get("monitor_pid")) == state.get(
        "monitor_start"
    ):
        return row
    from podpy.engine.containers import refresh

    return refresh(eng, row)


def _started_at(pid: Optional[int]) -> Optional[int]:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def build_process(row: Dict[str, Any], config: Dict[str, Any], opts: ExecOptions) -> Dict[str, Any]:
    """The OCI process for the exec session: the container's own, with the command, the env
    additions, -u, -w, -t and --privileged applied as podman does."""
    from podpy.runtime import caps as capmod

    process = dict(config.get("process") or {})
    process["args"] = list(opts.command)
    process["terminal"] = bool(opts.tty)
    env = list(process.get("env") or [])
    if opts.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    user = dict(process.get("user") or {})
    home = None
    if opts.user:
        from podpy.runtime.users import resolve_user

        resolved = resolve_user(f"/proc/{row['pid']}/root", opts.user)
        user = {
            "uid": resolved.uid,
            "gid": resolved.gid,
            "additionalGids": resolved.additional_gids,
            "umask": user.get("umask", 0o022),
        }
        home = resolved.home
    if not any(e.startswith("HOME=") for e in env):
        if home is None:
            home = _home_of(f"/proc/{row['pid']}/root", int(user.get("uid", 0)))
        env.append(f"HOME={home or '/'}")
    process["env"] = _merge_env(env, _extra_env(opts))
    process["user"] = user
    if opts.workdir:
        if not opts.workdir.startswith("/"):
            raise PodpyError(
                f"workdir {opts.workdir!r} must be an absolute path",
                hint="give -w an absolute path inside the container",
            )
        process["cwd"] = opts.workdir
    spec_caps = process.get("capabilities") or {}
    bounding = list(spec_caps.get("bounding") or [])
    if opts.privileged:
        bounding = _own_bounding_set(capmod.all_capabilities())
    if opts.privileged or opts.user:
        # podman: a non-root exec user gets no effective capabilities unless added.
        process["capabilities"] = capmod.spec_capabilities(bounding, int(user.get("uid", 0)))
    return process


def _own_bounding_set(names: List[str]) -> List[str]:
    """The capabilities we can hand out at all (podman --privileged: its own bounding set)."""
    from podpy import linux

    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("CapBnd:"))
        mask = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return names
    return [n for n in names if mask & (1 << linux.CAP_NUMBERS[n])]


def _event(eng: Engine, row: Dict[str, Any], status: str, **attrs: Any) -> None:
    attrs.setdefault("image", row["config"].get("image_name") or "")
    eng.db.add_event("container", status, name=row["name"], object_id=row["id"], attributes=attrs)


def exec_in(eng: Engine, ref: str, opts: ExecOptions) -> Tuple[int, str]:
    """Run opts.command in the running container `ref`; returns (its exit code, the session id).
    Detached, the code is 0 once the command has started.

    Raises InvalidState (125) unless the container runs, CommandNotFound (127) / CannotInvoke
    (126) when the command cannot be started.
    """
    from podpy.runtime import exec as rexec

    if not opts.command:
        raise PodpyError(
            "must provide a non-empty command to start an exec session: invalid argument",
            hint="podpy exec CONTAINER COMMAND [ARG...]",
        )
    row = _lookup_running(eng, ref)
    if row["status"] != "running" or not row.get("pid"):
        raise InvalidState(
            "can only create exec sessions on running containers: container state improper"
        )
    config, config_key = read_oci_config(row)
    process = build_process(row, config, opts)
    program, flags = rexec.compiled_seccomp(
        (config.get("linux") or {}).get("seccomp"),
        os.path.join(eng.paths.container_run_dir(row["id"]), "exec-seccomp.json"),
        config_key,
    )
    request = rexec.ExecRequest(
        pid=int(row["pid"]),
        process=process,
        seccomp_program=program,
        seccomp_flags=flags,
        cgroup_dirs=cgroup_dirs(eng, row),
        interactive=opts.interactive,
        detach=opts.detach,
        winsize=rexec.terminal_size() if opts.tty else None,
    )
    session = os.urandom(32).hex()
    started = rexec.start(request)
    _event(eng, row, "exec", execID=session)
    if opts.detach:
        if started.master >= 0:
            os.close(started.master)
        return 0, session
    if opts.tty:
        code = rexec.relay_pty(started, opts.interactive)
    else:
        code = rexec.wait(started.pid)
    _event(eng, row, "exec_died", execID=session, exitCode=code)
    return code, session


# --- typer-free entry (podpy.fastpath calls it: `exec CTR true` is benchmarked against podman) ---

_FLAGS = {"-i": "interactive", "-t": "tty", "-d": "detach", "--privileged": "privileged"}
_FLAGS.update({"--interactive": "interactive", "--tty": "tty", "--detach": "detach"})
_VALUED = {"-e": "env", "--env": "env", "--env-file": "env_files", "-u": "user", "--user": "user"}
_VALUED.update({"-w": "workdir", "--workdir": "workdir", "--detach-keys": "detach_keys"})


def parse_exec_args(args: Sequence[str]) -> Optional[Tuple[str, ExecOptions]]:
    """(container, options) for `exec [OPTIONS] CONTAINER COMMAND...`, or None for anything
    unusual (--help, unknown flags), which the full CLI then handles with its own messages."""
    values: Dict[str, Any] = {"env": [], "env_files": []}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        if name in _VALUED or (arg[:2] in _VALUED and len(arg) > 2 and arg[1] != "-"):
            if name not in _VALUED:  # `-eFOO=bar`, `-u1000`
                name, value, eq = arg[:2], arg[2:], "="
            if not eq:
                if i + 1 >= len(args):
                    return None
                value = args[i + 1]
                i += 1
            key = _VALUED[name]
            if key in ("env", "env_files"):
                values[key].append(value)
            else:
                values[key] = value
        elif arg in _FLAGS:
            values[_FLAGS[arg]] = True
        elif arg[1] != "-" and all(f"-{c}" in _FLAGS for c in arg[1:]):
            for c in arg[1:]:
                values[_FLAGS[f"-{c}"]] = True
        else:
            return None
        i += 1
    if i >= len(args):
        return None
    values.pop("detach_keys", None)
    return args[i], ExecOptions(command=list(args[i + 1 :]), **values)


def fast_exec(global_options: Dict[str, str], args: Sequence[str]) -> Optional[int]:
    """Run `podpy [GLOBAL] exec ARGS` without typer; None when the full CLI must answer."""
    parsed = parse_exec_args(args)
    if parsed is None:
        return None
    import sys

    from podpy import log
    from podpy.engine import Engine, GlobalOptions
    from podpy.errors import PodpyError

    container, opts = parsed
    try:
        log.set_level(global_options.get("log_level", "warn"))
        code, session = exec_in(Engine(GlobalOptions(**global_options)), container, opts)
    except PodpyError as err:
        sys.stderr.write(f"Error: {err.message}\n")
        if err.hint:
            sys.stderr.write(f"Hint: {err.hint}\n")
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    if opts.detach:
        sys.stdout.write(session + "\n")
    sys.stdout.flush()
    return code
