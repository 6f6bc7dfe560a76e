"""Concepts and what a method may see of a session; `load_concepts` reads a protocol's concepts from its source
(lfsbench/datasets.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lfsbench.errors import LfsbenchError, path_part_problem
from lfsbench.protocol import Protocol

TOKEN_PATTERN = re.compile(r"<new\d+>")  # the modifier tokens load_concepts gives, numbered in session order


def modifier_token(position: int) -> str:
    """The modifier token of the protocol's concept at `position` (0-based, in session order): <new1>, <new2>, ..."""
    return f"<new{position + 1}>"


@dataclass
class Concept:
    """One personal concept: its shots, class noun and modifier token, and how it is evaluated."""

    name: str
    class_noun: str
    token: str  # the modifier token, e.g. "<new1>"
    images: torch.Tensor  # the few-shot images a method trains on (its shots), [0, 1] NCHW
    references: torch.Tensor  # held-out images of the concept that no method sees: IA's references, [0, 1] NCHW
    prompts: list[str] = field(default_factory=list)  # evaluation templates, '{}' -> "<token> <class>"

    def phrase(self, with_token: bool = True) -> str:
        return f"{self.token} {self.class_noun}" if with_token else self.class_noun


@dataclass
class ConceptPair:
    """Two learned concepts asked for in one image (multi-concept prompts); templates have '{0}' and '{1}'."""

    first: Concept
    second: Concept
    prompts: list[str]

    @property
    def name(self) -> str:
        return f"{self.first.name}+{self.second.name}"


@dataclass
class SessionView:
    """What a method may see of a session: the new concepts' shots, tokens, class nouns, training prompts.

    `earlier` names the concepts of earlier sessions (token, class noun, prompts; never their
    images): what a data-free method may condition on. A method that keeps images (replay)
    must keep them itself, and report them as stored bytes.
    """

    index: int
    concepts: list[ConceptView]
    earlier: list[EarlierConcept] = field(default_factory=list)


@dataclass
class ConceptView:
    token: str
    class_noun: str
    images: torch.Tensor
    training_prompt: str  # e.g. "a <new1> cat"
    class_prompt: str  # the same without the token: "a cat"


@dataclass
class EarlierConcept:
    token: str
    class_noun: str
    training_prompt: str
    class_prompt: str


def session_view(
    index: int, concepts: list[Concept], training_template: str, earlier: list[Concept] = ()
) -> SessionView:
    """The narrow view of a session that a method receives."""
    views = [
        ConceptView(
            c.token,
            c.class_noun,
            c.images,
            training_template.format(c.phrase()),
            training_template.format(c.class_noun),
        )
        for c in concepts
    ]
    names = [
        EarlierConcept(
            c.token, c.class_noun, training_template.format(c.phrase()), training_template.format(c.class_noun)
        )
        for c in earlier
    ]
    return SessionView(index, views, names)


def load_concepts(protocol: Protocol, data: Path | None = None, resolution: int | None = None) -> list[Concept]:
    """Read every concept the protocol names, in session order, with tokens <new1>, <new2>, ..."""
    from lfsbench.datasets import data_root, dataset_spec

    spec = dataset_spec(protocol.source.kind)
    raw = spec.load(protocol, data_root(protocol, data) if spec.needs_data else None)
    for loaded in raw:
        problem = path_part_problem(loaded.class_noun)
        if problem:
            raise LfsbenchError(
                f"The class noun {loaded.class_noun!r} of concept {loaded.name!r} (from the {protocol.source.kind} "
                f"data) cannot name a file ({problem}): class images are saved as class_NOUN.png. Give the concept a "
                "plain class noun."
            )
    touched = {loaded.class_noun for loaded in raw}
    for noun in protocol.evaluation.untouched_classes:
        problem = path_part_problem(noun) or ("a concept of the protocol belongs to it" if noun in touched else "")
        if problem:
            raise LfsbenchError(
                f"Protocol {protocol.name!r} lists {noun!r} among its untouched classes "
                f"(evaluation.untouched_classes), which cannot be: {problem}. List only plain class nouns that none "
                f"of its concepts belongs to (its concepts' classes: {', '.join(sorted(touched))})."
            )
    concepts = []
    for i, loaded in enumerate(raw):
        prompts = (loaded.prompts or list(protocol.evaluation.prompts))[: protocol.evaluation.max_prompts]
        concepts.append(
            Concept(
                loaded.name,
                loaded.class_noun,
                modifier_token(i),
                _fitted(loaded.shots, resolution),
                _fitted(loaded.references, resolution),
                prompts,
            )
        )
    return concepts


def load_pairs(protocol: Protocol, concepts: list[Concept], data: Path | None = None) -> list[ConceptPair]:
    """The protocol's multi-concept pairs (none unless `multi_concept` is set): its own list, or the source's
    published pairs whose two concepts are both in the protocol."""
    from lfsbench.datasets import data_root, dataset_spec

    multi = protocol.multi_concept
    if multi is None:
        return []
    if multi.pairs == "dataset":
        spec = dataset_spec(protocol.source.kind)
        if spec.read_pairs is None:
            raise LfsbenchError(
                f"Protocol {protocol.name!r} asks for the {protocol.source.kind} source's published concept pairs "
                "(multi_concept: pairs: dataset), and that source publishes none. List the pairs in the protocol "
                "(multi_concept: {pairs: [[first, second], ...]}), or set multi_concept: none."
            )
        listed = [(a, b, templates) for a, b, templates in spec.read_pairs(data_root(protocol, data))]
    else:
        listed = [(a, b, list(multi.prompts)) for a, b in multi.pairs]
    by_name = {c.name: c for c in concepts}
    limit = multi.max_prompts or protocol.evaluation.max_prompts  # a quick run's cut applies to pairs too
    pairs, seen = [], set()
    for first, second, templates in listed:
        if first in by_name and second in by_name and first != second and (first, second) not in seen:
            seen.add((first, second))
            pairs.append(ConceptPair(by_name[first], by_name[second], templates[:limit]))
    return pairs


def _fitted(images: torch.Tensor | list[torch.Tensor], resolution: int | None) -> torch.Tensor:
    if isinstance(images, list) or (resolution is not None and images.shape[-1] != resolution):
        return torch.stack([fit_image(img, resolution) for img in images])
    return images


def fit_image(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """Centre-crop to a square and resize to `size` (CHW, [0, 1])."""
    if size is None:
        return image
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = image[:, top : top + s, left : left + s]
    return F.interpolate(square[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0].clamp(
        0, 1
    )
