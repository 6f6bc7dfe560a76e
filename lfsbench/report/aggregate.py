"""Numbers of a report: per-session curves of one run, means over seeds with intervals, and paired differences
between settings.

Over seeds, an interval is a Student-t interval on the per-seed values (mean +- t_{n-1} s / sqrt(n)). Its estimand is
the expected value over training seeds of the run's figure, for the protocol's concepts, prompts and evaluation seeds
(which every seed shares); the spread between seeds already holds each run's evaluation noise, so the per-run
intervals are not added again. `tests/test_statistics.py` measures its coverage on synthetic runs with a known truth.
With one seed the interval is that run's own bootstrap over images, conditional on the seed. Where every seed gives
the same value (a figure of the base model, a share every seed saturates) there is no spread to measure and the
t-interval would have no width: the widest of the runs' own intervals stands in for it, so a figure is never shown
as exact. An interval is clipped to what its figure can measure (`Metric.bounds`: shares [0, 1], cosines
[-1, 1], their differences [-2, 2]), never past the figure itself.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfsbench.evaluation import functional as F
from lfsbench.evaluation import tables
from lfsbench.evaluation.metrics import COST_FIGURES, METRICS, in_view
from lfsbench.report.runs import Run

N_BOOT = 1000


def run_curves(run: Run, n_boot: int = N_BOOT) -> pd.DataFrame:
    """The run's per-session curves (evaluation/tables.run_curves), labelled with its seed."""
    out = tables.run_curves(run.scores(), run.folder.cost(), run.learned_in(), n_boot)
    out["seed"] = run.seed
    return out


