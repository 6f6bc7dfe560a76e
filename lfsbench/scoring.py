"""From per-image scores to session rows, matrices and the run summary (pure functions over DataFrames)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lfsbench import metrics

# metric names as they appear in the CSVs
TA, CLIPSCORE, IA, CLASS_TA, DRIFT = "TA", "CLIPScore", "IA", "class_TA", "drift"
IA_BASE_CLASS_PROMPT = "IA_base_class_prompt"  # base model's class-prompt images vs the concept's shots
IA_CLASS_PROMPT = "IA_class_prompt"  # the current model's class-prompt images vs the concept's shots
IAD, FORGETTING_MAX = "IAD", "forgetting_max"
# in-context control: the base model generating from the method's stored contexts (same strength and seeds)
TA_CONTROL, IA_CONTROL = "TA_control", "IA_control"


def _row(session, name, kind, learned_in, metric, values, n_boot, seed=0):
    mean, lo, hi = metrics.bootstrap_ci(values, n_boot, seed=seed)
    return {"session": session, "name": name, "kind": kind, "learned_in": learned_in, "metric": metric,
            "value": mean, "ci_low": lo, "ci_high": hi, "n": int(len(values))}


def bootstrap_drop(first: list[np.ndarray], last: list[np.ndarray], n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean over concepts of mean(first_c) - mean(last_c), with a bootstrap over each concept's images."""
    if not first:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    point = float(np.mean([f.mean() - l.mean() for f, l in zip(first, last)]))
    draws = np.zeros(n_boot)
    for f, l in zip(first, last):
        draws += f[rng.integers(0, len(f), (n_boot, len(f)))].mean(1) - l[rng.integers(0, len(l), (n_boot, len(l)))].mean(1)
    draws /= len(first)
    return point, float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def session_rows(scores: pd.DataFrame, all_scores: pd.DataFrame, t: int, learned_in: dict[str, int],
                 class_first: dict[str, int], n_boot: int) -> pd.DataFrame:
    """Rows of session t: per concept TA, CLIPScore, IA, IA of the class prompt, IAD and max-forgetting; per class TA and drift."""
    rows = []
    concepts = scores[scores.kind == "concept"]
    for name, group in concepts.groupby("name", sort=False):
        s = learned_in[name]
        rows.append(_row(t, name, "concept", s, TA, group.ta.values, n_boot))
        rows.append(_row(t, name, "concept", s, CLIPSCORE, metrics.clip_score(group.ta.values), n_boot))
        rows.append(_row(t, name, "concept", s, IA, group.ia.values, n_boot))
        for kind, metric in (("base_class_for_concept", IA_BASE_CLASS_PROMPT), ("class_for_concept", IA_CLASS_PROMPT)):
            class_prompt = scores[(scores.kind == kind) & (scores.name == name)]
            rows.append(_row(t, name, "concept", s, metric, class_prompt.ia.values, n_boot))
        control = scores[(scores.kind == "control") & (scores.name == name)]
        if len(control):
            rows.append(_row(t, name, "concept", s, TA_CONTROL, control.ta.values, n_boot))
            rows.append(_row(t, name, "concept", s, IA_CONTROL, control.ia.values, n_boot))
        if s < t:
            history = all_scores[(all_scores.kind == "concept") & (all_scores.name == name)]
            first = history[history.session == s].ia.values
            mean, lo, hi = bootstrap_drop([first], [group.ia.values], n_boot)
            rows.append({"session": t, "name": name, "kind": "concept", "learned_in": s, "metric": IAD,
                         "value": mean, "ci_low": lo, "ci_high": hi, "n": int(len(group))})
            peak = history[history.session < t].groupby("session").ia.mean().max()
            rows.append({"session": t, "name": name, "kind": "concept", "learned_in": s, "metric": FORGETTING_MAX,
                         "value": float(peak - group.ia.mean()), "ci_low": np.nan, "ci_high": np.nan, "n": int(len(group))})
    for name, group in scores[scores.kind == "class"].groupby("name", sort=False):
        rows.append(_row(t, name, "class", class_first[name], CLASS_TA, group.ta.values, n_boot))
        rows.append(_row(t, name, "class", class_first[name], DRIFT, group.drift.values, n_boot))
    return pd.DataFrame(rows)


