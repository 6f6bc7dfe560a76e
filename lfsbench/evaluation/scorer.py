"""One scorer for class, concept and control images alike: images -> embeddings -> per-image score records."""

from __future__ import annotations

import torch

from lfsbench.evaluation import functional as F
from lfsbench.evaluation.plan import Job
from lfsbench.evaluation.records import Kind

NAN = float("nan")


class Scorer:
    """Scores generated images with the benchmark's evaluator (embeddings of references computed once per run)."""

    def __init__(self, evaluator):
        self.evaluator = evaluator
        self._references: dict[str, torch.Tensor] = {}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.evaluator.encode_images(images)

    def references(self, name: str, images: torch.Tensor) -> torch.Tensor:
        """E_i of a concept's reference images, computed once per run."""
        if name not in self._references:
            self._references[name] = self.embed(images)
        return self._references[name]

    def score(
        self,
        t: int,
        job: Job,
        emb: torch.Tensor,
        references: torch.Tensor | None = None,
        base: torch.Tensor | None = None,
    ) -> list[dict]:
        """Per image: TA against the job's text prompts; IA against `references`; drift from `base` (same seeds)."""
        ta = F.text_alignment_scores(emb, self.evaluator.encode_texts(job.text_prompts))
        ia = F.image_alignment_scores(emb, references) if references is not None else [NAN] * len(ta)
        drift = F.paired_drift_scores(emb, base) if base is not None else [NAN] * len(ta)
        return [
            {
                "session": t,
                "kind": job.kind.value,
                "name": job.name,
                "prompt": p,
                "seed": s,
                "ta": a,
                "ia": i,
                "drift": d,
            }
            for p, s, a, i, d in zip(job.prompts, job.seeds, ta, ia, drift, strict=True)
        ]

    @staticmethod
    def alignment(t: int, kind: Kind, name: str, emb: torch.Tensor, references: torch.Tensor) -> list[dict]:
        """IA of images that belong to no prompt of the concept (class-prompt images) against its references."""
        return [
            {"session": t, "kind": kind.value, "name": name, "prompt": "", "seed": -1, "ta": NAN, "ia": i, "drift": NAN}
            for i in F.image_alignment_scores(emb, references)
        ]
