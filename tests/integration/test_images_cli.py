"""Local image commands after a real pull: images, tag, untag, rmi, inspect, exists, history, prune."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, List

import images
import pytest

pytestmark = pytest.mark.registry

Runner = Any  # tests/conftest.py's Runner (the name `conftest` is shadowed here)

INSPECT_KEYS = {
    "Id",
    "Digest",
    "RepoTags",
    "RepoDigests",
    "Parent",
    "Comment",
    "Created",
    "Config",
    "Version",
    "Author",
    "Architecture",
    "Os",
    "Size",
    "VirtualSize",
    "GraphDriver",
    "RootFS",
    "Labels",
    "Annotations",
    "ManifestType",
    "User",
    "History",
    "NamesHistory",
}


def graph_root(runner: Runner) -> Path:
    if "--root" in runner.extra_args:
        return Path(runner.extra_args[runner.extra_args.index("--root") + 1])
    return runner.home / ".local" / "share" / "podpy" / "storage"


def store_files(runner: Runner) -> List[str]:
    """Layer dirs and blobs left in the store (temporaries included)."""
    root = graph_root(runner)
    out: List[str] = []
    for sub in ("layers", "blobs/sha256"):
        folder = root / sub
        if folder.is_dir():
            out += [f"{sub}/{p.name}" for p in folder.iterdir()]
    return out


def pull(runner: Runner, reference: str) -> str:
    return runner.ok("pull", "-q", "--tls-verify=false", reference).strip()


def test_inspect_exists_history(
    as_each: Runner, busybox_image: str, busybox_layout: images.BuiltImage
) -> None:
    image_id = pull(as_each, busybox_image)
    data = json.loads(as_each.ok("image", "inspect", busybox_image))
    assert isinstance(data, list) and len(data) == 1
    info = data[0]
    assert INSPECT_KEYS <= set(info)
    assert info["Id"] == image_id == busybox_layout.image_id
    assert info["Digest"] == busybox_layout.manifest_digest
    assert info["RepoTags"] == [busybox_image]
    repo = busybox_image.rsplit(":", 1)[0]
    assert info["RepoDigests"] == [f"{repo}@{busybox_layout.manifest_digest}"]
    assert info["Architecture"] == busybox_layout.architecture and info["Os"] == "linux"
    assert info["RootFS"] == {"Type": "layers", "Layers": busybox_layout.diff_ids}
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["NamesHistory"] == [busybox_image]
    assert info["Size"] > 1_000_000

    # --format, lookups by short ID, full ID, sha256: ID and digest.
    assert as_each.ok("image", "inspect", "--format", "{{.Id}}", image_id[:12]).strip() == image_id
    for ref in (image_id, "sha256:" + image_id, f"{repo}@{busybox_layout.manifest_digest}"):
        assert as_each.podpy("image", "exists", ref).returncode == 0, ref
    missing = as_each.podpy("image", "inspect", "nosuchimage")
    assert missing.returncode == 125 and "nosuchimage: image not known" in missing.stderr
    assert as_each.podpy("image", "exists", "nosuchimage").returncode == 1
    bad = as_each.podpy("image", "exists", "BAD")  # podman: an invalid name is an error
    assert bad.returncode == 125 and "repository name must be lowercase" in bad.stderr

    history = as_each.ok("image", "history", busybox_image).splitlines()
    assert history[0].split()[:2] == ["ID", "CREATED"] and "CREATED BY" in history[0]
    assert history[1].startswith(image_id[:12])
    rows = json.loads(as_each.ok("history", "--format", "json", busybox_image))
    assert rows[0]["id"] == image_id and rows[0]["size"] > 0


def test_images_listing_options(as_each: Runner, busybox_image: str) -> None:
    image_id = pull(as_each, busybox_image)
    as_each.ok("tag", busybox_image, "mytest:v1", "quay.io/someone/else:2")
    table = as_each.ok("images").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    names = sorted(" ".join(line.split()[:2]) for line in table[1:])
    repo, tag = busybox_image.rsplit(":", 1)
    assert names == sorted([f"{repo} {tag}", "localhost/mytest v1", "quay.io/someone/else 2"])
    assert as_each.ok("images", "-q").split() == [image_id[:12]]
    assert as_each.ok("images", "-q", "--no-trunc").split() == ["sha256:" + image_id]
    assert len(as_each.ok("images", "--noheading").splitlines()) == 3
    digests = as_each.ok("images", "--digests").splitlines()
    assert "DIGEST" in digests[0] and "sha256:" in digests[1]
    formatted = as_each.ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").split("\n")
    assert f"localhost/mytest:v1 {image_id[:12]}" in formatted
    parsed = json.loads(as_each.ok("images", "--format", "json"))
    assert len(parsed) == 1 and parsed[0]["Id"] == image_id and len(parsed[0]["Names"]) == 3
    filtered = as_each.ok("images", "--filter", "reference=mytest", "--format", "{{.Repository}}")
    assert filtered.split() == ["localhost/mytest"]
    assert as_each.ok("images", "mytest:v1", "--format", "{{.Tag}}").split() == ["v1"]
    assert as_each.ok("images", "--filter", "dangling=true", "-q").strip() == ""
    assert as_each.ok("images", "--filter", "label=nope", "-q").strip() == ""
    bad = as_each.podpy("images", "--filter", "colour=red")
    assert bad.returncode == 125 and 'unsupported image filter "colour"' in bad.stderr
    assert as_each.ok("image", "ls", "-q") == as_each.ok("image", "list", "-q")


def test_tag_untag_rmi_lifecycle(as_each: Runner, busybox_image: str) -> None:
    image_id = pull(as_each, busybox_image)
    as_each.ok("tag", image_id[:12], "lifecycle:a", "lifecycle:b")
    bad = as_each.podpy("tag", busybox_image, "Bad:Name")
    assert bad.returncode == 125 and "lowercase" in bad.stderr

    # Removing one of several names only untags it.
    out = as_each.ok("rmi", "lifecycle:a")
    assert out.splitlines() == ["Untagged: localhost/lifecycle:a"]
    assert as_each.podpy("image", "exists", "lifecycle:a").returncode == 1
    assert as_each.podpy("image", "exists", "lifecycle:b").returncode == 0

    # By ID with several names: refused without --force.
    refused = as_each.podpy("rmi", image_id[:12])
    assert refused.returncode != 0 and "more than one tag" in refused.stderr

    as_each.ok("untag", image_id, "lifecycle:b")
    info = json.loads(as_each.ok("image", "inspect", image_id))[0]
    assert info["RepoTags"] == [busybox_image]
    assert info["NamesHistory"][:2] == ["localhost/lifecycle:b", "localhost/lifecycle:a"]

    missing = as_each.podpy("rmi", "nosuchimage")
    assert missing.returncode == 1 and "nosuchimage: image not known" in missing.stderr
    assert as_each.podpy("rmi", "-i", "nosuchimage").returncode == 0
    # podman: --force also ignores a missing image (exit 0, nothing printed)
    forced = as_each.podpy("rmi", "-f", "nosuchimage")
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, "", "")

    out = as_each.ok("rmi", busybox_image)
    assert out.splitlines() == [f"Untagged: {busybox_image}", f"Deleted: {image_id}"]
    assert as_each.ok("images", "-q").strip() == ""
    assert store_files(as_each) == []


def test_rmi_force_and_all(as_each: Runner, busybox_image: str, multilayer_image: str) -> None:
    first = pull(as_each, "docker://" + busybox_image)  # podman's explicit transport works too
    assert as_each.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split() == [busybox_image]
    second = pull(as_each, multilayer_image)
    as_each.ok("tag", first, "extra:1")
    out = as_each.ok("rmi", "-f", first)
    assert f"Deleted: {first}" in out and "Untagged: localhost/extra:1" in out
    # The shared base layer survives: the multilayer image still has all its layers.
    info = json.loads(as_each.ok("image", "inspect", second))[0]
    lower = info["GraphDriver"]["Data"]["LowerDir"].split(":")
    assert all(Path(d).is_dir() for d in lower)
    out = as_each.ok("rmi", "-a")
    assert f"Deleted: {second}" in out
    assert store_files(as_each) == []


def test_untag_and_prune(as_each: Runner, busybox_image: str) -> None:
    image_id = pull(as_each, busybox_image)
    as_each.ok("untag", busybox_image)
    rows = as_each.ok("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}").splitlines()
    assert rows == [f"<none> <none> {image_id[:12]}"]
    assert as_each.ok("images", "-q", "--filter", "dangling=true").split() == [image_id[:12]]
    kept = as_each.podpy("image", "prune", input="n\n")
    assert kept.returncode == 0 and as_each.ok("images", "-q").strip() != ""
    assert as_each.ok("image", "prune", "-f").split() == [image_id]
    assert as_each.ok("images", "-q").strip() == ""
    assert store_files(as_each) == []

    # -a removes named images too (none are used by containers).
    named = pull(as_each, busybox_image)
    assert as_each.ok("image", "prune", "-f").strip() == ""
    assert as_each.ok("image", "prune", "-a", "-f").split() == [named]


def test_rmi_refuses_image_in_use(rootful: Runner, busybox_image: str) -> None:
    image_id = pull(rootful, busybox_image)
    db = sqlite3.connect(str(graph_root(rootful) / "podpy.db"))
    try:
        with db:
            db.execute(
                "INSERT INTO containers (id, name, image_id, created, updated) VALUES (?, ?, ?, ?, ?)",
                ("c" * 64, "uses-image", image_id, time.time(), time.time()),
            )
        refused = rootful.podpy("rmi", busybox_image)
        assert refused.returncode == 2
        assert "image is in use by a container" in refused.stderr
        assert rootful.podpy("image", "exists", busybox_image).returncode == 0
        assert rootful.ok("image", "prune", "-a", "-f").strip() == ""
        with db:
            db.execute("DELETE FROM containers WHERE id = ?", ("c" * 64,))
    finally:
        db.close()
    assert rootful.ok("rmi", busybox_image).splitlines()[-1] == f"Deleted: {image_id}"


def test_rmi_force_removes_running_containers(as_each: Runner, busybox_image: str) -> None:
    """podman's `rmi -f`: the containers using the image go first (killed if running)."""
    image_id = pull(as_each, busybox_image)
    cid = as_each.ok("run", "-d", busybox_image, "sleep", "300").strip()
    refused = as_each.podpy("rmi", busybox_image)
    assert refused.returncode == 2 and "in use" in refused.stderr
    out = as_each.ok("rmi", "-f", busybox_image)
    assert out.splitlines()[-1] == f"Deleted: {image_id}"
    assert as_each.podpy("container", "exists", cid).returncode == 1
    assert as_each.ok("ps", "-aq").strip() == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="builds a root-owned store in-process")
def test_prune_sweeps_what_killed_pulls_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from podpy.engine import Engine, GlobalOptions
    from podpy.engine import images as image_engine
    from podpy.storage import images as image_store

    eng = Engine(GlobalOptions(root=str(tmp_path / "root"), runroot=str(tmp_path / "run")))
    try:
        st = image_engine.store(eng)
        layer = Path(st.layers.layer_dir("sha256:" + "a" * 64)) / "diff"
        layer.mkdir(parents=True)
        (layer / "file").write_text("left by a killed pull")
        digest = st.blobs.put_bytes(b"an orphan blob")
        # Fresh leftovers may belong to a pull in flight: kept.
        assert st.orphans() == ([], [])
        assert image_engine.prune(eng) == []
        assert layer.exists() and st.blobs.has(digest)
        monkeypatch.setattr(image_store, "ORPHAN_GRACE_SECONDS", -1.0)
        assert st.orphans() == (["a" * 64], [digest])
        assert image_engine.prune(eng) == []
        assert not layer.parent.exists() and not st.blobs.has(digest)
    finally:
        eng.close()
