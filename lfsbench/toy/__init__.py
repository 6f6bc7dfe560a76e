"""The embedded toy world: renderer, shipped backbone and evaluator, build and fitness check."""

from __future__ import annotations

from pathlib import Path

from lfsbench.errors import LfsbenchError

WEIGHTS_DIR = Path(__file__).parent / "weights"


def _require(folder: Path) -> Path:
    if not folder.exists():
        raise LfsbenchError(
            f"The toy weights are missing: {folder} does not exist. They ship with the package; in a source "
            "checkout, restore them with `git checkout lfsbench/toy/weights` or rebuild them with `lfsbench toy build`."
        )
    return folder


def load_toy_backbone(device=None, weights: Path = WEIGHTS_DIR, dtype=None):
    """The shipped toy backbone, loaded like any Stable Diffusion folder (dtype: of the frozen weights)."""
    from lfsbench.backbone import Backbone
    from lfsbench.fingerprint import folder_fingerprint

    backbone = Backbone.from_pretrained(_require(weights / "backbone"), device=device, dtype=dtype, name="toy")
    backbone.fingerprint = folder_fingerprint(weights / "backbone")  # what the base-model cache keys on
    return backbone


def load_toy_evaluator(device="cpu", weights: Path = WEIGHTS_DIR):
    """The shipped toy evaluator, loaded through open_clip's local-dir path."""
    from lfsbench.evaluator import Evaluator
    from lfsbench.fingerprint import folder_fingerprint

    evaluator = Evaluator.from_open_clip(f"local-dir:{_require(weights / 'evaluator')}", device=device)
    evaluator.fingerprint = folder_fingerprint(weights / "evaluator")  # what the base-model cache keys on
    return evaluator
