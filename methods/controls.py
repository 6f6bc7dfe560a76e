"""Positive controls: methods built to move one figure, so that the figure is seen to move (a figure no run has moved
gets no verdict in a comparison; docs/metrics.md).

- `swapped-tokens` (concept confusion): the `independent` anchor (each concept's own K/V, so nothing learned later
  blurs it), except that asked for a concept it answers with another concept of the same class. Concepts of a class
  are paired in the order they are learned (the first with the second, the third with the fourth); from the session
  that teaches a concept's partner on, every prompt that names one of the two names the other instead. What it draws
  is what `independent` learned, so its confusion rate should rise where `independent`'s stays low, and only for
  concepts that have a partner.
- `overwrites-class` (class retention: class accuracy, class TA drop, and the untouched classes' figures): naive,
  except that every session also trains the bare prompt of one class, `victim`, on the session's shots ("a cross" on
  images of the new circle). The victim's images should turn into the concept: its class accuracy falls. With an
  untouched class as victim (the default, `cross`, on the toy protocols) the untouched figures move while the
  concepts' own classes should not; with a learned concept's class (`-o victim=circle`) the class figures move.
"""

from __future__ import annotations

import json

import torch
from pydantic import Field

from lfsbench.concepts import TOKEN_PATTERN
from lfsbench.method import METHODS
from lfsbench.methods.anchors import Independent
from lfsbench.methods.naive import Naive, NaiveConfig
from lfsbench.training import TrainingData

PARTNERS_KEY = "swapped_tokens.partners"


@METHODS.register("swapped-tokens")
class SwappedTokens(Independent):
    description = (
        "positive control of concept confusion: `independent` answering a concept's prompts with its same-class partner"
    )
    role = "control"

    def __init__(self, config):
        super().__init__(config)
        self.partner: dict[str, str] = {}  # token -> the token it is answered with
        self.waiting: dict[str, str] = {}  # class noun -> the token of its concept that has no partner yet

    def learn(self, session):
        figures = super().learn(session)
        for concept in session.concepts:
            other = self.waiting.pop(concept.class_noun, None)
            if other is None:
                self.waiting[concept.class_noun] = concept.token
            else:
                self.partner[concept.token], self.partner[other] = other, concept.token
        return figures

    def swapped(self, prompt: str) -> str:
        """The prompt with each paired token replaced by its partner's."""
        return TOKEN_PATTERN.sub(lambda m: self.partner.get(m.group(0), m.group(0)), prompt)

    def generate(self, prompts, seeds, steps, guidance):
        return super().generate([self.swapped(p) for p in prompts], seeds, steps, guidance)

    def state_dict(self):
        pairing = json.dumps({"partner": self.partner, "waiting": self.waiting}).encode()
        return {**super().state_dict(), PARTNERS_KEY: torch.tensor(list(pairing), dtype=torch.uint8)}

    def load_state_dict(self, state):
        super().load_state_dict({k: v for k, v in state.items() if k != PARTNERS_KEY})
        pairing = json.loads(bytes(state[PARTNERS_KEY].tolist()).decode())
        self.partner, self.waiting = pairing["partner"], pairing["waiting"]


class OverwritesClassConfig(NaiveConfig):
    victim: str = Field("cross", min_length=1, description="the class whose bare prompt trains on the session's shots")
    victim_weight: float = Field(1.0, gt=0, description="the weight of the victim's loss term")


@METHODS.register("overwrites-class")
class OverwritesClass(Naive):
    description = (
        "positive control of class retention: naive that also trains a class's bare prompt (`victim`) on the shots"
    )
    role = "control"
    Config = OverwritesClassConfig

    def learn(self, session):
        token_ids = self.add_tokens(session)
        victim = self.config.victim
        images = torch.cat([c.images for c in session.concepts])
        prompts = [
            c.training_prompt.replace(f"{c.token} {c.class_noun}", victim) for c in session.concepts for _ in c.images
        ]
        overwrite = TrainingData(images, prompts, self.config.victim_weight)
        return self.train(session, [self.instance_data(session), overwrite], token_ids)
