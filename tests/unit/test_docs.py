"""The docs say what the code does."""

import re

from conftest import REPO, run_torchx


def test_runopts_page_is_what_torchx_runopts_prints():
    page = (REPO / "docs" / "runopts.md").read_text()
    printed = run_torchx("runopts", "slurm_forge").stdout.strip()
    assert printed and printed in page, "docs/runopts.md is stale: regenerate it from `torchx runopts slurm_forge`"


def test_the_readme_links_the_runopts_page_and_repeats_no_runopts_table():
    from torchx_forge.slurm.options import build_runopts

    readme = (REPO / "README.md").read_text()
    assert "(docs/runopts.md)" in readme
    rows = [line for line in readme.splitlines() if line.startswith("|")]
    repeated = [name for name, _ in build_runopts() if any(line.startswith(f"| `{name}`") for line in rows)]
    assert not repeated, f"README repeats docs/runopts.md's options {repeated}: link to the page instead"


def test_shipped_examples_validate():
    for name in ("demo.yaml", "pipe.yaml", "ddp_sweep.yaml"):
        p = run_torchx("forge", "validate", "--config", str(REPO / "examples" / name))
        assert p.returncode == 0, p.stderr


def _bash_blocks(text: str):
    return [block.split("```", 1)[0] for block in text.split("```bash")[1:]]


def test_readme_gives_the_two_commands_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    block = next(b for b in _bash_blocks(readme) if "scripts/demo" in b)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["bash scripts/demo", "python3 -m pytest -q"]
    # the same command, no arguments added (its output may be piped to a log)
    assert re.search(r"^python3 -m pytest -q( 2>&1 \|.*)?$", ci, re.M), ci
    # and the first command itself: CI starts the lab and installs what the tests need through it
    assert re.search(r"^bash scripts/demo$", ci, re.M), ci
    assert "scripts/local-slurm up --clusters 3" in (REPO / "scripts" / "demo").read_text()


def test_the_first_install_line_of_the_readme_names_the_torchx_extra():
    # a bare `pip install torchx-forge` installs no TorchX (by design: it would replace a torchx-nightly)
    readme = (REPO / "README.md").read_text()
    first = next(line for line in readme.splitlines() if "pip install" in line)
    assert "pip install 'torchx-forge[torchx]'" in first, first


def test_the_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines: move details into docs/ and link to them"


#: [text](target) in markdown (not ![images]), with an optional "title"
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _prose(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks
    return re.sub(r"`[^`\n]*`", "", text)  # code spans


def _relative_links(page):
    """(file, anchor) of every link that is not a URL; file "" for an anchor on the same page."""
    for target in _LINK.findall(_prose(page)):
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # https://..., mailto:
            file, _, anchor = target.partition("#")
            yield file, anchor


def _anchors(page):
    """GitHub's ids of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_in_the_readme_and_docs_points_at_a_file_that_exists():
    broken = [f"{page.relative_to(REPO)}: {file}" for page in _PAGES for file, _ in _relative_links(page)
              if file and not (page.parent / file).exists()]
    assert not broken, f"links to files that do not exist: {broken}"
    assert sum(1 for _ in _relative_links(REPO / "README.md")) > 5  # the check sees the README's links


def test_every_link_to_a_section_of_a_page_names_a_heading_of_it():
    broken = []
    for page in _PAGES:
        for file, anchor in _relative_links(page):
            target = page.parent / file if file else page
            if anchor and target.suffix == ".md" and target.exists() and anchor not in _anchors(target):
                broken.append(f"{page.relative_to(REPO)}: {file}#{anchor}")
    assert not broken, f"links to sections that do not exist: {broken}"
