"""Studies as data: a YAML spec names a protocol, seeds and cells (a method, fixed settings, a grid of settings).

    name: ablation
    protocol: toy
    seeds: [0, 1, 2]
    cells:
      - method: lfs
        settings: {icgen: false}          # fixed for this cell
        grid: {dfkd: [true, false]}        # every combination is one setting of the cell
      - method: naive
    primary:                               # optional: the comparisons declared before the runs
      against: [naive]                     # every setting against these settings (labels as in the report)
      metrics: [IA, IAD]                   # on these paired metrics; Holm-corrected together

A key whose first part is a protocol field (`sessions`, `evaluation.images_per_prompt`)
overrides the protocol, as `lfsbench run -o` does; everything else is a method setting.
`run_study` runs every (setting, seed) into its own run folder, skipping finished runs and
resuming interrupted ones, so rerunning a study only does what is missing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lfsbench.errors import LfsbenchError, load_yaml_model
from lfsbench.executors import EXECUTORS, Launch, RunJob, SlurmOptions
from lfsbench.identity import RunIdentity, resolve_identity
from lfsbench.results import RunFolder


class Cell(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str
    protocol: str | None = None  # replaces the study's protocol for this cell
    settings: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _grid_is_complete(self):
        empty = [key for key, values in self.grid.items() if not values]
        if empty:
            raise ValueError(f"grid values of {', '.join(empty)} are empty lists: such a cell has no runs")
        both = sorted(set(self.grid) & set(self.settings))
        if both:
            raise ValueError(
                f"{', '.join(both)} is both a fixed setting and a grid key: the grid would silently replace the "
                "setting; keep it in one of them"
            )
        return self


class Primary(BaseModel):
    """A study's primary comparisons, declared before its runs: every setting against each of `against` (setting
    labels as the report names them: a method, or `lfs (dfkd=False)` for a method with settings) on each of
    `metrics` (metrics with paired comparisons). `lfsbench report` Holm-corrects them together; every other
    comparison is exploratory."""

    model_config = ConfigDict(extra="forbid")
    against: list[str] = Field(min_length=1)
    metrics: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _metrics_are_paired(self):
        from lfsbench.evaluation.metrics import in_view

        paired = in_view("pairs")
        unknown = [m for m in self.metrics if m not in paired]
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)} has no paired comparison; the metrics that have one are {', '.join(paired)}"
            )
        return self


class Study(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    protocol: str = "toy"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    cells: list[Cell] = Field(min_length=1)
    output: str | None = None  # default: runs/studies/NAME
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)  # how `--executor submitit` asks for resources
    primary: Primary | None = None  # the comparisons declared before the runs (Holm); the rest are exploratory (BH)

    def primary_family(self):
        """The report's primary family (report.aggregate.PrimaryFamily) of this spec; an empty one if it has none."""
        from lfsbench.report.aggregate import PrimaryFamily

        if self.primary is None:
            return PrimaryFamily()
        return PrimaryFamily(tuple(self.primary.against), tuple(self.primary.metrics))


def load_study(path: Path) -> Study:
    """A spec file, or a name under ./reports/ (`ablation` -> reports/ablation.yaml)."""
    path = Path(path)
    if not path.is_file() and (Path("reports") / f"{path}.yaml").is_file():
        path = Path("reports") / f"{path}.yaml"
    if not path.is_file():
        raise LfsbenchError(
            f"No study spec {path}: pass a YAML file (the shipped ones are reports/*.yaml in the repository)."
        )
    from lfsbench.method import canonical_method

    study = load_yaml_model(path, Study, "Study spec", "See reports/ablation.yaml for the format.")
    for cell in study.cells:  # a method file is named relative to the spec
        cell.method = canonical_method(cell.method, path.parent)
    return study


