"""Shared fixtures: a tiny toy build (seconds) for tests that need models but not trained ones."""

from __future__ import annotations

import pytest
import torch

from lfsbench.toy.recipe import Recipe

torch.set_num_threads(2)


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
