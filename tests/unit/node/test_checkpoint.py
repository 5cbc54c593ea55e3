"""Finding the checkpoint to resume from: state file first, then step numbers, never mtime."""

import json
import os
import time
import uuid

import pytest

from torchx_forge.node.checkpoint import (
    STATE_FILE,
    CheckpointError,
    commit,
    latest_checkpoint,
    step_of,
)


def touch(path, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def names_in(tmp_path, *names):
    for n in names:
        touch(tmp_path / n)
    return str(tmp_path)


# -- checkpoint_state.json ---------------------------------------------------------------


def test_state_file_relative_latest_wins_over_higher_step(tmp_path):
    d = names_in(tmp_path, "step_100.pt", "step_900.pt")
    (tmp_path / STATE_FILE).write_text(json.dumps({"latest": "step_100.pt", "step": 100}))
    assert latest_checkpoint(d) == f"{d}/step_100.pt"


def test_state_file_absolute_latest(tmp_path):
    other = touch(tmp_path / "elsewhere" / "model.bin")
    d = tmp_path / "ckpts"
    touch(d / "step_5.pt")
    (d / STATE_FILE).write_text(json.dumps({"latest": str(other)}))
    assert latest_checkpoint(str(d)) == str(other)


def test_state_file_may_point_to_a_directory(tmp_path):
    (tmp_path / "global_step_7").mkdir()
    (tmp_path / STATE_FILE).write_text(json.dumps({"latest": "global_step_7", "step": 7}))
    assert latest_checkpoint(str(tmp_path)) == f"{tmp_path}/global_step_7"


def test_dangling_state_file_is_an_error_naming_the_file(tmp_path):
    touch(tmp_path / "step_1.pt")
    (tmp_path / STATE_FILE).write_text(json.dumps({"latest": "step_2.pt", "step": 2}))
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint(str(tmp_path))
    msg = str(e.value)
    assert STATE_FILE in msg
    assert "step_2.pt" in msg
    assert "does not exist" in msg


@pytest.mark.parametrize(
    "content",
    ["{not json", "[]", json.dumps({"step": 3}), json.dumps({"latest": ""}), json.dumps({"latest": 12})],
    ids=["syntax", "list", "no-latest", "empty-latest", "number-latest"],
)
def test_unreadable_state_file_is_an_error(tmp_path, content):
    touch(tmp_path / "step_1.pt")
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint(str(tmp_path))
    assert STATE_FILE in str(e.value)
    assert "unreadable" in str(e.value)


# -- step numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,step",
    [
        ("global_step_1200", 1200),
        ("step1200", 1200),
        ("step-1200", 1200),
        ("step_1200.pt", 1200),
        ("checkpoint-1200", 1200),
        ("ckpt_1200.pt", 1200),
        ("global_step1200.tar.gz", 1200),
        ("epoch_3", 3),
        ("Step_0042.safetensors", 42),
        ("model.pt", None),
        ("final", None),
        ("step_12_final.pt", None),
        ("mystep_12.pt", None),
    ],
)
def test_step_of(name, step):
    assert step_of(name) == step


@pytest.mark.parametrize(
    "name",
    ["global_step_1200", "step1200", "step-1200", "checkpoint-1200", "ckpt_1200.pt", "global_step1200.tar.gz"],
)
def test_highest_step_wins_for_every_naming_style(tmp_path, name):
    d = names_in(tmp_path, "step_999.pt", "ckpt_50.pt", "epoch_3", name)
    assert latest_checkpoint(d) == f"{d}/{name}"


def test_epoch_names_compare_by_number_not_text(tmp_path):
    d = names_in(tmp_path, "epoch_3", "epoch_10", "epoch_9")
    assert latest_checkpoint(d) == f"{d}/epoch_10"


def test_directories_count_too(tmp_path):
    touch(tmp_path / "step_10.pt")
    (tmp_path / "global_step_20").mkdir()
    touch(tmp_path / "global_step_20" / "model.bin")
    assert latest_checkpoint(str(tmp_path)) == f"{tmp_path}/global_step_20"


@pytest.mark.parametrize(
    "ignored",
    [".step_9999.pt", "step_9999.pt.tmp", "step_9999.partial", "step_9999.pt~", "tmpstep_9999", "tmp_9999", "step_9999.lock"],
)
def test_hidden_and_temporary_entries_are_ignored(tmp_path, ignored):
    d = names_in(tmp_path, "step_10.pt", ignored)
    assert latest_checkpoint(d) == f"{d}/step_10.pt"


def test_temporary_unnumbered_entries_do_not_make_a_single_one_ambiguous(tmp_path):
    d = names_in(tmp_path, "model.pt", "tmpabcd", ".hidden", "model.pt.tmp", "model.partial", "model.pt~")
    assert latest_checkpoint(d) == f"{d}/model.pt"


def test_single_unnumbered_entry_is_used(tmp_path):
    d = names_in(tmp_path, "final.pt")
    assert latest_checkpoint(d) == f"{d}/final.pt"


