"""Real Stable Diffusion backbones (1.x, 2.x, XL): named checkpoints from the local Hugging Face cache, and a random
SD-shaped one.

Nothing here downloads: a checkpoint must already be in the local cache (or a folder), and a
missing one is an error that gives the command to fetch it on a connected machine.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lfsbench.backbone import Backbone, resolve_device_and_dtype
from lfsbench.errors import LfsbenchError

SD_REPOS = {
    "sd-v1-4": "CompVis/stable-diffusion-v1-4",
    "sd-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd-v2-1-base": "stabilityai/stable-diffusion-2-1-base",
    "sdxl-base-1.0": "stabilityai/stable-diffusion-xl-base-1.0",  # lfsbench/sdxl.py: two text encoders
}
SD_FILES = ["model_index.json", "scheduler/*", "tokenizer/*", "text_encoder/*", "unet/*", "vae/*"]
SDXL_FILES = ["tokenizer_2/*", "text_encoder_2/*"]


def cached_folder(name: str) -> Path:
    """The folder of `sd-v1-5`, `sdxl-base-1.0` (or any `owner/name` repository) in the local Hugging Face cache;
    one that is not there is an error that says what to fetch."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo = SD_REPOS.get(name, name)
    files = SD_FILES + (SDXL_FILES if "xl" in repo.lower() else [])
    try:
        folder = snapshot_download(repo, local_files_only=True, allow_patterns=files)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise LfsbenchError(
            f"Backbone {name!r} ({repo}) is not in the local Hugging Face cache and lfsbench never downloads. On a "
            f"connected machine run: hf download {repo} {' '.join(repr(p) for p in files)} (older huggingface_hub: "
            "huggingface-cli download ...), then copy the cache (~/.cache/huggingface/hub) here; or pass "
            "--backbone PATH "
            "to a folder saved with diffusers' save_pretrained."
        ) from None
    if not (Path(folder) / "unet").is_dir():
        raise LfsbenchError(
            f"The cached copy of {repo} in {folder} lacks unet/; fetch it again with hf download {repo}."
        )
    return Path(folder)


RANDOM_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def random_sd_backbone(resolution: int = 512, seed: int = 0, device=None, dtype: torch.dtype | None = None) -> Backbone:
    """Stable Diffusion 1.5's UNet, VAE and text-encoder shapes with random weights (performance work, not quality).

    The frozen weights take `dtype` (default: as a loaded checkpoint's, float16 on a GPU and float32 on the CPU), the
    text encoder stays float32 (its modifier-token rows train), as `Backbone.from_pretrained` prepares a real one. The
    modules are built directly on the device, so a GPU initialises their random weights itself. The tokenizer is
    CLIP's BPE vocabulary as open_clip ships it (the one SD 1.x uses).
    """
    from lfsbench.backbone import quiet_libraries

    if resolution % 64:
        raise LfsbenchError(f"sd-random:{resolution}: the resolution must be a multiple of 64 (e.g. sd-random:512).")
    quiet_libraries()
    device, dtype = resolve_device_and_dtype(device, dtype)
    torch.manual_seed(seed)
    with torch.device(device):
        return _random_sd(resolution, device, dtype)


def _random_sd(resolution: int, device: torch.device, dtype: torch.dtype) -> Backbone:
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lfsbench.toy.models import write_clip_tokenizer

    unet = UNet2DConditionModel(
        sample_size=resolution // 8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        sample_size=resolution,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
        )
    )
    tokenizer = write_clip_tokenizer(Path(tempfile.mkdtemp(prefix="lfsbench-sd-tokenizer-")), 77)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(dtype=dtype)
    suffix = next((f":{k}" for k, v in RANDOM_DTYPES.items() if v == dtype), "")
    return Backbone(Backbone._prepared(pipe, device), f"sd-random:{resolution}{suffix}")
