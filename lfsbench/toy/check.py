"""`lfsbench toy check`: is the toy world fit for purpose? Measures every gate of docs/toyworld.md."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from lfsbench.errors import LfsbenchError
from lfsbench.evaluation import functional as metrics
from lfsbench.images import save_grid, to_float
from lfsbench.toy import WEIGHTS_DIR, copying, load_toy_backbone, load_toy_evaluator, oracle, weights_world, world

HELD_OUT_SEED = 777  # renders for the evaluator checks: a seed stream the build never uses
SHOT_SEED, HELD_OUT_CONCEPT_SEED = world.SHOT_SEED, world.CHECK_SEED


@dataclass
class Gate:
    """One fitness criterion: the measured value against its bound."""

    name: str
    value: float
    bound: float
    detail: str = ""
    at_most: bool = False  # the value must not exceed the bound (an error, a rate of chance copies)

    @property
    def passed(self) -> bool:
        return bool(self.value <= self.bound if self.at_most else self.value >= self.bound)


@dataclass
class CheckResult:
    gates: list[Gate] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "gates": [{**asdict(g), "passed": g.passed} for g in self.gates],
            "figures": self.figures,
        }


def _colour_text_embeddings(evaluator) -> torch.Tensor:
    """One embedding per named colour: the normalised mean over classes of 'a {colour} {class}' (prompt ensembling)."""
    rows = [evaluator.encode_texts([f"a {c} {k}" for k in world.CLASSES]).mean(0) for c in world.COLOURS]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def classify(evaluator, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot class and colour predictions (indices into CLASSES and COLOURS)."""
    emb = evaluator.encode_images(images)
    cls = (emb @ evaluator.encode_texts([f"a {k}" for k in world.CLASSES]).T).argmax(1).numpy()
    col = (emb @ _colour_text_embeddings(evaluator).T).argmax(1).numpy()
    return cls, col


def evaluator_zero_shot(evaluator, n: int = 1000, version: int = 1) -> dict:
    """Class and colour accuracy on fresh renders no build ever saw."""
    rng = np.random.default_rng(HELD_OUT_SEED)
    reserved = world.reserved_patterns(world.concept_catalogue())
    apps = [world.sample_appearance(rng, reserved) for _ in range(n)]
    images = to_float(world.render(apps, [world.sample_placement(rng, version, a.cls) for a in apps]))
    cls, col = classify(evaluator, images)
    true_cls = np.array([world.CLASSES.index(a.cls) for a in apps])
    named = np.array([not a.twotone for a in apps])
    true_col = np.array([list(world.COLOURS).index(a.colour) if not a.twotone else -1 for a in apps])
    return {"class_acc": float((cls == true_cls).mean()), "colour_acc": float((col[named] == true_col[named]).mean())}


def concept_auc(evaluator, concepts: list[world.ToyConcept], shots: int, version: int = 1) -> dict:
    """Per concept: ROC AUC of 'mean cosine to the shots' for held-out renders vs same-class distractors, all at
    placements of the world's nuisance (so, on world 2, identity across position, size, rotation and background)."""
    catalogue = world.concept_catalogue()
    reserved = world.reserved_patterns(catalogue)
    rng = np.random.default_rng(HELD_OUT_SEED + 1)
    aucs = {}
    for concept in concepts:
        refs = evaluator.encode_images(to_float(world.concept_renders(concept, shots, SHOT_SEED, version)))
        pos = evaluator.encode_images(to_float(world.concept_renders(concept, 32, HELD_OUT_CONCEPT_SEED, version)))
        others = [o for o in catalogue if o.cls == concept.cls and o.name != concept.name]
        neg_imgs = [world.concept_renders(o, 4, HELD_OUT_CONCEPT_SEED, version) for o in others]
        random_twotone = []
        while len(random_twotone) < 32:
            app = world.sample_appearance(rng, reserved, twotone_rate=1.0)
            if app.cls == concept.cls:
                random_twotone.append(app)
        places = [world.sample_placement(rng, version, a.cls) for a in random_twotone]
        neg_imgs.append(world.render(random_twotone, places))
        neg = evaluator.encode_images(to_float(np.concatenate(neg_imgs)))
        aucs[concept.name] = metrics.roc_auc(
            metrics.image_alignment_scores(pos, refs), metrics.image_alignment_scores(neg, refs)
        )
    return aucs


