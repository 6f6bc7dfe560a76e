"""Re-judge a committed report's paired comparisons with today's multiplicity rules, from its pairs.csv alone.

Reports written before `lfsbench report` computed p-values and corrections (before 2026-12-06) hold each
comparison's difference and 95% interval but no p-value, and their run folders are not in the repository. For a
comparison whose interval is a Student t interval over n seeds, the t-test p-value follows from the interval
exactly: se = (high - low) / (2 t_{0.975, n-1}), p = 2 P(T_{n-1} > |difference| / se). A comparison whose interval
is a bootstrap over image pairs (one seed, or seeds with identical differences) gets no p-value here (its draws are
not stored): it is counted as not tested, so the family is smaller than `lfsbench report` would make it from the
runs, which tests those too with the bootstrap's p.

No study declared primary comparisons before those runs, so every comparison is exploratory: Benjamini-Hochberg
over all tested comparisons of the report, as `lfsbench report` does today. As there, no verdict is given on a
metric no run has shown can move, or on a rate whose rarer outcome is under 5 images or under 1% of them in both
settings (counted from the report's summary.csv rates and the protocol's concept images at the last session).

    python scripts/recorrect_pairs.py reports/seeds.yaml          # prints the claims that survive and those that fall
    python scripts/recorrect_pairs.py reports/seeds.yaml --csv    # every row, with p, q and the new verdict
    python scripts/recorrect_pairs.py reports/seeds.yaml reports/seeds-lora.yaml   # one family over both reports
    python scripts/recorrect_pairs.py reports/seeds.yaml reports/seeds-lora.yaml --welch   # two methods by Welch

`--welch` applies today's rule for two methods (2026-12-07): their seed s share no random stream, so instead of the
report's t interval on seed-index differences, Welch's interval on each method's per-seed figures, rebuilt from
summary.csv's means and t intervals (welch_from_summary). Rates of two methods (pooled Wilson intervals in
summary.csv) cannot be rebuilt and count as untested.

Several reports are corrected as one family: docs/results.md reads `seeds/` and `seeds-lora/` side by side, so its
claims from them are one family.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from lfsbench.evaluation import functional as F
from lfsbench.evaluation.metrics import METRICS
from lfsbench.protocol import load_protocol
from lfsbench.report.aggregate import MIN_EVENT_SHARE, MIN_EVENTS
from lfsbench.study import load_study


def t_p_value(row) -> float:
    if row.interval != "t over seeds" or row.seeds < 2 or not row.ci_high > row.ci_low:
        return float("nan")
    se = (row.ci_high - row.ci_low) / (2 * stats.t.ppf(0.975, row.seeds - 1))
    return float(2 * stats.t.sf(abs(row.difference) / se, row.seeds - 1))


def welch_from_summary(row, summary: pd.DataFrame) -> tuple[float, float, float, float] | None:
    """Today's rule for two methods (Welch on each one's per-seed figures, docs/metrics.md), rebuilt from the report's
    summary.csv: each setting's mean over its n seeds and its Student t interval, whose half-width gives the seeds'
    standard deviation, s = half sqrt(n) / t_{0.975, n-1}. None where that cannot be done: settings of one method
    (paired by seed, as the report has it), fewer than 2 seeds, or a 0/1 rate (its summary interval is a pooled
    Wilson interval, not a t interval)."""
    if METRICS[row.metric].interval == "proportion" or row.seeds < 2:
        return None
    a, b = summary.loc[row.a], summary.loc[row.b]
    if a["method"] == b["method"]:
        return None
    moments = []
    for side in (a, b):
        n = len(str(side["seeds"]).split())
        half = (float(side[f"{row.metric}_high"]) - float(side[f"{row.metric}_low"])) / 2
        moments.append((float(side[row.metric]), half * np.sqrt(n) / stats.t.ppf(0.975, n - 1), n))
    (mean_a, sd_a, n_a), (mean_b, sd_b, n_b) = moments
    if sd_a == 0 and sd_b == 0:
        return None
    test = stats.ttest_ind_from_stats(mean_a, sd_a, n_a, mean_b, sd_b, n_b, equal_var=False)
    se = np.sqrt(sd_a**2 / n_a + sd_b**2 / n_b)
    df = se**4 / ((sd_a**2 / n_a) ** 2 / (n_a - 1) + (sd_b**2 / n_b) ** 2 / (n_b - 1))
    half = stats.t.ppf(0.975, df) * se
    difference = mean_a - mean_b
    return difference, difference - half, difference + half, float(test.pvalue)


def rate_too_rare(row, summary: pd.DataFrame, images: int) -> bool:
    """The report's rule for 0/1 rates (copy_rate, class_accuracy), from the two settings' mean rates over `images`
    images each: the rarer outcome over both settings' images together."""
    metric = METRICS[row.metric]
    if metric.interval != "proportion":  # the 0/1 rates (Wilson intervals)
        return False
    ones = sum(float(summary.loc[label, row.metric]) for label in (row.a, row.b)) * images
    rarer = min(ones, 2 * images - ones)
    return rarer < MIN_EVENTS or rarer < MIN_EVENT_SHARE * 2 * images


