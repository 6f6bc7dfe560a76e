"""The two ceilings every method sits between on the toy world: `retrieval` copies, `oracle` learns perfectly.

- `retrieval` answers every prompt of a learned concept with one of its stored shots (chosen by the image's seed):
  the copying ceiling. Its IA is what a lookup table earns; its copy rate is 1 and its compliance is the chance that
  a random shot happens to show what the prompt asks (docs/metrics.md). A prompt naming two concepts gets a shot of
  the one learned first: a copy cannot compose.
- `oracle` answers with a fresh render of the concept (its class and pattern read from the shots by the toy world's
  attribute oracle, lfsbench/toy/oracle.py) at a new placement drawn from the world's own distribution, on the
  background the prompt names: the learning ceiling, a perfect generator of new views that follows its prompt. A
  prompt naming two concepts gets a fresh two-object scene of both (world.sample_pair).

Neither trains: a prompt without a learned concept's token (a class prompt) is the base model's image, so neither
forgets a class. Both keep their shots (reported as stored bytes). `oracle` runs on the toy world only.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from lfsbench.errors import LfsbenchError
from lfsbench.images import to_float
from lfsbench.method import METHODS, Method, RendersToyWorld


class _Ceiling(Method):
    """Keeps each concept's shots by token; answers prompts that name a learned token, the base model the rest."""

    role = "ceiling"

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        self.shots: dict[str, torch.Tensor] = {}

    def learn(self, session):
        for c in session.concepts:
            self.shots[c.token] = c.images.float().cpu()
        return {}

    def _answer(self, tokens: list[str], prompt: str, seed: int) -> torch.Tensor:
        """The image of a prompt that names the learned `tokens` (in the order they were learned: two for a
        two-concept prompt)."""
        raise NotImplementedError

    def generate(self, prompts, seeds, steps, guidance):
        tokens = [[t for t in self.shots if t in p] for p in prompts]
        out: list[torch.Tensor | None] = [None] * len(prompts)
        base = [i for i, t in enumerate(tokens) if not t]
        if base:
            images = self.backbone.generate([prompts[i] for i in base], [seeds[i] for i in base], steps, guidance)
            for i, image in zip(base, images, strict=True):
                out[i] = image
        for i, named in enumerate(tokens):
            if named:
                out[i] = self._answer(named, prompts[i], int(seeds[i]))
        return torch.stack(out)

    def state_dict(self):
        return {f"shots/{token}": images for token, images in self.shots.items()}

    def load_state_dict(self, state):
        self.shots = {key.removeprefix("shots/"): images for key, images in state.items()}

    def stored_bytes(self):
        return sum(images.numel() for images in self.shots.values())  # as 8-bit images

    def keeps(self):
        return "shots as images"


@METHODS.register("retrieval")
class Retrieval(_Ceiling):
    description = "ceiling: returns a stored training shot for every prompt of a learned concept (copies, never learns)"

    def _answer(self, tokens, prompt, seed):
        shots = self.shots[
            tokens[0]
        ]  # a two-concept prompt gets one shot (of the first learned): a copy cannot compose
        return shots[int(np.random.default_rng([seed, 17]).integers(len(shots)))]


@METHODS.register("oracle")
class Oracle(RendersToyWorld, _Ceiling):
    description = (
        "ceiling (toy world): a fresh render of the concept at a new placement, on the background the prompt names"
    )

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        self._appearances = {}

    def learn(self, session):
        self._world()  # off the toy world, fail before the first session rather than at generation
        return super().learn(session)

    def _world(self) -> int:
        if self.toy_world is None:
            raise LfsbenchError(
                "Method 'oracle' renders the toy world, and this protocol's concepts are not the toy world's. Use a "
                "toy protocol (e.g. -p toy-v2), or `retrieval` as a ceiling on other data."
            )
        return self.toy_world

    def _appearance(self, token):
        from lfsbench.toy import oracle

        if token not in self._appearances:
            self._appearances[token] = oracle.appearance(oracle.read(self.shots[token], self._world()))
        return self._appearances[token]

    def _answer(self, tokens, prompt, seed):
        from lfsbench.toy import copying, world

        looks = [self._appearance(token) for token in tokens[:2]]
        rng = np.random.default_rng([world.ORACLE_SEED, seed, *(zlib.crc32(token.encode()) for token in tokens[:2])])
        background = copying.stated_background(prompt)
        if len(looks) == 1:
            place = world.sample_placement(rng, self._world(), looks[0].cls, background)
            return to_float(world.render(looks, [place]))[0]
        places = world.sample_pair(rng, self._world(), tuple(look.cls for look in looks), background)
        return to_float(world.render_scenes([tuple(zip(looks, places, strict=True))]))[0]
