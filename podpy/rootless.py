"""Run code as root of a fresh user namespace mapped like podman's (0 -> the user, 1.. -> sub-ids).

Recipe (see docs in platform-notes): fork; the child unshares CLONE_NEWUSER and signals a pipe;
the parent writes the maps with newuidmap/newgidmap (or directly, for the single-id fallback);
the child then becomes uid/gid 0 and runs the payload. The namespace is new for every call, but
the maps are the same each time, so file ownership stays consistent between commands.

Public API:
  needs_userns()                    -> bool: True when not root (a user namespace is needed)
  run_in_userns(fn)                 -> int: fork, run fn() as namespace root, return its exit code
  exec_in_userns(argv, env)         -> int: run a program as namespace root, forwarding signals
  become_root_in_userns()           -> None: the rest of THIS program runs as namespace root
                                       (the original process only waits and exits with its code)
  enter_userns_in_place()           -> None: this very process (same pid) becomes namespace root
  map_ids(pid, maps)                -> None: write the maps of a child that unshared by itself
  find_helper(name)                 -> str: path of newuidmap/newgidmap (or MissingTool)
  rootless_uid()                    -> int: the host uid of the user, also inside the namespace
  unshare(paths, argv)              -> int: `podpy unshare` (store env vars + exec_in_userns)
"""

from __future__ import annotations

import os
import sys

from podpy.errors import CommandNotFound, MissingTool, PodpyError
from podpy.idmap import (
    SUBGID_FILE,
    SUBUID_FILE,
    UserIdMaps,
    newidmap_args,
    user_id_maps,
)
from podpy.userns import ROOTLESS_UID_ENV, in_initial_userns

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

    from podpy.paths import Paths

# A colon-separated list of directories that replaces the default helper search
# (like containers.conf `helper_binaries_dir`); tests use it to hide newuidmap.
HELPER_DIRS_ENV = "PODPY_HELPER_BINARIES_DIR"
# ROOTLESS_UID_ENV (podpy.userns) is set in the environment of everything started inside the
# namespace: the host uid of the user, so a podpy started there (e.g. under `podpy unshare`)
# still knows it is rootless.
DEFAULT_HELPER_DIRS = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin")
_PACKAGE_HINT = 'install the "uidmap" package (apt install uidmap / dnf install shadow-utils)'
# Signals the waiting parent passes on to the namespace child (names: `signal` is imported
# lazily, it pulls in enum).
_FORWARDED_SIGNALS = (
    "SIGTERM",
    "SIGHUP",
    "SIGQUIT",
    "SIGINT",
    "SIGUSR1",
    "SIGUSR2",
    "SIGCONT",
    "SIGWINCH",
)


def _forwarded_signals() -> List[int]:
    import signal

    return [getattr(signal, name) for name in _FORWARDED_SIGNALS]


def needs_userns() -> bool:
    """Root on the host (or already root inside a namespace) needs no new user namespace."""
    return os.geteuid() != 0


def rootless_uid() -> int:
    """The user's host uid: geteuid() outside a namespace, the recorded uid inside one."""
    recorded = os.environ.get(ROOTLESS_UID_ENV)
    if recorded and recorded.isdigit() and not in_initial_userns():
        return int(recorded)
    return os.geteuid()


def find_helper(name: str, search_dirs: Optional[Sequence[str]] = None) -> str:
    """Absolute path of a setuid helper; search_dirs (or $PODPY_HELPER_BINARIES_DIR) replace
    the default search of $PATH plus the usual system directories."""
    if search_dirs is None:
        override = os.environ.get(HELPER_DIRS_ENV)
        if override is not None:
            search_dirs = [d for d in override.split(":") if d]
        else:
            path_dirs = [d for d in os.environ.get("PATH", "").split(":") if d]
            search_dirs = path_dirs + [d for d in DEFAULT_HELPER_DIRS if d not in path_dirs]
    for directory in search_dirs:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise MissingTool(f"{name} not found: {_PACKAGE_HINT}")


def single_id_warning(maps: UserIdMaps) -> str:
    """The warning printed when the user has no delegated sub-ids (names the file and the fix)."""
    missing = SUBUID_FILE if not maps.uid_ranges else SUBGID_FILE
    kind = "subuid" if not maps.uid_ranges else "subgid"
    return (
        f'no {kind} ranges found for user "{maps.user}" in {missing}: running with a single id '
        f"mapping; fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "
        f"{maps.user}"
    )


def _write_proc(pid: int, name: str, content: str) -> None:
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write(content)


