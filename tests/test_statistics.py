"""Coverage of the report's intervals on synthetic runs with a known truth: a nominal 95% interval must cover the
truth at least 90% of the time (issue 13), and the two-level bootstrap these intervals replaced must fail the same
test, so the test can tell a good interval from a bad one."""

import numpy as np
import pandas as pd
import pytest

from lfsbench.evaluation import functional as F
from lfsbench.evaluation.metrics import METRICS
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


class _RateRun:
    """What the summary table reads of a run whose only figure is a copy rate."""

    def __init__(self, seed, figure):
        self.seed, self.method, self.summary = seed, "m", {"sessions_finished": 1, "copy_rate": figure}


def _rate_interval(rng, seed_rates, images):
    """A copy rate's interval over seeds as a report prints it, from per-image 0/1 outcomes: each run's figure as
    the metric computes it within the run (its interval and image count), then the report's summary table."""
    runs = []
    for seed, rate in enumerate(seed_rates):
        value, low, high = METRICS["copy_rate"].interval_of((rng.random(images) < rate).astype(float), 0)
        runs.append(_RateRun(seed, {"value": value, "ci_low": low, "ci_high": high, "images": images}))
    row = aggregate.summary_table({"m": runs}).iloc[0]
    return row.copy_rate_low, row.copy_rate_high


@pytest.mark.parametrize(
    ("case", "seeds", "truth"),
    [("rare", 3, 0.001), ("common", 3, 0.1), ("absent in half the seeds", 6, 0.01), ("seed effect", 3, 0.125)],
)
def test_rate_intervals_cover_end_to_end(case, seeds, truth):
    """A rate's reported interval over seeds covers the expected rate at least 93% of the time and never has zero
    width, from per-image outcomes through the real per-run and over-seed code: a rare rate (1 image in 1,000, where
    most seeds copy nothing: before per-run Wilson intervals and pooled counts, 31% of its intervals were
    [0.000, 0.000]), a common one, a rate whose seeds copy 2% or nothing (six seeds: with three, all three are 0
    one time in eight and nothing can cover), and seeds whose rates differ (0.05-0.20). The two-mode case is the one
    short of 93%: at six seeds the t-interval covers 92-94% (1,500 trials at five simulation seeds; 93-94% at eight
    and ten seeds), so it is held to 90%, and docs/metrics.md says so."""
    rng = np.random.default_rng(11)
    draw = {
        "rare": lambda: [truth] * seeds,
        "common": lambda: [truth] * seeds,
        "absent in half the seeds": lambda: np.where(rng.random(seeds) < 0.5, 0.0, 2 * truth),
        "seed effect": lambda: rng.uniform(0.05, 0.2, seeds),
    }[case]
    intervals = np.array([_rate_interval(rng, draw(), 384) for _ in range(1500)])
    covered = (intervals[:, 0] <= truth) & (truth <= intervals[:, 1])
    assert covered.mean() >= (0.90 if case == "absent in half the seeds" else 0.93), covered.mean()
    assert (intervals[:, 1] > intervals[:, 0]).all()


def test_an_interval_is_clipped_to_the_figures_range_but_never_past_the_figure():
    """A t interval over seeds is clipped to what the figure can measure; a mean of cosines a float's width above 1
    (normalised embeddings, rounding) still gets an interval that holds it, as plots' error bars need."""
    from lfsbench.evaluation.metrics import COSINE, SHARE

    value, low, high = aggregate.combine_seeds([0.96, 0.99, 1.0], [0.9] * 3, [1.0] * 3, SHARE)
    assert high == 1.0 and low < value < high  # the t interval would reach 1.03
    over = 1.0 + 1e-7
    value, low, high = aggregate.combine_seeds([over] * 3, [over] * 3, [over] * 3, COSINE)
    assert low <= value <= high and high == over


def test_welch_with_one_constant_side_is_the_other_sides_t_interval():
    """Where one method gives the same figure at every seed (a ceiling, the base model) Welch's interval is the
    one-sample t interval of the other side's figures around it (df = n - 1), without scipy's precision warning."""
    import warnings

    from lfsbench.evaluation import functional as F

    a, b = np.array([0.61, 0.70, 0.66]), np.array([0.5, 0.5, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, low, high, p = F.welch_interval(a, b)
    expected = F.t_interval(a - 0.5)
    assert (value, low, high) == pytest.approx(expected) and p == pytest.approx(F.t_test_p(a - 0.5))
    assert F.welch_interval(b, a)[1:3] == pytest.approx((-expected[2], -expected[1]))
    assert np.isnan(F.welch_interval(b, b)[1])  # no spread on either side: no interval


def test_welch_rebuilt_from_a_summary_equals_welch_on_the_seeds():
    """scripts/recorrect_pairs.py --welch rebuilds two methods' Welch interval from each one's mean and t interval
    over seeds (summary.csv): it must equal Welch on the per-seed figures themselves."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    import pandas as pd

    from lfsbench.evaluation import functional as F

    path = Path(__file__).resolve().parents[1] / "scripts" / "recorrect_pairs.py"
    spec = importlib.util.spec_from_file_location("recorrect_pairs", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    figures = {"A": [0.61, 0.70, 0.66], "B": [0.42, 0.55, 0.47, 0.50]}
    rows = {}
    for label, values in figures.items():
        mean, low, high = F.t_interval(values)
        seeds = " ".join(map(str, range(len(values))))
        rows[label] = {"method": label.lower(), "seeds": seeds, "IA": mean, "IA_low": low, "IA_high": high}
    summary = pd.DataFrame.from_dict(rows, orient="index")
    row = SimpleNamespace(a="A", b="B", metric="IA", seeds=3)
    rebuilt = script.welch_from_summary(row, summary)
    assert rebuilt == pytest.approx(F.welch_interval(figures["A"], figures["B"]), rel=1e-9)
    assert script.welch_from_summary(SimpleNamespace(a="A", b="B", metric="copy_rate", seeds=3), summary) is None
    same = summary.assign(method="m")
    assert script.welch_from_summary(row, same) is None  # one method: paired by seed, as the report has it
