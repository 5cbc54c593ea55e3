"""Experiment files are read with bounds: aliases may repeat at most ALIAS_NODES nodes, nesting is
at most MAX_DEPTH levels, the text is UTF-8 of at most MAX_BYTES. Each refusal is one line naming
the file (and line, key or byte), in well under a second; aliases within the bound keep working."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO
from torchx_forge.errors import ConfigError
from torchx_forge.experiment import source, yamlload
from torchx_forge.experiment.overrides import parse_overrides
from torchx_forge.experiment.source import read_yaml
from torchx_forge.experiment.spec import load_experiment
from unit import bounds
from unit.bounds import HANG

HEAD = "name: x\nrun: {command: [python3, train.py]}\n"


def laughs(levels: int, fan: int = 9) -> str:
    """The "billion laughs": each level a list of ``fan`` aliases of the one before."""
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * fan) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def refused(path: Path, *expected: str) -> str:
    return bounds.refused(lambda: load_experiment(str(path)), *expected)


def test_billion_laughs_is_refused_at_once_naming_the_alias(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(HEAD + "run_args_holder:\n" + textwrap.indent(laughs(9), "  "))
    text = refused(path, f"{path}:", "YAML aliases repeat more than 100,000 nodes")
    assert "run_args_holder.l" in text  # the key path of the alias past the bound


def test_aliases_of_an_ordinary_size_keep_working(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(textwrap.dedent("""\
        name: x
        run: &run {command: [python3, train.py], args: {lr: 0.1}}
        cluster: &c {cpus_per_task: 2}
        sweep:
          shared_axes: {run.args.seed: &seeds [1, 2, 3]}
          cases:
            - {name: a, axes: {run.args.bs: *seeds}}
            - {name: b, set: {run.args.opt: sgd}}
        """))
    exp = load_experiment(str(path))
    assert exp.cluster["cpus_per_task"] == 2
    merged = tmp_path / "merge.yaml"
    merged.write_text("base: &b {cpus_per_task: 2, mem: 1G}\n")
    data, _ = read_yaml(str(merged))
    assert data == {"base": {"cpus_per_task": 2, "mem": "1G"}}
    text = "defaults: &d {a: 1, b: 2}\nuse: {<<: *d, b: 3}\nglob: ['*.pt']\n" + laughs(4)  # 9**5 < 100,000
    data, _ = yamlload.load(text, lambda p, line: "t")
    assert data["use"] == {"a": 1, "b": 3} and len(data["l4"]) == 9


def test_the_bound_counts_what_aliases_add():
    # k0 holds 10 scalars; k1..k3 hold 10 aliases of the level below: they add 12,330 nodes; a use of k3 adds 11,111
    levels = "".join(f"k{i}: &k{i} [" + ", ".join([f"*k{i - 1}" if i else "1"] * 10) + "]\n" for i in range(4))
    data, _ = yamlload.load(levels + "k4: [" + ", ".join(["*k3"] * 7) + "]\n", lambda p, line: f"t:{line}: {p}")
    assert len(data["k4"]) == 7  # 90,107 added
    with pytest.raises(ConfigError, match=r"^t:5: k4.7: YAML aliases repeat more than 100,000 nodes in all .this alias"
                                          r" repeats 11,111"):
        yamlload.load(levels + "k4: [" + ", ".join(["*k3"] * 8) + "]\n", lambda p, line: f"t:{line}: {p}")


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "rec.yaml"
    path.write_text("name: x\nrun: &r {command: [a], args: {x: [*r]}}\n")
    refused(path, f"{path}:2:", "a YAML alias refers to the mapping or list that holds it")


@pytest.mark.parametrize("nest", [lambda n: "[" * n + "]" * n, lambda n: "".join("  " * i + "- \n" for i in range(n)),
                                  lambda n: "- " * n + "x"])
def test_nesting_past_the_bound_is_refused_before_libyaml_builds_nodes(tmp_path, nest):
    path = tmp_path / "deep.yaml"
    path.write_text(HEAD + "z:\n" + textwrap.indent(nest(yamlload.MAX_DEPTH + 5), "  "))
    refused(path, f"{path}:", "nest more than 100 levels deep")


def test_a_nesting_that_crashes_libyaml_is_refused_in_a_subprocess_that_survives(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("z: " + "[" * 200_000 + "]" * 200_000 + "\n")
    code = ("import sys\nfrom torchx_forge.experiment.source import read_yaml\n"
            "try:\n    read_yaml(sys.argv[1])\nexcept Exception as e:\n    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"{path}:1: mappings and lists nest more than 100 levels deep")


def test_aliases_cannot_nest_deeper_than_the_text(tmp_path):
    levels = [f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" if i else "a0: &a0 [1]" for i in range(12)]
    with pytest.raises(ConfigError, match="nest more than 100 levels deep with its aliases expanded"):
        yamlload.load("\n".join(levels) + "\n", lambda p, line: "t")


def test_override_values_have_the_same_bounds():
    with pytest.raises(ConfigError, match="^override 'x=.*nest more than 100 levels"):
        parse_overrides(["x=" + "[" * 50_000 + "]" * 50_000])
    value = "[" + ", ".join(["&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + ["*a"] * 20_000) + "]"
    with pytest.raises(ConfigError, match="YAML aliases repeat more than 100,000"):
        parse_overrides([f"x={value}"])
    with pytest.raises(ConfigError, match=r"^override 'x=\[1': the value is not valid YAML: "):
        parse_overrides(["x=[1"])
    assert parse_overrides(["x=[&a 1, *a]"]) == [("x", [1, 1])]


@pytest.mark.parametrize("content, expected", [
    (b"name: x\n\x00\xff\xfe\x01binary", r"x.yaml:2: not UTF-8 text: byte 9 \(0xff\) invalid start byte;"
                                          r" experiment files are UTF-8 YAML: this looks like a binary file"),
    ("name: café\nrun: {command: [a]}\n".encode("latin-1"),
     r"x.yaml:1: not UTF-8 text: byte 9 \(0xe9\) invalid continuation byte; .*iconv -f latin1 -t utf-8"),
    (b"name: x\nrun: {command: [a\x00]}\n", r"x.yaml:2: byte 25 is a NUL: this looks like a binary file"),
    ("name: x\n".encode("utf-16"), r"x.yaml:1: not UTF-8 text: byte 0 \(0xff\)"),
])
def test_a_file_that_is_not_utf8_text_is_one_line_naming_file_line_and_byte(tmp_path, content, expected):
    path = tmp_path / "x.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected) as err:
        read_yaml(str(path))
    assert "\n" not in str(err.value)


def test_utf8_text_with_a_byte_order_mark_and_crlf_lines_reads(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes("\ufeffname: café\r\nrun: {command: [a]}\r\n".encode())
    data, src = read_yaml(str(path))
    assert data["name"] == "café" and src.lines["run"] == 2


def test_an_endless_or_huge_file_is_refused_after_max_bytes(tmp_path, monkeypatch):
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"^/dev/zero: the file is larger than 16 MB"):
        read_yaml("/dev/zero")
    assert time.monotonic() - start < HANG
    monkeypatch.setattr(source, "MAX_BYTES", 100)
    path = tmp_path / "big.yaml"
    path.write_text(HEAD + "#" * 100)
    with pytest.raises(ConfigError, match="larger than"):
        read_yaml(str(path))
