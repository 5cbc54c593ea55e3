"""Batch scripts kept in the state dir, wherever it is, so every later sbatch finds them.

Every script an app is submitted with is saved as ``submissions/<submission>/job-<i>.sh`` in the
state dir (0600 on a local file system). A :class:`~torchx_forge.state.records.JobRecord` names
where it lives in ``script`` and in the last word of ``argv``: a local path, or a URL with its
scheme when the state dir is on an object store (``s3://bucket/forge/submissions/...``).

Whoever submits a script again, from wherever it runs (the companion job on a compute node, a
wave job, ``torchx forge retry`` from another directory or login node), goes through
:func:`sbatch_script`: a script on a URL is fetched into a private local file for sbatch, which
reads it once, when it submits, and the file is removed right after. Nothing depends on a
temporary directory of the machine that submitted first.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

from torchx_forge.core import layout
from torchx_forge.core.storage import StoreError
from torchx_forge.errors import ForgeError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.state.files import is_url, read_file
from torchx_forge.state.store import Store


class ScriptMissingError(ForgeError):
    """The batch script a job was submitted with is not where its record says."""


def save(store: Store, submission: str, index: int, text: str) -> str:
    """Keep job ``index``'s script of ``submission`` in the state dir; returns where it lives
    (a local path, or a URL on an object store): what the record and sbatch's argv name."""
    return store.write_bytes(layout.submission_script(submission, index), text.encode(), mode=0o600)


@contextmanager
def local_copy(location: str, job: str = "") -> Iterator[str]:
    """A local file with the script at ``location``: the file itself when it is local, else a
    private copy fetched from the store, removed when the block ends. :class:`ScriptMissingError` when
    there is no such script; :class:`StoreError` when its store does not answer."""
    what = f"cannot resubmit job {job}" if job else "cannot submit"
    if not is_url(location):
        if not os.path.isfile(location):
            raise ScriptMissingError(f"{what}: its script {location} is gone (was the state dir moved or cleaned?)")
        yield location
        return
    try:
        data = read_file(location)
    except FileNotFoundError:
        raise ScriptMissingError(f"{what}: its script {location} is not in the store (was the state dir cleaned?)") from None
    except StoreError:
        raise
    except OSError as e:
        raise ScriptMissingError(f"{what}: cannot read its script {location} ({e})") from None
    fd, path = tempfile.mkstemp(prefix="forge-script-", suffix=".sh")  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def sbatch_script(cli: SlurmCli, argv: Sequence[str], env: Optional[Dict[str, str]] = None, tag: Optional[str] = None,
                  job: str = "") -> str:
    """``cli.sbatch(argv)`` where the last word of ``argv`` is where the script lives (a local path
    or a URL, see :func:`save`); returns the new job id. ``job``: the job being resubmitted, for errors."""
    return submit_script(cli, argv, env, tag, job)[0]


def submit_script(cli: SlurmCli, argv: Sequence[str], env: Optional[Dict[str, str]] = None, tag: Optional[str] = None,
                  job: str = "") -> Tuple[str, str]:
    """:func:`sbatch_script`, returning (job id, the cluster Slurm put it on), as :meth:`SlurmCli.submit`."""
    with local_copy(argv[-1], job) as path:
        return cli.submit([*argv[:-1], path], env=env, tag=tag)


def again_while_taken(cli: SlurmCli, argv: Sequence[str], tag: str, first: Tuple[str, str],
                      taken: Callable[[str, str], bool], env: Optional[Dict[str, str]] = None, job: str = "",
                      replaced: Callable[[str, str], None] = lambda old, new: None) -> Tuple[str, str, str]:
    """A held job (``first``: the job id and cluster :func:`submit_script` gave) whose id is
    ``taken(job id, cluster)`` is cancelled (nothing ran) and submitted again, up to five times:
    after a crash Slurm gives again the ids of jobs it lost, which forge's records still name.
    ``replaced(old, new)`` hears of each new job. Returns (job id, cluster, the tag it carries)."""
    (job_id, where), used = first, tag
    for again in range(1, 6):
        if not taken(job_id, where):
            break
        cli.on(where or None).cancel([job_id], ended_ok=True)
        used = f"{tag}r{again}"
        new_id, where = submit_script(cli, argv, env, used, job)
        replaced(job_id, new_id)
        job_id = new_id
    return job_id, where, used
