"""Naive sequential fine-tuning: each session trains cross-attention K/V and the new token, with no regularisation."""

from pydantic import Field

from lfsbench.kv_method import SD_KV_PRESET, KVConfig, KVTokenMethod
from lfsbench.method import METHODS


class NaiveConfig(KVConfig):
    # 400 steps on the toy backbone: chosen by the equal-budget sweep on toy-tune (reports/sweeps/toy-tune.yaml,
    # docs/methods.md): final IA 0.586 against 0.519 at 200 steps, within the TA and class guards
    steps: int = Field(400, ge=1)


@METHODS.register("naive")
class Naive(KVTokenMethod):
    description = "sequential fine-tuning of cross-attention K/V + modifier token, nothing kept, no regularisation"
    Config = NaiveConfig
    presets = {"stable-diffusion": SD_KV_PRESET}

    def learn(self, session):
        token_ids = self.add_tokens(session)
        return self.train(session, [self.instance_data(session)], token_ids)
