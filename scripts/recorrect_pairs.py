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


def rate_too_rare(row, summary: pd.DataFrame, images: int) -> bool:
    """The report's rule for 0/1 rates (copy_rate, class_accuracy), from the two settings' mean rates over `images`
    images each: the rarer outcome over both settings' images together."""
    metric = METRICS[row.metric]
    if metric.interval != "proportion":  # the 0/1 rates (Wilson intervals)
        return False
    ones = sum(float(summary.loc[label, row.metric]) for label in (row.a, row.b)) * images
    rarer = min(ones, 2 * images - ones)
    return rarer < MIN_EVENTS or rarer < MIN_EVENT_SHARE * 2 * images


def judged(spec_path: Path) -> pd.DataFrame:
    """A report's pairs with their p-values and why a row gets no verdict ("" where it can get one)."""
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
    pairs["no_verdict"] = [
        METRICS[row.metric].unvalidated
        or ("too few events" if rate_too_rare(row, summary, per_seed * row.seeds) else "")
        for row in pairs.itertuples(index=False)
    ]
    return pairs.assign(report=str(folder))


def recorrect(spec_paths: list[Path]) -> pd.DataFrame:
    """The reports' pairs as one exploratory family: p, BH q-value, whether a verdict claimed before holds."""
    pairs = pd.concat([judged(path) for path in spec_paths], ignore_index=True)
    tested = (pairs.no_verdict == "") & pairs.p_value.notna()
    pairs["q_value"] = np.nan
    pairs.loc[tested, "q_value"] = F.benjamini_hochberg(pairs.loc[tested, "p_value"].to_numpy())
    pairs["claimed"] = pairs.verdict.str.endswith((" better", " higher"))
    pairs["holds"] = pairs.claimed & (pairs.q_value < 0.05)
    return pairs


def main(argv: list[str]) -> None:
    specs = [Path(a) for a in argv if not a.startswith("--")]
    pairs = recorrect(specs)
    spec = " + ".join(map(str, specs))
    if "--csv" in argv:
        pairs.to_csv(sys.stdout, index=False)
        return
    claimed = pairs[pairs.claimed]
    tested = pairs.q_value.notna()
    print(
        f"{spec}: {len(pairs)} comparisons, {int(tested.sum())} tested (t over seeds, a metric with a range); "
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
