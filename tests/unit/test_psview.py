"""podpy.psview.sort_rows: podman's ps order (oldest first by default) and --sort."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from podpy.errors import PodpyError
from podpy.psview import sort_rows


def _row(name: str, created: float, status: str, started: float = 0.0) -> Dict[str, Any]:
    return {
        "id": name * 4,
        "name": name,
        "created": created,
        "status": status,
        "config": {"command": [name], "image_name": "img"},
        "state": {"started_at": started, "finished_at": started + 1} if started else {},
    }


# newest first, as the engine lists them; two created within the same second
ROWS = [
    _row("c", 100.7, "created"),
    _row("a", 100.2, "running", started=101.0),
    _row("b", 90.0, "exited", started=95.0),
]


def names(key: str) -> list:
    return [r["Names"] for r in sort_rows(ROWS, key)]


def test_default_is_creation_order_oldest_first_to_the_sub_second() -> None:
    assert names("created") == ["b", "a", "c"]


@pytest.mark.parametrize(
    "key, expected",
    [
        ("names", ["a", "b", "c"]),
        ("status", ["c", "b", "a"]),
        ("runningfor", ["c", "b", "a"]),
        ("size", ["b", "a", "c"]),
        ("command", ["a", "b", "c"]),
    ],
)
def test_sort_keys(key: str, expected: list) -> None:
    assert names(key) == expected


def test_unknown_sort_key_is_podmans_error() -> None:
    with pytest.raises(PodpyError) as err:
        sort_rows(ROWS, "bogus")
    assert err.value.message == (
        'invalid argument "bogus" for "--sort" flag: "bogus" is not a valid value.  '
        'Choose from: "command, created, id, image, names, runningfor, size, status"'
    )