def _newidmap_error(helper: str, pid: int, args: List[str], output: str, code: int) -> PodpyError:
    detail = output.strip() or f"exit status {code}"
    return PodpyError(
        f"{os.path.basename(helper)} {pid} {' '.join(args)} failed: {detail}",
        hint="check that the ranges in /etc/subuid and /etc/subgid belong to this user "
        "and that the helper is setuid root (or has cap_setuid/cap_setgid)",
    )


def _run_newidmaps(pid: int, jobs: Sequence[Tuple[str, List[str]]]) -> None:
    """Run newuidmap and newgidmap (helper, args) on `pid` side by side: posix_spawn (vfork,
    no `subprocess` import: ~7 ms on the rootless start path), stdin /dev/null, stdout and
    stderr into one pipe each for the error message. Raises for the first that failed."""
    running = []
    try:
        for helper, args in jobs:
            read_fd, write_fd = os.pipe()
            try:
                child = os.posix_spawn(
                    helper,
                    [helper, str(pid), *args],
                    os.environ,
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_DUP2, write_fd, 1),
                        (os.POSIX_SPAWN_DUP2, write_fd, 2),
                    ],
                )
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
            running.append((helper, args, child, read_fd))
    finally:
        failure = None
        for helper, args, child, read_fd in running:
            with os.fdopen(read_fd, "rb") as out:  # EOF once the helper has exited
                output = out.read()
            _, status = os.waitpid(child, 0)
            code = os.waitstatus_to_exitcode(status)
            if code != 0 and failure is None:
                failure = _newidmap_error(helper, pid, args, output.decode(errors="replace"), code)
        if failure is not None:
            raise failure


def map_ids(
    pid: int,
    maps: UserIdMaps,
    helper_dirs: Optional[Sequence[str]] = None,
    helpers: Optional[Tuple[str, str]] = None,
) -> None:
    """Write uid_map/gid_map for `pid`, which has just unshared CLONE_NEWUSER.

    With sub-id ranges this needs newuidmap/newgidmap (setuid): an unprivileged process may
    only map its own id. Without ranges the single-id map is written directly; gid_map then
    requires `deny` in setgroups first (user_namespaces(7), since Linux 3.19).
    `helpers`: the (newuidmap, newgidmap) paths when the caller has found them already.
    """
    if maps.single_id:
        _write_proc(pid, "setgroups", "deny")
        _write_proc(pid, "uid_map", f"0 {maps.uid} 1\n")
        _write_proc(pid, "gid_map", f"0 {maps.gid} 1\n")
        return
    if helpers is None:
        helpers = (find_helper("newuidmap", helper_dirs), find_helper("newgidmap", helper_dirs))
    _run_newidmaps(
        pid,
        [
            (helpers[0], newidmap_args(maps.uid_mappings)),
            (helpers[1], newidmap_args(maps.gid_mappings)),
        ],
    )


def _prepare_maps(maps: Optional[UserIdMaps], helper_dirs: Optional[Sequence[str]]) -> UserIdMaps:
    """Resolve the maps and fail before forking if a helper is missing."""
    return _prepare_maps_and_helpers(maps, helper_dirs)[0]


def _prepare_maps_and_helpers(
    maps: Optional[UserIdMaps], helper_dirs: Optional[Sequence[str]]
) -> Tuple[UserIdMaps, Optional[Tuple[str, str]]]:
    """The maps and the (newuidmap, newgidmap) paths (None for a single-id map); fails
    before forking if a helper is missing."""
    if maps is None:
        maps = user_id_maps()
    if maps.single_id:
        from podpy import log

        log.warn_once(single_id_warning(maps))
        return maps, None
    return maps, (find_helper("newuidmap", helper_dirs), find_helper("newgidmap", helper_dirs))


def _become_root(single_id: bool) -> None:
    """In the child, after the maps are written: take uid/gid 0 of the namespace."""
    os.setresgid(0, 0, 0)
    if not single_id:
        # Drop the host's supplementary groups (they would show as nogroup); not allowed
        # once setgroups is denied, which is the single-id case.
        os.setgroups([])
    os.setresuid(0, 0, 0)


def _exit_status(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128+signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _fork_holding_signals() -> Tuple[int, Set[signal.Signals]]:
    """fork() with the forwarded signals blocked in the parent until it can forward them
    (otherwise a SIGTERM arriving right after fork would kill only the parent). Returns
    (pid, the mask to restore); the child gets its mask back at once."""
    import signal

    sys.stdout.flush()
    sys.stderr.flush()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _forwarded_signals())
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return pid, held


