"""Elastic weight consolidation (Kirkpatrick et al. 2017) on naive's K/V + token training.

After each session the method estimates the diagonal Fisher information of the diffusion loss on that session's
shots with respect to the trained cross-attention K/V: the mean squared gradient over `fisher_samples` draws of one
shot, a timestep and a noise (the empirical Fisher, as Avalanche's EWC computes it), and keeps the K/V it ended
with. In later sessions the loss adds `ewc_weight / 2 * sum_i F_i (theta_i - theta*_i)^2` per earlier session,
with the Fisher of each session summed (the multi-task form of the paper, one anchor per session: Avalanche's
`mode="separate"`). No data is kept (stored bytes 0): the Fisher and the anchors are weights, one K/V-sized pair
per session.

The toy defaults (naive's K/V learning rate and steps, `ewc_weight` 1e4) are the ones the equal-budget sweep on
`toy-tune` kept (reports/sweeps/toy-tune-ewc.yaml; the table and the penalty's effect on the high-Fisher weights
are in docs/methods.md).
"""

from __future__ import annotations

import torch
from pydantic import Field

from lfsbench.kv_method import SD_KV_PRESET, KVTokenMethod
from lfsbench.method import METHODS
from lfsbench.methods.naive import NaiveConfig
from lfsbench.training import install_trainable_kv, noise_prediction_loss

FISHER_SEED = 30_000  # the Fisher draws use seeds apart from training's and the evaluation's


class EWCConfig(NaiveConfig):
    ewc_weight: float = Field(1.0e4, ge=0)  # lambda; kept by the toy-tune sweep (see the module docstring)
    fisher_samples: int = Field(32, ge=1)  # gradient draws per session for the diagonal Fisher


@METHODS.register("ewc")
class EWC(KVTokenMethod):
    description = "naive K/V + token training with elastic weight consolidation (diagonal Fisher) on the K/V"
    Config = EWCConfig
    presets = {"stable-diffusion": SD_KV_PRESET}

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        self.consolidated: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []  # (Fisher, anchor)

    def _kv(self) -> dict[str, torch.nn.Parameter]:
        """The trained K/V weights by name (the names `kv_state` uses)."""
        out = {}
        for name, proc in self.backbone.unet.attn_processors.items():
            if hasattr(proc, "to_k_custom_diffusion"):
                out[f"{name}.to_k"] = proc.to_k_custom_diffusion.weight
                out[f"{name}.to_v"] = proc.to_v_custom_diffusion.weight
        return out

    def learn(self, session):
        token_ids = self.add_tokens(session)
        penalty = self.penalty if self.consolidated else None
        data = self.instance_data(session)
        figures = self.train(session, [data], token_ids, penalty)
        self.consolidated.append((self.fisher(session, data), {n: w.detach().clone() for n, w in self._kv().items()}))
        return figures

    def penalty(self, step: int) -> torch.Tensor:
        """EWC's quadratic penalty on the K/V, summed over the earlier sessions' Fisher and anchors."""
        kv = self._kv()
        total = sum(
            (fisher[n] * (kv[n] - anchor[n]) ** 2).sum() for fisher, anchor in self.consolidated for n in fisher
        )
        return self.config.ewc_weight / 2 * total

    def fisher(self, session, data) -> dict[str, torch.Tensor]:
        """The diagonal empirical Fisher of the diffusion loss on the session's shots (`data`): the mean over draws of
        each K/V weight's squared gradient, one shot, timestep and noise per draw."""
        bb = self.backbone
        params = install_trainable_kv(bb)
        for p in params:
            p.requires_grad_(True)
        kv = self._kv()
        squares = {n: torch.zeros_like(w) for n, w in kv.items()}
        generator = torch.Generator(bb.device).manual_seed(FISHER_SEED + self.seed * 1000 + session.index)
        mean, std = bb.posterior(data.images)
        try:
            for _ in range(self.config.fisher_samples):
                i = int(torch.randint(0, len(data.prompts), (1,), generator=generator, device=bb.device))
                eps = torch.randn(mean[i : i + 1].shape, generator=generator, device=bb.device)
                latents = (mean[i : i + 1] + std[i : i + 1] * eps) * bb.vae.config.scaling_factor
                with bb.autocast():
                    loss = noise_prediction_loss(bb, latents, bb.encode_prompts([data.prompts[i]]), generator)
                grads = torch.autograd.grad(loss, list(kv.values()))
                for n, g in zip(kv, grads, strict=True):
                    squares[n] += g.detach().float() ** 2
        finally:
            for p in params:
                p.requires_grad_(False)
        return {n: s / self.config.fisher_samples for n, s in squares.items()}

    def state_dict(self):
        state = super().state_dict()
        for i, (fisher, anchor) in enumerate(self.consolidated):
            state.update({f"fisher.{i:04d}.{n}": f for n, f in fisher.items()})
            state.update({f"anchor.{i:04d}.{n}": a for n, a in anchor.items()})
        return state

    def load_state_dict(self, state):
        super().load_state_dict({k: v for k, v in state.items() if not k.startswith(("fisher.", "anchor."))})
        sessions = sorted({k.split(".", 2)[1] for k in state if k.startswith("fisher.")})
        self.consolidated = [
            tuple(
                {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"{kind}.{i}.")}
                for kind in ("fisher", "anchor")
            )
            for i in sessions
        ]

    def keeps(self) -> str:
        return "nothing (a diagonal Fisher and a K/V anchor per session, weights with no image)"
