"""The benchmark's metrics as pure functions over embeddings and per-image values (docs/metrics.md), and the
intervals around them: bootstraps over images within a run, Student-t over seeds, Welch between two methods' seeds.

Embeddings are L2-normalised rows.
"""

from __future__ import annotations

import numpy as np
import torch


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def text_alignment_scores(image_emb, text_emb) -> np.ndarray:
    """Per-image cos(E_i(x), E_t(p~)): row i of each input belongs to the same generated image."""
    return np.sum(_np(image_emb) * _np(text_emb), axis=-1)


def clip_score(cosines) -> np.ndarray:
    """CLIPScore as CustomConcept101 reports it: 2.5 * max(cos, 0)."""
    return 2.5 * np.maximum(_np(cosines), 0.0)


def image_alignment_scores(generated_emb, reference_emb) -> np.ndarray:
    """Per generated image, the mean cosine to every reference image (IA averages these over images)."""
    return (_np(generated_emb) @ _np(reference_emb).T).mean(axis=1)


def recognition_bar(base_class_emb, reference_emb, quantile: float = 0.95) -> float:
    """How much a concept's references an image must resemble to be shown as that concept: the `quantile` of the
    base model's images of its class (their image_alignment_scores against the references). An image past it
    resembles the concept more than 95% of the base model's generic members of its class do."""
    return float(np.quantile(image_alignment_scores(base_class_emb, reference_emb), quantile))


def shown_concepts(generated_emb, references: list, bars) -> np.ndarray:
    """Per generated image, which concept it shows: the index of the concept whose references it resembles most
    (image_alignment_scores), where that resemblance is past the concept's recognition_bar; -1 where it is not (it
    resembles no concept more than generic members of the class do)."""
    scores = np.stack([image_alignment_scores(generated_emb, refs) for refs in references], axis=1)
    nearest = scores.argmax(axis=1)
    passed = scores[np.arange(len(scores)), nearest] > np.asarray(bars, dtype=float)[nearest]
    return np.where(passed, nearest, -1)


def paired_drift_scores(emb, base_emb) -> np.ndarray:
    """Per image, 1 - cos(E_i(x_t), E_i(x_base)) for the same prompt and seed."""
    return 1.0 - np.sum(_np(emb) * _np(base_emb), axis=-1)


