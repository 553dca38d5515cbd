"""A container's files from the outside: `cp` (both ways), `diff`, `commit` and `export`.

Everything that touches the container's tree runs in a forked child that sees it as the
container does: for a running container it joins the container's user and mount namespaces
(so `/` is the container's root), for a stopped one it becomes root of a user namespace when
rootless, mounts the overlay in a private mount namespace and chroots into it. Paths can
therefore never resolve outside the container. Data crosses to the podpy process as a tar
stream on a pipe; errors come back as one JSON line on a second pipe.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tarfile
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Dict, List, Optional, Tuple

from podpy.errors import InvalidState, PodpyError
from podpy.record import field, record

if TYPE_CHECKING:
    from podpy.engine import Engine

_RUNNING = ("running", "paused")
_COPY_CHUNK = 1024 * 1024
# tarfile on Python >= 3.12 filters extraction; names are checked here, owners must be kept.
_EXTRACT_KW: Dict[str, Any] = (
    {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
)


# --- the child that sees the container's files ---------------------------------------------


@record
class _View:
    """What the forked child needs (it must not touch the parent's sqlite connection)."""

    pid: int
    rootfs: Dict[str, Any]
    rootless: bool
    name: str
    binds: List[str] = field(default_factory=list)  # `-v SRC:DST[:OPTS]`, volumes resolved


def _view(eng: Engine, row: Dict[str, Any]) -> _View:
    pid = int(row.get("pid") or 0) if row["status"] in _RUNNING else 0
    binds = list((row["config"].get("run_options") or {}).get("volumes") or [])
    return _View(pid, row["config"]["rootfs"], eng.paths.rootless, row["name"], binds)


def _mount_binds(view: _View, merged: str) -> None:
    """A stopped container's volumes and bind mounts, so `cp CTR:/data` reaches the volume as
    it would while the container runs (podman does the same)."""
    from podpy import linux
    from podpy.runtime.mounts import secure_join

    for spec in view.binds:
        parts = spec.split(":")
        if len(parts) < 2 or not os.path.exists(parts[0]):
            continue
        target = secure_join(merged, parts[1])
        if not os.path.exists(target):
            continue  # the runtime creates mount points at start; cp does not
        linux.mount(parts[0], target, None, linux.MS_BIND | linux.MS_REC)
        if len(parts) > 2 and "ro" in parts[2].split(","):
            from podpy.runtime.mounts import remount_bind

            remount_bind(target, linux.MS_RDONLY)


def _enter(view: _View, rootfs_only: bool) -> None:
    """Make `/` the container's root in this (forked, single-threaded) process."""
    from podpy import linux

    if view.pid:
        fds = []  # opened first: after joining the user namespace /proc/PID may be out of reach
        for kind in ("user", "mnt"):
            path = f"/proc/{view.pid}/ns/{kind}"
            if os.stat(path).st_ino != os.stat(f"/proc/self/ns/{kind}").st_ino:
                fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        for fd in fds:
            linux.setns(fd)  # user first: it grants the rights for the mount namespace
            os.close(fd)
        if rootfs_only:
            # Only the overlay, without /proc, /dev, volumes...: a private copy of the mount
            # namespace, then the root mount bound (non-recursively) over /proc and chrooted.
            linux.unshare(linux.CLONE_NEWNS)
            linux.make_rprivate("/")
            linux.mount("/", "/proc", None, linux.MS_BIND)
            os.chroot("/proc")
        os.chdir("/")
        return
    if view.rootless:
        from podpy import rootless

        rootless.enter_userns_in_place()
    from podpy.runtime.mounts import mount_overlay

    linux.unshare(linux.CLONE_NEWNS)
    linux.make_rprivate("/")
    rootfs = view.rootfs
    if rootfs.get("driver") != "overlay":
        raise PodpyError(f"storage driver {rootfs.get('driver')} is not supported here")
    mount_overlay(
        list(reversed(rootfs["lower"])),
        rootfs["upper"],
        rootfs["work"],
        rootfs["merged"],
        userxattr=view.rootless,
    )
    if not rootfs_only:
        _mount_binds(view, rootfs["merged"])
    os.chroot(rootfs["merged"])
    os.chdir("/")


def _preload() -> None:
    """Import what the child uses before it loses sight of the zipapp (setns/chroot)."""
    import copy  # noqa: F401
    import grp  # noqa: F401
    import pwd  # noqa: F401
    import shutil  # noqa: F401

    from podpy import linux, rootless  # noqa: F401
    from podpy.runtime import mounts  # noqa: F401


def _send_error(fd: int, err: BaseException) -> None:
    if isinstance(err, PodpyError):
        payload = {"error": err.message, "hint": err.hint, "code": err.exit_code}
    elif isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        payload = {"error": f"{where}{err.strerror or err}", "hint": None, "code": 125}
        payload["broken_pipe"] = isinstance(err, BrokenPipeError)
    else:
        payload = {"error": f"{type(err).__name__}: {err}", "hint": None, "code": 125}
    try:
        os.write(fd, json.dumps(payload).encode())
    except OSError:
        pass


def _in_container(
    view: _View,
    action: Callable[[int], None],
    parent: Optional[Callable[[int], None]] = None,
    child_writes: bool = True,
    rootfs_only: bool = False,
) -> None:
    """Fork; the child enters the container's filesystem and runs action(data_fd) while this
    process runs parent(data_fd) on the other end of the pipe (child_writes picks the
    direction). A failure in the child is raised here as a PodpyError."""
    _preload()
    data_r, data_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(err_r)
            mine, theirs = (data_w, data_r) if child_writes else (data_r, data_w)
            os.close(theirs)
            _enter(view, rootfs_only)
            action(mine)
        except BaseException as err:  # never return into the caller's stack from a fork
            _send_error(err_w, err)
            code = 1
        os._exit(code)
    os.close(err_w)
    mine = data_r if child_writes else data_w
    os.close(data_w if child_writes else data_r)
    parent_error: Optional[BaseException] = None
    try:
        if parent is not None:
            parent(mine)
    except BrokenPipeError:
        pass  # the child gave up: its error tells why
    except BaseException as err:
        parent_error = err
    finally:
        try:
            os.close(mine)
        except OSError:
            pass  # the parent callback's file object closed it already
    os.waitpid(pid, 0)
    with os.fdopen(err_r, "rb") as f:
        reply = f.read()
    message = json.loads(reply) if reply else None
    if parent_error is not None and (message is None or message.get("broken_pipe")):
        raise parent_error  # the child only suffered from our failure
    if message is not None:
        raise PodpyError(message["error"], hint=message.get("hint"), exit_code=message["code"])


# --- tar helpers ----------------------------------------------------------------------------


def _clean_names(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = int(info.mtime)
    return info


def _write_tree(fd: int, source: str, arcname: str) -> None:
    """Tar `source` (recursively, sorted, symlinks kept) as `arcname` onto fd."""
    with os.fdopen(fd, "wb", closefd=False) as out:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            if arcname:
                tar.add(source, arcname=arcname, recursive=True, filter=_clean_names)
            else:  # a whole tree: its children at the top of the archive
                for name in sorted(os.listdir(source)):
                    tar.add(os.path.join(source, name), arcname=name, filter=_clean_names)


def _check_member_name(name: str) -> List[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise PodpyError(
            f"refusing to extract {name!r}: it points outside the destination directory",
            hint="archive entries must be relative paths without '..'",
        )
    return parts


@record
class _Placement:
    """Where an archive lands: every entry's first component becomes `top` (None: dropped,
    for `SRC/.`), under directory `directory`."""

    directory: str
    top: Optional[str]
    strip_top: bool = False
    chown: Optional[Tuple[int, int]] = None
    seen_dirs: List[Tuple[tarfile.TarInfo, str]] = field(default_factory=list)


def _plan(dest: str, trailing_slash: bool, src_is_dir: bool, src_name: str, contents_only: bool,
          where: str) -> _Placement:  # fmt: skip
    """docker/podman cp's rules for where SRC goes, given what DEST is."""
    try:
        st: Optional[os.stat_result] = os.stat(dest)
    except FileNotFoundError:
        st = None
    except NotADirectoryError as err:
        raise PodpyError(f"{where}: {dest}: not a directory") from err
    if st is not None and stat.S_ISDIR(st.st_mode):
        if src_is_dir and contents_only:
            return _Placement(dest, None, strip_top=True)
        return _Placement(dest, src_name)
    if st is not None:
        if src_is_dir:
            raise PodpyError(
                f"{where}: cannot copy a directory onto the file {dest}",
                hint="give a directory (or a new name) as the destination",
            )
        return _Placement(os.path.dirname(dest) or "/", os.path.basename(dest))
    if trailing_slash and not src_is_dir:
        raise PodpyError(
            f'{where}: destination directory "{dest}" does not exist',
            hint="create the directory first, or drop the trailing '/'",
        )
    parent = os.path.dirname(dest.rstrip("/")) or "/"
    if not os.path.isdir(parent):
        raise PodpyError(
            f'{where}: "{parent}" could not be found: no such file or directory',
            hint="the destination's parent directory must exist",
        )
    return _Placement(parent, os.path.basename(dest.rstrip("/")))


def _renamed(name: str, placement: _Placement) -> Optional[str]:
    parts = _check_member_name(name)
    if not parts:
        return None
    if placement.strip_top:
        parts = parts[1:]
    elif placement.top is not None:
        parts = [placement.top] + parts[1:]
    return "/".join(parts) if parts else None


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, placement: _Placement) -> None:
    new_name = _renamed(member.name, placement)
    if new_name is None:
        return
    if member.islnk():
        link = _renamed(member.linkname, placement)
        if link is None:
            return
        member.linkname = link
    member.name = new_name
    if placement.chown is not None:
        member.uid, member.gid = placement.chown
    target = os.path.join(placement.directory, new_name)
    try:
        existing: Optional[os.stat_result] = os.lstat(target)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode) and not member.isdir():
            raise PodpyError(
                f"cannot overwrite directory {target} with a non-directory",
                hint="remove the directory first, or copy to another path",
            )
        if not stat.S_ISDIR(existing.st_mode):
            os.unlink(target)  # never write through a symlink that is in the way
    if member.isdir():
        # Attributes last: a read-only dir would refuse its own content.
        tar.extract(member, placement.directory, set_attrs=False, **_EXTRACT_KW)
        placement.seen_dirs.append((member, target))
        return
    tar.extract(member, placement.directory, numeric_owner=True, **_EXTRACT_KW)


def _finish_dirs(tar: tarfile.TarFile, placement: _Placement) -> None:
    for member, target in reversed(placement.seen_dirs):
        tar.chown(member, target, numeric_owner=True)
        tar.chmod(member, target)
        tar.utime(member, target)


def _place_archive(
    stream: BinaryIO,
    dest: str,
    trailing_slash: bool,
    contents_only: bool,
    chown: Optional[Tuple[int, int]],
    where: str,
    single_source: bool = True,
) -> None:
    """Extract a cp archive whose first entry is SRC itself (single_source), or a user's tar
    (`cp - CTR:DIR`: everything goes into DIR as is)."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        placement: Optional[_Placement] = None
        for member in tar:
            if placement is None:
                if single_source:
                    top = _check_member_name(member.name)
                    placement = _plan(
                        dest, trailing_slash, member.isdir(), top[0] if top else "",
                        contents_only, where,
                    )  # fmt: skip
                else:
                    if not os.path.isdir(dest):
                        raise PodpyError(
                            f'{where}: destination "{dest}" must be an existing directory '
                            "to extract a tar stream into",
                            hint="create it first",
                        )
                    placement = _Placement(dest, None)
                placement.chown = chown
            _extract_member(tar, member, placement)
        if placement is not None:
            _finish_dirs(tar, placement)


def _copy_fd_to(fd: int, out: BinaryIO) -> None:
    with os.fdopen(fd, "rb", closefd=False) as src:
        while True:
            chunk = src.read(_COPY_CHUNK)
            if not chunk:
                break
            out.write(chunk)
    out.flush()


def _copy_to_fd(src: BinaryIO, fd: int) -> None:
    with os.fdopen(fd, "wb", closefd=False) as out:
        while True:
            chunk = src.read(_COPY_CHUNK)
            if not chunk:
                break
            out.write(chunk)


# --- cp -------------------------------------------------------------------------------------


def split_location(text: str) -> Tuple[Optional[str], str]:
    """`CTR:PATH` -> (CTR, PATH); a host path (or `-`) -> (None, text)."""
    if text == "-" or text.startswith(("/", ".")):
        return None, text
    ref, sep, path = text.partition(":")
    if not sep or not ref or "/" in ref:
        return None, text
    return ref, path


def _container_user(eng: Engine, row: Dict[str, Any], view: _View) -> Tuple[int, int]:
    """The container's primary uid:gid (cp --archive gives copied files to it), numeric
    forms only; names resolve against the container's /etc/passwd in the child."""
    config = row["config"]
    user = (config.get("run_options") or {}).get("user") or (
        ((config.get("image_config") or {}).get("config") or {}).get("User") or ""
    )
    if not user:
        return 0, 0
    name, _, group = str(user).partition(":")
    if name.isdigit() and (not group or group.isdigit()):
        return int(name), int(group) if group else int(name)
    box: Dict[str, Tuple[int, int]] = {}

    def resolve(fd: int) -> None:
        import grp
        import pwd

        uid = int(name) if name.isdigit() else pwd.getpwnam(name).pw_uid
        gid = pwd.getpwuid(uid).pw_gid if not group else (
            int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        )  # fmt: skip
        os.write(fd, f"{uid}:{gid}".encode())

    def collect(fd: int) -> None:
        with os.fdopen(fd, "rb", closefd=False) as f:
            text = f.read().decode()
        uid_text, _, gid_text = text.partition(":")
        box["ids"] = (int(uid_text), int(gid_text))

    try:
        _in_container(view, resolve, collect)
    except PodpyError:
        return 0, 0
    return box.get("ids", (0, 0))


def copy(
    eng: Engine,
    source: str,
    dest: str,
    archive: bool = True,
    stdin: Optional[BinaryIO] = None,
    stdout: Optional[BinaryIO] = None,
) -> None:
    """`podpy cp SRC DEST`: exactly one side is `CONTAINER:PATH`; `-` is a tar stream."""
    from podpy.engine import containers

    src_ctr, src_path = split_location(source)
    dst_ctr, dst_path = split_location(dest)
    if (src_ctr is None) == (dst_ctr is None):
        raise PodpyError(
            "invalid arguments "
            + (f"{source}, {dest}: copying between containers is not supported" if src_ctr
               else f"{source}, {dest}: you must use just one container (CONTAINER:PATH)"),
            hint="e.g. podpy cp ./file CTR:/tmp/ or podpy cp CTR:/etc/hostname .",
        )  # fmt: skip
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    if src_ctr is not None:
        row = containers.lookup(eng, src_ctr)
        _copy_out(eng, row, src_path or "/", dst_path, stdout)
    else:
        assert dst_ctr is not None
        row = containers.lookup(eng, dst_ctr)
        _copy_in(eng, row, src_path, dst_path or "/", archive, stdin)


def _copy_out(eng: Engine, row: Dict[str, Any], path: str, dest: str, stdout: BinaryIO) -> None:
    view = _view(eng, row)
    contents_only = path.endswith("/.")
    container_path = os.path.normpath("/" + path)

    def produce(fd: int) -> None:
        from podpy.runtime.mounts import secure_join

        # `/` is the container's root here; secure_join keeps symlinks inside it.
        # The last component is not followed (a symlink is copied as a symlink).
        base = os.path.basename(container_path)
        target = os.path.join(secure_join("/", os.path.dirname(container_path)), base)
        if not os.path.lexists(target):
            raise PodpyError(
                f'"{path}" could not be found on container {view.name}: no such file or directory'
            )
        if path.endswith("/") and not os.path.isdir(target):
            raise PodpyError(f'"{path}" is not a directory on container {view.name}')
        name = os.path.basename(container_path) or "."
        if os.path.isdir(target) and not os.path.islink(target):
            name = name if name != "/" else "."
        _write_tree(fd, target, name)

    if dest == "-":
        _in_container(view, produce, lambda fd: _copy_fd_to(fd, stdout))
        return
    host_dest = os.path.abspath(dest)

    def consume(fd: int) -> None:
        with os.fdopen(fd, "rb", closefd=False) as stream:
            _place_archive(
                stream, host_dest, dest.endswith("/"), contents_only, None, "copying to host"
            )

    _in_container(view, produce, consume)


def _copy_in(
    eng: Engine, row: Dict[str, Any], src: str, path: str, archive: bool, stdin: BinaryIO
) -> None:
    view = _view(eng, row)
    container_path = os.path.normpath("/" + path)
    trailing = path.endswith("/")
    if src != "-":
        if not os.path.lexists(src):
            raise PodpyError(
                f'"{src}" could not be found on the host: no such file or directory',
                hint="check the source path",
            )
        try:
            os.lstat(src)
            if os.path.isdir(src):
                os.listdir(src)
        except OSError as err:
            raise PodpyError(f"reading {src}: {err.strerror}") from err
    chown = _container_user(eng, row, view) if archive else None

    def place(fd: int) -> None:
        from podpy.runtime.mounts import secure_join

        resolved = secure_join("/", container_path)
        with os.fdopen(fd, "rb", closefd=False) as stream:
            _place_archive(
                stream, resolved, trailing, src.endswith("/."), chown,
                f"copying into container {view.name}", single_source=src != "-",
            )  # fmt: skip

    def produce(fd: int) -> None:
        if src == "-":
            _copy_to_fd(stdin, fd)
            return
        name = os.path.basename(os.path.normpath(os.path.abspath(src))) or "."
        _write_tree(fd, src, name)

    _in_container(view, place, produce, child_writes=False)


# --- diff -----------------------------------------------------------------------------------


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str, rootless: bool) -> bool:
    from podpy.storage.layers import overlay_xattr_prefix

    try:
        value = os.getxattr(path, overlay_xattr_prefix(rootless) + "opaque", follow_symlinks=False)
    except OSError:
        return False
    return value == b"y"