def judged(spec_path: Path, welch: bool = False) -> pd.DataFrame:
    """A report's pairs with their p-values and why a row gets no verdict ("" where it can get one); `welch`: two
    methods' rows by today's rule (welch_from_summary), not by the report's seed-index pairing."""
    study = load_study(spec_path)
    folder = spec_path.with_suffix("")
    pairs = pd.read_csv(folder / "pairs.csv")
    if "p_value" in pairs.columns:
        sys.exit(
            f"{folder / 'pairs.csv'} was written with p-values, corrections and verdicts (after 2026-12-06; two "
            "methods' rows Welch's after 2026-12-07): read its verdict column, or run `lfsbench report` again. This "
            "script re-judges only reports written before those rules."
        )
    summary = pd.read_csv(folder / "summary.csv").set_index("setting")
    protocol = load_protocol(study.protocol)
    concepts = sum(len(names) for names in protocol.sessions)
    per_seed = concepts * len(protocol.evaluation.prompts) * protocol.evaluation.images_per_prompt
    pairs["p_value"] = [t_p_value(row) for row in pairs.itertuples(index=False)]
    if welch:  # two methods: Welch from summary.csv instead of the seed-index pairing the report used
        for i, row in enumerate(pairs.itertuples(index=False)):
            rebuilt = welch_from_summary(row, summary)
            paired = row.interval == "t over seeds"
            if rebuilt is not None and paired:
                pairs.loc[i, ["difference", "ci_low", "ci_high", "p_value"]] = rebuilt
                pairs.loc[i, "interval"] = "Welch (rebuilt from summary.csv)"
            elif (
                paired
                and METRICS[row.metric].interval == "proportion"
                and summary.loc[row.a, "method"] != summary.loc[row.b, "method"]
            ):
                pairs.loc[i, "p_value"] = np.nan  # a rate of two methods: no Welch without per-seed figures
                pairs.loc[i, "interval"] = "untested (a rate of two methods: per-seed figures not committed)"
    pairs["no_verdict"] = [
        METRICS[row.metric].unvalidated
        or ("too few events" if rate_too_rare(row, summary, per_seed * row.seeds) else "")
        for row in pairs.itertuples(index=False)
    ]
    return pairs.assign(report=str(folder))


def recorrect(spec_paths: list[Path], welch: bool = False) -> pd.DataFrame:
    """The reports' pairs as one exploratory family: p, BH q-value, whether a verdict claimed before holds."""
    pairs = pd.concat([judged(path, welch) for path in spec_paths], ignore_index=True)
    tested = (pairs.no_verdict == "") & pairs.p_value.notna()
    pairs["q_value"] = np.nan
    pairs.loc[tested, "q_value"] = F.benjamini_hochberg(pairs.loc[tested, "p_value"].to_numpy())
    pairs["claimed"] = pairs.verdict.str.endswith((" better", " higher"))
    # a claim holds where its corrected p is below 0.05 and its (possibly rebuilt) interval still excludes 0
    pairs["holds"] = pairs.claimed & (pairs.q_value < 0.05) & ((pairs.ci_low > 0) | (pairs.ci_high < 0))
    return pairs


def main(argv: list[str]) -> None:
    specs = [Path(a) for a in argv if not a.startswith("--")]
    pairs = recorrect(specs, welch="--welch" in argv)
    spec = " + ".join(map(str, specs))
    if "--csv" in argv:
        pairs.to_csv(sys.stdout, index=False)
        return
    claimed = pairs[pairs.claimed]
    tested = pairs.q_value.notna()
    print(
        f"{spec}: {len(pairs)} comparisons, {int(tested.sum())} tested (a t or Welch interval over seeds, a metric "
        "with a range); "
        f"{len(claimed)} claimed before (interval excludes 0); {int(pairs.holds.sum())} hold after "
        f"Benjamini-Hochberg; {int((tested & (pairs.p_value < 0.05)).sum())} have p < 0.05 uncorrected; "
        f"{int((F.holm(pairs.loc[tested, 'p_value'].to_numpy()) < 0.05).sum())} would survive Holm over all"
    )
    for row in claimed.itertuples(index=False):
        status = "holds" if row.holds else f"falls ({row.no_verdict or 'q >= 0.05'})"
        print(
            f"  {row.report}: {row.a} - {row.b} {row.metric}: {row.difference:+.3f} "
            f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}] p {row.p_value:.4f} q {row.q_value:.4f}: {status}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
