"""Markdown and HTML renderings of a report (the HTML page embeds its figures, so it opens offline)."""

from __future__ import annotations

import base64
import html as htmllib
from pathlib import Path

import pandas as pd

from lfsbench.evaluation.metrics import METRICS, in_view


def _cell(row: pd.Series, metric: str) -> str:
    if metric not in row or pd.isna(row.get(metric)):
        return "-"
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    if low is None or pd.isna(low):  # no interval (a run written before the figure had one)
        return f"{row[metric]:.3f}"
    return f"{row[metric]:.3f} [{low:.3f}, {high:.3f}]"


def _seed_count(seeds: str) -> str:
    """'0 1 2' (the summary's seed list) as the page shows it: '3 (0, 1, 2)'."""
    listed = seeds.split()
    return f"{len(listed)} ({', '.join(listed)})"


EVALUATION_FIELDS = (  # every field of the protocol's evaluation: section but its prompts and checkpoints
    "sampler", "steps", "eta", "guidance", "precision", "images_per_prompt", "between_images_per_prompt", "max_prompts",
    "seed", "bootstrap", "quantize",
)  # fmt: skip


def evaluation_settings(runs) -> str:
    """How the runs' images were drawn and scored: the evaluation settings they share, then those they differ in
    (with the values seen), so a page never hides that two settings were sampled differently."""
    values = {f: sorted({str(getattr(r.identity.protocol.evaluation, f)) for r in runs}) for f in EVALUATION_FIELDS}
    shared = ", ".join(f"{f} {v[0]}" for f, v in values.items() if len(v) == 1)
    differ = "; ".join(f"{f}: {' / '.join(v)}" for f, v in values.items() if len(v) > 1)
    text = f"Evaluation: {shared}."
    return text + (f" The runs differ in evaluation settings ({differ}): compare them with care." if differ else "")


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The summary as people read it: value [95% interval] per metric, then the plain figures."""
    shown = [m for m in in_view("headline") if m in table.columns]
    out = pd.DataFrame({"setting": table.setting, "seeds": table.seeds})
    for metric in shown:
        out[metric] = [_cell(row, metric) for _, row in table.iterrows()]
    for key in in_view("plain"):  # the "other figures and cost" columns
        m = METRICS[key]
        if m.has_interval and f"{key}_low" in table:
            out[m.short] = [_cell(row, key) for _, row in table.iterrows()]
            continue
        values = table[key] if key in table else [float("nan")] * len(table)
        out[m.short] = [m.format(v) if pd.notna(v) else "-" for v in values]
    out["keeps"] = table["keeps"] if "keeps" in table else "-"
    return out


def display_scalability(scale: pd.DataFrame) -> pd.DataFrame:
    """The scalability table as people read it: quality with intervals, then cost after T sessions."""
    out = pd.DataFrame({"setting": scale.setting, "sessions": scale.sessions})
    for metric in in_view("scale"):
        if metric in scale.columns:
            out[metric] = [_cell(row, metric) for _, row in scale.iterrows()]
    out["train s (all sessions)"] = [f"{v:,.0f}" for v in scale.train_s_total]
    out["train s (session T)"] = [f"{v:.1f}" for v in scale.train_s_at_session]
    out["generate s (full evaluation)"] = [f"{v:.0f}" if pd.notna(v) else "-" for v in scale.generate_s_full_evaluation]
    out["stored bytes"] = [f"{v:,.0f}" for v in scale.stored_bytes]
    out["peak MB"] = [f"{v:.0f}" for v in scale.peak_memory_mb]
    return out


def display_sweeps(sweeps: pd.DataFrame) -> pd.DataFrame:
    """Knob sweeps as people read them: one row per sweep and value, final metrics with intervals."""
    out = pd.DataFrame({"sweep": sweeps.sweep, "value": sweeps.value})
    for metric in in_view("sweep"):
        if metric in sweeps.columns:
            out[metric] = [_cell(row, metric) for _, row in sweeps.iterrows()]
    return out


def display_orders(orders: pd.DataFrame) -> pd.DataFrame:
    """Concept-order spread as people read it: per setting and metric, mean, sd and range over the orders."""
    return pd.DataFrame(
        {
            "setting": orders.setting,
            "metric": [METRICS[m].short for m in orders.metric],
            "orders": orders.orders,
            "mean": orders["mean"].map("{:.3f}".format),
            "sd": orders.sd.map("{:.3f}".format),
            "min - max": [f"{lo:.3f} - {hi:.3f}" for lo, hi in zip(orders["min"], orders["max"], strict=True)],
        }
    )


def markdown_orders(orders: pd.DataFrame) -> str:
    return _markdown(display_orders(orders))


def display_order_pairs(order_pairs: pd.DataFrame, emphasis: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    """One row per pair of settings, one column per paired metric: the range of A minus B over the orders and in
    how many orders the interval lies above or below 0; bold where every order's interval excludes 0 on one side."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in order_pairs.itertuples(index=False):
        sides = [f"{k} {side} 0" for k, side in ((row.above, ">"), (row.below, "<")) if k]
        text = f"{row.min:+.3f} to {row.max:+.3f} ({', '.join(sides) or 'none excludes 0'}; {row.n} orders)"
        if row.no_verdict:
            text += ", no verdict"
        elif row.n in (row.above, row.below):
            text = f"{emphasis[0]}{text}{emphasis[1]}"
        cells.setdefault((row.a, row.b), {})[METRICS[row.metric].short] = text
    columns = list(dict.fromkeys(METRICS[m].short for m in order_pairs.metric))
    return pd.DataFrame(
        [{"A": a, "B": b, **{c: shown.get(c, "-") for c in columns}} for (a, b), shown in cells.items()]
    )


