"""``torchx forge preview`` prints a big sweep's table as it goes: the first runs show at once."""

from torchx_forge.cli import experiments


def rows(n, seen, capsys):
    for i in range(n):
        if i == experiments.BLOCK:  # the first block is out before the rest is computed
            seen.append(capsys.readouterr().out)
        yield {"index": i, "id": f"run-{i}", "case": "", "params": {"x": i}, "command": lambda i=i: f"prog --x {i}"}


def test_a_big_table_prints_a_block_at_a_time_with_columns_that_only_widen(capsys):
    seen = []
    n = experiments._print_runs(rows(experiments.BLOCK * 3, seen, capsys), as_json=False)
    assert n == experiments.BLOCK * 3
    first = seen[0].splitlines()
    assert first[0].split() == ["RUN", "RUN", "ID", "CASE", "PARAMETERS", "COMMAND"] and len(first) == experiments.BLOCK
    lines = first + capsys.readouterr().out.splitlines()
    assert len(lines) == n + 1
    assert lines[1] == "  0    run-0    -     x=0         prog --x 0"
    assert lines[-1].split() == [str(n - 1), f"run-{n - 1}", "-", f"x={n - 1}", "prog", "--x", str(n - 1)]
    starts = {line.index("run-") for line in lines[experiments.BLOCK:]}
    assert len(starts) == 1  # later blocks keep one alignment


def test_a_small_table_is_one_aligned_block(capsys):
    assert experiments._print_runs(rows(2, [], capsys), as_json=False) == 2
    assert capsys.readouterr().out.splitlines() == [
        "  RUN  RUN ID  CASE  PARAMETERS  COMMAND", "  0    run-0   -     x=0         prog --x 0",
        "  1    run-1   -     x=1         prog --x 1",
    ]
