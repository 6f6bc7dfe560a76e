"""From per-image score records to session rows, matrices, session figures and the run summary.

Pure functions over pandas frames (scores: records.COLUMNS; rows: sessions/session_XX.csv). Every figure is computed
by iterating the metric table (evaluation/metrics.py), whose entries say which records a figure reads, its
per-image value, how images become the figure and its interval; nothing here names a metric. The aggregations
themselves (means, IAD's drop, the max-based peak, the bootstrap and Wilson intervals) are functional.py's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lfsbench.concepts import TOKEN_PATTERN
from lfsbench.evaluation import functional as F
from lfsbench.evaluation.metrics import IMAGE_KEYS, METRICS, Metric, in_view
from lfsbench.evaluation.records import MEASURED, Kind, with_optional_columns

NAN3 = (float("nan"), float("nan"), float("nan"))


def non_finite(scores: pd.DataFrame) -> str | None:
    """Where a session's scores hold NaN or infinity (images that are NaN: training diverged), or None."""
    for kind, columns in MEASURED.items():
        rows = scores[scores.kind == kind]
        for column in columns:
            bad = rows[~np.isfinite(rows[column].astype(float))]
            if len(bad):
                names = ", ".join(dict.fromkeys(bad.name))
                return f"{len(bad)} {kind.value} images ({names}) have a {column} that is not a number"
    return None


class Values:
    """Every per-image metric's values over a run's scores so far (each computed once): `now(m)` after session t,
    `of(m, name, u)` a name's values after session u; `at(t)` the same values read after another session."""

    def __init__(self, history: pd.DataFrame, t: int, _shared: Values | None = None):
        """`_shared` (for `at`): a Values of the same scores whose per-session computations this one reuses."""
        assert _shared is None or history is _shared.history, "a shared Values must hold the same scores"
        self.history = with_optional_columns(history) if _shared is None else _shared.history
        self.t = t
        self._all: dict[str, pd.DataFrame] = {} if _shared is None else _shared._all
        self._now: dict[str, pd.DataFrame] = {}
        self._by_name_session: dict[str, dict[tuple[str, int], np.ndarray]] = (
            {} if _shared is None else _shared._by_name_session
        )

    def at(self, t: int) -> Values:
        """The same scores' values after session t, sharing what was computed (each metric's values over all
        sessions): a run's curve computes every metric once, not once per session."""
        return Values(self.history, t, _shared=self)

    def all(self, metric: str) -> pd.DataFrame:
        if metric not in self._all:
            self._all[metric] = METRICS[metric].values(self.history)
        return self._all[metric]

    def now(self, metric: str) -> pd.DataFrame:
        if metric not in self._now:
            values = self.all(metric)
            self._now[metric] = values[values.session == self.t]
        return self._now[metric]

    def of(self, metric: str, name: str, session: int) -> np.ndarray:
        if metric not in self._by_name_session:  # one grouping per metric, not one filter per (name, session)
            values = self.all(metric)
            self._by_name_session[metric] = {
                (n, int(s)): g.value.to_numpy() for (n, s), g in values.groupby(["name", "session"], sort=False)
            }
        return self._by_name_session[metric].get((name, session), np.empty(0))

    def sessions_between(self, metric: str, name: str, first: int, last: int) -> list[np.ndarray]:
        """A name's values after each session u with first <= u < last after which it was evaluated."""
        values = self.all(metric)
        values = values[(values.name == name) & (values.session >= first) & (values.session < last)]
        return [g.value.to_numpy() for _, g in values.groupby("session")]


def _mean(metric: Metric, values: Values, names: list[str] | None, n_boot: int):
    """The mean of a per-image metric's values after values.t (of `names` only, if given), with its interval over
    images (a Wilson interval for a proportion): (value, low, high, images)."""
    now = values.now(metric.name)
    if names is not None:
        now = now[now.name.isin(names)]
    return (*metric.interval_of(now.value.to_numpy(), n_boot), len(now)) if len(now) else (*NAN3, 0)


