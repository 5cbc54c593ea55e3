"""Records behave as the dataclasses they replace on the launcher's path (torchx_forge.core.record)."""

import dataclasses
import os
import pickle
import subprocess
import sys
from typing import ClassVar, Dict, List, Tuple

import pytest

from torchx_forge.core import record as rec


@rec.record
class Base:
    """A frozen record with a default and a factory."""

    name: str
    size: int = 1
    tags: List[str] = rec.field(default_factory=list)
    note: ClassVar[str] = "not a field"


@rec.record
class Child(Base):
    """Fields after its base's."""

    extra: Tuple[int, ...] = ()
    hidden: str = rec.field(default="h", compare=False, repr=False)


@rec.record(frozen=False)
class Mutable:
    """Checked after init."""

    items: Dict[str, int] = rec.field(default_factory=dict)
    count: int = 0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must be >= 0")


@dataclasses.dataclass(frozen=True)
class DataBase:
    name: str
    size: int = 1
    tags: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class DataChild(DataBase):
    extra: Tuple[int, ...] = ()
    hidden: str = dataclasses.field(default="h", compare=False, repr=False)


@rec.record
class Pair:
    """Hashable."""

    n: int
    why: str = rec.field(default="", compare=False)


@dataclasses.dataclass(frozen=True)
class DataPair:
    n: int
    why: str = dataclasses.field(default="", compare=False)


def test_a_record_is_built_compared_and_shown_as_the_same_dataclass():
    r, d = Child("a", 2, ["t"], (1,)), DataChild("a", 2, ["t"], (1,))
    assert repr(r).replace("Child", "X") == repr(d).replace("DataChild", "X")
    assert r == Child(name="a", size=2, tags=["t"], extra=(1,), hidden="other")  # hidden is not compared
    assert r != Child("a", 3, ["t"], (1,)) and r != Base("a", 2, ["t"])  # another class is never equal
    assert [f.name for f in rec.fields(r)] == [f.name for f in dataclasses.fields(d)] == ["name", "size", "tags", "extra", "hidden"]
    assert rec.asdict(r) == dataclasses.asdict(d)
    assert Base("x").tags is not Base("x").tags  # a fresh list each


def test_frozen_records_refuse_assignment_and_hash_by_value():
    r = Base("a", tags=[])
    with pytest.raises(AttributeError):
        r.size = 2  # type: ignore[misc]
    assert hash(Pair(1, "x")) == hash(Pair(1, "y")) == hash(DataPair(1, "z"))  # `why` is not compared
    assert {Pair(1), Pair(1, "w"), Pair(2)} == {Pair(1), Pair(2)}


def test_mutable_records_run_post_init_and_are_not_hashable():
    m = Mutable(count=2)
    m.count = 3
    assert m == Mutable({}, 3)
    with pytest.raises(ValueError, match="count must be >= 0"):
        Mutable(count=-1)
    with pytest.raises(TypeError):
        hash(m)


def test_replace_and_asdict_take_records_and_dataclasses_alike():
    r = rec.replace(Child("a", tags=["t"]), size=5)
    assert (r.name, r.size, r.tags) == ("a", 5, ["t"])
    assert rec.replace(DataBase("d"), size=7) == DataBase("d", 7)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        rec.replace(r, nope=1)
    nested = Mutable({"k": 1})
    assert rec.asdict(nested) == {"items": {"k": 1}, "count": 0}


def test_constructor_errors_are_the_usual_ones():
    with pytest.raises(TypeError):
        Base()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Base("a", 1, [], 4)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        @rec.record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


def test_records_pickle():
    r = Child("a", 2, ["t"], (1,), "x")
    back = pickle.loads(pickle.dumps(r))
    assert back == r and back.hidden == "x"


def test_importing_the_launcher_imports_no_dataclasses():
    """The point of records: the launcher's whole import graph defines no dataclass."""
    import torchx_forge

    root = os.path.dirname(os.path.dirname(torchx_forge.__file__))
    code = "import sys, torchx_forge.node.launch; print('dataclasses' in sys.modules, 'inspect' in sys.modules)"
    p = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[0] = {root!r}; {code}"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "False"]