def _in_lower(lowers_top_first: List[str], rel: str, rootless: bool) -> bool:
    """Whether /rel exists in the image (the lower layers, whiteouts and opaque dirs applied)."""
    parts = rel.split("/")
    for layer in lowers_top_first:
        hidden_below = False
        for depth in range(1, len(parts) + 1):
            sub = os.path.join(layer, *parts[:depth])
            try:
                st = os.lstat(sub)
            except (FileNotFoundError, NotADirectoryError):
                break
            if _is_whiteout(st):
                return False
            if depth == len(parts):
                return True
            if not stat.S_ISDIR(st.st_mode):
                break
            if _opaque(sub, rootless):
                hidden_below = True
        if hidden_below:
            return False
    return False


# Mount points the runtime creates in every container: podman's diff leaves them out too.
_RUNTIME_PATHS = frozenset(
    ("/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/proc", "/run", "/run/notify",
     "/run/.containerenv", "/run/secrets", "/sys", "/etc/mtab")
)  # fmt: skip


def _changes(rootfs: Dict[str, Any], rootless: bool) -> List[Tuple[str, str]]:
    """(kind, /path) for every entry of the upper dir: A added, C changed, D deleted."""
    upper = rootfs["upper"]
    lowers = list(reversed(rootfs["lower"]))
    out: List[Tuple[str, str]] = []
    for current, dirnames, filenames in os.walk(upper):
        dirnames.sort()
        rel_dir = os.path.relpath(current, upper)
        rel_dir = "" if rel_dir == "." else rel_dir
        if rel_dir and _opaque(current, rootless):
            for layer in lowers:
                below = os.path.join(layer, rel_dir)
                if os.path.isdir(below) and not os.path.islink(below):
                    for name in os.listdir(below):
                        rel = os.path.join(rel_dir, name)
                        if not os.path.lexists(os.path.join(current, name)) and _in_lower(
                            lowers, rel, rootless
                        ):
                            out.append(("D", "/" + rel))
                    break
        for name in sorted(dirnames + filenames):
            rel = os.path.join(rel_dir, name) if rel_dir else name
            st = os.lstat(os.path.join(current, name))
            if _is_whiteout(st):
                out.append(("D", "/" + rel))
            elif _in_lower(lowers, rel, rootless):
                out.append(("C", "/" + rel))
            else:
                out.append(("A", "/" + rel))
    kept = {item for item in out if item[1] not in _RUNTIME_PATHS}
    return sorted(kept, key=lambda item: item[1])


