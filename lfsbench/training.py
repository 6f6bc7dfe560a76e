"""Shared diffusion training pieces: modifier tokens, trainable cross-attention K/V and its state, the loss, the loop.

Methods call these; none re-implements them. Custom Diffusion's parametrisation
(Kumari et al., 2023) is used: cross-attention key/value projections of the UNet
are replaced by trainable copies (diffusers' CustomDiffusionAttnProcessor2_0), and
the modifier token's input embedding is learned. The deltas (`kv_state` plus the token
rows) are what a method's `state_dict` returns; the runner saves them with safetensors
(diffusers 0.42's `load_attn_procs` does not restore Custom Diffusion K/V).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lfsbench.backbone import Backbone
from lfsbench.errors import LfsbenchError

# ---------------------------------------------------------------- modifier tokens


def add_modifier_token(backbone: Backbone, token: str, initializer: str, vocabulary_entry: bool = False) -> int:
    """Add `token` to every tokenizer (as Custom Diffusion does; SDXL has two) and initialise its embedding in each
    text encoder from `initializer`'s: the mean of the tokens the text encodes to or, with `vocabulary_entry`, the
    vocabulary's own entry of that spelling (what diffusers' train_custom_diffusion.py reads for its rare words,
    `tokenizer.encode([word])`: `ktn` is one entry there, two tokens as text).

    Returns the token id (the same in every tokenizer). Adding a token that already exists returns its id unchanged.
    """
    ids = []
    for tokenizer, text_encoder in zip(backbone.tokenizers, backbone.text_encoders, strict=True):
        if token in tokenizer.get_vocab():
            ids.append(tokenizer.convert_tokens_to_ids(token))
            continue
        if vocabulary_entry:
            if initializer not in tokenizer.get_vocab():
                raise LfsbenchError(
                    f"The modifier token {token} would be initialised from the vocabulary entry {initializer!r}, which "
                    "this backbone's tokenizer does not have. Set token_init to `class` or to a word."
                )
            init_ids = [tokenizer.convert_tokens_to_ids(initializer)]
        else:
            init_ids = tokenizer.encode(initializer, add_special_tokens=False)
        if not init_ids:
            raise LfsbenchError(
                f"The modifier token {token} would be initialised from {initializer!r}, which the tokenizer turns into "
                "no token at all (its embedding would be NaN, and every metric with it). Set token_init to a word, "
                "e.g. -o token_init=object, or to `class` (the concept's class noun)."
            )
        tokenizer.add_tokens([token])
        token_id = tokenizer.convert_tokens_to_ids(token)
        text_encoder.resize_token_embeddings(len(tokenizer))
        with torch.no_grad():
            weights = text_encoder.get_input_embeddings().weight
            weights[token_id] = weights[init_ids].mean(0)
        ids.append(token_id)
    if len(set(ids)) != 1:
        raise LfsbenchError(
            f"The modifier token {token} got different ids in the backbone's tokenizers ({ids}): their vocabularies "
            "differ, which lfsbench does not support (SDXL's two CLIP tokenizers share one)."
        )
    return ids[0]


def token_embeddings(backbone: Backbone) -> list[torch.Tensor]:
    """The input-embedding matrix of each text encoder (the rows of the modifier tokens live there)."""
    return [encoder.get_input_embeddings().weight for encoder in backbone.text_encoders]


class TokenEmbeddingTrainer:
    """Trains only the given rows of the input embeddings.

    Each text encoder's rows of `token_ids` are a small parameter (`rows`, one per encoder), put in place of the
    embedding's output wherever the input holds one of the tokens (a forward hook), and written back into the
    embedding matrix after every optimizer step (`write_back`) so that anything reading the matrix sees the trained
    values. The result is what training the whole matrix with its other rows' gradients zeroed gives (Adam moves no
    row whose gradient is always zero; the trained rows' gradients are the same sums, up to the order of addition),
    without an optimizer step over the vocabulary's ~49,000 rows, which cost a quarter of a toy training step.
    """

    def __init__(self, backbone: Backbone, token_ids: list[int]):
        self.token_ids = list(token_ids)
        self.embeddings = [encoder.get_input_embeddings() for encoder in backbone.text_encoders]
        self.rows = [torch.nn.Parameter(e.weight[self.token_ids].detach().clone()) for e in self.embeddings]
        self._hooks = [e.register_forward_hook(self._substitute(k)) for k, e in enumerate(self.embeddings)]

    def _substitute(self, k: int):
        def hook(module, args, output):
            ids = args[0]
            for j, token_id in enumerate(self.token_ids):
                output = torch.where((ids == token_id).unsqueeze(-1), self.rows[k][j].to(output.dtype), output)
            return output

        return hook

    def write_back(self):
        """Copy the trained rows into the embedding matrices."""
        with torch.no_grad():
            for embedding, rows in zip(self.embeddings, self.rows, strict=True):
                embedding.weight[self.token_ids] = rows.to(embedding.weight.dtype)

    def stop(self):
        self.write_back()
        for hook in self._hooks:
            hook.remove()


# ---------------------------------------------------------------- cross-attention K/V


def install_trainable_kv(backbone: Backbone) -> list[torch.nn.Parameter]:
    """Give every cross-attention layer its own trainable K/V copy (initialised from the current K/V).

    Idempotent: layers that already have a Custom Diffusion processor keep it.
    Returns the trainable parameters.
    """
    from diffusers.models.attention_processor import AttnProcessor2_0, CustomDiffusionAttnProcessor2_0

    unet = backbone.unet
    processors = {}
    for name, proc in unet.attn_processors.items():
        if isinstance(proc, CustomDiffusionAttnProcessor2_0) or not name.endswith("attn2.processor"):
            processors[name] = proc if isinstance(proc, CustomDiffusionAttnProcessor2_0) else AttnProcessor2_0()
            continue
        attn = unet.get_submodule(name[: -len(".processor")])
        new = CustomDiffusionAttnProcessor2_0(
            train_kv=True,
            train_q_out=False,
            hidden_size=attn.to_k.out_features,
            cross_attention_dim=attn.to_k.in_features,
        ).to(unet.device, torch.float32)  # trainable copies stay float32 under half-precision weights
        with torch.no_grad():
            new.to_k_custom_diffusion.weight.copy_(attn.to_k.weight)
            new.to_v_custom_diffusion.weight.copy_(attn.to_v.weight)
        processors[name] = new
    unet.set_attn_processor(processors)
    return kv_parameters(backbone)


@contextmanager
def attn_processors(backbone: Backbone, processors):
    """Within this block the UNet uses `processors` (a dict by name, or one for all); the installed ones come back
    after."""
    installed = backbone.unet.attn_processors
    # diffusers pops entries from a dict it is given: pass a copy so `processors` can be reused
    backbone.unet.set_attn_processor(dict(processors) if isinstance(processors, dict) else processors)
    try:
        yield
    finally:
        backbone.unet.set_attn_processor(installed)


def base_kv(backbone: Backbone):
    """Within this block the UNet uses its original cross-attention K/V (the learned copies are set aside)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    return attn_processors(backbone, AttnProcessor2_0())


