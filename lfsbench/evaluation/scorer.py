"""One scorer for class, concept and control images alike: images -> embeddings -> per-image score records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lfsbench.concepts import Concept
from lfsbench.evaluation import functional as F
from lfsbench.evaluation.copying import CopySpace, FeatureCopy
from lfsbench.evaluation.plan import Job
from lfsbench.evaluation.records import ALL_COLUMNS, CLASS_KINDS, TEXT_COLUMNS, Kind
from lfsbench.toy import composition
from lfsbench.toy.copying import ConceptCopying

NAN = float("nan")


@dataclass
class ConceptReferences:
    """What a concept's images are scored against: its held-out references and its training shots (embeddings),
    and both in the copy space."""

    references: torch.Tensor  # E_i of the held-out references: IA
    shots: torch.Tensor  # E_i of the training shots: IA_shots
    copy: CopySpace
    dino_references: torch.Tensor | None = None  # DINO embeddings of the references: IA_dino (None: no DINO model)
    dino_shots: torch.Tensor | None = None  # and of the shots: IA_dino_shots
    oracle: ConceptCopying | None = None  # the toy world's: compliance and nuisance copies (None: not the toy world)
    dino_copy: FeatureCopy | None = None  # copy detection in DINO's space (None: no DINO model)


@dataclass
class KnownConcepts:
    """The concepts learned so far, as concept confusion reads an image: each one's name, held-out reference
    embeddings and recognition bar (functional.recognition_bar)."""

    names: list[str]
    references: list[torch.Tensor]
    bars: list[float]

    def shown(self, emb: torch.Tensor, asked: str) -> dict[str, np.ndarray]:
        """Per image: the concept it shows (`shown_as`, "" where none) and whether that is another than `asked`."""
        index = F.shown_concepts(emb, self.references, self.bars)
        shown = np.array([self.names[i] if i >= 0 else "" for i in index], dtype=object)
        return {"shown_as": shown, "confused": ((index >= 0) & (shown != asked)).astype(float)}


class Scorer:
    """Scores generated images with the benchmark's evaluator (a concept's references are embedded once per run).

    `vocabulary` maps class nouns to the text that names them for zero-shot classification (class accuracy); None
    where the evaluator has no vocabulary of classes. `dino`: the DINO encoder of IA_dino (lfsbench/dino.py), or None.
    `toy_world`: the toy world version the concepts were rendered in, whose attribute oracle then reads compliance
    and copies (lfsbench/toy/copying.py); None off the toy world.
    """

    def __init__(self, evaluator, vocabulary: dict[str, str] | None = None, dino=None, toy_world: int | None = None):
        self.evaluator = evaluator
        self.dino = dino
        self.toy_world = toy_world
        self._concepts: dict[str, ConceptReferences] = {}
        self.classes = list(vocabulary) if vocabulary else []
        self._class_texts = self.evaluator.encode_texts(list(vocabulary.values())) if vocabulary else None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.evaluator.encode_images(images)

    def concept(self, concept: Concept) -> ConceptReferences:
        """A concept's references, computed once per run."""
        if concept.name not in self._concepts:
            dino = self.dino.encode_images if self.dino is not None else lambda images: None
            toy = ConceptCopying.of(concept.class_noun, concept.images, self.toy_world) if self.toy_world else None
            dino_references, dino_shots = dino(concept.references), dino(concept.images)
            self._concepts[concept.name] = ConceptReferences(
                self.embed(concept.references),
                self.embed(concept.images),
                CopySpace.of(concept.images, concept.references),
                dino_references,
                dino_shots,
                toy,
                FeatureCopy.of(dino_shots, dino_references) if dino_shots is not None else None,
            )
        return self._concepts[concept.name]

    def class_correct(self, emb: torch.Tensor, noun: str) -> np.ndarray:
        """Per image: 1 if the evaluator's nearest class text (zero-shot) is `noun`, else 0; NaN without a vocabulary
        that holds the noun."""
        if self._class_texts is None or noun not in self.classes:
            return np.full(len(emb), NAN)
        predicted = (emb @ self._class_texts.T).argmax(dim=1).numpy()
        return (predicted == self.classes.index(noun)).astype(float)

    def score(
        self,
        t: int,
        job: Job,
        emb: torch.Tensor,
        concept: ConceptReferences | None = None,
        images: torch.Tensor | None = None,
        base: torch.Tensor | None = None,
        known: KnownConcepts | None = None,
    ) -> list[dict]:
        """Per image: TA against the job's text prompts. With `concept` (and the `images`): IA against its held-out
        references and its shots, and copy detection (on the toy world also compliance and nuisance copies, read by
        its oracle). With `base` (the base model's embeddings, same prompts and
        seeds): drift. With `known` (the concepts learned so far): which of them each image shows (concept
        confusion). Class jobs: zero-shot class accuracy."""
        return self.records(t, job, self.values(job, emb, concept, images, base, known))

    @staticmethod
    def records(t: int, job: Job, values: dict[str, np.ndarray]) -> list[dict]:
        """The score records of session t from a job's per-image values (`values`: a column -> one value per image)."""
        return _records(t, job.kind, job.name, job, values)

    def values(
        self,
        job: Job,
        emb: torch.Tensor,
        concept: ConceptReferences | None = None,
        images: torch.Tensor | None = None,
        base: torch.Tensor | None = None,
        known: KnownConcepts | None = None,
    ) -> dict[str, np.ndarray]:
        """`score`'s per-image values, by column (NaN where the job's kind has none; text columns only where
        given)."""
        values = {column: np.full(len(job.prompts), NAN) for column in ALL_COLUMNS}
        values["ta"] = F.text_alignment_scores(emb, self.evaluator.encode_texts(job.text_prompts))
        if concept is not None:
            dino = self.dino.encode_images(images) if concept.dino_references is not None else None
            values.update(self._alignment(emb, dino, concept))
            copies = concept.copy.measure(images)
            values.update({c: copies[c] for c in ("shot_distance", "reference_distance", "copied", "relative_copy")})
            if dino is not None and concept.dino_copy is not None:
                values["dino_copy"] = concept.dino_copy.measure(dino)
            if concept.oracle is not None:
                values.update(concept.oracle.measure(images, job.text_prompts))
        if known is not None:
            values.update(known.shown(emb, job.name))
        if base is not None:
            values["drift"] = F.paired_drift_scores(emb, base)
        if job.kind in CLASS_KINDS:
            values["class_correct"] = self.class_correct(emb, job.class_noun)
        return values

    @staticmethod
    def _alignment(emb: torch.Tensor, dino: torch.Tensor | None, refs: ConceptReferences) -> dict[str, np.ndarray]:
        """Per image: IA against the concept's references and its shots, and the same with DINO where given."""
        out = {
            "ia": F.image_alignment_scores(emb, refs.references),
            "ia_shots": F.image_alignment_scores(emb, refs.shots),
        }
        if dino is not None and refs.dino_references is not None:
            out["ia_dino"] = F.image_alignment_scores(dino, refs.dino_references)
            out["ia_dino_shots"] = F.image_alignment_scores(dino, refs.dino_shots)
        return out

    def multi(
        self, t: int, job: Job, emb: torch.Tensor, images: torch.Tensor, members: dict[str, ConceptReferences]
    ) -> list[dict]:
        """Images of a two-concept prompt: per image and per concept (`name`), TA against the prompt without the
        modifier tokens, and IA (IA_shots, IA_dino) of the image against that concept's references; on the toy
        world also composition as its oracle reads it (lfsbench/toy/composition.py)."""
        ta = F.text_alignment_scores(emb, self.evaluator.encode_texts(job.text_prompts))
        dino = self.dino.encode_images(images) if self.dino is not None else None
        oracles = [refs.oracle for refs in members.values()]
        composed = [{}] * len(members)
        if all(o is not None for o in oracles):
            composed = composition.measure(images, job.text_prompts, [o.appearance for o in oracles], self.toy_world)
        records = []
        for (name, refs), read in zip(members.items(), composed, strict=True):
            values = {column: np.full(len(job.prompts), NAN) for column in ALL_COLUMNS}
            values.update({"ta": ta, **self._alignment(emb, dino, refs), **read})
            records += _records(t, Kind.MULTI, name, job, values)
        return records

    @staticmethod
    def alignment(t: int, kind: Kind, name: str, emb: torch.Tensor, concept: ConceptReferences) -> list[dict]:
        """IA of images that belong to no prompt of the concept (class-prompt images) against its held-out
        references (`ia`) and its shots (`ia_shots`)."""
        ia = F.image_alignment_scores(emb, concept.references)
        ia_shots = F.image_alignment_scores(emb, concept.shots)
        return [
            {
                "session": t,
                "kind": kind.value,
                "name": name,
                "prompt": "",
                "seed": -1,
                **{column: NAN for column in ALL_COLUMNS},
                "ia": float(i),
                "ia_shots": float(j),
            }
            for i, j in zip(ia, ia_shots, strict=True)
        ]


def _records(t: int, kind: Kind, name: str, job: Job, values: dict[str, np.ndarray]) -> list[dict]:
    """One score record per image of the job: its session, kind, name, prompt and seed, and every column."""
    return [
        {
            "session": t,
            "kind": kind.value,
            "name": name,
            "prompt": p,
            "seed": s,
            **{column: float(values[column][i]) for column in ALL_COLUMNS},
            **{column: str(values[column][i]) if column in values else "" for column in TEXT_COLUMNS},
        }
        for i, (p, s) in enumerate(zip(job.prompts, job.seeds, strict=True))
    ]