def _figure(metric: Metric, values: Values, learned_in: dict[str, int], n_boot: int, names: list[str] | None = None):
    """A figure after values.t (of the concepts `names` only, if given), by the metric's aggregate: (value, low,
    high). A drop and a peak drop cover the concepts evaluated after t that were learned before it, in the order
    they were evaluated; an at-learning figure the concepts learned by t."""
    t, source = values.t, metric.source
    if metric.aggregate == "mean":
        return _mean(metric, values, names, n_boot)[:3]
    if metric.aggregate in ("drop", "peak_drop"):
        evaluated = dict.fromkeys(values.now(source).name)
        earlier = [c for c in evaluated if learned_in[c] < t and (names is None or c in names)]
        if not earlier:
            return NAN3
        now = [values.of(source, c, t) for c in earlier]
        if metric.aggregate == "drop":
            return F.bootstrap_drop([values.of(source, c, learned_in[c]) for c in earlier], now, n_boot)
        peaks = [values.sessions_between(source, c, learned_in[c], t) for c in earlier]
        return F.bootstrap_peak_drop(peaks, now, n_boot)
    if metric.aggregate == "at_learning":
        first = [values.of(source, c, s) for c, s in learned_in.items() if s <= t]
        if metric.has_interval:
            return F.bootstrap_mean_of_means(first, n_boot)
        means = [f.mean() for f in first if len(f)]
        return (float(np.mean(means)), float("nan"), float("nan")) if means else NAN3
    raise ValueError(f"metric {metric.name!r}: no figure from scores for aggregate {metric.aggregate!r}")


def _row(t, name, kind, learned_in, metric, triple, n) -> dict:
    value, low, high = triple
    return {
        "session": t,
        "name": name,
        "kind": kind,
        "learned_in": learned_in,
        "metric": metric,
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "n": int(n),
    }


def session_rows(
    scores: pd.DataFrame,
    history: pd.DataFrame,
    t: int,
    learned_in: dict[str, int],
    class_first: dict[str, int],
    n_boot: int,
) -> pd.DataFrame:
    """Rows of session t: per concept or class, each metric of the `session` view that has values for it (with its
    interval and the number of images): means of per-image values, IAD and the max-based forgetting of concepts
    learned before t.

    `scores` are session t's records, `history` those of every session so far (t included).
    """
    values = Values(pd.concat([history[history.session != t], scores], ignore_index=True), t)
    metrics = [METRICS[m] for m in in_view("session")]
    firsts = {"concept": learned_in, "class": class_first, "untouched": {}}
    names: dict[str, dict[str, None]] = {kind: {} for kind in firsts}
    for m in metrics:
        if m.per_image:
            names[m.row_kind].update(dict.fromkeys(values.now(m.name).name))
    rows = []
    for kind, first in firsts.items():
        for name in names[kind]:
            for m in metrics:
                if m.per_image and m.row_kind == kind:  # a mean over the name's images
                    *triple, n = _mean(m, values, [name], n_boot)
                elif m.aggregate in ("drop", "peak_drop") and METRICS[m.source].row_kind == kind and first[name] < t:
                    triple = _figure(m, values, learned_in, n_boot, [name])
                    n = int((values.now(m.source).name == name).sum())
                else:
                    continue
                if n:  # an untouched class (no concept belongs to it) is learned in no session: -1
                    rows.append(_row(t, name, kind, first.get(name, -1), m.name, triple, n))
    return pd.DataFrame(rows)


def matrix(rows: pd.DataFrame, metric: str, concept_order: list[str]) -> pd.DataFrame:
    """metric[t][c] over sessions (rows) and concepts (columns), NaN where concept c was not evaluated after t."""
    sub = rows[(rows.kind == "concept") & (rows.metric == metric)]
    table = sub.pivot(index="session", columns="name", values="value")
    return table.reindex(columns=[c for c in concept_order if c in table.columns])


