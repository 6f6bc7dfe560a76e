"""Where a study's runs execute: in this process (`local`), as Ray tasks (`ray`), or as one Slurm job array through
submitit (`submitit`). Every executor ships the same unit, `execute_run(RunJob)`, which runs or resumes one run in
its run folder, so results land in the same folders whichever executor ran them and `lfsbench report` cannot tell
the difference. A worker killed mid-run loses nothing: the run folder resumes from its last finished session
(Ray retries the task; rerunning the study resumes whatever is left).

Workers that share a machine split its cores: each sets torch's thread count to its share (measured on 2 cores:
three to four torch processes with default threads computed class images about 16x slower than one process).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lfsbench.errors import LfsbenchError, RunFolderBusy
from lfsbench.identity import RunIdentity
from lfsbench.registry import Registry

ENV_PREFIX = "LFSBENCH_"  # dataset locations (LFSBENCH_CC101, ...): passed on to Ray workers


class SlurmOptions(BaseModel):
    """A study spec's `slurm:` section: how `--executor submitit` asks Slurm for one job array over the runs."""

    model_config = ConfigDict(extra="forbid")
    cluster: Literal["slurm", "local", "debug"] = Field(
        "slurm",
        description="slurm: submit to Slurm; local: run the array as processes on this machine (a dry run, the "
        "tests); debug: run the jobs one after another in this process",
    )
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_task: int = Field(1, ge=0, description="GPUs of each run (0 for CPU-only toy studies)")
    cpus_per_task: int = Field(8, ge=1, description="cores of each run; torch uses that many threads")
    mem_gb: float = Field(32, gt=0)
    time_min: int = Field(720, ge=1, description="the time limit of each run, minutes")
    array_parallelism: int | None = Field(None, ge=1, description="most runs at once (Slurm's %N)")
    additional: dict[str, str] = Field(
        default_factory=dict, description="any other sbatch option, e.g. {constraint: a100, exclude: node07}"
    )


@dataclass(frozen=True)
class RunJob:
    """Everything a worker needs to run one run of a study (picklable: it travels to Ray and Slurm workers)."""

    identity: RunIdentity  # what to run (lfsbench/identity.py): the worker checks its fingerprints before it starts
    output: str
    cwd: str = field(default_factory=os.getcwd)  # relative protocol files and run folders are relative to this
    threads: int | None = None  # torch's thread count in the worker (None: torch's default)
    track: str | None = None  # a tracker each session's figures also go to (lfsbench/tracking.py)
    cache: bool = True  # share the base model's work with the other runs (lfsbench/cache.py)


def execute_run(job: RunJob) -> str:
    """Run (or resume) one run in this process; returns its run folder. The unit every executor runs."""
    import torch

    from lfsbench.runner import Runner

    if job.cwd and Path(job.cwd).is_dir():
        os.chdir(job.cwd)
    if job.threads:
        torch.set_num_threads(job.threads)
    Runner(job.identity, Path(job.output), track=job.track, cache=job.cache).run()
    return job.output


def run_local(jobs: list[RunJob], announce: Callable[[RunJob], None]) -> None:
    """One run after another in this process; a run that another process is writing is left to it."""
    busy: list[tuple[RunJob, str]] = []
    for job in jobs:
        announce(job)
        try:
            execute_run(job)
        except RunFolderBusy as err:
            busy.append((job, str(err)))
    if busy:
        raise _failures_error([], busy, len(jobs), "this machine")


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise LfsbenchError(
            f"--executor {module} needs the {module} package, which the core "
            f"install leaves out. Install it with: pip install 'lfsbench[{extra}]' (or pip install {module})."
        ) from None


