"""The ceilings (methods/ceilings.py) on toy world 2, scored by the oracle's figures through a whole run."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import tiny_runner

from lfsbench.errors import LfsbenchError
from lfsbench.evaluation.records import ORACLE_COLUMNS
from lfsbench.identity import identity_of
from lfsbench.protocol import load_protocol
from lfsbench.runner import Runner
from lfsbench.toy import load_toy_backbone, load_toy_evaluator

WORLD2 = {  # the tiny protocol on toy world 2, with toy-v2's prompts
    "source": {"kind": "toy", "world": 2},
    "backbone": "toy-v2",
    "evaluator": "toy-v2",
    "sessions": [["circle-1"], ["square-1"]],
    "evaluation": {
        "prompts": ["a {}", "a {} on a navy background", "a {} on a khaki background", "a {} on a forest background"],
        "images_per_prompt": 6,
        "steps": 2,
        "bootstrap": 100,
        "untouched_classes": [],  # (tests/test_untouched.py covers them)
    },
    "multi_concept": {  # composition, read by the oracle
        "pairs": [["circle-1", "square-1"]],
        "prompts": ["a {0} and a {1}", "a {0} and a {1} on a navy background"],
    },
}


@pytest.fixture(scope="module")
def ceiling_runs(tiny_weights, tiny_dino, tmp_path_factory):
    root = tmp_path_factory.mktemp("ceilings")
    out = {}
    for method in ("retrieval", "oracle"):  # the ceilings have no knobs (no TINY_SETTINGS)
        # with a DINO model (a tiny random ViT): the real-data copy detectors run beside the oracle's
        identity = identity_of(load_protocol("toy", {**WORLD2, "dino": str(tiny_dino)}), method, {}, 0)
        backbone, evaluator = load_toy_backbone(weights=tiny_weights), load_toy_evaluator(weights=tiny_weights)
        Runner(identity, root / method, backbone, evaluator).run()
        out[method] = root / method
    return out


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


def test_retrieval_copies_every_image_and_complies_only_by_chance(ceiling_runs):
    s = _summary(ceiling_runs["retrieval"])
    assert s["nuisance_copy_rate"]["value"] == 1.0
    assert s["copy_excess"]["value"] > 0.95 and s["copy_excess"]["ci_low"] > 0.8
    assert s["copy_null"] <= 0.02
    # compliance: every bare prompt, and a background prompt only where the chosen shot shows that background
    scores = pd.concat(pd.read_csv(f) for f in sorted((ceiling_runs["retrieval"] / "scores").glob("*.csv")))
    concept = scores[scores.kind == "concept"]
    bare = concept[concept.prompt.str.fullmatch(r"a \S+ \w+")]
    assert (bare.complies == 1).all()
    assert s["compliance"]["value"] < 0.75


def test_oracle_learns_perfectly_without_copying(ceiling_runs):
    s = _summary(ceiling_runs["oracle"])
    assert s["compliance"]["value"] == 1.0 and s["compliance"]["ci_low"] > 0.9
    rate = s["nuisance_copy_rate"]
    assert rate["ci_low"] <= s["copy_null"] <= rate["ci_high"]  # at its null
    assert s["copy_excess"]["ci_low"] < 0 < s["copy_excess"]["ci_high"]
    assert s["novel_IA"]["value"] == pytest.approx(s["IA"]["value"], abs=0.02)  # nothing is left out


def test_the_ceilings_bound_composition(ceiling_runs):
    """A fresh two-object scene of both concepts (oracle) shows both and follows the prompt; a stored shot
    (retrieval) shows the first concept only, one object, so it never complies."""
    learner, copier = _summary(ceiling_runs["oracle"]), _summary(ceiling_runs["retrieval"])
    for name in ("multi_compliance", "multi_recognised", "multi_both"):
        assert learner[name]["value"] == 1.0, name
    assert copier["multi_compliance"]["value"] == 0.0 and copier["multi_both"]["value"] == 0.0
    assert copier["multi_recognised"]["value"] == 0.5  # the first concept's shot: one of the two
    scores = pd.read_csv(ceiling_runs["oracle"] / "scores" / "session_01.csv")
    multi = scores[scores.kind == "multi"]
    assert len(multi) == 2 * 12 and multi.recognised.notna().all()
    assert multi.both_recognised.notna().sum() == 12  # one value per image, in its first concept's record


def test_the_real_data_detectors_tell_the_copier_from_the_learner(ceiling_runs):
    """The detectors that need no oracle (relative pixel distance, DINO similarity) flag every retrieval image and
    the oracle's fresh renders at about their calibrated 5%: the intervals do not meet."""
    copier, learner = _summary(ceiling_runs["retrieval"]), _summary(ceiling_runs["oracle"])
    for name in ("copy_rate_relative", "copy_rate_dino"):
        assert copier[name]["value"] == 1.0
        assert learner[name]["value"] < 0.25 and learner[name]["ci_high"] < copier[name]["ci_low"], name


def test_oracle_columns_are_recorded_for_concept_images_only(ceiling_runs):
    scores = pd.read_csv(ceiling_runs["oracle"] / "scores" / "session_01.csv")
    concept = scores[scores.kind == "concept"]
    assert concept[list(ORACLE_COLUMNS)].notna().all().all()
    assert scores[scores.kind == "class"][list(ORACLE_COLUMNS)].isna().all().all()


def test_a_world_one_protocol_has_no_oracle_figures(tiny_runs):
    s = _summary(tiny_runs / "naive-0")
    assert "compliance" not in s and "copy_excess" not in s and "IA" in s


def test_oracle_refuses_data_that_is_not_the_toy_world(tiny_weights, tmp_path):
    from lfsbench.method import method_class

    oracle = method_class("oracle")
    method = oracle(oracle.Config())
    method.setup(load_toy_backbone(weights=tiny_weights), 0)
    method.use_toy_world(None)
    with pytest.raises(LfsbenchError, match="toy world"):
        method.learn(None)


def test_a_protocol_whose_world_differs_from_its_models_is_refused(tiny_weights, tmp_path):
    with pytest.raises(LfsbenchError, match="built on world 1"):
        tiny_runner(tiny_weights, tmp_path / "run", "naive", protocol={**WORLD2, "backbone": "toy", "evaluator": "toy"})
