"""THE table of the benchmark's metrics: one entry per reported figure, read by everything that computes or shows one.

An entry says what a figure is (its name, labels, direction, one-line definition, and where it is shown: its
views) and how it is computed from a run's per-image score records (scores/session_XX.csv, evaluation/records.py):

    reads       the record kind whose images it averages (a concept's images, a class prompt's, the control's, ...)
    score       the per-image value: a column of those records (`"ia"`) or a function of them (`_gap`)
    against     pair each image with the same image (name, prompt, seed) of another kind; `score` then sees that
                image's columns suffixed `_other` (the class TA drop: the base model's image; the control's gain)
    aggregate   how images become the figure:
                  mean         the mean over the images: per concept or class in a session's rows, over every image
                               of the session in its figure
                  drop         IAD's: per concept, the mean of `of`'s values in the session that taught it minus now;
                               the figure is the mean over the concepts learned before the session
                  peak_drop    forgetting_max's: per concept, the highest mean of `of`'s values since it was learned
                               (sessions before now) minus now; the figure is the mean over those concepts
                  at_learning  per concept, the mean of `of`'s values in the session that taught it; the figure is the
                               mean over the concepts learned so far
                  count        a number `count` works out from the at-learning values of other metrics
                  given        a number the runner computes itself (the drift scale)
    of          the metric whose per-image values drop, peak_drop and at_learning read
    interval    images: a bootstrap over images within a run (drop and peak_drop: within each concept);
                proportion: a Wilson score interval on the count of a 0/1 value within a run; excess: a 0/1 value
                minus its probability under a null (per image, below 1), the Wilson interval of the count shifted
                by the mean null (functional.excess_interval); none. Over seeds a
                report combines every kind with a Student t interval on the per-seed figures (report/aggregate.py)
    optional    the figure exists only where a run has values for it (DINO, two-concept prompts, a control, class
                accuracy); any other figure is NaN where it has none

evaluation/tables.py computes every view from this table: session rows, session figures, the run summary,
per-session curves, and the per-image values of paired comparisons. Reports, plots, `lfsbench check`, trackers
and `lfsbench run`'s closing table read names, labels, directions and definitions from here; none of them spells a
metric. Adding a per-image metric is one entry here (its `reads` and `score`, the one function) and a paragraph in
docs/metrics.md; `register` adds one from outside the package (a plugin, or a test). Where a metric is shown:

    session   a row metric of sessions/session_XX.csv (per concept or class, with its interval)
    summary   a key of summary.json with {value, ci_low, ci_high} (an interval) or a plain number
    curve     a panel of the report's forgetting curves (curves.csv, curves.png), against session
    headline  a column of the report's summary table, "value [95% interval]"
    plain     a column of the report's "other figures and cost" table (no interval)
    cli       a row of `lfsbench run`'s closing table
    sweep     a panel of the knob-sweep figure (final value against a knob's value)
    scale     a column of the scalability table (after T sessions)
    cost      a per-session cost series (cost.csv, cost.png)
    pairs     a column of the report's paired comparisons (pairs.csv): setting A minus setting B, paired by image
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lfsbench.evaluation import functional as F
from lfsbench.evaluation.records import CLASS_KINDS, Kind

Score = str | Callable[[pd.DataFrame], object]  # a column of the records, or a function of them (one value per row)
AtLearning = Callable[[str], dict[str, np.ndarray]]  # metric -> {concept: its per-image values when it was learned}


# What a figure can measure at all (Metric.bounds): intervals are clipped to it, and a gate check whose bounds cover it
# can never fail and is refused (lfsbench/gate.py)
COSINE = (-1.0, 1.0)  # a mean of cosines
COSINE_DIFFERENCE = (-2.0, 2.0)  # a difference of two such means
COSINE_DISTANCE = (0.0, 2.0)  # 1 - a cosine
SHARE = (0.0, 1.0)
EXCESS = (-1.0, 1.0)  # a share minus the share a null gives
CLIP_SCORE = (0.0, 2.5)  # 2.5 * max(cosine, 0)


@dataclass(frozen=True)
class Metric:
    name: str  # as it appears in CSVs, summary.json and thresholds files
    short: str  # table column header
    axis: str  # plot axis label
    title: str  # plot title
    higher_is_better: bool | None  # None: neither (a scale, a count)
    definition: str  # one line; docs/metrics.md has the full text
    views: str = ""  # space-separated views (see the module docstring)
    reads: Kind | None = None  # the record kind of its per-image values
    score: Score | None = None  # their value: a column or a function of the records
    against: Kind | None = None  # pair each image with the same image of this kind (its columns suffixed _other)
    aggregate: Literal["mean", "drop", "peak_drop", "at_learning", "count", "given"] = "mean"
    of: str | None = None  # drop, peak_drop, at_learning: whose per-image values
    count: Callable[[AtLearning], float] | None = None  # aggregate "count"
    interval: Literal["images", "proportion", "excess", "none"] = "images"
    optional: bool = False  # only where a run has values (else NaN in the summary)
    fmt: str = "{:.3f}"
    scale: float = 1.0  # plots multiply by this (bytes -> MB)
    bounds: tuple[float, float] | None = None  # the figure's range (shares: 0 to 1); intervals are clipped to it
    # why no paired comparison gives a verdict on it: no run has yet been shown to move it (a positive control), so
    # a difference on it would be read off a figure with no shown range ("": it has one)
    unvalidated: str = ""

    def format(self, value) -> str:
        return self.fmt.format(value)

    def shown_in(self, view: str) -> bool:
        return view in self.views.split()

    @property
    def has_interval(self) -> bool:
        return self.interval != "none"

    @property
    def per_image(self) -> bool:
        """Whether it has values of its own per image (else it is built from another metric's, or given)."""
        return self.reads is not None

    @property
    def row_kind(self) -> str:
        """Whether its session rows are per concept, per class of the concepts, or per untouched class (the `kind`
        column of sessions/session_XX.csv)."""
        if self.reads in (Kind.UNTOUCHED, Kind.BASE_UNTOUCHED):
            return "untouched"
        return "class" if self.reads in CLASS_KINDS else "concept"

    @property
    def source(self) -> str:
        """The metric whose per-image values it reads: itself, or `of`."""
        return self.of or self.name

    def values(self, scores: pd.DataFrame) -> pd.DataFrame:
        """Its per-image values in `scores`: one row per image (name, prompt, seed, value), NaN dropped."""
        rows = scores[scores.kind == self.reads]
        if self.against is not None:
            other = scores[scores.kind == self.against]
            rows = rows.merge(other, on=["session", *IMAGE_KEYS], suffixes=("", "_other"))
        value = rows[self.score] if isinstance(self.score, str) else self.score(rows)
        out = rows[["session", *IMAGE_KEYS]].assign(value=np.asarray(value, dtype=float))
        return out[out.value.notna()]

    def interval_of(self, values: np.ndarray, n_boot: int) -> tuple[float, float, float]:
        """The mean of per-image values with this metric's interval within a run."""
        if self.interval == "proportion":
            return F.wilson_interval(values)
        if self.interval == "excess":
            return F.excess_interval(values)
        return F.bootstrap_ci(values, n_boot)


IMAGE_KEYS = ["name", "prompt", "seed"]  # what pairs an image of one run with the same image of another


def _gap(rows: pd.DataFrame):
    return rows.ia_shots - rows.ia


def _clip_score(rows: pd.DataFrame):
    return F.clip_score(rows.ta.to_numpy())


def _class_ta_drop(rows: pd.DataFrame):
    return rows.ta_other - rows.ta  # the base model's image (other) minus the current model's


def _copy_excess(rows: pd.DataFrame):
    return rows.nuisance_copy - rows.copy_null  # a copy (0/1) minus the chance a fresh render of the prompt is one


def _layout_copy_excess(rows: pd.DataFrame):
    return rows.layout_copy - rows.layout_null


def _recognised_share(rows: pd.DataFrame) -> pd.Series:
    """Per two-concept image, the share of its two concepts recognised (0, 1/2 or 1): the mean of its two records'
    `recognised`, in its first concept's record (where `both_recognised` is), so that each image counts once."""
    share = rows.groupby(["session", "prompt", "seed"]).recognised.transform("mean")
    return share.where(rows.both_recognised.notna())


def _novel_ia(rows: pd.DataFrame):
    return rows.ia.where((rows.complies == 1) & (rows.nuisance_copy == 0))  # NaN elsewhere: not averaged


def _gain_over_control(rows: pd.DataFrame):
    return rows.ia - rows.ia_other  # the method's image minus the control's (same context and noise)


def _concepts_above_base(at_learning: AtLearning) -> int:
    ia, base = at_learning("IA"), at_learning("IA_base_class_prompt")
    return int(sum(ia[c].mean() > base[c].mean() for c in ia if c in base))


def _concepts(at_learning: AtLearning) -> int:
    return len(at_learning("IA"))


CONCEPT, CLASS, CONTROL, MULTI = Kind.CONCEPT, Kind.CLASS, Kind.CONTROL, Kind.MULTI
METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        # ---- learned concepts (per concept, after every session)
        Metric(
            name="TA",
            bounds=COSINE,
            short="TA",
            axis="TA (cosine, image vs prompt)",
            title="Text alignment of learned concepts",
            higher_is_better=True,
            definition="mean cos(E_i(x), E_t(p~)) over a concept's images, p~ = the prompt without the modifier token",
            views="session summary curve headline cli sweep scale pairs",
            reads=CONCEPT,
            score="ta",
        ),
        Metric(
            name="CLIPScore",
            bounds=CLIP_SCORE,
            short="CLIPScore",
            axis="CLIPScore (2.5 x max(cos, 0))",
            title="CLIPScore of learned concepts",
            higher_is_better=True,
            definition="2.5 * max(TA cosine, 0) per image, the scale CustomConcept101's numbers use",
            views="session summary cli",
            reads=CONCEPT,
            score=_clip_score,
        ),
        Metric(
            name="IA",
            bounds=COSINE,
            short="IA",
            axis="IA (cosine, image vs held-out views)",
            title="Image alignment of learned concepts (held-out references)",
            higher_is_better=True,
            definition="mean cos(E_i(x), E_i(r)) over a concept's images x and its held-out reference images r "
            "(all pairs); no method sees the references",
            views="session summary curve headline cli sweep scale pairs",
            reads=CONCEPT,
            score="ia",
        ),
        Metric(
            name="IA_shots",
            bounds=COSINE,
            short="IA_shots",
            axis="IA against the training shots",
            title="Image alignment against the training shots",
            higher_is_better=None,
            definition="IA against the concept's training shots instead of held-out views: the figure "
            "CustomConcept101's evaluation reports; rewards copying the shots",
            views="session summary curve headline cli",
            reads=CONCEPT,
            score="ia_shots",
        ),
        Metric(
            name="memorization_gap",
            bounds=COSINE_DIFFERENCE,
            short="memorization gap",
            axis="IA_shots - IA (held-out)",
            title="Memorization gap",
            higher_is_better=False,
            definition="IA_shots - IA per image, averaged: about 0 for a model that learned the concept, large for "
            "one that reproduces its shots",
            views="session summary curve headline cli sweep pairs",
            reads=CONCEPT,
            score=_gap,
            unvalidated="on the toy world it is 0.005 even for a method that returns its shots",
        ),
        Metric(
            name="copy_rate",
            short="copy rate",
            axis="share of images that copy a shot",
            title="Copy rate (pixel space)",
            higher_is_better=False,
            definition="share of a concept's images whose RMS pixel distance to the nearest training shot is below "
            "the 5th percentile of its held-out references' own distance (unseen views: 0.05)",
            views="session summary curve headline cli sweep pairs",
            reads=CONCEPT,
            score="copied",
            interval="proportion",
            bounds=SHARE,
        ),
        Metric(
            name="confusion_rate",
            short="confusion",
            axis="share of images shown as another concept",
            title="Concept confusion",
            higher_is_better=False,
            definition="share of a concept's images that show another learned concept: nearer its held-out "
            "references than the asked concept's, and nearer them than 95% of the base model's images of its class",
            views="session summary curve headline cli pairs",
            reads=CONCEPT,
            score="confused",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="copy_rate_relative",
            short="copy rate (relative)",
            axis="share of images that copy a shot (relative distance)",
            title="Copy rate (relative pixel distance)",
            higher_is_better=False,
            definition="share of a concept's images whose distance to the nearest training shot over the mean "
            "distance to its 3 nearest shots (Carlini et al. 2023) is below the 5th percentile of its held-out "
            "references' own (unseen views: 0.05); needs at least 2 shots",
            views="session summary curve headline cli pairs",
            reads=CONCEPT,
            score="relative_copy",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="copy_rate_dino",
            short="copy rate (DINO)",
            axis="share of images that copy a shot (DINO)",
            title="Copy rate (DINO similarity)",
            higher_is_better=False,
            definition="share of a concept's images whose DINO cosine to the nearest training shot is above the 95th "
            "percentile of its held-out references' own (unseen views: 0.05); with a DINO model",
            views="session summary curve headline cli pairs",
            reads=CONCEPT,
            score="dino_copy",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        # ---- the toy world's attribute oracle (lfsbench/toy/copying.py): what a copy cannot fake
        Metric(
            name="compliance",
            short="compliance",
            axis="share of images that show what the prompt asks",
            title="Prompt compliance (toy oracle)",
            higher_is_better=True,
            definition="share of a concept's images in which the toy oracle reads the prompt's class and, where the "
            "prompt names one, its background; toy world only",
            views="session summary curve headline cli pairs",
            reads=CONCEPT,
            score="complies",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="nuisance_copy_rate",
            short="copy rate (oracle)",
            axis="share of images that repeat a shot's view",
            title="Copy rate (toy oracle: background, position, size, rotation)",
            higher_is_better=False,
            definition="share of a concept's images whose background, centre, radius and rotation, as the toy oracle "
            "reads them, all match one training shot's within the stated tolerances; toy world only",
            views="session summary cli",
            reads=CONCEPT,
            score="nuisance_copy",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="copy_null",
            bounds=SHARE,
            short="copy null",
            axis="copy rate of fresh renders",
            title="Copy rate's null (fresh renders of the same prompts)",
            higher_is_better=None,
            definition="the probability that a fresh render of the concept under the same prompt matches a shot as "
            "nuisance_copy_rate counts (what a perfect generator of new views scores); toy world only",
            views="session summary cli",
            reads=CONCEPT,
            score="copy_null",
            interval="none",
            optional=True,
        ),
        Metric(
            name="copy_excess",
            short="copy excess",
            axis="copy rate minus its null",
            title="Copy excess (toy oracle)",
            higher_is_better=False,
            definition="nuisance_copy_rate minus copy_null: the share of images that repeat a shot beyond what new "
            "views do by chance (0: no copying); toy world only",
            views="session summary curve headline cli pairs",
            reads=CONCEPT,
            score=_copy_excess,
            interval="excess",
            optional=True,
            bounds=EXCESS,
        ),
        Metric(
            name="layout_copy_rate",
            short="layout copy rate",
            axis="share of images that repeat a shot's layout",
            title="Layout copy rate (toy oracle: background and position)",
            higher_is_better=False,
            definition="share of a concept's images whose background and centre match one training shot's; toy "
            "world only",
            views="session summary cli",
            reads=CONCEPT,
            score="layout_copy",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="layout_copy_excess",
            short="layout copy excess",
            axis="layout copy rate minus its null",
            title="Layout copy excess (toy oracle)",
            higher_is_better=False,
            definition="layout_copy_rate minus the same rate for fresh renders of the same prompts; toy world only",
            views="session summary cli",
            reads=CONCEPT,
            score=_layout_copy_excess,
            interval="excess",
            optional=True,
            bounds=EXCESS,
        ),
        Metric(
            name="novel_IA",
            bounds=COSINE,
            short="novel IA",
            axis="IA of images that comply and do not copy",
            title="Novel-view image alignment (toy oracle)",
            higher_is_better=True,
            definition="IA over the images that comply with their prompt and copy no shot: what learning, not "
            "copying, earns; toy world only",
            views="session summary curve headline cli",
            reads=CONCEPT,
            score=_novel_ia,
            optional=True,
        ),
        Metric(
            name="IAD",
            bounds=COSINE_DIFFERENCE,
            short="IAD",
            axis="IAD (drop of IA since learned)",
            title="Forgetting (IAD) of earlier concepts",
            higher_is_better=False,
            definition="mean over earlier concepts of IA[s(c)][c] - IA[T][c] (Avalanche), IA against held-out views",
            views="session summary curve headline cli sweep scale pairs",
            aggregate="drop",
            of="IA",
        ),
        Metric(
            name="IAD_shots",
            bounds=COSINE_DIFFERENCE,
            short="IAD_shots",
            axis="IAD against the training shots",
            title="Forgetting measured against the shots",
            higher_is_better=False,
            definition="IAD computed from IA_shots (the CustomConcept101-compatible figure)",
            views="session summary plain cli",
            aggregate="drop",
            of="IA_shots",
        ),
        Metric(
            name="IA_dino",
            bounds=COSINE,
            short="IA_dino",
            axis="IA_dino (DINO cosine, held-out views)",
            title="DINO image alignment (held-out references)",
            higher_is_better=True,
            definition="IA with DINO ViT-S/16 class-token embeddings instead of the evaluator's (all pairs with the "
            "held-out references); only where the protocol names a DINO model (none on the toy world)",
            views="session summary curve headline cli pairs",
            reads=CONCEPT,
            score="ia_dino",
            optional=True,
        ),
        Metric(
            name="IA_dino_shots",
            bounds=COSINE,
            short="IA_dino_shots",
            axis="IA_dino against the training shots",
            title="DINO image alignment against the training shots",
            higher_is_better=None,
            definition="IA_dino against the training shots: CustomConcept101's 'DINO image alignment' column",
            views="session summary cli",
            reads=CONCEPT,
            score="ia_dino_shots",
            optional=True,
        ),
        Metric(
            name="IAD_dino",
            bounds=COSINE_DIFFERENCE,
            short="IAD_dino",
            axis="IAD from IA_dino",
            title="Forgetting measured with DINO",
            higher_is_better=False,
            definition="IAD computed from IA_dino (held-out references)",
            views="session summary cli",
            aggregate="drop",
            of="IA_dino",
            optional=True,
        ),
        Metric(
            name="multi_TA",
            bounds=COSINE,
            short="multi TA",
            axis="TA of two-concept images",
            title="Text alignment of two-concept prompts",
            higher_is_better=True,
            definition="TA of images of prompts that name two learned concepts (modifier tokens removed); only where "
            "the protocol has multi_concept pairs",
            views="session summary curve cli",
            reads=MULTI,
            score="ta",
            optional=True,
        ),
        Metric(
            name="multi_IA",
            bounds=COSINE,
            short="multi IA",
            axis="IA of two-concept images",
            title="Image alignment of two-concept images",
            higher_is_better=True,
            definition="IA of each two-concept image against each of its two concepts' held-out references, averaged "
            "(the published multi-concept image alignment, held out)",
            views="session summary curve cli",
            reads=MULTI,
            score="ia",
            optional=True,
        ),
        Metric(
            name="multi_IA_dino",
            bounds=COSINE,
            short="multi IA_dino",
            axis="IA_dino of two-concept images",
            title="DINO image alignment of two-concept images",
            higher_is_better=True,
            definition="multi_IA with DINO embeddings (where the protocol names a DINO model)",
            views="session summary cli",
            reads=MULTI,
            score="ia_dino",
            optional=True,
        ),
        # ---- composition on the toy world, read by its oracle (lfsbench/toy/composition.py)
        Metric(
            name="multi_compliance",
            short="multi compliance",
            axis="share of two-concept images with both classes as asked",
            title="Two-concept prompt compliance (toy oracle)",
            higher_is_better=True,
            definition="share of two-concept images in which the toy oracle reads exactly two clean objects, of the "
            "two classes the prompt names, and, where it names one, its background; toy world only",
            views="summary curve cli",
            reads=MULTI,
            score="complies",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="multi_recognised",
            short="multi recognised",
            axis="share of the two concepts recognised",
            title="Each concept recognised in two-concept images (toy oracle)",
            higher_is_better=True,
            definition="per two-concept image, the share of its two concepts that the toy oracle reads as one of "
            "the objects (class and two-tone pattern), averaged over images; toy world only",
            views="summary curve cli",
            reads=MULTI,
            score=_recognised_share,
            # a Wilson interval on the summed shares over the images: conservative for values in [0, 1], and never
            # zero-width where every image has the same share (the ceilings: 1 and 1/2 at every image)
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="multi_both",
            short="multi both",
            axis="share of two-concept images showing both",
            title="Both concepts recognised in two-concept images (toy oracle)",
            higher_is_better=True,
            definition="share of two-concept images in which the toy oracle reads both concepts, in two different "
            "objects; toy world only",
            views="summary curve headline cli",
            reads=MULTI,
            score="both_recognised",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="forgetting_max",
            bounds=COSINE_DIFFERENCE,
            short="forgetting (max)",
            axis="max-based forgetting",
            title="Forgetting (max-based)",
            higher_is_better=False,
            definition="max over u of IA[u][c] - IA[T][c] (Mammoth), u from s(c) to T-1 among the sessions after "
            "which c was evaluated (all of them unless the protocol has evaluation checkpoints)",
            views="session summary plain cli",
            aggregate="peak_drop",
            of="IA",
        ),
        Metric(
            name="IA_right_after_learning",
            bounds=COSINE,
            short="IA right after",
            axis="IA right after learning",
            title="IA right after learning",
            higher_is_better=True,
            definition="mean over concepts of IA[s(c)][c], the IA a concept reaches in the session that teaches it",
            views="summary plain cli pairs",
            aggregate="at_learning",
            of="IA",
        ),
        Metric(
            name="IA_base_class_prompt",
            bounds=COSINE,
            short="IA base class prompt",
            axis="IA of the base model's class prompt",
            title="Base model's class prompt vs the concept",
            higher_is_better=None,
            definition="IA of the base model's bare class-prompt images against a concept's held-out references: "
            "the bar learning must clear",
            views="session summary plain cli",
            reads=Kind.BASE_CLASS_FOR_CONCEPT,
            score="ia",
            aggregate="at_learning",
            interval="none",
        ),
        Metric(
            name="IA_class_prompt",
            bounds=COSINE,
            short="IA class prompt",
            axis="IA of the current class prompt",
            title="Class prompt vs the concept",
            higher_is_better=None,
            definition="IA of the current model's class-prompt images against a concept's held-out references (high "
            "when it leaks into its class)",
            views="session",
            reads=Kind.CLASS_FOR_CONCEPT,
            score="ia",
        ),
        Metric(
            name="IA_class_prompt_right_after_learning",
            bounds=COSINE,
            short="IA class prompt right after",
            axis="IA of the class prompt right after",
            title="Class prompt right after learning",
            higher_is_better=None,
            definition="mean over concepts of IA_class_prompt in the session that teaches the concept",
            views="summary",
            aggregate="at_learning",
            of="IA_class_prompt",
            interval="none",
        ),
        Metric(
            name="concepts_above_base_class_prompt_right_after_learning",
            short="concepts learned",
            axis="concepts",
            title="Concepts learned",
            higher_is_better=True,
            definition="concepts whose IA right after learning exceeds their base class prompt's IA",
            views="summary cli",
            aggregate="count",
            count=_concepts_above_base,
            interval="none",
            fmt="{:.0f}",
        ),
        Metric(
            name="concepts",
            short="concepts",
            axis="concepts",
            title="Concepts",
            higher_is_better=None,
            definition="concepts learned by the last session",
            views="summary",
            aggregate="count",
            count=_concepts,
            interval="none",
            fmt="{:.0f}",
        ),
        # ---- classes of the learned concepts (relevant concepts forgetting)
        Metric(
            name="class_TA",
            bounds=COSINE,
            short="class_TA",
            axis="class TA (cosine)",
            title="Class prompts: text alignment",
            higher_is_better=True,
            definition="TA of the class prompts (the evaluation prompts without the modifier token)",
            views="session summary curve headline cli",
            reads=CLASS,
            score="ta",
        ),
        Metric(
            name="class_TA_base",
            bounds=COSINE,
            short="class_TA base",
            axis="class TA of the base model",
            title="Class prompts: text alignment of the base model",
            higher_is_better=None,
            definition="class TA of the base model (same class prompts and seeds): class_TA_drop's reference",
            views="session summary plain cli",
            reads=Kind.BASE_CLASS,
            score="ta",
        ),
        Metric(
            name="class_TA_drop",
            bounds=COSINE_DIFFERENCE,
            short="class_TA drop",
            axis="class TA drop (base - now)",
            title="Class prompts: TA lost since the base model",
            higher_is_better=False,
            definition="base model's class TA minus the current model's, paired by class, prompt and seed",
            views="session summary curve headline cli sweep pairs",
            reads=CLASS,
            against=Kind.BASE_CLASS,
            score=_class_ta_drop,
        ),
        Metric(
            name="class_accuracy",
            short="class acc.",
            axis="class-prompt images classified as the class",
            title="Class prompts: zero-shot class accuracy",
            higher_is_better=True,
            definition="share of class-prompt images the evaluator classifies (zero-shot, nearest class text) as the "
            "asked class; toy: among its five shape classes, elsewhere among the protocol's classes",
            views="session summary curve headline cli pairs",
            reads=CLASS,
            score="class_correct",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="class_accuracy_base",
            bounds=SHARE,
            short="class acc. base",
            axis="class accuracy of the base model",
            title="Class prompts: zero-shot class accuracy of the base model",
            higher_is_better=None,
            definition="class accuracy of the base model's images of the same class prompts and seeds",
            views="session summary plain cli",
            reads=Kind.BASE_CLASS,
            score="class_correct",
            optional=True,
        ),
        Metric(
            name="drift",
            bounds=COSINE_DISTANCE,
            short="drift",
            axis="class drift (1 - cosine to base)",
            title="Class prompts: how far same-seed samples moved from the base model's",
            higher_is_better=False,
            definition="1 - mean paired cos(E_i(x_t), E_i(x_base)) over class-prompt images (same prompt and seed): "
            "how far same-seed samples moved from the base model's, read against the seed scale; not whether the "
            "class survived (class_accuracy, class_TA_drop)",
            views="session summary curve headline cli sweep scale pairs",
            reads=CLASS,
            score="drift",
        ),
        Metric(
            name="untouched_class_accuracy",
            short="untouched acc.",
            axis="untouched-class images classified as the class",
            title="Untouched classes: zero-shot class accuracy",
            higher_is_better=True,
            definition="class accuracy of the images of classes no concept belongs to (evaluation.untouched_classes): "
            "does the model still draw what no session touched?",
            views="session summary curve headline cli pairs",
            reads=Kind.UNTOUCHED,
            score="class_correct",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="untouched_class_accuracy_base",
            bounds=SHARE,
            short="untouched acc. base",
            axis="untouched class accuracy of the base model",
            title="Untouched classes: zero-shot class accuracy of the base model",
            higher_is_better=None,
            definition="class accuracy of the base model's images of the same untouched-class prompts and seeds",
            views="session summary plain cli",
            reads=Kind.BASE_UNTOUCHED,
            score="class_correct",
            optional=True,
        ),
        Metric(
            name="untouched_TA_drop",
            bounds=COSINE_DIFFERENCE,
            short="untouched TA drop",
            axis="untouched-class TA drop (base - now)",
            title="Untouched classes: TA lost since the base model",
            higher_is_better=False,
            definition="base model's TA on untouched-class prompts minus the current model's, paired by prompt and "
            "seed (the real-data figure of untouched knowledge)",
            views="session summary curve cli pairs",
            reads=Kind.UNTOUCHED,
            against=Kind.BASE_UNTOUCHED,
            score=_class_ta_drop,
            optional=True,
        ),
        Metric(
            name="untouched_drift",
            bounds=COSINE_DISTANCE,
            short="untouched drift",
            axis="untouched-class drift (1 - cosine to base)",
            title="Untouched classes: how far same-seed samples moved from the base model's",
            higher_is_better=False,
            definition="drift of the untouched classes' images (same prompt and seed as the base model's)",
            views="session summary curve cli pairs",
            reads=Kind.UNTOUCHED,
            score="drift",
            optional=True,
        ),
        Metric(
            name="drift_seed_scale",
            bounds=COSINE_DISTANCE,
            short="drift scale",
            axis="drift between two seeds",
            title="Drift scale",
            higher_is_better=None,
            definition="the drift between two seeds of the same class prompt on the base model: drift's reference",
            views="summary plain cli",
            aggregate="given",
            interval="none",
        ),
        # ---- in-context control (methods that generate from stored context)
        Metric(
            name="IA_control",
            bounds=COSINE,
            short="IA_control",
            axis="IA of the in-context control",
            title="Base model from the same contexts",
            higher_is_better=None,
            definition="IA of the base model generating from the method's stored contexts, strength and seeds",
            views="session summary curve headline cli",
            reads=CONTROL,
            score="ia",
            optional=True,
        ),
        Metric(
            name="TA_control",
            bounds=COSINE,
            short="TA_control",
            axis="TA of the in-context control",
            title="Base model from the same contexts: TA",
            higher_is_better=None,
            definition="TA of the base model generating from the method's stored contexts, strength and seeds",
            views="session summary cli",
            reads=CONTROL,
            score="ta",
            optional=True,
        ),
        Metric(
            name="copy_rate_control",
            bounds=SHARE,
            short="copy rate control",
            axis="copy rate of the in-context control",
            title="Base model from the same contexts: copy rate",
            higher_is_better=None,
            definition="copy rate of the base model generating from the method's stored contexts",
            views="session summary cli",
            reads=CONTROL,
            score="copied",
            optional=True,
        ),
        Metric(
            name="compliance_control",
            short="compliance control",
            axis="compliance of the control",
            title="Prompt compliance of the in-context control (toy oracle)",
            higher_is_better=None,
            definition="compliance of the base model's images from the method's stored contexts; toy world only",
            views="session summary cli",
            reads=CONTROL,
            score="complies",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="copy_excess_control",
            short="copy excess control",
            axis="copy excess of the control",
            title="Copy excess of the in-context control (toy oracle)",
            higher_is_better=None,
            definition="copy_excess of the base model's images from the method's stored contexts; toy world only",
            views="session summary cli",
            reads=CONTROL,
            score=_copy_excess,
            interval="excess",
            optional=True,
            bounds=EXCESS,
        ),
        Metric(
            name="layout_copy_rate_control",
            short="layout copy rate control",
            axis="layout copy rate of the control",
            title="Layout copy rate of the in-context control (toy oracle)",
            higher_is_better=None,
            definition="layout_copy_rate of the base model's images from the method's stored contexts; toy world only",
            views="session summary cli",
            reads=CONTROL,
            score="layout_copy",
            interval="proportion",
            optional=True,
            bounds=SHARE,
        ),
        Metric(
            name="IA_gain_over_control",
            bounds=COSINE_DIFFERENCE,
            short="IA_gain_over_control",
            axis="IA gain over the in-context control",
            title="IA gain over the in-context control",
            higher_is_better=True,
            definition="IA of the method minus IA of the base model from the same contexts, paired by prompt and seed",
            views="summary headline cli sweep",
            reads=CONCEPT,
            against=CONTROL,
            score=_gain_over_control,
            optional=True,
        ),
        # ---- cost (per session in cost.csv; summary.json's cost block)
        Metric(
            name="train_s",
            short="train s",
            axis="seconds",
            title="Training time of session t",
            higher_is_better=False,
            definition="wall seconds of the session's training",
            views="cost",
            interval="none",
            fmt="{:.1f}",
        ),
        Metric(
            name="generate_s",
            short="generate s",
            axis="seconds",
            title="Generation for a full evaluation after session t",
            higher_is_better=False,
            definition="wall seconds of the session's evaluation images",
            views="cost",
            interval="none",
            fmt="{:.0f}",
        ),
        Metric(
            name="train_seconds_per_session",
            short="train s/session",
            axis="seconds",
            title="Training time per session",
            higher_is_better=False,
            definition="mean wall seconds of training per session",
            views="plain cli",
            interval="none",
            fmt="{:.1f}",
        ),
        Metric(
            name="generate_seconds_total",
            short="generate s",
            axis="seconds",
            title="Generation time of the run",
            higher_is_better=False,
            definition="wall seconds of generating every evaluation image of the run",
            views="plain",
            interval="none",
            fmt="{:.0f}",
        ),
        Metric(
            name="stored_bytes",
            short="stored bytes",
            axis="MB",
            title="Data kept between sessions (shots, latents)",
            higher_is_better=False,
            definition="bytes of data (images, latents) the method keeps between sessions; what it is: `keeps`",
            views="cost plain",
            interval="none",
            fmt="{:,.0f}",
            scale=1e-6,
        ),
        Metric(
            name="peak_memory_mb",
            short="peak MB",
            axis="MB (RSS on CPU, allocated on GPU)",
            title="Peak memory during session t",
            higher_is_better=False,
            definition="peak memory of a session (RSS on CPU, allocated on GPU); of a run: its largest session's",
            views="cost plain",
            interval="none",
            fmt="{:.0f}",
        ),
    ]
}

COST_FIGURES = [
    "train_seconds_per_session",
    "generate_seconds_total",
    "peak_memory_mb",
    "trainable_parameters",
    "delta_bytes",
    "stored_bytes",
]  # summary.json's cost block (means over seeds in reports)


def in_view(view: str) -> list[str]:
    """Names of the metrics shown in a view, in table order."""
    return [name for name, m in METRICS.items() if m.shown_in(view)]


def register(metric: Metric) -> Metric:
    """Add a metric to the table (from a plugin or a test); every view that lists it computes and shows it."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is registered twice")
    if metric.aggregate == "mean" and metric.reads is None:
        raise ValueError(f"metric {metric.name!r} averages per-image values: give it `reads` and `score`")
    if metric.aggregate in ("drop", "peak_drop") and metric.of not in METRICS:
        raise ValueError(f"metric {metric.name!r}: `of` must name a registered per-image metric")
    METRICS[metric.name] = metric
    return metric