def session_figures(
    history: pd.DataFrame, t: int, learned_in: dict[str, int], n_boot: int, values: Values | None = None
) -> dict[str, dict]:
    """The session-level figures after session t, each {value, ci_low, ci_high}: every metric of the `summary` or
    `curve` view computed from the scores (not the given ones), over the concepts and classes evaluated after t (a
    drop over those learned before t). Figures with nothing to average are left out. `values`: the same history's
    Values, to share between sessions (Values.at)."""
    values = values.at(t) if values is not None else Values(history, t)
    learned = {c: s for c, s in learned_in.items() if s <= t}
    out = {}
    for name in dict.fromkeys(in_view("summary") + in_view("curve")):
        m = METRICS[name]
        if m.aggregate == "given":
            continue
        if m.aggregate == "count":
            out[name] = {"value": m.count(lambda metric: _at_learning(values, metric, learned))}
            continue
        value, low, high = _figure(m, values, learned_in, n_boot)
        if not np.isnan(value):
            out[name] = {"value": value, "ci_low": low, "ci_high": high}
            if m.interval == "proportion" and m.aggregate == "mean":  # its count, for a pooled interval over seeds
                out[name]["images"] = len(values.now(m.name))
    return out


def _at_learning(values: Values, metric: str, learned_in: dict[str, int]) -> dict[str, np.ndarray]:
    """Each concept's per-image values of `metric` in the session that taught it (concepts with some)."""
    out = {c: values.of(metric, c, s) for c, s in learned_in.items()}
    return {c: v for c, v in out.items() if len(v)}


def order_free_prompts(history: pd.DataFrame) -> pd.DataFrame:
    """The scores with each modifier token in a prompt replaced by its concept's name ("a <new3> circle" -> "a
    <circle-1> circle"). Tokens are numbered in session order, so runs of one protocol in different concept orders
    (order_seed) ask for the same image under different prompts; with the names in their place, the same image has
    the same prompt in every order. A concept's token is the one its own evaluation prompts carry."""
    concepts = history[history.kind == Kind.CONCEPT]
    tokens = concepts.prompt.str.extract(f"({TOKEN_PATTERN.pattern})", expand=False)
    named = dict(zip(tokens[tokens.notna()], concepts.name[tokens.notna()], strict=True))
    if not named:
        return history
    return history.assign(
        prompt=history.prompt.str.replace(TOKEN_PATTERN, lambda m: f"<{named.get(m.group(0), m.group(0))}>", regex=True)
    )


def image_values(history: pd.DataFrame, t: int, learned_in: dict[str, int]) -> pd.DataFrame:
    """Per image after session t, the value each paired metric (the `pairs` view) averages: rows of (metric, name,
    prompt, seed, value). A drop's value is an earlier concept's image value when it was learned minus now (same
    prompt and seed); an at-learning figure's value is a concept's image value in the session that taught it.

    Every run of a protocol draws the same prompts and seeds, so the same rows of two runs are the same image asked
    of two models: the paired comparisons of `lfsbench report` difference them row by row. Prompts are returned
    order-free (`order_free_prompts`), so runs in different concept orders pair image by image too.
    """
    values = Values(order_free_prompts(with_optional_columns(history)), t)
    frames = []
    for name in in_view("pairs"):
        m = METRICS[name]
        now = values.now(m.source)
        if m.aggregate == "drop":
            every = values.all(m.source)
            first = every[every.session == every.name.map(learned_in)]
            earlier = now[now.name.map(learned_in) < t].merge(first, on=IMAGE_KEYS, suffixes=("", "_first"))
            now = earlier.assign(value=earlier.value_first - earlier.value)
        elif m.aggregate == "at_learning":
            every = values.all(m.source)
            now = every[(every.session == every.name.map(learned_in)) & (every.session <= t)]
        elif m.aggregate != "mean":
            raise ValueError(f"metric {name!r} is paired image by image, which needs a mean, a drop or at_learning")
        frames.append(now[IMAGE_KEYS].assign(metric=name, value=now.value.to_numpy()))
    out = pd.concat(frames, ignore_index=True)
    return out[out.value.notna()][["metric", *IMAGE_KEYS, "value"]]


