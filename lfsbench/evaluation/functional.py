"""The benchmark's metrics as pure functions over embeddings, per-image values and matrices (BENCHMARK.md section 3).

Embeddings are L2-normalised rows; matrices are indexed [session t, concept c] with NaN where concept c was not
(yet) evaluated after session t: before it was learned, or after a session that was not an evaluation checkpoint.
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


def paired_drift_scores(emb, base_emb) -> np.ndarray:
    """Per image, 1 - cos(E_i(x_t), E_i(x_base)) for the same prompt and seed."""
    return 1.0 - np.sum(_np(emb) * _np(base_emb), axis=-1)


def bootstrap_ci(values, n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of the mean of per-image values."""
    v = _np(values).astype(float).ravel()
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_resamples, len(v)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def roc_auc(positive_scores, negative_scores) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = _np(positive_scores).ravel()[:, None], _np(negative_scores).ravel()[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def bootstrap_drop(
    first: list[np.ndarray], last: list[np.ndarray], n_boot: int, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over concepts of mean(first_c) - mean(last_c), with a bootstrap over each concept's images (IAD and its
    interval)."""
    if not first:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    point = float(np.mean([f.mean() - n.mean() for f, n in zip(first, last, strict=True)]))
    draws = np.zeros(n_boot)
    for f, n in zip(first, last, strict=True):
        draws += f[rng.integers(0, len(f), (n_boot, len(f)))].mean(1) - n[
            rng.integers(0, len(n), (n_boot, len(n)))
        ].mean(1)
    draws /= len(first)
    return point, float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


# ---------------------------------------------------------------- matrices


def max_forgetting_at(matrix, learned_at, t: int) -> np.ndarray:
    """Mammoth's forgetting: max over evaluated s(c) <= u < t of M[u, c], minus M[t, c] (NaN if learned at or after t).

    Under evaluation checkpoints a concept is not evaluated after every session: the peak is over the sessions
    after which it was (NaN cells are skipped), so it can miss a higher value between two checkpoints.
    """
    m = _np(matrix).astype(float)
    return np.array([np.nanmax(m[s:t, c]) - m[t, c] if s < t else np.nan for c, s in enumerate(learned_at)])
