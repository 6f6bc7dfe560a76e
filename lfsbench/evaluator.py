"""CLIP-family encoders (through open_clip) with an embedding cache, for TA and IA."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lfsbench.errors import LfsbenchError

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth"}


def cached_open_clip_weights(model: str, tag: str) -> tuple[str, dict]:
    """The local file of open_clip MODEL's pretrained TAG and the tag's settings; never downloads.

    Looks where open_clip itself would put the file: the Hugging Face cache for tags published on the hub
    (safetensors first), ~/.cache/clip for URL-only tags. Missing: one paragraph with the command to fetch it.
    """
    import os

    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model) if model in open_clip.list_models() else []
        known = (
            f"its tags are {', '.join(tags)}" if tags else f"open_clip has no model {model!r} with pretrained weights"
        )
        raise LfsbenchError(
            f"The evaluator {model}:{tag} is unknown ({known}). Pass MODEL:TAG (e.g. ViT-B-32:openai), "
            "MODEL:PATH to a checkpoint file, or local-dir:FOLDER."
        )
    if cfg.get("hf_hub"):
        from huggingface_hub import hf_hub_download

        repo, filename = os.path.split(cfg["hf_hub"])
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        for name in names:
            try:
                return hf_hub_download(repo, name, local_files_only=True), cfg
            except Exception:  # not in the cache (or no cache at all)
                continue
        fetch = f"hf download {repo} {names[0]} (older huggingface_hub: huggingface-cli download ...)"
        where = "copy the cache (~/.cache/huggingface/hub, or $HF_HOME/hub) here"
    else:
        local = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if local.is_file():
            return str(local), cfg
        fetch = f"curl -L --create-dirs -o ~/.cache/clip/{local.name} {cfg['url']}"
        where = f"copy it to {local}"
    raise LfsbenchError(
        f"The weights of the evaluator {model}:{tag} are not in the local cache and lfsbench never downloads. On a "
        f"connected machine run: {fetch}; then {where}. Or pass --evaluator {model}:PATH with the checkpoint file."
    )


class Evaluator:
    """L2-normalised image and text embeddings from an open_clip model."""

    fingerprint: str | None = None  # of its weights, where its loader knows them (toy): the base-model cache's key

    def __init__(self, model, tokenizer, image_size: int, mean, std, name: str = "evaluator"):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.name = name
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_open_clip(cls, model_name: str, pretrained: str | None = None, device="cpu") -> Evaluator:
        """Load any open_clip model: a `local-dir:` folder, or a model name with a pretrained tag or file.

        A file is loaded with the model's own config, as open_clip does: OpenAI's weights need the QuickGELU
        variant of the name (`ViT-B-32-quickgelu`); a tag gets its settings from open_clip's table.
        """
        import open_clip

        if model_name.startswith("local-dir:") and not Path(model_name[len("local-dir:") :]).is_dir():
            raise LfsbenchError(
                f"The evaluator folder {model_name[len('local-dir:') :]} does not exist. It should hold "
                "open_clip_config.json and open_clip_model.safetensors (open_clip's local-dir layout)."
            )
        options = {}
        if pretrained and not Path(pretrained).expanduser().is_file():
            if any(sep in pretrained for sep in "/\\") or Path(pretrained).suffix in WEIGHT_SUFFIXES:
                raise LfsbenchError(
                    f"The evaluator weights file {pretrained} does not exist. Pass MODEL:PATH to an open_clip "
                    "checkpoint (.safetensors, .bin, .pt), MODEL:TAG for cached pretrained weights, or "
                    "local-dir:FOLDER."
                )
            pretrained, tag = cached_open_clip_weights(model_name, pretrained)
            # what open_clip applies for the tag itself: OpenAI's weights need QuickGELU, some tags their own
            # normalisation
            options = {
                "force_quick_gelu": bool(tag.get("quick_gelu")),
                "image_mean": tag.get("mean"),
                "image_std": tag.get("std"),
            }
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device, **options
        )
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
            x = F.interpolate(
                x, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True, align_corners=False
            )
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
            self._text_cache.update(zip(missing, emb, strict=True))
        return torch.stack([self._text_cache[t] for t in texts])
