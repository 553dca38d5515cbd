"""cp, diff, commit and export through the zipapp, as the rootless user and as root: files both
ways (running and stopped containers, modes and owners, `-` tar streams), escapes refused,
podman's A/C/D diff, a committed image that runs, and a flattened export."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import uuid
from pathlib import Path

import pytest


def unique_name(prefix: str = "f") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def scratch(shared_tmp: Path) -> Path:
    path = shared_tmp / unique_name("scratch")
    path.mkdir()
    path.chmod(0o777)
    return path


def as_owner(runner, path: Path) -> None:
    """Give a test-made host tree to the runner's user (rootless cp reads it as that user)."""
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            os.lchown(name, runner.uid, runner.gid)


def prepared_container(runner, image: str) -> str:
    """A stopped container whose changes add, change and delete files."""
    name = unique_name("c")
    runner.ok(
        "run", "--name", name, image, "sh", "-c",
        "echo new > /newfile && echo x >> /etc/group && rm /etc/shadow && "
        "mkdir -p /srv/d && echo in > /srv/d/f && chown -R 1234:2345 /srv/d && "
        "chmod 0751 /srv/d && chmod 0604 /srv/d/f && ln -s ../../../.. /escape",
    )  # fmt: skip
    return name


def test_diff_reports_added_changed_deleted(as_each, image: str) -> None:
    ctr = prepared_container(as_each, image)
    lines = as_each.ok("diff", ctr).splitlines()
    for expected in ("A /newfile", "C /etc", "C /etc/group", "D /etc/shadow", "A /srv/d/f"):
        assert expected in lines
    assert "A /etc/hosts" not in lines  # runtime mount points are left out, as podman does
    assert lines == sorted(lines, key=lambda line: line[2:])
    data = json.loads(as_each.ok("container", "diff", "--format", "json", ctr))
    assert "/etc/shadow" in data["deleted"] and "/newfile" in data["added"]
    assert "/etc/group" in data["changed"]


def test_cp_out_keeps_modes_and_owners(as_each, image: str, scratch: Path) -> None:
    ctr = prepared_container(as_each, image)
    as_each.ok("cp", f"{ctr}:/srv/d", str(scratch))
    copied = scratch / "d"
    assert (copied / "f").read_text() == "in\n"
    assert copied.stat().st_mode & 0o7777 == 0o751
    assert (copied / "f").stat().st_mode & 0o7777 == 0o604
    if as_each.user is None:  # root keeps the container's owners on the host
        assert (copied / "f").stat().st_uid == 1234 and (copied / "f").stat().st_gid == 2345
    else:  # a user cannot give files away: they are the user's
        assert (copied / "f").stat().st_uid == as_each.uid
    # A file to a new name, and `-`: a tar stream with the container's owners.
    as_each.ok("cp", f"{ctr}:/newfile", str(scratch / "renamed"))
    assert (scratch / "renamed").read_text() == "new\n"
    stream = as_each.cmd(
        ["sh", "-c", f"python3 -I {as_each.pyz} {' '.join(as_each.extra_args)} cp {ctr}:/srv/d - "
         "| base64 -w0"],
    )  # fmt: skip
    import base64

    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(stream.stdout))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"d", "d/f"}
    assert (members["d/f"].uid, members["d/f"].gid, members["d/f"].mode) == (1234, 2345, 0o604)
    missing = as_each.podpy("cp", f"{ctr}:/nope", str(scratch))
    assert missing.returncode == 125 and '"/nope" could not be found on container' in missing.stderr


def test_cp_in_to_stopped_and_running_containers(as_each, image: str, scratch: Path) -> None:
    src = scratch / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "file").write_text("payload\n")
    (src / "sub" / "file").chmod(0o640)
    (src / "sub").chmod(0o710)
    as_owner(as_each, src)
    ctr = prepared_container(as_each, image)
    as_each.ok("cp", str(src), f"{ctr}:/srv/")  # --archive (default): the container's user owns it
    as_each.ok("cp", "--archive=false", str(src / "sub" / "file"), f"{ctr}:/kept")
    running = unique_name("r")
    # A non-root container process: its namespaces are still joined; --archive gives it the file.
    as_each.ok("run", "-d", "--user", "1000:1000", "--name", running, image, "sleep", "60")
    try:
        as_each.ok("cp", str(src / "sub" / "file"), f"{running}:/tmp/")
        listing = as_each.ok(
            "exec", running, "sh", "-c", "stat -c '%a %u:%g' /tmp/file; cat /tmp/file"
        ).splitlines()
        assert listing == ["640 1000:1000", "payload"]
        as_each.ok("exec", running, "sh", "-c", "echo live > /tmp/live")
        as_each.ok("cp", f"{running}:/tmp/live", str(scratch / "live"))
        assert (scratch / "live").read_text() == "live\n"
    finally:
        as_each.podpy("rm", "-f", "-t", "0", running)
    # The stopped container got both copies (read back through cp out).
    as_each.ok("cp", f"{ctr}:/srv/tree", str(scratch / "back"))
    assert (scratch / "back" / "sub" / "file").read_text() == "payload\n"
    assert (scratch / "back" / "sub").stat().st_mode & 0o7777 == 0o710
    tar_bytes = _podpy_bytes(as_each, "cp", f"{ctr}:/srv/tree", "-")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        info = tar.getmember("tree/sub/file")
    assert (info.uid, info.gid, info.mode) == (0, 0, 0o640)
    kept = tarfile.open(fileobj=io.BytesIO(_podpy_bytes(as_each, "cp", f"{ctr}:/kept", "-")))
    assert kept.getmember("kept").uid == as_each.uid  # --archive=false kept the source owner