def _wait_forwarding_signals(pid: int, held: Set[signal.Signals]) -> int:
    """Wait for pid, passing on the signals this process receives (also those that arrived
    while they were held since the fork)."""
    import signal

    # On a terminal, Ctrl-C/Ctrl-\ already reach the child (same foreground group).
    on_tty = os.isatty(0)
    previous: Dict[int, object] = {}

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in _forwarded_signals():
        try:
            if on_tty and sig in (signal.SIGINT, signal.SIGQUIT):
                previous[sig] = signal.signal(sig, signal.SIG_IGN)
            else:
                previous[sig] = signal.signal(sig, forward)
        except (ValueError, OSError):  # not the main thread, or not catchable
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, held)
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                return _exit_status(status)
            except ChildProcessError:
                return 125
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _fork_into_userns(
    maps: UserIdMaps, helper_dirs: Optional[Sequence[str]]
) -> Tuple[int, Set[signal.Signals]]:
    """Fork; in the child return pid 0 as root of a new, mapped user namespace; in the parent
    return the child's pid once the maps are written (or raise, with the child reaped),
    with the signal mask _wait_forwarding_signals must restore."""
    import signal

    from podpy import linux

    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    pid, held = _fork_holding_signals()
    if pid == 0:
        os.close(to_parent_r)
        os.close(to_child_w)
        try:
            linux.unshare(linux.CLONE_NEWUSER)
        except OSError as err:
            os.write(to_parent_w, b"E" + str(err).encode())
            os._exit(125)
        os.write(to_parent_w, b"R")
        os.close(to_parent_w)
        go = os.read(to_child_r, 1)
        os.close(to_child_r)
        if go != b"G":
            os._exit(125)
        try:
            _become_root(maps.single_id)
        except OSError as err:
            sys.stderr.write(f"Error: cannot become root in the user namespace: {err}\n")
            os._exit(125)
        os.environ[ROOTLESS_UID_ENV] = str(maps.uid)
        return 0, held
    os.close(to_parent_w)
    os.close(to_child_r)
    try:
        reply = os.read(to_parent_r, 4096)
        if not reply.startswith(b"R"):
            detail = reply[1:].decode(errors="replace") or "the child exited early"
            raise PodpyError(
                f"cannot create a user namespace: {detail}",
                hint="enable unprivileged user namespaces "
                "(sysctl user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1)",
            )
        map_ids(pid, maps, helper_dirs)
        os.write(to_child_w, b"G")
    except BaseException:
        try:
            os.write(to_child_w, b"X")
        except OSError:
            pass
        os.waitpid(pid, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    finally:
        os.close(to_parent_r)
        os.close(to_child_w)
    return pid, held


def _child_exit(code: object) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0)


def run_in_userns(
    fn: Callable[[], int],
    *,
    maps: Optional[UserIdMaps] = None,
    helper_dirs: Optional[Sequence[str]] = None,
) -> int:
    """Run fn() as root of a new user namespace in a forked child and return its exit code.

    As root no namespace is needed and fn() runs in this process. In the child, a PodpyError
    is printed as `Error: ...` and becomes its exit code. Call before opening sqlite
    connections or starting threads: the child must not share them.
    """
    if not needs_userns():
        return fn()
    maps = _prepare_maps(maps, helper_dirs)
    pid, held = _fork_into_userns(maps, helper_dirs)
    if pid == 0:
        code: object = 125
        try:
            code = fn()
        except PodpyError as err:
            sys.stderr.write(f"Error: {err.message}\n")
            if err.hint:
                sys.stderr.write(f"Hint: {err.hint}\n")
            code = err.exit_code
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        _child_exit(code)
    return _wait_forwarding_signals(pid, held)


