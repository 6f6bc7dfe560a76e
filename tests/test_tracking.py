"""Experiment tracking (lfsbench/tracking.py): what MLflow (a local file store) and TensorBoard (event files) receive
is what the run folder holds, per session and at the end; a resumed run goes on in the same tracked run; a stored
run can be sent afterwards; W&B runs offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

from lfsbench.errors import LfsbenchError
from lfsbench.evaluation import tables
from lfsbench.identity import identity_of
from lfsbench.protocol import load_protocol
from lfsbench.results import RunFolder
from lfsbench.runner import Runner
from lfsbench.toy import load_toy_backbone, load_toy_evaluator
from lfsbench.tracking import N_BOOT, Tracker

FAST = {
    "sessions": [["circle-1"], ["square-1"]],
    "evaluation": {"images_per_prompt": 2, "steps": 3, "bootstrap": 100, "untouched_classes": []},
}
MLRUNS = "mlruns"


def tracked_run(weights, out, track):
    spec = identity_of(load_protocol("toy", FAST), "naive", {"steps": 2, "batch_size": 2})
    return Runner(spec, out, load_toy_backbone(weights=weights), load_toy_evaluator(weights=weights), track).run()


def expected_curve(folder, t: int, metric: str) -> float:
    run = RunFolder(folder)
    learned_in = load_protocol("toy", FAST).learned_in()
    rows = tables.session_curve(run.scores(), run.cost(), learned_in, t, N_BOOT)
    return next(r["value"] for r in rows if r["metric"] == metric)


def untracked_copy(src, dst):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock", "tracking.json", "tensorboard", "wandb"))
    return dst


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A local MLflow file store, chosen through the environment as a user would."""
    mlflow = pytest.importorskip("mlflow")
    uri = f"file:{tmp_path_factory.mktemp('mlflow') / MLRUNS}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
        yield mlflow.tracking.MlflowClient(uri)


@pytest.fixture(scope="module")
def tracked(tiny_weights, tmp_path_factory, store):
    """A run tracked live to MLflow: (its folder, its summary)."""
    out = tmp_path_factory.mktemp("tracked") / "run"
    return out, tracked_run(tiny_weights, out, "mlflow")


def the_runs(store, name="run"):
    (experiment,) = [e for e in store.search_experiments() if e.name == "lfsbench-toy"]
    return [r for r in store.search_runs([experiment.experiment_id]) if r.info.run_name == name]


