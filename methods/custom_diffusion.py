"""Custom Diffusion (Kumari et al., CVPR 2023) run session after session.

Per session: K/V + modifier token, plus prior preservation on class images that
the model generates for the bare class prompt. For real Stable Diffusion the
paper's settings are lr 1e-5 x batch 2 for 250-500 steps (see docs/methods.md).
"""

from pathlib import Path
from typing import Literal

import torch
from pydantic import model_validator

from lfsbench.kv_method import (
    SD_KV_PRESET,
    KVConfig,
    KVTokenMethod,
    PriorConfig,
    load_named_tensors,
    named_tensors_state,
)
from lfsbench.method import METHODS
from lfsbench.training import TrainingData, base_kv, generate_class_images, real_class_images


class CustomDiffusionConfig(KVConfig, PriorConfig):
    # class images: once per class by the base model (base, the default: the reference code samples its prior with
    # the pretrained model before training), real images read from class_images_dir (folder: the reference's
    # --real_prior, with images retrieved beforehand), or per class and session by the model before the session
    # (current: lfsbench's earlier default; over many sessions its class prompts drift with the model)
    class_images_from: Literal["current", "base", "folder"] = "base"
    class_images_dir: str | None = None  # folder: <class_images_dir>/<class noun>/ holds each class's real images

    @model_validator(mode="after")
    def _folder_named(self):
        if self.class_images_from == "folder" and not self.class_images_dir:
            raise ValueError(
                "class_images_from=folder needs class_images_dir: a folder with one sub-folder of real images per "
                "class noun (e.g. -o class_images_dir=real_reg, holding real_reg/cat/*.jpg)"
            )
        return self


@METHODS.register("custom-diffusion")
class CustomDiffusion(KVTokenMethod):
    description = "K/V + modifier token with prior preservation on generated class images (Custom Diffusion)"
    Config = CustomDiffusionConfig
    # 200 class images (the README's --num_class_images=200), sampled with 50 DDIM steps at scale 6, the settings of
    # the authors' sampling script (adobe-research/custom-diffusion, sample.py --ddim_steps 50 --scale 6); modifier
    # tokens initialised from rare words as diffusers' train_custom_diffusion.py does (--initializer_token
    # ktn+pll+ucd). The toy preset keeps the class noun: the toy text encoder never saw those words
    # (docs/methods.md, "Deviations and limits").
    presets = {
        "stable-diffusion": {
            **SD_KV_PRESET,
            "class_images": 200,
            "class_image_steps": 50,
            "class_image_guidance": 6.0,
            "token_init": "rare",
        }
    }

    def setup(self, backbone, seed):
        super().setup(backbone, seed)
        self._base_class_images: dict[str, torch.Tensor] = {}

    def class_images(self, class_prompt: str, class_noun: str) -> torch.Tensor:
        """Images of the class: generated for the bare class prompt by the current model (or, once, by the base
        model), or real ones from the class's folder."""
        c = self.config
        if c.class_images_from == "folder":
            if class_noun not in self._base_class_images:
                self._base_class_images[class_noun] = real_class_images(
                    Path(c.class_images_dir) / class_noun, c.class_images, self.backbone.resolution
                )
            return self._base_class_images[class_noun]
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
            images = self.class_images(concept.class_prompt, concept.class_noun)
            sources.append(TrainingData(images, [concept.class_prompt] * len(images), self.config.prior_weight))
        token_ids = self.add_tokens(session)
        return self.train(session, sources, token_ids)

    def state_dict(self):
        """K/V and tokens, and the class images kept between sessions (base or folder), so a resumed run keeps the
        same images and the same stored bytes."""
        return {**super().state_dict(), **named_tensors_state(self._base_class_images)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._base_class_images.update(load_named_tensors(state))

    def stored_bytes(self) -> int:
        """Class images kept from one session to the next (base or folder; counted as uint8, as DreamBooth's)."""
        return sum(images.numel() for images in self._base_class_images.values())

    def keeps(self) -> str:
        return {
            "current": "nothing",
            "base": "generated class images (base model)",
            "folder": "real class images",
        }[self.config.class_images_from]
