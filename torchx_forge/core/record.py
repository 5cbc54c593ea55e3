"""Record classes: dataclasses for what runs once per task, without dataclasses' start-up cost.

The launcher starts for every task of every sweep (:mod:`torchx_forge.node.launch`), so what it
imports is paid per task. :mod:`dataclasses` compiles every generated method of every class with
``exec`` when a module is imported, and imports :mod:`inspect` (with ``ast``, ``dis``, ``tokenize``):
the 27 classes the launcher's modules define cost it 55 ms of a 120 ms run on the lab's nodes,
more than Python's own start. ``@record`` gives a class what ``@dataclass`` would (the same
constructor, ``__post_init__``, repr, equality, hash, frozen instances) and builds each method the
first time it is called, so importing a module of records costs no compile and no inspect.
(msgspec's ``Struct`` was measured too: its classes cost nothing, but importing msgspec, with
datetime, decimal and uuid, took 22 ms.)

Use it as ``@dataclass`` is used::

    @record                          # frozen, like @dataclass(frozen=True)
    class Point:
        x: int
        tags: Tuple[str, ...] = ()
        seen: List[str] = field(default_factory=list)

    @record(frozen=False)            # like @dataclass

and :func:`replace`, :func:`asdict` and :func:`fields`, which also take real dataclasses (for those,
they call :mod:`dataclasses`). Not supported (not used by forge): ``order``, ``kw_only``,
``slots``, ``InitVar``. Type checkers see records as dataclasses
(``dataclass_transform``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, TypeVar, overload

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda f: f

T = TypeVar("T")
FIELDS = "__record_fields__"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record (what dataclasses raises, by the same name)."""


class Field:
    """A record's field, as :func:`fields` gives it (``name``, ``default``, ``default_factory``)."""

    __slots__ = ("name", "default", "default_factory", "compare", "repr", "init")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING, compare: bool = True,
                 repr: bool = True, init: bool = True) -> None:  # noqa: A002 - dataclasses' spelling
        self.name = ""
        self.default, self.default_factory, self.compare, self.repr = default, default_factory, compare, repr
        self.init = init

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def field(*, default: Any = MISSING, default_factory: Any = MISSING, compare: bool = True,
          repr: bool = True, init: bool = True) -> Any:  # noqa: A002 - dataclasses' spelling
    """A field with a default factory (``field(default_factory=list)``), left out of equality or
    repr, or (``init=False``) not a constructor argument: set from its default, or by ``__post_init__``."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, compare, repr, init)


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _collect(cls: type) -> Tuple[Field, ...]:
    """The fields of ``cls``: its bases' first (in MRO order, as dataclasses orders them), then its own."""
    found: Dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get(FIELDS, ()):
            found[f.name] = f
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(value, Field):
            if f.default is MISSING:
                delattr(cls, name)  # as dataclasses does: no class attribute for a field without a default
            else:
                setattr(cls, name, f.default)
        found[name] = f
    required_after_default = [f.name for f in _after_defaults(f for f in found.values() if f.init)]
    if required_after_default:
        raise TypeError(f"non-default argument {required_after_default[0]!r} follows default argument")
    return tuple(found.values())


def _after_defaults(fs: Any) -> List[Field]:
    seen_default, bad = False, []
    for f in fs:
        has = f.default is not MISSING or f.default_factory is not MISSING
        if seen_default and not has:
            bad.append(f)
        seen_default = seen_default or has
    return bad


