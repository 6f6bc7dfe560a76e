"""Positive controls (methods/controls.py) move the figure they are built for, on the shipped toy world: a figure
that no run moves gets no verdict (docs/metrics.md). Short runs: two sessions at most, 200 training steps, 4 images
per prompt, about 14 minutes in all on 2 cores: under -m slow (`-m slow -n 0 tests/test_controls.py`: one process
at two threads; under the default two workers the file's tests share one worker's single thread)."""

from __future__ import annotations

import json

import pytest

from lfsbench.identity import identity_of
from lfsbench.protocol import load_protocol
from lfsbench.runner import Runner
from lfsbench.toy import load_toy_backbone, load_toy_evaluator

pytestmark = pytest.mark.slow


def _run(tmp_path, method, sessions, untouched, settings=None):
    protocol = load_protocol(
        "toy",
        {
            "sessions": sessions,
            "evaluation": {"images_per_prompt": 4, "untouched_classes": untouched, "bootstrap": 100},
        },
    )
    identity = identity_of(protocol, method, {"steps": 200, **(settings or {})}, 0)
    out = tmp_path / "-".join([method, *map(str, (settings or {}).values())])
    Runner(identity, out, load_toy_backbone(), load_toy_evaluator()).run()
    return json.loads((out / "summary.json").read_text())


def test_swapping_two_concepts_tokens_shows_as_confusion(tmp_path):
    """circle-1 then circle-2: once both are learned, the control answers each with the other."""
    sessions = [["circle-1"], ["circle-2"]]
    swapped, plain = (_run(tmp_path, m, sessions, []) for m in ("swapped-tokens", "independent"))
    assert plain["confusion_rate"]["ci_high"] < 0.25
    assert swapped["confusion_rate"]["ci_low"] > 0.5
    assert swapped["confusion_rate"]["ci_low"] > plain["confusion_rate"]["ci_high"]


def test_training_a_class_prompt_on_other_shots_shows_as_lost_untouched_knowledge(tmp_path):
    """One session of circle-1 that also trains "a cross" on its shots: the crosses are lost, naive keeps them."""
    sessions = [["circle-1"]]
    overwritten = _run(tmp_path, "overwrites-class", sessions, ["cross"], {"victim": "cross"})
    plain = _run(tmp_path, "naive", sessions, ["cross"])
    # 16 images of crosses: naive keeps (nearly) all of them; the Wilson bound of 16 of 16 is only 0.806
    assert plain["untouched_class_accuracy"]["value"] >= 0.9
    assert overwritten["untouched_class_accuracy"]["ci_high"] < 0.5
    for figure in ("untouched_TA_drop", "untouched_drift"):
        assert overwritten[figure]["ci_low"] > plain[figure]["ci_high"], figure


def test_training_a_learned_class_prompt_on_another_class_shows_as_a_lost_class(tmp_path):
    """circle-1, then square-1 while "a circle" trains on the square's shots: the circles are lost."""
    sessions = [["circle-1"], ["square-1"]]
    overwritten = _run(tmp_path, "overwrites-class", sessions, [], {"victim": "circle"})
    plain = _run(tmp_path, "naive", sessions, [])
    assert plain["class_accuracy"]["ci_low"] > 0.8
    assert overwritten["class_accuracy"]["ci_high"] < plain["class_accuracy"]["ci_low"]
    assert overwritten["class_TA_drop"]["ci_low"] > plain["class_TA_drop"]["ci_high"]
