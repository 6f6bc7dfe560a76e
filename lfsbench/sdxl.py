"""Stable Diffusion XL behind the `Backbone` interface: two text encoders and the added-time conditioning.

Methods never see the difference. `encode_prompts` returns an `SDXLContext` (both encoders' penultimate hidden
states side by side, the second encoder's pooled embedding, and the size-and-crop time ids), which indexes like a
tensor (`context[idx]`) and which `predict_noise` hands the UNet as diffusers' SDXL training scripts do. Modifier
tokens live in both encoders' input embeddings (`text_encoders`, `tokenizers`). Generation is diffusers'
StableDiffusionXLPipeline (image-to-image: its Img2Img pipeline on the same components).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lfsbench.backbone import Backbone, quiet_libraries, resolve_device_and_dtype


@dataclass
class SDXLContext:
    """The UNet's text conditioning for a batch of prompts; `context[idx]` selects prompts as a tensor would."""

    embeds: torch.Tensor  # [N, 77, hidden 1 + hidden 2]: both encoders' penultimate hidden states, concatenated
    pooled: torch.Tensor  # [N, projection]: the second encoder's pooled, projected embedding
    time_ids: torch.Tensor  # [N, 6]: original size, crop top-left, target size

    def __getitem__(self, idx) -> SDXLContext:
        return SDXLContext(self.embeds[idx], self.pooled[idx], self.time_ids[idx])

    def __len__(self) -> int:
        return len(self.embeds)


class SDXLBackbone(Backbone):
    """A diffusers SDXL folder (model_index.json, unet/, vae/, text_encoder/, text_encoder_2/, tokenizer/,
    tokenizer_2/, scheduler/)."""

    @classmethod
    def from_pretrained(cls, folder, device=None, dtype=None, name=None) -> SDXLBackbone:
        from diffusers import StableDiffusionXLPipeline

        folder = Path(folder)
        device, dtype = resolve_device_and_dtype(device, dtype)
        quiet_libraries()
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, dtype=dtype)
        backbone = cls(cls._prepared(pipe, device), name or folder.name)
        backbone._weight_dtype = dtype
        if pipe.vae.config.force_upcast:  # SDXL's VAE overflows in float16 (diffusers upcasts it to decode)
            pipe.vae.to(torch.float32)
        return backbone

    @property
    def weight_dtype(self) -> torch.dtype:
        """The frozen UNet's dtype as loaded (the VAE may have been upcast to float32)."""
        return self._weight_dtype

    @property
    def text_encoders(self) -> list:
        return [self.pipeline.text_encoder, self.pipeline.text_encoder_2]

    @property
    def tokenizers(self) -> list:
        return [self.pipeline.tokenizer, self.pipeline.tokenizer_2]

    def time_ids(self, n: int) -> torch.Tensor:
        """Generated and trained at the backbone's resolution, uncropped: (R, R, 0, 0, R, R), as diffusers' SDXL
        training scripts pass for images resized and centre-cropped to the resolution."""
        r = self.resolution
        return torch.tensor([[r, r, 0, 0, r, r]], device=self.device, dtype=torch.float32).repeat(n, 1)

    def encode_prompts(self, prompts: list[str]) -> SDXLContext:
        embeds, _, pooled, _ = self.pipeline.encode_prompt(
            prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return SDXLContext(embeds, pooled, self.time_ids(len(prompts)))

    def predict_noise(self, noisy: torch.Tensor, timesteps: torch.Tensor, context: SDXLContext) -> torch.Tensor:
        added = {"text_embeds": context.pooled, "time_ids": context.time_ids}
        return self.unet(noisy, timesteps, context.embeds, added_cond_kwargs=added).sample

    def _img2img(self):
        """SDXL's image-to-image pipeline on this backbone's components; it takes 4-channel latents as they are."""
        if getattr(self, "_img2img_pipe", None) is None:
            from diffusers import StableDiffusionXLImg2ImgPipeline

            self._img2img_pipe = StableDiffusionXLImg2ImgPipeline(**self.pipeline.components)
            self._img2img_pipe.set_progress_bar_config(disable=True)
        self._img2img_pipe.scheduler = self.pipeline.scheduler  # the sampler of the moment (`sampling`)
        return self._img2img_pipe
