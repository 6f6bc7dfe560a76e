"""Protocols: YAML data (never code) naming the concepts, sessions, models and evaluation plan.

A protocol may `include:` another (by name or path) and override any field; nested
mappings merge, everything else replaces. Loading validates the result with
pydantic and reports the file, the field and what was expected.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lfsbench.errors import LfsbenchError, concept_name_problem, strict_yaml
from lfsbench.prompts import PromptTemplates
from lfsbench.toy.world import WORLDS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Strict):
    kind: str = (
        "toy"  # a registered source of concepts (lfsbench/datasets.py, which checks it): toy, folder, cc101, ...
    )
    path: str | None = None  # where the data lives (not used by the toy source)
    world: int | None = Field(
        None,
        description="toy source only: the toy world version its concepts are rendered in (lfsbench/toy/world.py); "
        "unset: world 1, the one the `toy` backbone and evaluator were built on (`toy-v2`: world 2)",
    )

    @model_validator(mode="after")
    def _world_is_toy(self) -> Source:
        if self.world is not None:
            if self.kind != "toy":
                raise ValueError(f"source.world names a toy world version; this source is {self.kind!r}")
            if self.world not in WORLDS:
                raise ValueError(f"no toy world version {self.world}; the versions are {', '.join(map(str, WORLDS))}")
        return self


class Split(_Strict):
    """Which of a real concept's images train and which are held out (docs/metrics.md, "References")."""

    order: Literal["random", "file-name"] = Field(
        "random",
        description="real data: the order a concept's images are split in: `random`, a fixed shuffle seeded by the "
        "concept's name (so shots and references are not neighbours in a photo session's file names), or "
        "`file-name` (runs from before the field existed split this way)",
    )
    fold: int = Field(
        0,
        ge=0,
        description="real data: rotate that order by fold x shots images before taking the first `shots` to train "
        "and the next (at most `references`) to hold out. Runs over folds 0..n-1 hold out each of a concept's n "
        "images equally often: the replication unit for concepts with few images (DreamBooth's 4-6)",
    )


class EvaluationPlan(_Strict):
    prompts: PromptTemplates = Field(
        min_length=1,
        description="templates; '{}' is replaced by '<token> <class>'; "
        "datasets with their own prompts (cc101, dreambooth) use those",
    )
    images_per_prompt: int = Field(16, ge=1)
    between_images_per_prompt: int | None = Field(
        None,
        ge=1,
        description="at most this many images per prompt (each prompt's first seeds) of a concept or class evaluated "
        "after a session "
        "that neither taught it nor is the last session or a checkpoint: the curves' in-between points, which no "
        "summary figure reads; unset: images_per_prompt everywhere. Sized from the noise components "
        "(docs/speed.md); forgetting_max, whose peak runs over those points, grows noisier",
    )
    max_prompts: int | None = Field(None, ge=1, description="use only the first N of a concept's prompts (quick runs)")
    sampler: Literal["ddim", "dpmsolver++"] = Field(
        "ddim",
        description="the evaluation sampler (the base model's images too; training never samples with it): DDIM, "
        "the standard, or DPM-Solver++ (2nd order, made for fewer steps); changes the numbers (docs/speed.md)",
    )
    steps: int = Field(25, ge=1)
    eta: float = Field(
        0.0,
        ge=0,
        le=1,
        description="DDIM's eta: 0 deterministic (the standard), 1 fresh noise at every step as in DDPM (what "
        "CustomConcept101's sampling script draws: protocol cc101-compat); DDIM only; changes the numbers",
    )
    precision: Literal["model", "bfloat16"] = Field(
        "model",
        description="evaluation generation at the model's precision (float32 on the CPU, float16 on a GPU) or under "
        "bfloat16 autocast (fast on GPUs and CPUs with bfloat16 instructions, far slower without); training is never "
        "affected",
    )
    guidance: float = Field(5.0, ge=0)
    seed: int = 0
    bootstrap: int = Field(1000, ge=100)
    quantize: bool = Field(
        False,
        description="score generated images rounded to 8 bits, as images saved to PNG and read back are "
        "(CustomConcept101's evaluate.py scores files; protocol cc101-compat)",
    )
    untouched_classes: list[str] = Field(
        default_factory=list,
        description="class nouns that no concept of the protocol belongs to, asked for with the protocol's prompts "
        "after every session and scored against the base model's same images (class accuracy on the toy world, TA, "
        "drift): does the model still draw what no session touched?",
    )
    untouched_images_per_prompt: int = Field(4, ge=1, description="images per prompt of each untouched class")
    checkpoints: list[int] = Field(
        default_factory=list,
        description="sessions (counted from 1) after which every concept learned so far is evaluated; empty: after "
        "every session (the standard). After the other sessions only the concepts just learned are "
        "evaluated, which IAD needs (their IA right after learning). The last session is always in full. "
        "For long protocols, where evaluating everything after every session grows with the square of "
        "the number of sessions.",
    )

    @model_validator(mode="after")
    def _eta_is_ddim(self) -> EvaluationPlan:
        if self.eta and self.sampler != "ddim":
            raise ValueError(f"evaluation.eta is DDIM's; sampler {self.sampler!r} has none (set eta: 0)")
        return self

    @field_validator("checkpoints")
    @classmethod
    def _positive(cls, checkpoints: list[int]) -> list[int]:
        if any(c < 1 for c in checkpoints):
            raise ValueError("checkpoints count sessions from 1")
        return sorted(set(checkpoints))


