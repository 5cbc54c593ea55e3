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


def test_every_forge_env_variable_is_documented():
    import re

    contract = (REPO / "docs" / "contract.md").read_text()
    code = "".join(p.read_text() for p in (REPO / "torchx_forge").rglob("*.py"))
    names = set(re.findall(r"\b(FORGE_[A-Z0-9_]+)\b", code))
    internal = {"FORGE_STATE_DIR", "FORGE_APP_NAME", "FORGE_JOB_DIR", "FORGE_CHECKPOINT_TEMPLATE", "FORGE_MAX_RETRIES",
                "FORGE_RETRY_ON", "FORGE_GRACE", "FORGE_WARN_FILE", "FORGE_EXTRA_RETRIES", "FORGE_RESULT_TEMPLATE",
                "FORGE_RESUME_ARG", "FORGE_ARTIFACTS", "FORGE_HOLD_LIMIT",
                "FORGE_LOG_DIR"}
    undocumented = sorted(n for n in names - internal if n not in contract)
    assert not undocumented, f"docs/contract.md does not mention {undocumented}"


def test_shipped_examples_validate():
    for name in ("demo.yaml", "pipe.yaml", "ddp_sweep.yaml"):
        p = run_torchx("forge", "validate", "--config", str(REPO / "examples" / name))
        assert p.returncode == 0, p.stderr