def test_mlflow_gets_every_session_the_summary_and_the_images(tracked, store):
    out, summary = tracked
    (run,) = the_runs(store)
    assert run.info.run_id in (out / "tracking.json").read_text() and run.info.status == "FINISHED"
    assert run.data.params["method"] == "naive" and run.data.params["method.steps"] == "2"
    for metric in ("IA", "TA", "IAD", "copy_rate", "train_s"):
        history = sorted(store.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
        expected = [0, 1] if metric != "IAD" else [1]  # IAD exists once a concept can have dropped
        assert [m.step for m in history] == expected, metric
        for point in history:
            assert point.value == pytest.approx(expected_curve(out, point.step, metric), abs=1e-9), metric
    assert run.data.metrics["final/IA"] == pytest.approx(summary["IA"]["value"])
    assert run.data.metrics["final/IA_low"] == pytest.approx(summary["IA"]["ci_low"])  # and its interval
    assert run.data.metrics["final/IA_high"] == pytest.approx(summary["IA"]["ci_high"])
    ia_low = {m.step for m in store.get_metric_history(run.info.run_id, "IA_low")}
    assert ia_low == {0, 1} and not store.get_metric_history(run.info.run_id, "train_s_low")  # cost has no interval
    artifacts = {a.path for a in store.list_artifacts(run.info.run_id, "tables")}
    assert {"tables/summary.json", "tables/config.json", "tables/cost.csv"} <= artifacts
    images = {a.path for a in store.list_artifacts(run.info.run_id, "images/session_01")}
    assert "images/session_01/square-1.png" in images


def test_a_resumed_run_goes_on_in_the_same_tracked_run(tiny_weights, tracked, store, tmp_path):
    """A kill after session 0 (session 1's files gone): the resumed run logs session 1 into the same MLflow run."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(tracked[0], out, ignore=shutil.ignore_patterns(".lock"))
    RunFolder(out).session_csv(1).unlink()
    tracked_run(tiny_weights, out, "mlflow")
    (run,) = the_runs(store)  # still one tracked run of that name
    steps = [m.step for m in store.get_metric_history(run.info.run_id, "IA")]
    assert sorted(steps) == [0, 1, 1]  # session 1 logged again when it was redone, nothing else
    assert run.info.status == "FINISHED"


def test_tensorboard_event_files_hold_the_curves_and_the_image_grids(tracked, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, summary = tracked[0], tracked[1]
    copy = untracked_copy(out, tmp_path / "run")
    assert Tracker("tensorboard", copy).replay() == 2
    events = EventAccumulator(str(copy / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    ia = events.Scalars("IA")
    assert [e.step for e in ia] == [0, 1]
    assert [e.value for e in ia] == pytest.approx([expected_curve(out, t, "IA") for t in range(2)], abs=1e-6)
    assert events.Scalars("final/IA")[0].value == pytest.approx(summary["IA"]["value"], abs=1e-6)
    assert [e.step for e in events.Images("circle-1")] == [0, 1]  # the concept's grid after every session


def test_a_stored_run_is_sent_afterwards_and_bad_trackers_are_explained(tracked, store, tmp_path):
    copy = untracked_copy(tracked[0], tmp_path / "sent")
    code, output = invoke("track", copy, "--to", "mlflow")
    assert code == 0, output
    assert "2 sessions sent to mlflow" in output
    (run,) = the_runs(store, "sent")
    assert len(store.get_metric_history(run.info.run_id, "TA")) == 2
    code, output = invoke("track", copy, "--to", "mlflow")  # again: nothing is logged twice
    assert code == 0 and "0 sessions sent to mlflow (2 sent before, not sent again)" in output
    assert len(store.get_metric_history(run.info.run_id, "TA")) == 2 and len(the_runs(store, "sent")) == 1
    (copy / "tracking.json").write_text(json.dumps({"mlflow": run.info.run_id}))  # as tracked before the record
    code, output = invoke("track", copy, "--to", "mlflow")
    assert code == 0 and "0 sessions sent to mlflow" in output
    assert len(store.get_metric_history(run.info.run_id, "TA")) == 2
    exported = RunFolder(copy).export(tmp_path / "exported")
    assert not (exported / "tracking.json").exists()  # a copy is sent anew, wherever it goes
    code, output = invoke("track", copy, "--to", "neptune")
    assert code == 2 and "--track 'neptune' is not known" in output
    with pytest.raises(LfsbenchError, match="holds no lfsbench run"):
        Tracker("tensorboard", tmp_path / "nothing")


def test_an_unreachable_mlflow_store_stops_before_training(tiny_weights, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unknownscheme://nowhere")
    with pytest.raises(LfsbenchError, match=r"MLflow could not open its tracking store.*Nothing was run"):
        tracked_run(tiny_weights, tmp_path / "run", "mlflow")
    assert RunFolder(tmp_path / "run").finished_sessions() == []


def test_wandb_runs_offline_and_saves_the_tables(tracked, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline unless the user says otherwise
    monkeypatch.setenv("WANDB_SILENT", "true")
    copy = untracked_copy(tracked[0], tmp_path / "run")
    assert Tracker("wandb", copy).replay() == 2
    (offline,) = (copy / "wandb").glob("offline-run-*")
    files = {p.name for p in (offline / "files").iterdir()}
    assert {"summary.json", "config.json", "cost.csv"} <= files
    assert list((offline / "files" / "media" / "images").rglob("*.png"))  # the image grids went with the figures


def test_wandb_writes_where_wandb_dir_says(tracked, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    copy = untracked_copy(tracked[0], tmp_path / "run")
    assert Tracker("wandb", copy).replay() == 2
    assert list((tmp_path / "elsewhere" / "wandb").glob("offline-run-*")) and not (copy / "wandb").exists()


def test_two_runs_that_differ_only_in_sampler_differ_in_mlflow(store, tmp_path):
    """What a tracker shows of a run is its whole identity: runs that differ only in the sampler are told apart."""
    import shutil

    committed = Path(__file__).parent.parent / "reports" / "orders" / "runs" / "toy" / "c-lora-order_seed=1-seed0"
    for name, sampler in (("ddim-run", "ddim"), ("dpm-run", "dpmsolver++")):
        copy = shutil.copytree(committed, tmp_path / name)
        config = json.loads((copy / "config.json").read_text())
        config["protocol"]["evaluation"]["sampler"] = sampler
        (copy / "config.json").write_text(json.dumps(config))
        code, output = invoke("track", copy, "--to", "mlflow")
        assert code == 0, output
    (ddim,), (dpm,) = the_runs(store, "ddim-run"), the_runs(store, "dpm-run")
    differ = {k for k in ddim.data.params if ddim.data.params[k] != dpm.data.params.get(k)}
    assert "protocol.evaluation.sampler" in differ and dpm.data.params["protocol.evaluation.sampler"] == "dpmsolver++"
    assert differ <= {"protocol.evaluation.sampler", "identity", "setting", "label", "data.path"}