def _with_two_placeholders(prompts: list[str]) -> list[str]:
    for p in prompts:
        if "{0}" not in p or "{1}" not in p:
            raise ValueError(f"multi-concept prompt {p!r} needs both '{{0}}' and '{{1}}' (the two concepts)")
    return prompts


class MultiConcept(_Strict):
    """Prompts that name two learned concepts, scored once both are learned (docs/metrics.md, multi-concept)."""

    pairs: list[tuple[str, str]] | Literal["dataset"] = Field(
        "dataset",
        description="the concept pairs: `dataset` for the source's published pairs (CustomConcept101's "
        "dataset_multiconcept.json), or a list of [first, second] concept names; a pair whose two concepts are not "
        "both in `sessions` is skipped (so a protocol that includes another may shorten its sessions)",
    )
    prompts: Annotated[list[str], AfterValidator(_with_two_placeholders)] = Field(
        default_factory=lambda: [
            "photo of a {0} and a {1}",
            "a {0} next to a {1} on a wooden table",
            "a {0} and a {1} on the beach",
            "a {0} and a {1} in a garden",
        ],
        min_length=1,
        description="templates of the pairs without published prompts; '{0}' and '{1}' -> '<token> <class>' of "
        "each concept",
    )
    max_prompts: int | None = Field(None, ge=1, description="use only the first N prompts of a pair")


MAX_IMAGES = 10_000  # shots or references per concept: far above any dataset's, far below a memory's limit