def paired_figure(metric: str, pairs: pd.DataFrame, n_boot: int) -> tuple[float, float, float, float]:
    """A paired metric's difference from per-image differences (`pairs`: name, value), computed as the summary
    computes the figure, with its 95% bootstrap interval and the bootstrap's two-sided p-value of no difference
    (functional.bootstrap_p): a drop (IAD) or an at-learning figure as the mean over concepts of their mean
    (bootstrap within each concept); a mean as the mean over images (bootstrap over images)."""
    if METRICS[metric].aggregate in ("drop", "at_learning"):
        value, draws = F.mean_of_means_draws([g.value.values for _, g in pairs.groupby("name", sort=False)], n_boot)
    else:
        value, draws = float(pairs.value.mean()), F.bootstrap_means(pairs.value.values, n_boot)
    if not len(draws):
        return float("nan"), float("nan"), float("nan"), float("nan")
    low, high = (float(q) for q in np.quantile(draws, [0.025, 0.975]))
    return value, low, high, F.bootstrap_p(draws)


def figure_of(metric: str, values: pd.DataFrame) -> float:
    """A run's figure from its per-image values (`values`: name, value), computed as paired_figure computes a
    difference: a drop or an at-learning figure as the mean over concepts of their mean, a mean over images."""
    if METRICS[metric].aggregate in ("drop", "at_learning"):
        return float(values.groupby("name", sort=False).value.mean().mean())
    return float(values.value.mean())


def full_sessions(scores: pd.DataFrame, learned_in: dict[str, int]) -> list[int]:
    """Sessions after which every concept learned so far was evaluated (all, unless the protocol has checkpoints)."""
    concepts = scores[scores.kind == Kind.CONCEPT]
    return [
        int(t)
        for t, now in concepts.groupby("session")
        if set(now.name) == {c for c, s in learned_in.items() if s <= t}
    ]


def summarize(scores: pd.DataFrame, cost: pd.DataFrame, learned_in: dict[str, int], given: dict, n_boot: int) -> dict:
    """The run summary at the last finished session: every metric of the `summary` view, as {value, ci_low, ci_high,
    definition} where it has an interval and as a number where not (NaN where a required figure has no values; an
    optional one is left out), the `given` figures the runner computed (the drift scale), and the cost totals."""
    last = int(scores.session.max())
    figures = session_figures(scores, last, learned_in, n_boot)
    summary: dict = {"sessions_finished": last + 1}
    for name in in_view("summary"):
        m = METRICS[name]
        if m.aggregate == "given":
            summary[name] = given[name]
        elif name not in figures and m.optional:
            continue
        elif not m.has_interval:
            summary[name] = figures.get(name, {"value": float("nan")})["value"]
        else:
            figure = figures.get(name, dict(zip(("value", "ci_low", "ci_high"), NAN3, strict=True)))
            summary[name] = {**figure, "definition": m.definition}
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
    values = Values(scores, -1)  # every metric's values computed once, read after each session (Values.at)
    rows = []
    for t in sorted(full | {int(t) for t in cost.session}):
        rows += session_curve(scores, cost, learned_in, t, n_boot, t in full, values)
    return pd.DataFrame(rows)


def session_curve(
    scores: pd.DataFrame,
    cost: pd.DataFrame,
    learned_in: dict[str, int],
    t: int,
    n_boot: int,
    full: bool | None = None,
    values: Values | None = None,
) -> list[dict]:
    """run_curves' rows of session t alone (what a tracker logs after each session). `full`: whether every concept
    learned so far was evaluated after t (computed from the scores when not given); `values`: as session_figures'."""
    if full is None:
        full = t in full_sessions(scores, learned_in)
    rows = []
    for _, row in cost[cost.session == t].iterrows():
        for metric in in_view("cost"):
            if metric != "generate_s" or full:
                v = float(row[metric])
                rows.append({"session": t, "metric": metric, "value": v, "ci_low": v, "ci_high": v})
    if full:
        figures = session_figures(scores, t, learned_in, n_boot, values)
        rows += [{"session": t, "metric": m, **figures[m]} for m in in_view("curve") if m in figures]
    return rows
