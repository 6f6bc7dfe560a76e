"""From per-image score records to session rows, matrices, session figures and the run summary.

Pure functions over pandas frames (scores: records.COLUMNS; rows: sessions/session_XX.csv); every number a run or
a report shows is computed here, from the functions of functional.py, and named by metrics.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lfsbench.concepts import TOKEN_PATTERN
from lfsbench.evaluation import functional as F
from lfsbench.evaluation.metrics import METRICS, in_view
from lfsbench.evaluation.records import Kind, with_optional_columns

CONCEPT, CLASS = Kind.CONCEPT.value, Kind.CLASS.value  # the `kind` of a session row: a concept or a class


def _interval(values, n_boot: int) -> dict:
    mean, lo, hi = F.bootstrap_ci(values, n_boot)
    return {"value": mean, "ci_low": lo, "ci_high": hi}


def _row(session, name, kind, learned_in, metric, values, n_boot):
    return {
        "session": session,
        "name": name,
        "kind": kind,
        "learned_in": learned_in,
        "metric": metric,
        **_interval(values, n_boot),
        "n": int(len(values)),
    }


def _of(scores: pd.DataFrame, kind: Kind, name: str | None = None) -> pd.DataFrame:
    sel = scores.kind == kind
    return scores[sel if name is None else sel & (scores.name == name)]


def _first_and_now(
    history: pd.DataFrame, now: pd.DataFrame, names: list[str], learned_in: dict[str, int], column: str = "ia"
):
    """Per concept, its per-image IA (or `column`) in the session that taught it and in `now` (IAD's two samples)."""
    concepts = _of(history, Kind.CONCEPT)
    first = [concepts[(concepts.name == c) & (concepts.session == learned_in[c])][column].values for c in names]
    return first, [now[now.name == c][column].values for c in names]


def _since_learned(history: pd.DataFrame, name: str, s: int, t: int, column: str = "ia") -> list[np.ndarray]:
    """A concept's per-image values after each session u with s <= u < t after which it was evaluated (every u,
    unless the protocol has evaluation checkpoints): the sessions forgetting_max takes its peak over."""
    rows = _of(history, Kind.CONCEPT, name)
    rows = rows[(rows.session >= s) & (rows.session < t)]
    return [g[column].values for _, g in rows.groupby("session")]


def _paired_class_drop(now: pd.DataFrame, column: str = "ta") -> np.ndarray:
    """Per class-prompt image: the base model's value minus the current model's (same class, prompt and seed)."""
    paired = _of(now, Kind.CLASS).merge(
        _of(now, Kind.BASE_CLASS), on=["name", "prompt", "seed"], suffixes=("", "_base")
    )
    return (paired[f"{column}_base"] - paired[column]).values


def _drops(dino: bool) -> list[tuple[str, str]]:
    """The IAD figures and the score column each is computed from (IAD_dino only where the run has DINO scores)."""
    return [("IAD", "ia"), ("IAD_shots", "ia_shots")] + ([("IAD_dino", "ia_dino")] if dino else [])


MEASURED = {  # the columns each record kind must have as numbers
    Kind.CONCEPT: ("ta", "ia", "ia_shots", "shot_distance"),
    Kind.CONTROL: ("ta", "ia", "ia_shots"),
    Kind.CLASS: ("ta", "drift"),
    Kind.BASE_CLASS: ("ta",),
    Kind.BASE_CLASS_FOR_CONCEPT: ("ia",),
    Kind.CLASS_FOR_CONCEPT: ("ia",),
    Kind.MULTI: ("ta", "ia"),
}


def non_finite(scores: pd.DataFrame) -> str | None:
    """Where a session's scores hold NaN or infinity (images that are NaN: training diverged), or None."""
    for kind, columns in MEASURED.items():
        rows = _of(scores, kind)
        for column in columns:
            bad = rows[~np.isfinite(rows[column].astype(float))]
            if len(bad):
                names = ", ".join(dict.fromkeys(bad.name))
                return f"{len(bad)} {kind.value} images ({names}) have a {column} that is not a number"
    return None


def session_rows(
    scores: pd.DataFrame,
    history: pd.DataFrame,
    t: int,
    learned_in: dict[str, int],
    class_first: dict[str, int],
    n_boot: int,
) -> pd.DataFrame:
    """Rows of session t: per concept TA, CLIPScore, IA, the class prompts' IA, the control's TA and IA, IAD and
    max-based forgetting (concepts learned before t); per class TA and drift.

    `scores` are session t's records, `history` those of every session so far (t included).
    """
    scores, history = with_optional_columns(scores), with_optional_columns(history)
    rows = []
    for name, group in _of(scores, Kind.CONCEPT).groupby("name", sort=False):
        s = learned_in[name]
        rows.append(_row(t, name, CONCEPT, s, "TA", group.ta.values, n_boot))
        rows.append(_row(t, name, CONCEPT, s, "CLIPScore", F.clip_score(group.ta.values), n_boot))
        rows.append(_row(t, name, CONCEPT, s, "IA", group.ia.values, n_boot))
        rows.append(_row(t, name, CONCEPT, s, "IA_shots", group.ia_shots.values, n_boot))
        rows.append(_row(t, name, CONCEPT, s, "memorization_gap", (group.ia_shots - group.ia).values, n_boot))
        rows.append(_row(t, name, CONCEPT, s, "copy_rate", group.copied.values, n_boot))
        dino = group.ia_dino.notna().any()  # where the protocol names a DINO model
        if dino:
            rows.append(_row(t, name, CONCEPT, s, "IA_dino", group.ia_dino.values, n_boot))
            rows.append(_row(t, name, CONCEPT, s, "IA_dino_shots", group.ia_dino_shots.values, n_boot))
        for kind, metric in (
            (Kind.BASE_CLASS_FOR_CONCEPT, "IA_base_class_prompt"),
            (Kind.CLASS_FOR_CONCEPT, "IA_class_prompt"),
        ):
            rows.append(_row(t, name, CONCEPT, s, metric, _of(scores, kind, name).ia.values, n_boot))
        control = _of(scores, Kind.CONTROL, name)
        if len(control):
            rows.append(_row(t, name, CONCEPT, s, "TA_control", control.ta.values, n_boot))
            rows.append(_row(t, name, CONCEPT, s, "IA_control", control.ia.values, n_boot))
            rows.append(_row(t, name, CONCEPT, s, "copy_rate_control", control.copied.values, n_boot))
        if s < t:
            for metric, column in _drops(dino):
                first, now = _first_and_now(history, group, [name], learned_in, column)
                mean, lo, hi = F.bootstrap_drop(first, now, n_boot)
                rows.append(
                    {
                        "session": t,
                        "name": name,
                        "kind": CONCEPT,
                        "learned_in": s,
                        "metric": metric,
                        "value": mean,
                        "ci_low": lo,
                        "ci_high": hi,
                        "n": int(len(group)),
                    }
                )
            mean, lo, hi = F.bootstrap_peak_drop([_since_learned(history, name, s, t)], [group.ia.values], n_boot)
            rows.append(
                {
                    "session": t,
                    "name": name,
                    "kind": CONCEPT,
                    "learned_in": s,
                    "metric": "forgetting_max",
                    "value": mean,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": int(len(group)),
                }
            )
    for name, group in _of(scores, Kind.MULTI).groupby("name", sort=False):  # the concept in two-concept images
        s = learned_in[name]
        rows.append(_row(t, name, CONCEPT, s, "multi_TA", group.ta.values, n_boot))
        rows.append(_row(t, name, CONCEPT, s, "multi_IA", group.ia.values, n_boot))
        if group.ia_dino.notna().any():
            rows.append(_row(t, name, CONCEPT, s, "multi_IA_dino", group.ia_dino.values, n_boot))
    for name, group in _of(scores, Kind.CLASS).groupby("name", sort=False):
        base = _of(scores, Kind.BASE_CLASS, name)
        s = class_first[name]
        rows.append(_row(t, name, CLASS, s, "class_TA", group.ta.values, n_boot))
        rows.append(_row(t, name, CLASS, s, "class_TA_base", base.ta.values, n_boot))
        rows.append(_row(t, name, CLASS, s, "class_TA_drop", _paired_class_drop(scores[scores.name == name]), n_boot))
        rows.append(_row(t, name, CLASS, s, "drift", group.drift.values, n_boot))
        if group.class_correct.notna().all() and len(group):
            rows.append(_row(t, name, CLASS, s, "class_accuracy", group.class_correct.values, n_boot))
            rows.append(_row(t, name, CLASS, s, "class_accuracy_base", base.class_correct.values, n_boot))
    return pd.DataFrame(rows)


def matrix(rows: pd.DataFrame, metric: str, concept_order: list[str]) -> pd.DataFrame:
    """metric[t][c] over sessions (rows) and concepts (columns), NaN where concept c was not evaluated after t."""
    sub = rows[(rows.kind == CONCEPT) & (rows.metric == metric)]
    table = sub.pivot(index="session", columns="name", values="value")
    return table.reindex(columns=[c for c in concept_order if c in table.columns])


def session_figures(history: pd.DataFrame, t: int, learned_in: dict[str, int], n_boot: int) -> dict[str, dict]:
    """The session-level figures after session t, each {value, ci_low, ci_high}: TA, CLIPScore, IA (held-out
    references), IA_shots, the memorization gap and copy rate, IAD and IAD_shots (over the concepts evaluated after t
    that were learned before it), IA_dino, IA_dino_shots and IAD_dino where the protocol names a DINO model, class
    TA, its base value and drop, class accuracy (base and now), drift, and for methods with an in-context control
    TA_control, IA_control, its copy rate and IA_gain_over_control. Figures with nothing to average are left out."""
    history = with_optional_columns(history)
    now = history[history.session == t]
    concepts, classes, control = _of(now, Kind.CONCEPT), _of(now, Kind.CLASS), _of(now, Kind.CONTROL)
    base, multi = _of(now, Kind.BASE_CLASS), _of(now, Kind.MULTI)
    out = {}
    for metric, values in (
        ("TA", concepts.ta.values),
        ("CLIPScore", F.clip_score(concepts.ta.values)),
        ("IA", concepts.ia.values),
        ("IA_shots", concepts.ia_shots.values),
        ("memorization_gap", (concepts.ia_shots - concepts.ia).values),
        ("copy_rate", concepts.copied.values),
        ("IA_dino", concepts.ia_dino.dropna().values),
        ("IA_dino_shots", concepts.ia_dino_shots.dropna().values),
        ("class_TA", classes.ta.values),
        ("class_TA_base", base.ta.values),
        ("class_TA_drop", _paired_class_drop(now)),
        ("class_accuracy", classes.class_correct.dropna().values),
        ("class_accuracy_base", base.class_correct.dropna().values),
        ("drift", classes.drift.values),
        # two-concept images: each image has one record per concept, so TA's mean is the mean over images
        ("multi_TA", multi.ta.values),
        ("multi_IA", multi.ia.values),
        ("multi_IA_dino", multi.ia_dino.dropna().values),
    ):
        if len(values):
            out[metric] = _interval(values, n_boot)
    earlier = [c for c in concepts.name.unique() if learned_in[c] < t]
    if earlier:
        dino = concepts.ia_dino.notna().any()
        for metric, column in _drops(dino):
            first, last = _first_and_now(history, concepts, earlier, learned_in, column)
            mean, lo, hi = F.bootstrap_drop(first, last, n_boot)
            out[metric] = {"value": mean, "ci_low": lo, "ci_high": hi}
    if len(control):
        # paired by prompt and seed: the method's image and the control's start from the same context and noise
        paired = concepts.merge(control, on=["name", "prompt", "seed"], suffixes=("", "_control"))
        out["TA_control"] = _interval(control.ta.values, n_boot)
        out["IA_control"] = _interval(control.ia.values, n_boot)
        out["copy_rate_control"] = _interval(control.copied.values, n_boot)
        out["IA_gain_over_control"] = _interval((paired.ia - paired.ia_control).values, n_boot)
    return out


IMAGE_KEYS = ["name", "prompt", "seed"]  # what pairs an image of one run with the same image of another


def order_free_prompts(history: pd.DataFrame) -> pd.DataFrame:
    """The scores with each modifier token in a prompt replaced by its concept's name ("a <new3> circle" -> "a
    <circle-1> circle"). Tokens are numbered in session order, so runs of one protocol in different concept orders
    (order_seed) ask for the same image under different prompts; with the names in their place, the same image has
    the same prompt in every order. A concept's token is the one its own evaluation prompts carry."""
    concepts = _of(history, Kind.CONCEPT)
    tokens = concepts.prompt.str.extract(f"({TOKEN_PATTERN.pattern})", expand=False)
    named = dict(zip(tokens[tokens.notna()], concepts.name[tokens.notna()], strict=True))
    if not named:
        return history
    return history.assign(
        prompt=history.prompt.str.replace(TOKEN_PATTERN, lambda m: f"<{named.get(m.group(0), m.group(0))}>", regex=True)
    )


def image_values(history: pd.DataFrame, t: int, learned_in: dict[str, int]) -> pd.DataFrame:
    """Per image after session t, the value each paired metric (metrics.py's `pairs` view) averages: rows of
    (metric, name, prompt, seed, value). IAD's value is an earlier concept's image IA when it was learned minus
    now (same prompt and seed); class_TA_drop's is the base model's class TA minus now.

    Every run of a protocol draws the same prompts and seeds, so the same rows of two runs are the same image asked
    of two models: the paired comparisons of `lfsbench report` difference them row by row. Prompts are returned
    order-free (`order_free_prompts`), so runs in different concept orders pair image by image too.
    """
    history = order_free_prompts(with_optional_columns(history))
    now = history[history.session == t]
    concepts, classes = _of(now, Kind.CONCEPT), _of(now, Kind.CLASS)
    per_image = {
        "TA": (concepts, concepts.ta),
        "IA": (concepts, concepts.ia),
        "memorization_gap": (concepts, concepts.ia_shots - concepts.ia),
        "copy_rate": (concepts, concepts.copied),
        "IA_dino": (concepts, concepts.ia_dino),
        "class_accuracy": (classes, classes.class_correct),
        "drift": (classes, classes.drift),
    }
    frames = [
        rows[IMAGE_KEYS].assign(metric=metric, value=values.astype(float).values)
        for metric, (rows, values) in per_image.items()
    ]
    drop = _of(now, Kind.BASE_CLASS).merge(classes, on=IMAGE_KEYS, suffixes=("_base", ""))
    frames.append(drop[IMAGE_KEYS].assign(metric="class_TA_drop", value=(drop.ta_base - drop.ta).values))
    everything = _of(history, Kind.CONCEPT)
    first = everything[everything.session == everything.name.map(learned_in)]
    earlier = concepts[concepts.name.map(learned_in) < t].merge(first, on=IMAGE_KEYS, suffixes=("", "_first"))
    frames.append(earlier[IMAGE_KEYS].assign(metric="IAD", value=(earlier.ia_first - earlier.ia).values))
    out = pd.concat(frames, ignore_index=True)
    return out[out.value.notna()][["metric", *IMAGE_KEYS, "value"]]


def paired_figure(metric: str, pairs: pd.DataFrame, n_boot: int) -> tuple[float, float, float]:
    """A paired metric's difference from per-image differences (`pairs`: name, value): IAD, a mean over concepts, as
    the mean over concepts of their mean (bootstrap within each concept); the rest as the mean over images (bootstrap
    over images), as the summary computes each."""
    if metric == "IAD":
        return F.bootstrap_mean_of_means([g.value.values for _, g in pairs.groupby("name", sort=False)], n_boot)
    return F.bootstrap_ci(pairs.value.values, n_boot)


def full_sessions(scores: pd.DataFrame, learned_in: dict[str, int]) -> list[int]:
    """Sessions after which every concept learned so far was evaluated (all, unless the protocol has checkpoints)."""
    concepts = _of(scores, Kind.CONCEPT)
    return [
        int(t)
        for t, now in concepts.groupby("session")
        if set(now.name) == {c for c, s in learned_in.items() if s <= t}
    ]


def summarize(
    rows: pd.DataFrame,
    scores: pd.DataFrame,
    cost: pd.DataFrame,
    learned_in: dict[str, int],
    drift_scale: float,
    n_boot: int,
) -> dict:
    """Headline numbers at the last finished session, with 95% intervals, and the cost totals."""
    last = int(rows.session.max())
    figures = session_figures(scores, last, learned_in, n_boot)
    missing = {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    right_after = rows[(rows.metric == "IA") & (rows.session == rows.learned_in)]
    class_after = rows[(rows.metric == "IA_class_prompt") & (rows.session == rows.learned_in)]
    base_class = rows[(rows.metric == "IA_base_class_prompt") & (rows.session == rows.learned_in)]
    summary = {"sessions_finished": last + 1}
    for m in ("TA", "CLIPScore", "IA", "IA_shots", "memorization_gap", "copy_rate", "IAD", "IAD_shots"):
        summary[m] = {**figures.get(m, missing), "definition": METRICS[m].definition}
    now = _of(scores[scores.session == last], Kind.CONCEPT)
    earlier = [c for c in now.name.unique() if learned_in[c] < last]
    peaks = F.bootstrap_peak_drop(
        [_since_learned(scores, c, learned_in[c], last) for c in earlier],
        [now[now.name == c].ia.values for c in earlier],
        n_boot,
    )
    concepts = _of(scores, Kind.CONCEPT)
    first = [concepts[(concepts.name == c) & (concepts.session == s)].ia.values for c, s in learned_in.items()]
    for name, (value, lo, hi) in (
        ("forgetting_max", peaks),
        ("IA_right_after_learning", F.bootstrap_mean_of_means(first, n_boot)),
    ):
        summary[name] = {"value": value, "ci_low": lo, "ci_high": hi, "definition": METRICS[name].definition}
    summary.update(
        {
            "IA_base_class_prompt": float(base_class.value.mean()),
            "IA_class_prompt_right_after_learning": float(class_after.value.mean()),
            "concepts_above_base_class_prompt_right_after_learning": int(
                (right_after.set_index("name").value > base_class.set_index("name").value).sum()
            ),
            "concepts": int(len(right_after)),
        }
    )
    for m in ("class_TA", "class_TA_base", "class_TA_drop", "class_accuracy", "class_accuracy_base", "drift"):
        if m in figures or not m.startswith("class_accuracy"):  # class accuracy needs a vocabulary of classes
            summary[m] = {**figures.get(m, missing), "definition": METRICS[m].definition}
    for m in ("IA_dino", "IA_dino_shots", "IAD_dino", "multi_TA", "multi_IA", "multi_IA_dino"):  # where measured
        if m in figures:
            summary[m] = {**figures[m], "definition": METRICS[m].definition}
    summary["drift_seed_scale"] = drift_scale
    if "IA_control" in figures:
        summary.update({m: figures[m] for m in ("TA_control", "IA_control", "copy_rate_control")})
        summary["IA_gain_over_control"] = {
            **figures["IA_gain_over_control"],
            "definition": METRICS["IA_gain_over_control"].definition,
        }
    if len(cost):
        summary["cost"] = cost_totals(cost)
    return summary


def cost_totals(cost: pd.DataFrame) -> dict:
    """summary.json's cost block from cost.csv (one row per session)."""
    return {
        "train_seconds_total": float(cost.train_s.sum()),
        "train_seconds_per_session": float(cost.train_s.mean()),
        "generate_seconds_total": float(cost.generate_s.sum()),
        "evaluate_seconds_total": float(cost.evaluate_s.sum()),
        "peak_memory_mb": float(cost.peak_memory_mb.max()),
        "trainable_parameters": int(cost.trainable_parameters.iloc[-1]),
        "delta_bytes": int(cost.delta_bytes.iloc[-1]),
        "stored_bytes": int(cost.stored_bytes.iloc[-1]),
    }


def flat_summary(summary: dict) -> dict:
    """One CSV row of the summary: nested keys joined with dots."""
    out = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if k != "definition"})
        else:
            out[key] = value
    return out


