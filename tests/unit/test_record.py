"""podpy.record behaves as dataclasses for the shapes podpy uses (same class, both decorators)."""

from __future__ import annotations

import ast
import dataclasses
import json
import pickle
import subprocess
import sys
from collections import namedtuple
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple

import pytest

from podpy import record as rec

REPO = Path(__file__).resolve().parents[2]
Pair = namedtuple("Pair", "left right")


def both(frozen: bool = False) -> List[Tuple[str, Callable[[type], type], Any]]:
    """[(kind, decorator, module)] for dataclasses and record; module gives field/asdict/..."""
    return [
        ("dataclass", dataclasses.dataclass(frozen=frozen), dataclasses),
        ("record", rec.record(frozen=frozen), rec),
    ]


def make_point(deco: Callable[[type], type], mod: Any) -> type:
    @deco
    class Point:
        x: int
        y: int = 0
        tags: List[str] = mod.field(default_factory=list)
        KIND: ClassVar[str] = "point"

    return Point


def outcome(call: Callable[[], Any]) -> Tuple[str, str]:
    """('ok', repr) or (exception class name, message without the class-qualified prefix)."""
    try:
        return ("ok", repr(call()))
    except Exception as exc:  # noqa: BLE001 - compared between the two implementations
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((1,), {}),
        ((1, 2), {}),
        ((1, 2, ["a"]), {}),
        ((), {"x": 1, "tags": ["t"]}),
        ((1,), {"y": 5}),
        ((), {}),  # missing x
        ((1, 2, [], 4), {}),  # too many positional
        ((1,), {"x": 2}),  # multiple values
        ((1,), {"z": 2}),  # unexpected keyword
        ((), {"y": 2}),  # missing x with a keyword present
    ],
)
def test_init_matches_dataclasses(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
    results = [
        outcome(lambda mod=mod, deco=deco: make_point(deco, mod)(*args, **kwargs))
        for _, deco, mod in both()
    ]
    assert results[0] == results[1]


def test_missing_several_arguments_message_matches() -> None:
    def shape(deco: Callable[[type], type]) -> type:
        @deco
        class Three:
            a: int
            b: int
            c: int

        return Three

    for count in (1, 2, 3):
        args = (1, 2, 3)[: 3 - count]
        results = [
            outcome(lambda deco=deco, args=args: shape(deco)(*args)) for _, deco, _ in both()
        ]
        assert results[0] == results[1]
        assert results[1][0] == "TypeError"


def test_defaults_factories_and_classvars() -> None:
    for _, deco, mod in both():
        Point = make_point(deco, mod)
        a, b = Point(1), Point(2)
        a.tags.append("x")
        assert b.tags == [], "each instance gets its own factory value"
        assert [f.name for f in mod.fields(Point)] == ["x", "y", "tags"]
        assert [f.name for f in mod.fields(a)] == ["x", "y", "tags"]
        assert Point.KIND == "point" and Point.y == 0
        assert not hasattr(Point, "tags"), "a default_factory leaves no class attribute"


def test_repr_eq_and_hash_match_dataclasses() -> None:
    seen = []
    for _, deco, mod in both():
        Point = make_point(deco, mod)
        p = Point(1, 2, ["a"])
        assert p == Point(1, 2, ["a"]) and p != Point(1, 3)
        assert p != (1, 2, ["a"]) and (p == object()) is False
        assert Point.__hash__ is None
        with pytest.raises(TypeError):
            hash(p)
        seen.append(repr(p))
    assert seen[0] == seen[1] == "make_point.<locals>.Point(x=1, y=2, tags=['a'])"


def test_eq_needs_the_same_class() -> None:
    for _, deco, _mod in both():

        @deco
        class A:
            v: int

        @deco
        class B(A):
            pass

        assert A(1) != B(1) and B(1) == B(1)


def test_frozen_matches_dataclasses() -> None:
    for kind, deco, mod in both(frozen=True):

        @deco
        class Ref:
            name: str
            tag: str = "latest"
            notes: Dict[str, str] = mod.field(default_factory=dict, hash=False, compare=False)

        r = Ref("busybox")
        assert hash(r) == hash(("busybox", "latest")) == hash(Ref("busybox", notes={"a": "b"}))
        assert r == Ref("busybox", notes={"x": "y"}), "compare=False fields do not count"
        assert {r, Ref("busybox")} == {r}
        error = rec.FrozenInstanceError if kind == "record" else dataclasses.FrozenInstanceError
        with pytest.raises(error, match="cannot assign to field 'tag'"):
            r.tag = "x"
        with pytest.raises(error, match="cannot delete field 'tag'"):
            del r.tag
        with pytest.raises(AttributeError):
            r.other = 1
        assert r.tag == "latest"


def test_frozen_record_pickles_and_is_attribute_error() -> None:
    assert issubclass(rec.FrozenInstanceError, AttributeError)
    r = _Frozen("a", [1])
    assert pickle.loads(pickle.dumps(r)) == r


@rec.record(frozen=True)
class _Frozen:
    a: str
    b: Any = None


@rec.record
class _Inner:
    n: int
    items: List[Any] = rec.field(default_factory=list)


@rec.record
class _Outer:
    inner: _Inner
    many: List[_Inner]
    by_name: Dict[str, _Inner]
    pair: Any = None
    opt: Optional[int] = None


def test_asdict_recurses_like_dataclasses() -> None:
    @dataclasses.dataclass
    class DInner:
        n: int
        items: List[Any] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass
    class DOuter:
        inner: DInner
        many: List[DInner]
        by_name: Dict[str, DInner]
        pair: Any = None
        opt: Optional[int] = None

    def build(outer: type, inner: type) -> Any:
        shared = [1, {"k": [2]}]
        return outer(
            inner(1, shared),
            [inner(2), inner(3, [(4, 5)])],
            {"a": inner(6)},
            Pair(inner(7), (inner(8),)),
        )

    got = rec.asdict(build(_Outer, _Inner))
    want = dataclasses.asdict(build(DOuter, DInner))
    assert got == want
    assert type(got["pair"]) is Pair and type(got["pair"].right) is tuple
    assert json.dumps(got, default=repr) == json.dumps(want, default=repr)
    source = build(_Outer, _Inner)
    copied = rec.asdict(source)
    copied["inner"]["items"][1]["k"].append(99)
    assert source.inner.items[1]["k"] == [2], "asdict copies containers, as dataclasses"
    with pytest.raises(TypeError):
        rec.asdict(_Outer)
    with pytest.raises(TypeError):
        rec.asdict({"a": 1})


def test_replace_matches_dataclasses() -> None:
    for _, deco, mod in both(frozen=True):

        @deco
        class Ref:
            domain: str
            path: str
            tag: Optional[str] = None

        r = Ref("docker.io", "library/busybox")
        r2 = mod.replace(r, tag="1.36")
        assert (r2.domain, r2.path, r2.tag, r.tag) == ("docker.io", "library/busybox", "1.36", None)
        assert type(r2) is Ref
        with pytest.raises(TypeError):
            mod.replace(r, nope=1)
    with pytest.raises(TypeError):
        rec.replace(object())


def test_inheritance_matches_dataclasses() -> None:
    orders = []
    for _, deco, mod in both():

        @deco
        class Base:
            a: int
            b: str = "b"

        @deco
        class Child(Base):
            b: str = "child"  # redefined: keeps its base position, new default
            c: List[int] = mod.field(default_factory=list)

        orders.append([f.name for f in mod.fields(Child)])
        c = Child(1)
        assert (c.a, c.b, c.c) == (1, "child", [])
        assert repr(c).endswith("Child(a=1, b='child', c=[])")
        assert Child(1, "x", [2]) == Child(a=1, b="x", c=[2])
    assert orders[0] == orders[1] == ["a", "b", "c"]


def test_plain_subclass_of_a_record_inherits_its_behaviour() -> None:
    class Sub(_Inner):
        def describe(self) -> str:
            return f"n={self.n}"

    s = Sub(5)
    assert s.describe() == "n=5" and rec.is_record(s) and s == Sub(5, [])


@pytest.mark.parametrize("bad", ["list", "dict", "set"])
def test_mutable_default_raises_value_error_like_dataclasses(bad: str) -> None:
    value = {"list": [], "dict": {}, "set": set()}[bad]
    for _, deco, _ in both():
        with pytest.raises(ValueError, match="mutable default"):

            @deco
            class Bad:
                x: Any = value


def test_field_definition_errors() -> None:
    for _, deco, mod in both():
        with pytest.raises(ValueError, match="cannot specify both"):
            mod.field(default=1, default_factory=list)
        with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

            @deco
            class Order:
                a: int = 1
                b: int


def test_frozen_and_plain_cannot_mix() -> None:
    for (_, frozen, _), (_, plain, _) in zip(both(frozen=True), both()):

        @plain
        class P:
            a: int

        with pytest.raises(TypeError, match="cannot inherit frozen"):

            @frozen
            class F(P):
                b: int = 0

        @frozen
        class Q:
            a: int

        with pytest.raises(TypeError, match="cannot inherit non-frozen"):

            @plain
            class G(Q):
                b: int = 0


def test_class_body_methods_win() -> None:
    @rec.record
    class Custom:
        a: int

        def __repr__(self) -> str:
            return "custom"

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return 7

    assert repr(Custom(1)) == "custom" and Custom(1) == Custom(2) and hash(Custom(1)) == 7


def test_post_init_runs() -> None:
    @rec.record
    class Post:
        a: int
        b: int = 0

        def __post_init__(self) -> None:
            self.b = self.a * 2

    assert Post(3).b == 6


def test_is_record_and_fields_on_non_records() -> None:
    assert rec.is_record(_Inner) and rec.is_record(_Inner(1))
    assert not rec.is_record(object()) and not rec.is_record(dict)
    with pytest.raises(TypeError):
        rec.fields(object())
    (f,) = [f for f in rec.fields(_Inner) if f.name == "items"]
    assert f.type == "List[Any]" and f.default is rec.MISSING and f.default_factory is list


def test_record_imports_only_builtins() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); before = set(sys.modules)\n"
        "import podpy.record\n"
        "new = sorted(set(sys.modules) - before)\n"
        "import json; print(json.dumps(new))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    new = set(json.loads(out))
    assert new <= {"podpy", "podpy.record", "__future__"}, new


def test_record_source_has_no_code_generation() -> None:
    tree = ast.parse((REPO / "podpy" / "record.py").read_text())
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"exec", "eval", "compile", "__import__"}, called