def markdown_order_pairs(order_pairs: pd.DataFrame) -> str:
    return (
        "A minus B at the last session within each concept order (paired image by image as in pairs.md), the "
        "smallest to the largest over the orders, and in how many orders the 95% interval lies above (> 0) or below "
        "(< 0) zero. **Bold**: every order's interval excludes 0 on the same side, the only differences that hold "
        "whatever the order.\n\n" + _markdown(display_order_pairs(order_pairs))
    )


def _pair_cell(r) -> str:
    """One comparison: "A - B [95% interval] k/n, p" with p corrected within its family (H: the study's primary
    comparisons, Holm; q: the exploratory ones, Benjamini-Hochberg), or why it has no verdict."""
    cell = f"{r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] {r.seeds_agree}/{r.seeds}"
    if r.verdict.startswith("no verdict"):
        return f"{cell}, no verdict"
    if r.p_adjusted != r.p_adjusted:  # NaN: no test (no spread, no images)
        return cell
    return f"{cell}, {'H' if r.family == 'primary' else 'q'} {r.p_adjusted:.3f}"


def display_pairs(pairs: pd.DataFrame, emphasis: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    """Paired comparisons as people read them: one row per pair, per metric "A - B [95% interval] k/n, p" (k of n
    seeds agree in sign; p corrected within its family), emphasised where the verdict names a winner."""
    rows = []
    for (a, b), g in pairs.groupby(["a", "b"], sort=False):
        row = {"A": a, "B": b}
        for r in g.itertuples():
            cell = _pair_cell(r)
            shown = r.verdict.endswith((" better", " higher"))
            row[METRICS[r.metric].short] = f"{emphasis[0]}{cell}{emphasis[1]}" if shown else cell
        rows.append(row)
    return pd.DataFrame(rows).fillna("-")


PAIRS_NOTE = (
    "A minus B at the last session, paired image by image (same prompts and seeds); 95% interval: two settings of "
    "one method, Student t on the per-seed differences (k/n: seeds whose difference has the mean's sign); two "
    "methods, whose seed s share no random stream, Welch on each one's per-seed figures (k/n: A's seeds on the "
    "difference's side of B's mean); one seed, a bootstrap over the image pairs (pairs.csv's interval column says "
    "which). Then the "
    "p-value of no difference corrected for multiplicity within its family: H, Holm over the study's primary "
    "comparisons (declared in its spec before the runs); q, Benjamini-Hochberg over every other comparison. **Bold**: "
    "a corrected p below 0.05 and an interval that excludes 0, the only differences this report supports. No "
    "verdict: a metric no run has yet been shown to move, or a rate with fewer than 5 images (or 1%) of its rarer "
    "outcome in both settings; pairs.csv says which. For IAD, memorization gap, copy rate, class TA drop and drift "
    "lower is better."
)


def markdown_pairs(pairs: pd.DataFrame) -> str:
    return PAIRS_NOTE + "\n\n" + _markdown(display_pairs(pairs))


def _markdown(shown: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def markdown_scalability(scale: pd.DataFrame) -> str:
    return (
        _markdown(display_scalability(scale)) if len(scale) else "(no session count reached with a full evaluation)\n"
    )


def markdown_sweeps(sweeps: pd.DataFrame) -> str:
    return _markdown(display_sweeps(sweeps))


def markdown_table(table: pd.DataFrame) -> str:
    return _markdown(display_table(table))


BOLD = ("\x01", "\x02")  # emphasis marks that no label holds, made <b></b> after escaping


def _table(shown: pd.DataFrame) -> str:
    """A table, every cell escaped; cells may be emphasised with BOLD's marks."""
    escaped = shown.map(lambda v: htmllib.escape(str(v)).replace(BOLD[0], "<b>").replace(BOLD[1], "</b>"))
    return f"<div class='wide'>{escaped.to_html(index=False, escape=False, border=0)}</div>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{htmllib.escape(alt)}">'
        f"<figcaption>{htmllib.escape(alt)}</figcaption></figure>"
    )


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1400px; padding: 0 1rem; color: #222;
       line-height: 1.4; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: right; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; }