def test_single_unnumbered_directory_is_used(tmp_path):
    (tmp_path / "hf_model").mkdir()
    assert latest_checkpoint(str(tmp_path)) == f"{tmp_path}/hf_model"


def test_numbered_entries_win_over_unnumbered_ones(tmp_path):
    d = names_in(tmp_path, "final.pt", "best.pt", "step_3.pt")
    assert latest_checkpoint(d) == f"{d}/step_3.pt"


def test_several_unnumbered_entries_are_an_error_listing_them(tmp_path):
    d = names_in(tmp_path, "best.pt", "final.pt", "last.pt")
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint(d)
    msg = str(e.value)
    for n in ("best.pt", "final.pt", "last.pt"):
        assert n in msg
    assert STATE_FILE in msg


def test_tie_on_the_highest_step_is_an_error(tmp_path):
    d = names_in(tmp_path, "step_1200.pt", "checkpoint-1200", "step_5.pt")
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint(d)
    msg = str(e.value)
    assert "step_1200.pt" in msg and "checkpoint-1200" in msg
    assert "1200" in msg
    assert "step_5.pt" not in msg


def test_tie_below_the_highest_step_is_fine(tmp_path):
    d = names_in(tmp_path, "step_5.pt", "ckpt_5.pt", "step_6.pt")
    assert latest_checkpoint(d) == f"{d}/step_6.pt"


def test_missing_directory_is_none(tmp_path):
    assert latest_checkpoint(str(tmp_path / "nope")) is None


def test_empty_directory_is_none(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None


def test_only_ignored_entries_is_none(tmp_path):
    d = names_in(tmp_path, ".x", "step_3.pt.tmp", "tmp123")
    assert latest_checkpoint(d) is None


def test_never_by_modification_time(tmp_path):
    now = time.time()
    touch(tmp_path / "step_200.pt", mtime=now - 1000)
    touch(tmp_path / "step_100.pt", mtime=now + 1000)  # older step, written last
    assert latest_checkpoint(str(tmp_path)) == f"{tmp_path}/step_200.pt"
    # and again the other way around: the result does not follow mtimes at all
    os.utime(tmp_path / "step_200.pt", (now + 5000, now + 5000))
    assert latest_checkpoint(str(tmp_path)) == f"{tmp_path}/step_200.pt"


def test_file_url_is_a_local_path(tmp_path):
    names_in(tmp_path, "step_1.pt", "step_2.pt")
    assert latest_checkpoint(f"file://{tmp_path}") == f"file://{tmp_path}/step_2.pt"


# -- commit --------------------------------------------------------------------------------


def test_commit_writes_the_pointer_and_latest_follows_it(tmp_path):
    d = str(tmp_path)
    touch(tmp_path / "step_100.pt")
    touch(tmp_path / "step_200.pt")
    commit(d, str(tmp_path / "step_100.pt"), step=100)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state == {"latest": "step_100.pt", "step": 100, "format": 1}  # stored relative to the directory
    assert latest_checkpoint(d) == f"{d}/step_100.pt"
    commit(d, "step_200.pt", step=200)
    assert latest_checkpoint(d) == f"{d}/step_200.pt"


def test_commit_leaves_no_temporary_files(tmp_path):
    touch(tmp_path / "a.pt")
    for _ in range(3):
        commit(str(tmp_path), str(tmp_path / "a.pt"))
    assert sorted(os.listdir(tmp_path)) == ["a.pt", STATE_FILE]
    assert json.loads((tmp_path / STATE_FILE).read_text())["step"] is None


def test_commit_creates_the_directory(tmp_path):
    d = tmp_path / "new" / "dir"
    commit(str(d), "model.pt", step=1)
    assert json.loads((d / STATE_FILE).read_text())["latest"] == "model.pt"


def test_commit_is_atomic_replace(tmp_path, monkeypatch):
    """The pointer is written to a temporary file in the same directory and renamed over the old one."""
    touch(tmp_path / "step_1.pt")
    commit(str(tmp_path), "step_1.pt", 1)
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((src, dst))
        assert json.loads(open(src).read())["latest"] == "step_2.pt"  # complete before the rename
        assert json.loads(open(dst).read())["latest"] == "step_1.pt"  # old pointer intact until then
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    commit(str(tmp_path), "step_2.pt", 2)
    assert len(calls) == 1
    src, dst = calls[0]
    assert os.path.dirname(src) == str(tmp_path)
    assert dst == os.path.join(str(tmp_path), STATE_FILE)


# -- fsspec URLs ---------------------------------------------------------------------------


@pytest.fixture
def mem_dir():
    import fsspec

    url = f"memory://forge-ckpt-{uuid.uuid4().hex}/run"
    fs, root = fsspec.core.url_to_fs(url)
    fs.makedirs(root, exist_ok=True)
    yield url, fs, root
    fs.rm(root.rsplit("/", 1)[0], recursive=True)


def test_memory_url_listing(mem_dir):
    url, fs, root = mem_dir
    for n in ("step_3.pt", "step_12.pt", "step_99.pt.tmp", ".step_100.pt"):
        fs.pipe_file(f"{root}/{n}", b"x")
    assert latest_checkpoint(url) == f"{url}/step_12.pt"


def test_memory_url_tie_is_an_error(mem_dir):
    url, fs, root = mem_dir
    for n in ("step_3.pt", "ckpt_3.pt"):
        fs.pipe_file(f"{root}/{n}", b"x")
    with pytest.raises(CheckpointError):
        latest_checkpoint(url)


def test_memory_url_missing_directory_is_none():
    assert latest_checkpoint(f"memory://forge-ckpt-{uuid.uuid4().hex}/absent") is None


def test_memory_url_commit_and_follow(mem_dir):
    url, fs, root = mem_dir
    for n in ("step_3.pt", "step_12.pt"):
        fs.pipe_file(f"{root}/{n}", b"x")
    commit(url, "step_3.pt", step=3)
    assert json.loads(fs.cat_file(f"{root}/{STATE_FILE}")) == {"latest": "step_3.pt", "step": 3, "format": 1}
    assert latest_checkpoint(url) == f"{url}/step_3.pt"


def test_memory_url_dangling_pointer(mem_dir):
    url, fs, root = mem_dir
    fs.pipe_file(f"{root}/step_1.pt", b"x")
    commit(url, "step_2.pt", step=2)
    with pytest.raises(CheckpointError, match="does not exist"):
        latest_checkpoint(url)


def test_the_ambiguity_error_names_a_helper_that_exists_and_resolves_it(tmp_path, monkeypatch):
    import importlib
    import re

    (tmp_path / "step_5.pt").write_text("a")
    (tmp_path / "checkpoint-5").mkdir()
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint(str(tmp_path))
    dotted = re.search(r"\((torchx_forge\.[\w.]+)\)", str(e.value)).group(1)
    module, _, name = dotted.rpartition(".")
    helper = getattr(importlib.import_module(module), name)
    monkeypatch.setenv("FORGE_CHECKPOINT_DIR", str(tmp_path))
    helper(str(tmp_path / "checkpoint-5"), 5)
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-5")


def test_memory_url_commit_of_a_full_url_is_kept_relative(mem_dir):
    """runtime.save hands the program the final URL; checkpoint_state.json names it relative to the dir."""
    url, fs, root = mem_dir
    fs.pipe_file(f"{root}/step_7.json", b"x")
    commit(url, f"{url}/step_7.json", step=7)
    assert json.loads(fs.cat_file(f"{root}/{STATE_FILE}")) == {"latest": "step_7.json", "step": 7, "format": 1}
    assert latest_checkpoint(url) == f"{url}/step_7.json"


def test_an_unreachable_checkpoint_store_is_an_error_that_may_pass(monkeypatch):
    from torchx_forge.core.storage import StoreUnreachableError
    from torchx_forge.node import checkpoint

    def down(directory):
        raise StoreUnreachableError(directory, "EndpointConnectionError: no")

    monkeypatch.setattr(checkpoint, "list_names", down)
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint("s3://bucket/ckpt/run")
    assert e.value.unreachable and "s3://bucket/ckpt/run: the store did not answer" in str(e.value)


# -- runtime.save: an attempt killed mid-way, then resumed ---------------------------------------


def _save_dir(tmp_path, monkeypatch, step, value):
    from torchx_forge import runtime

    monkeypatch.setenv("FORGE_CHECKPOINT_DIR", str(tmp_path))

    def write(path):
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "state.json"), "w") as f:
            json.dump({"step": step, "value": value}, f)

    return runtime.save(write, step, name="step_{step}", keep=0)


