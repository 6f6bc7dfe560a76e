"""CLIP-family encoders (through open_clip) with an embedding cache, for TA and IA."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lfsbench.errors import LfsbenchError


class Evaluator:
    """L2-normalised image and text embeddings from an open_clip model."""

    def __init__(self, model, tokenizer, image_size: int, mean, std, name: str = "evaluator"):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.name = name
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_open_clip(cls, model_name: str, pretrained: str | None = None, device="cpu") -> "Evaluator":
        """Load any open_clip model: a `local-dir:` folder, or a model name with a pretrained tag or file."""
        import open_clip

        if model_name.startswith("local-dir:") and not Path(model_name[len("local-dir:"):]).is_dir():
            raise LfsbenchError(
                f"The evaluator folder {model_name[len('local-dir:'):]} does not exist. It should hold "
                "open_clip_config.json and open_clip_model.safetensors (open_clip's local-dir layout)."
            )
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(model_name)
        cfg = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
        std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
        return cls(model, tokenizer, int(size), mean, std, name=model_name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] NCHW at any size -> the model's input: resize shortest side, centre crop, normalise."""
        x = images.float()
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            h, w = x.shape[-2:]
            scale = self.image_size / min(h, w)
            x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True, align_corners=False)
            top, left = (x.shape[-2] - self.image_size) // 2, (x.shape[-1] - self.image_size) // 2
            x = x[..., top : top + self.image_size, left : left + self.image_size]
        return ((x.clamp(0, 1) - self.mean) / self.std).to(self.device)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Images in [0, 1], NCHW -> (N, D) unit vectors, on the CPU."""
        chunks = [
            F.normalize(self.model.encode_image(self._prepare(images[i : i + batch_size])).float(), dim=-1).cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts -> (N, D) unit vectors, on the CPU; each distinct text is encoded once per evaluator."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            emb = F.normalize(self.model.encode_text(self.tokenizer(missing).to(self.device)).float(), dim=-1).cpu()
            self._text_cache.update(zip(missing, emb))
        return torch.stack([self._text_cache[t] for t in texts])
