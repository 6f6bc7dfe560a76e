"""The session loop: learn, generate, score, write; resumable after a kill at any point."""

from __future__ import annotations

import copy
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from lfsbench import backbone as backbone_module
from lfsbench import evaluator as evaluator_module
from lfsbench.backbone import Backbone
from lfsbench.cache import Cache, code_fingerprint
from lfsbench.concepts import Concept, ConceptPair, load_concepts, load_pairs, session_view
from lfsbench.dino import load_dino
from lfsbench.errors import LfsbenchError
from lfsbench.evaluation import copying as copying_module
from lfsbench.evaluation import functional, plan, tables
from lfsbench.evaluation import records as records_module
from lfsbench.evaluation import scorer as scorer_module
from lfsbench.evaluation.records import Kind
from lfsbench.evaluation.scorer import ConceptReferences, KnownConcepts, Scorer
from lfsbench.evaluator import Evaluator
from lfsbench.identity import RunIdentity, current, legacy_refusal
from lfsbench.images import save_grid
from lfsbench.memory import peak_memory_mb, reset_peak_memory
from lfsbench.method import (
    Contexts,
    GeneratesFromContexts,
    RendersToyWorld,
    ReportsSteps,
    method_class,
    validated_config,
)
from lfsbench.models import load_backbone, load_evaluator
from lfsbench.progress import PlainLog, progress_bar
from lfsbench.results import RunFolder, atomic_save_tensors, load_tensors
from lfsbench.toy import check_world
from lfsbench.toy import copying as toy_copying
from lfsbench.toy import oracle as toy_oracle
from lfsbench.toy.world import get_world

console = Console()
BASE_CODE = code_fingerprint(sys.modules[__name__], backbone_module, evaluator_module, plan)  # computes base work
# computes the control's scores
SCORING_CODE = code_fingerprint(scorer_module, functional, copying_module, toy_copying, toy_oracle, records_module)
DRIFT_SCALE_SEED_OFFSET = 500_000  # the second seed of a prompt, for the seed-to-seed drift scale
IMAGES_KEPT = 8  # generated images saved per concept / class and session
UNTOUCHED_KEY = "untouched/{}"  # an untouched class's base-model embeddings among the base state's


