"""The session loop: learn, generate, score, write; resumable after a kill at any point."""

from __future__ import annotations

import ctypes
import gc
import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console

from lfsbench import metrics, scoring
from lfsbench.backbone import Backbone
from lfsbench.concepts import Concept, load_concepts, session_view
from lfsbench.evaluator import Evaluator
from lfsbench.images import save_grid
from lfsbench.method import Method, create_method, preset_for
from lfsbench.models import load_backbone, load_evaluator
from lfsbench.progress import progress_bar
from lfsbench.protocol import Protocol
from lfsbench.results import RunFolder, atomic_write_csv, atomic_write_text

console = Console()
DRIFT_SCALE_SEED_OFFSET = 500_000  # the second seed of a prompt, for the seed-to-seed drift scale
IMAGES_KEPT = 8  # generated images saved per concept / class and session


@dataclass
class RunSpec:
    """Everything that identifies a run (saved as config.json)."""

    protocol: Protocol
    method: str
    method_overrides: dict = field(default_factory=dict)
    seed: int = 0
    data: str | None = None

    def config(self, method: Method) -> dict:
        return {"protocol": self.protocol.model_dump(mode="json"), "method": self.method,
                "method_preset": preset_for(self.protocol.backbone), "method_overrides": self.method_overrides,
                "method_config": method.config.model_dump(mode="json"), "seed": self.seed, "data": self.data}


