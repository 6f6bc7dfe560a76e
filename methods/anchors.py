"""Two anchors a lifelong method is read between (reference points, not lifelong methods): what one session of
training reaches with nothing before it, and what training on everything at once reaches.

- `independent`: each session's concepts are learned from the base model alone (with one concept per session, as
  the toy protocols have, each concept alone), with naive's K/V + token training started from the base K/V in
  every session; the K/V is kept per concept and used only for the prompts that name it (a
  prompt that names none is the base model's). Nothing is forgotten by construction (IAD 0, no class drift), and
  its IA right after learning is the plasticity of one naive session on a concept with nothing before it: a method
  whose IA right after learning is lower learns less because of what it learned before (or of its regulariser).
  It keeps no data (stored bytes 0), but one K/V per concept.
- `joint`: every session retrains from the base model (base K/V, every token reset to its initial embedding) on
  the shots of every concept so far at once, with naive's budget per session: the multitask upper bound of
  continual learning, with no order and no forgetting to suffer. It keeps every shot (`stored_bytes`), so it is not
  a lifelong method. Its training images grow with the sessions; its steps do not.

Both take naive's knobs and toy defaults (methods/naive.py), so the three differ only in what each session starts
from and trains on.
"""

from __future__ import annotations

import torch

from lfsbench.kv_method import SD_KV_PRESET, KVTokenMethod
from lfsbench.method import METHODS
from lfsbench.methods.naive import NaiveConfig
from lfsbench.training import TrainingData, kv_state, load_kv_state, token_embeddings


class _FromBase(KVTokenMethod):
    """Remembers the base model's K/V and token rows, to start a session from them."""

    role = "anchor"
    Config = NaiveConfig
    presets = {"stable-diffusion": SD_KV_PRESET}

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        self.base_kv = kv_state(backbone)
        self.initial_rows: dict[str, list[torch.Tensor]] = {}  # token -> its initial embedding in each text encoder

    def add_tokens(self, session):
        ids = super().add_tokens(session)
        for concept, tid in zip(session.concepts, ids, strict=True):
            self.initial_rows[concept.token] = [w.detach()[tid].clone() for w in token_embeddings(self.backbone)]
        return ids


@METHODS.register("independent")
class Independent(_FromBase):
    description = "anchor: each concept learned from the base model alone, its K/V used only for its own prompts"

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        self.concept_kv: dict[str, dict[str, torch.Tensor]] = {}  # token -> the K/V trained on it alone

    def learn(self, session):
        load_kv_state(self.backbone, self.base_kv)
        token_ids = self.add_tokens(session)
        figures = self.train(session, [self.instance_data(session)], token_ids)
        for concept in session.concepts:
            self.concept_kv[concept.token] = kv_state(self.backbone)
        load_kv_state(self.backbone, self.base_kv)
        return figures

    def generate(self, prompts, seeds, steps, guidance):
        """Each prompt with the K/V of the concept it names (the base K/V for a prompt that names none)."""
        owner = [next((t for t in self.concept_kv if t in p), None) for p in prompts]
        out: list[torch.Tensor | None] = [None] * len(prompts)
        for token in dict.fromkeys(owner):
            load_kv_state(self.backbone, self.base_kv if token is None else self.concept_kv[token])
            mine = [i for i, t in enumerate(owner) if t == token]
            images = self.backbone.generate([prompts[i] for i in mine], [seeds[i] for i in mine], steps, guidance)
            for i, image in zip(mine, images, strict=True):
                out[i] = image
        load_kv_state(self.backbone, self.base_kv)
        return torch.stack(out)

    def state_dict(self):
        state = super().state_dict()  # the base K/V (installed after each session) and the tokens
        for i, (token, kv) in enumerate(self.concept_kv.items()):
            state.update({f"concept_kv.{i:04d}.{token}.{name}": w for name, w in kv.items()})
        return state

    def load_state_dict(self, state):
        super().load_state_dict({k: v for k, v in state.items() if not k.startswith("concept_kv.")})
        for key in sorted(k for k in state if k.startswith("concept_kv.")):
            _, _, token, name = key.split(".", 3)
            self.concept_kv.setdefault(token, {})[name] = state[key]

    def keeps(self) -> str:
        return "nothing (one K/V per concept, weights with no image)"


@METHODS.register("joint")
class Joint(_FromBase):
    description = "anchor: every session retrains from the base model on every concept's shots so far at once"

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        self.memory: dict[str, tuple[torch.Tensor, str]] = {}  # token -> (uint8 NCHW shots, training prompt)

    def learn(self, session):
        for concept in session.concepts:
            shots = (concept.images.clamp(0, 1) * 255).round().to(torch.uint8)
            self.memory[concept.token] = (shots, concept.training_prompt)
        load_kv_state(self.backbone, self.base_kv)
        self.add_tokens(session)
        weights = token_embeddings(self.backbone)
        with torch.no_grad():  # every earlier token back to its initial embedding
            for token, rows in self.initial_rows.items():
                for weight, row in zip(weights, rows, strict=True):
                    weight[self.tokens[token]] = row
        images = torch.cat([shots.float() / 255 for shots, _ in self.memory.values()])
        prompts = [prompt for shots, prompt in self.memory.values() for _ in range(len(shots))]
        return self.train(session, [TrainingData(images, prompts)], [self.tokens[t] for t in self.memory])

    def state_dict(self):
        state = super().state_dict()
        for i, (token, (shots, prompt)) in enumerate(self.memory.items()):
            state[f"memory.{i:04d}.{token}"] = shots
            state[f"memory_prompt.{i:04d}.{token}"] = torch.tensor(list(prompt.encode()), dtype=torch.uint8)
            for k, row in enumerate(self.initial_rows[token]):
                state[f"initial_row.{i:04d}.{k}.{token}"] = row
        return state

    def load_state_dict(self, state):
        super().load_state_dict({k: v for k, v in state.items() if not k.startswith(("memory", "initial_row."))})
        for key in sorted(k for k in state if k.startswith("memory.")):
            _, index, token = key.split(".", 2)
            prompt = bytes(state[f"memory_prompt.{index}.{token}"].tolist()).decode()
            self.memory[token] = (state[key], prompt)
        for key in sorted(k for k in state if k.startswith("initial_row.")):
            _, _, _, token = key.split(".", 3)
            self.initial_rows.setdefault(token, []).append(state[key])

    def stored_bytes(self) -> int:
        return sum(shots.numel() * shots.element_size() for shots, _ in self.memory.values())

    def keeps(self) -> str:
        return "shots as images (uint8)"
