"""The toy build recipe: every number that decides the shipped toy weights, in one validated place."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorldRecipe(_Strict):
    version: int = 1  # lfsbench/toy/world.py WORLDS; recipes written before versions existed are world 1
    image_size: int = 32
    pool_objects: int = 16000  # distinct objects pre-rendered for training, each in 2 views
    twotone_rate: float = 0.3
    catalogue_size: int = 60  # reserved concepts, never shown in training
    # chance that a training caption names the background; None: world 1's 30% (see world.sample_caption)
    background_said: float | None = Field(None, ge=0.0, le=1.0)
    # two-object scenes (composition, world.sample_pair) pre-rendered for the autoencoder and the backbone, and the
    # share of each backbone batch drawn from them; 0 keeps a build without them bit-identical to earlier builds
    pair_objects: int = Field(0, ge=0)
    pair_rate: float = Field(0.0, ge=0.0, lt=1.0)


class EvaluatorRecipe(_Strict):
    embed_dim: int = 64
    vision_layers: tuple[int, int, int, int] = (1, 1, 1, 1)
    vision_width: int = 32
    text_width: int = 64
    context_length: int = 24
    steps: int = 1500
    batch: int = 128  # objects per step, each in two views
    lr: float = 2e-3
    instance_weight: float = 1.0


class BackboneRecipe(_Strict):
    vae_channels: tuple[int, ...] = (32, 64)
    latent_channels: int = 8
    vae_steps: int = 800
    vae_batch: int = 64
    vae_lr: float = 1e-3
    text_width: int = 64
    text_layers: int = 2
    max_length: int = 24
    unet_channels: tuple[int, int, int] = (32, 64, 128)
    unet_layers_per_block: int = 1
    unet_steps: int = 9000
    unet_batch: int = 32
    unet_lr: float = 8e-4
    warmup: int = 200
    ema_decay: float = 0.998
    empty_caption_rate: float = 0.1


class Recipe(_Strict):
    seed: int = 0
    world: WorldRecipe = WorldRecipe()
    evaluator: EvaluatorRecipe = EvaluatorRecipe()
    backbone: BackboneRecipe = BackboneRecipe()
    checkpoint_every: int = 250

    @model_validator(mode="after")
    def _pairs_fit(self) -> Recipe:
        """Two-object scenes need a world that has them, and both knobs (a pool nobody draws from, or a rate with no
        pool, would be ignored without a word); a batch keeps single objects and at least one scene."""
        from lfsbench.toy import world

        w, batch = self.world, self.backbone.unet_batch
        if not w.pair_objects and not w.pair_rate:
            return self
        if w.version not in world.WORLDS or world.WORLDS[w.version].pair_radius is None:
            raise ValueError(
                "world.pair_objects and world.pair_rate need a world with two-object scenes (world 2), not world "
                f"{w.version}"
            )
        if not w.pair_objects or not w.pair_rate:
            raise ValueError(
                "set both world.pair_objects (scenes rendered) and world.pair_rate (their share of a batch), or neither"
            )
        if not 1 <= round(batch * w.pair_rate) < batch:
            raise ValueError(
                f"world.pair_rate {w.pair_rate:g} gives {round(batch * w.pair_rate)} scenes of a backbone batch of "
                f"{batch}: it must give at least one and leave single objects"
            )
        return self