def matrix(rows: pd.DataFrame, metric: str, concept_order: list[str]) -> pd.DataFrame:
    """metric[t][c] over sessions (rows) and concepts (columns), NaN before a concept is learned."""
    sub = rows[(rows.kind == "concept") & (rows.metric == metric)]
    table = sub.pivot(index="session", columns="name", values="value")
    return table.reindex(columns=[c for c in concept_order if c in table.columns])


def summarize(rows: pd.DataFrame, scores: pd.DataFrame, cost: pd.DataFrame, learned_in: dict[str, int],
              drift_scale: float, n_boot: int) -> dict:
    """Headline numbers at the last finished session, with 95% intervals, and the cost totals."""
    last = int(rows.session.max())
    final = scores[scores.session == last]
    concepts = final[final.kind == "concept"]
    classes = final[final.kind == "class"]
    earlier = [c for c, s in learned_in.items() if s < last and c in set(concepts.name)]
    first = [scores[(scores.kind == "concept") & (scores.name == c) & (scores.session == learned_in[c])].ia.values for c in earlier]
    now = [concepts[concepts.name == c].ia.values for c in earlier]
    iad = bootstrap_drop(first, now, n_boot)
    fmax = rows[(rows.session == last) & (rows.metric == FORGETTING_MAX)].value
    right_after = rows[(rows.metric == IA) & (rows.session == rows.learned_in)]
    class_after = rows[(rows.metric == IA_CLASS_PROMPT) & (rows.session == rows.learned_in)]
    base_class = rows[(rows.metric == IA_BASE_CLASS_PROMPT) & (rows.session == rows.learned_in)]

    def ci(values):
        mean, lo, hi = metrics.bootstrap_ci(values, n_boot)
        return {"value": mean, "ci_low": lo, "ci_high": hi}

    summary = {
        "sessions_finished": last + 1,
        "TA": ci(concepts.ta.values),
        "CLIPScore": ci(metrics.clip_score(concepts.ta.values)),
        "IA": ci(concepts.ia.values),
        "IAD": {"value": iad[0], "ci_low": iad[1], "ci_high": iad[2], "definition": "mean over earlier concepts of IA[s(c)][c] - IA[T][c] (Avalanche)"},
        "forgetting_max": {"value": float(fmax.mean()) if len(fmax) else float("nan"), "definition": "max over u of IA[u][c] - IA[T][c] (Mammoth)"},
        "IA_right_after_learning": float(right_after.value.mean()),
        "IA_base_class_prompt": float(base_class.value.mean()),
        "IA_class_prompt_right_after_learning": float(class_after.value.mean()),
        "concepts_above_base_class_prompt_right_after_learning": int(
            (right_after.set_index("name").value > base_class.set_index("name").value).sum()),
        "concepts": int(len(right_after)),
        "class_TA": ci(classes.ta.values),
        "drift": ci(classes.drift.values),
        "drift_seed_scale": drift_scale,
    }
    control = final[final.kind == "control"]
    if len(control):
        # paired by prompt and seed: the method's image and the control's start from the same context and noise
        paired = concepts.merge(control, on=["name", "prompt", "seed"], suffixes=("", "_control"))
        summary["TA_control"] = ci(control.ta.values)
        summary["IA_control"] = ci(control.ia.values)
        summary["IA_gain_over_control"] = {**ci((paired.ia - paired.ia_control).values),
                                           "definition": "IA of the method minus IA of the base model from the same contexts, paired by prompt and seed"}
    if len(cost):
        summary["cost"] = {
            "train_seconds_total": float(cost.train_s.sum()),
            "train_seconds_per_session": float(cost.train_s.mean()),
            "generate_seconds_total": float(cost.generate_s.sum()),
            "evaluate_seconds_total": float(cost.evaluate_s.sum()),
            "peak_memory_mb": float(cost.peak_memory_mb.max()),
            "trainable_parameters": int(cost.trainable_parameters.iloc[-1]),
            "delta_bytes": int(cost.delta_bytes.iloc[-1]),
            "stored_bytes": int(cost.stored_bytes.iloc[-1]),
        }
    return summary


def flat_summary(summary: dict) -> dict:
    """One CSV row of the summary: nested keys joined with dots."""
    out = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if k != "definition"})
        else:
            out[key] = value
    return out