def _read_upper(eng: Engine, row: Dict[str, Any], action: Callable[[int], None],
                parent: Callable[[int], None]) -> None:  # fmt: skip
    """Run action(fd) where the upper and lower dirs are readable (namespace root when
    rootless), without mounting anything."""
    rootless_store = eng.paths.rootless
    _preload()
    data_r, data_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(err_r)
            os.close(data_r)
            if rootless_store:
                from podpy import rootless

                rootless.enter_userns_in_place()
            action(data_w)
        except BaseException as err:
            _send_error(err_w, err)
            code = 1
        os._exit(code)
    os.close(err_w)
    os.close(data_w)
    try:
        parent(data_r)
    finally:
        os.close(data_r)
        os.waitpid(pid, 0)
    with os.fdopen(err_r, "rb") as f:
        reply = f.read()
    if reply:
        message = json.loads(reply)
        raise PodpyError(message["error"], hint=message.get("hint"), exit_code=message["code"])


def diff(eng: Engine, ref: str) -> List[Tuple[str, str]]:
    """podman diff: the container's changes against its image, sorted by path."""
    from podpy.engine import containers

    row = containers.lookup(eng, ref)
    rootfs = row["config"]["rootfs"]
    rootless = eng.paths.rootless
    chunks: List[bytes] = []

    def produce(fd: int) -> None:
        payload = json.dumps(_changes(rootfs, rootless)).encode()
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(payload)

    def collect(fd: int) -> None:
        with os.fdopen(fd, "rb", closefd=False) as f:
            chunks.append(f.read())

    _read_upper(eng, row, produce, collect)
    return [(kind, path) for kind, path in json.loads(b"".join(chunks) or b"[]")]


