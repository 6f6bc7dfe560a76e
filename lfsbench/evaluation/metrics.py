"""THE table of the benchmark's metrics: one entry per reported figure, read by everything that shows one.

Scoring (session rows), the run summary, report tables and plots, `lfsbench check` and `lfsbench run`'s closing
table take names, labels, directions and definitions from here; none of them spells a metric's name or label
itself. `docs/metrics.md` explains each in full. Where a metric is shown is a set of views:

    session   a row metric of sessions/session_XX.csv (per concept or class, with its interval)
    summary   a key of summary.json with {value, ci_low, ci_high} (interval=True) or a plain number
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

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str  # as it appears in CSVs, summary.json and thresholds files
    short: str  # table column header
    axis: str  # plot axis label
    title: str  # plot title
    higher_is_better: bool | None  # None: neither (a scale, a count)
    definition: str  # one line; docs/metrics.md has the full text
    views: str = ""  # space-separated views (see the module docstring)
    interval: bool = True  # reported with a 95% interval
    fmt: str = "{:.3f}"
    scale: float = 1.0  # plots multiply by this (bytes -> MB)
    bounds: tuple[float, float] | None = None  # the figure's range (shares: 0 to 1); intervals are clipped to it

    def format(self, value) -> str:
        return self.fmt.format(value)

    def shown_in(self, view: str) -> bool:
        return view in self.views.split()


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        # ---- learned concepts (per concept, after every session)
        Metric(
            name="TA",
            short="TA",
            axis="TA (cosine, image vs prompt)",
            title="Text alignment of learned concepts",
            higher_is_better=True,
            definition="mean cos(E_i(x), E_t(p~)) over a concept's images, p~ = the prompt without the modifier token",
            views="session summary curve headline cli sweep scale pairs",
        ),
        Metric(
            name="CLIPScore",
            short="CLIPScore",
            axis="CLIPScore (2.5 x max(cos, 0))",
            title="CLIPScore of learned concepts",
            higher_is_better=True,
            definition="2.5 * max(TA cosine, 0) per image, the scale CustomConcept101's numbers use",
            views="session summary cli",
        ),
        Metric(
            name="IA",
            short="IA",
            axis="IA (cosine, image vs held-out views)",
            title="Image alignment of learned concepts (held-out references)",
            higher_is_better=True,
            definition="mean cos(E_i(x), E_i(r)) over a concept's images x and its held-out reference images r "
            "(all pairs); no method sees the references",
            views="session summary curve headline cli sweep scale pairs",
        ),
        Metric(
            name="IA_shots",
            short="IA_shots",
            axis="IA against the training shots",
            title="Image alignment against the training shots",
            higher_is_better=None,
            definition="IA against the concept's training shots instead of held-out views: the figure "
            "CustomConcept101's evaluation reports; rewards copying the shots",
            views="session summary curve headline cli",
        ),
        Metric(
            name="memorization_gap",
            short="memorization gap",
            axis="IA_shots - IA (held-out)",
            title="Memorization gap",
            higher_is_better=False,
            definition="IA_shots - IA per image, averaged: about 0 for a model that learned the concept, large for "
            "one that reproduces its shots",
            views="session summary curve headline cli sweep pairs",
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
            bounds=(0.0, 1.0),
        ),
        Metric(
            name="IAD",
            short="IAD",
            axis="IAD (drop of IA since learned)",
            title="Forgetting (IAD) of earlier concepts",
            higher_is_better=False,
            definition="mean over earlier concepts of IA[s(c)][c] - IA[T][c] (Avalanche), IA against held-out views",
            views="session summary curve headline cli sweep scale pairs",
        ),
        Metric(
            name="IAD_shots",
            short="IAD_shots",
            axis="IAD against the training shots",
            title="Forgetting measured against the shots",
            higher_is_better=False,
            definition="IAD computed from IA_shots (the CustomConcept101-compatible figure)",
            views="session summary plain cli",
        ),
        Metric(
            name="IA_dino",
            short="IA_dino",
            axis="IA_dino (DINO cosine, held-out views)",
            title="DINO image alignment (held-out references)",
            higher_is_better=True,
            definition="IA with DINO ViT-S/16 class-token embeddings instead of the evaluator's (all pairs with the "
            "held-out references); only where the protocol names a DINO model (none on the toy world)",
            views="session summary curve headline cli pairs",
        ),
        Metric(
            name="IA_dino_shots",
            short="IA_dino_shots",
            axis="IA_dino against the training shots",
            title="DINO image alignment against the training shots",
            higher_is_better=None,
            definition="IA_dino against the training shots: CustomConcept101's 'DINO image alignment' column",
            views="session summary cli",
        ),
        Metric(
            name="IAD_dino",
            short="IAD_dino",
            axis="IAD from IA_dino",
            title="Forgetting measured with DINO",
            higher_is_better=False,
            definition="IAD computed from IA_dino (held-out references)",
            views="session summary cli",
        ),
        Metric(
            name="multi_TA",
            short="multi TA",
            axis="TA of two-concept images",
            title="Text alignment of two-concept prompts",
            higher_is_better=True,
            definition="TA of images of prompts that name two learned concepts (modifier tokens removed); only where "
            "the protocol has multi_concept pairs",
            views="session summary curve cli",
        ),
        Metric(
            name="multi_IA",
            short="multi IA",
            axis="IA of two-concept images",
            title="Image alignment of two-concept images",
            higher_is_better=True,
            definition="IA of each two-concept image against each of its two concepts' held-out references, averaged "
            "(the published multi-concept image alignment, held out)",
            views="session summary curve cli",
        ),
        Metric(
            name="multi_IA_dino",
            short="multi IA_dino",
            axis="IA_dino of two-concept images",
            title="DINO image alignment of two-concept images",
            higher_is_better=True,
            definition="multi_IA with DINO embeddings (where the protocol names a DINO model)",
            views="session summary cli",
        ),
        Metric(
            name="forgetting_max",
            short="forgetting (max)",
            axis="max-based forgetting",
            title="Forgetting (max-based)",
            higher_is_better=False,
            definition="max over u of IA[u][c] - IA[T][c] (Mammoth), u from s(c) to T-1 among the sessions after "
            "which c was evaluated (all of them unless the protocol has evaluation checkpoints)",
            views="session summary plain cli",
        ),
        Metric(
            name="IA_right_after_learning",
            short="IA right after",
            axis="IA right after learning",
            title="IA right after learning",
            higher_is_better=True,
            definition="mean over concepts of IA[s(c)][c], the IA a concept reaches in the session that teaches it",
            views="summary plain cli",
        ),
        Metric(
            name="IA_base_class_prompt",
            short="IA base class prompt",
            axis="IA of the base model's class prompt",
            title="Base model's class prompt vs the concept",
            higher_is_better=None,
            definition="IA of the base model's bare class-prompt images against a concept's held-out references: "
            "the bar learning must clear",
            views="session summary plain cli",
            interval=False,
        ),
        Metric(
            name="IA_class_prompt",
            short="IA class prompt",
            axis="IA of the current class prompt",
            title="Class prompt vs the concept",
            higher_is_better=None,
            definition="IA of the current model's class-prompt images against a concept's held-out references (high "
            "when it leaks into its class)",
            views="session",
        ),
        Metric(
            name="IA_class_prompt_right_after_learning",
            short="IA class prompt right after",
            axis="IA of the class prompt right after",
            title="Class prompt right after learning",
            higher_is_better=None,
            definition="mean over concepts of IA_class_prompt in the session that teaches the concept",
            views="summary",
            interval=False,
        ),
        Metric(
            name="concepts_above_base_class_prompt_right_after_learning",
            short="concepts learned",
            axis="concepts",
            title="Concepts learned",
            higher_is_better=True,
            definition="concepts whose IA right after learning exceeds their base class prompt's IA",
            views="summary cli",
            interval=False,
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
            interval=False,
            fmt="{:.0f}",
        ),
        # ---- classes of the learned concepts (relevant concepts forgetting)
        Metric(
            name="class_TA",
            short="class_TA",
            axis="class TA (cosine)",
            title="Class prompts: text alignment",
            higher_is_better=True,
            definition="TA of the class prompts (the evaluation prompts without the modifier token)",
            views="session summary curve headline cli",
        ),
        Metric(
            name="class_TA_base",
            short="class_TA base",
            axis="class TA of the base model",
            title="Class prompts: text alignment of the base model",
            higher_is_better=None,
            definition="class TA of the base model (same class prompts and seeds): class_TA_drop's reference",
            views="session summary plain cli",
        ),
        Metric(
            name="class_TA_drop",
            short="class_TA drop",
            axis="class TA drop (base - now)",
            title="Class prompts: TA lost since the base model",
            higher_is_better=False,
            definition="base model's class TA minus the current model's, paired by class, prompt and seed",
            views="session summary curve headline cli sweep pairs",
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
            bounds=(0.0, 1.0),
        ),
        Metric(
            name="class_accuracy_base",
            short="class acc. base",
            axis="class accuracy of the base model",
            title="Class prompts: zero-shot class accuracy of the base model",
            higher_is_better=None,
            definition="class accuracy of the base model's images of the same class prompts and seeds",
            views="session summary plain cli",
        ),
        Metric(
            name="drift",
            short="drift",
            axis="class drift (1 - cosine to base)",
            title="Class prompts: how far same-seed samples moved from the base model's",
            higher_is_better=False,
            definition="1 - mean paired cos(E_i(x_t), E_i(x_base)) over class-prompt images (same prompt and seed): "
            "how far same-seed samples moved from the base model's, read against the seed scale; not whether the "
            "class survived (class_accuracy, class_TA_drop)",
            views="session summary curve headline cli sweep scale pairs",
        ),
        Metric(
            name="drift_seed_scale",
            short="drift scale",
            axis="drift between two seeds",
            title="Drift scale",
            higher_is_better=None,
            definition="the drift between two seeds of the same class prompt on the base model: drift's reference",
            views="summary plain cli",
            interval=False,
        ),
        # ---- in-context control (methods that generate from stored context)
        Metric(
            name="IA_control",
            short="IA_control",
            axis="IA of the in-context control",
            title="Base model from the same contexts",
            higher_is_better=None,
            definition="IA of the base model generating from the method's stored contexts, strength and seeds",
            views="session summary curve headline cli",
        ),
        Metric(
            name="TA_control",
            short="TA_control",
            axis="TA of the in-context control",
            title="Base model from the same contexts: TA",
            higher_is_better=None,
            definition="TA of the base model generating from the method's stored contexts, strength and seeds",
            views="session summary cli",
        ),
        Metric(
            name="copy_rate_control",
            short="copy rate control",
            axis="copy rate of the in-context control",
            title="Base model from the same contexts: copy rate",
            higher_is_better=None,
            definition="copy rate of the base model generating from the method's stored contexts",
            views="session summary cli",
        ),
        Metric(
            name="IA_gain_over_control",
            short="IA_gain_over_control",
            axis="IA gain over the in-context control",
            title="IA gain over the in-context control",
            higher_is_better=True,
            definition="IA of the method minus IA of the base model from the same contexts, paired by prompt and seed",
            views="summary headline cli sweep",
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
            interval=False,
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
            interval=False,
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
            interval=False,
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
            interval=False,
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
            interval=False,
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
            interval=False,
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
