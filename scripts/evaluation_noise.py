"""The noise components of the toy world's figures and the in-between image allocation (docs/speed.md).

    python scripts/evaluation_noise.py reports/orders/runs --seeds reports/seeds/curves.csv \
        reports/seeds-lora/curves.csv -O reports/noise

Reads runs in several concept orders (every image scored and kept: the order study) and the per-session
t-intervals over training seeds of seeds reports; writes components.csv (per method and figure after the last
session: the standard deviation each source adds) and allocation.csv (per method, figure, session and candidate
number of images per prompt between sessions: the width ratio of the interval over replications), and prints the
tables docs/speed.md shows. lfsbench/report/variance.py says how each number is computed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from lfsbench.report.runs import find_runs
from lfsbench.report.variance import allocation, components

HEADLINE = ["IA", "TA", "IAD", "copy_rate", "class_TA_drop", "class_accuracy", "drift", "IA_control"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, help="runs of each method in several concept orders")
    parser.add_argument("--seeds", type=Path, nargs="*", default=[], help="seeds reports' curves.csv (3 seeds)")
    parser.add_argument("--keep", type=int, nargs="*", default=[2, 4, 8], help="candidate images per prompt")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("-O", "--output", type=Path, default=Path("reports/noise"))
    args = parser.parse_args()

    runs = find_runs([args.runs])
    curves = pd.concat([pd.read_csv(p) for p in args.seeds]) if args.seeds else None
    if curves is not None:
        curves = curves.drop_duplicates(["setting", "session", "metric"])  # a method in two seeds reports: the first
    args.output.mkdir(parents=True, exist_ok=True)

    parts = components(runs, curves, args.bootstrap)
    parts.to_csv(args.output / "components.csv", index=False)
    shown = parts[parts.metric.isin(HEADLINE)].copy()
    print("Standard deviation each source adds to a run's figure after the last session (median over methods):\n")
    print(shown.groupby("metric", sort=False).median(numeric_only=True).round(4).to_string())

    ratios = allocation(runs, curves, args.keep, args.bootstrap)
    ratios.to_csv(args.output / "allocation.csv", index=False)
    changed = ratios[ratios.changed]
    print("\nWidth over replications with k images per prompt between sessions / with all (max over methods, figures")
    print("and in-between sessions; median in brackets):\n")
    rows = []
    for keep, cells in changed.groupby("keep"):
        row = {"k": keep}
        for column in ("orders_ratio", "seeds_ratio", "orders_measured"):
            if column in cells:
                row[column] = f"{cells[column].max():.3f} [{cells[column].median():.3f}]"
        rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"\nwritten: {args.output / 'components.csv'}, {args.output / 'allocation.csv'}")


if __name__ == "__main__":
    main()
