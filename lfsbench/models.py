"""The backbones and evaluators a protocol can name, each kind one registered `ModelKind`: how its names look, how it
loads, an example. `load_backbone` and `load_evaluator` take the first kind (in registration order) whose names
match; `lfsbench ls backbones` and `lfsbench ls evaluators` list them. Adding a kind is one `register`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lfsbench.backbone import Backbone
from lfsbench.errors import LfsbenchError
from lfsbench.evaluator import Evaluator
from lfsbench.registry import Registry


@dataclass(frozen=True)
class ModelKind:
    """One kind of backbone or evaluator name."""

    name: str
    description: str
    example: str
    matches: Callable[[str], bool]
    load: Callable  # (name, device) -> Backbone | Evaluator


BACKBONES: Registry[ModelKind] = Registry("backbone")
EVALUATORS: Registry[ModelKind] = Registry("evaluator")


def _kind(registry: Registry, kind: ModelKind) -> None:
    registry.register(kind.name)(kind)


def _first_match(registry: Registry, name: str) -> ModelKind:
    for kind in registry.in_order():
        if kind.matches(name):
            return kind
    described = "; ".join(f"{k.example} ({k.description})" for k in registry.in_order())
    raise LfsbenchError(f"{registry.kind.capitalize()} {name!r} is not known: use one of these kinds: {described}.")


def load_backbone(name: str, device=None) -> Backbone:
    """The backbone a protocol names: the first registered kind whose names match (`lfsbench ls backbones`)."""
    return _first_match(BACKBONES, name).load(name, device)


def load_evaluator(name: str, device="cpu") -> Evaluator:
    """The evaluator a protocol names: the first registered kind whose names match (`lfsbench ls evaluators`)."""
    return _first_match(EVALUATORS, name).load(name, device)


def load_backbone_folder(folder: Path, device=None, dtype=None, name: str | None = None) -> Backbone:
    """A folder saved by diffusers: Stable Diffusion 1.x or 2.x, or SDXL (two text encoders, added-time
    conditioning) by its model_index.json's pipeline class."""
    folder = Path(folder)
    index = folder / "model_index.json"
    if index.is_file() and "XL" in json.loads(index.read_text()).get("_class_name", ""):
        from lfsbench.sdxl import SDXLBackbone

        return SDXLBackbone.from_pretrained(folder, device, dtype, name)
    return Backbone.from_pretrained(folder, device=device, dtype=dtype, name=name)


def _is_toy(name: str) -> bool:
    from lfsbench.toy import NAMED_WEIGHTS

    return name in NAMED_WEIGHTS


def _toy_backbone(name: str, device):
    from lfsbench.toy import NAMED_WEIGHTS, load_toy_backbone

    return load_toy_backbone(device=device, weights=NAMED_WEIGHTS[name], name=name)


def _random_sd(name: str, device):
    from lfsbench import sd

    _, _, rest = name.partition(":")
    res, _, dtype = rest.partition(":")
    if (res and not res.isdigit()) or (dtype and dtype not in sd.RANDOM_DTYPES):
        raise LfsbenchError(
            f"Backbone {name!r}: write sd-random, sd-random:RESOLUTION or sd-random:RESOLUTION:DTYPE with DTYPE "
            f"one of {', '.join(sd.RANDOM_DTYPES)} (e.g. sd-random:512:bf16; default dtype: float16 on a GPU, "
            "float32 on the CPU)."
        )
    return sd.random_sd_backbone(int(res or 512), device=device, dtype=sd.RANDOM_DTYPES.get(dtype))


def _is_hub_name(name: str) -> bool:
    from lfsbench import sd

    return name in sd.SD_REPOS or ("/" in name and not Path(name).is_absolute() and not name.startswith("."))


def _cached(name: str, device):
    from lfsbench import sd

    return load_backbone_folder(sd.cached_folder(name), device=device, name=name)


