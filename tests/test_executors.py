"""Studies on other executors (lfsbench/executors.py): a local Ray cluster of 2 CPU workers and submitit's local
executor run real (tiny) runs in other processes into the same run folders the local executor writes, with the same
numbers; a Ray worker killed mid-run is retried and the run resumes with nothing lost."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import invoke

from lfsbench.errors import LfsbenchError
from lfsbench.executors import RunJob, ray_plan
from lfsbench.results import RunFolder
from lfsbench.study import Study, plan, run_study

# the shipped toy weights (workers are other processes: the tests' tiny weights cannot be handed to them), with a
# protocol small enough that a run takes seconds
TINY = {
    "steps": 2,
    "batch_size": 2,
    "sessions": [["circle-1"], ["square-1"], ["circle-2"]],
    "evaluation.images_per_prompt": 1,
    "evaluation.steps": 2,
    "evaluation.bootstrap": 100,
    "evaluation.untouched_classes": [],  # (tests/test_untouched.py covers them)
}
QUALITY = ("TA", "IA", "IA_shots", "IAD", "class_TA", "copy_rate", "forgetting_max")


def quality(folder: Path) -> dict:
    summary = RunFolder(folder).summary()
    return {k: summary[k]["value"] if isinstance(summary[k], dict) else summary[k] for k in QUALITY}


def tiny_study(output: Path, **extra) -> Study:
    return Study.model_validate(
        {
            "name": "exec",
            "protocol": "toy",
            "output": str(output),
            "cells": [{"method": "naive", "settings": TINY, "grid": {"kv_lr": [0.001, 0.003]}}],
            **extra,
        }
    )


def test_ray_plan_splits_cores_and_gives_each_run_a_gpu():
    assert ray_plan({"CPU": 2.0}, 2, None) == (1.0, 0.0, 1)  # 2 workers on 2 cores: one thread each
    assert ray_plan({"CPU": 16.0}, None, None) == (2.0, 0.0, 2)  # default: one run per 2 cores
    assert ray_plan({"CPU": 32.0, "GPU": 4.0}, 2, None) == (8.0, 1.0, 8)  # GPUs: one run per GPU
    assert ray_plan({"CPU": 2.0}, 2, 3) == (1.0, 0.0, 3)  # --threads wins


def test_submitit_runs_on_this_machine_share_its_cores(monkeypatch):
    from lfsbench.executors import SlurmOptions, submitit_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert submitit_threads(SlurmOptions(cluster="slurm"), 4) == 8  # Slurm: the task's cpus_per_task
    assert submitit_threads(SlurmOptions(cluster="local"), 4) == 1  # 4 processes on 2 cores
    assert submitit_threads(SlurmOptions(cluster="local"), 1) == 2
    assert submitit_threads(SlurmOptions(cluster="debug"), 4) == 2  # one after another
    assert submitit_threads(SlurmOptions(cluster="local", cpus_per_task=1), 1) == 1


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    """The tiny study on the local executor, one thread (as each Ray worker below): what every executor must match."""
    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    try:
        run_study(tiny_study(out), threads=1)
    finally:
        torch.set_num_threads(threads)
    return [run.output for run in plan(tiny_study(out))]


def _kill_the_run_after_its_first_session(folder: Path, killed: list) -> None:
    """Watcher: once session 0 of the run is written, SIGKILL the process holding the run folder's lock (the Ray
    worker running it) while it works on session 1."""
    deadline = time.time() + 1200
    while time.time() < deadline:
        if (folder / "sessions" / "session_00.csv").is_file() and not (folder / "sessions" / "session_01.csv").exists():
            holder = (folder / ".lock").read_text().split()
            if holder and holder[0] == "process":
                pid = int(holder[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


def test_ray_study_matches_the_local_one_and_survives_a_killed_worker(local_runs, tmp_path):
    pytest.importorskip("ray")
    study = tiny_study(tmp_path)
    folders = [run.output for run in plan(study)]
    killed: list[int] = []
    watcher = threading.Thread(target=_kill_the_run_after_its_first_session, args=(folders[0], killed), daemon=True)
    watcher.start()
    run_study(study, executor="ray", workers=2)
    watcher.join(timeout=1)
    assert killed, "the watcher never caught the run between its sessions 0 and 1: nothing was killed"
    assert all(RunFolder(f).is_finished(3) for f in folders)
    holder = (folders[0] / ".lock").read_text().split()
    assert int(holder[1]) != killed[0]  # a new worker finished the killed run
    for ours, local in zip(folders, local_runs, strict=True):
        assert quality(ours) == pytest.approx(quality(local), abs=1e-6)
        pd.testing.assert_frame_equal(pd.read_csv(ours / "ia_matrix.csv"), pd.read_csv(local / "ia_matrix.csv"))
        assert json.loads((ours / "config.json").read_text()) == json.loads((local / "config.json").read_text())


def test_submitit_runs_the_gate_study_into_the_same_folders(tmp_path):
    """The CI gate's study through submitit's local executor (two of its cells, one with a prior, shrunk to seconds
    per run: each is a process of its own); then `lfsbench study` again finds everything finished and writes the
    report."""
    pytest.importorskip("submitit")
    gate = yaml.safe_load(Path("tests/regression/gate.yaml").read_text())
    gate["cells"] = [c for c in gate["cells"] if c["method"] in ("naive", "custom-diffusion")]  # two of its cells
    prior = {"class_images": 2, "class_image_steps": 2}
    for cell in gate["cells"]:
        cell["settings"] = {**cell.get("settings", {}), **TINY, **(prior if cell["method"] in PRIOR else {})}
        cell["settings"]["sessions"] = [["circle-1"], ["square-1"]]
        cell["settings"]["evaluation.checkpoints"] = [2]  # the gate's protocol evaluates in full after its last, 3rd
    gate.update(output=str(tmp_path / "gate"), slurm={"cluster": "local", "cpus_per_task": 1, "gpus_per_task": 0})
    spec = tmp_path / "gate.yaml"
    spec.write_text(yaml.safe_dump(gate))
    code, output = invoke("study", spec, "--executor", "submitit", "--no-report")
    assert code == 0, output
    assert "job array" in output and "submitit" in output
    folders = [run.output for run in plan(Study.model_validate(gate))]
    assert len(folders) == 2 and all(RunFolder(f).is_finished(2) for f in folders)
    assert list((tmp_path / "gate" / "submitit").glob("*_log.out"))  # submitit's logs, beside the runs
    code, output = invoke("study", spec)  # local again: nothing left to run, the report is written
    assert code == 0, output
    assert output.count("finished, skipped") == 2
    assert len(pd.read_csv(tmp_path / "gate" / "report" / "summary.csv")) == 2


PRIOR = ("custom-diffusion", "dreambooth")


def test_a_failed_run_is_named_and_the_others_finish(tmp_path):
    """A run that fails in a worker (here: the method's source changed between planning and running, so the run
    would not be the one its identity records) is named with its own error after the other runs finished; nothing is
    retried that cannot succeed."""
    pytest.importorskip("submitit")
    from lfsbench.identity import resolve_identity

    good = resolve_identity("naive", "toy", TINY, 0)
    edited = good.method.model_copy(update={"source": {"sha256": "0" * 64, "files": ["methods/naive.py"]}})
    bad = good.model_copy(update={"method": edited})
    jobs = [RunJob(good, str(tmp_path / "good")), RunJob(bad, str(tmp_path / "bad"))]
    from rich.console import Console

    from lfsbench.executors import SlurmOptions, run_submitit

    options = SlurmOptions(cluster="local", cpus_per_task=1, gpus_per_task=0)
    failed = r"1 of 2 runs failed.*bad.*method source 00000000 -> .*run the study again"
    with pytest.raises(LfsbenchError, match=failed):
        run_submitit(jobs, Console(quiet=True), options, tmp_path / "logs", "fail")
    assert RunFolder(tmp_path / "good").is_finished(3)


def test_unknown_executor_and_missing_package_are_explained(tmp_path, monkeypatch):
    import builtins

    with pytest.raises(LfsbenchError, match="--executor 'dask' is not known"):
        run_study(tiny_study(tmp_path), executor="dask")
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(__import__("sys").modules, "ray", raising=False)
    with pytest.raises(LfsbenchError, match=r"pip install 'lfsbench\[ray\]'"):
        run_study(tiny_study(tmp_path), executor="ray")


def test_a_run_another_process_is_writing_is_left_to_it(tmp_path):
    """A study that meets a run folder whose lock another process holds leaves that run to it, finishes the others,
    and says which runs to wait for (it used to stop there, as if the run had failed); submitit's reports of the
    same case are told apart from failures by the exception's class."""
    from lfsbench.executors import _raised_in

    study = tiny_study(tmp_path)
    runs = plan(study)
    first, second = (run.output for run in runs)
    RunFolder(first).claim(runs[0].identity, "cpu")  # as a run of another process claims its folder and holds its lock
    with RunFolder(first).locked():
        with pytest.raises(LfsbenchError, match=r"1 of 2 runs are being run by another process.*Run the study again"):
            run_study(study)
    assert RunFolder(second).is_finished(3) and not RunFolder(first).has_summary()
    run_study(study)  # the lock released: the run left over is run now
    assert RunFolder(first).is_finished(3)

    report = (
        "Traceback (most recent call last):\n  ...\nlfsbench.errors.RunFolderBusy: The run folder x is being written"
    )
    assert _raised_in(report) == ("RunFolderBusy", "The run folder x is being written")
    assert _raised_in("Traceback:\nValueError: bad") == ("ValueError", "ValueError: bad")
