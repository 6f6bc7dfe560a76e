"""Resolve the backbone and evaluator a protocol names: 'toy' (shipped), or a local folder / open_clip name."""

from __future__ import annotations

from pathlib import Path

from lfsbench.backbone import Backbone
from lfsbench.errors import LfsbenchError
from lfsbench.evaluator import Evaluator


def load_backbone(name: str, device=None) -> Backbone:
    """'toy'; a diffusers Stable Diffusion or SDXL folder; 'sd-random[:RES[:DTYPE]]' (SD 1.5 shapes, random
    weights, DTYPE fp32, fp16 or bf16);
    or 'sd-v1-4', 'sd-v1-5', 'sd-v2-1-base', 'sdxl-base-1.0', 'owner/name' from the local Hugging Face cache."""
    from lfsbench import sd

    if name == "toy":
        from lfsbench.toy import load_toy_backbone

        return load_toy_backbone(device=device)
    if Path(name).expanduser().is_dir():
        return Backbone.from_pretrained(Path(name).expanduser(), device=device)
    if name.startswith("sd-random"):
        _, _, rest = name.partition(":")
        res, _, dtype = rest.partition(":")
        if (res and not res.isdigit()) or (dtype and dtype not in sd.RANDOM_DTYPES):
            raise LfsbenchError(
                f"Backbone {name!r}: write sd-random, sd-random:RESOLUTION or sd-random:RESOLUTION:DTYPE with DTYPE "
                f"one of {', '.join(sd.RANDOM_DTYPES)} (e.g. sd-random:512:bf16; default dtype: float16 on a GPU, "
                "float32 on the CPU)."
            )
        return sd.random_sd_backbone(int(res or 512), device=device, dtype=sd.RANDOM_DTYPES.get(dtype))
    if name in sd.SD_REPOS or ("/" in name and not Path(name).is_absolute() and not name.startswith(".")):
        return sd.load_cached(name, device=device)
    raise LfsbenchError(
        f"Backbone {name!r} is not known: use 'toy', a folder saved by diffusers (holding model_index.json), "
        f"{', '.join(sd.SD_REPOS)} or another Hugging Face repository name (from the local cache), or "
        "sd-random[:RES[:DTYPE]]."
    )


def load_evaluator(name: str, device="cpu") -> Evaluator:
    """'toy', 'local-dir:PATH', or 'MODEL:PRETRAINED' for any open_clip model (e.g. 'ViT-B-32:openai')."""
    if name == "toy":
        from lfsbench.toy import load_toy_evaluator

        return load_toy_evaluator(device=device)
    if name.startswith("local-dir:"):
        return Evaluator.from_open_clip(name, device=device)
    model, _, pretrained = name.partition(":")
    if not pretrained:
        raise LfsbenchError(
            f"Evaluator {name!r} names an open_clip model without its weights: it would score every image with "
            f"randomly initialised weights, and every TA and IA would be meaningless. Name the weights too: "
            f"{model}:TAG (e.g. ViT-B-32:openai, from the local Hugging Face cache) or {model}:PATH to a checkpoint."
        )
    try:
        return Evaluator.from_open_clip(model, pretrained or None, device=device)
    except (RuntimeError, FileNotFoundError) as err:  # an unknown model name, a checkpoint that does not fit it
        raise LfsbenchError(
            f"Could not load the open_clip evaluator {name!r}: {err}. Check the model name "
            f"(open_clip.list_models()) and "
            "that the weights are that model's."
        ) from None


def weights_fingerprint(name: str) -> str | None:
    """SHA-256 of the weight and configuration files a backbone or evaluator name loads, where lfsbench ships them
    (`toy`: the package's toy world); None for any other name (a checkpoint is identified by its name and folder:
    hashing gigabytes on every run would cost more than it tells). Part of a run's identity, so runs on a rebuilt
    toy world are never pooled with runs on the one before."""
    if name != "toy":
        return None
    from lfsbench.toy import WEIGHTS_DIR

    return folder_fingerprint(WEIGHTS_DIR)


_FINGERPRINTS: dict[tuple, str] = {}


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 over a folder's weight and configuration files (*.safetensors, *.json, *.txt; file names and bytes, in
    name order), computed once per process for files of unchanged size and time."""
    import hashlib

    files = sorted(f for f in Path(folder).rglob("*") if f.is_file() and f.suffix in (".safetensors", ".json", ".txt"))
    files = [f for f in files if f.name != "fitness.json"]  # the record of a check, not part of the weights
    stamp = (str(folder), *((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if stamp not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for f in files:
            digest.update(str(f.relative_to(folder)).encode())
            digest.update(f.read_bytes())
        _FINGERPRINTS[stamp] = digest.hexdigest()
    return _FINGERPRINTS[stamp]