_kind(
    BACKBONES,
    ModelKind(
        "toy",
        "the toy world's backbone, shipped with lfsbench (toy: world 1, toy-v2: world 2)",
        "toy",
        _is_toy,
        _toy_backbone,
    ),
)
_kind(
    BACKBONES,
    ModelKind(
        "folder",
        "a Stable Diffusion 1.x, 2.x or SDXL folder saved by diffusers (holding model_index.json)",
        "path/to/model",
        lambda n: Path(n).expanduser().is_dir(),
        lambda n, device: load_backbone_folder(Path(n).expanduser(), device=device),
    ),
)
_kind(
    BACKBONES,
    ModelKind(
        "sd-random",
        "Stable Diffusion 1.5's shapes with random weights, at RES px, frozen weights in DTYPE (fp32, fp16, bf16): "
        "performance work, not quality",
        "sd-random:512:bf16",
        lambda n: n.startswith("sd-random"),
        _random_sd,
    ),
)
_kind(
    BACKBONES,
    ModelKind(
        "hub-cache",
        "a checkpoint in the local Hugging Face cache (never downloaded): sd-v1-4, sd-v1-5, sd-v2-1-base, "
        "sdxl-base-1.0, or any OWNER/NAME repository",
        "sd-v1-5",
        _is_hub_name,
        _cached,
    ),
)


def _toy_evaluator(name: str, device):
    from lfsbench.toy import NAMED_WEIGHTS, load_toy_evaluator

    return load_toy_evaluator(device=device, weights=NAMED_WEIGHTS[name])


def _open_clip(name: str, device):
    model, _, pretrained = name.partition(":")
    if not pretrained:
        raise LfsbenchError(
            f"Evaluator {name!r} names an open_clip model without its weights: it would score every image with "
            f"randomly initialised weights, and every TA and IA would be meaningless. Name the weights too: "
            f"{model}:TAG (e.g. ViT-B-32:openai, from the local Hugging Face cache) or {model}:PATH to a checkpoint."
        )
    try:
        return Evaluator.from_open_clip(model, pretrained, device=device)
    except (RuntimeError, FileNotFoundError) as err:  # an unknown model name, a checkpoint that does not fit it
        raise LfsbenchError(
            f"Could not load the open_clip evaluator {name!r}: {err}. Check the model name "
            "(open_clip.list_models()) and that the weights are that model's."
        ) from None


_kind(
    EVALUATORS,
    ModelKind(
        "toy",
        "the toy world's evaluator, shipped with lfsbench (toy: world 1, toy-v2: world 2)",
        "toy",
        _is_toy,
        _toy_evaluator,
    ),
)
_kind(
    EVALUATORS,
    ModelKind(
        "local-dir",
        "an open_clip model saved in a folder (open_clip's local-dir: loader)",
        "local-dir:path/to/model",
        lambda n: n.startswith("local-dir:"),
        lambda n, device: Evaluator.from_open_clip(n, device=device),
    ),
)
_kind(
    EVALUATORS,
    ModelKind(
        "open_clip",
        "any open_clip model and its weights, from the local Hugging Face cache or a checkpoint file",
        "ViT-B-32:openai",
        lambda n: True,
        _open_clip,
    ),
)


def weights_fingerprint(name: str) -> str | None:
    """SHA-256 of the weight and configuration files a backbone or evaluator name loads, where lfsbench ships them
    (`toy`: the package's toy world); None for any other name (a checkpoint is identified by its name and folder:
    hashing gigabytes on every run would cost more than it tells). Part of a run's identity, so runs on a rebuilt
    toy world are never pooled with runs on the one before."""
    from lfsbench.fingerprint import folder_fingerprint
    from lfsbench.toy import NAMED_WEIGHTS

    if name not in NAMED_WEIGHTS or not NAMED_WEIGHTS[name].exists():  # a missing folder fails when it is loaded
        return None
    return folder_fingerprint(NAMED_WEIGHTS[name])