def _failures_error(
    failed: list[tuple[RunJob, str]], busy: list[tuple[RunJob, str]], total: int, executor: str
) -> LfsbenchError:
    """One message for the runs that failed and those left to another process that is writing their folders."""
    parts = []
    if failed:
        lines = "; ".join(f"{job.output}: {message}" for job, message in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        parts.append(
            f"{len(failed)} of {total} runs failed on {executor}: {lines}{more}. Every failed run keeps its finished "
            "sessions: fix the cause and run the study again, which resumes only what is missing."
        )
    if busy:
        folders = ", ".join(str(job.output) for job, _ in busy[:5]) + (" and more" if len(busy) > 5 else "")
        parts.append(
            f"{len(busy)} of {total} runs are being run by another process right now (their folders are locked: "
            f"{folders}), so they were left to it. Run the study again once they finish to report every run."
        )
    return LfsbenchError(" ".join(parts) + " The other runs are finished and kept.")


def ray_plan(resources: dict, workers: int | None, threads: int | None) -> tuple[float, float, int]:
    """(CPUs, GPUs, torch threads) of each Ray task: one GPU each where the cluster has GPUs (its CPUs shared per
    GPU), else the cluster's CPUs split over `workers` concurrent runs (default: one run per 2 CPUs)."""
    cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    if gpus >= 1:
        per_task = max(1.0, float(int(cpus // gpus)))
        return per_task, 1.0, threads or int(per_task)
    workers = workers or max(1, int(cpus // 2))
    per_task = max(1.0, float(int(cpus // workers)))
    return per_task, 0.0, threads or int(per_task)


def run_ray(
    jobs: list[RunJob],
    console,
    *,
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    retries: int = 2,
) -> None:
    """Each run a Ray task on an existing cluster (`address`, e.g. 'auto' or 'ray://head:10001') or on a local one
    started here with this machine's cores. A task whose worker dies is retried `retries` times; the retry resumes
    the run from its last finished session."""
    ray = _require("ray", "ray")
    from lfsbench.progress import progress_bar

    started_here = not ray.is_initialized()
    if started_here:
        # Ray starts its workers at nice 15 (its own processes stay responsive); runs that share a machine with any
        # other work then get a few percent of a core (measured here beside two nice-0 runs: 20x slower).
        os.environ.setdefault("RAY_worker_niceness", "0")
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": env} if env else None,
        )
    try:
        cpus, gpus, task_threads = ray_plan(ray.cluster_resources(), workers, threads)
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=False)(execute_run)
        pending = {task.remote(_with_threads(job, task_threads)): job for job in jobs}
        console.print(
            f"{len(jobs)} runs as Ray tasks ({cpus:g} CPUs{f', {gpus:g} GPU' if gpus else ''} and {task_threads} "
            f"torch threads each) on {'the cluster at ' + address if address else 'a local Ray cluster'}"
        )
        failed: list[tuple[RunJob, str]] = []
        busy: list[tuple[RunJob, str]] = []
        with progress_bar() as progress:
            bar = progress.add_task("runs finished (ray)", total=len(jobs))
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                try:
                    ray.get(done[0])
                except Exception as err:  # noqa: BLE001 - a failed run is reported with the others, after them
                    cause = getattr(err, "cause", None) or err
                    (busy if isinstance(cause, RunFolderBusy) else failed).append((job, _cause(err)))
                progress.update(bar, advance=1)
        if failed or busy:
            raise _failures_error(failed, busy, len(jobs), "Ray")
    finally:
        if started_here:
            ray.shutdown()


def _cause(err: Exception) -> str:
    """The message of the exception a worker raised (Ray wraps it in a RayTaskError), in one line."""
    cause = getattr(err, "cause", None) or err
    text = " ".join(str(cause).split())
    return text if isinstance(cause, LfsbenchError) else f"{type(cause).__name__}: {text[:300]}"


def _raised_in(report: str) -> tuple[str, str]:
    """The exception of the traceback submitit reports for a failed job: (its class name, the message to show: an
    lfsbench error's own text, else the whole exception line)."""
    raised = [line for line in report.splitlines() if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit|Busy)\b", line)]
    if not raised:
        return "", " ".join(report.split())[:300]
    kind, _, text = raised[-1].partition(": ")
    name = kind.rpartition(".")[2]
    return name, text if name in (LfsbenchError.__name__, RunFolderBusy.__name__) else raised[-1]


def _with_threads(job: RunJob, threads: int | None) -> RunJob:
    from dataclasses import replace

    return replace(job, threads=job.threads or threads)


def submitit_threads(options: SlurmOptions, runs: int) -> int:
    """Torch threads of each run: its `cpus_per_task` on Slurm; on this machine (cluster local or debug), where the
    array's processes share its cores, at most its share of them (8 threads in each of two processes on 2 cores ran
    3x slower than one thread each)."""
    if options.cluster == "slurm":
        return options.cpus_per_task
    at_once = 1 if options.cluster == "debug" else min(runs, options.array_parallelism or runs)
    return min(options.cpus_per_task, max(1, (os.cpu_count() or 1) // max(1, at_once)))


def run_submitit(jobs: list[RunJob], console, options: SlurmOptions, log_folder: Path, name: str) -> None:
    """One Slurm job array over the runs (submitit), waiting for them; each run gets `options`' resources.

    Stopping this command does not cancel the array: its jobs go on, and running the study again afterwards
    skips what they finished (a job started twice on one run folder is refused by the folder's lock)."""
    submitit = _require("submitit", "slurm")
    from lfsbench.progress import progress_bar

    executor = submitit.AutoExecutor(folder=log_folder, cluster=options.cluster)
    slurm = {
        "slurm_partition": options.partition,
        "slurm_account": options.account,
        "slurm_qos": options.qos,
        "slurm_array_parallelism": options.array_parallelism,
        "slurm_additional_parameters": options.additional or None,
    }
    executor.update_parameters(
        name=f"lfsbench-{name}",
        timeout_min=options.time_min,
        cpus_per_task=options.cpus_per_task,
        gpus_per_node=options.gpus_per_task,
        mem_gb=options.mem_gb,
        **slurm,
    )
    threads = submitit_threads(options, len(jobs))
    submitted = executor.map_array(execute_run, [_with_threads(job, threads) for job in jobs])
    by_id = {j.job_id: job for j, job in zip(submitted, jobs, strict=True)}
    console.print(
        f"{len(jobs)} runs submitted through submitit ({options.cluster}) as job array "
        f"{submitted[0].job_id.split('_')[0]}; logs in [bold]{log_folder}[/]"
    )
    failed: list[tuple[RunJob, str]] = []
    busy: list[tuple[RunJob, str]] = []
    with progress_bar() as progress:
        bar = progress.add_task(f"runs finished ({options.cluster})", total=len(jobs))
        for finished in submitit.helpers.as_completed(submitted, poll_frequency=2):
            try:
                finished.result()
            except Exception as err:  # noqa: BLE001 - reported with the others, after them
                kind, message = _raised_in(str(err))
                (busy if kind == RunFolderBusy.__name__ else failed).append((by_id[finished.job_id], message))
            progress.update(bar, advance=1)
    if failed or busy:
        raise _failures_error(failed, busy, len(jobs), f"submitit ({options.cluster}); logs in {log_folder}")


# ---------------------------------------------------------------- the registry


@dataclass
class Launch:
    """What `lfsbench study` tells an executor about how to run its jobs (each executor uses what applies to it)."""

    console: object  # a rich Console for messages and progress
    announce: Callable[[RunJob], None] = lambda job: None  # called as a job starts (local)
    workers: int | None = None  # ray: runs at once on CPUs
    address: str | None = None  # ray: the cluster to join
    threads: int | None = None  # torch threads per run
    slurm: SlurmOptions = field(default_factory=SlurmOptions)  # submitit: the spec's slurm: section
    log_folder: Path = Path("submitit")  # submitit: where its logs go
    name: str = "study"  # submitit: the job array's name


@dataclass(frozen=True)
class Executor:
    """Where a study's runs execute: one registered entry each (`lfsbench ls executors`)."""

    name: str
    description: str
    extra: str | None  # the pip extra that installs what it needs (None: the core install)
    run: Callable[[list[RunJob], Launch], None]


EXECUTORS: Registry[Executor] = Registry("executor")
for _executor in (
    Executor("local", "one run after another in this process", None, lambda jobs, go: run_local(jobs, go.announce)),
    Executor(
        "ray",
        "Ray tasks on a cluster (--address) or a local one: runs split the cores, or take one GPU each; a killed "
        "worker's run is retried and resumes",
        "ray",
        lambda jobs, go: run_ray(jobs, go.console, address=go.address, workers=go.workers, threads=go.threads),
    ),
    Executor(
        "submitit",
        "one Slurm job array through submitit, with the spec's slurm: options (cluster: local runs it here)",
        "slurm",
        lambda jobs, go: run_submitit(jobs, go.console, go.slurm, go.log_folder, go.name),
    ),
):
    EXECUTORS.register(_executor.name)(_executor)