.row figure { display: inline-block; vertical-align: top; width: 32%; margin: 0.5rem 0.5%; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #ddd; }
figure { margin: 1rem 0; } figcaption { font-size: 0.85rem; color: #555; }
.note { font-size: 0.9rem; color: #444; max-width: 60rem; }
"""


def page(
    protocol: dict,
    runs,
    table: pd.DataFrame,
    figures: dict[str, Path],
    scale: pd.DataFrame | None = None,
    sweeps: pd.DataFrame | None = None,
    pairs: pd.DataFrame | None = None,
    orders: pd.DataFrame | None = None,
    order_pairs: pd.DataFrame | None = None,
) -> str:
    plan = protocol["evaluation"]
    shown = display_table(table)
    shown["seeds"] = [_seed_count(str(seeds)) for seeds in shown["seeds"]]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>lfsbench report: "
        f"{htmllib.escape(protocol['name'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>lfsbench report: protocol <code>{htmllib.escape(protocol['name'])}</code></h1>",
        f"<p class='note'>{htmllib.escape(protocol.get('description', ''))} {len(protocol['sessions'])} sessions; "
        f"{len(plan['prompts'])} prompts x {plan['images_per_prompt']} images per concept; {len(runs)} runs. "
        f"{htmllib.escape(evaluation_settings(runs))} "
        "Values are means at the last session; brackets are 95% intervals (a bootstrap over images with one seed, "
        "a Student t interval over the seeds where several were run). IA compares a concept's images with held-out "
        "views of it that no method saw; IA_shots "
        "with its training shots (the CustomConcept101 figure, which rewards copying). The memorization gap is "
        "IA_shots - IA, and the copy rate the share of images nearer (in pixels) to a training shot than 95% of the "
        "unseen views are: about 0 and 0.05 for a model that learned the concept, high for one that reproduces its "
        "shots (the gap only where the evaluator sees layout, as CLIP does; the toy evaluator does not). IAD is "
        "Avalanche's drop of IA since a concept was learned. Class TA drop is the base model's class TA "
        "minus the current one, and class accuracy the share of class-prompt images the evaluator classifies as the "
        "asked class: whether the class survives. Drift is 1 - cosine to the base model's image for the same prompt "
        "and seed: how far same-seed samples moved from the base model's, to be read beside the drift between two "
        "seeds of the base model (drift scale). IA_control is the base model generating from the method's stored "
        "contexts: IA gained over it is what the method learned. `keeps` says what a method stores between "
        "sessions.</p>",
        "<h2>Summary</h2>",
        _table(shown[["setting", "seeds"] + [m for m in in_view("headline") if m in table.columns]]),
        "<h3>Other figures and cost</h3>",
        _table(shown[["setting"] + [METRICS[key].short for key in in_view("plain")] + ["keeps"]]),
    ]
    if pairs is not None and len(pairs):
        parts += [
            "<h2>Paired comparisons</h2>",
            f"<p class='note'>{htmllib.escape(PAIRS_NOTE).replace('**Bold**', '<b>Bold</b>')}</p>",
            _table(display_pairs(pairs, BOLD)),
        ]
    if orders is not None and len(orders):
        parts += [
            "<h2>Concept order</h2>",
            "<p class='note'>Settings run in several concept orders (the protocol's order_seed): each final figure's "
            "mean, standard deviation and range over the orders. A spread wider than a setting's seed interval "
            "means its numbers depend on which concepts come first.</p>",
            _table(display_orders(orders)),
        ]
    if order_pairs is not None and len(order_pairs):
        parts += [
            "<h3>Comparisons in every order</h3>",
            "<p class='note'>A minus B within each concept order (paired image by image), from its smallest to its "
            "largest value over the orders, and in how many orders the 95% interval lies above or below 0. "
            "<b>Bold</b>: every order's interval excludes 0 on the same side; a difference that is bold in the "
            "paired comparisons of one order but not here depends on the order.</p>",
            _table(display_order_pairs(order_pairs, BOLD)),
        ]
    parts += [
        "<h2>Forgetting curves</h2>",
        _img(
            figures["curves"],
            "TA, IA (held-out), IA_shots, memorization gap, copy rate, IAD, class TA, its drop, class accuracy and "
            "drift against session; bands are 95% intervals",
        ),
    ]
    if "stability" in figures:
        parts += [
            "<h2>Learning beside forgetting</h2>",
            _img(
                figures["stability"],
                "IA right after learning (what each concept reaches in the session that teaches it) against final IA "
                "and IAD, 95% intervals; a low IAD far left is a small fall from a low peak, not protection",
            ),
        ]
    if "retention" in figures:
        parts += [
            "<h2>Classes kept: trained on against untouched</h2>",
            _img(
                figures["retention"],
                "class accuracy and class TA drop of the classes the concepts belong to (x) against those of classes "
                "no concept belongs to (y), 95% intervals; low x beside high y: it damaged what it trained on, both "
                "low: the model as a whole",
            ),
        ]
    parts += [
        "<h2>Cost</h2>",
        _img(
            figures["cost"],
            "seconds of training and of a full evaluation's generation, stored bytes and peak memory against session",
        ),
    ]
    if scale is not None and len(scale) > 1:
        parts += [
            "<h2>Scalability</h2>",
            "<p class='note'>After T sessions: a T-session protocol that is the start of this one trains and "
            "evaluates exactly like its first T sessions, so these are its final numbers, and what reaching "
            "them cost.</p>",
            _table(display_scalability(scale)),
        ]
    if sweeps is not None and len(sweeps):
        parts += [
            "<h2>Knob sweeps</h2>",
            "<p class='note'>Settings of one method that differ in one knob only (compared by the configuration "
            "each ran with): final metrics against the knob's value, 95% intervals.</p>",
            _img(
                figures["sweeps"],
                "final IA, IAD, class drift, TA (and IA gain over the control) against each swept knob",
            ),
            _table(display_sweeps(sweeps)),
        ]
    parts.append("<h2>IA matrices</h2>")
    concepts = sum(len(names) for names in protocol["sessions"])
    parts.append("<div class='row'>" if concepts <= 12 else "<div>")  # three small heatmaps a row; large ones alone
    parts += [
        _img(p, f"IA matrix of {k[len('ia_matrix_') :]}") for k, p in figures.items() if k.startswith("ia_matrix_")
    ]
    parts.append("</div>")
    confusions = [(k[len("confusion_") :], p) for k, p in figures.items() if k.startswith("confusion_")]
    if confusions:
        parts += [
            "<h2>Concept confusion</h2>",
            "<p class='note'>After the last session, per concept asked for (rows), the share of its images that "
            "show each learned concept or none (columns), as the evaluator sees them: nearest that concept's "
            "held-out references, and nearer them than 95% of the base model's images of its class are. Off the "
            "diagonal is confusion.</p>",
            "<div class='row'>" if concepts <= 12 else "<div>",
            *(_img(p, f"concept confusion of {label}") for label, p in confusions),
            "</div>",
        ]
    parts.append("<h2>Images</h2>")
    shown = {k[len("images_") :] for k in figures if k.startswith("images_")}
    without = sorted({r.label for r in runs} - shown)
    if without:
        parts.append(
            "<p class='note'>No images kept for "
            + htmllib.escape(", ".join(without))
            + " (runs exported with <code>lfsbench export --no-images</code>: every number, no image grids).</p>"
        )
    parts += [
        _img(p, f"shots and generated images after each session: {k[len('images_') :]}")
        for k, p in figures.items()
        if k.startswith("images_")
    ]
    parts.append("<h2>Copying</h2>")
    parts += [
        _img(
            p,
            f"{k[len('copies_') :]}: generated images (top row), each above its nearest training shot (middle) and "
            "its nearest held-out reference (bottom), nearest in pixels. A method that copies its shots shows a "
            "middle row equal to the top one.",
        )
        for k, p in figures.items()
        if k.startswith("copies_")
    ]
    parts.append(
        "<h2>Runs</h2><ul>"
        + "".join(f"<li><code>{htmllib.escape(str(r.path))}</code> (seed {r.seed})</li>" for r in runs)
        + "</ul>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)
