"""The evaluation plan: which images are generated after a session, for which prompts and seeds.

After session t the model generates, for every class of the concepts evaluated, its class prompts (class_job);
then for every concept evaluated its own prompts with its modifier token (and, for methods that
generate from stored context, the same prompts from the base model: the control). Every concept learned so far is
evaluated, except after sessions that are not checkpoints of a protocol with checkpoints: then only the concepts
just learned. Each prompt is drawn with the same seeds after every session; where the protocol sets
`evaluation.between_images_per_prompt`, a concept or class in a cell the summary does not read (neither the session
that taught it nor the last session nor a checkpoint: full_count_session) gets only each prompt's first seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest

from lfsbench.concepts import Concept, ConceptPair
from lfsbench.evaluation.records import Kind
from lfsbench.protocol import Protocol


@dataclass
class Job:
    """One batch of images to generate and score: prompts x seeds of one concept or class."""

    kind: Kind
    name: str  # the concept's name, or the class noun
    prompts: list[str]  # what the model is asked for (with the modifier token for concepts)
    seeds: list[int]
    text_prompts: list[str]  # what TA compares the images with (the prompts without the modifier token)
    class_noun: str


def full_count_session(protocol: Protocol, t: int, taught_in: set[int]) -> bool:
    """Whether a concept or class evaluated after session t is a full-count cell: t taught it (`taught_in`: the
    sessions that taught the concept, or a concept of the class), or t is the last session or a checkpoint. The
    summary reads only these cells (IA after the last session, IAD against IA right after learning); the others are
    the in-between points of the curves."""
    return t in taught_in or t == len(protocol.sessions) - 1 or t + 1 in protocol.evaluation.checkpoints


def image_seeds(protocol: Protocol, full: bool = True) -> list[int]:
    """The seeds of each prompt's images (the same after every session): `images_per_prompt` of them in a
    full-count cell, the first `between_images_per_prompt` (where set) in the others."""
    plan = protocol.evaluation
    n = plan.images_per_prompt
    if not full and plan.between_images_per_prompt is not None:
        n = min(n, plan.between_images_per_prompt)
    return [plan.seed + j for j in range(n)]


def _expand(templates: list[str], phrase: str, seeds: list[int]) -> tuple[list[str], list[int]]:
    return [p.format(phrase) for p in templates for _ in seeds], seeds * len(templates)


def class_templates(noun: str, concepts: list[Concept]) -> list[str]:
    """The class's prompt templates: the evaluation prompts of every concept of the class (the same prompts with the
    class noun where the token was), taken in turn from each concept, each once, as many as one concept's
    evaluation has (the largest).

    On the toy world every concept has the protocol's prompts, so these are they; on CustomConcept101 and
    DreamBooth each concept has its own, and the class is asked for in the same contexts its concepts are.
    """
    of_class = [c for c in concepts if c.class_noun == noun]
    in_turn = (p for group in zip_longest(*(c.prompts for c in of_class)) for p in group if p is not None)
    templates = list(dict.fromkeys(in_turn))
    return templates[: max(len(c.prompts) for c in of_class)]


def class_job(
    protocol: Protocol, noun: str, concepts: list[Concept], kind: Kind = Kind.CLASS, full: bool = True
) -> Job:
    """The class prompts (class_templates) with the bare class noun: the current model's (CLASS) or the base
    model's (BASE_CLASS) images; `full`: a full-count cell (image_seeds)."""
    prompts, seeds = _expand(class_templates(noun, concepts), noun, image_seeds(protocol, full))
    return Job(kind, noun, prompts, seeds, prompts, noun)


def untouched_job(protocol: Protocol, noun: str, kind: Kind = Kind.UNTOUCHED) -> Job:
    """A class no concept belongs to (`evaluation.untouched_classes`), asked for with the protocol's prompt templates
    and the bare noun: the current model's images (UNTOUCHED) or the base model's (BASE_UNTOUCHED), the first
    `untouched_images_per_prompt` seeds of each prompt (the first `max_prompts` prompts, where set).
    Scored after every session where every learned concept is (Protocol.evaluates_all_after)."""
    evaluation = protocol.evaluation
    seeds = [evaluation.seed + j for j in range(evaluation.untouched_images_per_prompt)]
    prompts, per_image = _expand(list(evaluation.prompts)[: evaluation.max_prompts], noun, seeds)
    return Job(kind, noun, prompts, per_image, prompts, noun)


def concept_job(protocol: Protocol, concept: Concept, kind: Kind = Kind.CONCEPT, full: bool = True) -> Job:
    """The concept's evaluation prompts with its modifier token (TA against the same without it); `full`: a
    full-count cell (image_seeds)."""
    seeds = image_seeds(protocol, full)
    prompts, per_image = _expand(concept.prompts, concept.phrase(), seeds)
    plain, _ = _expand(concept.prompts, concept.phrase(with_token=False), seeds)
    return Job(kind, concept.name, prompts, per_image, plain, concept.class_noun)


def multi_job(protocol: Protocol, pair: ConceptPair) -> Job:
    """A pair's prompts with both modifier tokens (TA against the same without them); named after the pair."""
    seeds = image_seeds(protocol)
    prompts = [t.format(pair.first.phrase(), pair.second.phrase()) for t in pair.prompts for _ in seeds]
    plain = [t.format(pair.first.class_noun, pair.second.class_noun) for t in pair.prompts for _ in seeds]
    return Job(Kind.MULTI, pair.name, prompts, seeds * len(pair.prompts), plain, "")


def in_job(full: Job, part: Job) -> list[bool]:
    """Which images of `full` are those of `part`, the same job with fewer seeds per prompt (the base model's class
    images of a class evaluated with fewer)."""
    wanted = set(zip(part.prompts, part.seeds, strict=True))
    return [(p, s) in wanted for p, s in zip(full.prompts, full.seeds, strict=True)]


def evaluated_pairs(protocol: Protocol, pairs: list[ConceptPair], t: int) -> list[ConceptPair]:
    """The pairs scored after session t: those whose two concepts are learned by then (on a protocol with
    evaluation checkpoints, between checkpoints only the pairs completed in session t)."""
    learned_in = protocol.learned_in()
    done = {p.name: max(learned_in[p.first.name], learned_in[p.second.name]) for p in pairs}
    if protocol.evaluates_all_after(t):
        return [p for p in pairs if done[p.name] <= t]
    return [p for p in pairs if done[p.name] == t]


def evaluated_concepts(protocol: Protocol, concepts: list[Concept], t: int) -> list[Concept]:
    """The concepts evaluated after session t, in protocol order."""
    learned_in = protocol.learned_in()
    if protocol.evaluates_all_after(t):
        return [c for c in concepts if learned_in[c.name] <= t]
    return [c for c in concepts if learned_in[c.name] == t]


def classes_of(concepts: list[Concept]) -> list[str]:
    """The class nouns of the concepts, each once, in order of first appearance."""
    return list(dict.fromkeys(c.class_noun for c in concepts))


def class_vocabulary(protocol: Protocol, concepts: list[Concept]) -> dict[str, str] | None:
    """The classes a class-prompt image is classified among (zero-shot, class accuracy), each with the text that
    names it (the training prompt with the noun): on the toy world its five shape classes, elsewhere the protocol's
    classes; None where there are fewer than two."""
    from lfsbench.toy import NAMED_WEIGHTS

    if protocol.evaluator in NAMED_WEIGHTS:
        from lfsbench.toy.world import CLASSES

        nouns = list(CLASSES)
    else:
        nouns = classes_of(concepts)
    return {n: protocol.training_prompt.format(n) for n in nouns} if len(nouns) > 1 else None