def frozen_kv_copy(backbone: Backbone) -> dict:
    """The installed processors with the learned K/V copied and frozen: a teacher that costs only the deltas.

    Use it with `attn_processors(backbone, teacher)`; the UNet's other weights are shared.
    """
    import copy

    teacher = {}
    for name, proc in backbone.unet.attn_processors.items():
        proc = copy.deepcopy(proc) if hasattr(proc, "to_k_custom_diffusion") else proc
        for p in getattr(proc, "parameters", lambda: [])():
            p.requires_grad_(False)
        teacher[name] = proc
    return teacher


def kv_parameters(backbone: Backbone) -> list[torch.nn.Parameter]:
    """The trainable K/V parameters currently installed, in a fixed order."""
    params = []
    for _, proc in sorted(backbone.unet.attn_processors.items()):
        if hasattr(proc, "to_k_custom_diffusion"):
            params += [proc.to_k_custom_diffusion.weight, proc.to_v_custom_diffusion.weight]
    for p in params:
        p.requires_grad_(True)
    return params


def kv_state(backbone: Backbone) -> dict[str, torch.Tensor]:
    """A copy of the installed K/V weights, keyed by processor name."""
    state = {}
    for name, proc in backbone.unet.attn_processors.items():
        if hasattr(proc, "to_k_custom_diffusion"):
            state[f"{name}.to_k"] = proc.to_k_custom_diffusion.weight.detach().clone()
            state[f"{name}.to_v"] = proc.to_v_custom_diffusion.weight.detach().clone()
    return state


def load_kv_state(backbone: Backbone, state: dict[str, torch.Tensor]):
    """Write K/V weights saved by `kv_state` back into the installed processors."""
    install_trainable_kv(backbone)
    with torch.no_grad():
        for name, proc in backbone.unet.attn_processors.items():
            if f"{name}.to_k" in state:
                proc.to_k_custom_diffusion.weight.copy_(state[f"{name}.to_k"])
                proc.to_v_custom_diffusion.weight.copy_(state[f"{name}.to_v"])


# ---------------------------------------------------------------- prior preservation

CLASS_IMAGE_SEED = 10_000  # class images use seeds apart from the evaluation seeds


def generate_class_images(backbone: Backbone, class_prompt: str, n: int, steps: int, guidance: float) -> torch.Tensor:
    """n images of the bare class prompt from the model as it is now (prior preservation's targets)."""
    return backbone.generate([class_prompt] * n, [CLASS_IMAGE_SEED + i for i in range(n)], steps, guidance)


