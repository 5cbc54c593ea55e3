"""The docs say what the code does."""


from conftest import REPO, run_torchx


def test_runopts_page_is_what_torchx_runopts_prints():
    page = (REPO / "docs" / "runopts.md").read_text()
    printed = run_torchx("runopts", "slurm_forge").stdout.strip()
    assert printed and printed in page, "docs/runopts.md is stale: regenerate it from `torchx runopts slurm_forge`"


def test_every_runopt_is_in_the_readme_table():
    from torchx_forge.slurm.options import build_runopts

    readme = (REPO / "README.md").read_text()
    missing = [name for name, _ in build_runopts() if f"`{name}`" not in readme]
    assert not missing, f"README's runopts table lacks {missing}"


def test_shipped_examples_validate():
    for name in ("demo.yaml", "pipe.yaml", "ddp_sweep.yaml"):
        p = run_torchx("forge", "validate", "--config", str(REPO / "examples" / name))
        assert p.returncode == 0, p.stderr
