"""The per-image score records of a run (scores/session_XX.csv): one row per generated image, or per pair of
class-prompt images and a concept's references.

    session  kind  name  prompt  seed  ta  ia  drift

`ta` is the cosine to the prompt without the modifier token, `ia` the mean cosine to the concept's references,
`drift` 1 - the cosine to the base model's image for the same prompt and seed; NaN where a kind has none.
"""

from __future__ import annotations

from enum import Enum


class Kind(str, Enum):
    """What a score record is of (the `kind` column); compares equal to its string value."""

    CONCEPT = "concept"  # the method's images of a learned concept's prompts: TA, IA
    CLASS = "class"  # the method's images of a class prompt: TA, drift
    CONTROL = "control"  # the base model from the method's stored contexts (in-context generation): TA, IA
    BASE_CLASS_FOR_CONCEPT = "base_class_for_concept"  # the base model's class images vs a concept's references: IA
    CLASS_FOR_CONCEPT = "class_for_concept"  # the current model's class images vs a concept's references: IA

    def __str__(self) -> str:
        return self.value