def run_curves(scores: pd.DataFrame, cost: pd.DataFrame, learned_in: dict[str, int], n_boot: int) -> pd.DataFrame:
    """Per session: the curve metrics of metrics.py with intervals, and the session's cost (interval = the value).

    Only sessions after which every learned concept was evaluated give quality points (and generation time,
    which is otherwise that of the new concept alone); training time, stored bytes and memory exist for all.
    """
    full = set(full_sessions(scores, learned_in))
    rows = []
    for t in sorted(full | {int(t) for t in cost.session}):
        rows += session_curve(scores, cost, learned_in, t, n_boot, t in full)
    return pd.DataFrame(rows)


def session_curve(
    scores: pd.DataFrame, cost: pd.DataFrame, learned_in: dict[str, int], t: int, n_boot: int, full: bool | None = None
) -> list[dict]:
    """run_curves' rows of session t alone (what a tracker logs after each session). `full`: whether every concept
    learned so far was evaluated after t (computed from the scores when not given)."""
    if full is None:
        full = t in full_sessions(scores, learned_in)
    rows = []
    for _, row in cost[cost.session == t].iterrows():
        for metric in in_view("cost"):
            if metric != "generate_s" or full:
                v = float(row[metric])
                rows.append({"session": t, "metric": metric, "value": v, "ci_low": v, "ci_high": v})
    if full:
        figures = session_figures(scores, t, learned_in, n_boot)
        rows += [{"session": t, "metric": m, **figures[m]} for m in in_view("curve") if m in figures]
    return rows
