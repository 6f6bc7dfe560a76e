"""Custom Diffusion (Kumari et al., CVPR 2023) run session after session.

Per session: K/V + modifier token, plus prior preservation on class images that
the model generates for the bare class prompt. For real Stable Diffusion the
paper's settings are lr 1e-5 x batch 2 for 250-500 steps (see docs/methods.md).
"""

from typing import Literal

import torch

from lfsbench.kv_method import SD_KV_PRESET, KVConfig, KVTokenMethod, PriorConfig
from lfsbench.method import METHODS
from lfsbench.training import TrainingData, base_kv, generate_class_images


class CustomDiffusionConfig(KVConfig, PriorConfig):
    # class images are generated per class noun and session, by the model before the session, or once by the base model
    class_images_from: Literal["current", "base"] = "current"


@METHODS.register("custom-diffusion")
class CustomDiffusion(KVTokenMethod):
    description = "K/V + modifier token with prior preservation on generated class images (Custom Diffusion)"
    Config = CustomDiffusionConfig
    presets = {
        "stable-diffusion": {**SD_KV_PRESET, "class_images": 200, "class_image_steps": 50, "class_image_guidance": 6.0}
    }

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        self._base_class_images: dict[str, torch.Tensor] = {}

    def class_images(self, class_prompt: str) -> torch.Tensor:
        """Images of the bare class prompt, from the current model (or, once, from the base model)."""
        c = self.config
        settings = (class_prompt, c.class_images, c.class_image_steps, c.class_image_guidance)
        if c.class_images_from == "current":
            return generate_class_images(self.backbone, *settings)
        if class_prompt not in self._base_class_images:
            with base_kv(self.backbone):
                self._base_class_images[class_prompt] = generate_class_images(self.backbone, *settings)
        return self._base_class_images[class_prompt]

    def learn(self, session):
        # class images come from the model as it is before this session's concepts are added
        sources = [self.instance_data(session)]
        for concept in session.concepts:
            images = self.class_images(concept.class_prompt)
            sources.append(TrainingData(images, [concept.class_prompt] * len(images), self.config.prior_weight))
        token_ids = self.add_tokens(session)
        return self.train(session, sources, token_ids)
