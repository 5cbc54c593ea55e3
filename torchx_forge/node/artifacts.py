"""Collecting a run's artifacts into its result directory.

After each attempt, files matching the configured globs (relative to the run's
working directory; ``**`` recurses) are copied to ``<FORGE_RESULT_DIR>/artifacts/``
keeping their relative paths; the list goes into the run's ``summary.json``. The
result directory may be any fsspec URL. Globs come from an experiment file's
``artifacts:`` section (slurmforge's keys: ``checkpoint_globs``, ``eval_csv_globs``,
``eval_image_globs``, ``extra_globs``) or, for any AppDef, from the role env
``FORGE_ARTIFACTS`` (globs separated by ``;``).
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, List

from torchx_forge.core.storage import StoreUnreachableError
from torchx_forge.state.files import is_url, put_file

GLOB_KEYS = ("checkpoint_globs", "eval_csv_globs", "eval_image_globs", "extra_globs")


def matches(globs: Iterable[str], workdir: str) -> List[str]:
    """Files (not directories) matching ``globs``, relative to ``workdir`` when under it, sorted."""
    import glob  # noqa: PLC0415 (here, as shutil below: only runs with artifacts pay for them, not every task)

    found = set()
    for pattern in globs:
        pattern = os.path.expanduser(pattern)
        base = "" if os.path.isabs(pattern) else workdir
        for path in glob.glob(os.path.join(base, pattern), recursive=True):
            if os.path.isfile(path) and ".tmp" not in os.path.basename(path):
                found.add(os.path.relpath(path, workdir) if path.startswith(workdir.rstrip("/") + "/") else path)
    return sorted(found)


def collect(globs: Iterable[str], workdir: str, result_dir: str) -> List[str]:
    """Copy the matching files into ``result_dir/artifacts``; returns what was copied (relative names)."""
    import shutil  # noqa: PLC0415

    copied: List[str] = []
    found = matches(globs, workdir)
    for n, rel in enumerate(found):
        src = rel if os.path.isabs(rel) else os.path.join(workdir, rel)
        name = rel.lstrip("/") if os.path.isabs(rel) else rel
        dst = f"{result_dir.rstrip('/')}/artifacts/{name}"
        try:
            if is_url(result_dir):
                put_file(src, dst)
            else:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)
            copied.append(name)
        except StoreUnreachableError as e:  # the next one would wait as long again
            print(f"torchx-forge: warning: cannot collect {len(found) - n} artifact(s) from {src} on: {e}", file=sys.stderr)
            break
        except OSError as e:
            print(f"torchx-forge: warning: cannot collect artifact {src}: {e}", file=sys.stderr)
    return copied


def globs_from_env(value: str) -> List[str]:
    return [g for g in (x.strip() for x in value.split(";")) if g]
