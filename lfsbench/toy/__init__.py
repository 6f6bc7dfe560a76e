"""The embedded toy world: renderer, shipped backbone and evaluator, build and fitness check."""

from __future__ import annotations

import json
from pathlib import Path

from lfsbench.errors import LfsbenchError

WEIGHTS_DIR = Path(__file__).parent / "weights"
# The shipped toy models by name (the protocol's `backbone:` / `evaluator:`), each a folder built on one world version
# (its recipe.json says which): `toy` on world 1, `toy-v2` on world 2.
NAMED_WEIGHTS = {"toy": WEIGHTS_DIR, "toy-v2": Path(__file__).parent / "weights-v2"}


def weights_world(weights: Path) -> int:
    """The toy world version a weights folder was built on (its recipe.json; world 1 before versions existed)."""
    recipe = Path(weights) / "recipe.json"
    if not recipe.is_file():
        return 1
    return int(json.loads(recipe.read_text()).get("world", {}).get("version", 1))


def _require(folder: Path) -> Path:
    if not folder.exists():
        raise LfsbenchError(
            f"The toy weights are missing: {folder} does not exist. They ship with the package; in a source "
            f"checkout, restore them with `git checkout {folder.parent.parent.name}/{folder.parent.name}/"
            f"{folder.name}` or rebuild them with `lfsbench toy build` (docs/toyworld.md)."
        )
    return folder


def load_toy_backbone(device=None, weights: Path = WEIGHTS_DIR, dtype=None, name: str = "toy"):
    """The shipped toy backbone, loaded like any Stable Diffusion folder (dtype: of the frozen weights); `name`: the
    name it was asked for (NAMED_WEIGHTS)."""
    from lfsbench.backbone import Backbone
    from lfsbench.fingerprint import folder_fingerprint

    _require(weights)
    backbone = Backbone.from_pretrained(_require(weights / "backbone"), device=device, dtype=dtype, name=name)
    backbone.fingerprint = folder_fingerprint(weights / "backbone")  # what the base-model cache keys on
    return backbone


def load_toy_evaluator(device="cpu", weights: Path = WEIGHTS_DIR):
    """The shipped toy evaluator, loaded through open_clip's local-dir path."""
    from lfsbench.evaluator import Evaluator
    from lfsbench.fingerprint import folder_fingerprint

    _require(weights)
    evaluator = Evaluator.from_open_clip(f"local-dir:{_require(weights / 'evaluator')}", device=device)
    evaluator.fingerprint = folder_fingerprint(weights / "evaluator")  # what the base-model cache keys on
    return evaluator


def check_world(protocol: str, version: int, models: dict[str, str]) -> None:
    """Refuse a toy protocol whose concepts are rendered in one world and whose shipped toy models (`models`: role ->
    name, e.g. {"backbone": "toy"}) were built on another: every score would measure the mismatch."""
    shipped = {n: weights_world(f) for n, f in NAMED_WEIGHTS.items() if f.exists()}
    for role, name in models.items():
        if name in shipped and shipped[name] != version:
            fitting = [n for n, w in shipped.items() if w == version]
            fix = (
                f"name the {role} built on world {version} ({', '.join(fitting)})"
                if fitting
                else (f"build models on world {version} with `lfsbench toy build` (docs/toyworld.md)")
            )
            raise LfsbenchError(
                f"Protocol {protocol!r} renders its concepts in toy world {version}, but its {role} {name!r} was "
                f"built on world {shipped[name]}. Set `source: {{kind: toy, world: {shipped[name]}}}`, or {fix}."
            )