def _init_source(cls: type, fs: Tuple[Field, ...], frozen: bool) -> Tuple[str, Dict[str, Any]]:
    names: Dict[str, Any] = {"__record_missing": MISSING, "__record_set": object.__setattr__}
    params, body = ["self"], []
    for f in fs:
        if not f.init:
            if f.default_factory is not MISSING:
                names[f"_factory_{f.name}"] = f.default_factory
                value = f"_factory_{f.name}()"
            elif f.default is not MISSING:
                names[f"_default_{f.name}"] = f.default
                value = f"_default_{f.name}"
            else:
                continue
        elif f.default_factory is not MISSING:
            names[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=__record_missing")
            value = f"_factory_{f.name}() if {f.name} is __record_missing else {f.name}"
        elif f.default is not MISSING:
            names[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            value = f.name
        else:
            params.append(f.name)
            value = f.name
        body.append(f"    __record_set(self, {f.name!r}, {value})" if frozen else f"    self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    return f"def __init__({', '.join(params)}) -> None:\n" + ("\n".join(body) or "    pass") + "\n", names


def _lazy_init(cls: type, fs: Tuple[Field, ...], frozen: bool) -> Callable[..., None]:
    """An ``__init__`` that compiles the real one (as fast as dataclasses') on the first call."""
    def first_init(self: Any, *args: Any, **kwargs: Any) -> None:
        source, names = _init_source(cls, fs, frozen)
        exec(source, names)  # noqa: S102 - generated from the class's own field names, as dataclasses does
        real = names["__init__"]
        real.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = real  # type: ignore[misc]
        real(self, *args, **kwargs)

    return first_init


def _values(self: Any, fs: Tuple[Field, ...]) -> Tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in fs)


def _methods(cls: type, fs: Tuple[Field, ...], frozen: bool) -> Dict[str, Any]:
    compared = tuple(f for f in fs if f.compare)
    shown = tuple(f for f in fs if f.repr)

    def repr_(self: Any) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"

    def eq(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return _values(self, compared) == _values(other, compared)
        return NotImplemented

    methods: Dict[str, Any] = {"__init__": _lazy_init(cls, fs, frozen), "__repr__": repr_, "__eq__": eq}
    if frozen:
        def hash_(self: Any) -> int:
            return hash(_values(self, compared))

        def setattr_(self: Any, name: str, value: Any) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def delattr_(self: Any, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        methods.update(__hash__=hash_, __setattr__=setattr_, __delattr__=delattr_)
    elif "__hash__" not in cls.__dict__:
        methods["__hash__"] = None  # mutable and compared by value: unhashable, as a dataclass
    return methods


def _make(cls: type, frozen: bool) -> type:
    fs = _collect(cls)
    setattr(cls, FIELDS, fs)
    for name, method in _methods(cls, fs, frozen).items():
        if name in cls.__dict__ and (name != "__hash__" or cls.__dict__[name] is not None):
            if frozen and name in ("__setattr__", "__delattr__"):
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
            continue  # the class's own method stays, as with dataclasses
        if method is not None:
            method.__name__, method.__qualname__ = name, f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    return cls


@overload
def record(cls: type[T]) -> type[T]: ...
@overload
def record(*, frozen: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def record(cls: Optional[type] = None, *, frozen: bool = True) -> Any:
    """Make ``cls`` a record (see the module docstring): frozen unless ``frozen=False``."""
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


def is_record(obj: Any) -> bool:
    """Is ``obj`` a record class or an instance of one?"""
    return hasattr(obj, FIELDS)


def fields(obj: Any) -> Tuple[Any, ...]:
    """The fields of a record or dataclass (class or instance), in order."""
    if is_record(obj):
        return tuple(getattr(obj, FIELDS))
    import dataclasses  # noqa: PLC0415 - only for the submit side's dataclasses

    return dataclasses.fields(obj)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record or dataclass ``obj`` with ``changes`` (``dataclasses.replace``)."""
    if not is_record(obj):
        import dataclasses  # noqa: PLC0415

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    for name in changes:
        if name not in {f.name for f in getattr(obj, FIELDS) if f.init}:
            raise TypeError(f"{type(obj).__qualname__}.__init__() got an unexpected keyword argument {name!r}")
    kwargs = {f.name: getattr(obj, f.name) for f in getattr(obj, FIELDS) if f.init}
    kwargs.update(changes)
    return type(obj)(**kwargs)


def asdict(obj: Any) -> Dict[str, Any]:
    """The fields of a record or dataclass as a dict, records, dataclasses, lists, tuples and dicts
    inside turned the same way (``dataclasses.asdict``)."""
    if not is_record(obj) or isinstance(obj, type):
        import dataclasses  # noqa: PLC0415

        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        raise TypeError("asdict() should be called on record or dataclass instances")
    return {f.name: _plain(getattr(obj, f.name)) for f in getattr(obj, FIELDS)}


def _plain(value: Any) -> Any:
    if is_record(value) and not isinstance(value, type):
        return asdict(value)
    if "dataclasses" in sys.modules and sys.modules["dataclasses"].is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[_plain(v) for v in value])
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_plain(k), _plain(v)) for k, v in value.items())
    if value is None or isinstance(value, (str, int, float, bytes)):
        return value  # immutable: nothing to copy
    import copy  # noqa: PLC0415 - as dataclasses.asdict copies other values

    return copy.deepcopy(value)