class Protocol(_Strict):
    name: str
    description: str = ""
    source: Source = Source()
    # upper bounds: the toy world renders any count asked for, so a typo (4e15) would exhaust memory, not fail
    shots: int = Field(
        6,
        ge=1,
        le=MAX_IMAGES,
        description="images of each concept a method trains on (real data: the first N in `split`'s order)",
    )
    references: int = Field(
        16,
        ge=1,
        le=MAX_IMAGES,
        description="held-out images of each concept that IA is measured against and no method sees. Toy: renders "
        "from a seed no training or method code draws. Real data: the images after the shots in `split`'s order, at "
        "most this many (a concept with none left is an error).",
    )
    split: Split = Field(
        default_factory=Split,
        description="real data: which images of a concept train and which are held out (the toy source renders "
        "each from its own seed and takes no split)",
    )
    training_prompt: str = "a {}"  # '{}' -> "<token> <class>"
    sessions: list[list[str]] = Field(min_length=1, description="concept names introduced by each session")
    order_seed: int | None = Field(
        None,
        description="shuffle the order of the sessions with this seed (each session keeps its concepts): concept-"
        "order robustness. load_protocol applies it once, so a run's config.json holds the order it ran in; "
        "None: the order as written",
    )
    backbone: str = "toy"
    evaluator: str = "toy"
    dino: str | None = Field(
        None,
        description="the DINO model of IA_dino (lfsbench/dino.py): facebook/dino-vits16 from the local Hugging Face "
        "cache, or a folder; none: IA_dino is not computed (the toy world has no DINO model, docs/metrics.md)",
    )
    evaluation: EvaluationPlan
    multi_concept: MultiConcept | None = Field(
        None,
        description="also score prompts that name two learned concepts, after every session once both are learned; "
        "None: not scored (the toy backbone draws one object per image, docs/metrics.md)",
    )

    @field_validator("dino", "multi_concept", mode="before")
    @classmethod
    def _none(cls, value):
        """`-o dino=none`, `-o multi_concept=none`: leave the figure out."""
        return None if isinstance(value, str) and value.strip().lower() in ("none", "null", "") else value

    @field_validator("sessions")
    @classmethod
    def _unique(cls, sessions: list[list[str]]) -> list[list[str]]:
        seen = set()
        for i, session in enumerate(sessions):
            if not session:
                raise ValueError(f"session {i} introduces no concept")
            for name in session:
                problem = concept_name_problem(name)
                if problem:
                    raise ValueError(f"concept name {name!r} cannot name a folder or file ({problem})")
                if name in seen:
                    raise ValueError(f"concept {name!r} is introduced twice (again in session {i})")
                seen.add(name)
        return sessions

    @model_validator(mode="after")
    def _split_is_real_data(self) -> Protocol:
        if self.source.kind == "toy" and self.split != Split():
            raise ValueError(
                "split chooses which of a real concept's images train; the toy source renders shots and references "
                "from their own seeds and takes none (leave split out)"
            )
        return self

    @model_validator(mode="after")
    def _checkpoints_within_sessions(self) -> Protocol:
        beyond = [c for c in self.evaluation.checkpoints if c > len(self.sessions)]
        if beyond:
            raise ValueError(f"evaluation.checkpoints {beyond} are beyond the protocol's {len(self.sessions)} sessions")
        return self

    @model_validator(mode="after")
    def _pairs_of_two_concepts(self) -> Protocol:
        if self.multi_concept is None or self.multi_concept.pairs == "dataset":
            return self
        for first, second in self.multi_concept.pairs:  # a pair of concepts not both in `sessions` is skipped
            if first == second:
                raise ValueError(f"multi_concept pair [{first}, {second}] names one concept twice")
        if self.toy_world is not None:
            from lfsbench.toy import world

            if world.get_world(self.toy_world).pair_radius is None:
                raise ValueError(
                    f"multi_concept asks for two concepts in one image, and toy world {self.toy_world} has no "
                    "two-object scenes: its backbone never saw two objects (use world 2, or leave multi_concept out)"
                )
        return self

    @property
    def concepts(self) -> list[str]:
        return [c for session in self.sessions for c in session]

    @property
    def toy_world(self) -> int | None:
        """The toy world version its concepts are rendered in (None: not the toy source)."""
        return (self.source.world or 1) if self.source.kind == "toy" else None

    def learned_in(self) -> dict[str, int]:
        """Each concept's session (counted from 0), in protocol order."""
        return {name: t for t, names in enumerate(self.sessions) for name in names}

    def evaluates_all_after(self, t: int) -> bool:
        """Whether every concept learned so far is evaluated after session t (counted from 0)."""
        cps = self.evaluation.checkpoints
        return not cps or t + 1 in cps or t == len(self.sessions) - 1


def builtin_protocols() -> dict[str, Path]:
    """Protocol names shipped with lfsbench, mapped to their files."""
    folder = resources.files("lfsbench.protocols")
    return {Path(str(f)).stem: Path(str(f)) for f in folder.iterdir() if str(f).endswith(".yaml")}


def _resolve(name_or_path: str, relative_to: Path | None = None) -> Path:
    candidate = Path(name_or_path)
    if relative_to is not None and not candidate.is_absolute():
        local = relative_to.parent / candidate
        if local.is_file():
            return local
    if candidate.is_file():
        return candidate
    shipped = builtin_protocols()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise LfsbenchError(
        f"No protocol {name_or_path!r}: it is neither a file nor a shipped protocol. "
        f"Shipped protocols: {', '.join(sorted(shipped))}, and `folder` (your own data, with --data). "
        "Pass a YAML file path or one of those names."
    )


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    if path in chain:
        raise LfsbenchError(
            f"Protocol {path} includes itself (through {' -> '.join(map(str, chain))}); remove the cycle."
        )
    try:
        data = strict_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise LfsbenchError(f"Protocol {path} is not valid YAML: {err}. Fix the syntax at the line shown.") from None
    if not isinstance(data, dict):
        raise LfsbenchError(
            f"Protocol {path} must be a YAML mapping (name:, sessions:, evaluation:, ...), not a {type(data).__name__}."
        )
    include = data.pop("include", None)
    if include:
        data = _merge(_read(_resolve(include, path), chain + (path,)), data)
    return data


FOLDER_PROMPTS = ["a photo of a {}", "a {} on the beach", "a {} in the snow", "a {} in a living room"]


