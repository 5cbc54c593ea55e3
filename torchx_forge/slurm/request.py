"""The sbatch request of an app: frozen dataclasses with a pure ``materialize()``.

An AppDef becomes a :class:`ForgeBatchRequest` of one or more :class:`JobRequest` (one ``sbatch``
call each; :mod:`torchx_forge.slurm.jobs` decides which): its command line, its dependencies and
its batch script, whose header, environment and retry logic are here and whose srun groups are
:mod:`torchx_forge.slurm.srun`. Every task runs the program through
the launcher (:mod:`torchx_forge.node.launch`), which sets the forge environment, forwards signals and
reports the task's end state.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torchx
from torchx.specs import AppDef, Role

from torchx_forge import __version__
from torchx_forge.core import envvars, layout
from torchx_forge.core.options import gpu_flag_for
from torchx_forge.core.policy import RetryPolicy
from torchx_forge.core.record import replace
from torchx_forge.core.secrets import MASK, is_secret
from torchx_forge.core.states import DepKind, JobKind
from torchx_forge.errors import ConfigError
from torchx_forge.slurm.limits import ClusterLimits
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.slurm.preview import runs_preview
from torchx_forge.slurm.srun import Component, launch_lines, shell_word, srun_path
from torchx_forge.state.records import AppMeta

DECIDE = "torchx_forge.node.decide"
RANK0_ENV = envvars.RANK0_HOST.name
#: the names the batch script uses most
_APP_ID, _REPLICA_ID, _WARN_FILE = envvars.APP_ID.name, envvars.REPLICA_ID.name, envvars.WARN_FILE.name


@dataclass(frozen=True)
class ArraySpec:
    """Array tasks 0..size-1 run replicas offset..offset+size-1 of one role."""

    size: int
    offset: int = 0
    throttle: Optional[int] = None

    @property
    def flag(self) -> str:
        spec = f"--array=0-{self.size - 1}"
        if self.throttle and self.throttle < self.size:
            spec += f"%{self.throttle}"
        return spec


@dataclass(frozen=True)
class JobRequest:
    """One sbatch call: a het job (several components) or an array (one component)."""

    app_name: str
    index: int
    components: Tuple[Component, ...]
    opts: ForgeOpts
    array: Optional[ArraySpec] = None
    extra_env: Tuple[Tuple[str, str], ...] = ()
    policy: RetryPolicy = RetryPolicy()
    stage: str = ""
    #: dependencies on earlier jobs of the app: (type, job indices); resolved to ids at submit
    after: Tuple[Tuple[DepKind, Tuple[int, ...]], ...] = ()
    #: dependencies on jobs outside the app: (type, Slurm job id)
    after_external: Tuple[Tuple[DepKind, str], ...] = ()
    #: pipelines: dependents of a failed step end CANCELLED instead of pending forever
    kill_invalid_dep: bool = False
    #: the wave it is submitted in (0: by torchx run; later ones by the wave job before them)
    wave: int = 0
    #: shell lines run once the tasks have ended for good, before the script's exit (a search's trials)
    epilogue: Tuple[str, ...] = ()

    @property
    def kind(self) -> JobKind:
        return JobKind.ARRAY if self.array else JobKind.HET

    def dependency(self, ids: Optional[Sequence[str]] = None) -> Optional[str]:
        """The --dependency expression: the dependency runopt plus the pipeline's, with ``ids``
        the job ids of the app's earlier jobs (placeholders ``<job N>`` when not yet known)."""
        parts = []
        for kind, indices in self.after:
            refs = [ids[i] if ids is not None else f"<job {i + 1}>" for i in indices]
            parts.append(kind.value + "".join(f":{r}" for r in refs))
        parts += [f"{kind.value}:{job}" for kind, job in self.after_external]
        user = self.opts.dependency
        if user and parts and "?" in user:
            raise ConfigError(
                "runopt 'dependency'", f"{user!r} uses '?' (any of), which Slurm cannot combine with a pipeline's dependencies"
            )
        expr = ",".join(([user] if user else []) + parts)
        return expr or None

    def sbatch_flags(self, ids: Optional[Sequence[str]] = None) -> List[str]:
        """Job-wide flags for the sbatch command line (they apply to every het component)."""
        flags = self.opts.sbatch_flags()
        dependency = self.dependency(ids)
        if dependency:
            flags.append(f"--dependency={dependency}")
        if self.kill_invalid_dep:
            flags.append("--kill-on-invalid-dep=yes")
        if self.opts.job_dir:
            flags.append(f"--chdir={self.opts.job_dir}")
        return flags + list(self.opts.sbatch_args)

    def argv(self, script_path: str, hold: bool = True, ids: Optional[Sequence[str]] = None,
             app_id: Optional[str] = None) -> List[str]:
        """The exact sbatch command line (run without a shell); ``ids``: the app's jobs submitted so far.

        Jobs after the first learn the app id (``app_id``, else the first job's id) through the environment.
        """
        head = ["sbatch", "--parsable"] + (["--hold"] if hold else [])
        if ids:
            head.append(f"--export=ALL,{envvars.APP_ID.name}={app_id or ids[0]}")
        return head + self.sbatch_flags(ids) + [script_path]

    def _header(self) -> List[str]:
        stem = "%A_%a" if self.array else "%j"
        p = self.policy
        lines = [
            "#!/bin/bash",
            f"# Generated by torchx-forge {__version__} (torchx {torchx.__version__}) for app {self.app_name!r}",
            f"# retries: {p.max_retries} on {','.join(s.value for s in p.retry_on)}" if p.enabled else "# retries: off",
            "#SBATCH --requeue" if p.enabled else "#SBATCH --no-requeue",
            "#SBATCH --open-mode=append",
            f'#SBATCH --output="{layout.batch_log(srun_path(self.opts.logs), self.app_name, stem)}"',
        ]
        if p.enabled and p.warning:
            lines.append(f"#SBATCH {p.warning.sbatch_flag}")
        if self.array:
            lines.append(f"#SBATCH {self.array.flag}")
        for i, comp in enumerate(self.components):
            if i:
                lines.append("#SBATCH hetjob")
            lines += comp.sbatch_lines(self.opts)
        return lines

    def _prologue(self, mask: bool) -> List[str]:
        o = self.opts
        lines = [
            "set -u",
            "export PYTHONUNBUFFERED=1 SLURM_UNBUFFEREDIO=1",
            # the first job's id; CLUSTER:ID for an app sent to a named cluster (see layout.app_id_of)
            f'export {_APP_ID}="${{{_APP_ID}:-' + ("${SLURM_CLUSTER_NAME}:" if o.cluster else "")
            + '${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}"',
            f"export {envvars.STATE_DIR.name}={shlex.quote(o.state_dir)}",
            f"export {envvars.APP_NAME.name}={shlex.quote(self.app_name)}",
            f"forge_python={shlex.quote(o.python)}",
            *launch_lines(o),
        ]
        if o.job_dir:
            lines.append(f"export {envvars.JOB_DIR.name}={shlex.quote(os.path.abspath(o.job_dir))}")
        if o.checkpoint_dir:
            lines.append(f"export {envvars.CHECKPOINT_TEMPLATE.name}={shlex.quote(o.checkpoint_dir)}")
        p = self.policy
        if p.enabled:
            lines.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in p.to_env().items()))
            if p.warning:
                lines.append(f"export {_WARN_FILE}={shlex.quote(layout.warn_file(o.logs))}" + '"$SLURM_JOB_ID"')
                # a warning of an earlier attempt of this job (a requeue keeps the id) must not warn this one
                lines.append(f'rm -f "${_WARN_FILE}"')
        for key, value in self.extra_env:
            shown = MASK if mask and is_secret(key) else value
            lines.append(f"export {key}={shlex.quote(shown)}")
        if self.array:
            lines.append(f'export {_REPLICA_ID}=$(( SLURM_ARRAY_TASK_ID + {self.array.offset} ))')
        lines.append(f"export {envvars.LOG_DIR.name}={shlex.quote(o.logs)}")
        logs = shlex.quote(o.logs)
        lines.append(f"[ -d {logs} ] || mkdir -p {logs}")  # a test, not a process, once the dir exists
        return lines

    def _task_log(self, comp: Component, ext: str, for_srun: bool) -> str:
        """A task's log file in shell words: for srun's ``--output``/``--error`` (``%`` escaped), or for the shell."""
        escape = srun_path if for_srun else str
        if self.array:
            stem, replica = '"$SLURM_ARRAY_JOB_ID"_"$SLURM_ARRAY_TASK_ID"', f'"${_REPLICA_ID}"'
        else:
            stem, replica = '"$SLURM_JOB_ID"', str(comp.command.replica)
        prefix = shlex.quote(escape(layout.log_prefix(self.opts.logs, self.app_name))) + stem
        return f"{prefix}-{shell_word(escape(comp.command.role))}-{replica}{ext}"

    def _python_check(self) -> List[str]:
        """Runopt python must be an executable on the node: otherwise every task's error log (and the
        batch log) says so, where srun alone would say only that execve failed (exit code 2)."""
        if any(c.srun_container for c in self.components):
            return []  # pyxis: the interpreter is the container image's
        errors = " ".join(self._task_log(c, ".err", for_srun=False) for c in self.components)
        message = ('"torchx-forge: runopt python: $forge_python is not an executable on $(hostname) (nor a name on its PATH);'
                   ' set -cfg python=PATH to a Python that has torchx_forge installed on the compute nodes"')
        return [
            'if ! type -P "$forge_python" >/dev/null; then',
            f"    echo {message} | tee -a {errors} >&2",
            "    exit 127",
            "fi",
        ]

    def _srun_group(self, comp: Component, mask: bool, het_group: Optional[int]) -> List[str]:
        cmd = comp.command
        words = [
            f"--output={self._task_log(comp, '.out', for_srun=True)}",
            f"--error={self._task_log(comp, '.err', for_srun=True)}",
            "--open-mode=append",
            "--kill-on-bad-exit=1",
            "--wait=60",
        ]
        if cmd.workdir:
            words.append(f"--chdir={shlex.quote(cmd.workdir)}")
        if comp.nodes > 1:
            words.append("--label")
        words += [shlex.quote(w) for w in comp.srun_container]
        return words + cmd.launcher_words("forge_python", mask, het_group)

    def materialize(self, mask: bool = False) -> str:
        """The complete batch script; ``mask`` hides secret-looking env values (for display)."""
        het = len(self.components) > 1
        groups = [" ".join(self._srun_group(c, mask, i if het else None)) for i, c in enumerate(self.components)]
        srun = "srun " + " \\\n  : ".join(groups)
        body = self._retry_body(srun) if self.policy.enabled else [
            srun,
            "rc=$?",
            'echo "torchx-forge: tasks exited with code $rc"',
            "exit $rc",
        ]
        body[-1:-1] = self.epilogue  # before the exit: not run when the job is requeued
        return "\n".join(self._header() + [""] + self._prologue(mask) + self._python_check() + [""] + body) + "\n"

    def _decide_args(self) -> str:
        if self.array:
            return f"--task {shell_word(self.components[0].command.role)}:\"${_REPLICA_ID}\""
        return " ".join(f"--task {shell_word(c.command.role + ':' + str(c.command.replica))}" for c in self.components)

    def _retry_body(self, srun: str) -> List[str]:
        """srun in the background so the warning and SIGTERM can be trapped; requeue when the policy says so."""
        w = self.policy.warning
        lines = ["forge_warned=0 forge_stopped=0"]
        if w:
            lines += [
                "forge_warn() {",
                '    # the tasks have ended: nothing to warn (a flag left now would warn the next attempt)',
                '    [ -n "${forge_srun:-}" ] && ! kill -0 "$forge_srun" 2>/dev/null && return 0',
                "    forge_warned=1",
                f'    echo "torchx-forge: $(date +%T) SIG{w.name}: telling the tasks to save and exit"',
                f'    mkdir -p "${{{_WARN_FILE}%/*}}" && : > "${_WARN_FILE}"',
                "}",
                f"trap forge_warn {w.name}",
            ]
        lines += [
            'forge_stop() { forge_stopped=1; echo "torchx-forge: $(date +%T) SIGTERM: the job is being stopped"; }',
            "trap forge_stop TERM",
            srun + " &",
            "forge_srun=$!",
            'while kill -0 "$forge_srun" 2>/dev/null; do wait "$forge_srun"; done',
            'wait "$forge_srun"; rc=$?',
            'echo "torchx-forge: tasks exited with code $rc"',
        ]
        if w:
            lines.append(f'rm -f "${_WARN_FILE}"')
        lines += [
            '# requeue (same job id) when tasks were warned, or failed with FAILED in retry_on;',
            '# preemption is requeued by Slurm, a TIMEOUT or NODE_FAIL by the companion job',
            'if [ "$forge_stopped" = 0 ] && { [ "$rc" -ne 0 ] || [ "$forge_warned" = 1 ]; }; then',
            f'    if "$forge_python" -m {DECIDE} --exit-code "$rc" {self._decide_args()}; then',
            '        forge_self=$SLURM_JOB_ID',
            '        [ -n "${SLURM_ARRAY_JOB_ID:-}" ] && forge_self=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}',
            '        scontrol requeue "$forge_self" && exit 0',
            "    fi",
            "fi",
            "exit $rc",
        ]
        return lines


