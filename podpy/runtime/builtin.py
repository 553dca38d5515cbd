"""The built-in OCI runtime: create/start/state/kill/delete/list of bundles, runc-style, in Python.

Call it from the process that should own the containers: as real root, or as root of the
rootless user namespace (podman's model: the bundle then has no `user` namespace). A bundle
with a `user` namespace and uid/gidMappings also works standalone (newuidmap for several ranges).

State lives in `<root>/<id>/state.json` (written atomically) next to `exec.fifo`, which the
container's init blocks on until `start` reads it, like runc.
"""

from __future__ import annotations

# The C module under `socket` (socket.py builds four IntEnums at import: ~4 ms of every
# container start); the init reads and writes the sync socket with recv/sendall only.
import _socket
import json
import os
import re
import signal
import time

from podpy.errors import (
    AlreadyExists,
    CannotInvoke,
    CommandNotFound,
    InvalidState,
    NoSuchObject,
    PodpyError,
)
from podpy.userns import in_initial_userns

OCI_VERSION = "1.0.2-dev"
# Same value as podpy.spec.generate.INIT_ANNOTATION (not imported: keeps create lean).
INIT_ANNOTATION = "io.podpy.init"
_ID_RE = re.compile(r"^[\w+\-.]+$")
_START_TIMEOUT = 10.0

TYPE_CHECKING = False  # typing costs ~5 ms of every container start
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence


class RuntimeFailed(PodpyError):
    """The container could not be created or started."""


def default_root(env: Optional[Dict[str, str]] = None) -> str:
    """`$XDG_RUNTIME_DIR/podpy-oci` for rootless (also inside its user namespace), else /run/podpy-oci."""
    env = dict(os.environ) if env is None else env
    if os.geteuid() == 0 and in_initial_userns():
        return "/run/podpy-oci"
    from podpy.paths import runtime_dir
    from podpy.rootless import rootless_uid

    return os.path.join(runtime_dir(env, rootless_uid()), "podpy-oci")


def _signal_number(sig: Any) -> int:
    if isinstance(sig, int):
        return sig
    text = str(sig).strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    value = getattr(signal, text, None)
    if not isinstance(value, signal.Signals):
        raise PodpyError(f"invalid signal: {sig}", hint="use a name like TERM or a number like 15")
    return int(value)


