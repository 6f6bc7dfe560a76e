"""Coverage of the report's intervals on synthetic runs with a known truth: a nominal 95% interval must cover the
truth at least 90% of the time (issue 13), and the two-level bootstrap these intervals replaced must fail the same
test, so the test can tell a good interval from a bad one."""

import numpy as np
import pandas as pd
import pytest

from lfsbench.evaluation import functional as F
from lfsbench.report import aggregate

TRUTH = 0.5
SIMULATIONS = 2000


def _seed_values(rng, seeds: int, seed_sd: float, skewed: bool = False) -> np.ndarray:
    """Per-seed figures: the truth plus a training-seed effect (normal, or right-skewed gamma with the same sd)."""
    if skewed:
        shape = 4.0
        effect = (rng.gamma(shape, 1.0, seeds) - shape) / np.sqrt(shape) * seed_sd
    else:
        effect = rng.normal(0, seed_sd, seeds)
    return TRUTH + effect


def _two_level_bootstrap(values, lows, highs, n_boot=1000, seed=0):
    """The interval `combine_seeds` used before (resample seeds, draw each from a normal of its run's interval)."""
    rng = np.random.default_rng(seed)
    sd = (highs - lows) / (2 * 1.96)
    pick = rng.integers(0, len(values), (n_boot, len(values)))
    draws = rng.normal(values[pick], sd[pick]).mean(1)
    return np.quantile(draws, 0.025), np.quantile(draws, 0.975)


@pytest.mark.parametrize("seeds, skewed", [(3, False), (5, False), (3, True), (2, False)])
def test_interval_over_seeds_covers_the_truth(seeds, skewed):
    """Seed sd 0.02 and a within-run half-width of 0.005 (the case the review simulated): the t-interval covers."""
    rng = np.random.default_rng(seeds * 10 + skewed)
    covered = 0
    for _ in range(SIMULATIONS):
        values = _seed_values(rng, seeds, 0.02, skewed)
        _, lo, hi = aggregate.combine_seeds(values, values - 0.005, values + 0.005)
        covered += lo <= TRUTH <= hi
    assert covered / SIMULATIONS >= 0.90


def test_the_replaced_two_level_bootstrap_undercovers():
    """The same check on the old interval fails (about 75% in the review's simulation): the test discriminates."""
    rng = np.random.default_rng(7)
    covered = 0
    for i in range(500):
        values = _seed_values(rng, 3, 0.02)
        lo, hi = _two_level_bootstrap(values, values - 0.005, values + 0.005, n_boot=400, seed=i)
        covered += lo <= TRUTH <= hi
    assert covered / 500 < 0.85


def test_the_review_example_width():
    """Per-seed values 0.25, 0.27, 0.28: the t-interval is 0.076 wide (the old one was 0.029)."""
    _, lo, hi = aggregate.combine_seeds([0.25, 0.27, 0.28], [0.245, 0.265, 0.275], [0.255, 0.275, 0.285])
    assert hi - lo == pytest.approx(0.0759, abs=2e-4)


def test_one_seed_keeps_its_runs_own_interval():
    assert aggregate.combine_seeds([0.4], [0.38], [0.43]) == (0.4, 0.38, 0.43)


@pytest.mark.parametrize("distribution", ["normal", "bernoulli"])
def test_bootstrap_over_images_covers_the_truth(distribution):
    """Within one run: 64 images of per-image scores (cosines, or 0/1 like copy rate and class accuracy)."""
    rng = np.random.default_rng(3)
    covered, trials = 0, 600
    for i in range(trials):
        if distribution == "normal":
            values, truth = rng.normal(0.6, 0.1, 64), 0.6
        else:
            values, truth = (rng.random(64) < 0.2).astype(float), 0.2
        _, lo, hi = F.bootstrap_ci(values, 500, seed=i)
        covered += lo <= truth <= hi
    assert covered / trials >= 0.90


def test_paired_difference_covers_the_true_difference():
    """Two settings scored on the same images: per image a shared image effect (prompt and seed) that pairing
    cancels, plus each model's noise. The paired interval covers the true difference 0.02 and is narrower than the
    two settings' own intervals would suggest."""
    rng = np.random.default_rng(5)
    covered, widths, trials = 0, [], 400
    for _ in range(trials):
        shared = rng.normal(0, 0.1, 64)  # how hard each prompt and seed is, for every model
        a = 0.62 + shared + rng.normal(0, 0.02, 64)
        b = 0.60 + shared + rng.normal(0, 0.02, 64)
        pairs = pd.DataFrame({"name": ["c"] * 64, "value": a - b})
        _, lo, hi, _ = aggregate.tables.paired_figure("IA", pairs, 400)
        covered += lo <= 0.02 <= hi
        widths.append(hi - lo)
    assert covered / trials >= 0.90
    assert np.mean(widths) < 0.03  # unpaired, the shared effect alone would make it about 0.07