def _podpy_bytes(runner, *args: str, stdin: bytes = b"") -> bytes:
    import shutil
    import subprocess

    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    result = subprocess.run(
        runner._wrap([python, "-I", str(runner.pyz), *runner.extra_args, *args]),
        input=stdin,
        capture_output=True,
        env=runner.env(),
        cwd=str(runner.home),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def _tar_of(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, uid in entries:
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), uid, uid, 0o600
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_cp_tar_stream_in_and_escapes_refused(as_each, image: str, scratch: Path) -> None:
    ctr = prepared_container(as_each, image)
    _podpy_bytes(
        as_each, "cp", "--archive=false", "-", f"{ctr}:/srv",
        stdin=_tar_of([("from-tar", b"streamed\n", 4321)]),
    )  # fmt: skip
    tar_bytes = _podpy_bytes(as_each, "cp", f"{ctr}:/srv/from-tar", "-")
    info = tarfile.open(fileobj=io.BytesIO(tar_bytes)).getmember("from-tar")
    assert (info.uid, info.mode) == (4321, 0o600)

    # A symlink pointing far above / stays inside the container: this is busybox's passwd.
    as_each.ok("cp", f"{ctr}:/escape/etc/passwd", str(scratch / "passwd"))
    inside = _podpy_bytes(as_each, "cp", f"{ctr}:/etc/passwd", "-")
    assert (scratch / "passwd").read_bytes() == tarfile.open(
        fileobj=io.BytesIO(inside)
    ).extractfile("passwd").read()  # type: ignore[union-attr]
    assert (scratch / "passwd").read_bytes() != Path("/etc/passwd").read_bytes()
    # Writing through it lands in the container, not on the host.
    marker = f"podpy-escape-{uuid.uuid4().hex}"
    (scratch / marker).write_text("x")
    as_owner(as_each, scratch / marker)
    as_each.ok("cp", str(scratch / marker), f"{ctr}:/escape/tmp/")
    assert not Path("/tmp", marker).exists()
    assert as_each.ok("cp", f"{ctr}:/tmp/{marker}", "-")
    # Archive entries climbing out of the destination are refused, nothing is written.
    evil = as_each.cmd(
        [
            "sh", "-c",
            f"base64 -d | python3 -I {as_each.pyz} {' '.join(as_each.extra_args)} "
            f"cp - {ctr}:/srv",
        ],
        input=__import__("base64").b64encode(_tar_of([("../../evil", b"x", 0)])).decode(),
    )  # fmt: skip
    assert evil.returncode == 125 and "refusing to extract" in evil.stderr
    both = as_each.podpy("cp", str(scratch), str(scratch))
    assert both.returncode == 125 and "you must use just one container" in both.stderr


def test_commit_then_run_the_new_image(as_each, image: str) -> None:
    ctr = prepared_container(as_each, image)
    name = unique_name("img")
    image_id = as_each.ok(
        "commit", "-m", "my message", "-a", "Jane <j@example.org>",
        "-c", "ENV GREETING=hello", "-c", 'CMD ["cat", "/newfile"]', "-c", "LABEL stage=test",
        ctr, name,
    ).strip()  # fmt: skip
    assert len(image_id) == 64
    assert f"localhost/{name}" in as_each.ok("images", "--format", "{{.Repository}}")
    assert as_each.ok("run", "--rm", name).strip() == "new"
    out = as_each.ok(
        "run", "--rm", name, "sh", "-c",
        "echo $GREETING; ls /etc/shadow 2>&1; stat -c '%u:%g %a' /srv/d/f; tail -n1 /etc/group",
    ).splitlines()  # fmt: skip
    assert out[0] == "hello"
    assert "No such file" in out[1]  # the deletion is a whiteout in the new layer
    assert out[2] == "1234:2345 604"
    assert out[3] == "x"
    data = json.loads(as_each.ok("image", "inspect", name))[0]
    assert data["Labels"]["stage"] == "test"
    assert data["Author"] == "Jane <j@example.org>" or data.get("Comment") == "my message"
    history = as_each.ok("history", "--format", "{{.Comment}}", name)
    assert "my message" in history
    bad = as_each.podpy("commit", "-c", "BOGUS x", ctr, unique_name("img"))
    assert bad.returncode == 125 and "invalid change" in bad.stderr


def test_export_flattens_the_filesystem(as_each, image: str, scratch: Path) -> None:
    ctr = prepared_container(as_each, image)
    target = scratch / "out.tar"
    as_each.ok("export", "-o", str(target), ctr)
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
        assert "bin/busybox" in names and "newfile" in names and "srv/d/f" in names
        assert "etc/shadow" not in names
        assert not any(".wh." in n for n in names)
        assert tar.getmember("srv/d/f").uid == 1234
    running = unique_name("r")
    as_each.ok("run", "-d", "--name", running, image, "sleep", "60")
    try:
        data = _podpy_bytes(as_each, "export", running)
        names = set(tarfile.open(fileobj=io.BytesIO(data)).getnames())
        assert "bin/busybox" in names
        assert not any(n.startswith("proc/") for n in names)  # no /proc, /sys, /dev content
    finally:
        as_each.podpy("rm", "-f", "-t", "0", running)
    bad = as_each.podpy("export", "-o", str(scratch / "no" / "such" / "x.tar"), ctr)
    assert bad.returncode == 125 and not (scratch / "no").exists()
