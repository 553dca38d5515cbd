"""The k8s-file log format: writer (lines, partial lines, rotation by max-size) and reader
(timestamps, partial joins, offsets for `logs -f`, the rotated generation first)."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from podpy.monitor import logfile

T0 = calendar.timegm((2024, 1, 2, 3, 4, 5)) + 0.25


def lines_of(path: Path) -> list:
    return path.read_bytes().splitlines()


def test_format_is_conmons(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    writer = logfile.LogWriter(str(path))
    writer.write("stdout", b"hello\nworld\n", now=T0)
    writer.write("stderr", b"oops\n", now=T0 + 1)
    writer.close()
    assert lines_of(path) == [
        b"2024-01-02T03:04:05.250000000Z stdout F hello",
        b"2024-01-02T03:04:05.250000000Z stdout F world",
        b"2024-01-02T03:04:06.250000000Z stderr F oops",
    ]
    assert path.stat().st_mode & 0o777 == 0o600


def test_partial_lines_are_marked_and_joined(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    writer = logfile.LogWriter(str(path))
    writer.write("stdout", b"no newline yet", now=T0)
    writer.write("stderr", b"err line\n", now=T0)
    writer.write("stdout", b" ... done\nnext", now=T0 + 1)
    writer.close()
    raw, _ = logfile.read_records(str(path))
    assert [(r.stream, r.partial, r.text) for r in raw] == [
        ("stdout", True, b"no newline yet"),
        ("stderr", False, b"err line"),
        ("stdout", False, b" ... done"),
        ("stdout", True, b"next"),
    ]
    joined = list(logfile.join_partials(raw))
    assert [(r.stream, r.partial, r.text) for r in joined] == [
        ("stderr", False, b"err line"),
        ("stdout", False, b"no newline yet ... done"),
        ("stdout", True, b"next"),  # still open at the end: kept, marked partial
    ]
    # the joined line keeps the time of its first piece
    assert joined[1].time == pytest.approx(T0)


def test_empty_lines_and_spaces_survive(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    writer = logfile.LogWriter(str(path))
    writer.write("stdout", b"\n  two  spaces  \n\n", now=T0)
    writer.close()
    records, _ = logfile.read_records(str(path))
    assert [r.text for r in records] == [b"", b"  two  spaces  ", b""]


def test_timestamps_parse() -> None:
    assert logfile.parse_rfc3339("2024-01-02T03:04:05Z") == calendar.timegm((2024, 1, 2, 3, 4, 5))
    assert logfile.parse_rfc3339("2024-01-02T03:04:05.250000000Z") == pytest.approx(T0)
    assert logfile.parse_rfc3339("2024-01-02T05:04:05.25+02:00") == pytest.approx(T0)
    assert logfile.parse_rfc3339("2024-01-02T00:34:05.25-02:30") == pytest.approx(T0)
    with pytest.raises(ValueError):
        logfile.parse_rfc3339("yesterday")
    # round trip, including a fraction that rounds up to a whole second
    for ts in (T0, 1700000000.0, 1700000000.9999999999):
        assert logfile.parse_rfc3339(logfile.rfc3339nano(ts)) == pytest.approx(ts, abs=1e-6)
    assert logfile.rfc3339nano(1700000000.9999999999).endswith(":21.000000000Z")


def test_since_until_filtering_by_record_time(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    writer = logfile.LogWriter(str(path))
    for i in range(5):
        writer.write("stdout", b"line %d\n" % i, now=T0 + i * 10)
    writer.close()
    records, _ = logfile.read_records(str(path))
    since, until = T0 + 10, T0 + 30
    kept = [r.text for r in records if since <= r.time <= until]
    assert kept == [b"line 1", b"line 2", b"line 3"]


def test_garbage_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    path.write_bytes(
        b"not a record\n"
        b"2024-01-02T03:04:05Z stdin F wrong stream\n"
        b"badtime stdout F x\n"
        b"2024-01-02T03:04:05Z stdout F good\n"
    )
    records, _ = logfile.read_records(str(path))
    assert [r.text for r in records] == [b"good"]


def test_offsets_follow_only_complete_records(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    writer = logfile.LogWriter(str(path))
    writer.write("stdout", b"one\n", now=T0)
    first, offset = logfile.read_records(str(path))
    assert [r.text for r in first] == [b"one"] and offset == path.stat().st_size
    # a record being written (no newline yet) is not returned, nor skipped
    with open(path, "ab") as f:
        f.write(b"2024-01-02T03:04:06Z stdout F tw")
    more, offset2 = logfile.read_records(str(path), offset)
    assert more == [] and offset2 == offset
    with open(path, "ab") as f:
        f.write(b"o\n")
    more, offset3 = logfile.read_records(str(path), offset2)
    assert [r.text for r in more] == [b"two"] and offset3 == path.stat().st_size
    writer.close()


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    assert logfile.read_records(str(tmp_path / "absent.log")) == ([], 0)


def test_rotation_keeps_one_generation_under_max_size(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    writer = logfile.LogWriter(str(path), max_size=1024)
    lines = [b"line-%03d-%s" % (i, b"x" * 20) for i in range(300)]
    # one big chunk, as one read from a fast container would give
    writer.write("stdout", b"\n".join(lines[:200]) + b"\n", now=T0)
    for line in lines[200:]:
        writer.write("stdout", line + b"\n", now=T0)
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctr.log", "ctr.log.1"]
    assert path.stat().st_size <= 1024
    assert (tmp_path / "ctr.log.1").stat().st_size <= 1024
    records, _ = logfile.read_records(str(path))
    texts = [r.text for r in records]
    # the rotated generation comes first, then the current one: a contiguous tail
    assert texts[-1] == lines[-1]
    assert texts == lines[len(lines) - len(texts) :]
    assert len(texts) > 1024 // 60  # more than the current file alone


def test_rotation_with_a_record_bigger_than_max_size(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    writer = logfile.LogWriter(str(path), max_size=100)
    writer.write("stdout", b"small\n", now=T0)
    writer.write("stdout", b"B" * 500 + b"\n", now=T0)
    writer.write("stdout", b"after\n", now=T0)
    writer.close()
    records, _ = logfile.read_records(str(path))
    assert [r.text for r in records] == [b"B" * 500, b"after"]  # `small` rotated away
    assert (tmp_path / "ctr.log.1").stat().st_size > 100  # the big record, written alone
    assert lines_of(path) == [b"2024-01-02T03:04:05.250000000Z stdout F after"]


def test_reopening_appends_and_counts_existing_size(tmp_path: Path) -> None:
    """A restarted container appends to its log, and rotation counts what is there."""
    path = tmp_path / "ctr.log"
    first = logfile.LogWriter(str(path), max_size=200)
    first.write("stdout", b"a" * 100 + b"\n", now=T0)
    first.close()
    second = logfile.LogWriter(str(path), max_size=200)
    second.write("stdout", b"b" * 100 + b"\n", now=T0)
    second.close()
    assert [r.text for r in logfile.read_records(str(path))[0]] == [b"a" * 100, b"b" * 100]
    assert lines_of(tmp_path / "ctr.log.1") == [
        b"2024-01-02T03:04:05.250000000Z stdout F " + b"a" * 100
    ]
