"""Orthogonal incremental LoRA: a new LoRA adapter per session, merged with the earlier ones at the session's end,
its down-projection kept orthogonal to theirs by O-LoRA's penalty (Wang et al., "Orthogonal Subspace Learning for
Language Model Continual Learning", EMNLP Findings 2023):

    L_orth = orth_weight * sum over layers sum_{i < t} sum_{j,k} |(A_i A_t^T)_{jk}|

With orth_weight 0 it is incremental LoRA, the "merge" strategy of Staniszewski et al. ("Low-Rank Continual
Personalization of Diffusion Models", 2024). The merge is exact (the earlier factors are stacked in one frozen
adapter, lfsbench/lora_method.py), not rounded into half-precision weights.
"""

from pydantic import Field

from lfsbench.lora_method import SD_LORA_PRESET, LoRAConfig, LoRAMethod
from lfsbench.method import METHODS


class OLoRAConfig(LoRAConfig):
    # O-LoRA's lambda_1 (0.5 in its paper); 0 is incremental LoRA. The toy sweep (reports/sweeps/toy-tune-lora.yaml)
    # kept it. 0.05 gives nearly the same figures, yet the penalty acts (under a hundredth of orth_weight=0's
    # overlap, and other figures: scripts/olora_overlap.py, docs/methods.md): once it dominates A's gradient, AdamW's
    # normalised step does not depend on its scale
    orth_weight: float = Field(0.5, ge=0)


@METHODS.register("o-lora")
class OLoRA(LoRAMethod):
    description = "a LoRA adapter per session, merged after it, kept orthogonal to the earlier ones (O-LoRA penalty)"
    Config = OLoRAConfig
    presets = {"stable-diffusion": SD_LORA_PRESET}

    def penalty(self, session):
        past = {name: a for name, (a, b) in self.past_factors().items()}  # the earlier sessions' A, stacked
        if not past or self.config.orth_weight == 0:
            return None

        def orthogonality(step):
            total = sum((past[name] @ a.T).abs().sum() for name, (a, _) in self.new_factors().items())
            return self.config.orth_weight * total

        return orthogonality