def backbone_class_prompts(
    backbone, evaluator, seeds: int, steps: int, guidance: float, out: Path | None, version: int = 1
) -> dict:
    """Generate 'a {colour} {class}' for every pair and classify; the same for real renders (the ceiling)."""
    pairs = [(c, k) for k in world.CLASSES for c in world.COLOURS]
    prompts = [f"a {c} {k}" for c, k in pairs for _ in range(seeds)]
    images = backbone.generate(prompts, list(range(seeds)) * len(pairs), steps=steps, guidance=guidance)
    rng = np.random.default_rng(HELD_OUT_SEED + 2)
    apps = [world.Appearance(k, colour=c) for c, k in pairs for _ in range(seeds)]
    real = to_float(world.render(apps, [world.sample_placement(rng, version, a.cls) for a in apps]))
    true_cls = np.array([world.CLASSES.index(k) for c, k in pairs for _ in range(seeds)])
    true_col = np.array([list(world.COLOURS).index(c) for c, k in pairs for _ in range(seeds)])
    figures = {}
    for label, imgs in (("generated", images), ("real", real)):
        cls, col = classify(evaluator, imgs)
        figures[f"{label}_class_acc"] = float((cls == true_cls).mean())
        figures[f"{label}_colour_acc"] = float((col == true_col).mean())
    if out is not None:
        save_grid(images, out / "class_prompts.png", columns=len(world.COLOURS) * seeds)
    return figures


def autoencoder_round_trip(backbone, evaluator, concepts, shots: int, version: int = 1) -> dict:
    """Per concept: IA of VAE reconstructions of held-out renders divided by the originals' IA."""
    ratios = {}
    for concept in concepts:
        refs = evaluator.encode_images(to_float(world.concept_renders(concept, shots, SHOT_SEED, version)))
        originals = to_float(world.concept_renders(concept, 32, HELD_OUT_CONCEPT_SEED, version))
        with torch.no_grad():
            latents = backbone.vae.encode(originals.to(backbone.device) * 2 - 1).latent_dist.mean
            recon = ((backbone.vae.decode(latents).sample.float().cpu() + 1) / 2).clamp(0, 1)
        ia_orig = metrics.image_alignment_scores(evaluator.encode_images(originals), refs).mean()
        ia_recon = metrics.image_alignment_scores(evaluator.encode_images(recon), refs).mean()
        ratios[concept.name] = float(ia_recon / ia_orig)
    return ratios


LEARNABILITY_SEEDS = (0, 1, 2)  # training seeds the learnability gate averages over (quick: the first only)


def learnability(
    evaluator,
    concepts,
    shots: int,
    config,
    n_images: int,
    steps: int,
    guidance: float,
    out: Path | None,
    weights: Path = WEIGHTS_DIR,
    version: int = 1,
    seeds: tuple[int, ...] = LEARNABILITY_SEEDS,
    sampling: dict | None = None,
):
    """Per concept: IA after one Custom-Diffusion-style session minus IA of the bare class prompt, averaged over
    training seeds. Seed s trains with `config.seed = s` and generates with seeds 1000 s + i, so that seed 0 is the
    single draw earlier checks made. One session's gain moves by up to 0.25 between seeds (docs/toyworld.md), so
    the gate reads the mean (`gain`); `gains` keeps each seed's. Images are generated inside
    `backbone.sampling(**sampling)` (the protocol's sampler, precision and eta); training is untouched by it."""
    from lfsbench.training import TrainingData, add_modifier_token, train_kv_session

    results, grids = {}, []
    for concept in concepts:
        shots_img = to_float(world.concept_renders(concept, shots, SHOT_SEED, version))
        refs = evaluator.encode_images(shots_img)
        prompt = f"a <new1> {concept.cls}"
        per_seed = []
        for seed in seeds:
            backbone = load_toy_backbone(weights=weights)  # fresh: each session starts from the base model
            images = list(range(1000 * seed, 1000 * seed + n_images))
            with backbone.sampling(**(sampling or {})):
                bare = backbone.generate([f"a {concept.cls}"] * n_images, images, steps=steps, guidance=guidance)
            token_id = add_modifier_token(backbone, "<new1>", concept.cls)
            t0 = time.time()
            train_kv_session(
                backbone, [TrainingData(shots_img, [prompt] * shots)], [token_id], replace(config, seed=seed)
            )
            train_s = time.time() - t0
            with backbone.sampling(**(sampling or {})):
                learned = backbone.generate([prompt] * n_images, images, steps=steps, guidance=guidance)
            ia_bare = float(metrics.image_alignment_scores(evaluator.encode_images(bare), refs).mean())
            ia_learned = float(metrics.image_alignment_scores(evaluator.encode_images(learned), refs).mean())
            per_seed.append((ia_bare, ia_learned, train_s))
            if seed == seeds[0]:
                grids += [shots_img, bare[:shots], learned[:shots]]  # one row each: shots, class prompt, learned
        bare_ia, learned_ia, train_s = (np.array(column) for column in zip(*per_seed, strict=True))
        results[concept.name] = {
            "ia_class_prompt": float(bare_ia.mean()),
            "ia_learned": float(learned_ia.mean()),
            "gain": float((learned_ia - bare_ia).mean()),
            "gains": [float(g) for g in learned_ia - bare_ia],
            "seeds": list(seeds),
            "train_s": float(train_s.mean()),
        }
    if out is not None:
        save_grid(torch.cat(grids), out / "concepts_learned.png", columns=shots)
    return results


