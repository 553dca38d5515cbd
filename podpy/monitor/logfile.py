"""The k8s-file container log format (what conmon writes): one record per line,
`<RFC3339Nano time> <stdout|stderr> <F|P> <text>`; P marks a partial line.

Shared by the monitor (writer, with max-size rotation) and `podpy logs` (reader). Stdlib only.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple

TYPE_CHECKING = False  # typing costs ~5 ms and ~0.8 MiB in the long-lived monitor
if TYPE_CHECKING:
    from typing import Iterator, List, Optional, Tuple

STREAMS = ("stdout", "stderr")


def rfc3339nano(ts: float) -> str:
    secs = int(ts)
    nanos = int(round((ts - secs) * 1e9))
    if nanos >= 1_000_000_000:
        secs, nanos = secs + 1, nanos - 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch for `2024-01-02T03:04:05.123456789Z` or `...+02:00`."""
    main, frac, offset = text, "", 0
    if text.endswith("Z"):
        main = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        sign = 1 if text[-6] == "+" else -1
        offset = sign * (int(text[-5:-3]) * 3600 + int(text[-2:]) * 60)
        main = text[:-6]
    if "." in main:
        main, frac = main.split(".", 1)
    import calendar

    base = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return base - offset + (float("0." + frac) if frac else 0.0)


# time: float, stream: str, partial: bool, text: bytes, raw_time: str
LogRecord = namedtuple("LogRecord", "time stream partial text raw_time")


class LogWriter:
    """Appends records, splitting on newlines; rotates to `<path>.1` past max_size bytes."""

    def __init__(self, path: str, max_size: int = -1):
        self.path = path
        self.max_size = max_size
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    def write(self, stream: str, data: bytes, now: Optional[float] = None) -> None:
        stamp = rfc3339nano(time.time() if now is None else now).encode()
        tag = stream.encode()
        out: List[bytes] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            if end < 0:
                out.append(b"%s %s P %s\n" % (stamp, tag, data[start:]))
                break
            out.append(b"%s %s F %s\n" % (stamp, tag, data[start:end]))
            start = end + 1
        if self.max_size <= 0:
            self._append(b"".join(out))
            return
        # Rotate between records, so one big read from the container still keeps the file
        # under max-size (a single record longer than max-size is written alone).
        batch: List[bytes] = []
        batch_size = 0
        for record in out:
            if self._size + batch_size + len(record) > self.max_size and (self._size or batch):
                self._append(b"".join(batch))
                batch, batch_size = [], 0
                self._rotate()
            batch.append(record)
            batch_size += len(record)
        self._append(b"".join(batch))

    def _append(self, blob: bytes) -> None:
        if blob:
            os.write(self._fd, blob)
            self._size += len(blob)

    def _rotate(self) -> None:
        # One generation kept, as conmon does: the old file becomes .1, a new one starts.
        os.close(self._fd)
        os.replace(self.path, self.path + ".1")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def parse_line(line: bytes) -> Optional[LogRecord]:
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    raw_time = parts[0].decode(errors="replace")
    stream = parts[1].decode(errors="replace")
    if stream not in STREAMS:
        return None
    try:
        ts = parse_rfc3339(raw_time)
    except ValueError:
        return None
    text = parts[3] if len(parts) > 3 else b""
    return LogRecord(ts, stream, parts[2] == b"P", text, raw_time)


def read_records(path: str, offset: int = 0) -> Tuple[List[LogRecord], int]:
    """Complete records from `offset` (rotated `.1` first when offset is 0); returns new offset."""
    records: List[LogRecord] = []
    if offset == 0 and os.path.exists(path + ".1"):
        with open(path + ".1", "rb") as f:
            records.extend(r for r in map(parse_line, f) if r is not None)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return records, offset
    complete = data.rfind(b"\n") + 1
    for line in data[:complete].splitlines():
        rec = parse_line(line)
        if rec is not None:
            records.append(rec)
    return records, offset + complete


def join_partials(records: List[LogRecord]) -> Iterator[LogRecord]:
    """Merge P records with the following records of the same stream into whole lines."""
    pending = {}
    for rec in records:
        if rec.partial:
            prev = pending.get(rec.stream)
            pending[rec.stream] = rec if prev is None else prev._replace(text=prev.text + rec.text)
            continue
        prev = pending.pop(rec.stream, None)
        if prev is not None:
            rec = prev._replace(text=prev.text + rec.text, partial=False)
        yield rec
    for rec in pending.values():
        yield rec
