"""Sizes are counted, never listed: an axis's length is range arithmetic, a sweep's the product of
its axes times the samples, and both are checked against the sweep limit ($FORGE_SWEEP_LIMIT)."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torchx_forge.core.axes import IntRange, Linspace, Listed
from torchx_forge.core.errors import ConfigError
from torchx_forge.core.sampling import Dist, RandomSpec
from torchx_forge.core.space import SWEEP_LIMIT, CaseSpace, Space, check_size, sweep_limit
from unit.bounds import HANG

ints = st.integers(min_value=-10**30, max_value=10**30)


@given(ints, ints, st.integers(min_value=-10**6, max_value=10**6).filter(bool))
def test_a_range_is_as_long_as_pythons_without_being_listed(start, stop, step):
    python = range(start, stop, step)  # len(python) fails above sys.maxsize: index it instead
    if not python:
        with pytest.raises(ValueError, match="empty"):
            IntRange(start, stop, step)
        return
    r = IntRange(start, stop, step)
    assert r[r.size - 1] == python[r.size - 1] == python[-1]
    with pytest.raises(IndexError):
        python[r.size]


def test_sizes_above_sys_maxsize_are_counted_and_len_is_never_needed():
    huge = IntRange(0, 10**30)
    assert huge.size == 10**30
    space = Space((CaseSpace("", (), (("a", huge), ("b", Linspace(0, 1, 10**9)))),))
    assert space.size == 10**39 and space.total() == 10**39
    assert Space(space.cases, max_runs=5).size == 5
    with pytest.raises(IndexError):
        space.locate(10**40)


def test_random_samples_multiply_the_grid():
    rnd = RandomSpec(10**12, 0, (("x", Dist("uniform", 0, 1)),))
    space = Space((CaseSpace("", (), (("a", Listed((1, 2, 3))),)),), rnd)
    assert space.size == 3 * 10**12


@pytest.mark.parametrize("args", [(0, float("inf"), 1), (0, 1e300, 1e-300), (float("nan"), 1, 0.1)])
def test_a_float_range_that_cannot_be_counted_says_so(args):
    with pytest.raises(ValueError, match="finite|counted"):
        IntRange(*args)


def test_the_limit_and_its_variable(monkeypatch):
    monkeypatch.delenv("FORGE_SWEEP_LIMIT", raising=False)
    assert sweep_limit() == SWEEP_LIMIT == 1_000_000
    monkeypatch.setenv("FORGE_SWEEP_LIMIT", "2_000_000")
    assert sweep_limit() == 2_000_000
    for bad in ("0", "-5", "lots", "1e6"):
        monkeypatch.setenv("FORGE_SWEEP_LIMIT", bad)
        with pytest.raises(ConfigError, match=r"\$FORGE_SWEEP_LIMIT: expected a whole number >= 1"):
            sweep_limit()


def test_check_size_names_the_place_the_thing_and_the_limit(monkeypatch):
    monkeypatch.delenv("FORGE_SWEEP_LIMIT", raising=False)
    check_size(SWEEP_LIMIT, "exp.yaml:3: sweep.shared_axes.x", "range(0, 1000000)")
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        check_size(IntRange(0, 10**12).size, "exp.yaml:3: sweep.shared_axes.x", "range(0, 10**12)")
    assert time.monotonic() - start < HANG
    text = str(err.value)
    assert text.startswith("exp.yaml:3: sweep.shared_axes.x: range(0, 10**12) has 1,000,000,000,000 values")
    assert "1,000,000 runs a sweep may have ($FORGE_SWEEP_LIMIT)" in text and "\n" not in text