def backbone_follows_backgrounds(backbone, seeds: int, steps: int, guidance: float, out: Path | None, version: int):
    """Generate 'a {class} on a {background} background' for every pair; the oracle reads class and background.
    A prompt is followed when the oracle reads both as asked from a clean object (the compliance of docs/metrics.md)."""
    spec = world.get_world(version)
    pairs = [(k, b) for k in world.CLASSES for b in spec.backgrounds]
    prompts = [f"a {k} on a {b} background" for k, b in pairs for _ in range(seeds)]
    images = backbone.generate(prompts, list(range(seeds)) * len(pairs), steps=steps, guidance=guidance)
    reading = oracle.read(images, spec)
    want_cls = np.array([k for k, _ in pairs for _ in range(seeds)], dtype=object)
    want_bg = np.array([b for _, b in pairs for _ in range(seeds)], dtype=object)
    clean = reading.fit >= copying.FIT_MIN
    if out is not None:
        save_grid(images[::seeds][: 8 * len(spec.backgrounds)], out / "backbone_backgrounds.png", columns=8)
    return {
        "images": len(prompts),
        "follows": float(np.mean(clean & (reading.cls == want_cls) & (reading.background == want_bg))),
        "background": float(np.mean(reading.background == want_bg)),
        "class": float(np.mean(clean & (reading.cls == want_cls))),
    }


def backbone_composes(backbone, seeds: int, steps: int, guidance: float, out: Path | None, version: int) -> dict:
    """Generate 'a {class} and a {class}' for every ordered pair of two different classes; the oracle reads each
    image's objects (oracle.read_objects). A prompt is composed when it reads exactly two clean objects, of the two
    classes."""
    spec = world.get_world(version)
    pairs = [(a, b) for a in world.CLASSES for b in world.CLASSES if a != b]
    prompts = [f"a {a} and a {b}" for a, b in pairs for _ in range(seeds)]
    first = world.PAIR_SEED * 1000
    images = backbone.generate(prompts, list(range(first, first + seeds)) * len(pairs), steps=steps, guidance=guidance)
    objects = oracle.read_objects(images, spec, slots=3)  # a third object is read, so that it can be refused
    composed, two = [], []
    for i, (a, b) in enumerate(pair for pair in pairs for _ in range(seeds)):
        slots = [objects.slots[k] for k in range(objects.count[i])]
        two.append(len(slots) == 2)
        clean = all(s.fit[i] >= copying.FIT_MIN for s in slots)
        composed.append(clean and sorted(s.cls[i] for s in slots) == sorted((a, b)))
    if out is not None:
        save_grid(images[::seeds], out / "backbone_composes.png", columns=len(world.CLASSES) - 1)
    return {"images": len(prompts), "composes": float(np.mean(composed)), "two objects": float(np.mean(two))}


