"""Evaluation's fast paths: the sampler and precision (protocol fields evaluation.sampler, evaluation.precision) and
the batch plan (a session's images generated in device-sized batches across jobs, the same numbers)."""

import pytest
import torch
from test_runner import FAST, make_runner

from lfsbench.backbone import Backbone
from lfsbench.errors import LfsbenchError
from lfsbench.protocol import load_protocol
from lfsbench.toy import load_toy_backbone

PROMPTS, SEEDS = ["a circle", "a square on a black background"], [3, 4]


def test_sampling_swaps_the_sampler_and_restores_it(tiny_weights):
    backbone = load_toy_backbone(weights=tiny_weights)
    before = backbone.generate(PROMPTS, SEEDS, steps=4)
    ddim = backbone.pipeline.scheduler
    with backbone.sampling("ddim", "model"):  # the standard settings change nothing
        assert torch.equal(backbone.generate(PROMPTS, SEEDS, steps=4), before)
    with backbone.sampling("dpmsolver++"):
        scheduler = backbone.pipeline.scheduler
        assert type(scheduler).__name__ == "DPMSolverMultistepScheduler"
        assert scheduler.config.algorithm_type == "dpmsolver++"
        # the backbone's noise schedule, not the scheduler class's default
        assert torch.allclose(scheduler.alphas_cumprod, ddim.alphas_cumprod)
        assert backbone._img2img().scheduler is scheduler  # in-context generation samples the same way
        fast = backbone.generate(PROMPTS, SEEDS, steps=4)
        latents = backbone.encode_images(fast, sample=False)
        from_latents = backbone.generate_from_latents(PROMPTS, SEEDS, latents, strength=0.5, steps=4)
    assert fast.shape == before.shape and not torch.equal(fast, before)
    assert from_latents.shape == before.shape and torch.isfinite(from_latents).all()
    assert backbone.pipeline.scheduler is ddim and backbone._img2img().scheduler is ddim
    assert torch.equal(backbone.generate(PROMPTS, SEEDS, steps=4), before)


def test_bfloat16_precision_is_autocast_inside_the_block_only(tiny_weights):
    backbone = load_toy_backbone(weights=tiny_weights)
    before = backbone.generate(PROMPTS, SEEDS, steps=4)
    seen = []
    forward = backbone.unet.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return forward(*args, **kwargs)

    backbone.unet.forward = spy
    with backbone.sampling("ddim", "bfloat16"):
        half = backbone.generate(PROMPTS, SEEDS, steps=4)
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    assert torch.equal(backbone.generate(PROMPTS, SEEDS, steps=4), before)
    assert set(seen) == {None}
    # close to the float32 images (bfloat16 keeps 8 bits of mantissa), not equal to them
    assert not torch.equal(half, before) and (half - before).abs().mean() < 0.05


def test_unknown_sampler_or_precision_is_a_clear_error(tiny_weights):
    backbone = load_toy_backbone(weights=tiny_weights)
    with pytest.raises(LfsbenchError, match="dpmsolver"):
        with backbone.sampling("euler"):
            pass
    with pytest.raises(LfsbenchError, match="evaluation.sampler"):
        load_protocol("toy", {"evaluation": {"sampler": "euler"}})


def test_eta_draws_fresh_noise_per_image_inside_the_block_only(tiny_weights):
    """DDIM's eta 1 (CustomConcept101's sampling) changes the images, keeps each image a function of its own prompt and
    seed (its per-step noise comes from its own generator, whatever else is in the batch), is reproducible, reaches
    image-to-image too, and is undone after the block."""
    backbone = load_toy_backbone(weights=tiny_weights)
    before = backbone.generate(PROMPTS, SEEDS, steps=4)
    with backbone.sampling("ddim", eta=1.0):
        assert backbone.eta == 1.0
        ancestral = backbone.generate(PROMPTS, SEEDS, steps=4)
        again = backbone.generate(PROMPTS, SEEDS, steps=4, batch_size=1)  # one image per call: the same images
        second_alone = backbone.generate(PROMPTS[1:], SEEDS[1:], steps=4)
        latents = backbone.encode_images(before, sample=False)
        from_latents = backbone.generate_from_latents(PROMPTS, SEEDS, latents, strength=0.5, steps=4)
    deterministic = backbone.generate_from_latents(PROMPTS, SEEDS, latents, strength=0.5, steps=4)
    assert not torch.equal(ancestral, before) and torch.isfinite(ancestral).all()
    assert torch.allclose(again, ancestral, atol=1e-5) and torch.allclose(second_alone[0], ancestral[1], atol=1e-5)
    assert not torch.equal(from_latents, deterministic)
    assert backbone.eta == 0.0 and torch.equal(backbone.generate(PROMPTS, SEEDS, steps=4), before)


def test_eta_belongs_to_ddim_only(tiny_weights):
    backbone = load_toy_backbone(weights=tiny_weights)
    with pytest.raises(LfsbenchError, match="DDIM"):
        with backbone.sampling("dpmsolver++", eta=1.0):
            pass
    with pytest.raises(LfsbenchError, match="evaluation.eta"):
        load_protocol("toy", {"evaluation": {"sampler": "dpmsolver++", "eta": 1.0}})
    with pytest.raises(LfsbenchError, match="evaluation.eta"):
        load_protocol("toy", {"evaluation": {"eta": 2.0}})


def test_runner_evaluates_with_the_protocols_sampler_and_trains_with_ddim(tiny_weights, tmp_path, monkeypatch):
    """Evaluation (the base model's images and every session's) uses evaluation.sampler; training and what a method
    samples while it learns keep DDIM; after the run the backbone is as it was."""
    used = []
    generate = Backbone.generate

    def spy(self, *args, **kwargs):
        used.append(type(self.pipeline.scheduler).__name__)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(Backbone, "generate", spy)
    fast = {
        "sessions": [["circle-1"]],
        "evaluation": {**FAST["evaluation"], "sampler": "dpmsolver++", "precision": "bfloat16"},
    }
    runner = make_runner(tiny_weights, tmp_path / "run", protocol_overrides=fast)
    runner.run()
    assert used and set(used) == {"DPMSolverMultistepScheduler"}
    assert type(runner.backbone.pipeline.scheduler).__name__ == "DDIMScheduler"
    assert runner.backbone._forced_autocast is None


def test_batch_plan_gives_the_same_scores_whatever_the_batch(tiny_weights, tmp_path, monkeypatch):
    """The runner generates a session's class, concept and pair images as one batch plan; chunks that split and mix
    jobs (lfs: class prompts from noise beside concept prompts from stored contexts) score as one call per job."""
    import pandas as pd

    overrides = {"steps": 2, "batch_size": 2, "dfkd_steps": 2, "dfkd_batch_size": 1}
    protocol = {"sessions": [["circle-1"], ["square-1"]], "evaluation": FAST["evaluation"]}
    scores = {}
    for batch in (3, 1000):
        monkeypatch.setattr(Backbone, "generation_batch", property(lambda self, b=batch: b))
        out = tmp_path / f"batch-{batch}"
        make_runner(tiny_weights, out, "lfs", overrides, protocol).run()
        scores[batch] = pd.read_csv(out / "scores" / "session_01.csv")
    small, whole = scores[3], scores[1000]
    assert len(small) == len(whole) and (small.kind == whole.kind).all()
    numeric = small.select_dtypes("number").columns
    pd.testing.assert_frame_equal(small[numeric], whole[numeric], atol=1e-5, rtol=0)
