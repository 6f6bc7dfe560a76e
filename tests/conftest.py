"""Shared fixtures: a tiny toy build (seconds) for tests that need models but not trained ones."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from lfsbench.toy.recipe import Recipe

# The suite runs as pytest-xdist workers (pyproject.toml's addopts): each worker gets an equal share of at most two
# cores, since two torch processes on more threads than cores slow each other down several times. Processes the
# tests start (CLI runs, Ray and submitit workers) inherit the share through OMP_NUM_THREADS.
# lfsbench's consoles are made at import: with COLUMNS set then, their width is fixed at it; without it, a process
# with no terminal on stdin, stdout or stderr (a pytest-xdist worker) gets 80 columns, and a long temporary path
# folds mid-word. Output is never a terminal here, so the plain per-session lines a log gets are what tests read:
# FORCE_COLOR or TTY_COMPATIBLE (set by some CI systems) would make rich treat it as one.
os.environ["COLUMNS"] = "200"
for _variable in ("FORCE_COLOR", "TTY_COMPATIBLE"):
    os.environ.pop(_variable, None)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, os.cpu_count() or 1) // _WORKERS)
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)
# the base-model cache of the tests' runs (tiny builds and the shipped weights alike) stays with the test session,
# and is removed with it
_CACHE = tempfile.TemporaryDirectory(prefix="lfsbench-test-cache-")
os.environ["LFSBENCH_CACHE"] = _CACHE.name


def invoke(*args: str) -> tuple[int, str]:
    """Run the CLI in-process; return its exit code and its output with rich's line wrapping undone.

    Rich wraps at its console's width (200 columns, set above), so a long path can still split a phrase a test
    looks for; joining on single spaces makes the assertions independent of paths and widths.
    """
    from typer.testing import CliRunner

    from lfsbench.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


TINY_PROTOCOL = {  # the toy protocol cut to three sessions and a handful of images: a tiny run takes seconds
    # (without the untouched classes, which tests/test_untouched.py turns on)
    "sessions": [["circle-1"], ["square-1"], ["circle-2"]],
    "evaluation": {"images_per_prompt": 2, "steps": 3, "bootstrap": 100, "untouched_classes": []},
}
TINY_SETTINGS = {"steps": 2, "batch_size": 2}


def tiny_runner(weights, out, method="naive", seed=0, overrides=None, protocol=None, **options):
    """A Runner of `method` on the tiny protocol with the tiny build's models (TINY_SETTINGS unless `overrides`
    replace them); `options` go to the Runner (track, cache)."""
    from lfsbench.identity import identity_of
    from lfsbench.protocol import load_protocol
    from lfsbench.runner import Runner
    from lfsbench.toy import load_toy_backbone, load_toy_evaluator

    settings = {**TINY_SETTINGS, **(overrides or {})}
    identity = identity_of(load_protocol("toy", protocol or TINY_PROTOCOL), method, settings, seed)
    return Runner(identity, out, load_toy_backbone(weights=weights), load_toy_evaluator(weights=weights), **options)


def tiny_run(weights, out, method="naive", seed=0, overrides=None, protocol=None):
    """A finished tiny run in `out` (see tiny_runner); returns `out`."""
    tiny_runner(weights, out, method, seed, overrides, protocol).run()
    return out


@pytest.fixture(scope="session")
def tiny_runs(tiny_weights, tmp_path_factory):
    """Finished tiny runs that many test files read, built once per test session: naive at seeds 0 and 1, and lfs
    (context strength 0.5) at seed 0. Tests copy a run before changing it."""
    root = tmp_path_factory.mktemp("tiny_runs")
    tiny_run(tiny_weights, root / "naive-0", "naive", 0)
    tiny_run(tiny_weights, root / "naive-1", "naive", 1)
    tiny_run(tiny_weights, root / "lfs-0", "lfs", 0, {"context_strength": 0.5})
    return root


def use_tiny_weights(monkeypatch, weights) -> None:
    """Make every Runner (`lfsbench run`, `lfsbench study` in this process) load the tiny build's models instead of
    the shipped ones: the CLI's code path at the tiny build's speed."""
    from lfsbench.runner import Runner
    from lfsbench.toy import load_toy_backbone, load_toy_evaluator

    original = Runner.__init__

    def init(self, identity, output, backbone=None, evaluator=None, **options):
        models = load_toy_backbone(weights=weights), load_toy_evaluator(weights=weights)
        original(self, identity, output, *models, **options)

    monkeypatch.setattr(Runner, "__init__", init)


def tiny_recipe(steps: int = 4) -> Recipe:
    """A recipe small enough to build in seconds: same code path, untrained quality."""
    r = Recipe()
    r.world.pool_objects = 96
    r.evaluator.steps = steps
    r.evaluator.batch = 16
    r.backbone.vae_steps = steps
    r.backbone.vae_batch = 8
    r.backbone.unet_steps = steps
    r.backbone.unet_batch = 8
    r.backbone.unet_channels = (16, 32, 64)  # half the shipped widths: the same blocks, fewer multiply-adds
    r.backbone.vae_channels = (16, 32)
    r.checkpoint_every = 2
    return r


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A complete weights folder from the tiny recipe (untrained, but loadable like the shipped one)."""
    from lfsbench.toy.build import build

    out = tmp_path_factory.mktemp("tiny_weights")
    build(tiny_recipe(), out, tmp_path_factory.mktemp("tiny_work"))
    return out


@pytest.fixture(scope="session")
def tiny_dino(tmp_path_factory):
    """A randomly initialised ViT of DINO ViT-S/16's layout (224 px, 16 px patches), saved as transformers saves
    facebook/dino-vits16: what lfsbench/dino.py loads, at a size that runs in milliseconds."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=224, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    out = tmp_path_factory.mktemp("tiny_dino")
    ViTModel(config, add_pooling_layer=False).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    """A randomly initialised SDXL pipeline folder at 32 px: two CLIP text encoders (the second with projection), a
    UNet with SDXL's added-time conditioning (text_time), as diffusers' own SDXL tests shape one, saved with
    save_pretrained as an SDXL checkpoint is."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lfsbench.toy.models import write_clip_tokenizer

    torch.manual_seed(0)
    work = tmp_path_factory.mktemp("tiny_sdxl_parts")
    tokenizer = write_clip_tokenizer(work / "tokenizer", 16)
    text = CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408,
        max_position_embeddings=16, projection_dim=32,
    )  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )  # fmt: skip
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text), text_encoder_2=CLIPTextModelWithProjection(text),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("tiny_sdxl")
    pipe.save_pretrained(out)
    return out
