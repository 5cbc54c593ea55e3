"""`torchx forge preview --json` writes its lines in batches from values encoded once per axis
(torchx_forge.core.spacelines): every line is still exactly json.dumps of the run's row, ids
included, whatever the cases, set values, axes, random block and max_runs."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from torchx_forge.core import spacelines
from torchx_forge.core.axes import IntRange, Listed
from torchx_forge.core.sampling import RandomSpec
from torchx_forge.core.space import CaseSpace, Space
from torchx_forge.experiment.generators import distribution

SCALAR = st.one_of(st.integers(-10**12, 10**12), st.floats(), st.text(max_size=6), st.booleans(), st.none())
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=2))
KEY = st.sampled_from(["run.args.lr", "run.args.b", "run.env.X", "cluster.nodes", "run.args.é", 'run.args.q"'])
AXIS = st.one_of(st.lists(VALUE, min_size=1, max_size=4).map(lambda v: Listed(tuple(v))),
                 st.integers(1, 5).map(lambda n: IntRange(0, n)))


@st.composite
def spaces(draw: st.DrawFn) -> Space:
    keys = draw(st.lists(KEY, unique=True, min_size=0, max_size=4))
    random = None
    if keys and draw(st.booleans()):
        rkey = keys.pop()
        dist = distribution(draw(st.sampled_from(["interval(0, 1)", "int(interval(1, 8))", "choice(a, b, 3)",
                                                  "tag(log, interval(1e-5, 1e-1))"])))
        random = RandomSpec(draw(st.integers(1, 4)), draw(st.integers(0, 3)), ((rkey, dist),))
    cases = []
    for name in draw(st.lists(st.sampled_from(["", "a", "b-1", "ü"]), min_size=1, max_size=3, unique=True)):
        split = draw(st.integers(0, len(keys)))
        set_ = tuple((k, draw(VALUE)) for k in sorted(keys[:split]))
        axes = tuple(sorted(((k, draw(AXIS)) for k in keys[split:]), key=lambda kv: kv[0]))
        cases.append(CaseSpace(name, set_, axes))
    return Space(tuple(cases), random, draw(st.none() | st.integers(1, 40)))


def reference(space: Space) -> str:
    return "".join(json.dumps({"index": p.index, "id": p.run_id, "case": p.case, "params": dict(p.params)}) + "\n"
                   for p in space)


@settings(max_examples=300, deadline=None)
@given(spaces(), st.integers(1, 7))
def test_batched_lines_are_those_of_json_dumps(space, batch):
    chunks = list(spacelines.json_lines(space, batch))
    assert "".join(chunks) == reference(space)
    assert all(c.count("\n") <= batch for c in chunks)


def test_a_long_listed_axis_is_encoded_once():
    space = Space((CaseSpace("", (), (("run.env.I", Listed(tuple(str(i) for i in range(5000)))),)),))
    assert "".join(spacelines.json_lines(space)) == reference(space)
    assert sum(1 for _ in spacelines.json_lines(space)) == 5  # batches of 1,000 lines
