"""The sweep space: order, direct indexing, generators and deterministic random samples."""

import itertools
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchx_forge.core.axes import IntRange, Linspace, Listed, Logspace
from torchx_forge.core.sampling import BLOCK, Dist, RandomSpec
from torchx_forge.core.space import CaseSpace, Space, merged_axes, run_id_of


def test_generators_compute_their_values_without_listing_them():
    assert list(IntRange(0, 5)) == [0, 1, 2, 3, 4]
    assert list(IntRange(10, 0, -3)) == [10, 7, 4, 1]
    assert list(IntRange(0, 1, 0.25)) == [0.0, 0.25, 0.5, 0.75]
    assert list(Linspace(0, 1, 5)) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert list(Logspace(1e-5, 1e-1, 5)) == [1e-05, 0.0001, 0.001, 0.01, 0.1]
    big = IntRange(0, 10**9)
    assert len(big) == 10**9 and big[123_456_789] == 123_456_789


@pytest.mark.parametrize("make", [lambda: IntRange(5, 1), lambda: IntRange(0, 5, 0), lambda: Logspace(0, 1, 3),
                                  lambda: Logspace(-1, 1, 3), lambda: Linspace(0, 1, 0), lambda: Dist("normal", 0, 1),
                                  lambda: Dist("uniform", 2, 1), lambda: Dist("loguniform", 0, 1),
                                  lambda: Dist("int", 0.5, 3), lambda: Dist("choice")])
def test_bad_generators_and_distributions_say_why(make):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value)


def grid(*axes, name="", set_=()):
    return CaseSpace(name, set_, merged_axes([(k, Listed(tuple(v))) for k, v in axes], []))


def test_order_is_slurmforges_sorted_keys_first_outermost():
    space = Space((grid(("b", [1, 2]), ("a", ["x", "y"])),))
    assert [p.params for p in space] == [
        (("a", "x"), ("b", 1)), (("a", "x"), ("b", 2)), (("a", "y"), ("b", 1)), (("a", "y"), ("b", 2)),
    ]


def test_cases_in_order_with_their_set_values_and_max_runs_keeps_the_first():
    shared = [("run.args.lr", Listed((0.1, 0.2)))]
    adam = CaseSpace("adam", (("run.args.opt", "adam"),), merged_axes(shared, []))
    sgd = CaseSpace("sgd", (("run.args.opt", "sgd"),), merged_axes(shared, [("run.args.m", Listed((0.0, 0.9)))]))
    space = Space((adam, sgd), max_runs=4)
    runs = list(space)
    assert [(p.case, p.params[1:]) for p in runs] == [
        ("adam", (("run.args.lr", 0.1),)), ("adam", (("run.args.lr", 0.2),)),
        ("sgd", (("run.args.lr", 0.1), ("run.args.m", 0.0))), ("sgd", (("run.args.lr", 0.1), ("run.args.m", 0.9))),
    ]
    assert len(space) == 4 and space.total() == 6


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=3),
    samples=st.one_of(st.none(), st.integers(1, 5)),
    max_runs=st.one_of(st.none(), st.integers(1, 40)),
)
def test_point_i_equals_the_ith_point_of_the_expansion(sizes, samples, max_runs):
    cases = tuple(
        CaseSpace(f"c{c}", (("set", c),), tuple((f"k{a}", IntRange(0, n)) for a, n in enumerate(axes)))
        for c, axes in enumerate(sizes)
    )
    rnd = RandomSpec(samples, 7, (("r", Dist("uniform", 0, 1)),)) if samples else None
    space = Space(cases, rnd, max_runs)
    listed = list(space)
    assert len(listed) == len(space)
    assert [space.point(i) for i in range(len(space))] == listed
    assert [p.index for p in listed] == list(range(len(listed)))
    if samples is None:
        expected = [(c.name, c.set + tuple(zip([k for k, _ in c.axes], combo)))
                    for c in cases for combo in itertools.product(*[list(v) for _, v in c.axes])]
        assert [(p.case, p.params) for p in listed] == expected[: len(listed)]


def test_random_samples_stay_in_their_bounds_and_are_deterministic():
    spec = RandomSpec(3000, 1, (("a", Dist("uniform", -1, 1)), ("b", Dist("loguniform", 1e-5, 1e-1)),
                                ("c", Dist("int", 1, 8)), ("d", Dist("logint", 1, 1024)), ("e", Dist("choice", choices=("x", "y")))))
    drawn = list(spec.iter_samples())
    assert len(drawn) == 3000
    cols = {k: [dict(p)[k] for p in drawn] for k in "abcde"}
    assert all(-1 <= v <= 1 for v in cols["a"]) and all(1e-5 <= v <= 1e-1 for v in cols["b"])
    assert set(cols["c"]) == set(range(1, 9)) and all(1 <= v <= 1024 for v in cols["d"])
    assert set(cols["e"]) == {"x", "y"}
    # log-uniform: about as many samples in each decade
    decades = [sum(1 for v in cols["b"] if 10 ** (k - 5) <= v < 10 ** (k - 4)) for k in range(4)]
    assert min(decades) > 600
    # random access (block boundaries included) equals the sequential draw
    for s in (0, BLOCK - 1, BLOCK, 2999):
        assert spec.sample(s) == drawn[s]
    assert list(RandomSpec(3000, 1, spec.params).iter_samples()) == drawn
    assert list(RandomSpec(3000, 2, spec.params).iter_samples()) != drawn


def test_adding_a_key_does_not_change_the_others_samples():
    one = RandomSpec(50, 3, (("lr", Dist("uniform", 0, 1)),))
    two = RandomSpec(50, 3, (("bs", Dist("int", 1, 9)), ("lr", Dist("uniform", 0, 1))))
    assert [dict(p)["lr"] for p in one.iter_samples()] == [dict(p)["lr"] for p in two.iter_samples()]


def test_equal_draws_of_a_random_search_still_get_distinct_run_ids():
    space = Space((CaseSpace(""),), RandomSpec(40, 0, (("x", Dist("choice", choices=(1, 2))),)))
    ids = [p.run_id for p in space]
    assert len(set(ids)) == 40
    assert run_id_of("", (("x", 1),)) != run_id_of("", (("x", 1),), 0)


def test_json_round_trip_keeps_every_point():
    space = Space((grid(("a", [1, None, "x"]), name="c", set_=(("s", True),)),
                   CaseSpace("d", (), (("g", IntRange(0, 3)), ("h", Linspace(0, 1, 3)), ("l", Logspace(1, 100, 3))))),
                  RandomSpec(5, 9, (("r", Dist("logint", 1, 64)),)), max_runs=30)
    again = Space.from_json(space.to_json())
    assert list(again) == list(space)


SCRIPT = """
import hashlib, sys
from torchx_forge.core.sampling import Dist, RandomSpec
from torchx_forge.core.space import CaseSpace, Space
space = Space((CaseSpace(""),), RandomSpec(100000, 42, (("run.args.bs", Dist("choice", choices=(16, 32, 64))),
    ("run.args.layers", Dist("int", 1, 12)), ("run.args.lr", Dist("loguniform", 1e-5, 1e-1)),
    ("run.args.wd", Dist("uniform", 0, 0.1)))))
print(hashlib.sha256("\\n".join(p.run_id for p in space).encode()).hexdigest())
"""


def test_the_same_seed_gives_the_same_100000_run_ids_in_two_processes():
    digests = {subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
               for _ in range(2)}
    assert len(digests) == 1 and len(next(iter(digests)).strip()) == 64
