"""Shared fixtures: a tiny toy build (seconds) for tests that need models but not trained ones."""

from __future__ import annotations

import pytest
import torch

from lfsbench.toy.recipe import Recipe

torch.set_num_threads(2)


def invoke(*args: str) -> tuple[int, str]:
    """Run the CLI in-process; return its exit code and its output with rich's line wrapping undone.

    Rich wraps at the terminal width (80 columns under CliRunner), so a long path can split any phrase a
    test looks for; joining on single spaces makes the assertions independent of paths and widths.
    """
    from typer.testing import CliRunner

    from lfsbench.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, " ".join(result.output.split())


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
