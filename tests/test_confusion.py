"""Concept confusion: which learned concept an image shows (evaluation/functional.py shown_concepts), the scorer's
`confused` and `shown_as`, the report's confusion matrix, and its positive control (methods/controls.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_run

from lfsbench.concepts import load_concepts
from lfsbench.evaluation import functional as F
from lfsbench.evaluation.scorer import KnownConcepts, Scorer
from lfsbench.images import to_float
from lfsbench.protocol import load_protocol
from lfsbench.report import make_report
from lfsbench.results import RunFolder
from lfsbench.toy import load_toy_backbone, load_toy_evaluator
from lfsbench.toy.world import concept_by_name, concept_renders


def _unit(x):
    x = torch.as_tensor(x, dtype=torch.float32)
    return x / x.norm(dim=-1, keepdim=True)


def test_an_image_shows_the_nearest_concept_only_past_its_bar():
    rng = np.random.default_rng(0)
    axes = np.eye(4)
    refs = [_unit(axes[k] + 0.1 * rng.normal(size=(8, 4))) for k in (0, 1)]  # concept 0 near e0, concept 1 near e1
    generic = _unit(axes[0] + axes[1] + axes[2] * 2 + 0.1 * rng.normal(size=(32, 4)))  # the class, neither concept
    bars = [F.recognition_bar(generic, r) for r in refs]
    near0, near1 = _unit(axes[0] + 0.05 * rng.normal(size=(5, 4))), _unit(axes[1] + 0.05 * rng.normal(size=(5, 4)))
    assert (F.shown_concepts(near0, refs, bars) == 0).all()
    assert (F.shown_concepts(near1, refs, bars) == 1).all()
    # generic members of the class resemble neither concept past its bar (at most 5% of them can, by construction)
    assert (F.shown_concepts(generic, refs, bars) == -1).mean() >= 0.9
    # nearer concept 1 than 0 but no nearer it than generic images are: shows none, not concept 1
    weak = _unit(axes[1] * 0.3 + axes[0] * 0.25 + axes[2] * 2)
    assert F.shown_concepts(weak[None], refs, bars).tolist() == [-1]

    known = KnownConcepts(["a", "b"], refs, bars)
    shown = known.shown(torch.cat([near0, near1, generic[:1]]), asked="a")
    assert shown["shown_as"].tolist() == ["a"] * 5 + ["b"] * 5 + [""]
    assert shown["confused"].tolist() == [0.0] * 5 + [1.0] * 5 + [0.0]


@pytest.fixture(scope="module")
def shipped_toy():
    protocol = load_protocol("toy-quick")  # circle-1, square-1, circle-2 on the shipped world
    concepts = {c.name: c for c in load_concepts(protocol)}
    return protocol, concepts, load_toy_backbone(), load_toy_evaluator()


def test_the_shipped_evaluator_tells_a_concept_from_its_sibling(shipped_toy):
    """On the shipped toy world: fresh views of circle-2 asked for as circle-1 are confusions, fresh views of circle-1
    are not, and the base model's plain circles show no concept (the false alarm a method that learned nothing
    would raise)."""
    protocol, concepts, backbone, evaluator = shipped_toy
    scorer = Scorer(evaluator)

    def base_images(noun):  # the base model's generic members of the class (the recognition bar's)
        return scorer.embed(backbone.generate([f"a {noun}"] * 32, list(range(32)), 10, 5.0))

    generic = {noun: base_images(noun) for noun in {c.class_noun for c in concepts.values()}}
    names = list(concepts)
    refs = [scorer.concept(concepts[n]).references for n in names]
    bars = [F.recognition_bar(generic[concepts[n].class_noun], r) for n, r in zip(names, refs, strict=True)]
    known = KnownConcepts(names, refs, bars)

    def views(name):  # fresh renders no run draws (the check stream)
        return to_float(concept_renders(concept_by_name(name), 48, seed=11))

    own = known.shown(scorer.embed(views("circle-1")), asked="circle-1")
    sibling = known.shown(scorer.embed(views("circle-2")), asked="circle-1")
    plain = known.shown(generic["circle"], asked="circle-1")
    assert own["confused"].mean() <= 0.05 and (own["shown_as"] == "circle-1").mean() >= 0.9
    assert sibling["confused"].mean() >= 0.9 and (sibling["shown_as"] == "circle-2").mean() >= 0.9
    assert plain["confused"].mean() <= 0.1


def test_a_run_keeps_what_each_image_shows_and_the_report_draws_the_matrix(tiny_weights, tmp_path):
    run = tiny_run(tiny_weights, tmp_path / "run")
    scores = pd.concat(pd.read_csv(f) for f in sorted((run / "scores").glob("*.csv")))
    concept = scores[scores.kind == "concept"]
    assert concept.confused.isin([0.0, 1.0]).all()
    shown = concept.shown_as.fillna("")
    # what an image shows is a concept learned by its session, or none
    learned = {0: {"", "circle-1"}, 1: {"", "circle-1", "square-1"}, 2: {"", "circle-1", "square-1", "circle-2"}}
    assert all(s in learned[t] for t, s in zip(concept.session, shown, strict=True))
    assert ((shown != "") & (shown != concept.name)).astype(float).tolist() == concept.confused.tolist()
    assert scores[scores.kind != "concept"].confused.isna().all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["confusion_rate"]["value"] == pytest.approx(concept[concept.session == 2].confused.mean())

    page = make_report([run], tmp_path / "report")
    assert len(list((tmp_path / "report").glob("confusion_naive*.png"))) == 1
    assert "Concept confusion" in page.read_text()

    # a run made before concept confusion (no shown_as or confused column) gets no matrix, not one of "none" only
    older = tmp_path / "older"
    shutil.copytree(run, older)
    folder = RunFolder(older)
    for table in (older / "scores").glob("*.csv"):  # written as that run wrote them (their digests recorded)
        folder.write_session_table(table, pd.read_csv(table).drop(columns=["shown_as", "confused"]))
    make_report([older], tmp_path / "older-report")
    assert not list((tmp_path / "older-report").glob("confusion_*.png"))


def test_swapped_tokens_answers_a_concept_with_its_same_class_partner():
    from lfsbench.method import method_class, validated_config

    cls = method_class("swapped-tokens")
    method = cls(validated_config(cls, "swapped-tokens"))
    method.partner = {"<new1>": "<new3>", "<new3>": "<new1>"}
    assert method.swapped("a <new1> circle on a navy background") == "a <new3> circle on a navy background"
    assert method.swapped("a <new3> circle") == "a <new1> circle"
    assert method.swapped("a <new2> square") == "a <new2> square"  # no partner learned yet