def bootstrap_means(values, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap draws of the mean of per-image values (resampling images)."""
    v = _np(values).astype(float).ravel()
    rng = np.random.default_rng(seed)
    return v[rng.integers(0, len(v), size=(n_resamples, len(v)))].mean(axis=1)


def bootstrap_ci(values, n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of the mean of per-image values."""
    v = _np(values).astype(float).ravel()
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    means = bootstrap_means(v, n_resamples, seed)
    alpha = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def bootstrap_p(draws) -> float:
    """Two-sided p-value of "the mean is 0" from bootstrap draws of the mean: twice the smaller share of draws at
    or beyond 0 on either side, counted as (k + 1) / (n + 1) so that it is never 0, at most 1."""
    d = _np(draws).astype(float).ravel()
    if len(d) == 0:
        return float("nan")
    k = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return float(min(1.0, 2 * (k + 1) / (len(d) + 1)))


def wilson_interval(outcomes, level: float = 0.95) -> tuple[float, float, float]:
    """The share of 1s among 0/1 outcomes with its Wilson score interval (never of zero width, inside [0, 1])."""
    v = _np(outcomes).astype(float).ravel()
    return wilson_counts(float(v.sum()), len(v), level)


def wilson_counts(ones: float, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """The share ones / n with its Wilson score interval (wilson_interval, from counts: pooled over seeds)."""
    from scipy import stats

    if n == 0:
        return float("nan"), float("nan"), float("nan")
    p, z = ones / n, stats.norm.ppf(0.5 + level / 2)
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    # at p = 0 or 1 one bound equals p up to rounding (1e-17 to the wrong side): it is held on p's side
    return float(p), float(min(p, max(0.0, centre - half))), float(max(p, min(1.0, centre + half)))


def excess_interval(excess, level: float = 0.95) -> tuple[float, float, float]:
    """The mean of per-image excesses e = c - n (c a 0/1 outcome, n < 1 its probability under a null) with an
    interval: the Wilson interval of the share of 1s (c = 1 exactly where e > 0) shifted by the mean null. Never of
    zero width, unlike a bootstrap of all-zero outcomes."""
    e = _np(excess).astype(float).ravel()
    if len(e) == 0:
        return float("nan"), float("nan"), float("nan")
    hits = (e > 0).astype(float)
    null = float((hits - e).mean())
    p, low, high = wilson_interval(hits, level)
    return p - null, low - null, high - null


def roc_auc(positive_scores, negative_scores) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = _np(positive_scores).ravel()[:, None], _np(negative_scores).ravel()[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def bootstrap_drop(
    first: list[np.ndarray], last: list[np.ndarray], n_boot: int, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over concepts of mean(first_c) - mean(last_c), with a bootstrap over each concept's images (IAD and its
    interval)."""
    return bootstrap_peak_drop([[f] for f in first], last, n_boot, seed)


def bootstrap_peak_drop(
    history: list[list[np.ndarray]], last: list[np.ndarray], n_boot: int, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over concepts of max_u mean(history_c[u]) - mean(last_c): forgetting_max, with a bootstrap that resamples
    each session's images of each concept independently (with one session in a history it is IAD's).

    The peak of resampled means sits a little above the peak of the means when sessions are close (the max of noisy
    values is biased upward); the interval shows that spread rather than hiding it.
    """
    if not history:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    point = float(np.mean([max(h.mean() for h in hs) - n.mean() for hs, n in zip(history, last, strict=True)]))
    draws = np.zeros(n_boot)
    for hs, n in zip(history, last, strict=True):
        peak = np.max([h[rng.integers(0, len(h), (n_boot, len(h)))].mean(1) for h in hs], axis=0)
        draws += peak - n[rng.integers(0, len(n), (n_boot, len(n)))].mean(1)
    draws /= len(history)
    return point, float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def mean_of_means_draws(groups: list[np.ndarray], n_boot: int, seed: int = 0) -> tuple[float, np.ndarray]:
    """The mean over groups (concepts) of each group's mean, and its bootstrap draws (resampling each group's
    images)."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return float("nan"), np.array([])
    rng = np.random.default_rng(seed)
    draws = np.mean([g[rng.integers(0, len(g), (n_boot, len(g)))].mean(1) for g in groups], axis=0)
    return float(np.mean([g.mean() for g in groups])), draws


def bootstrap_mean_of_means(groups: list[np.ndarray], n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean over groups (concepts) of each group's mean, with a bootstrap over each group's images (e.g.
    IA_right_after_learning: one group per concept, its images in the session that taught it)."""
    value, draws = mean_of_means_draws(groups, n_boot, seed)
    if not len(draws):
        return float("nan"), float("nan"), float("nan")
    return value, float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of independent replicates (per-seed values): mean +- t_{n-1} s / sqrt(n).

    With n >= 2 replicates it covers the replicates' expected value at the nominal rate when they are roughly
    normal (tests/test_statistics.py measures it); with fewer there is no spread to measure: NaN bounds.
    """
    from scipy import stats

    v = _np(values).astype(float).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def t_test_p(values) -> float:
    """Two-sided p-value of "the replicates' expected value is 0" (one-sample Student t, n - 1 degrees of freedom):
    the test whose confidence interval t_interval gives. NaN with fewer than 2 finite replicates or no spread."""
    from scipy import stats

    v = _np(values).astype(float).ravel()
    v = v[np.isfinite(v)]
    if len(v) < 2 or np.ptp(v) == 0:
        return float("nan")
    t = v.mean() / (v.std(ddof=1) / np.sqrt(len(v)))
    return float(2 * stats.t.sf(abs(t), len(v) - 1))


def welch_interval(a, b, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean of `a` minus mean of `b` with Welch's interval and two-sided p-value: two independent sets of replicates
    (per-seed figures of two methods, whose seed s share no random stream), unequal variances, Welch-Satterthwaite
    degrees of freedom. NaN bounds and p with fewer than 2 finite values on a side or no spread on either."""
    from scipy import stats

    a, b = (v[np.isfinite(v)] for v in (_np(a).astype(float).ravel(), _np(b).astype(float).ravel()))
    if not len(a) or not len(b):
        return float("nan"), float("nan"), float("nan"), float("nan")
    value = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return value, float("nan"), float("nan"), float("nan")
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # Welch's limit (df = n - 1 of the other side), without scipy's warning
        differences = a - b.mean() if np.ptp(b) == 0 else a.mean() - b
        _, low, high = t_interval(differences, level)
        return value, low, high, t_test_p(differences)
    test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(level)
    return value, float(interval.low), float(interval.high), float(test.pvalue)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN stays NaN and is not counted."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]) if m else np.array([])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate control, scipy's false_discovery_control); NaN stays NaN
    and is not counted."""
    from scipy import stats

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out