def combine_seeds(values, lows, highs, bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """Mean over seeds with a t-interval over them (see the module docstring); one seed, or seeds that all give the
    same value: the (widest) run's own interval. `bounds`: the figure's range, to which the interval is clipped, but
    never past the value (a mean of cosines a float's width above 1 keeps an interval that holds it)."""
    values, lows, highs = (np.asarray(x, dtype=float) for x in (values, lows, highs))
    ok = ~np.isnan(values)
    values, lows, highs = values[ok], lows[ok], highs[ok]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(values) == 1 or np.ptp(values) == 0:
        value, low, high = float(values.mean()), float(np.min(lows)), float(np.max(highs))
    else:
        value, low, high = F.t_interval(values)
    if bounds is not None:  # clipped, but never past the value itself (a cosine a float's width above 1 stays in)
        low, high = (float(np.clip(x, *bounds)) if np.isfinite(x) else x for x in (low, high))
        low, high = (min(low, value), max(high, value)) if np.isfinite(value) else (low, high)
    return value, low, high


def with_pooled_counts(figures: list, low: float, high: float) -> tuple[float, float]:
    """A rate over seeds: its interval widened to hold the Wilson interval of the pooled counts (the images with the
    outcome over all images scored, every seed together). Seeds that all saw no event (a copy rate of 0.000 at
    every seed) have no spread, and a t-interval over a few seeds of a rare rate misses its truth far more often than
    5%: the pooled counts keep the binomial uncertainty of every image scored. Runs that did not record their
    image counts (before 2026-12-06) keep the interval over seeds."""
    if not figures or not all(isinstance(f, dict) and f.get("images") for f in figures):
        return low, high
    images = sum(f["images"] for f in figures)
    _, pooled_low, pooled_high = F.wilson_counts(sum(f["value"] * f["images"] for f in figures), images)
    return float(np.fmin(low, pooled_low)), float(np.fmax(high, pooled_high))  # fmin/fmax: a NaN bound gives way


def _plain(summary: dict, key: str) -> float:
    value = summary.get(key, np.nan)
    return value["value"] if isinstance(value, dict) else value


def _triple(value) -> tuple[float, float, float]:
    """A summary figure as (value, ci_low, ci_high); a plain number (runs written before it had an interval) has NaN
    bounds."""
    if isinstance(value, dict):
        return value["value"], value.get("ci_low", np.nan), value.get("ci_high", np.nan)
    return value, np.nan, np.nan


def summary_table(groups: dict[str, list[Run]]) -> pd.DataFrame:
    """One row per setting: final metrics (mean over seeds, interval), plain figures and cost means."""
    rows = []
    for label, runs in groups.items():
        row = {
            "setting": label,
            "method": runs[0].method,
            "seeds": " ".join(str(r.seed) for r in sorted(runs, key=lambda r: r.seed)),
            "sessions": runs[0].summary["sessions_finished"],
        }
        for metric in (m for m in in_view("summary") if METRICS[m].has_interval):  # means over seeds, intervals
            figures = [r.summary[metric] for r in runs if metric in r.summary]
            if figures:
                v, lo, hi = combine_seeds(*zip(*map(_triple, figures), strict=True), bounds=METRICS[metric].bounds)
                if METRICS[metric].interval == "proportion":
                    lo, hi = with_pooled_counts(figures, lo, hi)
                row.update({metric: v, f"{metric}_low": lo, f"{metric}_high": hi})
        for key in (m for m in in_view("summary") if not METRICS[m].has_interval):  # means over seeds
            row[key] = float(np.mean([_plain(r.summary, key) for r in runs]))
        for key in COST_FIGURES:
            row[key] = float(np.mean([r.summary.get("cost", {}).get(key, np.nan) for r in runs]))
        row["keeps"] = runs[0].summary.get("keeps", "")
        rows.append(row)
    return pd.DataFrame(rows)


def curves_table(groups: dict[str, list[Run]]) -> pd.DataFrame:
    """Per setting, session and metric: mean over seeds with the combined interval."""
    rows = []
    for label, runs in groups.items():
        per_run = pd.concat([run_curves(r) for r in runs], ignore_index=True)
        for (t, metric), g in per_run.groupby(["session", "metric"]):
            bounds = METRICS[metric].bounds if metric in METRICS else None
            v, lo, hi = combine_seeds(g.value, g.ci_low, g.ci_high, bounds)
            rows.append(
                {
                    "setting": label,
                    "session": t,
                    "metric": metric,
                    "value": v,
                    "ci_low": lo,
                    "ci_high": hi,
                    "seeds": len(g),
                }
            )
    return pd.DataFrame(rows)


SCALES = (5, 10, 20, 50, 100, 200)


def scalability_table(curves: pd.DataFrame, sessions: int, at: list[int] | None = None) -> pd.DataFrame:
    """Per setting and number of sessions T: quality after T sessions and what reaching it cost.

    A T-session protocol that is the first T sessions of a longer one trains and evaluates exactly as the
    longer run does up to T (a test checks it), so one long run gives every shorter protocol's figures.
    T defaults to 5, 10, 20, 50, ... below the protocol's length, and its length.
    """
    at = at or [n for n in SCALES if n < sessions] + [sessions]
    rows = []
    for setting, g in curves.groupby("setting", sort=False):
        value = {(int(r.session), r.metric): r for r in g.itertuples()}
        for n in at:
            t = n - 1
            if (t, "TA") not in value:  # not evaluated in full after session t (or not reached)
                continue
            train = g[(g.metric == "train_s") & (g.session <= t)].value
            row = {"setting": setting, "sessions": n}
            for metric in in_view("scale"):
                if (t, metric) in value:
                    r = value[(t, metric)]
                    row.update({metric: r.value, f"{metric}_low": r.ci_low, f"{metric}_high": r.ci_high})
            row.update(
                {
                    "train_s_total": float(train.sum()),
                    "train_s_at_session": value[(t, "train_s")].value if (t, "train_s") in value else np.nan,
                    "generate_s_full_evaluation": value[(t, "generate_s")].value
                    if (t, "generate_s") in value
                    else np.nan,
                    "stored_bytes": value[(t, "stored_bytes")].value if (t, "stored_bytes") in value else np.nan,
                    "peak_memory_mb": float(g[(g.metric == "peak_memory_mb") & (g.session <= t)].value.max()),
                    "seeds": int(value[(t, "TA")].seeds),
                }
            )
            rows.append(row)
    return pd.DataFrame(rows)


SWEEP_MIN_VALUES = 3  # a knob is swept when at least this many settings differ in it alone


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sweeps_table(groups: dict[str, list[Run]], table: pd.DataFrame) -> pd.DataFrame:
    """Knob sweeps: settings of one method whose resolved configurations differ in one knob only.

    Settings are compared by the settings the method ran with (its identity's resolved settings), so a
    study's default setting joins the sweep of every knob it shares the other values with. One row per
    (sweep, value) with the summary's final metrics; `sweep` names the method, the knob and what the
    sweep's settings hold fixed among the settings they were given.
    """
    rows = []
    by_label = table.set_index("setting")
    methods = dict.fromkeys(runs[0].method for runs in groups.values())
    for method in methods:
        ours = [label for label, runs in groups.items() if runs[0].method == method]
        configs = {label: groups[label][0].identity.method.settings for label in ours}
        overrides = {label: groups[label][0].identity.method.overrides for label in configs}
        for knob in sorted({k for c in configs.values() for k in c}):
            families: dict[str, dict[str, str]] = {}
            for label, config in configs.items():
                rest = json.dumps(
                    [_fold(groups[label]), {k: v for k, v in config.items() if k != knob}], sort_keys=True, default=str
                )  # a sweep holds its fold fixed
                families.setdefault(rest, {}).setdefault(json.dumps(config.get(knob), default=str), label)
            for members in families.values():
                if len(members) < SWEEP_MIN_VALUES:
                    continue
                fixed = set.intersection(
                    *(
                        {(k, json.dumps(v, default=str)) for k, v in overrides[label].items() if k != knob}
                        for label in members.values()
                    )
                )
                name = f"{method}: {knob}" + (
                    f" ({', '.join(f'{k}={json.loads(v)}' for k, v in sorted(fixed))})" if fixed else ""
                )
                values = [configs[label].get(knob) for label in members.values()]
                numeric = all(_is_number(v) for v in values)
                for value, label in sorted(
                    zip(values, members.values(), strict=True), key=lambda p: p[0] if numeric else 0
                ):
                    row = {
                        "sweep": name,
                        "method": method,
                        "knob": knob,
                        "value": str(value),
                        "x": float(value) if numeric else np.nan,
                        "setting": label,
                    }
                    for metric in in_view("sweep"):
                        if metric in by_label.columns and pd.notna(by_label.at[label, metric]):
                            row.update({m: by_label.at[label, m] for m in (metric, f"{metric}_low", f"{metric}_high")})
                    rows.append(row)
    return pd.DataFrame(rows)


def orders_table(groups: dict[str, list[Run]], table: pd.DataFrame) -> pd.DataFrame:
    """Concept-order robustness: for each setting run in two or more concept orders (the protocol's order_seed),
    per headline metric, the mean over orders of the setting's final figure (each a mean over its seeds), their
    standard deviation, smallest and largest value, and how many orders."""
    by_setting: dict[str, list[str]] = {}
    for label, runs in groups.items():
        by_setting.setdefault(runs[0].setting, []).append(label)
    rows = []
    final = table.set_index("setting")
    for setting, labels in by_setting.items():
        if len({groups[label][0].order_seed for label in labels}) < 2:
            continue
        for metric in in_view("headline"):
            if metric not in final.columns:
                continue
            values = final.loc[labels, metric].astype(float).dropna()
            if len(values) < 2:
                continue
            rows.append(
                {
                    "setting": setting,
                    "metric": metric,
                    "orders": len(values),
                    "mean": values.mean(),
                    "sd": values.std(ddof=1),
                    "min": values.min(),
                    "max": values.max(),
                    "range": values.max() - values.min(),
                }
            )
    return pd.DataFrame(rows)


def order_pairs_table(groups: dict[str, list[Run]], pairs: pd.DataFrame) -> pd.DataFrame:
    """Whether a paired comparison survives a change of concept order: for two settings run in the same two or more
    orders, per paired metric, A minus B within each order (the pairs table's row for the two in that order) and
    in how many orders its interval lies above 0 (`above`) or below it (`below`). A difference holds across orders
    only where every order's interval excludes 0 on the same side, on a comparison that gets a verdict in every order
    (`no_verdict`: why not, from the pairs table); `orders` names the orders ("written" for the protocol's own), and
    `differences` gives each order's difference in that order."""
    if not len(pairs):
        return pd.DataFrame()
    setting = {label: runs[0].setting for label, runs in groups.items()}
    order = {label: runs[0].order_seed for label, runs in groups.items()}
    within: dict[tuple[str, str, str], list[tuple]] = {}
    refused: dict[tuple[str, str, str], str] = {}  # why a comparison gets no verdict in some order
    for row in pairs.itertuples(index=False):
        if order[row.a] != order[row.b] or setting[row.a] == setting[row.b]:
            continue
        a, b = setting[row.a], setting[row.b]
        diff, low, high = row.difference, row.ci_low, row.ci_high
        if (b, a, row.metric) in within:  # one orientation per pair of settings
            a, b, diff, low, high = b, a, -diff, -high, -low
        within.setdefault((a, b, row.metric), []).append((order[row.a], diff, low, high))
        if row.verdict.startswith("no verdict"):
            refused.setdefault((a, b, row.metric), row.verdict.removeprefix("no verdict: "))
    rows = []
    for (a, b, metric), per_order in within.items():
        if len(per_order) < 2:
            continue
        per_order.sort(key=lambda x: -1 if x[0] is None else x[0])
        rows.append(
            {
                "a": a,
                "b": b,
                "metric": metric,
                "orders": " ".join("written" if o is None else str(o) for o, *_ in per_order),
                "differences": " ".join(f"{d:+.4f}" for _, d, _, _ in per_order),
                "min": min(d for _, d, _, _ in per_order),
                "max": max(d for _, d, _, _ in per_order),
                "above": sum(low > 0 for _, _, low, _ in per_order),
                "below": sum(high < 0 for _, _, _, high in per_order),
                "n": len(per_order),
                "no_verdict": refused.get((a, b, metric), ""),
            }
        )
    return pd.DataFrame(rows)


def ia_matrix(runs: list[Run]) -> pd.DataFrame:
    """IA[t][c] averaged over the setting's seeds (rows: session, columns: concepts in protocol order)."""
    frames = [r.folder.matrix("IA") for r in runs]
    return sum(frames) / len(frames)


NOT_SHOWN = "(none)"  # a confusion matrix's column of images that show no learned concept


def confusion_matrix(runs: list[Run]) -> pd.DataFrame | None:
    """After each run's last session, pooled over the setting's seeds: per asked concept (rows, protocol order), the
    share of its images that show each learned concept (columns) or none (NOT_SHOWN), as the evaluator sees them
    (the `shown_as` column of the scores). None where the runs predate concept confusion."""
    frames = []
    for run in runs:
        scores = run.scores()
        last = scores[(scores.session == scores.session.max()) & (scores.kind == "concept")]
        if last.confused.isna().all():  # (shown_as reads "" for such runs, as for an image that shows nothing)
            return None
        frames.append(last)
    images = pd.concat(frames)
    order = [n for n in runs[0].learned_in() if n in set(images.name)]
    shown = images.shown_as.replace("", NOT_SHOWN)
    counts = pd.crosstab(images.name, shown)
    counts = counts.reindex(index=order, columns=[*order, NOT_SHOWN], fill_value=0)
    return counts.div(counts.sum(axis=1), axis=0)


def _last_values(run: Run) -> pd.DataFrame:
    scores = run.scores()
    return tables.image_values(scores, int(scores.session.max()), run.learned_in())


MIN_EVENTS, MIN_EVENT_SHARE = 5, 0.01  # a rate's comparison needs this many images of its rarer outcome, and share


@dataclass(frozen=True)
class PrimaryFamily:
    """The comparisons a study declares before its runs (its spec's `primary:`): every setting against each of
    `against`, on each of `metrics`. They are Holm-corrected together; every other comparison is exploratory."""

    against: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    def holds(self, a: str, b: str, metric: str) -> bool:
        return metric in self.metrics and (a in self.against or b in self.against)


def _rate_events(images: list[pd.DataFrame], metric: str) -> tuple[int, int] | None:
    """For a figure whose per-image values are 0/1 outcomes (an excess: its value above 0): the number of images
    with the outcome (a copy, a correct class), summed over seeds, and the number of images; None for any other
    figure."""
    values = np.concatenate([frame.value.to_numpy() for frame in images])
    if METRICS[metric].interval != "excess" and not np.isin(values, (0.0, 1.0)).all():
        return None
    return int(np.sum(values > 0)), len(values)


def pairs_table(
    groups: dict[str, list[Run]], n_boot: int = N_BOOT, primary: PrimaryFamily | None = None
) -> pd.DataFrame:
    """Every pair of settings (A, B) with seeds in common, at the same real-data fold: per paired metric, A minus B
    at the last session, with its interval, p-value and the verdict its multiplicity correction allows.

    Both settings generate the same prompts with the same evaluation seeds, so each image of A has its twin in B
    (prompts compared order-free, tables.order_free_prompts). A metric whose images do not all have twins is not
    paired: a difference over the images two runs happen to share would not be the difference of their figures
    (IAD of runs in different concept orders covers different earlier concepts; runs with other prompts or seeds).
    Per common seed the difference is computed from the twins' differences (tables.paired_figure). Over two or more
    seeds, settings of one method are paired by seed (seed s draws the same random stream in both, and a knob
    changes what is done with it): a t-interval on the per-seed differences and its t-test, `seeds_agree` the seeds
    whose difference has the mean's sign. Settings of two methods share no random stream at a seed, so pairing
    their seed s would be arbitrary (swapping two seeds' labels would change the interval): Welch's interval and
    test on each setting's per-seed figures (functional.welch_interval), `seeds_agree` the seeds of A whose figure
    lies on the difference's side of B's mean. With one seed the interval is the bootstrap over that seed's image
    pairs (conditional on the seed).

    A verdict needs a corrected p below 0.05: the `primary` family (declared in the study spec) is Holm-corrected,
    every other comparison Benjamini-Hochberg-corrected among the exploratory ones (`correction`, `p_adjusted`). No
    verdict is given, and the comparison is left out of its family's correction, on a metric that no run has shown
    can move (METRICS' `unvalidated`) or on a rate whose rarer outcome, over both settings' images together, has
    fewer than 5 images or under 1% of them (`ones_a`, `ones_b`: each setting's images with the outcome, of
    `images` each).
    """
    primary = primary or PrimaryFamily()
    values = {label: {r.seed: _last_values(r) for r in runs} for label, runs in groups.items()}
    rows = []
    for a, b in itertools.combinations(groups, 2):
        common = sorted(set(values[a]) & set(values[b]))
        if not common or _fold(groups[a]) != _fold(groups[b]):  # other folds: other shots and references
            continue
        paired = _paired_by_seed(groups[a], groups[b])
        for metric in in_view("pairs"):
            per_seed, images_a, images_b = [], [], []
            for seed in common:
                va, vb = (values[x][seed] for x in (a, b))
                ia, ib = va[va.metric == metric], vb[vb.metric == metric]
                twins = ia.merge(ib, on=tables.IMAGE_KEYS)
                if len(twins) and len(twins) == len(ia) == len(ib):  # every image has its twin, or no pair
                    diff = twins.assign(value=twins.value_x - twins.value_y)
                    per_seed.append(tables.paired_figure(metric, diff, n_boot))
                    images_a.append(ia)
                    images_b.append(ib)
            if not per_seed:
                continue
            points = np.array([p[0] for p in per_seed])
            if paired:
                spread = len(per_seed) > 1 and np.ptp(points) > 0
            else:  # each setting's own per-seed figures
                figures_a = np.array([tables.figure_of(metric, frame) for frame in images_a])
                figures_b = np.array([tables.figure_of(metric, frame) for frame in images_b])
                spread = len(per_seed) > 1 and (np.ptp(figures_a) > 0 or np.ptp(figures_b) > 0)
            agree = np.sign(points)  # by seed (one seed, or paired by seed)
            if spread and paired:
                value, low, high = F.t_interval(points)
                p_value = F.t_test_p(points)
            elif spread:
                value, low, high, p_value = F.welch_interval(figures_a, figures_b)
                agree = np.sign(figures_a - figures_b.mean())
            else:  # one seed, or seeds whose differences are identical: the widest image-pair bootstrap
                value = float(points.mean())
                low, high = min(p[1] for p in per_seed), max(p[2] for p in per_seed)
                p_value = max(p[3] for p in per_seed)
            events_a, events_b = _rate_events(images_a, metric), _rate_events(images_b, metric)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "metric": metric,
                    "difference": value,
                    "ci_low": low,
                    "ci_high": high,
                    "p_value": p_value,
                    "family": "primary" if primary.holds(a, b, metric) else "exploratory",
                    "seeds": len(per_seed),
                    "seeds_agree": int((agree == np.sign(value)).sum()) if value != 0 else 0,
                    "interval": ("t over seeds" if paired else "Welch t over seeds (two methods: unpaired)")
                    if spread
                    else "bootstrap over image pairs (one seed)"
                    if len(per_seed) == 1
                    else "bootstrap over image pairs (seeds identical)",
                    "ones_a": events_a[0] if events_a else np.nan,
                    "ones_b": events_b[0] if events_b else np.nan,
                    "images": events_a[1] if events_a else np.nan,
                    "no_verdict": _no_verdict(metric, events_a, events_b),
                }
            )
    table = pd.DataFrame(rows)
    if not len(table):
        return table
    table["correction"] = np.where(table.family == "primary", "Holm", "Benjamini-Hochberg")
    table["p_adjusted"] = np.nan
    for family, correct in (("primary", F.holm), ("exploratory", F.benjamini_hochberg)):
        tested = (table.family == family) & (table.no_verdict == "")
        table.loc[tested, "p_adjusted"] = correct(table.loc[tested, "p_value"].to_numpy())
    table["verdict"] = [
        f"no verdict: {row.no_verdict}" if row.no_verdict else _verdict(row) for row in table.itertuples(index=False)
    ]
    return table.drop(columns="no_verdict")