def copy_nulls(concepts: list[world.ToyConcept], prompts: list[str], shots: int, version: int) -> dict:
    """Per concept and prompt template: the chance that a fresh render of the concept matches a shot (the copy null
    that the oracle's copy rates are read against, lfsbench/toy/copying.py)."""
    nulls = {}
    for concept in concepts:
        detector = copying.ConceptCopying.of(
            concept.cls, world.concept_renders(concept, shots, SHOT_SEED, version), version
        )
        for template in prompts:
            nulls[f"{concept.name} | {template}"] = detector.null(template.format(concept.cls))[0]
    return nulls


def _oracle_gates(result: CheckResult, backbone, concepts, shots, prompts, quick, steps, guidance, out, version):
    """The gates of a world whose runs get the oracle's figures: the oracle reads renders exactly, fresh views of a
    concept rarely match its shots (so a copy is evidence), and the backbone can follow a stated background (so
    compliance has range)."""
    rec = oracle.recovery(200 if quick else 1000, seed=HELD_OUT_SEED, world_version=version)
    result.gates += [
        Gate("oracle reads renders: background, class and pattern (worst)", min(
            rec["background accuracy"], rec["class accuracy"], rec["pattern accuracy"]), 0.99, "fresh renders"),
        Gate("oracle reads renders: centre error p99 (px)", rec["centre error p99 px"], 0.5,
             f"median {rec['centre error median px']:.3f}; copy tolerance {copying.TOLERANCE.centre:g}", at_most=True),
        Gate("oracle reads renders: radius error p99 (px)", rec["radius error p99 px"], 0.5,
             f"median {rec['radius error median px']:.3f}; copy tolerance {copying.TOLERANCE.radius:g}", at_most=True),
    ]  # fmt: skip
    nulls = copy_nulls(concepts, prompts, shots, version)
    worst = max(nulls, key=nulls.get)
    result.gates.append(
        Gate("copy null: fresh renders that match a shot (worst concept and prompt)", nulls[worst], 0.02,
             f"{worst}; mean {np.mean(list(nulls.values())):.4f}", at_most=True)
    )  # fmt: skip
    follows = backbone_follows_backgrounds(backbone, 1 if quick else 2, steps, guidance, out, version)
    result.gates.append(
        Gate("backbone: 'a {class} on a {background} background' followed (oracle)", follows["follows"], 0.5,
             f"background read as asked {follows['background']:.3f}; class {follows['class']:.3f}")
    )  # fmt: skip
    result.figures.update({"oracle_recovery": rec, "copy_null": nulls, "backbone_backgrounds": follows})
    if world.get_world(version).pair_radius is not None:
        _composition_gates(result, backbone, quick, steps, guidance, out, version)


def _composition_gates(result: CheckResult, backbone, quick, steps, guidance, out, version):
    """The gates of a world with two-object scenes: the oracle reads both objects of a render, and the base model
    draws two named classes together, so that composition figures have a range (docs/toyworld.md)."""
    rec = oracle.pair_recovery(200 if quick else 1000, seed=HELD_OUT_SEED, world_version=version)
    result.gates.append(
        Gate("oracle reads two-object renders: both classes and each concept (worst)", min(
            rec["both classes read"], rec["each concept recognised"]), 0.99, "fresh two-object renders")
    )  # fmt: skip
    composes = backbone_composes(backbone, 1 if quick else 4, steps, guidance, out, version)
    result.gates.append(
        Gate("backbone: 'a {class} and a {class}' composed (oracle)", composes["composes"], 0.4,
             f"two objects found {composes['two objects']:.3f}")
    )  # fmt: skip
    result.figures.update({"oracle_pair_recovery": rec, "backbone_composes": composes})


