"""The common base of methods that learn cross-attention K/V and modifier tokens (naive, custom-diffusion, replay, lfs)."""

from __future__ import annotations

import torch

from lfsbench.concepts import SessionView
from lfsbench.method import Method, MethodConfig
from lfsbench.training import (
    KVTrainingConfig,
    TrainingData,
    add_modifier_token,
    install_trainable_kv,
    kv_state,
    load_kv_state,
    train_kv_session,
)


class KVConfig(MethodConfig):
    """Knobs shared by every K/V + token method (defaults tuned for the toy backbone)."""

    steps: int = 200
    batch_size: int = 8
    kv_lr: float = 1e-3
    token_lr: float = 5e-3
    token_init: str = "class"  # initialise a modifier token from its class noun, or from this word


class KVTokenMethod(Method):
    """Holds the learned tokens and installed K/V; subclasses decide what each session trains on."""

    Config = KVConfig

    def __init__(self, config: KVConfig):
        super().__init__(config)
        self.tokens: dict[str, int] = {}

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        install_trainable_kv(backbone)

    def add_tokens(self, session: SessionView) -> list[int]:
        ids = []
        for concept in session.concepts:
            init = concept.class_noun if self.config.token_init == "class" else self.config.token_init
            self.tokens[concept.token] = add_modifier_token(self.backbone, concept.token, init)
            ids.append(self.tokens[concept.token])
        return ids

    def instance_data(self, session: SessionView) -> TrainingData:
        images = torch.cat([c.images for c in session.concepts])
        prompts = [c.training_prompt for c in session.concepts for _ in range(len(c.images))]
        return TrainingData(images, prompts)

    def train(self, session: SessionView, sources: list[TrainingData], token_ids: list[int], extra_loss=None) -> dict:
        """One session of K/V + token training on `sources`, seeded by the run seed and session index."""
        c = self.config
        config = KVTrainingConfig(c.steps, c.batch_size, c.kv_lr, c.token_lr, seed=self.seed * 1000 + session.index)
        losses = train_kv_session(self.backbone, sources, token_ids, config, extra_loss, progress=self.on_step)
        return {"final_loss": float(sum(losses[-20:]) / max(1, len(losses[-20:])))}

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict[str, torch.Tensor]:
        emb = self.backbone.text_encoder.get_input_embeddings().weight.detach()
        state = {f"kv.{k}": v for k, v in kv_state(self.backbone).items()}
        for i, (tok, tid) in enumerate(self.tokens.items()):
            state[f"token.{i:04d}.{tok}"] = emb[tid].clone()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        load_kv_state(self.backbone, {k[3:]: v for k, v in state.items() if k.startswith("kv.")})
        for key in sorted(k for k in state if k.startswith("token.")):
            tok = key.split(".", 2)[2]
            self.tokens[tok] = add_modifier_token(self.backbone, tok, "a")
            with torch.no_grad():
                self.backbone.text_encoder.get_input_embeddings().weight[self.tokens[tok]] = state[key]

    def trainable_parameters(self) -> int:
        kv = sum(v.numel() for v in kv_state(self.backbone).values())
        return kv + len(self.tokens) * self.backbone.text_encoder.get_input_embeddings().weight.shape[1]