def real_class_images(folder: Path, n: int, resolution: int) -> torch.Tensor:
    """Up to n real images of a class from `folder` (file-name order), centre-cropped and resized to the backbone's
    resolution: prior preservation on real images, as Custom Diffusion's --real_prior trains."""
    from lfsbench.concepts import fit_image
    from lfsbench.images import load_image_file
    from lfsbench.readers import IMAGE_SUFFIXES, image_files

    files = image_files(Path(folder))
    if not files:
        raise LfsbenchError(
            f"No class images in {folder}: class_images_from=folder reads real images of each class from "
            f"<class_images_dir>/<class noun>/ ({', '.join(sorted(IMAGE_SUFFIXES))}). Put images of the class there "
            "(Custom Diffusion's reference retrieves 200 from LAION with clip-retrieval), or use "
            "class_images_from=base."
        )
    return torch.stack([fit_image(load_image_file(f), resolution) for f in files[:n]])


# ---------------------------------------------------------------- loss and loop


def noise_prediction_loss(
    backbone: Backbone, latents: torch.Tensor, context: torch.Tensor, generator=None
) -> torch.Tensor:
    """The standard epsilon-prediction MSE at uniformly sampled timesteps."""
    noise = torch.randn(latents.shape, generator=generator, device=latents.device)
    t = torch.randint(0, backbone.num_train_timesteps, (len(latents),), generator=generator, device=latents.device)
    pred = backbone.predict_noise(backbone.add_noise(latents, noise, t), t, context)
    return F.mse_loss(pred.float(), noise.float())


@dataclass
class KVTrainingConfig:
    """Budget of one Custom-Diffusion-style session."""

    steps: int = 200
    batch_size: int = 8
    kv_lr: float = 1e-3
    token_lr: float = 5e-3
    seed: int = 0


@dataclass
class TrainingData:
    """Images a session trains on, with their prompts and the weight of their loss term."""

    images: torch.Tensor  # [0, 1], NCHW
    prompts: list[str]
    weight: float = 1.0


def final_loss(losses: list[float], last: int = 20) -> float:
    """The session's final training loss as methods report it: the mean of the last `last` steps."""
    tail = losses[-last:]
    return float(sum(tail) / max(1, len(tail)))


def train_kv_session(
    backbone: Backbone,
    sources: list[TrainingData],
    token_ids: list[int],
    config: KVTrainingConfig,
    extra_loss=None,
    progress=None,
) -> list[float]:
    """Train cross-attention K/V and the modifier-token embeddings on `sources`; returns the loss curve."""
    kv = install_trainable_kv(backbone)
    try:
        return train_session(
            backbone,
            sources,
            [{"params": kv, "lr": config.kv_lr}],
            token_ids,
            config.token_lr,
            config.steps,
            config.batch_size,
            config.seed,
            extra_loss,
            progress,
        )
    finally:
        for p in kv:
            p.requires_grad_(False)


def train_session(
    backbone: Backbone,
    sources: list[TrainingData],
    groups: list[dict],
    token_ids: list[int],
    token_lr: float,
    steps: int,
    batch_size: int,
    seed: int,
    extra_loss=None,
    progress=None,
) -> list[float]:
    """The training loop every method shares: AdamW on `groups` (+ the new token rows), noise-prediction loss.

    Every step draws `batch_size` items from each source and adds their weighted
    noise-prediction losses (Custom Diffusion's prior preservation and replay are further
    sources). `extra_loss(step)`, if given, adds a term (distillation). `progress(done, total)`
    is called after each step. Parameters in `groups` must already require gradients.
    """
    generator = torch.Generator(backbone.device).manual_seed(seed)
    tokens = TokenEmbeddingTrainer(backbone, token_ids) if token_ids else None
    groups = list(groups)
    if token_ids:
        groups.append({"params": tokens.rows, "lr": token_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    encoded = [backbone.posterior(s.images) for s in sources]
    for encoder in backbone.text_encoders:
        encoder.train(False)
    losses = []
    for step in range(steps):
        loss = torch.zeros((), device=backbone.device)
        with backbone.autocast():
            for source, (mean, std) in zip(sources, encoded, strict=True):
                idx = torch.randint(0, len(source.prompts), (batch_size,), generator=generator, device=backbone.device)
                eps = torch.randn(mean[idx].shape, generator=generator, device=backbone.device)
                latents = (mean[idx] + std[idx] * eps) * backbone.vae.config.scaling_factor
                context = backbone.encode_prompts([source.prompts[i] for i in idx.tolist()])
                loss = loss + source.weight * noise_prediction_loss(backbone, latents, context, generator)
            if extra_loss is not None:
                loss = loss + extra_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if tokens is not None:
            tokens.write_back()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, steps)
    if tokens is not None:
        tokens.stop()
    return losses