def _paired_by_seed(runs_a: list[Run], runs_b: list[Run]) -> bool:
    """Whether seed s of two settings shares a random stream, so that their per-seed differences pair: settings of
    one method do; two methods consume their draws differently, and their seed s have nothing in common."""
    return runs_a[0].method == runs_b[0].method


def _fold(runs: list[Run]) -> int:
    """The real-data fold a setting's runs hold out (Run.fold). Settings at different folds trained on other shots and
    measure IA against other references, so their images are not twins."""
    return runs[0].fold


def _no_verdict(metric: str, events_a: tuple[int, int] | None, events_b: tuple[int, int] | None) -> str:
    """Why a comparison on `metric` can give no verdict ("" where it can)."""
    if METRICS[metric].unvalidated:
        return METRICS[metric].unvalidated
    if events_a is not None and events_b is not None:
        ones, images = events_a[0] + events_b[0], events_a[1] + events_b[1]
        rarer = min(ones, images - ones)  # over both settings: 1.0 against 0.0 has every image as an event
        if rarer < MIN_EVENTS or rarer < MIN_EVENT_SHARE * images:
            return f"too few events ({rarer} of the {images} images of both settings have the rarer outcome)"
    return ""


def _verdict(row) -> str:
    """Which setting the comparison says is better (or higher, for a metric with no direction): only where the
    corrected p-value is below 0.05 and the interval excludes 0."""
    if not (row.p_adjusted < 0.05 and (row.ci_low > 0 or row.ci_high < 0)):
        return "no difference shown"
    higher = row.a if row.difference > 0 else row.b
    better = METRICS[row.metric].higher_is_better
    if better is None:
        return f"{higher} higher"
    return f"{higher if better else (row.b if higher == row.a else row.a)} better"