# --- commit ---------------------------------------------------------------------------------


def _write_layer(fd: int, upper: str, rootless: bool) -> None:
    """The upper dir as an OCI layer tar: whiteouts as `.wh.` files, opaque dirs marked,
    sorted, owners numeric and names blank, so the same changes give the same diff ID."""
    from podpy.storage.layers import OPAQUE_MARKER, WHITEOUT_PREFIX

    with os.fdopen(fd, "wb", closefd=False) as out:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:

            def marker(name: str, st: os.stat_result) -> None:
                info = tarfile.TarInfo(name)
                info.mtime = int(st.st_mtime)
                info.mode = 0o644
                tar.addfile(info)

            def walk(directory: str, prefix: str) -> None:
                for name in sorted(os.listdir(directory)):
                    path = os.path.join(directory, name)
                    arc = prefix + name
                    st = os.lstat(path)
                    if _is_whiteout(st):
                        marker(prefix + WHITEOUT_PREFIX + name, st)
                        continue
                    info = tar.gettarinfo(path, arc)
                    if info is None:
                        continue  # sockets: not part of an image
                    info.uname = info.gname = ""
                    info.mtime = int(st.st_mtime)
                    if info.isreg():
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
                    if info.isdir():
                        if _opaque(path, rootless):
                            marker(arc + "/" + OPAQUE_MARKER, st)
                        walk(path, arc + "/")

            walk(upper, "")