def test_a_step_saved_but_not_committed_by_a_killed_attempt_is_saved_again(tmp_path, monkeypatch):
    # the preempted attempt renamed step_5 into place and died before committing it (and left a
    # half-written step_5.tmp): the resumed attempt runs step 5 again and saves it (it failed with
    # "Directory not empty", seen in CI)
    _save_dir(tmp_path, monkeypatch, 4, "first")
    (tmp_path / "step_5").mkdir()
    (tmp_path / "step_5" / "state.json").write_text('{"step": 5, "value": "killed"}')
    (tmp_path / "step_5.tmp").mkdir()
    (tmp_path / "step_5.tmp" / "junk").write_text("half")
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "step_4")  # committed: step 4
    path = _save_dir(tmp_path, monkeypatch, 5, "again")
    assert path == str(tmp_path / "step_5") and latest_checkpoint(str(tmp_path)) == path
    assert sorted(os.listdir(path)) == ["state.json"] and json.loads((tmp_path / "step_5" / "state.json").read_text())["value"] == "again"
    assert not [n for n in os.listdir(tmp_path) if n.startswith("step_5.")]  # no tmp or old copy left


def test_keep_prunes_directory_checkpoints_too(tmp_path, monkeypatch):
    from torchx_forge import runtime

    monkeypatch.setenv("FORGE_CHECKPOINT_DIR", str(tmp_path))
    for step in range(1, 5):
        runtime.save(os.makedirs, step, name="step_{step}", keep=2)
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("step_")) == ["step_3", "step_4"]
