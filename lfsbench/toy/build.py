"""`lfsbench toy build`: train the toy evaluator and backbone from a seed, resumably.

Stages run in order (evaluator -> vae -> unet); each checkpoints to the work folder
every `checkpoint_every` steps and continues from there when run again. When a stage
finishes its weights are exported (fp16 safetensors) to the output folder, which by
default is the package's shipped `lfsbench/toy/weights/`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from lfsbench.progress import PlainLog, progress_bar
from lfsbench.toy import models, world
from lfsbench.toy.recipe import Recipe

STAGES = ("evaluator", "vae", "unet")
console = Console()


@dataclass
class Pool:
    """Pre-rendered training objects, each in two views (independent placements and captions)."""

    appearances: list[world.Appearance]
    backgrounds: list[list[str]]  # [object][view]
    images: np.ndarray  # (N, 2, 32, 32, 3) uint8
    image_codes: np.ndarray  # (N, 2, 5)
    appearance_ids: np.ndarray  # (N,) equal for identical appearances
    background_said: float | None = None  # WorldRecipe.background_said
    # two-object scenes (WorldRecipe.pair_objects), one view each: the backbone's composition data
    pairs: list[tuple[world.Appearance, world.Appearance]] = field(default_factory=list)
    pair_backgrounds: list[str] = field(default_factory=list)
    pair_images: np.ndarray | None = None  # (M, 32, 32, 3) uint8

    def all_images(self) -> np.ndarray:
        """Every image of the pool, one per row: both views of each object, then the two-object scenes."""
        flat = self.images.reshape(-1, *self.images.shape[2:])
        return flat if self.pair_images is None else np.concatenate([flat, self.pair_images])

    def pair_captions(self, rng: np.random.Generator, idx: np.ndarray) -> list[str]:
        """Fresh random captions of the chosen two-object scenes."""
        return [
            world.sample_pair_caption(rng, self.pairs[i], self.pair_backgrounds[i], self.background_said) for i in idx
        ]

    def captions(self, rng: np.random.Generator, idx: np.ndarray, view: np.ndarray):
        """Fresh random captions (texts and attribute codes) for the chosen objects and views."""
        texts, codes = [], []
        for i, v in zip(idx, view, strict=True):
            text, said = world.sample_caption(rng, self.appearances[i], self.backgrounds[i][v], self.background_said)
            texts.append(text)
            codes.append(said)
        return texts, np.stack(codes)


def render_pool(recipe: Recipe) -> Pool:
    """Render the deterministic training pool of the recipe."""
    rng = np.random.default_rng([recipe.seed, 1])
    reserved = world.reserved_patterns(world.concept_catalogue(recipe.world.catalogue_size))
    n = recipe.world.pool_objects
    apps = [world.sample_appearance(rng, reserved, recipe.world.twotone_rate) for _ in range(n)]
    spec = world.get_world(recipe.world.version)
    places = [[world.sample_placement(rng, spec, a.cls) for _ in range(2)] for a in apps]
    images = np.empty((n, 2, world.IMAGE_SIZE, world.IMAGE_SIZE, 3), np.uint8)
    chunk = 2000
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        for v in range(2):
            images[sl, v] = world.render(apps[sl], [p[v] for p in places[sl]])
    codes = np.stack([[world.attribute_codes(a, p.background) for p in pl] for a, pl in zip(apps, places, strict=True)])
    keys = {a: i for i, a in enumerate(dict.fromkeys(apps))}
    ids = np.array([keys[a] for a in apps])
    pool = Pool(apps, [[p.background for p in pl] for pl in places], images, codes, ids, recipe.world.background_said)
    if recipe.world.pair_objects:
        # their own random stream: the single objects above stay what a build without pairs renders
        rng = np.random.default_rng([recipe.seed, 5])
        pool.pairs = [
            tuple(world.sample_appearance(rng, reserved, recipe.world.twotone_rate) for _ in range(2))
            for _ in range(recipe.world.pair_objects)
        ]
        places = [world.sample_pair(rng, spec, (a.cls, b.cls)) for a, b in pool.pairs]
        pool.pair_backgrounds = [first.background for first, _ in places]
        scenes = [tuple(zip(objects, at, strict=True)) for objects, at in zip(pool.pairs, places, strict=True)]
        pool.pair_images = np.concatenate(
            [world.render_scenes(scenes[start : start + chunk]) for start in range(0, len(scenes), chunk)]
        )
    return pool


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def lr_lambda(warmup: int, total: int):
    """Linear warm-up then cosine decay to 5% of the peak."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return f


