"""A small stand-in for the part of `dataclasses` podpy uses: `@record`, `field`, `fields`,
`asdict`, `replace`, `is_record`.

Why it exists: start-up time. `import dataclasses` pulls in `inspect` (and `re`, `ast`, ...),
~13 ms, and every `@dataclass` builds its methods by exec()ing generated source, ~0.8 ms per
class. `podpy run --rm` creates a few dozen such classes, so that was tens of ms on every run.
Here the methods are plain closures shared in shape by all records: no exec/compile/eval, and
this module imports nothing beyond builtins.

Semantics follow dataclasses for what podpy needs:
- fields come from the class's own `__annotations__` (strings under `from __future__ import
  annotations`), `ClassVar[...]` ones skipped; fields of record bases come first, in order,
  and a redefinition keeps its base position (as dataclasses);
- `__init__` takes the fields positionally or by keyword in that order, with defaults and
  default factories (a fresh value per instance); a plain unhashable default (list, dict,
  set, ...) raises ValueError as dataclasses does; `__post_init__` runs if defined;
- `__repr__` is `Name(a=1, b='x')`; `__eq__` compares the field tuples of same-class objects;
- `__hash__` is None unless frozen (then the hash of the field tuple), unless the class body
  defines one; frozen records raise FrozenInstanceError (an AttributeError) on assignment or
  deletion of attributes;
- methods the class body defines itself (`__init__`, `__repr__`, `__eq__`) are kept.
Not supported (podpy does not use them): order=, slots=, kw_only=, InitVar, match_args.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

__all__ = [
    "MISSING",
    "Field",
    "FrozenInstanceError",
    "asdict",
    "field",
    "fields",
    "is_record",
    "record",
    "replace",
]


class _MissingType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _MissingType()
"""Marks 'no default' / 'no default factory' (dataclasses.MISSING's role)."""

_FIELDS = "__record_fields__"  # name -> Field, in field order (bases first)
_FROZEN = "__record_frozen__"


class FrozenInstanceError(AttributeError):
    """Assigning to or deleting an attribute of a frozen record."""


class Field:
    """One field of a record: its name, annotation and default; see `field()`."""

    __slots__ = ("name", "type", "default", "default_factory", "init", "repr", "hash", "compare")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Any = MISSING,
        init: bool = True,
        repr: bool = True,
        hash: Optional[bool] = None,
        compare: bool = True,
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name: str = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.hash = hash
        self.compare = compare

    def __repr__(self) -> str:
        return (
            f"Field(name={self.name!r},type={self.type!r},default={self.default!r},"
            f"default_factory={self.default_factory!r},init={self.init!r},repr={self.repr!r},"
            f"hash={self.hash!r},compare={self.compare!r})"
        )


def field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    init: bool = True,
    repr: bool = True,
    hash: Optional[bool] = None,
    compare: bool = True,
) -> Any:
    """Describe a field's default / default factory and whether repr/eq/hash/init use it."""
    return Field(default, default_factory, init, repr, hash, compare)


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))


def _own_annotations(cls: type) -> Dict[str, Any]:
    ann = cls.__dict__.get("__annotations__")
    if ann is None and "__annotate__" in cls.__dict__:  # Python 3.14 lazy annotations
        ann = cls.__annotations__
    return dict(ann or {})


def _collect_fields(cls: type) -> Dict[str, Field]:
    all_fields: Dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        base_fields = base.__dict__.get(_FIELDS)
        if base_fields is not None:
            all_fields.update(base_fields)
    for name, annotation in _own_annotations(cls).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name, f.type = name, annotation
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(
                f"mutable default {type(f.default)} for field {name} is not allowed: "
                "use default_factory"
            )
        if isinstance(value, Field):
            if f.default is MISSING:
                delattr(cls, name)  # as dataclasses: no class attribute without a default
            else:
                setattr(cls, name, f.default)
        all_fields[name] = f
    return all_fields


def _make_init(cls: type, flist: Tuple[Field, ...], frozen: bool) -> Callable[..., None]:
    init_fields = tuple(f for f in flist if f.init)
    names = tuple(f.name for f in init_fields)
    name_set = frozenset(names)
    no_init = tuple(f for f in flist if not f.init)
    required = sum(1 for f in init_fields if f.default is MISSING and f.default_factory is MISSING)
    qualname = f"{cls.__qualname__}.__init__"
    set_attr = object.__setattr__ if frozen else setattr

    seen_default = None
    for f in init_fields:
        if f.default is MISSING and f.default_factory is MISSING:
            if seen_default is not None:
                raise TypeError(
                    f"non-default argument {f.name!r} follows default argument {seen_default!r}"
                )
        else:
            seen_default = f.name

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            for key in kwargs:
                if key not in name_set:
                    raise TypeError(f"{qualname}() got an unexpected keyword argument {key!r}")
        if len(args) > len(names):
            if required == len(names):
                takes = f"{len(names) + 1} positional arguments"
            else:
                takes = f"from {required + 1} to {len(names) + 1} positional arguments"
            given = len(args) + 1
            raise TypeError(
                f"{qualname}() takes {takes} but {given} {'was' if given == 1 else 'were'} given"
            )
        missing = []
        for index, f in enumerate(init_fields):
            name = f.name
            if index < len(args):
                if name in kwargs:
                    raise TypeError(f"{qualname}() got multiple values for argument {name!r}")
                value = args[index]
            elif name in kwargs:
                value = kwargs[name]
            elif f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:
                value = f.default_factory()
            else:
                missing.append(name)
                continue
            set_attr(self, name, value)
        if missing:
            quoted = [repr(name) for name in missing]
            listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1])
            if len(quoted) == 2:
                listed += f" and {quoted[-1]}"
            elif len(quoted) > 2:
                listed += f", and {quoted[-1]}"
            plural = "argument" if len(quoted) == 1 else "arguments"
            raise TypeError(
                f"{qualname}() missing {len(quoted)} required positional {plural}: {listed}"
            )
        for f in no_init:
            if f.default is not MISSING:
                set_attr(self, f.name, f.default)
            elif f.default_factory is not MISSING:
                set_attr(self, f.name, f.default_factory())
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()

    __init__.__qualname__ = qualname
    return __init__


