"""DINO image embeddings for IA_dino, the image alignment the field's published tables report beside CLIP's.

CustomConcept101's `evaluate.py` (adobe-research/custom-diffusion) loads DINO ViT-S/16 (`dino_vits16` from torch
hub), preprocesses with Resize(256, bicubic), CenterCrop(224) and ImageNet's mean and std, and takes the model's
output: the class token after the last layer norm. Here the same weights come through `transformers`
(`facebook/dino-vits16`, `ViTModel`): `last_hidden_state[:, 0]` is that class token (the pooler, which the hub
model does not have, is not used). Nothing downloads: the model is a local folder or an entry of the local Hugging
Face cache, and a missing one is an error naming what to fetch.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lfsbench.errors import LfsbenchError

DINO_REPO = "facebook/dino-vits16"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224  # CustomConcept101's DINOImageDataset


class DinoEncoder:
    """L2-normalised DINO class-token embeddings of images in [0, 1] (NCHW, any size)."""

    def __init__(self, model, name: str = DINO_REPO):
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """Resize the shortest side to 256 (bicubic, antialiased), centre-crop 224: CustomConcept101's transform on
        tensors (it applies torchvision's on PIL images read from PNG files)."""
        from torchvision.transforms.v2 import functional as TF

        x = TF.resize(images.float(), [RESIZE], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        return TF.center_crop(x, [CROP, CROP]).clamp(0, 1)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """(N, D) unit vectors on the CPU."""
        chunks = []
        for i in range(0, len(images), batch_size):
            x = (self.prepare(images[i : i + batch_size]) - self.mean) / self.std
            cls = self.model(pixel_values=x.to(self.device)).last_hidden_state[:, 0]
            chunks.append(F.normalize(cls.float(), dim=-1).cpu())
        return torch.cat(chunks) if chunks else torch.empty(0)


def load_dino(name: str, device="cpu") -> DinoEncoder:
    """A DINO ViT from a local folder (transformers' layout: config.json and model.safetensors) or a repository in
    the local Hugging Face cache (default facebook/dino-vits16); never downloads."""
    from transformers import ViTModel

    from lfsbench.backbone import quiet_libraries

    folder = Path(name).expanduser()
    if not folder.is_dir():
        if "/" not in name or name.startswith((".", "/", "~")):
            raise LfsbenchError(
                f"The DINO model {name!r} is neither a folder nor a Hugging Face repository name. Set the protocol's "
                f"dino to {DINO_REPO} (from the local cache), to a folder saved by transformers' save_pretrained, or "
                "to none (IA_dino is then not computed)."
            )
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(name, local_files_only=True, allow_patterns=["*.json", "*.safetensors"]))
        except Exception:  # not in the cache, or no cache at all
            raise LfsbenchError(
                f"The DINO model {name} (for IA_dino) is not in the local Hugging Face cache and lfsbench never "
                f"downloads. On a connected machine run: hf download {name} config.json model.safetensors (older "
                "huggingface_hub: huggingface-cli download ...), then copy the cache (~/.cache/huggingface/hub) "
                "here; or set dino to a folder holding them, or run with -o dino=none to leave IA_dino out."
            ) from None
    if not (folder / "config.json").is_file():
        raise LfsbenchError(
            f"The DINO folder {folder} has no config.json: it should hold a ViT saved by transformers' save_pretrained "
            f"(config.json and model.safetensors), as the Hugging Face repository {DINO_REPO} does."
        )
    quiet_libraries()
    try:
        model = ViTModel.from_pretrained(folder, add_pooling_layer=False, local_files_only=True)
    except (OSError, ValueError) as err:
        raise LfsbenchError(
            f"Could not load the DINO model in {folder}: {err}. It should be a ViT saved by transformers' "
            f"save_pretrained (config.json and model.safetensors), as {DINO_REPO} is."
        ) from None
    return DinoEncoder(model.to(device), name=str(name))
