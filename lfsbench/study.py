"""Studies as data: a YAML spec names a protocol, seeds and cells (a method, fixed settings, a grid of settings).

    name: ablation
    protocol: toy
    seeds: [0, 1, 2]
    cells:
      - method: lfs
        settings: {icgen: false}          # fixed for this cell
        grid: {dfkd: [true, false]}        # every combination is one setting of the cell
      - method: naive

A key whose first part is a protocol field (`sessions`, `evaluation.images_per_prompt`)
overrides the protocol, as `lfsbench run -o` does; everything else is a method setting.
`run_study` runs every (setting, seed) into its own run folder, skipping finished runs and
resuming interrupted ones, so rerunning a study only does what is missing.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lfsbench.errors import LfsbenchError, load_yaml_model
from lfsbench.executors import EXECUTORS, RunJob, SlurmOptions, run_local, run_ray, run_submitit
from lfsbench.results import RunFolder, default_run_folder


class Cell(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str
    protocol: str | None = None  # replaces the study's protocol for this cell
    settings: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)


class Study(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    protocol: str = "toy"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    cells: list[Cell] = Field(min_length=1)
    output: str | None = None  # default: runs/studies/NAME
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)  # how `--executor submitit` asks for resources


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
    """Every run of the study: {method, protocol, settings, seed, output}."""
    root = Path(study.output or Path("runs") / "studies" / study.name)
    runs = []
    for cell in study.cells:
        keys = list(cell.grid)
        for values in itertools.product(*(cell.grid[k] for k in keys)) if keys else [()]:
            settings = {**cell.settings, **dict(zip(keys, values, strict=True))}
            protocol = cell.protocol or study.protocol
            for seed in study.seeds:
                runs.append(
                    {
                        "method": cell.method,
                        "protocol": protocol,
                        "settings": settings,
                        "seed": seed,
                        "output": default_run_folder(root, protocol, cell.method, settings, seed),
                    }
                )
    return runs


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
) -> list[Path]:
    """Run every missing run of the study (resuming partial ones) on `executor`; returns the run folders.

    `shard=(K, N)` runs only runs K, K+N, K+2N, ... (1-based, in spec order), so N processes or machines that
    share the run folder split a study between them without running anything twice; every process still checks
    every cell first and returns every run folder. `executor`: 'local' (one run after another in this process),
    'ray' (Ray tasks; `address` of a cluster, else a local one with `workers` concurrent runs), 'submitit' (a Slurm
    job array with the spec's `slurm:` options). `threads`: torch's threads per run (default: the worker's share of
    its machine's cores on ray and submitit, torch's default locally). `track`: a tracker every run also logs to."""
    from lfsbench.method import create_method, preset_for
    from lfsbench.protocol import load_protocol, parse_overrides
    from lfsbench.runner import RunSpec
    from lfsbench.tracking import check_tracker

    check_tracker(track)
    if executor not in EXECUTORS:
        raise LfsbenchError(f"--executor {executor!r} is not known: use one of {', '.join(EXECUTORS)}.")
    runs = expand(study)
    specs = []
    for i, run in enumerate(runs):  # every cell is checked before the first one runs
        pairs = [f"{k}={json.dumps(v)}" for k, v in run["settings"].items()]
        try:
            protocol_overrides, method_overrides = parse_overrides(pairs)
            protocol = load_protocol(run["protocol"], protocol_overrides)
            method = create_method(run["method"], method_overrides, preset_for(protocol.backbone))
        except LfsbenchError as err:
            raise LfsbenchError(f"Study {study.name!r}, run {i + 1} of {len(runs)} ({run['output']}): {err}") from None
        specs.append(RunSpec(protocol, run["method"], method_overrides, run["seed"]))
        _check_same_run(study, run["output"], specs[-1].config(method))
    k, n = shard
    jobs, position = [], {}
    for i, (run, spec) in enumerate(zip(runs, specs, strict=True)):
        if i % n != k - 1:
            continue
        if RunFolder(run["output"]).is_finished(len(spec.protocol.sessions)):
            if console:
                console.print(f"[{i + 1}/{len(runs)}] {run['output']}: finished, skipped")
            continue
        job = RunJob(
            run["method"],
            run["protocol"],
            run["settings"],
            run["seed"],
            str(run["output"]),
            threads=threads,
            track=track,
        )
        jobs.append(job)
        position[job.output] = i + 1

    def announce(job: RunJob) -> None:
        if console:
            console.print(f"[{position[job.output]}/{len(runs)}] {job.output}")

    if jobs and executor == "local":
        run_local(jobs, announce)
    elif jobs and executor == "ray":
        run_ray(jobs, console or _quiet(), address=address, workers=workers, threads=threads)
    elif jobs:
        root = Path(study.output or Path("runs") / "studies" / study.name)
        run_submitit(jobs, console or _quiet(), study.slurm, root / "submitit", study.name)
    return [run["output"] for run in runs]


def _quiet():
    from rich.console import Console

    return Console(quiet=True)


def _check_same_run(study: Study, output: Path, config: dict) -> None:
    """A run folder of the study that already holds a run (finished or not) must hold this one: a finished run made
    with other settings (a default changed since, or a protocol) would otherwise be skipped and reported as if it
    were this one."""
    existing = RunFolder(output).current_config()
    if existing is None or "references" not in existing.get("protocol", {}) or existing == config:
        return  # nothing there yet, or a run of the older format, which the runner itself refuses with its own fix
    differ = sorted(k for k in set(existing) | set(config) if existing.get(k) != config.get(k))
    if "method_config" in differ:
        old, new = existing.get("method_config", {}), config["method_config"]
        changed = [f"{k} {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        differ[differ.index("method_config")] = f"method settings ({', '.join(changed)})"
    raise LfsbenchError(
        f"Study {study.name!r}: the run folder {output} holds a run made with other settings than the spec asks for "
        f"now (differs in: {', '.join(differ)}; e.g. a default changed since it ran). Nothing was run. Move that "
        "folder away to keep it (`lfsbench report` reads it on its own), or delete it, then run the study again to "
        "rerun it with the current settings."
    )


def unfinished_runs(study: Study) -> list[Path]:
    """The study's run folders that have not finished every session of their protocol (other shards' work)."""
    from lfsbench.protocol import load_protocol, parse_overrides

    left = []
    for run in expand(study):
        pairs = [f"{k}={json.dumps(v)}" for k, v in run["settings"].items()]
        sessions = len(load_protocol(run["protocol"], parse_overrides(pairs)[0]).sessions)
        if not RunFolder(run["output"]).is_finished(sessions):
            left.append(run["output"])
    return left