def _reset_peak_memory(device: torch.device) -> None:
    """Start a new peak for the session: CUDA's counters, or Linux's peak RSS (VmHWM; 5 > clear_refs resets it).

    Without the reset the CPU figure is the process's peak so far, which in a study (several runs in one
    process) is that of the largest earlier run. Even with it, the resident memory an earlier run freed
    but glibc kept counts; collecting garbage and trimming the heap first returns most of it.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    gc.collect()  # memory that earlier runs freed but the allocator kept would count as this session's
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: _peak_memory_mb falls back to the process's peak
        pass


def _peak_memory_mb(device: torch.device) -> float:
    """Peak since _reset_peak_memory: CUDA memory allocated, else resident memory (VmHWM, or ru_maxrss elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB (macOS bytes: not supported)


class Runner:
    """Runs one method through one protocol into one run folder."""

    def __init__(self, spec: RunSpec, output: Path, backbone: Backbone | None = None, evaluator: Evaluator | None = None):
        self.spec = spec
        self.plan = spec.protocol.evaluation
        self.folder = RunFolder(output)
        self.backbone = backbone or load_backbone(spec.protocol.backbone)
        self.evaluator = evaluator or load_evaluator(spec.protocol.evaluator)
        self.concepts: list[Concept] = load_concepts(spec.protocol, spec.data and Path(spec.data), self.backbone.resolution)
        self.method = create_method(spec.method, spec.method_overrides, preset_for(spec.protocol.backbone))
        self.learned_in = {name: t for t, names in enumerate(spec.protocol.sessions) for name in names}
        self._on_generated = lambda done, total: None
        self._refs: dict[str, torch.Tensor] = {}
        self.class_first: dict[str, int] = {}
        for c in self.concepts:
            self.class_first.setdefault(c.class_noun, self.learned_in[c.name])

    def _named(self, names: list[str]) -> list[Concept]:
        by_name = {c.name: c for c in self.concepts}
        return [by_name[n] for n in names]

    # ------------------------------------------------------------ generation plans

    def _seeds(self) -> list[int]:
        return [self.plan.seed + j for j in range(self.plan.images_per_prompt)]

    def _prompt_plan(self, templates: list[str], phrase: str) -> tuple[list[str], list[int]]:
        prompts = [p.format(phrase) for p in templates for _ in self._seeds()]
        return prompts, self._seeds() * len(templates)

    def _class_plan(self, noun: str) -> tuple[list[str], list[int]]:
        return self._prompt_plan(list(self.plan.prompts), noun)

    # ------------------------------------------------------------ base model

    def _base(self) -> tuple[dict[str, torch.Tensor], float]:
        """The base model's class-image embeddings (for drift) and the seed-to-seed drift scale; cached in base/."""
        from safetensors.torch import load_file, save_file

        path = self.folder.path / "base" / "class_embeddings.safetensors"
        scale_path = self.folder.path / "base" / "drift_scale.json"
        if path.is_file() and scale_path.is_file():
            return load_file(path), json.loads(scale_path.read_text())["drift_seed_scale"]
        emb, scales = {}, []
        for noun in self.class_first:
            prompts, seeds = self._class_plan(noun)
            images = self.backbone.generate(prompts, seeds, self.plan.steps, self.plan.guidance)
            other = self.backbone.generate(prompts, [s + DRIFT_SCALE_SEED_OFFSET for s in seeds], self.plan.steps, self.plan.guidance)
            emb[noun] = self.evaluator.encode_images(images).contiguous()
            scales.append(metrics.paired_drift_scores(self.evaluator.encode_images(other), emb[noun]).mean())
            save_grid(images[:IMAGES_KEPT], self.folder.path / "base" / f"{noun}.png")
        scale = float(sum(scales) / len(scales))
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(emb, path)
        atomic_write_text(scale_path, json.dumps({"drift_seed_scale": scale}))
        return emb, scale

    # ------------------------------------------------------------ one session

    def _reference_embeddings(self, concept: Concept) -> torch.Tensor:
        """E_i of the concept's shots, computed once per run."""
        if concept.name not in self._refs:
            self._refs[concept.name] = self.evaluator.encode_images(concept.images)
        return self._refs[concept.name]

    def _evaluate(self, t: int, base_emb: dict[str, torch.Tensor]) -> tuple[pd.DataFrame, float, float]:
        """Generate and score every concept learned so far and their classes (only those just learned, and their
        classes, after a session that is not one of the protocol's checkpoints); returns per-image scores."""
        if self.spec.protocol.evaluates_all_after(t):
            learned = [c for c in self.concepts if self.learned_in[c.name] <= t]
        else:
            learned = [c for c in self.concepts if self.learned_in[c.name] == t]
        nouns = list(dict.fromkeys(c.class_noun for c in learned))
        gen_s = eval_s = 0.0
        records = []
        class_emb = {}
        total = len(nouns) + len(learned)
        self._on_generated(0, total)
        for noun in nouns:
            prompts, seeds = self._class_plan(noun)
            t0 = time.time()
            images = self.method.generate(prompts, seeds, self.plan.steps, self.plan.guidance)
            gen_s += time.time() - t0
            t0 = time.time()
            emb = self.evaluator.encode_images(images)
            class_emb[noun] = emb
            ta = metrics.text_alignment_scores(emb, self.evaluator.encode_texts(prompts))
            drift = metrics.paired_drift_scores(emb, base_emb[noun])
            records += [{"session": t, "kind": "class", "name": noun, "prompt": p, "seed": s, "ta": a, "ia": float("nan"), "drift": d}
                        for p, s, a, d in zip(prompts, seeds, ta, drift)]
            eval_s += time.time() - t0
            save_grid(images[:IMAGES_KEPT], self.folder.images_dir(t) / f"class_{noun}.png")
            self._on_generated(len(class_emb), total)
        for i, concept in enumerate(learned):
            prompts, seeds = self._prompt_plan(concept.prompts, concept.phrase())
            t0 = time.time()
            images = self.method.generate(prompts, seeds, self.plan.steps, self.plan.guidance)
            gen_s += time.time() - t0
            t0 = time.time()
            emb = self.evaluator.encode_images(images)
            refs = self._reference_embeddings(concept)
            plain = [p.format(concept.phrase(with_token=False)) for p in concept.prompts for _ in self._seeds()]
            ta = metrics.text_alignment_scores(emb, self.evaluator.encode_texts(plain))
            ia = metrics.image_alignment_scores(emb, refs)
            records += [{"session": t, "kind": "concept", "name": concept.name, "prompt": p, "seed": s, "ta": a, "ia": i, "drift": float("nan")}
                        for p, s, a, i in zip(prompts, seeds, ta, ia)]
            t0 = time.time()
            control = self.method.generate_control(prompts, seeds, self.plan.steps, self.plan.guidance, plain)
            gen_s += time.time() - t0
            if control is not None:  # the base model from the same stored contexts: what copying alone reaches
                t0 = time.time()
                c_emb = self.evaluator.encode_images(control)
                c_ta = metrics.text_alignment_scores(c_emb, self.evaluator.encode_texts(plain))
                c_ia = metrics.image_alignment_scores(c_emb, refs)
                records += [{"session": t, "kind": "control", "name": concept.name, "prompt": p, "seed": s, "ta": a, "ia": i,
                             "drift": float("nan")} for p, s, a, i in zip(prompts, seeds, c_ta, c_ia)]
                eval_s += time.time() - t0
                save_grid(control[:IMAGES_KEPT], self.folder.images_dir(t) / f"control_{concept.name}.png")
            # the bare class prompt's images against this concept's shots: from the base model (the bar that
            # learning must clear) and from the current model (high when the concept leaks into its class)
            for kind, class_images in (("base_class_for_concept", base_emb[concept.class_noun]),
                                       ("class_for_concept", class_emb[concept.class_noun])):
                records += [{"session": t, "kind": kind, "name": concept.name, "prompt": "", "seed": -1, "ta": float("nan"),
                             "ia": i, "drift": float("nan")} for i in metrics.image_alignment_scores(class_images, refs)]
            eval_s += time.time() - t0
            save_grid(images[:IMAGES_KEPT], self.folder.images_dir(t) / f"{concept.name}.png")
            self._on_generated(len(class_emb) + i + 1, total)
        return pd.DataFrame(records), gen_s, eval_s

    def run(self) -> dict:
        """Run (or resume) every session; returns the summary."""
        from safetensors.torch import load_file, save_file

        device = self.backbone.device
        self.folder.claim(self.spec.config(self.method), str(device))
        done = self.folder.finished_sessions()
        base_emb, drift_scale = self._base()
        for concept in self.concepts:  # the shots, for reports' image grids
            shots = self.folder.path / "base" / "shots" / f"{concept.name}.png"
            if not shots.is_file():
                save_grid(concept.images[:IMAGES_KEPT], shots)
        self.method.setup(self.backbone, self.spec.seed, self.evaluator)
        if done:
            self.method.load_state_dict(load_file(self.folder.state_file(done[-1])))
            console.print(f"resuming {self.folder.path}: sessions 0-{done[-1]} already finished")
        sessions = self.spec.protocol.sessions
        n_boot = self.plan.bootstrap
        with progress_bar() as progress:
            task = progress.add_task(f"{self.spec.method} on {self.spec.protocol.name}", total=len(sessions), completed=len(done))
            steps = progress.add_task("  training", total=1)
            self.method.on_step = lambda done_steps, total: progress.update(steps, completed=done_steps, total=total)
            generating = progress.add_task("  generating and scoring", total=1)
            self._on_generated = lambda done_n, total: progress.update(generating, completed=done_n, total=total)
            for t, names in enumerate(sessions):
                if t in done:
                    continue
                _reset_peak_memory(device)
                progress.update(task, description=f"{self.spec.method}: session {t} learns {', '.join(names)}")
                t0 = time.time()
                earlier = self._named([n for names_u in sessions[:t] for n in names_u])
                view = session_view(t, self._named(names), self.spec.protocol.training_prompt, earlier)
                learn_figures = self.method.learn(view)
                train_s = time.time() - t0
                state_path = self.folder.state_file(t)
                state_path.parent.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous().cpu() for k, v in self.method.state_dict().items()}, state_path)
                progress.update(task, description=f"{self.spec.method}: session {t} generates and scores")
                scores, gen_s, eval_s = self._evaluate(t, base_emb)
                atomic_write_csv(self.folder.scores_csv(t), scores)
                all_scores = pd.concat([self.folder.scores(), scores], ignore_index=True)
                rows = scoring.session_rows(scores, all_scores, t, self.learned_in, self.class_first, n_boot)
                self.folder.write_cost_row({
                    "session": t, "train_s": train_s, "generate_s": gen_s, "evaluate_s": eval_s,
                    "peak_memory_mb": _peak_memory_mb(device), "trainable_parameters": self.method.trainable_parameters(),
                    "delta_bytes": state_path.stat().st_size, "stored_bytes": self.method.stored_bytes(),
                    **{f"learn_{k}": v for k, v in learn_figures.items()},
                })
                atomic_write_csv(self.folder.session_csv(t), rows)  # written last: marks the session finished
                self._write_summary(drift_scale)
                progress.update(task, advance=1)
        return self.folder.summary()

    def _write_summary(self, drift_scale: float):
        rows, scores, cost = self.folder.session_rows(), self.folder.scores(), self.folder.cost()
        order = [c.name for c in self.concepts]
        atomic_write_csv(self.folder.path / "ta_matrix.csv", scoring.matrix(rows, scoring.TA, order).reset_index())
        atomic_write_csv(self.folder.path / "ia_matrix.csv", scoring.matrix(rows, scoring.IA, order).reset_index())
        summary = scoring.summarize(rows, scores, cost, self.learned_in, drift_scale, self.plan.bootstrap)
        summary = {"method": self.spec.method, "protocol": self.spec.protocol.name, "seed": self.spec.seed, **summary}
        atomic_write_text(self.folder.path / "summary.json", json.dumps(summary, indent=2))
        atomic_write_csv(self.folder.path / "summary.csv", pd.DataFrame([scoring.flat_summary(summary)]))
