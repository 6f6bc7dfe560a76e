"""The per-image score records of a run (scores/session_XX.csv): one row per generated image, or per pair of
class-prompt images and a concept's references.

    session  kind  name  prompt  seed  ta  ia  ia_shots  drift  shot_distance  reference_distance  copied
    class_correct  ia_dino  ia_dino_shots  complies  nuisance_copy  layout_copy  copy_null  layout_null
    relative_copy  dino_copy  confused  recognised  both_recognised  shown_as

`ta` is the cosine to the prompt without the modifier token; `ia` the mean cosine to the concept's held-out
references, `ia_shots` to its training shots; `drift` 1 - the cosine to the base model's image for the same prompt
and seed; `shot_distance` / `reference_distance` the RMS pixel difference to the nearest training shot / held-out
reference, `copied` 1 where the first is below the concept's copy threshold (evaluation/copying.py);
`class_correct` 1 where the evaluator classifies a class-prompt image (zero-shot) as the asked class; `ia_dino` /
`ia_dino_shots` the mean cosine of DINO embeddings to the held-out references / the shots (lfsbench/dino.py), where
the protocol names a DINO model. On the toy world, as its attribute oracle reads an image (lfsbench/toy/copying.py):
`complies` 1 where it shows what the prompt states (the class, and the background where the prompt names one);
`nuisance_copy` 1 where its background, centre, radius and rotation all match one training shot's, `layout_copy` 1
where its background and centre do; `copy_null` / `layout_null` the probability of each for a fresh render of the
concept under the same prompt. The copy detectors of real data (evaluation/copying.py), each flagging 5% of the
held-out references by construction: `relative_copy` 1 where the relative pixel distance to the shots (Carlini et al.
2023) is below the concept's threshold, `dino_copy` 1 where the DINO cosine to the nearest shot is above it (with a
DINO model). Concept confusion (a concept's images only; evaluation/functional.py shown_concepts): `shown_as` the
learned concept the image shows, as the evaluator sees it (the one whose held-out references it resembles most, where
it resembles them more than 95% of the base model's images of that concept's class do; empty where none), `confused`
1 where that is another concept than the one asked for. Two-concept images on the toy world (`multi`, one record per
concept; lfsbench/toy/composition.py): `complies` 1 where the oracle reads exactly two clean objects, of the two classes
the prompt names (and its background, where it names one), `recognised` 1 where one of them is this record's concept
(class and two-tone pattern), `both_recognised` 1 where both concepts are, in different objects (the two figures of the
image, `complies` and `both_recognised`, in its first concept's record only). NaN where a kind has none.
"""

from __future__ import annotations

from enum import Enum

COLUMNS = ("ta", "ia", "ia_shots", "drift", "shot_distance", "reference_distance", "copied", "class_correct")
# added since; NaN in runs made before them, without a DINO model (ia_dino*, dino_copy), off the toy world (the
# oracle's five) or with a single shot (relative_copy)
ORACLE_COLUMNS = ("complies", "nuisance_copy", "layout_copy", "copy_null", "layout_null")  # lfsbench/toy/copying.py
COMPOSITION_COLUMNS = (
    "recognised",
    "both_recognised",
)  # two-concept images on the toy world: lfsbench/toy/composition.py
OPTIONAL_COLUMNS = (
    "ia_dino", "ia_dino_shots", *ORACLE_COLUMNS, "relative_copy", "dino_copy", "confused", *COMPOSITION_COLUMNS
)  # fmt: skip
ALL_COLUMNS = (*COLUMNS, *OPTIONAL_COLUMNS)  # the numbers a record of this version holds
TEXT_COLUMNS = ("shown_as",)  # and its text (empty where a kind has none)


def with_optional_columns(scores):
    """Score records with every optional column (NaN where the run has none), the text columns as text ("" where
    none: a CSV column with no text at all reads back as numbers, which would compare unlike one with some)."""
    missing = [c for c in (*OPTIONAL_COLUMNS, *TEXT_COLUMNS) if c not in scores.columns]
    scores = scores.reindex(columns=[*scores.columns, *missing]) if missing else scores
    return scores.assign(**{c: scores[c].astype(object).where(scores[c].notna(), "").astype(str) for c in TEXT_COLUMNS})


class Kind(str, Enum):
    """What a score record is of (the `kind` column); compares equal to its string value."""

    CONCEPT = "concept"  # the method's images of a learned concept's prompts: TA, IA, IA_shots, copying
    CLASS = "class"  # the method's images of a class prompt: TA, drift, class accuracy
    BASE_CLASS = "base_class"  # the base model's images of the same class prompts and seeds: TA, class accuracy
    CONTROL = "control"  # the base model from the method's stored contexts (in-context generation): TA, IA, copying
    BASE_CLASS_FOR_CONCEPT = "base_class_for_concept"  # the base model's class images vs a concept's references: IA
    CLASS_FOR_CONCEPT = "class_for_concept"  # the current model's class images vs a concept's references: IA
    MULTI = "multi"  # an image of a prompt naming two learned concepts, one record per concept (`name`): TA, its IA
    UNTOUCHED = "untouched"  # the method's images of a class no concept belongs to: TA, drift, class accuracy
    BASE_UNTOUCHED = "base_untouched"  # the base model's images of the same prompts and seeds: TA, class accuracy

    def __str__(self) -> str:
        return self.value


MEASURED = {  # the columns each record kind must have as numbers (a NaN there means the images are not numbers)
    Kind.CONCEPT: ("ta", "ia", "ia_shots", "shot_distance"),
    Kind.CONTROL: ("ta", "ia", "ia_shots"),
    Kind.CLASS: ("ta", "drift"),
    Kind.BASE_CLASS: ("ta",),
    Kind.BASE_CLASS_FOR_CONCEPT: ("ia",),
    Kind.CLASS_FOR_CONCEPT: ("ia",),
    Kind.MULTI: ("ta", "ia"),
    Kind.UNTOUCHED: ("ta", "drift"),
    Kind.BASE_UNTOUCHED: ("ta",),
}
CLASS_KINDS = (Kind.CLASS, Kind.BASE_CLASS, Kind.UNTOUCHED, Kind.BASE_UNTOUCHED)  # records of class prompts
