"""Fewer evaluation images between sessions (evaluation.between_images_per_prompt): the in-between cells draw the
first seeds of each prompt, the very images a run with every image draws there, and the cells the summary reads
are untouched; the noise analysis (report/variance.py) simulates the setting exactly from a run with every image."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_PROTOCOL, tiny_run

from lfsbench.evaluation.plan import full_count_session, image_seeds
from lfsbench.evaluation.records import TEXT_COLUMNS
from lfsbench.protocol import load_protocol
from lfsbench.report.runs import find_runs
from lfsbench.report.variance import between_subset, components

BETWEEN = {**TINY_PROTOCOL, "evaluation": {**TINY_PROTOCOL["evaluation"], "between_images_per_prompt": 1}}
KEYS = ["session", "kind", "name", "prompt", "seed"]


def _sorted(scores: pd.DataFrame) -> pd.DataFrame:
    # class images scored against a concept's references carry no seed: keep their order within a cell
    scores = scores.assign(position=scores.groupby(["session", "kind", "name"]).cumcount())
    return scores.sort_values([*KEYS, "position"]).reset_index(drop=True)


def test_full_count_cells_are_the_teaching_session_the_last_and_checkpoints():
    protocol = load_protocol("toy", {"evaluation": {"checkpoints": [3]}})  # six sessions, all evaluated at 3 and 6
    assert full_count_session(protocol, 1, {1}) and full_count_session(protocol, 5, {0})
    assert full_count_session(protocol, 2, {0})  # checkpoint 3 is session index 2
    assert not full_count_session(protocol, 1, {0}) and not full_count_session(protocol, 3, {0, 2})


def test_between_count_is_at_most_the_full_count():
    protocol = load_protocol("toy", {"evaluation": {"images_per_prompt": 2, "between_images_per_prompt": 8}})
    assert image_seeds(protocol, full=False) == image_seeds(protocol) == [0, 1]
    protocol = load_protocol("toy", {"evaluation": {"images_per_prompt": 16, "between_images_per_prompt": 4}})
    assert image_seeds(protocol, full=False) == [0, 1, 2, 3] and len(image_seeds(protocol)) == 16


def test_between_run_draws_the_first_seeds_of_the_full_runs_images(tiny_weights, tmp_path):
    """lfs (its control too): circle-1 and its class after session 1 are in-between cells (1 image per prompt);
    every other cell, and so every summary figure but the peak-based forgetting, is the full run's."""
    full = tiny_run(tiny_weights, tmp_path / "full", "lfs", 0, {"context_strength": 0.5})
    fewer = tiny_run(tiny_weights, tmp_path / "fewer", "lfs", 0, {"context_strength": 0.5}, BETWEEN)
    (run_full,), (run_fewer,) = find_runs([full]), find_runs([fewer])
    got, want = _sorted(run_fewer.scores()), _sorted(between_subset(run_full, 1))
    assert len(got) < len(run_full.scores())
    in_between = got[(got.session == 1) & (got.name.isin(["circle-1", "circle"]))]
    reduced = in_between[~in_between.kind.str.startswith("base_")]  # the base model's images stay whole
    assert set(reduced.kind) == {"concept", "control", "class", "class_for_concept"}
    assert (reduced[reduced.seed >= 0].seed == 0).all() and set(in_between[in_between.kind == "base_class"].seed) == {
        0,
        1,
    }
    pd.testing.assert_frame_equal(got[KEYS], want[KEYS])
    numbers = [c for c in got.columns if c not in (*KEYS, *TEXT_COLUMNS)]
    pd.testing.assert_frame_equal(got[list(TEXT_COLUMNS)].fillna(""), want[list(TEXT_COLUMNS)].fillna(""))
    np.testing.assert_allclose(got[numbers].to_numpy(float), want[numbers].to_numpy(float), atol=1e-6)
    summary_full, summary_fewer = (json.loads((p / "summary.json").read_text()) for p in (full, fewer))
    for name in ("IA", "TA", "IAD", "copy_rate", "class_TA_drop", "drift", "IA_right_after_learning"):
        assert summary_fewer[name]["value"] == pytest.approx(summary_full[name]["value"], abs=1e-6), name


def test_components_measure_the_image_noise_of_the_summary(tiny_runs):
    runs = find_runs([tiny_runs / "naive-0"])
    parts = components(runs, None, 100).set_index("metric")
    summary = runs[0].summary
    for name in ("IA", "TA"):
        half = (summary[name]["ci_high"] - summary[name]["ci_low"]) / 2
        assert parts.loc[name, "images_sd"] == pytest.approx(half / 1.96, rel=0.35)  # two bootstraps of 100
        assert np.isfinite(parts.loc[name, "concepts_sd"]) and parts.loc[name, "concepts_sd"] >= 0
