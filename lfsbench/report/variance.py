"""Where the noise of a figure comes from, and what drawing fewer evaluation images between sessions costs.

A run's figure (IA after the last session, say) moves when any of these is drawn again:

    images    the evaluation images: the run's own interval over images (its half-width / 1.96)
    prompts   a concept's evaluation prompts (fixed by the protocol; what other prompts of the kind would move)
    concepts  the concepts (fixed by the protocol; what other concepts of the same kind would move)
    orders    the concept order, beyond the images' share (runs of one method in several orders)
    seeds     the training seed, beyond the images' share (a seeds report: its per-session t-intervals over seeds)

`components` estimates each as the standard deviation it adds to a run's figure (method of moments on the per-image
values: prompt and concept means, balanced designs; a negative variance estimate is shown as 0). Prompts and
concepts are the same in every replication of a protocol, so only images, orders and seeds widen an interval over
replications; prompts and concepts say how far the figure is from one on other prompts and concepts.

`allocation` answers the sizing question: the evaluation images of a (concept, session) neither right after the
concept was learned nor after the last session (nor a checkpoint) are used only by the in-between points of the
curves. Drawing fewer of them (`evaluation.between_images_per_prompt`: the first k seeds of each prompt, the very
images a run with that setting draws) widens those points' run intervals; over replications the width grows by
sqrt((V + se_k^2) / (V + se^2)), V the replication variance beyond images (orders or seeds), se and se_k the run's
image noise with all images and with k. It also recomputes the curves of the order runs from the subset (their
t-interval widths over orders, directly). Summary figures read only full sessions: unchanged, except
`forgetting_max`, whose peak runs over every session since learning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lfsbench.evaluation import tables
from lfsbench.evaluation.metrics import METRICS, in_view
from lfsbench.evaluation.plan import full_count_session
from lfsbench.evaluation.records import Kind
from lfsbench.report.runs import Run

Z = 1.959963984540054  # the normal quantile of a 95% interval
T2 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5%: the seeds reports' 3-seed intervals


def figures_with_intervals() -> list[str]:
    """The figures of the summary and the curves that have an interval (those an allocation can widen)."""
    names = dict.fromkeys(in_view("summary") + in_view("curve"))
    return [m for m in names if METRICS[m].has_interval and METRICS[m].aggregate not in ("given", "count")]


def between_subset(run: Run, keep: int) -> pd.DataFrame:
    """The run's scores as a run with `between_images_per_prompt: keep` would hold them: in the (concept or class,
    session) cells that are not full-count cells, only the images of each prompt's first `keep` seeds (class images
    scored against a concept's references carry no seed: the same positions in their class's job)."""
    scores = run.scores()
    protocol = run.identity.protocol
    learned_in = run.learned_in()
    first_seed = protocol.evaluation.seed
    n = protocol.evaluation.images_per_prompt
    concept_class = _concept_classes(scores)
    class_sessions: dict[str, set[int]] = {}
    for concept, session in learned_in.items():
        class_sessions.setdefault(concept_class.get(concept, concept), set()).add(session)

    def learned_sessions(kind: str, name: str) -> set[int]:
        if kind in (Kind.CLASS, Kind.CLASS_FOR_CONCEPT):
            return class_sessions.get(name if kind == Kind.CLASS else concept_class.get(name, name), set())
        return {learned_in[name]}

    keep_rows = np.ones(len(scores), dtype=bool)
    for (t, kind, name), rows in scores.groupby(["session", "kind", "name"], sort=False):
        if kind in (Kind.BASE_CLASS, Kind.BASE_CLASS_FOR_CONCEPT, Kind.MULTI, Kind.UNTOUCHED, Kind.BASE_UNTOUCHED):
            continue  # the base model's images (computed once per study), two-concept prompts, untouched classes
            # (their own image count): never reduced
        if full_count_session(protocol, int(t), learned_sessions(kind, name)):
            continue
        if kind == Kind.CLASS_FOR_CONCEPT:
            position = np.arange(len(rows)) % n
            keep_rows[rows.index.to_numpy()] = position < keep
        else:
            keep_rows[rows.index.to_numpy()] = rows.seed.to_numpy() < first_seed + keep
    return scores[keep_rows].reset_index(drop=True)


def _concept_classes(scores: pd.DataFrame) -> dict[str, str]:
    """Each concept's class noun, read from the scores: the class evaluated in the session that taught it whose
    images its class-prompt records were scored from (the class rows share the concept's session)."""
    out = {}
    concepts = scores[scores.kind == Kind.CONCEPT]
    classes = scores[scores.kind == Kind.CLASS]
    for name, rows in concepts.groupby("name"):
        prompt = rows.prompt.iloc[0]
        nouns = [noun for noun in classes.name.unique() if prompt.endswith(f" {noun}") or f" {noun} " in prompt]
        if nouns:
            out[name] = max(nouns, key=len)
    return out


def session_figures(scores: pd.DataFrame, learned_in: dict[str, int], n_boot: int) -> pd.DataFrame:
    """Per session after which every learned concept was evaluated: each figure's value and its image noise (the
    run interval's half-width / 1.96)."""
    rows = []
    for t in tables.full_sessions(scores, learned_in):
        figures = tables.session_figures(scores, t, learned_in, n_boot)
        for name in figures_with_intervals():
            if name in figures:
                f = figures[name]
                rows.append(
                    {"session": t, "metric": name, "value": f["value"], "se": (f["ci_high"] - f["ci_low"]) / (2 * Z)}
                )
    return pd.DataFrame(rows)


def prompt_concept_components(run: Run, t: int) -> pd.DataFrame:
    """For the per-image figures after session t: the standard deviation that the prompts and the concepts add
    to the run's figure (nested method of moments over concept, prompt and image; balanced designs)."""
    values = tables.Values(tables.order_free_prompts(run.scores()), t)
    learned_in = run.learned_in()
    rows = []
    for name in figures_with_intervals():
        m = METRICS[name]
        if m.per_image:
            now = values.now(name)
        elif m.aggregate == "drop":
            every = values.all(m.source)
            first = every[every.session == every.name.map(learned_in)]
            now = values.now(m.source)
            now = now[now.name.map(learned_in) < t].merge(first, on=tables.IMAGE_KEYS, suffixes=("", "_first"))
            now = now.assign(value=now.value_first - now.value)
        else:
            continue
        now = now[now.prompt != ""]
        if now.empty or now.name.nunique() < 1:
            continue
        cells = now.groupby(["name", "prompt"]).value
        n = cells.size().mean()
        within = cells.var(ddof=1).mean()
        prompt_means = cells.mean()
        by_concept = prompt_means.groupby(level="name")
        p = by_concept.size().mean()
        c = by_concept.ngroups
        prompt_var = max(0.0, by_concept.var(ddof=1).mean() - within / n) if p > 1 else np.nan
        concept_means = by_concept.mean()
        concept_var = (
            max(0.0, concept_means.var(ddof=1) - (0 if np.isnan(prompt_var) else prompt_var) / p - within / (n * p))
            if c > 1
            else np.nan
        )
        rows.append(
            {
                "metric": name,
                "prompts_sd": float(np.sqrt(prompt_var / (p * c))),
                "concepts_sd": float(np.sqrt(concept_var / c)),
            }
        )
    return pd.DataFrame(rows)


def seeds_variance(curves: pd.DataFrame) -> pd.DataFrame:
    """From a seeds report's curves.csv (3 seeds per setting): per setting, session and figure, the variance of a
    run's figure over training seeds (its t-interval's half-width -> the sample standard deviation)."""
    rows = curves[(curves.seeds == 3) & curves.metric.isin(figures_with_intervals())].copy()
    half = (rows.ci_high - rows.ci_low) / 2
    rows["var"] = (half * np.sqrt(3) / T2) ** 2
    return rows.rename(columns={"setting": "method"})[["method", "session", "metric", "var"]]


def components(order_runs: list[Run], seed_curves: pd.DataFrame | None, n_boot: int) -> pd.DataFrame:
    """Per method and figure after the last session: the standard deviation each source adds to a run's figure
    (images, prompts, concepts, orders, seeds; the module docstring). `order_runs` are one method's runs in several
    concept orders (the written order among them, the run whose images, prompts and concepts are measured)."""
    rows = []
    columns = ["method", "session", "metric", "var"]
    seeds = seeds_variance(seed_curves) if seed_curves is not None else pd.DataFrame(columns=columns)
    for method, runs in _by_method(order_runs).items():
        written = next((r for r in runs if r.order_seed is None), runs[0])
        last = int(written.scores().session.max())
        per_run = [session_figures(r.scores(), r.learned_in(), n_boot) for r in runs]
        final = pd.concat([f[f.session == last].assign(run=i) for i, f in enumerate(per_run)])
        nested = prompt_concept_components(written, last).set_index("metric")
        for name, of_metric in final.groupby("metric", sort=False):
            own = of_metric[of_metric.run == runs.index(written)]
            se = float(own.se.iloc[0]) if len(own) else np.nan
            orders_var = of_metric.value.var(ddof=1) - (of_metric.se**2).mean() if len(of_metric) > 1 else np.nan
            seed_var = seeds[(seeds.method == method) & (seeds.session == last) & (seeds.metric == name)]
            seeds_sd = np.sqrt(max(0.0, float(seed_var["var"].iloc[0]) - se**2)) if len(seed_var) else np.nan
            rows.append(
                {
                    "method": method,
                    "metric": name,
                    "images_sd": se,
                    "prompts_sd": nested.prompts_sd.get(name, np.nan),
                    "concepts_sd": nested.concepts_sd.get(name, np.nan),
                    "orders_sd": np.sqrt(max(0.0, orders_var)) if not np.isnan(orders_var) else np.nan,
                    "seeds_sd": seeds_sd,
                }
            )
    return pd.DataFrame(rows)


def allocation(order_runs: list[Run], seed_curves: pd.DataFrame | None, keeps: list[int], n_boot: int) -> pd.DataFrame:
    """Per method, figure, session and candidate `keep` (images per prompt between sessions): the width ratio of
    the interval over replications against all images, predicted from the components over orders and over seeds
    and measured directly over the order runs (the module docstring)."""
    seeds = seeds_variance(seed_curves) if seed_curves is not None else None
    rows = []
    for method, runs in _by_method(order_runs).items():
        full = [session_figures(r.scores(), r.learned_in(), n_boot).assign(run=i) for i, r in enumerate(runs)]
        full = pd.concat(full)
        for keep in keeps:
            subset = [
                session_figures(between_subset(r, keep), r.learned_in(), n_boot).assign(run=i)
                for i, r in enumerate(runs)
            ]
            both = full.merge(pd.concat(subset), on=["run", "session", "metric"], suffixes=("", "_k"))
            for (t, name), cell in both.groupby(["session", "metric"]):
                se2, se2_k = float((cell.se**2).mean()), float((cell.se_k**2).mean())
                orders_var = max(0.0, cell.value.var(ddof=1) - se2)
                row = {
                    "method": method,
                    "metric": name,
                    "session": int(t),
                    "keep": keep,
                    "changed": bool((cell.value != cell.value_k).any()),
                    "orders_ratio": _ratio(orders_var, se2, se2_k),
                    "orders_measured": float(cell.value_k.std(ddof=1) / cell.value.std(ddof=1))
                    if cell.value.std(ddof=1) > 0
                    else np.nan,
                }
                if seeds is not None:
                    s = seeds[(seeds.method == method) & (seeds.session == t) & (seeds.metric == name)]
                    written = cell[cell.run == _written_index(runs)]
                    if len(s) and len(written):
                        se_w, se_wk = float(written.se.iloc[0]) ** 2, float(written.se_k.iloc[0]) ** 2
                        row["seeds_ratio"] = _ratio(max(0.0, float(s["var"].iloc[0]) - se_w), se_w, se_wk)
                rows.append(row)
    return pd.DataFrame(rows)


def _ratio(variance: float, se2: float, se2_k: float) -> float:
    """How much wider an interval over replications becomes when a run's image noise grows from se2 to se2_k."""
    total = variance + se2
    return float(np.sqrt((variance + se2_k) / total)) if total > 0 else 1.0


def _written_index(runs: list[Run]) -> int:
    return next((i for i, r in enumerate(runs) if r.order_seed is None), 0)


def _by_method(runs: list[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for run in runs:
        out.setdefault(run.method, []).append(run)
    return out