def run_check(
    concepts: list[world.ToyConcept],
    shots: int = 6,
    out: Path | None = None,
    quick: bool = False,
    weights: Path = WEIGHTS_DIR,
    prompts: list[str] | None = None,
    sampler: str = "ddim",
    steps: int = 25,
    guidance: float = 5.0,
    eta: float = 0.0,
    precision: str = "model",
) -> CheckResult:
    """Measure every fitness gate on the shipped (or given) weights; `prompts` are the protocol's prompt templates
    (for the copy null of a world with oracle figures). The backbone's gates generate with `sampler` at `steps` and
    `guidance` (the protocol's evaluation settings, which `lfsbench toy check` passes): the backbone is fit at the
    setting its runs sample with, and a faster sampler is adequate when these gates still pass (docs/toyworld.md).
    `eta` and `precision` are the protocol's too (DDIM's eta; "model" or "bfloat16" autocast)."""
    from lfsbench.backbone import SAMPLERS
    from lfsbench.training import KVTrainingConfig

    if sampler not in SAMPLERS:  # before minutes of evaluator gates, not after
        raise LfsbenchError(f"Unknown sampler {sampler!r}; the samplers are {', '.join(SAMPLERS)}.")
    sampling = {"sampler": sampler, "precision": precision, "eta": eta}

    torch.manual_seed(0)
    version = weights_world(weights)
    evaluator = load_toy_evaluator(weights=weights)
    backbone = load_toy_backbone(weights=weights)
    result = CheckResult()
    if out is not None:
        save_grid(
            to_float(np.concatenate([world.concept_renders(c, 8, SHOT_SEED, version) for c in concepts])),
            out / "concept_shots.png",
            columns=8,
        )

    zs = evaluator_zero_shot(evaluator, n=300 if quick else 1000, version=version)
    result.gates += [
        Gate("evaluator class accuracy (zero-shot)", zs["class_acc"], 0.90, "held-out renders"),
        Gate("evaluator colour accuracy (zero-shot)", zs["colour_acc"], 0.95, "held-out renders"),
    ]
    aucs = concept_auc(evaluator, concepts, shots, version)
    worst = min(aucs, key=aucs.get)
    result.gates.append(
        Gate(
            "concept vs same-class distractors ROC AUC (worst concept)",
            aucs[worst],
            0.95,
            f"{worst}; margin {aucs[worst] - 0.95:+.3f}; mean {np.mean(list(aucs.values())):.3f}",
        )
    )
    with backbone.sampling(**sampling):
        bb = backbone_class_prompts(backbone, evaluator, 2 if quick else 4, steps, guidance, out, version)
    result.gates += [
        Gate(
            "backbone: generated class prompts read as that class",
            bb["generated_class_acc"],
            0.60,
            f"real renders of the same prompts: {bb['real_class_acc']:.3f}",
        ),
        Gate(
            "backbone: generated class prompts read as that colour",
            bb["generated_colour_acc"],
            0.80,
            f"real renders of the same prompts: {bb['real_colour_acc']:.3f}",
        ),
    ]
    ratios = autoencoder_round_trip(backbone, evaluator, concepts, shots, version)
    worst = min(ratios, key=ratios.get)
    result.gates.append(
        Gate("autoencoder keeps concepts: IA(recon) / IA(original) (worst)", ratios[worst], 0.90, worst)
    )
    config = KVTrainingConfig(steps=60 if quick else 200)
    n_images = 16 if quick else 32
    learn = learnability(
        evaluator,
        concepts,
        shots,
        config,
        n_images,
        steps,
        guidance,
        out,
        weights,
        version,
        seeds=LEARNABILITY_SEEDS[:1] if quick else LEARNABILITY_SEEDS,
        sampling=sampling,
    )
    for name, fig in learn.items():
        result.gates.append(
            Gate(
                f"learnability: IA gain of one session over the class prompt, mean over seeds ({name})",
                fig["gain"],
                0.15,
                f"class prompt {fig['ia_class_prompt']:.3f} -> learned {fig['ia_learned']:.3f}; mean of "
                f"{len(fig['gains'])} seeds ({', '.join(f'{g:.2f}' for g in fig['gains'])})",
            )
        )
    result.figures.update(
        {
            "world": version,
            "sampling": {**sampling, "steps": steps, "guidance": guidance},
            "evaluator": zs,
            "concept_auc": aucs,
            "backbone": bb,
            "autoencoder_ratio": ratios,
            "learnability": learn,
        }
    )
    if world.get_world(version).oracle_figures:
        with backbone.sampling(**sampling):
            _oracle_gates(result, backbone, concepts, shots, prompts or ["a {}"], quick, steps, guidance, out, version)
    return result
