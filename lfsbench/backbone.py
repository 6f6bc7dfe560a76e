"""The diffusion backbone behind a small interface: encode, decode, add noise, predict noise, generate.

The toy backbone and real Stable Diffusion are both diffusers pipeline folders and
are loaded by the same `Backbone.from_pretrained`; methods never see which one runs.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch

from lfsbench.errors import LfsbenchError

ENCODE_BATCH = (
    32  # images through the VAE encoder at once when training encodes its data (the toy's sessions fit in one)
)


def quiet_libraries():
    """Silence diffusers' and transformers' loading bars and chatter; lfsbench shows its own progress."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    for log in (dlog, tlog):
        log.disable_progress_bar()
        log.set_verbosity_error()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Evaluation samplers (protocol field evaluation.sampler): the name -> a diffusers scheduler class and the settings it
# takes beside the backbone's noise schedule. DDIM is the standard; DPM-Solver++ (2nd order, multistep) reaches
# comparable images in fewer steps, with different numbers (docs/speed.md).
SAMPLERS = {
    "ddim": ("DDIMScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
}
PRECISIONS = {"model": None, "bfloat16": torch.bfloat16}  # evaluation.precision -> the autocast dtype it forces


def resolve_device_and_dtype(device=None, dtype=None) -> tuple[torch.device, torch.dtype]:
    """The device a backbone loads onto (the GPU when there is one) and its frozen weights' dtype (float16 on a GPU,
    float32 on the CPU, unless `dtype` says otherwise)."""
    device = torch.device(device) if device is not None else default_device()
    return device, dtype or (torch.float16 if device.type == "cuda" else torch.float32)


class Backbone:
    """A Stable-Diffusion-shaped text-to-image model (tokenizer, text encoder, UNet, VAE, scheduler)."""

    fingerprint: str | None = None  # of its weights, where its loader knows them (toy): the base-model cache's key

    def __init__(self, pipeline, name: str = "backbone"):
        self.pipeline = pipeline
        self.name = name
        self._forced_autocast: torch.dtype | None = None  # set inside `sampling(precision=...)`
        self._eta = 0.0  # DDIM's eta, set inside `sampling(eta=...)`: 0 deterministic, 1 ancestral ("DDPM")
        pipeline.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device=None, dtype=None, name: str | None = None) -> Backbone:
        """Load a diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/, ...).

        On a GPU the frozen weights are half precision (trainable copies stay float32, and every
        forward pass runs under `autocast`); on the CPU everything is float32 unless `dtype` says otherwise
        (the tests run every method with float16 and bfloat16 weights on the CPU).
        """
        device, dtype = resolve_device_and_dtype(device, dtype)
        from diffusers import StableDiffusionPipeline

        folder = Path(folder)
        if not (folder / "model_index.json").is_file():
            raise LfsbenchError(
                f"{folder} is not a diffusers Stable Diffusion folder: it has no model_index.json. "
                "Point the backbone at a folder saved with `save_pretrained` (it holds model_index.json, unet/, "
                "vae/, text_encoder/, tokenizer/ and scheduler/)."
            )
        if "XL" in json.loads((folder / "model_index.json").read_text()).get("_class_name", ""):
            raise LfsbenchError(
                f"{folder} holds an SDXL pipeline: load it with lfsbench.models.load_backbone_folder (or name the "
                "folder as a backbone), which loads it as lfsbench.sdxl.SDXLBackbone."
            )
        quiet_libraries()
        pipe = StableDiffusionPipeline.from_pretrained(
            folder, dtype=dtype, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
        return cls(cls._prepared(pipe, device), name or folder.name)

    @classmethod
    def _prepared(cls, pipe, device):
        """The loaded pipeline as every backbone runs it: DDIM (with the settings that keep diffusers from warning:
        steps_offset=1, clip_sample=False), on the device, text encoders float32 (modifier-token rows are trained,
        as diffusers' examples keep them), everything frozen and in eval mode. (Channels-last UNet weights were tried
        and measured again: no consistent gain on the toy backbone, so the weights keep torch's default layout.)"""
        from diffusers import DDIMScheduler

        config = {**pipe.scheduler.config, "steps_offset": 1, "clip_sample": False, "set_alpha_to_one": False}
        pipe.scheduler = DDIMScheduler.from_config(config)
        pipe.to(device)
        encoders = [m for m in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if m]
        for encoder in encoders:
            encoder.to(torch.float32)
        for module in (pipe.unet, pipe.vae, *encoders):
            module.requires_grad_(False).eval()
        return pipe

    # ------------------------------------------------------------ components

    @property
    def unet(self):
        return self.pipeline.unet

    @property
    def vae(self):
        return self.pipeline.vae

    @property
    def text_encoder(self):
        return self.pipeline.text_encoder

    @property
    def tokenizer(self):
        return self.pipeline.tokenizer

    @property
    def text_encoders(self) -> list:
        """Every text encoder whose input embeddings hold the modifier tokens (SDXL has two), in order."""
        return [self.pipeline.text_encoder]

    @property
    def tokenizers(self) -> list:
        """The tokenizer of each of `text_encoders`."""
        return [self.pipeline.tokenizer]

    @property
    def device(self) -> torch.device:
        return self.pipeline.unet.device

    @property
    def resolution(self) -> int:
        return self.pipeline.unet.config.sample_size * self.pipeline.vae_scale_factor

    @property
    def generation_batch(self) -> int:
        """Images per pipeline call when generating. On a CPU 64 (larger batches gain nothing there: the toy UNet is
        compute-bound from a few images on); on a GPU as many as keep memory modest at this size: 16 at 512 px
        (Stable Diffusion 1.x; guidance doubles the UNet's batch), more for smaller images, at most 512."""
        if self.device.type != "cuda":
            return 64
        return max(4, min(512, 16 * (512 // self.resolution) ** 2))

    @property
    def num_train_timesteps(self) -> int:
        return self.pipeline.scheduler.config.num_train_timesteps

    # ------------------------------------------------------------ the interface

    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype of the frozen weights (the VAE's: a method may train the UNet in float32, never the VAE)."""
        return self.vae.dtype

    def autocast(self):
        """Mixed precision when the frozen weights are half precision (float16 or bfloat16), on any device: a method
        that trains float32 copies (K/V, a whole float32 UNet) meets half-precision weights inside one forward pass.
        A no-op with float32 weights, except inside `sampling(precision="bfloat16")`."""
        from contextlib import nullcontext

        if self._forced_autocast is not None:
            return torch.autocast(self.device.type, dtype=self._forced_autocast)
        if self.weight_dtype in (torch.float16, torch.bfloat16):
            return torch.autocast(self.device.type, dtype=self.weight_dtype)
        return nullcontext()

    @property
    def eta(self) -> float:
        """DDIM's eta of the moment (`sampling`): what a pipeline call outside `generate` passes to match it."""
        return self._eta

    @contextmanager
    def sampling(self, sampler: str = "ddim", precision: str = "model", eta: float = 0.0):
        """Generation inside this block uses `sampler` (a SAMPLERS name; the backbone's noise schedule), with
        precision "bfloat16" bfloat16 autocast, and DDIM's `eta` (0: deterministic; 1: fresh noise at every step, what
        latent-diffusion's DDIM sampler at eta 1 and CustomConcept101's "DDPM" columns draw; DDIM only); all are
        restored after. The runner wraps evaluation in it; the methods' own sampling (distillation's trajectories, in
        training) keeps DDIM at eta 0 and the model's precision."""
        if sampler not in SAMPLERS:
            raise LfsbenchError(f"Unknown sampler {sampler!r}; the samplers are {', '.join(SAMPLERS)}.")
        if precision not in PRECISIONS:
            raise LfsbenchError(f"Unknown precision {precision!r}; the choices are {', '.join(PRECISIONS)}.")
        if eta and sampler != "ddim":
            raise LfsbenchError(f"eta {eta} is DDIM's; the {sampler} sampler has none. Use sampler ddim, or eta 0.")
        import diffusers

        kept = self.pipeline.scheduler, self._forced_autocast, self._eta
        if sampler != "ddim":
            cls, settings = SAMPLERS[sampler]
            self.pipeline.scheduler = getattr(diffusers, cls).from_config(kept[0].config, **settings)
        self._forced_autocast, self._eta = PRECISIONS[precision], float(eta)
        try:
            yield self
        finally:
            self.pipeline.scheduler, self._forced_autocast, self._eta = kept

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer
        return tok(
            prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text-encoder hidden states, the UNet's cross-attention context."""
        return self.text_encoder(self.tokenize(prompts))[0]

    @torch.no_grad()
    def encode_images(
        self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> torch.Tensor:
        """Images in [0, 1], NCHW -> scaled latents (a sample of the posterior, or its mean with sample=False)."""
        x = images.to(self.device, self.vae.dtype) * 2 - 1
        dist = self.vae.encode(x).latent_dist
        latents = dist.sample(generator) if sample else dist.mean
        return latents * self.vae.config.scaling_factor

    @torch.no_grad()
    def posterior(self, images: torch.Tensor, batch_size: int = ENCODE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 1], NCHW -> the VAE posterior's mean and std (unscaled), `batch_size` images at a time.

        Training encodes every image it may draw from once per session; encoding in batches keeps the
        memory of that step flat however many images there are (replay's memory grows every session;
        Stable Diffusion presets generate 200 class images).
        """
        means, stds = [], []
        for part in images.split(batch_size):
            dist = self.vae.encode(part.to(self.device, self.vae.dtype) * 2 - 1).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
        return torch.cat(means), torch.cat(stds)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1], NCHW."""
        images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ((images.float() + 1) / 2).clamp(0, 1)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.pipeline.scheduler.add_noise(latents, noise, timesteps)

    def predict_noise(self, noisy: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.unet(noisy, timesteps, context).sample

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        steps: int = 25,
        guidance: float = 5.0,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Text-to-image: one image per (prompt, seed), in [0, 1], NCHW, on the CPU.

        Each image has its own generator, so an image depends on its prompt and
        seed only, never on what else is in the batch.
        """
        out = []
        size = self.resolution
        batch_size = batch_size or self.generation_batch
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[chunk]]
            with self.autocast():
                images = self.pipeline(
                    prompts[chunk],
                    height=size,
                    width=size,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    eta=self._eta,
                    generator=generators,
                    output_type="pt",
                ).images
            out.append(images.float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def generate_from_latents(
        self,
        prompts: list[str],
        seeds: list[int],
        latents: torch.Tensor,
        strength: float,
        steps: int = 25,
        guidance: float = 5.0,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Image-to-image from given scaled latents: noise each to `strength` and denoise with its prompt.

        diffusers' image-to-image semantics (`strength` 1 starts from pure noise and ignores
        the latents, so it falls back to text-to-image); one generator per image, as in `generate`.
        """
        if strength >= 1.0:
            return self.generate(prompts, seeds, steps, guidance, batch_size)
        pipe = self._img2img()
        out = []
        batch_size = batch_size or self.generation_batch
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[chunk]]
            with self.autocast():
                images = pipe(
                    prompts[chunk],
                    image=latents[chunk].to(self.device, self.unet.dtype),
                    strength=strength,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    eta=self._eta,
                    generator=generators,
                    output_type="pt",
                ).images
            out.append(images.float().cpu())
        return torch.cat(out)

    def generate_in_context(
        self,
        prompts: list[str],
        seeds: list[int],
        contexts: list[torch.Tensor | None],
        strength: float,
        steps: int = 25,
        guidance: float = 5.0,
    ) -> torch.Tensor:
        """In-context generation: each image from its context latent (`generate_from_latents` at `strength`), or from
        noise where its context is None (`generate`); images in the prompts' order."""
        images: list[torch.Tensor | None] = [None] * len(prompts)
        for start_from_context in (False, True):
            which = [i for i, ctx in enumerate(contexts) if (ctx is not None) == start_from_context]
            if not which:
                continue
            chosen, chosen_seeds = [prompts[i] for i in which], [seeds[i] for i in which]
            if start_from_context:
                latents = torch.stack([contexts[i] for i in which])
                made = self.generate_from_latents(chosen, chosen_seeds, latents, strength, steps, guidance)
            else:
                made = self.generate(chosen, chosen_seeds, steps, guidance)
            for i, image in zip(which, made, strict=True):
                images[i] = image
        return torch.stack(images)

    @torch.no_grad()
    def sample_trajectories(
        self, prompts: list[str], seeds: list[int], steps: int = 25, guidance: float = 5.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampler's path from pure noise: (timesteps [S], latents [S, N, C, H, W]), latents[i] the UNet's input
        at timesteps[i].

        Data-free inputs for distillation: what the model sees while it generates.
        """
        from diffusers.utils.torch_utils import randn_tensor

        c, size = self.unet.config, self.unet.config.sample_size
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        start = randn_tensor(
            (len(prompts), c.in_channels, size, size), generator=generators, device=self.device, dtype=self.unet.dtype
        )
        path = [start.cpu()]

        def keep(pipe, i, t, kwargs):
            path.append(kwargs["latents"].detach().cpu())
            return kwargs

        with self.autocast():
            self.pipeline(
                prompts,
                num_inference_steps=steps,
                guidance_scale=guidance,
                latents=start,
                output_type="latent",
                callback_on_step_end=keep,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        timesteps = self.pipeline.scheduler.timesteps.cpu()
        return timesteps, torch.stack(path[: len(timesteps)])

    def _img2img(self):
        """An image-to-image pipeline sharing this backbone's components (no second copy of any weight)."""
        if getattr(self, "_img2img_pipe", None) is None:
            from diffusers import StableDiffusionImg2ImgPipeline
            from diffusers.image_processor import VaeImageProcessor
            from diffusers.utils.torch_utils import randn_tensor

            class FromLatents(StableDiffusionImg2ImgPipeline):
                # diffusers takes a 4-channel `image` as latents; the toy VAE has 8 channels, so always do so
                def prepare_latents(
                    self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None
                ):
                    image = image.to(device=device, dtype=dtype)
                    noise = randn_tensor(image.shape, generator=generator, device=device, dtype=dtype)
                    return self.scheduler.add_noise(image, noise, timestep)

            components = {k: v for k, v in self.pipeline.components.items()}
            self._img2img_pipe = FromLatents(**components)
            self._img2img_pipe.image_processor = VaeImageProcessor(
                vae_scale_factor=self.pipeline.vae_scale_factor, vae_latent_channels=self.vae.config.latent_channels
            )
            self._img2img_pipe.set_progress_bar_config(disable=True)
        self._img2img_pipe.scheduler = self.pipeline.scheduler  # the sampler of the moment (`sampling`)
        return self._img2img_pipe
