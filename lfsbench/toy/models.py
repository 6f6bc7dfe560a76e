"""Constructors of the toy backbone's and evaluator's untrained models, from the recipe."""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from lfsbench.toy.recipe import Recipe

EVALUATOR_MODEL_NAME = "lfsbench-toy-clip"


@lru_cache(maxsize=1)
def _clip_bpe() -> tuple[dict[str, int], list[str]]:
    """The CLIP BPE vocabulary and merges, rebuilt from the file open_clip ships (as its SimpleTokenizer does)."""
    import open_clip.tokenizer as oct

    path = Path(oct.default_bpe())
    merges = gzip.open(path).read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(oct.bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def write_clip_tokenizer(folder: Path, max_length: int):
    """Save a transformers CLIPTokenizer (vocab.json + merges.txt) built from open_clip's BPE file."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_bpe()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length, pad_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_vae(recipe: Recipe):
    """A small AutoencoderKL: 32 px RGB to 8 x 16 x 16 latents (the probe found 4 channels too lossy)."""
    from diffusers import AutoencoderKL

    b = recipe.backbone
    n = len(b.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(b.vae_channels),
        layers_per_block=1,
        latent_channels=b.latent_channels,
        norm_num_groups=16,
        sample_size=recipe.world.image_size,
        mid_block_add_attention=False,  # attention at 16x16 would cost most of the training time
    )


def make_text_encoder(recipe: Recipe):
    """A two-layer CLIPTextModel over the full CLIP BPE vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    b = recipe.backbone
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=b.text_width,
        intermediate_size=b.text_width * 4,
        num_hidden_layers=b.text_layers,
        num_attention_heads=4,
        max_position_embeddings=b.max_length,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(config)


def make_unet(recipe: Recipe):
    """A small UNet2DConditionModel; cross-attention only below full latent resolution (cheap on a CPU)."""
    from diffusers import UNet2DConditionModel

    b = recipe.backbone
    return UNet2DConditionModel(
        sample_size=recipe.world.image_size // 2 ** (len(b.vae_channels) - 1),
        in_channels=b.latent_channels,
        out_channels=b.latent_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=tuple(b.unet_channels),
        layers_per_block=b.unet_layers_per_block,
        cross_attention_dim=b.text_width,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def make_scheduler_config() -> dict:
    """Stable Diffusion 1.x's noise schedule; DDIM with the settings that keep diffusers quiet."""
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def evaluator_model_config(recipe: Recipe) -> dict:
    """The open_clip model config of the toy evaluator (a ModifiedResNet tower and a small text transformer)."""
    e = recipe.evaluator
    return {
        "embed_dim": e.embed_dim,
        "vision_cfg": {"image_size": recipe.world.image_size, "layers": list(e.vision_layers), "width": e.vision_width},
        "text_cfg": {
            "context_length": e.context_length,
            "vocab_size": 49408,
            "width": e.text_width,
            "heads": 4,
            "layers": 2,
        },
    }


def evaluator_preprocess_config() -> dict:
    """Toy images are used at their size, scaled to [-1, 1] per channel."""
    return {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic", "resize_mode": "shortest"}


def make_evaluator(recipe: Recipe):
    """A fresh open_clip model from the registered toy config."""
    import open_clip

    register_evaluator_config(recipe)
    return open_clip.create_model(EVALUATOR_MODEL_NAME, pretrained=None)


def register_evaluator_config(recipe: Recipe):
    """Register the toy evaluator's config with open_clip under EVALUATOR_MODEL_NAME."""
    import tempfile

    import open_clip

    with tempfile.TemporaryDirectory(prefix="lfsbench-clipcfg-") as tmp:  # read when added, so removed after
        folder = Path(tmp)
        (folder / f"{EVALUATOR_MODEL_NAME}.json").write_text(json.dumps(evaluator_model_config(recipe)))
        open_clip.add_model_config(folder)