def resolve_command(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """argv[0] as execvp would find it with env's PATH; CommandNotFound (127) otherwise."""
    import shutil

    if not argv:
        raise PodpyError("no command given")
    name = argv[0]
    if "/" in name:
        if not os.path.exists(name):
            raise CommandNotFound(f'exec: "{name}": stat {name}: no such file or directory')
        return name
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if not found:
        raise CommandNotFound(f'exec: "{name}": executable file not found in $PATH')
    return found


def _exec(path: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
    try:
        os.execve(path, list(argv), dict(env))
    except OSError as err:
        sys.stderr.write(f'Error: exec: "{argv[0]}": {err.strerror}\n')
        return 126
    return 126  # not reached: execve only returns by raising


def exec_in_userns(
    argv: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    *,
    maps: Optional[UserIdMaps] = None,
    helper_dirs: Optional[Sequence[str]] = None,
) -> int:
    """Run argv as root of a new user namespace; return its exit status (128+N if killed).

    As root on the host the command simply runs as a child. Signals sent to this process are
    forwarded to the command.
    """
    env = dict(os.environ if env is None else env)
    path = resolve_command(argv, env)
    if not needs_userns():
        pid, held = _fork_holding_signals()
        if pid == 0:
            os._exit(_exec(path, argv, env))
        return _wait_forwarding_signals(pid, held)
    maps = _prepare_maps(maps, helper_dirs)
    env[ROOTLESS_UID_ENV] = str(maps.uid)
    return run_in_userns(lambda: _exec(path, argv, env), maps=maps, helper_dirs=helper_dirs)


def become_root_in_userns(
    *, maps: Optional[UserIdMaps] = None, helper_dirs: Optional[Sequence[str]] = None
) -> None:
    """Continue the rest of this program as root of a new user namespace.

    The process forks: the child returns from this call as uid 0 (mapped) and carries on;
    the original process waits, forwards signals, and exits with the child's code. No-op
    when already root. Resolve Paths first (they depend on the uid), and call before
    opening the database or starting threads.
    """
    if not needs_userns():
        return
    maps = _prepare_maps(maps, helper_dirs)
    pid, held = _fork_into_userns(maps, helper_dirs)
    if pid == 0:
        return
    code = _wait_forwarding_signals(pid, held)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def enter_userns_in_place(
    *, maps: Optional[UserIdMaps] = None, helper_dirs: Optional[Sequence[str]] = None
) -> None:
    """Move THIS process (same pid) into a new, mapped user namespace as its root.

    The monitor needs this: its pid is what a shell or a systemd unit sees, so it cannot
    fork the way become_root_in_userns does. A helper forked beforehand stays in the
    initial namespace and runs newuidmap/newgidmap on us. Call while single-threaded.
    No-op when already root.
    """
    if not needs_userns():
        return
    from podpy import linux

    maps, helpers = _prepare_maps_and_helpers(maps, helper_dirs)
    target = os.getpid()
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    helper = os.fork()
    if helper == 0:
        os.close(go_w)
        os.close(done_r)
        code = 1
        try:
            if os.read(go_r, 1) == b"G":
                map_ids(target, maps, helper_dirs, helpers)
                os.write(done_w, b"OK")
                code = 0
        except BaseException as err:  # report any failure to the waiting parent
            message = getattr(err, "message", None) or str(err)
            os.write(done_w, b"E" + message.encode(errors="replace")[:4000])
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(done_w)
    try:
        try:
            linux.unshare(linux.CLONE_NEWUSER)
        except OSError as err:
            raise PodpyError(
                f"cannot create a user namespace: {err}",
                hint="enable unprivileged user namespaces "
                "(sysctl user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1)",
            ) from err
        finally:
            os.write(go_w, b"G")
        reply = os.read(done_r, 4096)
    finally:
        os.close(go_w)
        os.close(done_r)
        os.waitpid(helper, 0)
    if reply != b"OK":
        raise PodpyError(reply[1:].decode(errors="replace") or "mapping the user namespace failed")
    _become_root(maps.single_id)
    os.environ[ROOTLESS_UID_ENV] = str(maps.uid)


def join_userns_in_place(path: str) -> None:
    """Move THIS process into an existing user namespace (a pod's infra container's) as its root.

    Pod members must share the infra's user namespace: setns() into its network, ipc and uts
    namespaces needs CAP_SYS_ADMIN in the user namespace that owns them. The user who created
    that namespace holds every capability in it, so no helper is needed. Call single-threaded.
    No-op when already root.
    """
    if not needs_userns():
        return
    from podpy import linux

    uid = os.geteuid()
    try:
        linux.setns_path(path, linux.CLONE_NEWUSER)
    except OSError as err:
        raise PodpyError(f"joining the user namespace {path}: {err}") from err
    os.setresgid(0, 0, 0)
    try:
        os.setgroups([])
    except PermissionError:
        pass  # setgroups is denied in a single-id namespace
    os.setresuid(0, 0, 0)
    os.environ[ROOTLESS_UID_ENV] = str(uid)


def unshare(paths: Paths, argv: Sequence[str], env: Optional[Mapping[str, str]] = None) -> int:
    """`podpy unshare`: run argv (default $SHELL) as namespace root with the store locations in
    its environment (podman's CONTAINERS_GRAPHROOT/RUNROOT, plus PODPY_GRAPHROOT/RUNROOT);
    the graph root and run root are created first so the command can use them."""
    child_env = dict(os.environ if env is None else env)
    command = list(argv) or [child_env.get("SHELL") or "/bin/sh"]
    for directory in (paths.graph_root, paths.run_root):
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as err:
            raise PodpyError(f"cannot create {directory}: {err.strerror}") from err
    child_env.update(
        {
            "CONTAINERS_GRAPHROOT": paths.graph_root,
            "CONTAINERS_RUNROOT": paths.run_root,
            "PODPY_GRAPHROOT": paths.graph_root,
            "PODPY_RUNROOT": paths.run_root,
        }
    )
    return exec_in_userns(command, child_env)
