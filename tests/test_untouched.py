"""Untouched knowledge: classes no concept belongs to (evaluation.untouched_classes), asked for after every session
and scored against the base model's same images."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import TINY_PROTOCOL, tiny_run

from lfsbench.concepts import load_concepts
from lfsbench.errors import LfsbenchError
from lfsbench.protocol import load_protocol
from lfsbench.report import make_report


def test_a_run_scores_the_untouched_classes_after_every_session(tiny_weights, tmp_path):
    protocol = {**TINY_PROTOCOL, "evaluation": {**TINY_PROTOCOL["evaluation"], "untouched_classes": ["cross"]}}
    run = tiny_run(tiny_weights, tmp_path / "run", protocol=protocol)
    scores = pd.concat(pd.read_csv(f) for f in sorted((run / "scores").glob("*.csv")))
    for kind in ("untouched", "base_untouched"):
        rows = scores[scores.kind == kind]
        assert set(rows.name) == {"cross"} and sorted(set(rows.session)) == [0, 1, 2]
        assert len(rows[rows.session == 0]) == 4 * 4  # the toy's 4 prompts x untouched_images_per_prompt
        assert rows.class_correct.isin([0.0, 1.0]).all()
    now, base = scores[scores.kind == "untouched"], scores[scores.kind == "base_untouched"]
    assert now.drift.notna().all() and base.drift.isna().all()
    # the base model's images are the same after every session (generated once)
    assert (base.groupby("session").ta.apply(list).apply(tuple).nunique()) == 1
    summary = json.loads((run / "summary.json").read_text())
    last = now[now.session == 2]
    assert summary["untouched_class_accuracy"]["value"] == pytest.approx(last.class_correct.mean())
    merged = last.merge(base[base.session == 2], on=["prompt", "seed"], suffixes=("", "_base"))
    assert summary["untouched_TA_drop"]["value"] == pytest.approx((merged.ta_base - merged.ta).mean())
    assert summary["untouched_drift"]["value"] == pytest.approx(last.drift.mean())

    make_report([run], tmp_path / "report")
    assert (tmp_path / "report" / "retention.png").is_file()


@pytest.mark.parametrize("noun, says", [("circle", "a concept of the protocol belongs to it"), ("../x", "separator")])
def test_an_untouched_class_that_a_concept_belongs_to_is_refused(noun, says):
    protocol = load_protocol("toy-quick", {"evaluation": {"untouched_classes": [noun]}})
    with pytest.raises(LfsbenchError, match="untouched_classes") as err:
        load_concepts(protocol)
    assert says in str(err.value)
