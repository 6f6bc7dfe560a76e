"""Common bases: `TokenMethod` (learns a modifier token per concept) and `KVTokenMethod` (+ cross-attention K/V).

naive, custom-diffusion, replay and lfs are KVTokenMethods; dreambooth is a TokenMethod that
trains the whole UNet.
"""

from __future__ import annotations

import re

import torch
from pydantic import Field

from lfsbench.concepts import SessionView
from lfsbench.method import Method, MethodConfig, ReportsSteps
from lfsbench.training import (
    KVTrainingConfig,
    TrainingData,
    add_modifier_token,
    final_loss,
    install_trainable_kv,
    kv_state,
    load_kv_state,
    token_embeddings,
    train_kv_session,
)


def named_tensors_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A {name: tensor} dict (class images by prompt or class noun) as safetensors entries: the tensor under
    `class_images.0000` and its name, UTF-8 bytes, under `class_prompt.0000` (the layout DreamBooth's saved states
    have always had); `load_named_tensors` reads it back."""
    state = {}
    for i, (name, tensor) in enumerate(tensors.items()):
        state[f"class_images.{i:04d}"] = tensor
        state[f"class_prompt.{i:04d}"] = torch.tensor(list(name.encode()), dtype=torch.uint8)
    return state


def load_named_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The {name: tensor} dict `named_tensors_state` wrote, in its order."""
    keys = sorted(k for k in state if k.startswith("class_images."))
    return {bytes(state[f"class_prompt.{k.split('.')[1]}"].tolist()).decode(): state[k] for k in keys}


TOKEN_KEY = re.compile(r"token(_\d+)?\.")  # a token row in a saved state: token.0000.<new1>, SDXL's token_2.0000.<new1>


class TokenConfig(MethodConfig):
    """Knobs of every method that learns modifier tokens (defaults tuned for the toy backbone)."""

    steps: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=1)
    token_lr: float = Field(5e-3, ge=0)
    # initialise a modifier token from its class noun (`class`), from rare words in turn (`rare`: RARE_TOKENS, as
    # diffusers' train_custom_diffusion.py --initializer_token ktn+pll+ucd does), or from this word
    token_init: str = Field("class", min_length=1)


# The rare words diffusers' Custom Diffusion example initialises its modifier tokens from (--initializer_token
# ktn+pll+ucd, one per token, each read as a vocabulary entry): with token_init=rare a run's k-th token starts from
# the entry RARE_TOKENS[k % 3].
RARE_TOKENS = ("ktn", "pll", "ucd")


# Stable Diffusion settings of every K/V + token method: diffusers' Custom Diffusion example
# (examples/custom_diffusion/README.md, single concept: --learning_rate=1e-5 --train_batch_size=2
# --max_train_steps=250 --scale_lr, 200 class images). --scale_lr multiplies the rate by batch size x
# gradient accumulation x processes: 1e-5 x 2 on one GPU, the rate the script trains with, for the K/V and the
# token embedding alike (Kumari et al., CVPR 2023: 8e-5 at batch 8, the same 1e-5 per image).
SD_KV_PRESET = {"steps": 250, "batch_size": 2, "kv_lr": 2e-5, "token_lr": 2e-5}


class PriorConfig(MethodConfig):
    """Prior preservation's knobs (custom-diffusion, dreambooth): class images and the weight of their loss."""

    prior_weight: float = Field(1.0, ge=0)
    class_images: int = Field(32, ge=1)
    class_image_steps: int = Field(25, ge=1)
    class_image_guidance: float = Field(5.0, ge=0)


class KVConfig(TokenConfig):
    """Knobs shared by every K/V + token method."""

    kv_lr: float = Field(1e-3, ge=0)


class TokenMethod(Method, ReportsSteps):
    """Holds the learned modifier tokens; subclasses decide what else is trained."""

    Config = TokenConfig

    def __init__(self, config: TokenConfig):
        super().__init__(config)
        self.tokens: dict[str, int] = {}

    def add_tokens(self, session: SessionView) -> list[int]:
        ids = []
        rare = self.config.token_init == "rare"
        for concept in session.concepts:
            init = {"class": concept.class_noun, "rare": RARE_TOKENS[len(self.tokens) % len(RARE_TOKENS)]}.get(
                self.config.token_init, self.config.token_init
            )
            self.tokens[concept.token] = add_modifier_token(self.backbone, concept.token, init, vocabulary_entry=rare)
            ids.append(self.tokens[concept.token])
        return ids

    def instance_data(self, session: SessionView) -> TrainingData:
        images = torch.cat([c.images for c in session.concepts])
        prompts = [c.training_prompt for c in session.concepts for _ in range(len(c.images))]
        return TrainingData(images, prompts)

    def train_seed(self, session: SessionView) -> int:
        return self.seed * 1000 + session.index

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Each token's rows: `token.0000.<new1>` in the first text encoder, `token_2.0000.<new1>` in SDXL's second."""
        state = {}
        for k, weight in enumerate(token_embeddings(self.backbone)):
            prefix = "token" if k == 0 else f"token_{k + 1}"
            for i, (tok, tid) in enumerate(self.tokens.items()):
                state[f"{prefix}.{i:04d}.{tok}"] = weight.detach()[tid].clone()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        for key in sorted(k for k in state if TOKEN_KEY.match(k)):
            prefix, _, tok = key.split(".", 2)
            k = 0 if prefix == "token" else int(prefix.removeprefix("token_")) - 1
            self.tokens[tok] = add_modifier_token(self.backbone, tok, "a")
            weights = token_embeddings(self.backbone)  # adding a token resizes the embeddings
            with torch.no_grad():
                weights[k][self.tokens[tok]] = state[key]

    def trainable_parameters(self) -> int:
        return len(self.tokens) * sum(weight.shape[1] for weight in token_embeddings(self.backbone))


class KVTokenMethod(TokenMethod):
    """Installs trainable cross-attention K/V (Custom Diffusion's parametrisation) beside the tokens."""

    Config = KVConfig

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        install_trainable_kv(backbone)

    def train(self, session: SessionView, sources: list[TrainingData], token_ids: list[int], extra_loss=None) -> dict:
        """One session of K/V + token training on `sources`, seeded by the run seed and session index."""
        c = self.config
        config = KVTrainingConfig(c.steps, c.batch_size, c.kv_lr, c.token_lr, seed=self.train_seed(session))
        losses = train_kv_session(self.backbone, sources, token_ids, config, extra_loss, progress=self.on_step)
        return {"final_loss": final_loss(losses)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"kv.{k}": v for k, v in kv_state(self.backbone).items()}, **super().state_dict()}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        load_kv_state(self.backbone, {k[3:]: v for k, v in state.items() if k.startswith("kv.")})
        super().load_state_dict(state)

    def trainable_parameters(self) -> int:
        return sum(v.numel() for v in kv_state(self.backbone).values()) + super().trainable_parameters()