def _proc_start_time(pid: int) -> Optional[int]:
    """Field 22 of /proc/PID/stat (clock ticks since boot); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class BuiltinRuntime:
    """runc-compatible operations on one state root directory."""

    name = "podpy"

    def __init__(self, root: Optional[str] = None):
        self.root = os.path.abspath(root or default_root())

    # --- bookkeeping -------------------------------------------------------------------------

    def _dir(self, cid: str) -> str:
        if not cid or not _ID_RE.match(cid):
            raise PodpyError(f"invalid container id {cid!r}", hint="use letters, digits, _ + - .")
        return os.path.join(self.root, cid)

    def _load(self, cid: str) -> Dict[str, Any]:
        path = os.path.join(self._dir(cid), "state.json")
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError as err:
            raise NoSuchObject(f"container {cid} does not exist") from err

    def _save(self, state: Dict[str, Any]) -> None:
        _write_replace(os.path.join(self._dir(state["id"]), "state.json"), json.dumps(state))

    def _status(self, state: Dict[str, Any]) -> str:
        pid = state.get("pid") or 0
        alive = pid > 0 and _proc_start_time(pid) == state.get("start_time")
        if not alive:
            return "stopped"
        if os.path.exists(os.path.join(self._dir(state["id"]), "exec.fifo")):
            return "created"
        from podpy.runtime.cgroups import Cgroup

        cgroup = Cgroup.from_json(state.get("cgroup"))
        if cgroup is not None and state.get("paused"):
            return "paused"
        return "running"

    def list(self) -> List[Dict[str, Any]]:
        """State of every container under the root (runc list)."""
        result = []
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        for name in names:
            try:
                result.append(self.state(name))
            except PodpyError:
                continue
        return result

    def state(self, cid: str) -> Dict[str, Any]:
        """The OCI state JSON (ociVersion, id, status, pid, bundle, annotations) plus `created`."""
        saved = self._load(cid)
        status = self._status(saved)
        return {
            "ociVersion": OCI_VERSION,
            "id": cid,
            "pid": saved.get("pid", 0) if status != "stopped" else 0,
            "status": status,
            "bundle": saved["bundle"],
            "rootfs": saved.get("rootfs", ""),
            "created": saved.get("created", ""),
            "annotations": saved.get("annotations") or {},
            "owner": saved.get("owner", ""),
        }

    # --- create ------------------------------------------------------------------------------

    def create(
        self,
        bundle: str,
        cid: str,
        *,
        pid_file: Optional[str] = None,
        console_socket: Optional[str] = None,
        stdio: Optional[Sequence[int]] = None,
        preserve_fds: int = 0,
        config: Optional[Dict[str, Any]] = None,
    ) -> int:
        """Build the container up to the exec of process.args; returns the init's host pid."""
        bundle = os.path.abspath(bundle)
        state_dir = self._dir(cid)
        if config is None:
            config = _read_config(bundle)
        _validate(config, bundle)
        in_userns = not in_initial_userns()
        if os.geteuid() != 0 and not _has_new_userns(config):
            raise PodpyError(
                "the built-in runtime needs root: run it inside podpy's user namespace",
                hint="use `podpy unshare podpy oci ...`, or add a user namespace to the bundle",
            )
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(state_dir, 0o711)
        except FileExistsError as err:
            raise AlreadyExists(f"container with id exists: {cid}") from err
        try:
            return self._create_in(
                bundle,
                cid,
                config,
                in_userns,
                pid_file,
                console_socket,
                stdio,
                preserve_fds,
            )
        except BaseException:
            self._cleanup(cid, None)
            raise

    def _create_in(
        self,
        bundle: str,
        cid: str,
        config: Dict[str, Any],
        in_userns: bool,
        pid_file: Optional[str],
        console_socket: Optional[str],
        stdio: Optional[Sequence[int]],
        preserve_fds: int,
    ) -> int:
        from podpy import linux
        from podpy.runtime import cgroups
        from podpy.runtime import init as init_mod

        state_dir = self._dir(cid)
        fifo = os.path.join(state_dir, "exec.fifo")
        os.mkfifo(fifo, 0o622)
        linux_cfg = config.get("linux") or {}
        rootless = in_userns or os.geteuid() != 0
        cgroup = None
        if linux_cfg.get("cgroupsPath") or linux_cfg.get("resources"):
            cgroup = cgroups.create(linux_cfg.get("cgroupsPath") or f"/podpy/{cid}", rootless)
        if cgroup is not None:
            # After the mkdirs (the primer holds cgroup_mutex while it waits): the init's
            # move into the cgroup below then shares the primer's grace period.
            cgroups.prime_attach()
        program, flags = _compile_seccomp(config)
        state: Dict[str, Any] = {
            "id": cid,
            "bundle": bundle,
            "rootfs": _rootfs_path(config, bundle),
            "annotations": config.get("annotations") or {},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
            "owner": "",
            "pid": 0,
            "cgroup": cgroup.to_json() if cgroup else None,
            "hooks": config.get("hooks") or {},
        }
        self._save(state)  # so a failed create can be cleaned up by delete
        console = None
        if console_socket:
            console = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                console.connect(console_socket)
            except OSError as err:
                raise RuntimeFailed(
                    f"cannot connect to console socket {console_socket}: {err.strerror}"
                ) from err
        hooks = config.get("hooks") or {}
        hooks_sync = bool(
            hooks.get("prestart") or hooks.get("createRuntime") or hooks.get("createContainer")
        )
        parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        ctx = init_mod.InitContext(
            config=config,
            bundle=bundle,
            sync=child_sock,
            fifo_path=fifo,
            in_userns=in_userns or _has_new_userns(config),
            seccomp_program=program,
            seccomp_flags=flags,
            console=console,
            stdio=stdio,
            preserve_fds=preserve_fds,
            hooks_sync=hooks_sync,
            use_init=(config.get("annotations") or {}).get(INIT_ANNOTATION) == "true",
            host_cgroups=_own_cgroup_dirs(cgroup),
        )
        # The init is reparented to us when the intermediate child exits, so we can reap it.
        linux.set_child_subreaper()
        intermediate = os.fork()
        if intermediate == 0:
            parent_sock.close()
            _intermediate(ctx)
        child_sock.close()
        if console is not None:
            console.close()
        try:
            init_pid = self._handshake(parent_sock, intermediate, config, cgroup, state)
        finally:
            parent_sock.close()
        state["pid"] = init_pid
        state["start_time"] = _proc_start_time(init_pid)
        self._save(state)
        if pid_file:
            _write_replace(os.path.abspath(pid_file), str(init_pid), mode=0o644)
        return init_pid

    def _handshake(
        self,
        sock: _socket.socket,
        intermediate: int,
        config: Dict[str, Any],
        cgroup: Any,
        state: Dict[str, Any],
    ) -> int:
        reader = _LineReader(sock)
        init_pid = 0
        # Moving the first task into a cgroup waits for an RCU grace period (the kernel's
        # cgroup_threadgroup_rwsem; 15-30 ms here). Without a new cgroup namespace, whose root
        # is fixed when the intermediate unshares it, the init is moved instead, while it
        # mounts the container's filesystem; it cannot exec (nor fork) before `start`.
        attach_init = cgroup is not None and not _has_new_namespace(config, "cgroup")
        try:
            if cgroup is not None and not attach_init:
                _attach(cgroup, intermediate, config)
            if _has_new_userns(config):
                _read_message(reader, "userns")
                _write_id_maps(intermediate, config)
            sock.sendall(b'{"go": true}\n')
            ready = False
            # The intermediate's {"pid"} and the init's messages may arrive in either order.
            while not (ready and init_pid):
                message = _read_message(reader, None)
                if "pid" in message:
                    init_pid = int(message["pid"])
                    if attach_init:
                        _attach(cgroup, init_pid, config)
                    os.waitpid(intermediate, 0)
                elif message.get("stage") == "mounted":
                    state["pid"] = init_pid
                    state["start_time"] = _proc_start_time(init_pid)
                    self._save(state)
                    hooks = config.get("hooks") or {}
                    for kind in ("prestart", "createRuntime", "createContainer"):
                        _run_hooks(hooks.get(kind) or [], self._hook_state(state, "creating"), kind)
                    sock.sendall(b'{"continue": true}\n')
                elif message.get("ready"):
                    ready = True
            return init_pid
        except _InitError as err:
            _reap(intermediate)
            _reap(init_pid)
            code = err.code
            text = f"{self.name}: {self.name} create failed: unable to start container process: {err.message}"
            if code == 127:
                raise CommandNotFound(
                    text + ": OCI runtime attempted to invoke a command that was not found"
                ) from None
            if code == 126:
                raise CannotInvoke(text + ": OCI permission denied") from None
            raise RuntimeFailed(text) from None
        except BaseException:
            if init_pid:
                _kill_and_reap(init_pid)
            else:
                _kill_and_reap(intermediate)
            raise

    def _hook_state(self, state: Dict[str, Any], status: str) -> Dict[str, Any]:
        return {
            "ociVersion": OCI_VERSION,
            "id": state["id"],
            "status": status,
            "pid": state.get("pid", 0),
            "bundle": state["bundle"],
            "annotations": state.get("annotations") or {},
        }

    # --- start / kill / delete ---------------------------------------------------------------

    def start(self, cid: str) -> None:
        """Let the created container exec its process; error unless it is `created`."""
        saved = self._load(cid)
        status = self._status(saved)
        if status != "created":
            raise InvalidState(
                f"cannot start a container that has {status}"
                if status == "stopped"
                else f"cannot start an already {status} container"
            )
        fifo = os.path.join(self._dir(cid), "exec.fifo")
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            import select

            deadline = time.monotonic() + _START_TIMEOUT
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while True:
                # Read before looking at the init: once it got past the fifo its byte stays
                # in the pipe (we hold the read end), even if the command has already exited
                # (`run IMG true`). Looking first, a fast command passed for a dead init.
                try:
                    if os.read(fd, 1):
                        break
                except BlockingIOError:
                    pass
                if _proc_start_time(saved["pid"]) != saved.get("start_time"):
                    raise RuntimeFailed(f"container {cid} init died before start")
                if time.monotonic() > deadline:
                    raise RuntimeFailed(f"timed out waiting for container {cid} to start")
                if poller.poll(50):
                    # POLLHUP without data: a writer's open came and went (interrupted by a
                    # signal, it is retried); do not spin on it.
                    time.sleep(0.001)
        finally:
            os.close(fd)
        os.unlink(fifo)
        hooks = saved.get("hooks") or {}
        if hooks.get("poststart"):
            _run_hooks(hooks["poststart"], self._hook_state(saved, "running"), "poststart")

    def kill(self, cid: str, sig: Any = signal.SIGTERM, all_processes: bool = False) -> None:
        """Send a signal to the init (or, with all_processes, every process of its cgroup)."""
        number = _signal_number(sig)
        saved = self._load(cid)
        status = self._status(saved)
        if status == "stopped":
            raise InvalidState("container not running")
        pids = [saved["pid"]]
        if all_processes:
            from podpy.runtime.cgroups import Cgroup

            cgroup = Cgroup.from_json(saved.get("cgroup"))
            if cgroup is not None:
                pids = cgroup.pids() or pids
        for pid in pids:
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass

    def delete(self, cid: str, force: bool = False) -> None:
        """Remove a stopped container's state and cgroup (never the bundle); --force kills first."""
        saved = self._load(cid)
        status = self._status(saved)
        if status != "stopped":
            if not force:
                raise InvalidState(f"cannot delete container {cid} that is not stopped: {status}")
            if status == "paused":
                from podpy.runtime.cgroups import Cgroup

                cgroup = Cgroup.from_json(saved.get("cgroup"))
                if cgroup is not None:
                    cgroup.freeze(False)  # frozen tasks do not die from SIGKILL until thawed
            _kill_and_reap(saved["pid"], saved.get("start_time"))
        self._cleanup(cid, saved)
        hooks = saved.get("hooks") or {}
        if hooks.get("poststop"):
            try:
                _run_hooks(hooks["poststop"], self._hook_state(saved, "stopped"), "poststop")
            except PodpyError as err:
                from podpy import log

                log.warn(str(err))

    def _cleanup(self, cid: str, saved: Optional[Dict[str, Any]]) -> None:
        from podpy.runtime.cgroups import Cgroup

        if saved is None:
            try:
                saved = self._load(cid)
            except PodpyError:
                saved = {}
        cgroup = Cgroup.from_json(saved.get("cgroup"))
        if cgroup is not None:
            cgroup.destroy()
        _remove_state_dir(self._dir(cid))

    # --- helpers for the monitor and engine -------------------------------------------------

    def pause(self, cid: str, paused: bool = True) -> None:
        """Freeze (or with paused=False thaw) every process of the container via its cgroup."""
        from podpy.runtime.cgroups import Cgroup

        saved = self._load(cid)
        status = self._status(saved)
        if status not in ("running", "paused"):
            raise InvalidState(f"container {cid} is not running")
        cgroup = Cgroup.from_json(saved.get("cgroup"))
        if cgroup is None:
            raise PodpyError(
                "pause needs a cgroup, and this rootless container has none",
                hint="pause and unpause need cgroups v2 with delegation when rootless",
            )
        cgroup.freeze(paused)
        saved["paused"] = paused
        self._save(saved)

    def stats(self, cid: str) -> Dict[str, int]:
        """Raw cgroup counters (memory_usage, memory_limit, cpu_ns, pids); {} without a cgroup."""
        from podpy.runtime.cgroups import Cgroup

        cgroup = Cgroup.from_json(self._load(cid).get("cgroup"))
        return cgroup.stats() if cgroup else {}

    def run(
        self,
        bundle: str,
        cid: str,
        *,
        stdio: Optional[Sequence[int]] = None,
        console_socket: Optional[str] = None,
        detach: bool = False,
        pid_file: Optional[str] = None,
    ) -> int:
        """create + start, then (unless detach) wait for the exit and delete; returns the exit code."""
        pid = self.create(
            bundle, cid, stdio=stdio, console_socket=console_socket, pid_file=pid_file
        )
        forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
        previous = {}

        def forward(signum: int, _frame: Any) -> None:
            try:
                os.kill(pid, signum)
            except OSError:
                pass

        if not detach:
            for sig in forwarded:
                previous[sig] = signal.signal(sig, forward)
        try:
            self.start(cid)
            if detach:
                return 0
            while True:
                try:
                    _, status = os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    # Not our child (another subreaper took it): poll until it is gone.
                    while _proc_start_time(pid) is not None:
                        time.sleep(0.02)
                    status = 0
                    break
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if not detach:
                self.delete(cid, force=True)