def folder_protocol(root: Path) -> dict:
    """The built-in `folder` protocol: one session per subfolder of `root`, in name order."""
    if not root.is_dir():
        raise LfsbenchError(
            f"Data folder {root} does not exist. The folder protocol needs --data PATH, a folder with one "
            f"subfolder of images per concept."
        )
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not names:
        raise LfsbenchError(
            f"Data folder {root} has no subfolders. Put each concept's images in a subfolder of its own "
            f"(e.g. {root}/my_cat/)."
        )
    return {
        "name": "folder",
        "description": f"a user's concepts in {root}",
        "source": {"kind": "folder", "path": str(root)},
        "shots": 3,  # 3 of each folder's images train (split: random by default); the rest are held out for IA
        "references": 50,
        "sessions": [[n] for n in names],
        "evaluation": {"prompts": FOLDER_PROMPTS, "images_per_prompt": 16},
    }


def load_protocol(name_or_path: str, overrides: dict | None = None, data: Path | None = None) -> Protocol:
    """Load, merge includes and overrides, and validate a protocol (`folder` is built from the data folder)."""
    if name_or_path == "folder":
        if data is None:
            raise LfsbenchError(
                "The folder protocol reads your own data: pass --data PATH (one subfolder of images per concept)."
            )
        path, base = Path(data), folder_protocol(Path(data))
    else:
        path = _resolve(name_or_path)
        base = _read(path)
    data = _merge(base, overrides or {})
    try:
        return ordered(Protocol.model_validate(data))
    except ValidationError as err:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in e['loc']) or '(top level)'}': {e['msg']}" for e in err.errors()
        )
        raise LfsbenchError(
            f"Protocol {path} is invalid: {problems}. Fix the field(s) named and load it again."
        ) from None


def ordered(protocol: Protocol) -> Protocol:
    """The protocol with its sessions in the order `order_seed` draws (unchanged without one). Applied once, when a
    protocol is loaded by name or file: a run's stored config holds the drawn order and is read back as it is."""
    if protocol.order_seed is None:
        return protocol
    import numpy as np

    order = np.random.default_rng(protocol.order_seed).permutation(len(protocol.sessions))
    return protocol.model_copy(update={"sessions": [protocol.sessions[i] for i in order]})


def parse_overrides(pairs: list[str]) -> tuple[dict, dict]:
    """Split `-o KEY=VALUE` pairs (each VALUE read as YAML) into protocol overrides (keys that are protocol fields,
    dotted for nesting) and method settings; a key given twice is an error."""
    return split_settings(parse_settings(pairs))


def parse_settings(pairs: list[str]) -> dict:
    """`-o KEY=VALUE` pairs as typed settings, each VALUE read as YAML (what a study spec's cell holds); a key given
    twice is an error."""
    settings: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise LfsbenchError(
                f"Override {pair!r} is not KEY=VALUE (e.g. -o steps=100 or -o evaluation.images_per_prompt=4)."
            )
        if key in settings:
            raise LfsbenchError(f"Override {pair!r}: {key!r} is set twice. Give each setting once.")
        try:
            settings[key] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            problem = str(err).splitlines()[0]
            raise LfsbenchError(
                f"Override {pair!r}: the value {raw!r} is not valid YAML ({problem}). Quote text with special "
                "characters (-o 'token_init=\"a word\"'), write lists as [a, b]."
            ) from None
    return settings


def split_settings(settings: dict) -> tuple[dict, dict]:
    """Typed settings (a study cell's, or `-o` pairs after YAML) -> (protocol overrides, nested for `load_protocol`;
    method settings). A key whose first part is a protocol field overrides the protocol (`evaluation.steps`)."""
    protocol, method = {}, {}
    for key, value in settings.items():
        parts = key.split(".")
        if parts[0] not in Protocol.model_fields:
            method[key] = value
            continue
        target = protocol
        for depth, part in enumerate(parts[:-1]):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise LfsbenchError(
                    f"Setting {key!r} sets a field inside {'.'.join(parts[: depth + 1])!r}, which another setting "
                    "sets to a plain value. Give each field once."
                )
        if isinstance(target.get(parts[-1]), dict) and not isinstance(value, dict):
            raise LfsbenchError(
                f"Setting {key!r} replaces {key!r}, whose fields other settings set. Give each field once."
            )
        if parts[-1] in target:
            raise LfsbenchError(f"Setting {key!r} is given twice (once inside a mapping). Give each field once.")
        target[parts[-1]] = value
    return protocol, method
