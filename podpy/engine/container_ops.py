"""The container verbs around the lifecycle core: restart, pause/unpause, top, rename, port, stats,
events, prune and attach. Each looks a container up through podpy.engine.containers (which
re-syncs its state) and talks to the running container through /proc, its cgroup, the OCI
runtime's state and the monitor's attach socket."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from podpy.errors import AlreadyExists, InvalidState, PodpyError

if TYPE_CHECKING:
    from podpy.engine import Engine

STATE_IMPROPER = "container state improper"
PAUSE_ROOTLESS = "pause is not supported for rootless containers"
STATS_ROOTLESS = "stats is not supported in rootless mode without cgroups v2"
_CGROUP_HINT = (
    "rootless containers get a cgroup only with cgroups v2 and a delegated subtree "
    "(systemd: Delegate=yes); this host has none"
)


def _event(eng: Engine, row: Dict[str, Any], status: str, **attrs: Any) -> None:
    attrs.setdefault("image", row["config"].get("image_name") or "")
    eng.db.add_event("container", status, name=row["name"], object_id=row["id"], attributes=attrs)


def _lookup(eng: Engine, ref: str) -> Dict[str, Any]:
    from podpy.engine.containers import lookup

    return lookup(eng, ref)


# --- restart ------------------------------------------------------------------------------------


def restart(eng: Engine, ref: str, timeout: Optional[int] = None) -> Dict[str, Any]:
    """Stop (if running or paused) and start again; the id, name and storage stay the same."""
    from podpy.engine import containers

    row = _lookup(eng, ref)
    _event(eng, row, "restart")
    if row["status"] in containers.RUNNING_STATES:
        containers.stop(eng, row["id"], timeout)
    return containers.start(eng, row["id"])


# --- pause / unpause ----------------------------------------------------------------------------


def runtime_state(eng: Engine, cid: str) -> Dict[str, Any]:
    """What the OCI runtime saved for the container (its cgroup among others); {} if nothing."""
    path = os.path.join(eng.paths.run_root, "oci", cid, "state.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _require_cgroup(eng: Engine, row: Dict[str, Any], message: str) -> None:
    if eng.paths.rootless and not (runtime_state(eng, row["id"]).get("cgroup") or {}):
        raise PodpyError(message, hint=_CGROUP_HINT)


def _set_frozen(eng: Engine, row: Dict[str, Any], frozen: bool) -> None:
    from podpy.runtime.oci import get_runtime

    root = os.path.join(eng.paths.run_root, "oci")
    runtime: Any = get_runtime(row["config"].get("runtime"), root)
    if hasattr(runtime, "pause"):
        runtime.pause(row["id"], frozen)
    else:  # an external runc-compatible runtime
        runtime._call("pause" if frozen else "resume", row["id"])


def pause(eng: Engine, ref: str) -> Dict[str, Any]:
    """Freeze every process of the container (cgroup freezer); status becomes `paused`."""
    row = _lookup(eng, ref)
    if row["status"] != "running":
        raise InvalidState(f'"{row["status"]}" is not running, can\'t pause: {STATE_IMPROPER}')
    _require_cgroup(eng, row, f"{PAUSE_ROOTLESS}: this container does not have a cgroup")
    _set_frozen(eng, row, True)
    row = eng.db.update_state("containers", row["id"], {"paused_at": time.time()}, status="paused")
    _event(eng, row, "pause")
    return row


def unpause(eng: Engine, ref: str) -> Dict[str, Any]:
    """Thaw a paused container; status becomes `running` again."""
    row = _lookup(eng, ref)
    if row["status"] != "paused":
        raise InvalidState(f'"{row["id"]}" is not paused, can\'t unpause: {STATE_IMPROPER}')
    thaw(eng, row)
    _event(eng, row, "unpause")
    return eng.db.get("containers", row["id"]) or row


def thaw(eng: Engine, row: Dict[str, Any]) -> None:
    """Unfreeze a paused container and mark it running (stop and rm -f call this first: frozen
    tasks do not act on signals, not even SIGKILL, until thawed)."""
    if row["status"] != "paused":
        return
    try:
        _set_frozen(eng, row, False)
    except PodpyError:
        pass  # already gone: the caller's stop/kill will notice
    eng.db.update_state("containers", row["id"], {"paused_at": None}, status="running")


# --- rename -------------------------------------------------------------------------------------


def rename(eng: Engine, ref: str, new_name: str) -> Dict[str, Any]:
    from podpy.engine.containers import NAME_RE

    if not NAME_RE.match(new_name):
        raise PodpyError(
            "names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument",
            hint="choose a name of letters, digits, '_', '.' and '-'",
        )
    row = _lookup(eng, ref)
    if row["name"] == new_name:
        return row
    taken = eng.db.get_by_name("containers", new_name)
    if taken is not None:
        raise AlreadyExists(
            f"renaming container {row['id']}: name {new_name} already in use, cannot rename "
            f"container {row['id']}: container already exists",
            hint="remove that container first, or choose another name",
        )
    try:
        eng.db.update("containers", row["id"], name=new_name)
    except AlreadyExists:
        raise
    except Exception as err:  # a concurrent rename took the name between check and update
        if eng.db.get_by_name("containers", new_name) is not None:
            raise AlreadyExists(f'the container name "{new_name}" is already in use') from err
        raise
    row = eng.db.get("containers", row["id"]) or row
    _event(eng, row, "rename")
    return row


# --- port ---------------------------------------------------------------------------------------


def port_mappings(row: Dict[str, Any]) -> List[Any]:
    """The published ports (the state's resolved host ports win over the configured ones)."""
    from podpy.engine.network_opts import PortMapping

    state_ports = (row.get("state") or {}).get("ports")
    ports = state_ports or ((row["config"].get("network") or {}).get("ports") or [])
    return [PortMapping.from_dict(p) for p in ports]


def port(eng: Engine, ref: str, private: Optional[str] = None) -> List[str]:
    """podman port: `80/tcp -> 0.0.0.0:8080` lines, or `0.0.0.0:8080` for one private port."""
    from podpy.engine.network_opts import format_host_addr

    row = _lookup(eng, ref)
    mappings = port_mappings(row)
    if row["status"] != "running" or not mappings:
        # podman answers nothing, exit 0, for a container not running or without published
        # ports, even when asked for one PORT
        return []
    if private is None:
        return [str(m) for m in mappings]
    number, _, proto = private.partition("/")
    if not number.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
        raise PodpyError(
            f"invalid port {private!r}", hint="give a container port like 80 or 80/tcp"
        )
    found = [
        f"{format_host_addr(m.host_ip or '0.0.0.0')}:{m.host_port}"
        for m in mappings
        if m.container_port == int(number) and m.protocol == (proto or "tcp")
    ]
    if not found:
        raise PodpyError(f'failed to find published port "{private}"')
    return found


# --- prune --------------------------------------------------------------------------------------


def prune(eng: Engine, filters: Sequence[str] = ()) -> List[Tuple[str, Optional[Exception]]]:
    """Remove every container that is not running (exited or created); returns (id, error)."""
    from podpy.engine import containers

    until: Optional[float] = None
    labels: List[Tuple[str, Optional[str]]] = []
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise PodpyError(f"invalid filter {item!r}", hint="use until=TIME or label=KEY[=VALUE]")
        if key == "until":
            until = parse_time(value, since=True)
        elif key == "label":
            lkey, has_value, lval = value.partition("=")
            labels.append((lkey, lval if has_value else None))
        else:
            raise PodpyError(f"{key} is an invalid filter", hint="filters: until, label")
    results: List[Tuple[str, Optional[Exception]]] = []
    for row in containers.list_containers(eng, all_containers=True):
        if row["status"] in containers.RUNNING_STATES or row["config"].get("infra"):
            continue  # infra containers go with their pod (podman's prune skips them too)
        if until is not None and row["created"] > until:
            continue
        row_labels = row["config"].get("labels") or {}
        if any(k not in row_labels or (v is not None and row_labels[k] != v) for k, v in labels):
            continue
        try:
            containers.remove(eng, row["id"])
            results.append((row["id"], None))
        except PodpyError as err:
            results.append((row["id"], err))
    return results


# --- time parsing (events, prune) ---------------------------------------------------------------

_DURATION_UNITS = (
    ("ms", 0.001),
    ("us", 1e-6),
    ("ns", 1e-9),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
)


def _parse_go_duration(text: str) -> Optional[float]:
    """Go's time.ParseDuration (`1h30m`, `10s`, `250ms`); None if it is not one."""
    import re

    if not text or not re.match(r"^(\d+(\.\d+)?(h|m|s|ms|us|ns))+$", text):
        return None
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", text):
        total += float(number) * dict(_DURATION_UNITS)[unit]
    return total


def parse_time(text: str, since: bool) -> float:
    """podman's ParseInputTime: a Unix time, RFC 3339 (or a date), or a Go duration, which is
    subtracted from now for --since and added to now for --until."""
    value = text.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    duration = _parse_go_duration(value)
    if duration is not None:
        return time.time() - duration if since else time.time() + duration
    import calendar
    import re

    match = re.match(
        r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?"
        r"\s*(Z|[+-]\d{2}:?\d{2})?$",
        value,
    )
    if not match:
        raise PodpyError(
            f"invalid time {text!r}",
            hint="use a Unix time, RFC 3339 (2024-01-02T15:04:05Z) or a duration like 10m",
        )
    year, month, day, hour, minute, second, frac, zone = match.groups()
    parts = (int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    if zone is None:
        stamp = time.mktime(parts + (0, 0, -1))  # no zone: local time, as podman
    else:
        stamp = float(calendar.timegm(parts + (0, 0, 0)))
        if zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            stamp -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return stamp + (float(frac) if frac else 0.0)


# --- events -------------------------------------------------------------------------------------

_EVENT_FILTERS = ("type", "event", "container", "image", "label")


def _parse_event_filters(filters: Sequence[str]) -> Dict[str, List[str]]:
    parsed: Dict[str, List[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise PodpyError(f"invalid filter {item!r}", hint="use KEY=VALUE, e.g. event=start")
        if key == "status":
            key = "event"
        if key not in _EVENT_FILTERS:
            raise PodpyError(
                f'"{key}" is an invalid filter', hint="filters: " + ", ".join(_EVENT_FILTERS)
            )
        parsed.setdefault(key, []).append(value)
    return parsed


def _matches(event: Dict[str, Any], filters: Dict[str, List[str]]) -> bool:
    """Values of one key are alternatives; different keys must all match (podman)."""
    for key, values in filters.items():
        if key == "type":
            ok = event["Type"] in values
        elif key == "event":
            ok = event["Status"] in values
        elif key == "container":
            ok = event["Type"] == "container" and any(
                v == event["Name"] or (len(v) >= 3 and event["ID"].startswith(v)) for v in values
            )
        elif key == "image":
            ok = any(v in (event["Image"], event["Name"]) for v in values)
        else:  # label
            attrs = event["Attributes"]
            ok = any(
                (v.partition("=")[0] in attrs)
                and ("=" not in v or attrs[v.partition("=")[0]] == v.partition("=")[2])
                for v in values
            )
        if not ok:
            return False
    return True


def go_time_string(stamp: float) -> str:
    """Go's time.Time.String() in local time: `2024-01-01 10:00:00.123456789 +0000 UTC`
    (trailing zeros of the fraction dropped, as Go's .999999999 layout does)."""
    secs = int(stamp)
    nanos = int(round((stamp - secs) * 1e9))
    if nanos >= 1_000_000_000:
        secs, nanos = secs + 1, nanos - 1_000_000_000
    local = time.localtime(secs)
    fraction = f"{nanos:09d}".rstrip("0")
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", local)
        + (f".{fraction}" if fraction else "")
        + time.strftime(" %z %Z", local)
    )


def _rfc3339(stamp: float) -> str:
    secs = int(stamp)
    fraction = f"{int(round((stamp - secs) * 1e9)) % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + (
        f".{fraction}Z" if fraction else "Z"
    )


class EventReader:
    """Reads the persistent events journal as podman's event records (ID, Name, Status, ...)."""

    def __init__(self, eng: Engine):
        self.eng = eng
        self.images: Dict[str, str] = {}

    def _image_of(self, row: Dict[str, Any]) -> str:
        image = (row.get("attributes") or {}).get("image")
        if image:
            self.images[row["object_id"]] = image
            return str(image)
        if row["object_id"] not in self.images:
            found = self.eng.db.get("containers", row["object_id"]) if row["object_id"] else None
            self.images[row["object_id"]] = (found or {}).get("config", {}).get("image_name") or ""
        return self.images[row["object_id"]]

    def record(self, row: Dict[str, Any]) -> Dict[str, Any]:
        attributes = dict(row.get("attributes") or {})
        image = self._image_of(row) if row["type"] == "container" else row["name"]
        attributes.pop("image", None)
        return {
            "ID": row["object_id"],
            "Image": image,
            "Name": row["name"],
            "Status": row["status"],
            "Time": _rfc3339(row["time"]),
            "TimeNano": int(row["time"] * 1e9),
            "Type": row["type"],
            "Attributes": attributes,
            "_time": row["time"],
        }

    def read(
        self,
        since: Optional[float],
        until: Optional[float],
        after_seq: Optional[int] = None,
    ) -> Tuple[List[Dict[str, Any]], Optional[int]]:
        rows = self.eng.db.events(since=since, until=until, after_seq=after_seq)
        # Learn images from every event first: the monitor's start/died events carry none.
        for row in rows:
            if row["type"] == "container" and (row.get("attributes") or {}).get("image"):
                self.images.setdefault(row["object_id"], row["attributes"]["image"])
        last = rows[-1]["seq"] if rows else after_seq
        return [self.record(r) for r in rows], last


def event_line(event: Dict[str, Any]) -> str:
    """podman events' default line."""
    when = go_time_string(event["_time"])
    if event["Type"] == "container":
        attrs = [f"image={event['Image']}", f"name={event['Name']}"]
        return f"{when} container {event['Status']} {event['ID']} ({', '.join(attrs)})"
    if event["Type"] == "image":
        return f"{when} image {event['Status']} {event['ID']} {event['Name']}"
    return f"{when} {event['Type']} {event['Status']} {event['ID']} (name={event['Name']})"


def events(
    eng: Engine,
    emit: Callable[[Dict[str, Any]], None],
    since: Optional[str] = None,
    until: Optional[str] = None,
    filters: Sequence[str] = (),
    stream: bool = True,
    poll_interval: float = 0.2,
) -> None:
    """Call emit(event) for each matching event in order; with stream, keep following new ones
    until `until` passes (or forever). Without --since, streaming shows only new events."""
    parsed = _parse_event_filters(filters)
    since_ts = parse_time(since, since=True) if since else None
    until_ts = parse_time(until, since=False) if until else None
    reader = EventReader(eng)
    if stream and since_ts is None:
        rows = eng.db.query("SELECT MAX(seq) AS seq FROM events")
        last = rows[0]["seq"] if rows and rows[0]["seq"] is not None else 0
        # Still learn the images of containers created before now.
        reader.read(None, None)
    else:
        batch, last = reader.read(since_ts, until_ts)
        for event in batch:
            if _matches(event, parsed):
                emit(event)
        if not stream:
            return
    while until_ts is None or time.time() <= until_ts:
        time.sleep(poll_interval)
        batch, last = reader.read(since_ts, until_ts, after_seq=last)
        for event in batch:
            if _matches(event, parsed):
                emit(event)


# --- top ----------------------------------------------------------------------------------------


class UnknownDescriptor(PodpyError):
    """top was given words that are not descriptors (podman then runs ps(1) in the container)."""


def top_with_ps(eng: Engine, ref: str, ps_args: Sequence[str]) -> int:
    """podman's fallback for ps(1) options (`top CTR -ef`): run the container's own ps."""
    from podpy.engine.exec import ExecOptions, exec_in

    code, _session = exec_in(eng, ref, ExecOptions(command=["ps", *ps_args]))
    return code


TOP_DEFAULT = ("user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args")
TOP_HEADERS = {
    "args": "COMMAND",
    "capeff": "EFFECTIVE CAPS",
    "comm": "COMMAND",
    "etime": "ELAPSED",
    "group": "GROUP",
    "hgroup": "HGROUP",
    "hpid": "HPID",
    "huser": "HUSER",
    "nice": "NI",
    "pcpu": "%CPU",
    "pgid": "PGID",
    "pid": "PID",
    "ppid": "PPID",
    "rgroup": "RGROUP",
    "rss": "RSS",
    "ruser": "RUSER",
    "seccomp": "SECCOMP",
    "state": "STATE",
    "time": "TIME",
    "tty": "TTY",
    "user": "USER",
    "vsz": "VSZ",
}


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String(): `0s`, `250ms`, `3.547561464s`, `1m2.5s`, `2h0m1s`."""
    nanos = int(round(seconds * 1e9))
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1000:
        return f"{sign}{nanos}ns"
    if nanos < 1_000_000:
        return sign + _trim(f"{nanos / 1e3:.3f}") + "µs"
    if nanos < 1_000_000_000:
        return sign + _trim(f"{nanos / 1e6:.6f}") + "ms"
    hours, rest = divmod(nanos, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _trim(f"{rest // 10**9}.{rest % 10**9:09d}") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number


class _IdMap:
    """Host ids -> container ids through /proc/PID/uid_map (as this process sees it)."""

    def __init__(self, path: str):
        self.ranges: List[Tuple[int, int, int]] = []
        try:
            with open(path) as f:
                for line in f:
                    inside, outside, count = (int(x) for x in line.split())
                    self.ranges.append((inside, outside, count))
        except (OSError, ValueError):
            self.ranges = [(0, 0, 4294967295)]

    def to_container(self, host_id: int) -> int:
        for inside, outside, count in self.ranges:
            if outside <= host_id < outside + count:
                return inside + host_id - outside
        return 65534  # unmapped: the overflow id


def _names(root: str, path: str) -> Dict[int, str]:
    from podpy.runtime.mounts import secure_join

    out: Dict[int, str] = {}
    try:
        with open(secure_join(root, path), encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split(":")
                if len(fields) >= 3 and fields[2].isdigit():
                    out.setdefault(int(fields[2]), fields[0])
    except OSError:
        pass
    return out


def _container_pids(init_pid: int) -> List[int]:
    """Host pids of every process in the pid namespace of init_pid."""
    try:
        target = os.stat(f"/proc/{init_pid}/ns/pid").st_ino
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/pid").st_ino == target:
                found.append(int(entry))
        except OSError:
            continue
    return sorted(found)


def _read_proc(pid: int) -> Optional[Dict[str, Any]]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/status") as f:
            status = dict(
                (line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in f if ":" in line
            )
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    return {"comm": comm, "fields": fields, "status": status, "cmdline": cmdline}


def _tty_name(tty_nr: int) -> str:
    if tty_nr == 0:
        return "?"
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{minor + (major - 136) * 256}"
    if major == 4:
        return f"tty{minor}"
    if major == 5 and minor == 1:
        return "console"
    return "?"


def _caps_text(hex_mask: str) -> str:
    from podpy import linux

    mask = int(hex_mask or "0", 16)
    if mask == 0:
        return "none"
    if mask == (1 << (linux.last_cap() + 1)) - 1:
        return "full"
    return ",".join(name[4:] for name, number in linux.CAP_NUMBERS.items() if mask & (1 << number))


def top(eng: Engine, ref: str, descriptors: Sequence[str] = ()) -> List[List[str]]:
    """podman top: a header row and one row per process of the container (pids as inside)."""
    words: List[str] = []
    for item in descriptors:
        words.extend(w for w in item.replace(",", " ").split() if w)
    wanted = [w.lower() for w in words] or list(TOP_DEFAULT)
    unknown = [w for w in wanted if w not in TOP_HEADERS]
    if unknown:
        raise UnknownDescriptor(
            f"unknown descriptor: {unknown[0]}",
            hint="descriptors: " + ", ".join(sorted(TOP_HEADERS)) + "; or ps(1) options",
        )
    row = _lookup(eng, ref)
    if row["status"] != "running" or not row.get("pid"):
        raise InvalidState("top can only be used on running containers")
    init_pid = int(row["pid"])
    root = f"/proc/{init_pid}/root"
    uids, gids = _IdMap(f"/proc/{init_pid}/uid_map"), _IdMap(f"/proc/{init_pid}/gid_map")
    users, groups = _names(root, "/etc/passwd"), _names(root, "/etc/group")
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    procs = {pid: info for pid in _container_pids(init_pid) for info in [_read_proc(pid)] if info}

    def inner_pid(info: Dict[str, Any], key: str = "NSpid") -> str:
        return (info["status"].get(key) or "0").split()[-1]

    table = [[TOP_HEADERS[w] for w in wanted]]
    for host_pid, info in procs.items():
        fields, status = info["fields"], info["status"]
        cpu_seconds = (int(fields[11]) + int(fields[12])) / hz
        elapsed = max(uptime - int(fields[19]) / hz, 0.0)
        uid_fields = status.get("Uid", "0 0 0 0").split()
        gid_fields = status.get("Gid", "0 0 0 0").split()
        euid, egid = int(uid_fields[1]), int(gid_fields[1])
        ruid, rgid = int(uid_fields[0]), int(gid_fields[0])
        parent = int(fields[1])
        args = info["cmdline"].replace(b"\0", b" ").decode(errors="replace").strip()
        values = {
            "user": users.get(uids.to_container(euid), str(uids.to_container(euid))),
            "ruser": users.get(uids.to_container(ruid), str(uids.to_container(ruid))),
            "group": groups.get(gids.to_container(egid), str(gids.to_container(egid))),
            "rgroup": groups.get(gids.to_container(rgid), str(gids.to_container(rgid))),
            "huser": str(euid),
            "hgroup": str(egid),
            "pid": inner_pid(info),
            "hpid": str(host_pid),
            "ppid": inner_pid(procs[parent]) if parent in procs else "0",
            "pgid": inner_pid(info, "NSpgid"),
            "pcpu": f"{(cpu_seconds / elapsed * 100) if elapsed else 0.0:.3f}",
            "etime": go_duration(elapsed),
            "time": go_duration(cpu_seconds),
            "tty": _tty_name(int(fields[4])),
            "args": args or f"[{info['comm']}]",
            "comm": info["comm"],
            "nice": fields[16],
            "state": fields[0],
            "vsz": str(int(status.get("VmSize", "0 kB").split()[0])),
            "rss": str(int(status.get("VmRSS", "0 kB").split()[0])),
            "capeff": _caps_text(status.get("CapEff", "0")),
            "seccomp": {"0": "disabled", "1": "strict", "2": "filter"}.get(
                status.get("Seccomp", "0"), "?"
            ),
        }
        table.append([values[w] for w in wanted])
    return table


# --- stats --------------------------------------------------------------------------------------


def _net_io(pid: int) -> Tuple[int, int]:
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, data = line.partition(":")
        if name.strip() == "lo":
            continue
        numbers = data.split()
        if len(numbers) >= 9:
            rx += int(numbers[0])
            tx += int(numbers[8])
    return rx, tx


def _block_io(cgroup: Dict[str, Any]) -> Tuple[int, int]:
    paths = cgroup.get("paths") or {}
    read = written = 0
    try:
        if cgroup.get("version") == 2:
            with open(os.path.join(paths["unified"], "io.stat")) as f:
                for line in f:
                    for item in line.split()[1:]:
                        key, _, value = item.partition("=")
                        if key == "rbytes":
                            read += int(value)
                        elif key == "wbytes":
                            written += int(value)
        elif "blkio" in paths:
            with open(os.path.join(paths["blkio"], "blkio.throttle.io_service_bytes")) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[1] == "Read":
                        read += int(parts[2])
                    elif len(parts) == 3 and parts[1] == "Write":
                        written += int(parts[2])
    except (OSError, KeyError, ValueError):
        pass
    return read, written


def _host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def human_size(size: float) -> str:
    """go-units HumanSizeWithPrecision(size, 4), which podman stats uses: `274.4kB`, `25.28GB`."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    value, unit = float(size), 0
    while value >= 1000 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    return f"{value:.4g}{units[unit]}"


def stats_targets(eng: Engine, refs: Sequence[str], all_containers: bool) -> List[Dict[str, Any]]:
    from podpy.engine import containers
    from podpy.runtime import cgroups

    if eng.paths.rootless and cgroups.mode() != "v2":
        raise PodpyError(STATS_ROOTLESS, hint=_CGROUP_HINT)
    if refs:
        return [_lookup(eng, r) for r in refs]
    return containers.list_containers(eng, all_containers=all_containers)


class StatsSampler:
    """Samples cgroup counters; CPU % is over the time since the previous sample (or since
    the container started, for the first one), as podman computes it."""

    def __init__(self, eng: Engine):
        self.eng = eng
        self.previous: Dict[str, Tuple[float, int]] = {}

    def sample(self, row: Dict[str, Any]) -> Dict[str, Any]:
        from podpy.runtime.cgroups import Cgroup

        row = _lookup(self.eng, row["id"])
        running = row["status"] in ("running", "paused")
        state = runtime_state(self.eng, row["id"]) if running else {}
        cgroup_json = state.get("cgroup") or {}
        cgroup = Cgroup.from_json(cgroup_json)
        counters = cgroup.stats() if cgroup is not None else {}
        if running and cgroup is None and self.eng.paths.rootless:
            raise PodpyError(
                f"container {row['name']} has no cgroup to read statistics from", hint=_CGROUP_HINT
            )
        now = time.time()
        started = (row.get("state") or {}).get("started_at") or now
        cpu_ns = int(counters.get("cpu_ns", 0))
        uptime = max(now - started, 1e-9) if running else 0.0
        avg = cpu_ns / 1e9 / uptime * 100 if uptime else 0.0
        last_time, last_cpu = self.previous.get(row["id"], (started, 0))
        window = max(now - last_time, 1e-9)
        cpu_percent = (cpu_ns - last_cpu) / 1e9 / window * 100 if running else 0.0
        self.previous[row["id"]] = (now, cpu_ns)
        usage = int(counters.get("memory_usage", 0))
        limit = int(counters.get("memory_limit", 0))
        host = _host_memory()
        if not limit or (host and limit > host):
            limit = host
        rx, tx = _net_io(int(row["pid"])) if running and row.get("pid") else (0, 0)
        read, written = _block_io(cgroup_json)
        return {
            "ID": row["id"][:12],
            "ContainerID": row["id"],
            "Name": row["name"],
            "CPUPerc": f"{cpu_percent:.2f}%",
            "AVGCPU": f"{avg:.2f}%",
            "CPU": go_duration(cpu_ns / 1e9),
            "CPUNano": cpu_ns,
            "MemUsage": f"{human_size(usage)} / {human_size(limit)}",
            "MemUsageBytes": f"{human_size(usage)} / {human_size(limit)}",
            "MemPerc": f"{(usage / limit * 100) if limit else 0.0:.2f}%",
            "NetIO": f"{human_size(rx)} / {human_size(tx)}",
            "BlockIO": f"{human_size(read)} / {human_size(written)}",
            "PIDs": str(counters.get("pids", 0)),
            "UpTime": go_duration(uptime),
        }


# --- attach -------------------------------------------------------------------------------------

_CTRL_KEYS = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(value: Optional[str]) -> bytes:
    """`ctrl-p,ctrl-q` -> b"\\x10\\x11" (podman/docker syntax); "" disables detaching."""
    if value is None:
        value = "ctrl-p,ctrl-q"
    if value == "":
        return b""
    out = bytearray()
    for item in value.split(","):
        key = item.strip()
        if key.lower().startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            if ch in _CTRL_KEYS:
                out.append(_CTRL_KEYS[ch])
                continue
        elif len(key) == 1:
            out.append(ord(key))
            continue
        raise PodpyError(
            f"invalid detach keys: {value!r}",
            hint='use a comma-separated list of a letter or "ctrl-<value>", e.g. ctrl-p,ctrl-q',
        )
    return bytes(out)


class _DetachMatcher:
    """Finds the detach sequence in typed input, holding back a partial match."""

    def __init__(self, keys: bytes):
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> Tuple[bytes, bool]:
        """(bytes to pass on, whether the sequence was typed)."""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            candidate = self.held + bytes([byte])
            if self.keys.startswith(candidate):
                self.held = candidate
                if candidate == self.keys:
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
            if self.keys.startswith(bytes([byte])):
                self.held = bytes([byte])
            else:
                out.append(byte)
        return bytes(out), False


def attach(
    eng: Engine,
    ref: str,
    detach_keys: Optional[str] = None,
    no_stdin: bool = False,
    sig_proxy: bool = True,
) -> int:
    """Connect this terminal to a running container through its monitor's attach socket.
    Returns the container's exit code when it ends, 0 when detached with the key sequence."""
    import select
    import signal
    import socket
    import struct

    from podpy.engine import containers
    from podpy.monitor.main import connect_unix

    keys = parse_detach_keys(detach_keys)
    row = _lookup(eng, ref)
    if row["status"] != "running":
        raise InvalidState(f"you can only attach to running containers: {STATE_IMPROPER}")
    tty = bool(row["config"].get("tty"))
    path = os.path.join(containers.run_dir(eng, row["id"]), "attach.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connect_unix(sock, path)
    except OSError as err:
        sock.close()
        raise PodpyError(
            f"attaching to container {row['id'][:12]}: {err.strerror}",
            hint="the container's monitor is not serving attach clients; is it still running?",
        ) from err
    matcher = _DetachMatcher(keys)
    saved_tty = None
    use_stdin = not no_stdin
    if use_stdin and tty and os.isatty(0):
        import termios
        import tty as tty_mod

        saved_tty = termios.tcgetattr(0)
        tty_mod.setraw(0)
    previous: Dict[int, Any] = {}
    if tty and os.isatty(1):
        # The container's pty follows this terminal's size: now, and on every SIGWINCH.
        monitor_pid = (row.get("state") or {}).get("monitor_pid")
        resize = _resizer(containers.run_dir(eng, row["id"]), monitor_pid)
        previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda *_: resize())
        resize()
    if sig_proxy and not tty:

        def forward(signum: int, _frame: Any) -> None:
            try:
                os.kill(int(row["pid"]), signum)
            except OSError:
                pass

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            previous[sig] = signal.signal(sig, forward)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if use_stdin:
        poller.register(0, select.POLLIN)
    pending = b""
    detached = False
    try:
        while True:
            for fd, _mask in poller.poll():
                if fd == 0:
                    data = os.read(0, 65536)
                    if not data:
                        poller.unregister(0)
                        continue
                    passed, detached = matcher.feed(data)
                    if passed and row["config"].get("stdin"):
                        sock.sendall(passed)
                    if detached:
                        raise StopIteration
                    continue
                data = sock.recv(65536)
                if not data:
                    raise StopIteration
                if tty:
                    _write_all(1, data)
                    continue
                pending += data
                while len(pending) >= 8:
                    stream, length = struct.unpack(">BxxxI", pending[:8])
                    if len(pending) < 8 + length:
                        break
                    _write_all(2 if stream == 2 else 1, pending[8 : 8 + length])
                    pending = pending[8 + length :]
    except StopIteration:
        pass
    finally:
        sock.close()
        if saved_tty is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved_tty)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if detached:
        return 0
    return containers.wait(eng, row["id"])


def _resizer(run_dir: str, monitor_pid: Optional[int]) -> Callable[[], None]:
    """What attach does on SIGWINCH: write this terminal's size where the monitor reads it
    (monitor/main.py WINSIZE_FILE) and signal the monitor, which resizes the container's pty
    (conmon gets "1 ROWS COLS" on its ctl FIFO for the same job)."""
    import fcntl
    import signal
    import struct
    import termios

    from podpy.monitor.main import WINSIZE_FILE

    def resize() -> None:
        try:
            raw = fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8)
        except OSError:
            return
        rows, cols = struct.unpack("HHHH", raw)[:2]
        if not rows or not cols or not monitor_pid:
            return
        path = os.path.join(run_dir, WINSIZE_FILE)
        temp = f"{path}.{os.getpid()}"
        try:
            with open(temp, "w") as f:
                f.write(f"{rows} {cols}\n")
            os.rename(temp, path)
            os.kill(int(monitor_pid), signal.SIGWINCH)
        except OSError:
            pass  # the container is going away: nothing to resize

    return resize


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def running_refs(eng: Engine, statuses: Iterable[str] = ("running",)) -> List[str]:
    from podpy.engine import containers

    wanted = set(statuses)
    return [r["id"] for r in containers.list_containers(eng) if r["status"] in wanted]
