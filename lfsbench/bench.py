"""`lfsbench bench`: how fast lfsbench trains, generates and scores, against the loop diffusers' example scripts run.

Three stages, each timed in this process on the same backbone and images:
- `train`: each method's first session (its `learn`, everything it does included: class images, in-context
  contexts), as training steps per second; the reference is the training loop of diffusers'
  `train_custom_diffusion.py` on the same data and parameters as `naive` (cross-attention K/V and the modifier token,
  AdamW, the same batch size): the VAE encodes the batch's images and the text encoder its prompts inside every step.
- `generate`: evaluation images per second as the runner makes them (a concept's prompts and seeds in
  `Backbone.generation_batch`-sized calls) against one pipeline call per prompt (`num_images_per_prompt`, as the
  example scripts' validation does), both with the protocol's sampler, steps, eta and precision.
- `evaluate`: evaluator images per second as the scorer embeds them (large batches) against one image at a time
  (CustomConcept101's `evaluate.py` opens and embeds each image on its own).

The ratio is lfsbench's rate over the reference's. A method that does more work per step than naive (replay's memory,
prior preservation, distillation) shows that work in its ratio; `naive` is the like-for-like comparison.

Each side's work is also counted in FLOPs (torch's `FlopCounterMode`: matrix products, convolutions and attention,
forward and backward) by doing the timed call once more under the counter, so each row says how many GFLOP one unit
(a training step, an image) costs and what fraction of the device's peak the side reached: GFLOP per unit x units
per second over the rate of a large matrix product in the backbone's dtype on the same threads (`peak_gflops`). A
low fraction says where time goes to overhead rather than arithmetic. On a CPU the peak itself varies from run to run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from lfsbench.backbone import Backbone
from lfsbench.concepts import Concept, session_view
from lfsbench.evaluation import plan
from lfsbench.memory import peak_memory_mb, reset_peak_memory
from lfsbench.protocol import Protocol


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(work: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    work()
    _sync(device)
    return time.perf_counter() - t0


def _gflop(work: Callable[[], object]) -> float:
    """The GFLOP `work` does in matrix products, convolutions and attention (torch's count; elementwise ops count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops() / 1e9


def peak_gflops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """The rate of a large matrix product in `dtype` on `device` (this process's threads): each stage's peak."""
    size = 8192 if device.type == "cuda" else 2048
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    seconds = _timed(lambda: [a @ b for _ in range(repeats)], device)
    return 2 * size**3 * repeats / seconds / 1e9


def reference_training(backbone: Backbone, concept: Concept, prompt: str, steps: int, batch_size: int, config) -> None:
    """diffusers' `train_custom_diffusion.py` loop on naive's parameters: VAE and text encoding inside every step."""
    from lfsbench import training

    token_id = training.add_modifier_token(backbone, concept.token, concept.class_noun)
    kv = training.install_trainable_kv(backbone)
    embeddings = training.token_embeddings(backbone)  # the whole matrix trains; other rows' gradients are zeroed
    for weight in embeddings:
        weight.requires_grad_(True)
    optimizer = torch.optim.AdamW(
        [{"params": kv, "lr": config.kv_lr}, {"params": embeddings, "lr": config.token_lr}], weight_decay=0.0
    )
    generator = torch.Generator(backbone.device).manual_seed(0)
    images = concept.images.to(backbone.device)
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch_size,), generator=generator, device=backbone.device)
        with backbone.autocast():
            latents = backbone.encode_images(images[idx], generator)  # the VAE, every step
            context = backbone.encode_prompts([prompt] * batch_size)  # the text encoder, every step
            loss = training.noise_prediction_loss(backbone, latents, context, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for weight in embeddings:
            keep = torch.zeros(weight.shape[0], 1, dtype=torch.bool, device=weight.device)
            keep[token_id] = True
            weight.grad.mul_(keep)
        optimizer.step()
    for p in [*kv, *embeddings]:
        p.requires_grad_(False)


def reference_generation(backbone: Backbone, job: plan.Job, steps: int, guidance: float, per_prompt: int) -> None:
    """One pipeline call per prompt, `per_prompt` images each, one generator per image."""
    for start in range(0, len(job.prompts), per_prompt):
        seeds = job.seeds[start : start + per_prompt]
        with backbone.autocast():
            backbone.pipeline(
                job.prompts[start],
                height=backbone.resolution,
                width=backbone.resolution,
                num_images_per_prompt=len(seeds),
                num_inference_steps=steps,
                guidance_scale=guidance,
                eta=backbone.eta,  # the protocol's, set by `sampling` as for lfsbench's side
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                output_type="pt",
            )


def timed_by_default() -> list[str]:
    """The methods `lfsbench bench` times when none is named: the built-in methods and anchors. A ceiling does not
    train, and a control is the method it is built on with one change."""
    from lfsbench.method import all_methods

    return [
        name
        for name, cls, origin in all_methods()
        if cls is not None and origin == "built in" and cls.role in ("method", "anchor")
    ]


def bench(
    methods: list[str],
    protocol: Protocol,
    load_backbone: Callable[[], Backbone],
    evaluator,
    concept: Concept,
    steps: int = 20,
    progress: Callable[[str], None] = lambda what: None,
    settings: dict | None = None,
    on_row: Callable[[pd.DataFrame], None] = lambda rows: None,
) -> pd.DataFrame:
    """One row per (method or "all", stage): lfsbench's rate, the reference's, their ratio, the unit, and the peak
    memory of lfsbench's side (CUDA memory allocated on a GPU, resident memory on the CPU).

    `load_backbone` returns a fresh backbone (methods change the one they train). `concept` is what every method
    learns (the protocol's first, usually). `steps` is the training budget of each timed session. `settings`: method
    settings given to every method that has them (e.g. fewer prior images, `class_images`), recorded in the rows.
    `on_row` receives the rows so far after each one (the CLI writes them, so a bench stopped early keeps its rows).
    """
    from lfsbench.method import create_method, method_class, preset_for

    settings = settings or {}

    def given(name: str) -> dict:
        """The settings of `settings` that method `name` has, and the training steps."""
        fields = method_class(name).Config.model_fields
        return {**{k: v for k, v in settings.items() if k in fields}, "steps": steps}

    rows = []
    evaluation = protocol.evaluation
    per_prompt = evaluation.images_per_prompt
    job = plan.concept_job(protocol, concept)
    view = session_view(0, [concept], protocol.training_prompt)

    def train_reference(backbone: Backbone) -> None:
        prompt = view.concepts[0].training_prompt
        reference_training(backbone, concept, prompt, steps, naive_config.batch_size, naive_config)

    def trainer(name: str) -> Callable[[], object]:
        method = create_method(name, given(name), preset_for(protocol.backbone))
        method.setup(load_backbone(), seed=0)
        return lambda: method.learn(view)

    progress("training: the reference loop")
    backbone = load_backbone()
    device = backbone.device
    peak = peak_gflops(device, backbone.weight_dtype)
    naive_config = create_method("naive", given("naive"), preset_for(protocol.backbone)).config
    reference = Rate(
        steps, _timed(lambda: train_reference(backbone), device), _gflop(lambda: train_reference(load_backbone()))
    )
    for name in methods:
        progress(f"training: {name}")
        work = trainer(name)
        reset_peak_memory(device)
        seconds = _timed(work, device)
        memory = peak_memory_mb(device)
        ours = Rate(steps, seconds, _gflop(trainer(name)), memory)
        shown = ", ".join(f"{k}={v}" for k, v in given(name).items())
        rows.append(_row(name, "train", ours, reference, peak, "training steps/s", shown))
        on_row(pd.DataFrame(rows))

    progress("generating")
    backbone = load_backbone()
    n = len(job.prompts)

    def ours_generate() -> None:
        backbone.generate(job.prompts, job.seeds, evaluation.steps, evaluation.guidance)

    def reference_generate() -> None:
        reference_generation(backbone, job, evaluation.steps, evaluation.guidance, per_prompt)

    with backbone.sampling(evaluation.sampler, evaluation.precision, evaluation.eta):  # both sides: the protocol's
        reset_peak_memory(device)
        seconds = _timed(ours_generate, device)
        ours = Rate(n, seconds, _gflop(ours_generate), peak_memory_mb(device))
        reference = Rate(n, _timed(reference_generate, device), _gflop(reference_generate))
    rows.append(_row("all", "generate", ours, reference, peak, "images/s"))
    on_row(pd.DataFrame(rows))

    progress("scoring")
    images = torch.rand(n, 3, backbone.resolution, backbone.resolution, generator=torch.Generator().manual_seed(0))

    def ours_score() -> None:
        evaluator.encode_images(images)

    def reference_score() -> None:
        for i in range(n):
            evaluator.encode_images(images[i : i + 1])

    reset_peak_memory(evaluator.device)
    seconds = _timed(ours_score, device)
    ours = Rate(n, seconds, _gflop(ours_score), peak_memory_mb(evaluator.device))
    reference = Rate(n, _timed(reference_score, device), _gflop(reference_score))
    rows.append(_row("all", "evaluate", ours, reference, peak, "images/s"))
    on_row(pd.DataFrame(rows))
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Rate:
    """`units` (training steps, images) done in `seconds`, costing `gflop` in all."""

    units: int
    seconds: float
    gflop: float
    peak_memory_mb: float = float("nan")  # measured on lfsbench's side only

    @property
    def per_s(self) -> float:
        return self.units / self.seconds

    @property
    def gflop_per_unit(self) -> float:
        return self.gflop / self.units

    def fraction_of(self, peak_gflops: float) -> float:
        return self.gflop / self.seconds / peak_gflops


def _row(method: str, stage: str, ours: Rate, reference: Rate, peak: float, unit: str, settings: str = "") -> dict:
    return {
        "method": method,
        "stage": stage,
        "lfsbench_per_s": ours.per_s,
        "reference_per_s": reference.per_s,
        "ratio": ours.per_s / reference.per_s,
        "unit": unit,
        "lfsbench_gflop_per_unit": ours.gflop_per_unit,
        "reference_gflop_per_unit": reference.gflop_per_unit,
        "lfsbench_fraction_of_peak": ours.fraction_of(peak),
        "reference_fraction_of_peak": reference.fraction_of(peak),
        "peak_gflops": peak,
        "threads": torch.get_num_threads(),
        "peak_memory_mb": ours.peak_memory_mb,
        "settings": settings,
    }
