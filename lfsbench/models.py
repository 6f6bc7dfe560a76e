"""Resolve the backbone and evaluator a protocol names: 'toy' (shipped), or a local folder / open_clip name."""

from __future__ import annotations

from pathlib import Path

from lfsbench.backbone import Backbone
from lfsbench.errors import LfsbenchError
from lfsbench.evaluator import Evaluator


def load_backbone(name: str, device=None) -> Backbone:
    """'toy', or the path of a diffusers Stable Diffusion folder."""
    if name == "toy":
        from lfsbench.toy import load_toy_backbone

        return load_toy_backbone(device=device)
    if Path(name).is_dir():
        return Backbone.from_pretrained(name, device=device)
    raise LfsbenchError(
        f"Backbone {name!r} is neither 'toy' nor a local folder. Give the path of a diffusers Stable Diffusion "
        "folder (one saved with save_pretrained, holding model_index.json)."
    )


def load_evaluator(name: str, device="cpu") -> Evaluator:
    """'toy', 'local-dir:PATH', or 'MODEL:PRETRAINED' for any open_clip model (e.g. 'ViT-B-32:openai')."""
    if name == "toy":
        from lfsbench.toy import load_toy_evaluator

        return load_toy_evaluator(device=device)
    if name.startswith("local-dir:"):
        return Evaluator.from_open_clip(name, device=device)
    model, _, pretrained = name.partition(":")
    try:
        return Evaluator.from_open_clip(model, pretrained or None, device=device)
    except RuntimeError as err:
        raise LfsbenchError(
            f"Could not load the open_clip evaluator {name!r}: {err}. On a connected machine, fetch its weights once "
            f"(python -c \"import open_clip; open_clip.create_model('{model}', pretrained='{pretrained}')\") so they are in the local cache."
        ) from None
