"""Volumes through the zipapp, as the rootless user and as root: `-v NAME:/path` creates on first
use and copies the image's content in (owners and modes kept), data persists across containers,
anonymous volumes, and `volume create|ls|inspect|rm|prune|exists` with podman's messages."""

from __future__ import annotations

import json
import os
import re
import uuid

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def unique_name(prefix: str = "v") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def volume_names(runner, *args: str) -> list:
    return runner.ok("volume", "ls", "-q", *args).split()


def test_named_volume_copy_up_keeps_owners_and_modes(as_each, image: str) -> None:
    vol = unique_name()
    out = as_each.ok(
        "run", "--rm", "-v", f"{vol}:/etc", image,
        "sh", "-c", "grep ^root: /etc/passwd; stat -c '%u:%g %a' /etc/shadow /etc",
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith("root:x:0:0")
    assert lines[1] == "0:0 640"  # busybox ships /etc/shadow 0640 root
    assert lines[2].split()[0] == "0:0"
    data = json.loads(as_each.ok("volume", "inspect", vol))[0]
    assert data["Name"] == vol and data["Driver"] == "local" and data["Scope"] == "local"
    assert data["NeedsCopyUp"] is False  # copied once, never again
    assert data["Mountpoint"].endswith(f"/volumes/{vol}/_data")


def test_volume_persists_and_is_chowned_to_the_container_user(as_each, image: str) -> None:
    vol = unique_name()
    as_each.ok(
        "run", "--rm", "--user", "1000:1000", "-v", f"{vol}:/data", image,
        "sh", "-c", "echo kept > /data/file",
    )  # fmt: skip
    out = as_each.ok(
        "run", "--rm", "-v", f"{vol}:/data:ro", image,
        "sh", "-c", "cat /data/file; stat -c '%u:%g' /data /data/file; touch /data/x || echo ro",
    )  # fmt: skip
    assert out.splitlines() == ["kept", "1000:1000", "1000:1000", "ro"]
    # Its files belong to a sub-uid when rootless: rm must still delete them all.
    mountpoint = json.loads(as_each.ok("volume", "inspect", vol))[0]["Mountpoint"]
    assert as_each.ok("volume", "rm", vol).strip() == vol
    assert not os.path.lexists(os.path.dirname(mountpoint))


def test_volume_commands(as_each, image: str) -> None:
    vol, other = unique_name(), unique_name()
    assert as_each.ok("volume", "create", "--label", "team=a", vol).strip() == vol
    as_each.ok("volume", "create", other)
    assert set(volume_names(as_each)) >= {vol, other}
    # podman lists volumes sorted by name, whatever the creation order
    later = ["zz" + unique_name(), "aa" + unique_name()]
    for name in later:
        as_each.ok("volume", "create", name)
    listed = volume_names(as_each)
    assert listed == sorted(listed) and set(later) <= set(listed)
    as_each.ok("volume", "rm", *later)
    assert volume_names(as_each, "--filter", "label=team=a") == [vol]
    assert volume_names(as_each, "--filter", f"name={other}") == [other]
    table = as_each.ok("volume", "ls")
    assert table.splitlines()[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert as_each.ok("volume", "ls", "--format", "{{.Name}} {{.Labels.team}}", "-f", "label=team")
    data = json.loads(as_each.ok("volume", "inspect", vol))[0]
    assert data["Labels"] == {"team": "a"} and data["Options"] == {}
    assert as_each.ok("volume", "inspect", "--format", "{{.Name}}", vol).strip() == vol
    assert as_each.podpy("volume", "exists", vol).returncode == 0
    assert as_each.podpy("volume", "exists", unique_name()).returncode == 1

    again = as_each.podpy("volume", "create", vol)
    assert again.returncode == 125
    assert f"volume with name {vol} already exists" in again.stderr
    bad = as_each.podpy("volume", "create", "bad/name")
    assert bad.returncode == 125 and "names must match" in bad.stderr
    opt = as_each.podpy("volume", "create", "-o", "type=nfs", unique_name())
    assert opt.returncode == 125 and "invalid volume option" in opt.stderr

    # In use: refused without -f (podman's message); -f removes the container first.
    ctr = unique_name("c")
    as_each.ok("create", "--name", ctr, "-v", f"{vol}:/data", image, "true")
    mounts = json.loads(as_each.ok("inspect", "--type", "container", ctr))[0]["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [("volume", vol, "/data")]
    busy = as_each.podpy("volume", "rm", vol)
    assert busy.returncode == 2  # podman 4.3's exit code for a volume in use
    # podman reports missing volumes first; the last error (in use: 2) sets the exit code
    both = as_each.podpy("volume", "rm", vol, "nosuchvolume")
    assert both.returncode == 2, both.stderr
    assert both.stderr.index('"nosuchvolume" found') < both.stderr.index("is being used")
    # podman: no header over an empty list (json still prints [])
    assert as_each.ok("volume", "ls", "--filter", "name=^nomatch$") == ""
    assert json.loads(as_each.ok("volume", "ls", "--filter", "name=^nomatch$", "--format", "json")) == []
    bad_filter = as_each.podpy("volume", "ls", "--filter", "colour=red")
    assert bad_filter.returncode == 125
    assert 'Error: "colour" is an invalid volume filter' in bad_filter.stderr
    assert f"volume {vol} is being used by the following container(s)" in busy.stderr
    assert vol in volume_names(as_each)
    pruned = as_each.ok("volume", "prune", "-f").split()
    assert other in pruned and vol not in pruned
    assert as_each.ok("volume", "rm", "-f", vol).strip() == vol
    assert as_each.podpy("container", "exists", ctr).returncode == 1
    assert vol not in volume_names(as_each)
    missing = as_each.podpy("volume", "rm", vol)
    assert missing.returncode == 1 and f'no volume with name "{vol}" found' in missing.stderr
    forced = as_each.podpy("volume", "rm", "-f", vol)  # podman: -f ignores a missing volume
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, "", "")


def test_volume_create_uid_gid_option(as_each, image: str) -> None:
    vol = unique_name()
    as_each.ok("volume", "create", "-o", "o=uid=123,gid=456", vol)
    data = json.loads(as_each.ok("volume", "inspect", vol))[0]
    assert data["UID"] == 123 and data["GID"] == 456
    out = as_each.ok("run", "--rm", "-v", f"{vol}:/data", image, "stat", "-c", "%u:%g", "/data")
    assert out.strip() == "123:456"


def test_anonymous_volumes_go_with_rm_v_and_run_rm(as_each, image: str) -> None:
    ctr = unique_name("c")
    before = set(volume_names(as_each))
    as_each.ok("run", "--name", ctr, "-v", "/scratch", image, "sh", "-c", "echo a > /scratch/f")
    new = set(volume_names(as_each)) - before
    assert len(new) == 1
    anon = new.pop()
    assert HEX64.match(anon)
    assert json.loads(as_each.ok("volume", "inspect", anon))[0]["Anonymous"] is True
    as_each.ok("rm", "-v", ctr)
    assert anon not in volume_names(as_each)

    as_each.ok("run", "--rm", "-v", "/scratch", image, "true")
    assert set(volume_names(as_each)) == before


def test_image_volume_gets_an_anonymous_volume_with_the_image_content(as_each, image: str) -> None:
    seed, img = unique_name("c"), unique_name("img")
    as_each.ok(
        "run", "--name", seed, image, "sh", "-c",
        "mkdir /data && echo seed > /data/seed && chown 42:43 /data/seed",
    )  # fmt: skip
    as_each.ok("commit", "-c", "VOLUME /data", seed, img)
    before = set(volume_names(as_each))
    ctr = unique_name("c")
    out = as_each.ok(
        "run", "--name", ctr, img, "sh", "-c",
        "cat /data/seed; stat -c %u:%g /data/seed; grep -c ' /data ' /proc/mounts",
    )  # fmt: skip
    assert out.splitlines() == ["seed", "42:43", "1"]
    new = set(volume_names(as_each)) - before
    assert len(new) == 1
    as_each.ok("rm", "-v", ctr)
    assert set(volume_names(as_each)) == before


def test_cp_into_a_stopped_containers_volume_lands_in_the_volume(
    as_each, image: str, shared_tmp
) -> None:
    vol, ctr = unique_name(), unique_name("c")
    as_each.ok("run", "--name", ctr, "-v", f"{vol}:/data", image, "true")
    src = shared_tmp / unique_name("file")
    src.write_text("via cp\n")
    src.chmod(0o644)
    as_each.ok("cp", str(src), f"{ctr}:/data/copied")
    out = as_each.ok("run", "--rm", "-v", f"{vol}:/data", image, "cat", "/data/copied")
    assert out == "via cp\n"
    assert "data/copied" not in as_each.ok("diff", ctr)  # not in the container's own layer