# --- module helpers ------------------------------------------------------------------------------


def _write_replace(path: str, text: str, mode: int = 0o600) -> None:
    """Atomic replace without fsync: runtime state lives on tmpfs and dies with a reboot anyway."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _remove_state_dir(path: str) -> None:
    """Remove a container's state directory (files only: state.json, exec.fifo, temp files)
    without importing shutil (bz2, lzma: ~4 ms of every `run --rm`); anything else in it
    (a directory someone put there) goes through shutil.rmtree."""
    try:
        for name in os.listdir(path):
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                pass
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


class _LineReader:
    """readline() over a socket (what makefile("rb") gave, without the socket module)."""

    def __init__(self, sock: _socket.socket):
        self.sock = sock
        self.buffer = b""

    def readline(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


class _InitError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.message = message
        self.code = code


def _read_message(reader: Any, expect: Optional[str]) -> Dict[str, Any]:
    line = reader.readline()
    if not line:
        raise _InitError("container init exited unexpectedly", 1)
    message = json.loads(line)
    if "error" in message:
        raise _InitError(message["error"], int(message.get("code") or 1))
    if expect is not None and expect not in message:
        raise _InitError(f"unexpected message from container init: {message}", 1)
    return message


def _read_config(bundle: str) -> Dict[str, Any]:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError as err:
        raise PodpyError(
            f"bundle {bundle} has no config.json", hint="pass --bundle DIR of an OCI bundle"
        ) from err
    except ValueError as err:
        raise PodpyError(f"invalid config.json in {bundle}: {err}") from err
    if not isinstance(config, dict):
        raise PodpyError(f"invalid config.json in {bundle}: not an object")
    return config


def _rootfs_path(config: Dict[str, Any], bundle: str) -> str:
    path = (config.get("root") or {}).get("path") or "rootfs"
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(bundle, path))


_NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


def _validate(config: Dict[str, Any], bundle: str) -> None:
    if not config.get("ociVersion"):
        raise PodpyError("config.json: ociVersion is required")
    rootfs = _rootfs_path(config, bundle)
    if not os.path.isdir(rootfs):
        raise PodpyError(
            f"rootfs ({rootfs}) does not exist", hint="root.path must name a directory"
        )
    overlay = (config.get("annotations") or {}).get("io.podpy.rootfs.overlay")
    if overlay:
        try:
            layers = json.loads(overlay)
            dirs = list(layers["lower"]) + [
                d for d in (layers.get("upper"), layers.get("work")) if d
            ]
        except (ValueError, KeyError, TypeError) as err:
            raise PodpyError(
                f"config.json: invalid io.podpy.rootfs.overlay annotation: {err}"
            ) from err
        for directory in dirs:
            if not os.path.isdir(directory):
                raise PodpyError(f"rootfs overlay directory {directory} does not exist")
    process = config.get("process")
    if not isinstance(process, dict) or not process.get("args"):
        raise PodpyError("config.json: process.args must contain at least one argument")
    cwd = process.get("cwd") or "/"
    if not cwd.startswith("/"):
        raise PodpyError(f"config.json: process.cwd {cwd!r} must be an absolute path")
    seen = set()
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        kind = ns.get("type")
        if kind not in _NAMESPACE_TYPES:
            raise PodpyError(f"config.json: unknown namespace type {kind!r}")
        if kind in seen:
            raise PodpyError(f"config.json: duplicate namespace type {kind!r}")
        seen.add(kind)
        if ns.get("path") and not os.path.exists(ns["path"]):
            raise PodpyError(f"config.json: namespace path {ns['path']} does not exist")
    for mount in config.get("mounts") or []:
        if mount.get("uidMappings") or mount.get("gidMappings"):
            raise PodpyError(
                f"config.json: idmapped mount for {mount.get('destination')} is not supported by the built-in runtime",
                hint="drop the mount's uidMappings/gidMappings, or use --runtime runc",
            )
    import resource

    for limit in process.get("rlimits") or []:
        if not hasattr(resource, str(limit.get("type"))):
            raise PodpyError(f"config.json: unknown rlimit type {limit.get('type')!r}")


def _has_new_userns(config: Dict[str, Any]) -> bool:
    return _has_new_namespace(config, "user")


def _has_new_namespace(config: Dict[str, Any], kind: str) -> bool:
    return any(
        n.get("type") == kind and not n.get("path")
        for n in (config.get("linux") or {}).get("namespaces") or []
    )


def _attach(cgroup: Any, pid: int, config: Dict[str, Any]) -> None:
    """Move `pid` into the container's cgroup and apply the bundle's resource limits."""
    cgroup.add_process(pid)
    if (config.get("linux") or {}).get("resources"):
        cgroup.apply(config["linux"]["resources"])


def _compile_seccomp(config: Dict[str, Any]) -> Any:
    section = (config.get("linux") or {}).get("seccomp")
    if not section:
        return None, 0
    from podpy.runtime import seccomp

    return seccomp.compile_filter(section), seccomp.filter_flags(section)


def _own_cgroup_dirs(cgroup: Any) -> Dict[str, str]:
    if cgroup is None or cgroup.version != 1:
        return {}
    return {name: path for name, path in cgroup.paths.items()}


def _write_id_maps(pid: int, config: Dict[str, Any]) -> None:
    linux_cfg = config.get("linux") or {}
    uid_maps = linux_cfg.get("uidMappings") or []
    gid_maps = linux_cfg.get("gidMappings") or []
    if not uid_maps or not gid_maps:
        raise PodpyError("a user namespace needs uidMappings and gidMappings")

    def lines(maps: List[Dict[str, int]]) -> str:
        return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)

    single_self = (
        len(uid_maps) == 1
        and uid_maps[0]["hostID"] == os.geteuid()
        and uid_maps[0]["size"] == 1
        and len(gid_maps) == 1
        and gid_maps[0]["hostID"] == os.getegid()
        and gid_maps[0]["size"] == 1
    )
    if os.geteuid() == 0 or single_self:
        if os.geteuid() != 0:
            with open(f"/proc/{pid}/setgroups", "w") as f:
                f.write("deny")
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(lines(uid_maps))
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(lines(gid_maps))
        return
    import subprocess

    from podpy.rootless import find_helper

    for helper, maps in (("newuidmap", uid_maps), ("newgidmap", gid_maps)):
        argv = [find_helper(helper), str(pid)]
        for m in maps:
            argv += [str(m["containerID"]), str(m["hostID"]), str(m["size"])]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise PodpyError(f"{helper} failed: {result.stderr.strip()}")


def _intermediate(ctx: Any) -> None:
    """The forked child: join/create namespaces, fork the init (PID 1), report its pid, exit."""
    from podpy import linux
    from podpy.runtime import init as init_mod

    code = 1
    try:
        reader = _LineReader(ctx.sync)
        linux_cfg = ctx.config.get("linux") or {}
        namespaces = linux_cfg.get("namespaces") or []
        if _has_new_userns(ctx.config):
            linux.unshare(linux.CLONE_NEWUSER)
            init_mod._send(ctx.sync, {"userns": True})
        if not reader.readline().startswith(b'{"go"'):
            os._exit(1)
        if _has_new_userns(ctx.config):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        user_ns = [n for n in namespaces if n.get("type") == "user" and n.get("path")]
        for ns in user_ns + [n for n in namespaces if n.get("path") and n.get("type") != "user"]:
            linux.setns_path(ns["path"], linux.NAMESPACE_FLAGS[ns["type"]])
        flags = 0
        for ns in namespaces:
            if not ns.get("path") and ns.get("type") != "user":
                flags |= linux.NAMESPACE_FLAGS[ns["type"]]
        if flags:
            linux.unshare(flags)
        child = os.fork()
        if child == 0:
            init_mod.main(ctx)
        init_mod._send(ctx.sync, {"pid": child})
        code = 0
    except OSError as err:
        try:
            init_mod._send(ctx.sync, {"error": f"namespace setup: {err}", "code": 1})
        except OSError:
            pass
    except BaseException as err:  # never return into the caller's stack in a forked child
        try:
            init_mod._send(ctx.sync, {"error": f"namespace setup: {err}", "code": 1})
        except OSError:
            pass
    os._exit(code)


def _reap(pid: int) -> None:
    if pid <= 0:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kill_and_reap(pid: int, start_time: Optional[int] = None, timeout: float = 5.0) -> None:
    if pid <= 0:
        return
    if start_time is not None and _proc_start_time(pid) != start_time:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if _proc_start_time(pid) is None:
                return
        time.sleep(0.01)


def _run_hooks(hooks: Sequence[Dict[str, Any]], state: Dict[str, Any], kind: str) -> None:
    import subprocess

    payload = json.dumps(state)
    for hook in hooks:
        path = hook.get("path")
        args = hook.get("args") or [path]
        env = dict(e.split("=", 1) for e in hook.get("env") or [] if "=" in e)
        try:
            result = subprocess.run(
                args,
                executable=path,
                input=payload,
                capture_output=True,
                text=True,
                env=env,
                timeout=hook.get("timeout") or None,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise RuntimeFailed(f"{kind} hook {path} failed: {err}") from err
        if result.returncode != 0:
            raise RuntimeFailed(
                f"{kind} hook {path} exited {result.returncode}: {result.stderr.strip()}"
            )
