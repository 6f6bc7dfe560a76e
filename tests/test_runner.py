"""The session loop on tiny (untrained) toy models: files, resume, and bad input."""

import json
import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_PROTOCOL, tiny_runner
from PIL import Image

from lfsbench.errors import LfsbenchError
from lfsbench.evaluation import plan
from lfsbench.evaluation.records import Kind
from lfsbench.images import save_grid
from lfsbench.results import RunFolder
from lfsbench.runner import IMAGES_KEPT
from lfsbench.toy import load_toy_backbone

FAST = TINY_PROTOCOL


def make_runner(weights, output, method="naive", overrides=None, protocol_overrides=FAST):
    return tiny_runner(weights, output, method, 0, overrides, protocol_overrides)


def test_run_writes_the_documented_folder(tiny_weights, tmp_path, capsys):
    out = tmp_path / "run"
    summary = make_runner(
        tiny_weights, out, "custom-diffusion", {"steps": 2, "batch_size": 2, "class_images": 2, "class_image_steps": 2}
    ).run()
    for name in (
        "config.json",
        "meta.json",
        "summary.json",
        "summary.csv",
        "ia_matrix.csv",
        "ta_matrix.csv",
        "cost.csv",
        "base/drift_scale.json",
        "images/session_02/circle-1.png",
        "images/session_02/class_circle.png",
    ):
        assert (out / name).is_file(), name
    rows = pd.read_csv(out / "sessions" / "session_02.csv")
    assert set(rows.columns) >= {"session", "name", "kind", "learned_in", "metric", "value", "ci_low", "ci_high"}
    iad = rows[(rows.metric == "IAD")]
    assert set(iad.name) == {"circle-1", "square-1"}  # concepts learned before the last session
    assert set(rows[rows.kind == "class"].name) == {"circle", "square"}
    ia = pd.read_csv(out / "ia_matrix.csv")
    assert ia.shape == (3, 4) and ia.isna().sum().sum() == 3  # upper triangle is empty
    # the summary's IA is the mean of the last session's per-image IA
    scores = pd.read_csv(out / "scores" / "session_02.csv")
    assert summary["IA"]["value"] == pytest.approx(scores[scores.kind == "concept"].ia.mean())
    assert summary["IA"]["ci_low"] <= summary["IA"]["value"] <= summary["IA"]["ci_high"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["versions"]["torch"] and "started" in meta and meta["torch_threads"] == torch.get_num_threads()
    cost = pd.read_csv(out / "cost.csv")
    assert (cost.train_s > 0).all() and (cost.delta_bytes > 0).all() and (cost.trainable_parameters > 0).all()
    assert (cost.threads == torch.get_num_threads()).all()
    # off a terminal (a Slurm log, nohup), a plain line per session with elapsed time and time left
    lines = [line for line in capsys.readouterr().out.splitlines() if "finished (" in line]
    assert [line.split(": ")[1].split(" finished")[0] for line in lines] == ["session 0", "session 1", "session 2"]
    assert "(3/3)" in lines[-1] and "elapsed 0:0" in lines[-1] and "about 0:00:00 left" in lines[-1]


def _run_and_die(weights, out, sessions_before_kill):
    """Child process: run, and die (as a kill would) right after a given number of sessions finished."""
    import os

    import lfsbench.results as results

    original = results.RunFolder.write_session_table

    def write_then_maybe_die(self, path, frame):
        original(self, path, frame)
        if path.parent.name == "sessions" and len(list(path.parent.glob("session_*.csv"))) == sessions_before_kill:
            os._exit(9)

    results.RunFolder.write_session_table = write_then_maybe_die
    make_runner(weights, out).run()


def test_killed_and_resumed_run_matches_uninterrupted(tiny_weights, tmp_path):
    straight = make_runner(tiny_weights, tmp_path / "straight").run()
    proc = mp.get_context("spawn").Process(  # fork after torch started its threads can hang
        target=_run_and_die, args=(tiny_weights, tmp_path / "killed", 2)
    )
    proc.start()
    proc.join()
    assert proc.exitcode == 9
    assert len(list((tmp_path / "killed" / "sessions").glob("*.csv"))) == 2
    resumed = make_runner(tiny_weights, tmp_path / "killed").run()
    for key in ("TA", "IA", "IAD", "class_TA", "drift"):
        assert resumed[key]["value"] == pytest.approx(straight[key]["value"], abs=1e-6), key
    a = pd.read_csv(tmp_path / "straight" / "ia_matrix.csv")
    b = pd.read_csv(tmp_path / "killed" / "ia_matrix.csv")
    pd.testing.assert_frame_equal(a, b, atol=1e-6)


def test_output_folder_with_a_different_run_is_refused(tiny_weights, tmp_path):
    out = tmp_path / "run"
    make_runner(tiny_weights, out, protocol_overrides={**FAST, "sessions": [["circle-1"]]}).run()
    before = (out / "summary.json").read_text()
    with pytest.raises(LfsbenchError, match="holds a different run"):
        make_runner(
            tiny_weights,
            out,
            overrides={"steps": 3, "batch_size": 2},
            protocol_overrides={**FAST, "sessions": [["circle-1"]]},
        ).run()
    assert (out / "summary.json").read_text() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(LfsbenchError, match="not empty"):
        make_runner(tiny_weights, tmp_path / "other").run()


def test_unknown_method_setting_is_an_error(tiny_weights, tmp_path):
    with pytest.raises(LfsbenchError, match="stepz"):
        make_runner(tiny_weights, tmp_path / "r", overrides={"stepz": 3})


def test_peak_memory_is_per_session_on_linux():
    """A session's CPU peak must not carry an earlier, larger run's peak (several runs share a study's process)."""
    from pathlib import Path

    import numpy as np
    import torch

    from lfsbench.memory import peak_memory_mb, reset_peak_memory

    if not Path("/proc/self/status").is_file():
        pytest.skip("peak RSS per session needs Linux's /proc")
    cpu = torch.device("cpu")
    block = np.ones(300 * 2**20, dtype=np.uint8)  # 300 MB, touched
    high = peak_memory_mb(cpu)
    del block
    reset_peak_memory(cpu)
    assert peak_memory_mb(cpu) < high - 200


SABOTEUR = '''
import torch

from lfsbench.methods.lfs import LFSDiffusion


class Saboteur(LFSDiffusion):
    """lfs whose own model is broken after every session: had it generated its control, the control would be too."""

    def learn(self, session):
        figures = super().learn(session)
        with torch.no_grad():
            for parameter in self.backbone.unet.parameters():
                parameter.normal_(0.0, 0.1)
        return figures
'''


GRIDS = {"control": RunFolder.control_grid, "concept": RunFolder.concept_grid}  # the first images a session saves


def test_the_runner_builds_the_in_context_control_from_the_base_model(tiny_weights, tmp_path):
    """The control is the runner's, not the method's: a fresh base model's image-to-image from the contexts the method
    declares (their latents and strength, the prompts without the token, the same seeds). A method that breaks its
    own model gets the same control as lfs, while its own images change."""
    (tmp_path / "saboteur.py").write_text(SABOTEUR)
    settings = {"steps": 2, "batch_size": 2, "context_strength": 0.5}
    folders, runners = {}, {}
    for name, method in (("lfs", "lfs"), ("saboteur", f"{tmp_path}/saboteur.py:Saboteur")):
        folders[name] = tmp_path / name
        runners[name] = tiny_runner(tiny_weights, folders[name], method, 0, settings, cache=False)
        runners[name].run()
    lfs, saboteur = (pd.concat(pd.read_csv(f) for f in sorted((folders[n] / "scores").glob("*.csv"))) for n in folders)
    control = ["session", "name", "prompt", "seed", "ta", "ia", "ia_shots"]
    # circle-1 is evaluated after 3 sessions, square-1 after 2, circle-2 after 1: 2 images of 4 prompts each time
    assert len(lfs[lfs.kind == "control"]) == 2 * 4 * (3 + 2 + 1)
    pd.testing.assert_frame_equal(
        lfs[lfs.kind == "control"][control].reset_index(drop=True),
        saboteur[saboteur.kind == "control"][control].reset_index(drop=True),
    )
    # the tiny build's untrained evaluator scores every image alike (and its decoder draws them alike, so the sabotage
    # moves pixels only slightly): compare the images themselves, exactly
    pixels = {
        n: {kind: np.asarray(Image.open(grid(RunFolder(f), 2, "circle-1"))) for kind, grid in GRIDS.items()}
        for n, f in folders.items()
    }
    assert np.array_equal(pixels["lfs"]["control"], pixels["saboteur"]["control"])
    assert not np.array_equal(pixels["lfs"]["concept"], pixels["saboteur"]["concept"])  # the sabotage took effect
    # and the control is what a fresh base model makes from the declaration, computed here independently
    runner = runners["lfs"]
    circle = next(c for c in runner.concepts if c.name == "circle-1")
    job = plan.concept_job(runner.protocol, circle, Kind.CONTROL, full=True)
    declared = runner.method.declared_contexts(job.prompts, job.seeds)
    assert all(latent is not None for latent in declared.latents) and declared.strength == 0.5
    assert all("<" not in prompt for prompt in job.text_prompts)  # the base model is not asked for the token
    base, how = load_toy_backbone(weights=tiny_weights), runner.plan
    with base.sampling(how.sampler, how.precision, how.eta):
        expected = base.generate_in_context(job.text_prompts, job.seeds, declared.latents, 0.5, how.steps, how.guidance)
    save_grid(expected[:IMAGES_KEPT], tmp_path / "expected.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "expected.png")), pixels["lfs"]["control"])


def test_a_malformed_context_declaration_is_an_error_naming_the_method(tiny_weights, tmp_path):
    """One latent (or None) per image and a strength in (0, 1], or a one-paragraph error; the removed capability of
    methods that generated their own control says what replaced it."""
    from lfsbench.method import Contexts, GeneratesControl

    runner = tiny_runner(tiny_weights, tmp_path / "run", "lfs", 0, {"steps": 2, "batch_size": 2})
    job = plan.concept_job(runner.protocol, runner.concepts[0], Kind.CONTROL, full=True)
    latent = torch.zeros(4, 8, 8)
    for declared in (Contexts([latent], 0.5), Contexts([latent] * len(job.prompts), 1.5)):
        runner.method.declared_contexts = lambda prompts, seeds, declared=declared: declared
        with pytest.raises(LfsbenchError, match="declared_contexts must return one latent"):
            runner._declared(job)
    with pytest.raises(LfsbenchError, match="Subclass lfsbench.method.GeneratesFromContexts"):

        class Old(GeneratesControl):
            pass
