"""Sub-id file parsing, podman's map layout, and helper lookup for rootless namespaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from podpy.errors import MissingTool
from podpy.idmap import (
    IdMapping,
    SubIdRange,
    UserIdMaps,
    build_mappings,
    newidmap_args,
    parse_subid_text,
    read_subid_file,
    user_id_maps,
)
from podpy.rootless import find_helper, single_id_warning

SUBUID = "\n".join(
    [
        "# delegated ranges",
        "alice:100000:65536",
        "bob:165536:65536",
        "",
        "alice:300000:1000",
        "1005:400000:500",
        "  carol:500000:10  ",  # surrounding whitespace is tolerated
        "broken line",
        "dave:abc:10",
        "erin:600000:0",
    ]
)


def test_parse_by_name_keeps_file_order_and_all_ranges() -> None:
    assert parse_subid_text(SUBUID, "alice") == [
        SubIdRange(100000, 65536),
        SubIdRange(300000, 1000),
    ]


def test_parse_matches_numeric_owner_by_uid() -> None:
    assert parse_subid_text(SUBUID, "frank", uid=1005) == [SubIdRange(400000, 500)]
    assert parse_subid_text(SUBUID, "frank") == []


def test_parse_ignores_comments_whitespace_and_malformed_lines() -> None:
    assert parse_subid_text(SUBUID, "carol") == [SubIdRange(500000, 10)]
    assert parse_subid_text(SUBUID, "dave") == []
    assert parse_subid_text(SUBUID, "erin") == []
    assert parse_subid_text(SUBUID, "#") == []


def test_missing_file_means_no_ranges(tmp_path: Path) -> None:
    assert read_subid_file(str(tmp_path / "nope"), "alice") == []


def test_podman_layout_root_is_the_user_then_subranges_follow() -> None:
    maps = build_mappings(1000, [SubIdRange(100000, 65536), SubIdRange(300000, 1000)])
    assert maps == [
        IdMapping(0, 1000, 1),
        IdMapping(1, 100000, 65536),
        IdMapping(65537, 300000, 1000),
    ]
    assert newidmap_args(maps[:2]) == ["0", "1000", "1", "1", "100000", "65536"]
    assert maps[1].to_oci() == {"containerID": 1, "hostID": 100000, "size": 65536}


def test_user_id_maps_reads_both_files(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text(SUBUID)
    (tmp_path / "subgid").write_text("alice:200000:65536\n")
    maps = user_id_maps(
        uid=1000,
        gid=1001,
        user="alice",
        subuid_file=str(tmp_path / "subuid"),
        subgid_file=str(tmp_path / "subgid"),
    )
    assert not maps.single_id
    assert [m.to_line() for m in maps.uid_mappings] == [
        "0 1000 1",
        "1 100000 65536",
        "65537 300000 1000",
    ]
    assert [m.to_line() for m in maps.gid_mappings] == ["0 1001 1", "1 200000 65536"]


def test_no_ranges_falls_back_to_single_id_with_a_warning_naming_the_fix() -> None:
    maps = UserIdMaps("bob", 1002, 1003, (), ())
    assert maps.single_id
    assert maps.uid_mappings == [IdMapping(0, 1002, 1)]
    assert maps.gid_mappings == [IdMapping(0, 1003, 1)]
    assert single_id_warning(maps) == (
        'no subuid ranges found for user "bob" in /etc/subuid: running with a single id '
        "mapping; fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 bob"
    )


def test_missing_subgid_only_names_subgid() -> None:
    maps = UserIdMaps("bob", 1002, 1003, (SubIdRange(100000, 10),), ())
    assert maps.single_id
    assert 'no subgid ranges found for user "bob" in /etc/subgid' in single_id_warning(maps)


def test_find_helper_searches_given_dirs(tmp_path: Path) -> None:
    tool = tmp_path / "newuidmap"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert find_helper("newuidmap", [str(tmp_path / "empty"), str(tmp_path)]) == str(tool)


def test_find_helper_missing_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(MissingTool) as info:
        find_helper("newuidmap", [str(tmp_path)])
    assert info.value.message == (
        'newuidmap not found: install the "uidmap" package '
        "(apt install uidmap / dnf install shadow-utils)"
    )


def test_find_helper_env_override_replaces_default_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODPY_HELPER_BINARIES_DIR", str(tmp_path))
    with pytest.raises(MissingTool):
        find_helper("newuidmap")
    tool = tmp_path / "newuidmap"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert find_helper("newuidmap") == str(tool)


def test_non_executable_helper_is_not_used(tmp_path: Path) -> None:
    tool = tmp_path / "newuidmap"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o644)
    with pytest.raises(MissingTool):
        find_helper("newuidmap", [str(tmp_path)])


def _fake_helper(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_map_ids_runs_both_helpers_with_the_podman_layout(tmp_path: Path) -> None:
    """newuidmap and newgidmap get the pid and the triplets (run side by side, no subprocess)."""
    import sys

    from podpy.idmap import SubIdRange, UserIdMaps
    from podpy.rootless import map_ids

    log = tmp_path / "log"
    body = f'echo "$(basename "$0") $*" >> {log}\n'
    helpers = (
        _fake_helper(tmp_path, "newuidmap", body),
        _fake_helper(tmp_path, "newgidmap", body),
    )
    maps = UserIdMaps("u", 1000, 1001, (SubIdRange(100000, 65536),), (SubIdRange(200000, 10),))
    saved = sys.modules.pop("subprocess", None)
    try:
        map_ids(4242, maps, helpers=helpers)
        assert "subprocess" not in sys.modules
    finally:
        if saved is not None:
            sys.modules["subprocess"] = saved
    assert sorted(log.read_text().splitlines()) == [
        "newgidmap 4242 0 1001 1 1 200000 10",
        "newuidmap 4242 0 1000 1 1 100000 65536",
    ]
    log.unlink()
    map_ids(4242, maps, helper_dirs=[str(tmp_path)])  # found by name
    assert len(log.read_text().splitlines()) == 2


def test_map_ids_failure_shows_the_helper_message(tmp_path: Path) -> None:
    from podpy.errors import PodpyError
    from podpy.idmap import SubIdRange, UserIdMaps
    from podpy.rootless import map_ids

    maps = UserIdMaps("u", 1000, 1001, (SubIdRange(100000, 5),), (SubIdRange(200000, 5),))
    helpers = (
        _fake_helper(
            tmp_path, "newuidmap", "echo 'newuidmap: write to uid_map failed' >&2\nexit 1\n"
        ),
        _fake_helper(tmp_path, "newgidmap", "exit 3\n"),
    )
    with pytest.raises(PodpyError) as caught:
        map_ids(77, maps, helpers=helpers)
    assert caught.value.message == (
        "newuidmap 77 0 1000 1 1 100000 5 failed: newuidmap: write to uid_map failed"
    )
    helpers = (_fake_helper(tmp_path, "ok", "exit 0\n"), helpers[1])
    with pytest.raises(
        PodpyError, match=r"^newgidmap 77 0 1001 1 1 200000 5 failed: exit status 3$"
    ):
        map_ids(77, maps, helpers=helpers)