def _merge_config(row: Dict[str, Any], parent: Dict[str, Any]) -> Dict[str, Any]:
    """The new image's `config`: the parent's, updated with what the container ran with."""
    config = dict(parent.get("config") or {})
    create_opts = row["config"].get("create_options") or {}
    run_opts = row["config"].get("run_options") or {}
    if create_opts.get("command"):
        config["Cmd"] = list(create_opts["command"])
    if create_opts.get("entrypoint") is not None:
        config["Entrypoint"] = list(create_opts["entrypoint"] or [])
        if not create_opts.get("command"):
            config.pop("Cmd", None)
    env = list(config.get("Env") or [])
    for item in run_opts.get("env") or []:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    if env:
        config["Env"] = env
    labels = dict(config.get("Labels") or {})
    labels.update(row["config"].get("labels") or {})
    if labels:
        config["Labels"] = labels
    if run_opts.get("user"):
        config["User"] = run_opts["user"]
    if run_opts.get("workdir"):
        config["WorkingDir"] = run_opts["workdir"]
    return config


@record
class CommitOptions:
    changes: List[str] = field(default_factory=list)
    message: str = ""
    author: str = ""
    pause: bool = False
    include_volumes: bool = False
    squash: bool = False


def commit(eng: Engine, ref: str, image_name: Optional[str], options: CommitOptions) -> str:
    """A new image: the container's image plus one layer of its changes; returns the ID."""
    import hashlib
    import shutil

    from podpy.engine import containers
    from podpy.engine.image_transfer import _rfc3339_now, apply_changes
    from podpy.image import copy as cp
    from podpy.image import manifest as mf
    from podpy.image import reference as refs

    row = containers.lookup(eng, ref)
    name = None
    if image_name:
        try:
            name = refs.parse_local_name(image_name).tagged_name
        except refs.ReferenceError as err:
            raise PodpyError(str(err), hint="use NAME[:TAG]") from err
    parent_source = cp.store_source(eng, row["image_id"])
    parent_config = parent_source.config
    new_config = _merge_config(row, parent_config)
    apply_changes(new_config, list(options.changes))
    paused_here = False
    if options.pause and row["status"] == "running":
        from podpy.engine import container_ops

        container_ops.pause(eng, row["id"])
        paused_here = True
    tmp_dir = cp.scratch_dir(eng)
    try:
        layer_path = os.path.join(tmp_dir, "layer.tar")
        hasher = hashlib.sha256()
        size = 0
        upper = row["config"]["rootfs"]["upper"]
        rootless = eng.paths.rootless

        def produce(fd: int) -> None:
            _write_layer(fd, upper, rootless)

        def collect(fd: int) -> None:
            nonlocal size
            with os.fdopen(fd, "rb", closefd=False) as src, open(layer_path, "wb") as out:
                while True:
                    chunk = src.read(_COPY_CHUNK)
                    if not chunk:
                        break
                    hasher.update(chunk)
                    size += len(chunk)
                    out.write(chunk)

        try:
            _read_upper(eng, row, produce, collect)
        finally:
            if paused_here:
                from podpy.engine import container_ops

                container_ops.unpause(eng, row["id"])
        digest = "sha256:" + hasher.hexdigest()
        created = _rfc3339_now()
        command = row["config"].get("command") or []
        history = list(parent_config.get("history") or [])
        entry: Dict[str, Any] = {"created": created, "created_by": " ".join(command)}
        if options.author:
            entry["author"] = options.author
        if options.message:
            entry["comment"] = options.message
        history.append(entry)
        config = dict(parent_config)
        config.update(
            {
                "created": created,
                "config": new_config,
                "rootfs": {
                    "type": "layers",
                    "diff_ids": list((parent_config.get("rootfs") or {}).get("diff_ids") or [])
                    + [digest],
                },
                "history": history,
            }
        )
        if options.author:
            config["author"] = options.author
        if options.message:
            config["comment"] = options.message
        layer = cp.LayerBlob(
            digest,
            size,
            mf.OCI_LAYER,
            digest,
            lambda: open(layer_path, "rb"),  # noqa: SIM115
        )
        source = cp.ImageSource(
            config_raw=json.dumps(config, separators=(",", ":")).encode(),
            layers=list(parent_source.layers) + [layer],
        )
        image_id = cp.store_image(eng, source, [name] if name else [])
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    eng.db.add_event("image", "commit", name=name or image_id, object_id=image_id, attributes={})
    return image_id


# --- export ---------------------------------------------------------------------------------


def export(eng: Engine, ref: str, out: BinaryIO) -> None:
    """The container's whole filesystem (image plus changes, no volumes) as one tar."""
    from podpy.engine import containers

    row = containers.lookup(eng, ref)
    view = _view(eng, row)
    if row["status"] == "removing":
        raise InvalidState(f"container {row['name']} is being removed")

    def produce(fd: int) -> None:
        _write_tree(fd, "/", "")

    _in_container(view, produce, lambda fd: _copy_fd_to(fd, out), rootfs_only=True)
