"""Metrics on hand-made inputs whose answers are known."""

import numpy as np
import pytest
import torch

from lfsbench import metrics

NAN = np.nan


def unit(*rows):
    m = torch.tensor(rows, dtype=torch.float32)
    return m / m.norm(dim=1, keepdim=True)


def test_text_alignment_and_clip_score():
    img = unit([1, 0], [0, 1], [1, 1])
    txt = unit([1, 0], [1, 0], [1, 0])
    np.testing.assert_allclose(metrics.text_alignment_scores(img, txt), [1, 0, np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(metrics.clip_score([0.3, -0.2]), [0.75, 0.0])


def test_image_alignment_averages_all_pairs():
    gen = unit([1, 0], [0, 1])
    ref = unit([1, 0], [-1, 0], [0, 1])
    # image 1: (1 - 1 + 0) / 3; image 2: (0 + 0 + 1) / 3
    np.testing.assert_allclose(metrics.image_alignment_scores(gen, ref), [0, 1 / 3], atol=1e-6)


def test_paired_drift():
    np.testing.assert_allclose(metrics.paired_drift_scores(unit([1, 0], [0, 1]), unit([1, 0], [1, 0])), [0, 1], atol=1e-6)


def test_bootstrap_interval_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(0.5, 0.1, 16)
    big = rng.normal(0.5, 0.1, 1024)
    m, lo, hi = metrics.bootstrap_ci(small)
    assert lo < m < hi and m == pytest.approx(small.mean())
    _, lo2, hi2 = metrics.bootstrap_ci(big)
    assert (hi2 - lo2) < (hi - lo) / 4
    assert metrics.bootstrap_ci([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2, 0.2))


def test_roc_auc():
    assert metrics.roc_auc([3, 4], [1, 2]) == 1.0
    assert metrics.roc_auc([1, 2], [3, 4]) == 0.0
    assert metrics.roc_auc([1, 3], [2, 2]) == 0.5


def test_forgetting_from_a_known_matrix():
    # rows: after session t; columns: concepts learned in sessions 0, 1, 2
    m = np.array([[0.8, NAN, NAN],
                  [0.6, 0.9, NAN],
                  [0.7, 0.5, 0.7]])
    learned = [0, 1, 2]
    np.testing.assert_allclose(metrics.final_drop(m, learned), [0.1, 0.4, 0.0])
    np.testing.assert_allclose(metrics.drop_at(m, learned, 1), [0.2, NAN, NAN])
    # max-based: concept 0 peaked at 0.8 (session 0) -> 0.8 - 0.7; concept 1 -> 0.9 - 0.5
    np.testing.assert_allclose(metrics.max_forgetting_at(m, learned, 2), [0.1, 0.4, NAN])
    np.testing.assert_allclose(metrics.session_means(m), [0.8, 0.75, 0.6333333])