class Checkpoint:
    """A stage's resumable state in the work folder."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict | None:
        return torch.load(self.path, weights_only=True) if self.path.exists() else None  # tensors and plain data only

    def save(self, state: dict):
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)  # atomic: a kill during the save leaves the previous checkpoint intact


def _rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def _restore_rng(rng: np.random.Generator, state: dict):
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


def _train_loop(name: str, total: int, ckpt: Checkpoint, every: int, modules: dict, step_fn, rng, max_steps=None):
    """Run `step_fn(step)` from the last checkpoint to `total`, checkpointing `modules` (objects with state_dict)."""
    state = ckpt.load()
    start = 0
    if state is not None:
        for key, module in modules.items():
            module.load_state_dict(state[key])
        _restore_rng(rng, state["rng"])
        start = state["step"]
        if start < total:
            console.print(f"[cyan]{name}[/]: resuming at step {start}/{total}")
    stop = total if max_steps is None else min(total, start + max_steps)
    losses = []
    # where output is not a terminal (a log), a plain line per checkpoint with the time left
    log = PlainLog(console, f"toy build: {name}", total=-(-total // every), done=start // every)
    with progress_bar() as progress:
        task = progress.add_task(f"toy build: {name}", total=total, completed=start)
        for step in range(start, stop):
            losses.append(step_fn(step))
            progress.update(task, advance=1, description=f"toy build: {name} loss {np.mean(losses[-50:]):.4f}")
            if (step + 1) % every == 0 or step + 1 == stop:
                ckpt.save({"step": step + 1, "rng": _rng_state(rng), **{k: m.state_dict() for k, m in modules.items()}})
                if (step + 1) % every == 0 or step + 1 == total:  # not where max_steps stops between checkpoints
                    log.finished(f"step {step + 1}/{total}", f"loss {np.mean(losses[-50:]):.4f}")
    return stop >= total, (float(np.mean(losses[-100:])) if losses else None)


# ---------------------------------------------------------------- stages


def train_vae(recipe: Recipe, pool: Pool, work: Path, max_steps=None):
    """Train the autoencoder on reconstruction with a small KL term."""
    b = recipe.backbone
    torch.manual_seed(recipe.seed)
    vae = models.make_vae(recipe)
    opt = torch.optim.AdamW(vae.parameters(), lr=b.vae_lr, weight_decay=0.0)
    rng = np.random.default_rng([recipe.seed, 2])
    flat = pool.all_images()

    def step(_):
        x = to_tensor(flat[rng.integers(len(flat), size=b.vae_batch)])
        posterior = vae.encode(x).latent_dist
        rec = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(rec, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    done, loss = _train_loop(
        "vae",
        b.vae_steps,
        Checkpoint(work / "vae.pt"),
        recipe.checkpoint_every,
        {"vae": vae, "opt": opt},
        step,
        rng,
        max_steps,
    )
    if done:
        vae.eval()
        with torch.no_grad():
            sample = to_tensor(flat[: pool.images.shape[0] * 2 : max(1, pool.images.shape[0] * 2 // 2048)])
            latents = vae.encode(sample).latent_dist.mean
            vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
            rec = vae.decode(latents).sample
            psnr = float(10 * torch.log10(4.0 / F.mse_loss(rec, sample)))
        return vae, {"vae_final_loss": loss, "vae_psnr_db": psnr, "latent_scaling_factor": vae.config.scaling_factor}
    return None, {}


def encode_pool(vae, pool: Pool) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and standard deviations of every pool image, in `Pool.all_images` order (saves encoding at
    every UNet step)."""
    flat = pool.all_images()
    means, stds = [], []
    with torch.no_grad():
        for start in range(0, len(flat), 1024):
            dist = vae.encode(to_tensor(flat[start : start + 1024])).latent_dist
            means.append(dist.mean.half())
            stds.append(dist.std.half())
    return torch.cat(means), torch.cat(stds)