def expand(study: Study) -> list[dict]:
    """Every run the study asks for, in spec order: {method, protocol, settings, seed} (settings typed, as the spec
    holds them)."""
    runs = []
    for cell in study.cells:
        keys = list(cell.grid)
        for values in itertools.product(*(cell.grid[k] for k in keys)) if keys else [()]:
            settings = {**cell.settings, **dict(zip(keys, values, strict=True))}
            for seed in study.seeds:
                protocol = cell.protocol or study.protocol
                runs.append({"method": cell.method, "protocol": protocol, "settings": settings, "seed": seed})
    return runs


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: its identity and its folder (the identity's default folder under the study's root)."""

    identity: RunIdentity
    output: Path

    @property
    def finished(self) -> bool:
        return RunFolder(self.output).is_finished(len(self.identity.protocol.sessions))


def study_root(study: Study) -> Path:
    return Path(study.output or Path("runs") / "studies" / study.name)


def plan(study: Study) -> list[PlannedRun]:
    """Every run of the study resolved to its identity and folder, each checked before any runs: a bad cell, two
    cells that are one run, or a folder holding another run than its cell asks for is an error naming it."""
    root = study_root(study)
    runs = expand(study)
    planned: list[PlannedRun] = []
    for i, run in enumerate(runs):
        try:
            identity = resolve_identity(run["method"], run["protocol"], run["settings"], run["seed"])
        except LfsbenchError as err:
            cell = f"{run['method']} {run['settings'] or ''} seed {run['seed']}".replace("  ", " ")
            raise LfsbenchError(f"Study {study.name!r}, run {i + 1} of {len(runs)} ({cell}): {err}") from None
        planned.append(PlannedRun(identity, identity.default_folder(root)))
        _check_same_run(study, planned[-1])
    folders: dict[Path, int] = {}
    for i, run in enumerate(planned):
        if run.output in folders:
            raise LfsbenchError(
                f"Study {study.name!r}: runs {folders[run.output] + 1} and {i + 1} of its {len(planned)} are one run "
                f"({run.output}): a cell, a grid value or a seed is listed twice. Nothing was run. Remove the "
                "repetition from the spec."
            )
        folders[run.output] = i
    return planned


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` -> (K, N): this process runs every N-th run of the study, starting at its K-th (1-based)."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise LfsbenchError(
            f"--shard {text!r}: give K/N with 1 <= K <= N, e.g. --shard 1/2 in one process and --shard 2/2 in another."
        )
    return k, n


def run_study(
    study: Study,
    console=None,
    shard: tuple[int, int] = (1, 1),
    executor: str = "local",
    *,
    workers: int | None = None,
    address: str | None = None,
    threads: int | None = None,
    track: str | None = None,
    cache: bool = True,
) -> list[Path]:
    """Run every missing run of the study (resuming partial ones) on `executor`; returns the run folders.

    `shard=(K, N)` runs only runs K, K+N, K+2N, ... (1-based, in spec order), so N processes or machines that
    share the run folder split a study between them without running anything twice; every process still checks
    every cell first and returns every run folder. `executor`: 'local' (one run after another in this process),
    'ray' (Ray tasks; `address` of a cluster, else a local one with `workers` concurrent runs), 'submitit' (a Slurm
    job array with the spec's `slurm:` options). `threads`: torch's threads per run (default: the worker's share of
    its machine's cores on ray and submitit, torch's default locally). `track`: a tracker every run also logs to.
    `cache`: the runs share the base model's work (lfsbench/cache.py)."""
    from lfsbench.tracking import check_tracker

    check_tracker(track)
    if executor not in EXECUTORS:
        raise LfsbenchError(f"--executor {executor!r} is not known: use one of {', '.join(EXECUTORS.names())}.")
    runs = plan(study)  # every cell is checked before the first one runs
    k, n = shard
    jobs, position = [], {}
    for i, run in enumerate(runs):
        if i % n != k - 1:
            continue
        if run.finished:
            if console:
                console.print(f"[{i + 1}/{len(runs)}] {run.output}: finished, skipped")
            continue
        job = RunJob(run.identity, str(run.output), threads=threads, track=track, cache=cache)
        jobs.append(job)
        position[job.output] = i + 1

    def announce(job: RunJob) -> None:
        if console:
            console.print(f"[{position[job.output]}/{len(runs)}] {job.output}")

    if jobs:
        launch = Launch(
            console or _quiet(),
            announce,
            workers=workers,
            address=address,
            threads=threads,
            slurm=study.slurm,
            log_folder=study_root(study) / "submitit",
            name=study.name,
        )
        EXECUTORS.get(executor).run(jobs, launch)
    return [run.output for run in runs]


def _quiet():
    from rich.console import Console

    return Console(quiet=True)


def _check_same_run(study: Study, run: PlannedRun) -> None:
    """A run folder of the study that already holds a run (finished or not) must hold this one: a finished run made
    with other settings (a default changed since, an edited method, other data) would otherwise be skipped and
    reported as if it were this one."""
    existing = RunFolder(run.output).identity()
    if existing is None or existing.same_run(run.identity):
        return
    differ = (
        "made before lfsbench recorded run identities"
        if existing.legacy
        else "; ".join(existing.differences(run.identity))
    )
    raise LfsbenchError(
        f"Study {study.name!r}: the run folder {run.output} holds another run than the spec asks for now ({differ}; "
        "recorded -> now). Nothing was run. Move that folder away to keep it (`lfsbench report` reads it on its "
        "own), or delete it, then run the study again to rerun it as the spec asks."
    )


def unfinished_runs(study: Study) -> list[Path]:
    """The study's run folders that have not finished every session of their protocol (other shards' work)."""
    return [run.output for run in plan(study) if not run.finished]
