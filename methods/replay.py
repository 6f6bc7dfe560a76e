"""Experience replay: naive K/V + token training that also replays the shots of earlier concepts.

The method keeps up to `replay_shots` images of every concept it has learned (uint8, as a
user's disk would) and, on every step of later sessions, adds a batch drawn from that
memory with the concepts' own prompts (Mammoth's ER, with a per-concept budget instead of
a reservoir). What it keeps is reported as stored bytes.
"""

from __future__ import annotations

import torch
from pydantic import Field

from lfsbench.kv_method import SD_KV_PRESET, KVConfig, KVTokenMethod
from lfsbench.method import METHODS
from lfsbench.training import TrainingData


class ReplayConfig(KVConfig):
    # 400 steps on the toy backbone: chosen by the equal-budget sweep on toy-tune (reports/sweeps/toy-tune.yaml,
    # docs/methods.md): final IA 0.701 against 0.567 at 200 steps, within the TA, copy and class guards
    steps: int = Field(400, ge=1)
    replay_shots: int = Field(6, ge=1)  # images kept per concept (the budget)
    replay_weight: float = Field(1.0, ge=0)  # weight of the replayed batch's loss


@METHODS.register("replay")
class Replay(KVTokenMethod):
    description = "naive K/V + token training that replays the kept shots of earlier concepts with their prompts"
    Config = ReplayConfig
    presets = {"stable-diffusion": SD_KV_PRESET}

    def __init__(self, config: ReplayConfig):
        super().__init__(config)
        self.memory: dict[str, tuple[torch.Tensor, str]] = {}  # token -> (uint8 NCHW shots, training prompt)

    def learn(self, session):
        sources = [self.instance_data(session)]
        if self.memory:
            images = torch.cat([shots.float() / 255 for shots, _ in self.memory.values()])
            prompts = [prompt for shots, prompt in self.memory.values() for _ in range(len(shots))]
            sources.append(TrainingData(images, prompts, self.config.replay_weight))
        token_ids = self.add_tokens(session)
        figures = self.train(session, sources, token_ids)
        for concept in session.concepts:
            shots = (concept.images[: self.config.replay_shots].clamp(0, 1) * 255).round().to(torch.uint8)
            self.memory[concept.token] = (shots, concept.training_prompt)
        return figures

    def state_dict(self):
        state = super().state_dict()
        for i, (tok, (shots, prompt)) in enumerate(self.memory.items()):
            state[f"memory.{i:04d}.{tok}"] = shots
            state[f"memory_prompt.{i:04d}.{tok}"] = torch.tensor(list(prompt.encode()), dtype=torch.uint8)
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for key in sorted(k for k in state if k.startswith("memory.")):
            _, index, tok = key.split(".", 2)
            prompt = bytes(state[f"memory_prompt.{index}.{tok}"].tolist()).decode()
            self.memory[tok] = (state[key], prompt)

    def stored_bytes(self) -> int:
        return sum(shots.numel() * shots.element_size() for shots, _ in self.memory.values())

    def keeps(self) -> str:
        return "shots as images (uint8)"