@dataclass(frozen=True)
class ForgeBatchRequest:
    """All sbatch calls of one app, submitted held and released together."""

    app_name: str
    jobs: Tuple[JobRequest, ...]
    opts: ForgeOpts
    roles: Tuple[Role, ...] = field(default_factory=tuple)
    tables: Tuple[str, ...] = ()
    stages: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()  # pipelines: (step, its role names) in order
    #: the effective max_retries of each role (what describe reports)
    role_retries: Tuple[Tuple[str, int], ...] = ()
    #: the AppDef it was built from, unmasked (the plan is built again if the cluster's limits differ)
    app: Optional[AppDef] = field(default=None, compare=False, repr=False)
    #: the limits it was cut with (MaxArraySize, submit limits)
    limits: Optional[ClusterLimits] = field(default=None, compare=False, repr=False)

    @property
    def waves(self) -> int:
        return max((j.wave for j in self.jobs), default=0) + 1

    def on_cluster(self, cluster: str) -> ForgeBatchRequest:
        """This request with every job sent to ``cluster`` (the one Slurm chose from a list)."""
        def pin(opts: ForgeOpts) -> ForgeOpts:
            return replace(opts, cluster=cluster) if opts.cluster else opts

        return replace(self, opts=pin(self.opts), jobs=tuple(replace(j, opts=pin(j.opts)) for j in self.jobs))

    @property
    def one_job(self) -> bool:
        """The whole app is one job with nothing around it (no companion, no later wave, one cluster):
        submitted with one sbatch, not held (:mod:`torchx_forge.slurm.submit`)."""
        jobs = self.jobs
        return (len(jobs) == 1 and self.waves == 1 and not jobs[0].policy.enabled
                and jobs[0].kind in (JobKind.ARRAY, JobKind.HET) and "," not in (self.opts.cluster or ""))

    @property
    def needs_gpu_flag(self) -> bool:
        """Some job requests GPUs with ``gpu_flag=auto``: the form depends on the cluster's Slurm version."""
        return any(j.opts.gpu_flag == "auto" and any(c.gpus > 0 for c in j.components) for j in self.jobs)

    def for_slurm(self, version: Optional[str]) -> ForgeBatchRequest:
        """This request with ``gpu_flag=auto`` resolved for a cluster running Slurm ``version`` (None: unknown)."""
        def resolve(opts: ForgeOpts) -> ForgeOpts:
            return replace(opts, gpu_flag=gpu_flag_for(version)) if opts.gpu_flag == "auto" else opts

        return replace(self, opts=resolve(self.opts), jobs=tuple(replace(j, opts=resolve(j.opts)) for j in self.jobs))

    def meta(self) -> AppMeta:
        """What the app record keeps of the request beyond its jobs."""
        return AppMeta(list(self.tables), [(s, list(r)) for s, r in self.stages])

    def __repr__(self) -> str:
        out = []
        waves = self.waves
        for job in self.jobs:
            argv = job.argv("$SBATCH_SCRIPT", hold=not self.one_job)
            wave = ""
            if waves > 1:
                wave = f", wave {job.wave + 1} of {waves}" + (
                    "" if job.wave == 0 else ": submitted by a Slurm job once the wave before has ended")
            out.append(
                f"# job {job.index + 1} of {len(self.jobs)} ({job.kind.value}{wave})\n"
                f"{' '.join(shlex.quote(a) if a != '$SBATCH_SCRIPT' else a for a in argv)}\n\n"
                "#----------------\n# SBATCH_SCRIPT\n#----------------\n"
                f"{job.materialize(mask=True)}"
            )
        for table in self.tables:
            out.append(runs_preview(table))
        return "\n".join(out)
