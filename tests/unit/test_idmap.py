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