def train_unet(recipe: Recipe, pool: Pool, vae, tokenizer, work: Path, max_steps=None):
    """Train UNet and text encoder jointly on noise prediction, with EMA copies of both."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    b = recipe.backbone
    torch.manual_seed(recipe.seed + 1)
    unet, text_encoder = models.make_unet(recipe), models.make_text_encoder(recipe)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=b.unet_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(b.warmup, b.unet_steps))
    ema_unet = EMAModel(unet.parameters(), decay=b.ema_decay)
    ema_text = EMAModel(text_encoder.parameters(), decay=b.ema_decay)
    noise_scheduler = DDPMScheduler(
        **{k: v for k, v in models.make_scheduler_config().items() if k != "set_alpha_to_one"}
    )
    rng = np.random.default_rng([recipe.seed, 3])
    means, stds = encode_pool(vae, pool)
    scale = vae.config.scaling_factor

    paired = round(b.unet_batch * recipe.world.pair_rate) if pool.pairs else 0  # two-object scenes per batch

    def step(_):
        idx = rng.integers(len(pool.appearances), size=b.unet_batch - paired)
        view = rng.integers(2, size=b.unet_batch - paired)
        texts, _ = pool.captions(rng, idx, view)
        rows = idx * 2 + view
        if paired:
            scenes = rng.integers(len(pool.pairs), size=paired)
            texts += pool.pair_captions(rng, scenes)
            rows = np.concatenate([rows, 2 * len(pool.appearances) + scenes])
        texts = ["" if rng.random() < b.empty_caption_rate else t for t in texts]
        flat = torch.from_numpy(rows)
        latents = (means[flat].float() + stds[flat].float() * torch.randn(len(flat), *means.shape[1:])) * scale
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(flat),))
        ids = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
        ).input_ids
        pred = unet(noise_scheduler.add_noise(latents, noise, t), t, text_encoder(ids)[0]).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema_unet.step(unet.parameters())
        ema_text.step(text_encoder.parameters())
        return loss.item()

    modules = {
        "unet": unet,
        "text": text_encoder,
        "opt": opt,
        "sched": sched,
        "ema_unet": ema_unet,
        "ema_text": ema_text,
    }
    done, loss = _train_loop(
        "unet", b.unet_steps, Checkpoint(work / "unet.pt"), recipe.checkpoint_every, modules, step, rng, max_steps
    )
    if done:
        ema_unet.copy_to(unet.parameters())
        ema_text.copy_to(text_encoder.parameters())
        return unet, text_encoder, {"unet_final_loss": loss}
    return None, None, {}


def train_evaluator(recipe: Recipe, pool: Pool, work: Path, max_steps=None):
    """Train the open_clip evaluator: caption-consistency contrastive loss plus instance discrimination.

    A caption is a positive for every image it is true of ("a circle" for every
    circle), so repeated short captions in a batch are not pushed apart; and two
    views of the same appearance are pulled together (the calibration probe found
    this is what makes concept identity measurable).
    """
    import open_clip

    e = recipe.evaluator
    torch.manual_seed(recipe.seed + 2)
    model = models.make_evaluator(recipe)
    tokenizer = open_clip.get_tokenizer(models.EVALUATOR_MODEL_NAME)
    opt = torch.optim.AdamW(model.parameters(), lr=e.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(100, e.steps))
    rng = np.random.default_rng([recipe.seed, 4])

    def soft_ce(logits, positives):
        target = positives.float() / positives.float().sum(1, keepdim=True).clamp(min=1)
        return -(target * logits.log_softmax(1)).sum(1).mean()

    def step(_):
        idx = rng.integers(len(pool.appearances), size=e.batch)
        idx2 = np.concatenate([idx, idx])
        view = np.concatenate([np.zeros(e.batch, int), np.ones(e.batch, int)])
        texts, cap_codes = pool.captions(rng, idx2, view)
        img_codes = pool.image_codes[idx2, view]
        x = to_tensor(pool.images[idx2, view])
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T
        match = torch.from_numpy(world.caption_matches(cap_codes, img_codes))
        clip_loss = (soft_ce(logits, match) + soft_ce(logits.T, match.T)) / 2
        same = pool.appearance_ids[idx]
        pos = torch.from_numpy(same[:, None] == same[None, :])
        inst_logits = img[: e.batch] @ img[e.batch :].T / 0.1
        inst_loss = (soft_ce(inst_logits, pos) + soft_ce(inst_logits.T, pos.T)) / 2
        loss = clip_loss + e.instance_weight * inst_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return loss.item()

    done, loss = _train_loop(
        "evaluator",
        e.steps,
        Checkpoint(work / "evaluator.pt"),
        recipe.checkpoint_every,
        {"model": model, "opt": opt, "sched": sched},
        step,
        rng,
        max_steps,
    )
    return (model if done else None), ({"evaluator_final_loss": loss} if done else {})


# ---------------------------------------------------------------- export


def export_backbone(out: Path, vae, unet, text_encoder, tokenizer, tokenizer_files: Path):
    """Save the backbone as a Stable-Diffusion pipeline folder (fp16 safetensors).

    vocab.json and merges.txt are copied beside tokenizer.json so that the slow
    CLIPTokenizer of older transformers releases loads the folder too.
    """
    import shutil

    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**models.make_scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tokenizer_files / name, out / "tokenizer" / name)


def export_evaluator(out: Path, model, recipe: Recipe):
    """Save the evaluator in open_clip's `local-dir:` layout (open_clip_config.json + safetensors)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": models.evaluator_model_config(recipe),
        "preprocess_cfg": models.evaluator_preprocess_config(),
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / "open_clip_model.safetensors")


