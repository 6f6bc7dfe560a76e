"""Known answers for the memorization figures: a "method" that returns its shots copies; one that returns fresh,
unseen renders of the concept does not, and its IA against the shots equals its IA against held-out views.

The methods below learn nothing: they return images the test chose, so the figures' expected values are known. They
run through the real runner, scorer and summary, with the shipped toy evaluator (the figures need a trained one).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lfsbench.evaluation.copying import FALSE_POSITIVE_RATE, CopySpace, FeatureCopy
from lfsbench.identity import identity_of
from lfsbench.images import to_float
from lfsbench.method import Method, MethodConfig
from lfsbench.protocol import load_protocol
from lfsbench.runner import Runner
from lfsbench.toy import world

PROTOCOL = {
    "sessions": [["circle-1"], ["square-1"]],
    "evaluation": {
        "images_per_prompt": 8,
        "steps": 3,
        "bootstrap": 200,
        "prompts": ["a {}", "a {} on a black background"],
        "untouched_classes": [],  # (tests/test_untouched.py covers them)
    },
}
FRESH_SEED = 12345  # a render stream no protocol, method or check uses


class _ReturnsImages(Method):
    """Learns nothing; a prompt naming a learned concept gets `images_for(concept index, seed)`."""

    def __init__(self):
        super().__init__(MethodConfig())
        self.shots: dict[str, torch.Tensor] = {}

    def learn(self, session):
        for concept in session.concepts:
            self.shots[concept.token] = concept.images
        return {}

    def generate(self, prompts, seeds, steps, guidance):
        out = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            token = next((t for t in self.shots if t in prompt), None)
            if token is None:
                out.append(self.backbone.generate([prompt], [seed], steps=steps, guidance=guidance))
            else:
                out.append(self.images_for(token, seed)[None])
        return torch.cat(out)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class ReturnsShots(_ReturnsImages):
    def images_for(self, token, seed):
        shots = self.shots[token]
        return shots[seed % len(shots)]


class ReturnsFreshRenders(_ReturnsImages):
    def images_for(self, token, seed):
        name = PROTOCOL["sessions"][int(token[4:-1]) - 1][0]
        concept = world.concept_by_name(name)
        return to_float(world.concept_renders(concept, seed + 1, seed=FRESH_SEED))[seed]


def _run(tmp_path, method: Method) -> Runner:
    spec = identity_of(load_protocol("toy", PROTOCOL), "naive", {})
    runner = Runner(spec, tmp_path / "run")
    runner.method = method
    runner.run()
    return runner


def _summary(runner: Runner) -> dict:
    return json.loads((runner.folder.path / "summary.json").read_text())


@pytest.fixture(scope="module")
def shots_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("shots"), ReturnsShots())


@pytest.fixture(scope="module")
def shots_summary(shots_run):
    return _summary(shots_run)


@pytest.fixture(scope="module")
def fresh_summary(tmp_path_factory):
    return _summary(_run(tmp_path_factory.mktemp("fresh"), ReturnsFreshRenders()))


def test_a_method_that_returns_its_shots_copies(shots_summary):
    assert shots_summary["copy_rate"]["value"] >= 0.9
    assert shots_summary["copy_rate_relative"]["value"] >= 0.9
    # each image is one of the shots IA_shots averages over; the toy evaluator is built to ignore placement and
    # background, so the gap stays small here (copy_rate is the toy world's copy detector)
    assert shots_summary["memorization_gap"]["ci_low"] > 0


def test_fresh_views_of_the_concept_do_not_copy_and_have_no_memorization_gap(fresh_summary, shots_summary):
    assert fresh_summary["copy_rate"]["value"] <= 0.15
    assert fresh_summary["copy_rate_relative"]["ci_high"] < shots_summary["copy_rate_relative"]["ci_low"]
    gap = fresh_summary["memorization_gap"]
    assert abs(gap["value"]) < 0.03
    assert gap["value"] < shots_summary["memorization_gap"]["value"]
    # unseen views of the concept score about as high as its shots do against held-out references
    assert fresh_summary["IA"]["value"] > 0.5


def test_held_out_views_are_copies_at_the_calibrated_rate():
    """By construction about 5% of a concept's held-out references are closer to a shot than the threshold; fresh
    views from yet another seed land near that rate too."""
    concept = world.concept_by_name("circle-1")
    shots = to_float(world.concept_renders(concept, 6, seed=world.SHOT_SEED))
    references = to_float(world.concept_renders(concept, 200, seed=world.REFERENCE_SEED))
    space = CopySpace.of(shots, references)
    assert space.measure(references)["copied"].mean() == pytest.approx(0.05, abs=0.011)
    fresh = to_float(world.concept_renders(concept, 200, seed=FRESH_SEED))
    assert space.measure(fresh)["copied"].mean() < 0.15
    assert space.measure(shots)["copied"].mean() == 1.0


@pytest.mark.parametrize("version", [1, 2])
def test_the_real_data_detectors_flag_copies_and_held_out_views_at_their_stated_rate(version, tiny_dino):
    """The detectors that need no oracle (the relative pixel distance of Carlini et al. 2023, DINO similarity; a tiny
    random ViT stands in for DINO): 5% of the references they were calibrated on by construction, about that for
    fresh views, every exact copy of a shot; in both toy worlds."""
    from lfsbench.dino import load_dino

    concept = world.concept_by_name("square-1")
    shots = to_float(world.concept_renders(concept, 6, world.SHOT_SEED, version))
    references = to_float(world.concept_renders(concept, 200, world.REFERENCE_SEED, version))
    fresh = to_float(world.concept_renders(concept, 200, FRESH_SEED, version))
    space = CopySpace.of(shots, references)
    assert space.measure(references)["relative_copy"].mean() == pytest.approx(FALSE_POSITIVE_RATE, abs=0.011)
    assert space.measure(fresh)["relative_copy"].mean() < 0.15
    assert space.measure(shots)["relative_copy"].mean() == 1.0
    dino = load_dino(str(tiny_dino))
    detector = FeatureCopy.of(dino.encode_images(shots), dino.encode_images(references))
    assert detector.measure(dino.encode_images(references)).mean() == pytest.approx(FALSE_POSITIVE_RATE, abs=0.011)
    assert detector.measure(dino.encode_images(fresh)).mean() < 0.15
    assert detector.measure(dino.encode_images(shots)).mean() == 1.0
    # one shot: the relative distance is always 1, so it is not computed (NaN, left out of the rate)
    single = CopySpace.of(shots[:1], references)
    assert np.isnan(single.measure(fresh[:4])["relative_copy"]).all()


def test_the_copies_picture_puts_each_image_over_its_nearest_shot(shots_run):
    from PIL import Image

    grid = shots_run.folder.copies_grid(1, "circle-1")
    assert grid.is_file()
    # top row (generated) and middle row (nearest shot) are pixel-identical for a method that returns its shots
    pixels = torch.from_numpy(np.asarray(Image.open(grid).convert("RGB")).copy())
    third = pixels.shape[0] // 3
    assert torch.equal(pixels[:third], pixels[third : 2 * third])
    assert not torch.equal(pixels[:third], pixels[2 * third :])


def test_class_accuracy_tells_the_asked_class_from_another():
    """Zero-shot class accuracy on the toy evaluator: renders of circles are classified as circles, not squares."""
    from lfsbench.evaluation.plan import class_vocabulary
    from lfsbench.evaluation.scorer import Scorer
    from lfsbench.toy import load_toy_evaluator

    protocol = load_protocol("toy", PROTOCOL)
    vocabulary = class_vocabulary(protocol, [])
    assert vocabulary == {c: f"a {c}" for c in world.CLASSES}
    scorer = Scorer(load_toy_evaluator(), vocabulary)
    circles = to_float(world.concept_renders(world.concept_by_name("circle-1"), 32, seed=FRESH_SEED))
    emb = scorer.embed(circles)
    assert scorer.class_correct(emb, "circle").mean() >= 0.9
    assert scorer.class_correct(emb, "square").mean() <= 0.1
    assert all(v != v for v in scorer.class_correct(emb, "cat"))  # a class the evaluator cannot name: NaN
