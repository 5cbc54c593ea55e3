"""Long flow lists of plain scalars are read in bulk (torchx_forge.experiment.biglists): the values are
exactly yaml.safe_load's, every later line keeps its number, an error in an item (however deep in
the list) names its file:line and key path as before, and anything the bulk reader cannot prove
safe (quotes, comments, anchors, tags, a list inside another scalar) is parsed the usual way."""

import copy
import datetime
import math
import re
from typing import Any, Tuple
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchx_forge.errors import ConfigError
from torchx_forge.experiment import biglists, yamlload
from torchx_forge.experiment.schema import checked_items, deep_copy, leaf_check
from torchx_forge.experiment.source import Source
from torchx_forge.experiment.spec import load_experiment


def where(path: str, line: int) -> str:
    return f"t:{line}: {path}"


def bulk(text: str, min_items: int = 1) -> Tuple[Any, Any]:
    """yamlload.load with lists of ``min_items`` items or more read in bulk."""
    with mock.patch.object(biglists, "MIN_ITEMS", min_items):
        return yamlload.load(text, where)


def usual(text: str) -> Tuple[Any, Any]:
    """yamlload.load without the bulk reader (the reference)."""
    with mock.patch.object(biglists, "MIN_ITEMS", 10**9):
        return yamlload.load(text, where)