def _refuse_another_recipes_work(recipe: Recipe, work: Path) -> None:
    """A work folder resumes only the recipe that started it: checkpoints of another recipe would be continued
    under this one's settings (or fail on mismatched shapes) without a word."""
    from pydantic import ValidationError

    from lfsbench.errors import LfsbenchError

    saved = work / "recipe.json"
    if not saved.exists():
        return
    try:
        previous = Recipe.model_validate_json(saved.read_text())
    except ValidationError:
        previous = None
    if previous != recipe:
        raise LfsbenchError(
            f"The work folder {work} holds the checkpoints of another recipe ({saved} differs from this build's "
            "recipe, or cannot be read), and a build resumes only its own. Pass the recipe that started it, or "
            "give this build a new work folder (--work)."
        )


def build(recipe: Recipe, out: Path, work: Path, stages=STAGES, max_steps: int | None = None) -> dict:
    """Run the requested stages, resuming from `work`; export each finished one to `out`. Returns figures."""
    _refuse_another_recipes_work(recipe, work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipe.json").write_text(recipe.model_dump_json(indent=2))
    figures: dict = {}
    t0 = time.time()
    console.print("toy build: rendering the training pool ...")
    pool = render_pool(recipe)
    tokenizer = models.write_clip_tokenizer(work / "tokenizer", recipe.backbone.max_length)
    if "evaluator" in stages:
        model, fig = train_evaluator(recipe, pool, work, max_steps)
        figures.update(fig)
        if model is not None:
            export_evaluator(out / "evaluator", model, recipe)
    vae = None
    if "vae" in stages or "unet" in stages:
        vae, fig = train_vae(recipe, pool, work, max_steps)
        figures.update(fig)
    if "unet" in stages and vae is not None:
        unet, text_encoder, fig = train_unet(recipe, pool, vae, tokenizer, work, max_steps)
        figures.update(fig)
        if unet is not None:
            export_backbone(out / "backbone", vae, unet, text_encoder, tokenizer, work / "tokenizer")
    figures["build_seconds_this_call"] = round(time.time() - t0, 1)
    (out / "recipe.json").write_text(recipe.model_dump_json(indent=2))
    previous = json.loads((out / "build.json").read_text()) if (out / "build.json").exists() else {}
    (out / "build.json").write_text(json.dumps({**previous, **figures}, indent=2))
    return figures