def _make_methods(cls: type, flist: Tuple[Field, ...], frozen: bool) -> Dict[str, Any]:
    repr_names = tuple(f.name for f in flist if f.repr)
    cmp_names = tuple(f.name for f in flist if f.compare)
    hash_names = tuple(f.name for f in flist if (f.compare if f.hash is None else f.hash))

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in repr_names)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return tuple(getattr(self, n) for n in cmp_names) == tuple(
            getattr(other, n) for n in cmp_names
        )

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in hash_names))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in cls.__dict__[_FIELDS]:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in cls.__dict__[_FIELDS]:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    methods: Dict[str, Any] = {"__repr__": __repr__, "__eq__": __eq__}
    if frozen:
        methods.update(__hash__=__hash__, __setattr__=__setattr__, __delattr__=__delattr__)
    return methods


def _process(cls: type, frozen: bool) -> type:
    for base in cls.__mro__[1:]:
        if _FIELDS in base.__dict__ and base.__dict__[_FROZEN] != frozen:
            kind = "frozen" if frozen else "non-frozen"
            other = "non-frozen" if frozen else "frozen"
            raise TypeError(f"cannot inherit {kind} dataclass from a {other} one")
    # As dataclasses: an explicit __hash__ in the body counts, the None that defining
    # __eq__ implies does not.
    body_hash = cls.__dict__.get("__hash__", MISSING)
    explicit_hash = not (body_hash is MISSING or (body_hash is None and "__eq__" in cls.__dict__))
    all_fields = _collect_fields(cls)
    setattr(cls, _FIELDS, all_fields)
    setattr(cls, _FROZEN, frozen)
    flist = tuple(all_fields.values())
    methods = _make_methods(cls, flist, frozen)
    if "__init__" not in cls.__dict__:
        cls.__init__ = _make_init(cls, flist, frozen)  # type: ignore[misc]
    for name in ("__repr__", "__eq__"):
        if name not in cls.__dict__:
            methods[name].__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, methods[name])
    if frozen:
        if explicit_hash:
            raise TypeError(f"Cannot overwrite attribute __hash__ in class {cls.__name__}")
        for name in ("__setattr__", "__delattr__"):
            if name in cls.__dict__:
                raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
        for name in ("__hash__", "__setattr__", "__delattr__"):
            setattr(cls, name, methods[name])
    elif not explicit_hash:
        cls.__hash__ = None  # type: ignore[assignment]
    return cls


def record(cls: Any = None, *, frozen: bool = False) -> Any:
    """Class decorator: `@record` or `@record(frozen=True)`, as `@dataclass` for podpy."""

    def wrap(klass: type) -> type:
        return _process(klass, frozen)

    return wrap if cls is None else wrap(cls)


def is_record(obj: Any) -> bool:
    """True for a record class or instance (dataclasses.is_dataclass's counterpart)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return hasattr(cls, _FIELDS)


def fields(obj_or_cls: Any) -> Tuple[Field, ...]:
    """The Field objects of a record class or instance, in field order."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    found = getattr(cls, _FIELDS, None)
    if found is None:
        raise TypeError("must be called with a record type or instance")
    return tuple(found.values())


_ATOMIC = (type(None), bool, int, float, complex, str, bytes, type, range, property)


def _asdict_inner(obj: Any) -> Any:
    if type(obj) in _ATOMIC:
        return obj
    found = getattr(type(obj), _FIELDS, None)
    if found is not None:
        return {name: _asdict_inner(getattr(obj, name)) for name in found}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*[_asdict_inner(v) for v in obj])
    if isinstance(obj, (list, tuple)):
        return type(obj)(_asdict_inner(v) for v in obj)
    if isinstance(obj, dict):
        if hasattr(type(obj), "default_factory"):  # collections.defaultdict
            result = type(obj)(obj.default_factory)  # type: ignore[attr-defined]
            for k, v in obj.items():
                result[_asdict_inner(k)] = _asdict_inner(v)
            return result
        return type(obj)((_asdict_inner(k), _asdict_inner(v)) for k, v in obj.items())
    import copy  # only for the odd non-atomic leaf (as dataclasses.asdict)

    return copy.deepcopy(obj)


def asdict(obj: Any) -> Dict[str, Any]:
    """A record as a dict of its fields, recursing through records, lists, tuples and dicts."""
    if isinstance(obj, type) or not is_record(obj):
        raise TypeError("asdict() should be called on record instances")
    return _asdict_inner(obj)  # type: ignore[no-any-return]


def replace(obj: Any, **changes: Any) -> Any:
    """A new record like `obj` with `changes` applied (through __init__, as dataclasses)."""
    if isinstance(obj, type) or not is_record(obj):
        raise TypeError("replace() should be called on record instances")
    for f in fields(obj):
        if not f.init:
            if f.name in changes:
                raise ValueError(
                    f"field {f.name} is declared with init=False, it cannot be specified with "
                    "replace()"
                )
            continue
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)