class Runner:
    """Runs one method through one protocol into one run folder."""

    def __init__(
        self,
        identity: RunIdentity,
        output: Path,
        backbone: Backbone | None = None,
        evaluator: Evaluator | None = None,
        track: str | None = None,
        cache: bool = True,
    ):
        """Run the run `identity` names (lfsbench/identity.py) into `output`. Before anything loads, the method's
        source, the data and the weights are fingerprinted again: a run whose recorded identity they no longer match
        (an edited method, other images in the data folder) is refused, naming what changed. `track`: also send each
        session's figures to a tracker (lfsbench/tracking.py: mlflow, tensorboard, wandb). `cache`: share the base
        model's work with other runs (lfsbench/cache.py); False computes it for this run alone."""
        from lfsbench.tracking import check_tracker

        check_tracker(track)
        if identity.legacy:
            raise legacy_refusal(output)
        now = current(identity)
        if not now.same_run(identity):
            raise LfsbenchError(
                f"The run {output} would not be the run its identity records: {'; '.join(identity.differences(now))} "
                "(recorded -> now). Nothing was run. Restore what changed, or run it again into a new folder (the "
                "same command without --resume, or another --output) to make the new run."
            )
        self.track = track
        self.cache = Cache.default(cache)
        self.identity = identity
        self.method_name = identity.method_name
        self.protocol = identity.protocol
        self.plan = identity.protocol.evaluation
        self.folder = RunFolder(output)
        if self.protocol.toy_world is not None:
            models = {"backbone": self.protocol.backbone, "evaluator": self.protocol.evaluator}
            check_world(self.protocol.name, self.protocol.toy_world, models)
        self.backbone = backbone or load_backbone(self.protocol.backbone)
        self.evaluator = evaluator or load_evaluator(self.protocol.evaluator)
        data = identity.data.path
        self.concepts: list[Concept] = load_concepts(self.protocol, data, self.backbone.resolution)
        self.pairs: list[ConceptPair] = load_pairs(self.protocol, self.concepts, data)
        self.dino = load_dino(self.protocol.dino, device=self.evaluator.device) if self.protocol.dino else None
        vocabulary = plan.class_vocabulary(self.protocol, self.concepts)
        world = self.protocol.toy_world
        oracle_world = world if world is not None and get_world(world).oracle_figures else None
        self.scorer = Scorer(self.evaluator, vocabulary, self.dino, oracle_world)
        cls = method_class(identity.method.name)  # created once, from the settings the identity resolved
        self.method = cls(validated_config(cls, identity.method.name, identity.method.preset, identity.method.settings))
        # the base model the runner generates the in-context control with (a method generating from stored context):
        # a copy made before the method's setup, so nothing the method trains or swaps reaches it. It stays in memory
        # for the run, so such a run's peak memory includes it (docs/metrics.md, cost)
        in_context = isinstance(self.method, GeneratesFromContexts) and self.method.uses_contexts()
        self._control_backbone = copy.deepcopy(self.backbone) if in_context else None
        self.learned_in = self.protocol.learned_in()
        self._on_generated = lambda done, total: None
        self._bars: dict[str, float] = {}  # each concept's recognition bar (concept confusion), computed once
        self.class_first: dict[str, int] = {}
        for c in self.concepts:
            self.class_first.setdefault(c.class_noun, self.learned_in[c.name])

    def _named(self, names: list[str]) -> list[Concept]:
        by_name = {c.name: c for c in self.concepts}
        return [by_name[n] for n in names]

    def _sampling(self):
        """The protocol's evaluation sampler, precision and eta, for the base model's images and every session's."""
        return self.backbone.sampling(self.plan.sampler, self.plan.precision, self.plan.eta)

    def _scored_form(self, images: torch.Tensor) -> torch.Tensor:
        """Generated images as they are scored: with `evaluation.quantize`, rounded to 8 bits, as images written to
        PNG files and read back are (CustomConcept101's evaluate.py scores such files)."""
        return images.mul(255).round().div(255) if self.plan.quantize else images

    # ------------------------------------------------------------ base model

    def _base(self) -> tuple[dict[str, torch.Tensor], float]:
        """The base model's class-image embeddings (for drift; the untouched classes' under `untouched/NOUN`) and the
        seed-to-seed drift scale; kept in base/ for resume, and each class's shared with every run of the same base
        model and evaluation (lfsbench/cache.py). Called before the method touches the backbone."""
        kept = self.folder.base_state()
        untouched = [UNTOUCHED_KEY.format(noun) for noun in self.plan.untouched_classes]
        if kept is not None and all(key in kept[0] for key in untouched):
            return kept
        emb, scales = {}, []
        for noun in self.class_first:
            base = self._base_class(noun)
            emb[noun] = base["embeddings"]
            scales.append(functional.paired_drift_scores(base["other_embeddings"], emb[noun]).mean())
            save_grid(base["images"], self.folder.base_class_grid(noun))
        for noun, key in zip(self.plan.untouched_classes, untouched, strict=True):
            emb[key] = self._base_untouched(noun)
        scale = float(sum(scales) / len(scales))
        self.folder.write_base_state(emb, scale)
        return emb, scale

    def _base_key_parts(self, bb: Backbone | None = None) -> dict:
        """What every base-model cache entry depends on: the models' weights, how evaluation images are sampled, the
        device, dtype and resolution, torch, and the code that computes base work. `bb`: the base model that computes
        it (default: the run's backbone, before the method's setup)."""
        bb = bb or self.backbone
        return {
            "backbone": bb.fingerprint,
            "evaluator": self.evaluator.fingerprint,
            "evaluation": self.plan.model_dump(
                mode="json", include={"sampler", "steps", "eta", "guidance", "precision", "quantize"}
            ),
            "device": bb.device.type,
            "dtype": str(bb.weight_dtype),
            "resolution": bb.resolution,
            "torch": torch.__version__,
            "code": BASE_CODE,
        }

    def _cached_base(self, what: dict, compute, bb: Backbone | None = None) -> dict[str, torch.Tensor]:
        """Base-model work described by `what` (with _base_key_parts of `bb`): from the cache, or `compute()`d and
        cached."""
        key = self.cache.key({**self._base_key_parts(bb), **what})
        cached = self.cache.get(key)
        if cached is None:
            cached = compute()
            self.cache.put(key, cached)
        return cached

    def _base_images(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        bb, evaluation = self.backbone, self.plan
        return self._scored_form(bb.generate(prompts, seeds, evaluation.steps, evaluation.guidance))

    def _base_class(self, noun: str) -> dict[str, torch.Tensor]:
        """The base model's images of a class's prompts and seeds, embedded, and of a second seed each (the drift
        scale), with the first few images for the report."""
        job = plan.class_job(self.protocol, noun, self.concepts)
        other_seeds = [s + DRIFT_SCALE_SEED_OFFSET for s in job.seeds]

        def compute():
            images = self._base_images(job.prompts, job.seeds)
            other = self._base_images(job.prompts, other_seeds)
            return {
                "embeddings": self.scorer.embed(images).contiguous(),
                "other_embeddings": self.scorer.embed(other).contiguous(),
                "images": images[:IMAGES_KEPT].contiguous(),
            }

        what = {"what": "base model class images", "prompts": job.prompts, "seeds": job.seeds}
        return self._cached_base({**what, "other_seeds": other_seeds}, compute)

    def _base_untouched(self, noun: str) -> torch.Tensor:
        """The base model's images of an untouched class's prompts and seeds (plan.untouched_job), embedded."""
        job = plan.untouched_job(self.protocol, noun, Kind.BASE_UNTOUCHED)
        what = {"what": "base model untouched-class images", "prompts": job.prompts, "seeds": job.seeds}
        return self._cached_base(
            what, lambda: {"embeddings": self.scorer.embed(self._base_images(job.prompts, job.seeds)).contiguous()}
        )["embeddings"]

    # ------------------------------------------------------------ one session

    def _full_count(self, t: int, what: Concept | str) -> bool:
        """Whether a concept (or a class noun) evaluated after session t gets every image (plan.full_count_session)."""
        if isinstance(what, Concept):
            taught = {self.learned_in[what.name]}
        else:
            taught = {self.learned_in[c.name] for c in self.concepts if c.class_noun == what}
        return plan.full_count_session(self.protocol, t, taught)

    def _generate_plan(self, jobs: list[plan.Job]) -> tuple[list[torch.Tensor], float]:
        """Every job's images from one batch plan: the jobs' prompts and seeds back to back, the backbone's
        `generation_batch` images per call to the method. Each image has its own generator, so it is the same
        whatever else shares its batch (tests/test_sampling.py compares with one call per job). Returns each job's
        images and the seconds taken."""
        prompts = [p for job in jobs for p in job.prompts]
        seeds = [s for job in jobs for s in job.seeds]
        batch = self.backbone.generation_batch
        t0, made = time.time(), []
        self._on_generated(0, len(prompts))
        for start in range(0, len(prompts), batch):
            chunk = slice(start, start + batch)
            made.append(self.method.generate(prompts[chunk], seeds[chunk], self.plan.steps, self.plan.guidance))
            self._on_generated(min(start + batch, len(prompts)), len(prompts))
        images = self._scored_form(torch.cat(made)) if made else torch.empty(0)
        return list(images.split([len(job.prompts) for job in jobs])), time.time() - t0

    def _evaluate(self, t: int, base_emb: dict[str, torch.Tensor]) -> tuple[pd.DataFrame, dict[str, float]]:
        """Generate and score the session's evaluation plan (evaluation/plan.py); returns the per-image scores and
        the seconds spent generating and scoring."""
        learned = plan.evaluated_concepts(self.protocol, self.concepts, t)
        nouns = plan.classes_of(learned)
        pairs = plan.evaluated_pairs(self.protocol, self.pairs, t)
        full = {noun: self._full_count(t, noun) for noun in nouns} | {c.name: self._full_count(t, c) for c in learned}
        class_jobs = [plan.class_job(self.protocol, noun, self.concepts, full=full[noun]) for noun in nouns]
        concept_jobs = [plan.concept_job(self.protocol, concept, full=full[concept.name]) for concept in learned]
        multi_jobs = [plan.multi_job(self.protocol, pair) for pair in pairs]
        untouched = self.plan.untouched_classes if self.protocol.evaluates_all_after(t) else []
        untouched_jobs = [plan.untouched_job(self.protocol, noun) for noun in untouched]
        generated, gen_s = self._generate_plan(class_jobs + concept_jobs + multi_jobs + untouched_jobs)
        t0 = time.time()
        embedded = self.scorer.embed(torch.cat(generated)).split([len(images) for images in generated])
        eval_s = time.time() - t0
        ends = np.cumsum([0, len(class_jobs), len(concept_jobs), len(multi_jobs), len(untouched_jobs)]).tolist()
        of_classes, of_concepts, of_pairs, of_untouched = (slice(ends[k], ends[k + 1]) for k in range(4))
        records = []
        class_emb = dict(zip(nouns, embedded[of_classes], strict=True))
        for noun, job, images in zip(nouns, class_jobs, generated[of_classes], strict=True):
            t0 = time.time()
            # the base model's images of the same prompts and seeds (embedded once per run): class TA and accuracy
            base_job = plan.class_job(self.protocol, noun, self.concepts, Kind.BASE_CLASS)
            same = torch.as_tensor(plan.in_job(base_job, job))
            records += self.scorer.score(t, job, class_emb[noun], base=base_emb[noun][same])
            records += self.scorer.score(t, base_job, base_emb[noun])
            eval_s += time.time() - t0
            save_grid(images[:IMAGES_KEPT], self.folder.class_grid(t, noun))
        known = self._known(t, base_emb)
        for concept, job, images, emb in zip(
            learned, concept_jobs, generated[of_concepts], embedded[of_concepts], strict=True
        ):
            t0 = time.time()
            refs = self.scorer.concept(concept)
            records += self.scorer.score(t, job, emb, concept=refs, images=images, known=known)
            eval_s += time.time() - t0
            if self._control_backbone is not None:
                control, generating, scoring = self._control(t, concept, refs, full[concept.name])
                records += control
                gen_s, eval_s = gen_s + generating, eval_s + scoring
            t0 = time.time()
            # the bare class prompt's images against this concept's references: from the base model (the bar that
            # learning must clear) and from the current model (high when the concept leaks into its class)
            for kind, class_images_emb in (
                (Kind.BASE_CLASS_FOR_CONCEPT, base_emb[concept.class_noun]),
                (Kind.CLASS_FOR_CONCEPT, class_emb[concept.class_noun]),
            ):
                records += self.scorer.alignment(t, kind, concept.name, class_images_emb, refs)
            eval_s += time.time() - t0
            save_grid(images[:IMAGES_KEPT], self.folder.concept_grid(t, concept.name))
            self._save_copies(images[:IMAGES_KEPT], concept, refs, self.folder.copies_grid(t, concept.name))
        # prompts naming two learned concepts: does composition survive?
        for pair, job, images, emb in zip(pairs, multi_jobs, generated[of_pairs], embedded[of_pairs], strict=True):
            t0 = time.time()
            members = {c.name: self.scorer.concept(c) for c in (pair.first, pair.second)}
            records += self.scorer.multi(t, job, emb, images, members)
            eval_s += time.time() - t0
            save_grid(images[:IMAGES_KEPT], self.folder.multi_grid(t, pair.first.name, pair.second.name))
        # classes no concept belongs to: does the model still draw what no session touched?
        for job, emb in zip(untouched_jobs, embedded[of_untouched], strict=True):
            t0 = time.time()
            base = base_emb[UNTOUCHED_KEY.format(job.name)]
            records += self.scorer.score(t, job, emb, base=base)
            records += self.scorer.score(t, plan.untouched_job(self.protocol, job.name, Kind.BASE_UNTOUCHED), base)
            eval_s += time.time() - t0
        return pd.DataFrame(records), {"generate_s": gen_s, "evaluate_s": eval_s}

    def _known(self, t: int, base_emb: dict[str, torch.Tensor]) -> KnownConcepts:
        """Every concept learned by session t (evaluated now or not), as concept confusion reads an image: its
        held-out references and its recognition bar, from the base model's images of its class."""
        known = [c for c in self.concepts if self.learned_in[c.name] <= t]
        refs = [self.scorer.concept(c).references for c in known]
        for c, references in zip(known, refs, strict=True):
            if c.name not in self._bars:
                self._bars[c.name] = functional.recognition_bar(base_emb[c.class_noun], references)
        return KnownConcepts([c.name for c in known], refs, [self._bars[c.name] for c in known])

    @staticmethod
    def _save_copies(images: torch.Tensor, concept: Concept, refs: ConceptReferences, path: Path) -> None:
        """Each generated image above its nearest training shot and its nearest held-out reference (copy space)."""
        found = refs.copy.measure(images)
        shots = concept.images[torch.as_tensor(found["nearest_shot"])]
        references = concept.references[torch.as_tensor(found["nearest_reference"])]
        save_grid(torch.cat([images, shots, references]), path, columns=len(images))

    def _control(
        self, t: int, concept: Concept, refs: ConceptReferences, full: bool
    ) -> tuple[list[dict], float, float]:
        """The in-context control: the base model from the contexts the method declares for this concept's images
        (same latents, strength and seeds), prompted without the modifier token: what copying the context alone
        reaches. The runner makes it, never the method. It depends on nothing the method trained, so its scores are
        computed once per concept, declared contexts and base model (lfsbench/cache.py) and reused by later sessions
        and runs. Returns its score records and the seconds spent generating and scoring."""
        job = plan.concept_job(self.protocol, concept, Kind.CONTROL, full=full)
        t0 = time.time()
        contexts = self._declared(job)
        if contexts is None:  # the method uses no context now
            return [], 0.0, time.time() - t0
        bb, how, generating = self._control_backbone, self.plan, [0.0]

        def compute():
            started = time.time()
            with bb.sampling(how.sampler, how.precision, how.eta):
                images = bb.generate_in_context(
                    job.text_prompts, job.seeds, contexts.latents, contexts.strength, how.steps, how.guidance
                )
            generating[0] = time.time() - started
            images = self._scored_form(images)
            values = self.scorer.values(job, self.scorer.embed(images), concept=refs, images=images)
            return {"images": images[:IMAGES_KEPT].contiguous(), **{c: torch.as_tensor(v) for c, v in values.items()}}

        made = self._cached_base(self._control_what(concept, job, contexts), compute, bb)
        save_grid(made.pop("images"), self.folder.control_grid(t, concept.name))
        records = self.scorer.records(t, job, {c: v.numpy() for c, v in made.items()})
        return records, generating[0], time.time() - t0 - generating[0]

    def _declared(self, job: plan.Job) -> Contexts | None:
        """The method's declared contexts for a job's images, checked: one latent (or None) per image, a strength in
        (0, 1]."""
        contexts = self.method.declared_contexts(job.prompts, job.seeds)
        if contexts is None:
            return None
        latents, strength = contexts.latents, contexts.strength
        if len(latents) != len(job.prompts) or not 0 < float(strength) <= 1:
            raise LfsbenchError(
                f"Method {self.method_name!r} declared {len(latents)} contexts at strength {strength} for "
                f"{len(job.prompts)} images. declared_contexts must return one latent (or None) per prompt and a "
                "strength in (0, 1] (lfsbench/method.py, GeneratesFromContexts); fix the method and run again."
            )
        return contexts

    def _control_what(self, concept: Concept, job: plan.Job, contexts: Contexts) -> dict:
        """What a concept's control scores depend on beyond the base model and the evaluation settings: the scoring
        (code, DINO, the concept's data, shots and references), the prompts and seeds, and the declared contexts."""
        digest = hashlib.sha256()
        for latent in contexts.latents:
            if latent is None:
                digest.update(b"none")
            else:
                digest.update(str(tuple(latent.shape)).encode())
                digest.update(latent.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return {
            "what": "control scores",
            "dino": "none" if self.scorer.dino is None else getattr(self.scorer.dino, "fingerprint", None),
            "data": self.identity.data.fingerprint,
            "shots": self.protocol.shots,
            "references": self.protocol.references,
            "concept": concept.name,
            "prompts": job.text_prompts,
            "seeds": job.seeds,
            "scoring": SCORING_CODE,
            "contexts": digest.hexdigest(),
            "strength": float(contexts.strength),
        }

    def run(self) -> dict:
        """Run (or resume) every session, holding the run folder's lock; returns the summary."""
        self.folder.claim(self.identity, str(self.backbone.device))
        self._tracker = None
        with self.folder.locked():
            try:
                return self._run()
            except BaseException:
                if self._tracker:  # the tracked run is marked failed, not left open (a study goes on to the next)
                    self._tracker.close(failed=True)
                raise

    def _run(self) -> dict:
        from lfsbench.tracking import Tracker

        device = self.backbone.device
        done = self.folder.finished_sessions()
        stale = self.folder.discard_after(done[-1] if done else -1)
        if stale:
            console.print(
                f"{self.folder.path}: sessions {', '.join(map(str, stale))} are not part of an unbroken run of "
                f"finished sessions (a file of session {len(done)} is missing or damaged); they are redone from "
                f"session {len(done)}"
            )
        tracker = self._tracker = Tracker(self.track, self.folder.path) if self.track else None
        if tracker:
            tracker.catch_up(done)
        with self._sampling():
            base_emb, drift_scale = self._base()
        for concept in self.concepts:  # the shots and the held-out references, for reports' image grids
            if not self.folder.shots_grid(concept.name).is_file():
                save_grid(concept.images[:IMAGES_KEPT], self.folder.shots_grid(concept.name))
            if not self.folder.references_grid(concept.name).is_file():
                save_grid(concept.references[:IMAGES_KEPT], self.folder.references_grid(concept.name))
        self.method.setup(self.backbone, self.identity.seed)
        if isinstance(self.method, RendersToyWorld):
            self.method.use_toy_world(self.protocol.toy_world)
        if done:
            self.method.load_state_dict(load_tensors(self.folder.state_file(done[-1])))
            console.print(f"resuming {self.folder.path}: sessions 0-{done[-1]} already finished")
        sessions = self.protocol.sessions
        log = PlainLog(console, f"{self.method_name} on {self.protocol.name}", len(sessions), len(done))
        with progress_bar() as progress:
            task = progress.add_task(
                f"{self.method_name} on {self.protocol.name}", total=len(sessions), completed=len(done)
            )
            steps = progress.add_task("  training", total=1)
            if isinstance(self.method, ReportsSteps):
                self.method.report_steps_to(lambda n, total: progress.update(steps, completed=n, total=total))
            generating = progress.add_task("  generating and scoring", total=1)
            self._on_generated = lambda n, total: progress.update(generating, completed=n, total=total)
            for t, names in enumerate(sessions):
                if t in done:
                    continue
                reset_peak_memory(device, collect=t == len(done))  # a collection once per call (lfsbench/memory.py)
                progress.update(task, description=f"{self.method_name}: session {t} learns {', '.join(names)}")
                t0 = time.time()
                earlier = self._named([n for names_u in sessions[:t] for n in names_u])
                view = session_view(t, self._named(names), self.protocol.training_prompt, earlier)
                learn_figures = self.method.learn(view)
                train_s = time.time() - t0
                state_path = self.folder.state_file(t)
                atomic_save_tensors({k: v.contiguous().cpu() for k, v in self.method.state_dict().items()}, state_path)
                progress.update(task, description=f"{self.method_name}: session {t} generates and scores")
                with self._sampling():
                    scores, seconds = self._evaluate(t, base_emb)
                problem = tables.non_finite(scores)
                if problem:
                    raise LfsbenchError(
                        f"Session {t} of {self.method_name}: {problem}. The method's images are not numbers, so no "
                        "metric of this session would mean anything and nothing of it is kept. Usually training "
                        "diverged: lower the learning rates (-o kv_lr=..., -o token_lr=..., -o lr=...) and run again."
                    )
                self.folder.write_session_table(self.folder.scores_csv(t), scores)
                history = pd.concat([self.folder.scores(), scores], ignore_index=True)
                rows = tables.session_rows(scores, history, t, self.learned_in, self.class_first, self.plan.bootstrap)
                self.folder.write_cost_row(
                    {
                        "session": t,
                        "train_s": train_s,
                        **seconds,
                        "peak_memory_mb": peak_memory_mb(device),
                        "threads": torch.get_num_threads(),
                        "trainable_parameters": self.method.trainable_parameters(),
                        "delta_bytes": state_path.stat().st_size,
                        "stored_bytes": self.method.stored_bytes(),
                        **{f"learn_{k}": v for k, v in learn_figures.items()},
                    }
                )
                self.folder.write_session_table(self.folder.session_csv(t), rows)  # written last: marks it finished
                self._write_summary(drift_scale)
                if tracker:
                    tracker.session(t, again=True)
                progress.update(task, advance=1)
                log.finished(
                    f"session {t}", f"training {train_s:.0f} s, generating and scoring {sum(seconds.values()):.0f} s"
                )
        if done and len(done) == len(sessions):  # nothing left to run: the summary is rebuilt from the session files
            self._write_summary(drift_scale)
        if tracker:
            tracker.finish(again=len(done) < len(sessions))  # sent again only when this call ran sessions
        return self.folder.summary()

    def _write_summary(self, drift_scale: float):
        rows, scores, cost = self.folder.session_rows(), self.folder.scores(), self.folder.cost()
        order = [c.name for c in self.concepts]
        for metric in ("TA", "IA"):
            self.folder.write_matrix(metric, tables.matrix(rows, metric, order))
        given = {"drift_seed_scale": drift_scale}
        summary = tables.summarize(scores, cost, self.learned_in, given, self.plan.bootstrap)
        summary = {
            "method": self.method_name,
            "protocol": self.protocol.name,
            "seed": self.identity.seed,
            "keeps": self.method.keeps(),
            **summary,
        }
        self.folder.write_summary(summary, tables.flat_summary(summary))