def same(a: Any, b: Any) -> bool:
    """Equal, types included (1 != 1.0 != True here), NaN equal to NaN."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


def has_bulk(node: Any) -> bool:
    if isinstance(node, biglists.BigListNode):
        return True
    if isinstance(node, yaml.MappingNode):
        return any(has_bulk(v) for _, v in node.value)
    if isinstance(node, yaml.SequenceNode):
        return any(has_bulk(v) for v in node.value)
    return False


ODD = ["yes", "No", "ON", "off", "y", "n", "True", "FALSE", "tRUE", "~", "null", "Null", "NULL", "nULL", "0x1f", "0X1F",
       "0o17", "017", "08", "0b101", "1_000", "+1_0", "-0", "+0", "0", "00", ".inf", "-.inf", "+.INF", ".NaN", ".nan",
       "1.", "-1.", ".5", "-.5", "1e5", "1.5e3", "1.5e+3", "1.5E-3", "1_0.5", "2001-12-14", "2002-1-1", "abc", "a.b",
       "/x/y.pt", "-a", "+", "-", ".", "..", "_", "1.2.3", "0.1", "3.14159", "12345678901234567890", "-9", "+7"]
ITEM = st.one_of(st.sampled_from(ODD), st.integers(-10**6, 10**6).map(str),
                 st.floats(allow_nan=False, allow_infinity=False).map(repr).filter(lambda s: "e" not in s),
                 st.from_regex(r"\A[-+]?[A-Za-z0-9_.~/][A-Za-z0-9_.~/+-]{0,8}\Z"))
SEP = st.sampled_from([",", ", ", " , ", ",\n", ",\n  ", "\n, ", ",\n\n "])


def _as_safe_load(text: str):
    """What the bulk reader gives for ``text``, checked against yaml.safe_load (an error where it
    fails); None when it fails."""
    try:
        want = yaml.safe_load(text)
    except yaml.YAMLError:
        with pytest.raises(ConfigError):
            bulk(text)
        return None
    data, _ = bulk(text)
    assert same(data, want), text
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(ITEM, SEP), min_size=1, max_size=30), st.sampled_from(["a: [{}]\n", "a:\n  b: [{}]\nc: 1\n",
                                                                                 "- [{}]\n", "a: {{b: [{}]}}\n"]))
def test_values_read_in_bulk_are_those_of_safe_load(items, doc):
    body = "".join(item + sep for item, sep in items)[: -len(items[-1][1])]
    text = doc.format(body)
    data = _as_safe_load(text)
    if data is not None:
        assert usual(text)[0] == data or same(usual(text)[0], data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ITEM, min_size=1, max_size=30), st.sampled_from(["a:\n{}", "a:\n  b:\n{}c: 1\n", "- x:\n{}", "a:\n{}b: 2\n"]),
       st.sampled_from(["", "  ", "    "]), st.sampled_from(["", " "]))
def test_block_lists_read_in_bulk_are_those_of_safe_load(items, doc, indent, trailing):
    _as_safe_load(doc.format("".join(f"{indent}- {item}{trailing}\n" for item in items)))


@settings(max_examples=200, deadline=None)
@given(st.lists(ITEM, min_size=1, max_size=20))
def test_each_spelling_is_typed_as_safe_load_types_it(items):
    body = ", ".join(items)
    got = biglists._values(body)
    if got is not None:  # None: not plain items (the usual parse reads them)
        assert same(got, yaml.safe_load(f"[{body}]")), body


def big_file(n: int, bad: int, per_line: int = 10) -> Tuple[str, int]:
    """An experiment whose cluster.nodes axis lists ``n`` values, ``per_line`` a line, value ``bad``
    being 0 (nodes must be >= 1); the text and the line of the bad value."""
    values = ["0" if i == bad else str(i % 7 + 1) for i in range(n)]
    rows = [", ".join(values[i:i + per_line]) for i in range(0, n, per_line)]
    head = "name: big\nrun: {command: [python3, t.py]}\nsweep:\n  shared_axes:\n    cluster.nodes: ["
    return head + ",\n      ".join(rows) + "]\n", 5 + bad // per_line


def test_an_error_deep_in_a_100000_item_list_names_its_line(tmp_path):
    text, line = big_file(100_000, 73_456)
    path = tmp_path / "big.yaml"
    path.write_text(text)
    data, node = yamlload.load(text, where)
    assert has_bulk(node)  # read in bulk: no node per value
    with pytest.raises(ConfigError) as e:
        load_experiment(str(path))
    assert str(e.value).startswith(f"{path}:{line}: sweep.shared_axes.cluster.nodes.73456: expected a whole number >= 1")
    with mock.patch.object(biglists, "MIN_ITEMS", 10**9), pytest.raises(ConfigError) as ref:
        load_experiment(str(path))
    assert str(ref.value) == str(e.value)


def test_an_error_deep_in_a_block_list_names_its_line(tmp_path):
    items = "".join(f"      - {'0' if i == 4321 else 1}\n" for i in range(10_000))
    path = tmp_path / "block.yaml"
    path.write_text(f"name: big\nrun: {{command: [a]}}\nsweep:\n  shared_axes:\n    cluster.nodes:\n{items}cluster: {{nodes: 1}}\n")
    assert has_bulk(yamlload.load(path.read_text(), where)[1])
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:{6 + 4321}: sweep.shared_axes.cluster.nodes.4321: "):
        load_experiment(str(path))


def test_an_error_in_a_one_line_list_names_the_key_line_and_later_lines_keep_their_numbers(tmp_path):
    values = ", ".join(["x" if i == 5000 else "1" for i in range(20_000)])
    path = tmp_path / "one.yaml"
    path.write_text(f"name: big\nrun: {{command: [a]}}\nsweep:\n  shared_axes:\n    cluster.nodes: [{values}]\n"
                    "cluster:\n  nodes: 0\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:7: cluster.nodes: expected a whole number"):
        load_experiment(str(path))
    path.write_text(f"name: big\nrun: {{command: [a]}}\nsweep:\n  shared_axes:\n    cluster.nodes:\n      [{values}]\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:6: sweep.shared_axes.cluster.nodes.5000: expected"):
        load_experiment(str(path))


def test_a_multiline_list_keeps_every_later_line_number():
    rows = ",\n  ".join(", ".join(str(i) for i in range(k, k + 10)) for k in range(0, 2000, 10))
    text = f"a: [{rows}]\nb:\n  c: [1,\n]\n"  # a trailing comma: the usual parse reads that list
    data, node = bulk(text, 1000)
    assert data["a"] == list(range(2000)) and has_bulk(node)
    assert node.value[1][0].start_mark.line + 1 == 201  # b: the line after the list's 200 lines


CASES = {
    "in a quoted string": "a: '[{}]'\n",
    "in a double-quoted string": 'a: "x [{}]"\n',
    "in a block scalar": "a: |\n  [{}]\n",
    "in a comment": "a: 1 # [{}]\n",
    "in a longer plain scalar": "a: x [{}]\n",
    "continued by a plain line": "a:\n  [{}]\n  x\n",
    "with an anchor": "a: &x [{}]\nb: *x\n",
    "with an anchor on the line before": "a: &x\n  [{}]\nb: *x\n",
    "with a tag": "a: !!str [{}]\n",
    "with a tag on the line before": "a: !!str\n  [{}]\n",
    "as a key": "? [{}]\n: 1\n",
    "as a flow key": "{{[{}]: 1}}\n",
    "the whole document": "[{}]\n",
    "after a document marker": "--- [{}]\n",
    "with a document end at a line start": "a: [1,\n...\n, {}]\n",
    "block: in a block scalar": "a: |\n{}",
    "block: with an anchor on the key line": "a: &x\n{}b: *x\n",
    "block: with a tag on the key line": "a: !!str\n{}",
    "block: continued by a deeper line": "a:\n{}    x\n",
    "block: followed by a key at its indent": "a:\n{}  b: 1\n",
    "block: under a list item": "-\n{}",
    "block: indentless": "a:\n{}",
    "block: in a quoted string": 'a: "x\n{}"\n',
    "block: its last entry a flow list": "a:\n{}  - [x]\n",
    "block: under a list item, its last entry a flow list": "- a:\n{}  - [x]\n",
    "a placeholder's spelling in the file": "a: [{}]\nb: __torchx_forge_big_list_0__\n",
}
BLOCK = "".join(f"  - {i}\n" for i in range(50))


@pytest.mark.parametrize("case", CASES)
def test_what_the_bulk_reader_cannot_prove_safe_reads_as_before(case):
    items = BLOCK.replace("  - ", "- ") if case == "block: indentless" else BLOCK
    text = CASES[case].format(items if case.startswith("block") else ", ".join(str(i) for i in range(50)))
    try:
        want: Any = ("ok", usual(text)[0])
    except ConfigError as e:
        want = ("error", str(e))
    try:
        got: Any = ("ok", bulk(text)[0])
    except ConfigError as e:
        got = ("error", str(e))
    assert got == want


def test_aliases_count_the_items_of_a_list_read_in_bulk():
    items = ", ".join(str(i) for i in range(60_000))
    text = f"d: &d {{I: [{items}]}}\nx: *d\n"
    data, node = bulk(text, 1000)
    assert data["x"] is data["d"] and has_bulk(node)  # 60,001 nodes repeated: within the bound
    with pytest.raises(ConfigError, match=r"^t:3: y: YAML aliases repeat more than 100,000 nodes"):
        bulk(text + "y: *d\n", 1000)


def test_short_lists_are_read_the_usual_way():
    data, node = yamlload.load("a: [1, 2, 3]\n", where)
    assert data == {"a": [1, 2, 3]} and not has_bulk(node)


def test_the_listed_benchmark_file_is_read_in_bulk_fast():
    text = "name: l\nrun: {command: [a]}\nsweep:\n  shared_axes:\n    run.env.I: [" + \
        ", ".join(str(i) for i in range(100_000)) + "]\n"
    data, node = yamlload.load(text, where)
    assert data["sweep"]["shared_axes"]["run.env.I"] == list(range(100_000)) and has_bulk(node)


PLAIN = st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=4), st.booleans(), st.none())


@settings(max_examples=200, deadline=None)
@given(st.lists(PLAIN, min_size=1, max_size=12), st.sampled_from(["run.env.X", "run.args.x", "cluster.nodes"]))
def test_a_listed_axis_checked_in_one_step_is_checked_as_value_by_value(values, key):
    check = leaf_check(key)
    src = Source("f.yaml")
    try:
        want: Any = ("ok", tuple(check(v, f"a.{i}", src) for i, v in enumerate(values)))
    except ConfigError as e:
        want = ("error", str(e))
    try:
        got: Any = ("ok", checked_items(values, "a", check, src))
    except ConfigError as e:
        got = ("error", str(e))
    assert got == want


def test_the_config_copy_is_copy_deepcopy():
    shared = list(range(5000))
    data = {"a": {"b": shared, "c": [1, "x", None, 2.5, True]}, "d": shared, "e": [{"f": [1]}, [datetime.date(2001, 1, 2)]]}
    copied = deep_copy(data)
    assert copied == copy.deepcopy(data) and copied["a"]["b"] is copied["d"] and copied["d"] is not shared
    assert copied["e"][1][0] is not data["e"][1][0]  # dates are copied as deepcopy copies them
