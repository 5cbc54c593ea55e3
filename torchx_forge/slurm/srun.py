"""What one srun group of a batch script runs and asks for, in shell words.

A role replica's program runs through the launcher (:class:`TaskCommand`: its command line;
:func:`launch_lines`: how the script starts it), on the resource shape of a het component or an array
(:class:`Component`: its ``#SBATCH`` lines). Every word is shell quoted (:func:`shell_word`):
arguments and env values reach the program byte for byte, and env is passed as launcher
arguments (``--env K=V``), never through ``srun --export``, which cuts values at commas.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple

from torchx.specs import macros

from torchx_forge.core import envvars
from torchx_forge.core.options import gpu_flag_for
from torchx_forge.core.secrets import MASK, is_secret
from torchx_forge.slurm.options import ForgeOpts

LAUNCHER = "torchx_forge.node.launch"
#: the launcher started without ``site`` (see :mod:`torchx_forge.node.boot`), on this machine
BOOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "node", "boot.py")
#: Shell variables the macros become inside a job.
MACRO_VARS: Mapping[str, str] = {
    macros.app_id: envvars.APP_ID.name,
    macros.replica_id: envvars.REPLICA_ID.name,
}
_MACRO_RE = re.compile("(" + "|".join(re.escape(m) for m in MACRO_VARS) + ")")


def shell_word(text: str) -> str:
    """Quote ``text`` for bash; ``${app_id}``/``${replica_id}`` become ``"$FORGE_..."``."""
    parts = _MACRO_RE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f'"${MACRO_VARS[part]}"')
        elif part:
            out.append(shlex.quote(part))
    return "".join(out) or "''"


def srun_path(text: str) -> str:
    """Escape a literal path for sbatch/srun --output, where % starts a pattern."""
    return text.replace("%", "%%")


@dataclass(frozen=True)
class TaskCommand:
    """What one srun group runs: the forge launcher wrapping a role's program."""

    role: str
    replica: Optional[int]  # None: computed from the array task id
    entrypoint: str
    args: Tuple[str, ...]
    env: Tuple[Tuple[str, str], ...]
    workdir: Optional[str] = None
    nodes: int = 1
    container: Tuple[str, ...] = ()  # words before the program: e.g. apptainer exec IMAGE

    def launcher_words(self, python_var: str, mask: bool, het_group: Optional[int] = None) -> List[str]:
        """The launcher's command line; ``"${forge_launch[@]}"`` is set by :func:`launch_lines`."""
        words = [f'"${python_var}"', '"${forge_launch[@]}"', "--role", shell_word(self.role)]
        if self.replica is not None:
            words += ["--replica", str(self.replica)]
        if het_group is not None:
            words += ["--het-group", str(het_group)]
        for key, value in self.env:
            shown = MASK if mask and is_secret(key) else value
            words += ["--env", shell_word(f"{key}={shown}")]
        words += ["--"] + [shell_word(w) for w in self.container]
        words += [shell_word(self.entrypoint)] + [shell_word(a) for a in self.args]
        return words


def launch_lines(opts: ForgeOpts) -> List[str]:
    """Script lines that set ``forge_launch``, the interpreter's arguments that start the launcher:
    ``-S <torchx_forge>/node/boot.py`` (no ``site`` at start: 25-50 ms less a task) where the
    launcher imports this very torchx_forge (runopt python is this interpreter, the state dir a
    path: no fsspec; no pyxis container around the launcher) and the file is on the node; else
    ``-m torchx_forge.node.launch``, which finds torchx_forge as the interpreter's site does."""
    default = f"forge_launch=(-m {LAUNCHER})"
    if opts.python != sys.executable or "://" in opts.state_dir or opts.container_runtime == "pyxis":
        return [default]
    return [f"forge_launch=(-S {shlex.quote(BOOT)})",
            f'[ -f "${{forge_launch[1]}}" ] || {default}']


@dataclass(frozen=True)
class Component:
    """One ``#SBATCH`` group: the resource shape of one het component or of an array."""

    job_name: str
    command: TaskCommand
    nodes: int = 1
    cpus: int = 0
    mem_mb: int = 0
    gpus: int = 0
    srun_container: Tuple[str, ...] = ()  # pyxis: --container-image=... on srun

    def sbatch_lines(self, opts: ForgeOpts) -> List[str]:
        flags = [f"--job-name={self.job_name}", f"--nodes={self.nodes}", "--ntasks-per-node=1"]
        if self.cpus > 0:
            flags.append(f"--cpus-per-task={self.cpus}")
        if self.mem_mb > 0 and not opts.nomem:
            flags.append(f"--mem={self.mem_mb}")
        if self.gpus > 0:
            flags.append(gpu_flag(opts.gpu_flag, self.gpus))
        return [f"#SBATCH {f}" for f in flags]


def gpu_flag(form: str, gpus: int) -> str:
    """The GPU request in the form the cluster wants (see runopt gpu_flag; ``auto`` not yet resolved
    for the cluster, see :meth:`ForgeBatchRequest.for_slurm`, is the form of a recent Slurm)."""
    if form == "auto":
        form = gpu_flag_for(None)
    if form == "gres":
        return f"--gres=gpu:{gpus}"
    if form == "gpus-per-task":
        return f"--gpus-per-task={gpus}"
    return f"--gpus-per-node={gpus}"
