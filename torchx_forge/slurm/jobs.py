"""Which Slurm jobs an AppDef becomes (pure): the jobs, their components and dependencies.

Ordinary roles become one heterogeneous job, a component per replica (TorchX's layout). Roles
built by forge components (:class:`~torchx_forge.appdef.meta.ForgeMeta` with ``array``) become
job arrays, split at ``max_array_size``, with the Slurm options of their shape. Pipeline roles
(``ForgeMeta.stage``) get jobs per step, in step order, wired with Slurm dependencies. The retry
policy of each job comes from the runopts, then what the roles carry, then the defaults.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from torchx.specs import AppDef, Role, macros

from torchx_forge.appdef.meta import ForgeMeta, tables_of
from torchx_forge.core import envvars
from torchx_forge.core.layout import safe_name
from torchx_forge.core.policy import PolicyError, RetryPolicy, check_lead_time, retry_policy
from torchx_forge.core.record import replace
from torchx_forge.core.slurm_time import parse_slurm_time
from torchx_forge.core.space import check_size
from torchx_forge.core.states import DepKind
from torchx_forge.errors import ConfigError
from torchx_forge.slurm import search_end
from torchx_forge.slurm.limits import ClusterLimits
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.slurm.request import RANK0_ENV, ArraySpec, ForgeBatchRequest, JobRequest
from torchx_forge.slurm.search import SEARCH_META
from torchx_forge.slurm.srun import Component, TaskCommand
from torchx_forge.slurm.waves import WAVE_OVERHEAD, cost, pack

#: Slurm's MAX_HET_JOB_COMPONENTS (slurm.h): sbatch refuses a heterogeneous job of more components
MAX_HET_COMPONENTS = 128


def role_env(role: Role) -> Tuple[Tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in role.env.items())


def check_env_names(role: Role) -> None:
    for key in role.env:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(key)):
            raise ConfigError(f"role {role.name!r} env", f"{key!r} is not a valid environment variable name")


def per_job_rdzv_port(role: Role) -> Tuple[str, ...]:
    """Args with the c10d rendezvous port (``port_map["c10d"]``, e.g. dist.ddp's 29500) after the
    rank-0 host replaced by ``${FORGE_RDZV_PORT}``, a port the launcher derives from the job id,
    so concurrent runs on shared nodes never collide."""
    port = role.port_map.get("c10d") if role.port_map else None
    if not port:
        return tuple(role.args)
    pattern = re.compile(rf"(\$\{{?{RANK0_ENV}[^}}\s]*\}}?):{int(port)}\b")
    return tuple(pattern.sub(lambda m: m.group(1) + f":${{{envvars.RDZV_PORT.name}:-{int(port)}}}", a) for a in role.args)


def component_for(role: Role, replica: Optional[int], opts: ForgeOpts, job_name: str, nodes: int) -> Component:
    """The srun/#SBATCH group for one replica of ``role`` (macros already applied)."""
    check_env_names(role)
    res = role.resource
    workdir = role.image if role.image.startswith("/") and opts.container_runtime == "none" else None
    wrap, srun_flags = container_words(opts, role, int(res.gpu) > 0)
    return Component(
        job_name=safe_name(job_name),
        nodes=nodes,
        cpus=max(int(res.cpu), 0),
        mem_mb=max(int(res.memMB), 0),
        gpus=max(int(res.gpu), 0),
        command=TaskCommand(
            role=role.name,
            replica=replica,
            entrypoint=role.entrypoint,
            args=per_job_rdzv_port(role),
            env=role_env(role),
            workdir=workdir,
            nodes=nodes,
            container=wrap,
        ),
        srun_container=srun_flags,
    )


def container_words(opts: ForgeOpts, role: Role, gpus: bool) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(words before the program, srun flags) for the container runtime runopt.

    What a role's image means on Slurm: with a container runtime, the container image
    (a .sif file, docker://..., or for pyxis an enroot image such as nvcr.io#nvidia/pytorch:24.01-py3);
    without one, an absolute directory is the working directory and anything else (such as
    TorchX's default docker image name) is ignored: the job runs in the submitting environment.
    """
    runtime = opts.container_runtime
    if runtime == "none":
        return (), ()
    image = opts.container_image or role.image
    if not image:
        raise ConfigError(
            "runopt 'container_image'", f"container_runtime={runtime} needs an image: set container_image or the role's image"
        )
    mounts = [m for m in re.split(r"[,;]", opts.container_mounts or "") if m]
    if runtime == "pyxis":
        flags = [f"--container-image={image}"]
        if mounts:
            flags.append(f"--container-mounts={','.join(mounts)}")
        if role.image.startswith("/") and opts.container_image:
            flags.append(f"--container-workdir={role.image}")
        return (), tuple(flags)
    if "://" not in image and not image.startswith(("/", ".")) and not image.endswith((".sif", ".simg")):
        image = f"docker://{image}"
    words = [runtime, "exec"] + (["--nv"] if gpus else [])
    if mounts:
        words += ["--bind", ",".join(mounts)]
    return tuple(words + [image]), ()


def job_policy(roles: Sequence[Role], opts: ForgeOpts, where: str) -> RetryPolicy:
    """The retry policy of one job: runopts first, then what the roles carry (TorchX's
    ``max_retries``; an experiment file's ``retry:`` section), then the defaults."""
    metas = [ForgeMeta.from_role(r) for r in roles]
    specs = [m.retry for m in metas]

    def role_value(key: str) -> object:
        return next((getattr(s, key) for s in reversed(specs) if getattr(s, key) is not None), None)

    asked = min(m.max_retries(r) for m, r in zip(metas, roles, strict=True))
    max_retries = opts.max_retries if opts.max_retries is not None else asked
    prefix = "runopt" if opts.signal is not None else f"{where} retry"
    try:
        policy = retry_policy(
            max_retries,
            opts.retry_on if opts.retry_on is not None else role_value("retry_on"),  # type: ignore[arg-type]
            opts.signal if opts.signal is not None else role_value("signal"),  # type: ignore[arg-type]
            opts.grace if opts.grace is not None else role_value("grace"),  # type: ignore[arg-type]
        )
    except PolicyError as e:
        raise ConfigError(f"{prefix} {e.key!r}", str(e)) from None
    if policy.enabled and opts.time:
        try:
            check_lead_time(policy.warning, parse_slurm_time(opts.time), opts.time)
        except PolicyError as e:
            raise ConfigError("runopt 'signal'", str(e)) from None
    return policy


def het_job(app: AppDef, roles: Sequence[Role], opts: ForgeOpts, index: int) -> JobRequest:
    """One heterogeneous job: a component per replica of each role (TorchX's layout)."""
    replicas = sum(r.num_replicas for r in roles)
    if replicas > MAX_HET_COMPONENTS:  # counted before a component is built
        raise ConfigError(
            f"app {app.name!r}", f"its role(s) {', '.join(repr(r.name) for r in roles)} have {replicas:,} replicas:"
            f" they run as one heterogeneous job, a component per replica, and Slurm takes at most"
            f" {MAX_HET_COMPONENTS}; use fewer replicas (a multi-node run is one replica per node), or a forge"
            " sweep (forge.grid, forge.sweep: job arrays) for many independent runs",
        )
    comps: List[Component] = []
    for role in roles:
        for replica in range(role.num_replicas):
            values = macros.Values(
                img_root=role.image, app_id=macros.app_id, replica_id=str(replica), rank0_env=RANK0_ENV
            )
            comps.append(component_for(values.apply(role), replica, opts, f"{role.name}-{replica}", opts.nodes or 1))
    policy = job_policy(roles, opts, f"app {app.name!r}")
    return JobRequest(app_name=app.name, index=index, components=tuple(comps), opts=opts, policy=policy)


def array_jobs(app: AppDef, role: Role, opts: ForgeOpts, first_index: int, max_size: int) -> List[JobRequest]:
    """A sweep role as job arrays of at most ``max_size`` tasks (replica = offset + task id)."""
    check_size(role.num_replicas, f"app {app.name!r} role {role.name!r}", "the role", "replicas")
    meta = ForgeMeta.from_role(role)
    shape = opts.overlay(dict(meta.sbatch))
    nodes = meta.nodes or opts.nodes or 1
    values = macros.Values(img_root=role.image, app_id=macros.app_id, replica_id=macros.replica_id, rank0_env=RANK0_ENV)
    comp = component_for(values.apply(role), None, shape, role.name, nodes)
    policy = job_policy([role], shape, f"role {role.name!r}")
    # a search's trials: the decision job that takes a trial's end is submitted from its script
    epilogue = tuple(search_end.epilogue()) if (role.metadata or {}).get(SEARCH_META) else ()
    jobs: List[JobRequest] = []
    max_size = shape.max_array_size or max_size  # an experiment shape's own limit wins
    for offset in range(0, role.num_replicas, max_size):
        size = min(max_size, role.num_replicas - offset)
        spec = ArraySpec(size=size, offset=offset, throttle=shape.array_parallelism)
        jobs.append(JobRequest(app.name, first_index + len(jobs), (comp,), shape, array=spec, policy=policy,
                               epilogue=epilogue))
    return jobs


def _wire_dependencies(jobs: List[JobRequest], stage_jobs: Dict[str, List[int]], role_jobs: Dict[str, List[int]],
                       stage_roles: Dict[str, List[str]], roles: Sequence[Role]) -> List[JobRequest]:
    """Pipeline steps: afterok/afterany/afternotok on every job of the steps a job waits for, or
    aftercorr on the matching array (same role position, same split) for per-run steps."""
    out = []
    role_of_job = {j: r for r, js in role_jobs.items() for j in js}
    deps_by_role = {r.name: ForgeMeta.from_role(r).after for r in roles}
    for i, job in enumerate(jobs):
        role = role_of_job.get(i)
        deps = deps_by_role.get(role, ()) if role else ()
        if not deps or role is None:
            out.append(job)
            continue
        after: List[Tuple[DepKind, Tuple[int, ...]]] = []
        external: List[Tuple[DepKind, str]] = []
        for d in deps:
            if d.job:
                external.append((d.kind, d.job))
            elif d.per_run:
                k = stage_roles[job.stage].index(role)
                part = role_jobs[role].index(i)
                up_role = stage_roles[d.stage][k]
                kind = DepKind.AFTERCORR if d.kind is DepKind.AFTEROK else d.kind
                after.append((kind, (role_jobs[up_role][part],)))
            else:
                after.append((d.kind, tuple(stage_jobs[d.stage])))
        out.append(replace(job, after=tuple(after), after_external=tuple(external)))
    return out


#: share of the controller's MaxJobCount one app may fill (the rest is left to everybody else)
JOB_TABLE_SHARE = 0.9


def submit_budget(jobs: Sequence[JobRequest], limits: ClusterLimits) -> Optional[int]:
    """Job records a wave may hold: the submit limit of the QOS the jobs run under (the smallest,
    if shapes differ) and a share of the cluster's MaxJobCount; None when nothing limits it."""
    found = [limits.max_submit(j.opts.get("qos")) for j in jobs]
    if limits.max_job_count:
        found.append(int(limits.max_job_count * JOB_TABLE_SHARE))
    known = [v for v in found if v is not None]
    return min(known) if known else None


def build_request(app: AppDef, opts: ForgeOpts, limits: Optional[ClusterLimits] = None,
                  in_use: int = 0) -> ForgeBatchRequest:
    """The pure plan of an AppDef: ordinary roles in one heterogeneous job, each sweep role as arrays.

    In a pipeline (roles tagged with a ``stage``) every step gets its own jobs, submitted
    in order with Slurm dependencies on the jobs of the steps it waits for. ``limits`` (the
    cluster's, with the runopts' on top) cut arrays at MaxArraySize and, when the jobs need more
    job records than the user may have queued (``in_use`` of them taken already), into waves.
    """
    limits = (limits or ClusterLimits()).override(opts.max_array_size, opts.max_job_count, opts.max_submit_jobs)
    if not app.roles:
        raise ConfigError(f"app {app.name!r}", "has no roles; nothing to run")
    metas = {r.name: ForgeMeta.from_role(r) for r in app.roles}
    stages: List[str] = list(dict.fromkeys(metas[r.name].stage for r in app.roles))
    pipeline = stages != [""]
    jobs: List[JobRequest] = []
    stage_jobs: Dict[str, List[int]] = {}
    role_jobs: Dict[str, List[int]] = {}
    stage_roles: Dict[str, List[str]] = {}
    for stage in stages:
        roles = [r for r in app.roles if metas[r.name].stage == stage]
        stage_roles[stage] = [r.name for r in roles]
        first = len(jobs)
        plain = [r for r in roles if not metas[r.name].array]
        if plain:
            jobs.append(replace(het_job(app, plain, opts, len(jobs)), stage=stage, kill_invalid_dep=pipeline))
            for r in plain:
                role_jobs[r.name] = [len(jobs) - 1]
        for role in roles:
            if metas[role.name].array:
                new = array_jobs(app, role, opts, len(jobs), limits.array_size)
                role_jobs[role.name] = list(range(len(jobs), len(jobs) + len(new)))
                jobs.extend(replace(j, stage=stage, kill_invalid_dep=pipeline) for j in new)
        stage_jobs[stage] = list(range(first, len(jobs)))
    if pipeline:
        jobs = _wire_dependencies(jobs, stage_jobs, role_jobs, stage_roles, app.roles)
    retries = tuple((name, jobs[idx[0]].policy.max_retries) for name, idx in role_jobs.items())
    clusters = sorted({j.opts.cluster or "" for j in jobs})
    if len(clusters) > 1:
        raise ConfigError(
            f"app {app.name!r}", f"its jobs ask for different clusters ({', '.join(c or '(local)' for c in clusters)}):"
            " an app (a sweep, a pipeline) runs on one cluster, since Slurm dependencies and retries do not cross"
            " clusters outside a federation; submit one app per cluster, or give several clusters to the whole app"
            " (-cfg cluster=a,b) and let Slurm choose one",
        )
    jobs = _in_waves(app, jobs, limits, in_use, pipeline)
    return ForgeBatchRequest(
        app_name=app.name, jobs=tuple(jobs), opts=opts, roles=tuple(app.roles), tables=tables_of(app.roles),
        stages=tuple((s, tuple(stage_roles[s])) for s in stages) if pipeline else (), role_retries=retries,
        app=app, limits=limits,
    )


def _in_waves(app: AppDef, jobs: List[JobRequest], limits: ClusterLimits, in_use: int, pipeline: bool) -> List[JobRequest]:
    budget = submit_budget(jobs, limits)
    if budget is None:
        return jobs
    needed = sum(cost(j) for j in jobs) + WAVE_OVERHEAD
    if pipeline and needed + in_use > budget:
        raise ConfigError(
            f"app {app.name!r}", f"the pipeline needs {needed:,} Slurm job records (every array task counts) but you"
            f" may have {budget:,} queued ({in_use:,} are taken): only sweeps are submitted in waves. Run fewer runs"
            " per step (sweep.max_runs), or run the steps as separate apps",
        )
    return pack(jobs, budget, budget - in_use, limits.array_size)
