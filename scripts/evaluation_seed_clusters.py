"""How much a run's image-level interval understates its noise when images share their evaluation seed.

    python scripts/evaluation_seed_clusters.py runs/studies/gate/toy-v2-gate [--metric ia] [--kind concept]

A protocol draws image k of every prompt, of every concept, from the same evaluation seed k, so images that share a
seed share their starting noise: on the toy world some seeds give poor images for every prompt and concept of a run
at once. The within-run interval ("images" in lfsbench/evaluation/metrics.py) resamples images as if independent.
For each run below the folder, this prints the standard deviation of the mean of `metric` over the last session's
`kind` images under that bootstrap and under one that resamples evaluation seeds (every image of a seed together),
and their ratio: above 1, the image-level interval is too narrow by about that factor. Nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lfsbench.report.runs import find_runs
from lfsbench.results import RunFolder


def spreads(values: np.ndarray, seeds: np.ndarray, draws: int, rng: np.random.Generator) -> tuple[float, float]:
    """The bootstrap standard deviation of the mean: images resampled independently, and seeds resampled."""
    independent = values[rng.integers(0, len(values), size=(draws, len(values)))].mean(axis=1).std()
    labels = np.unique(seeds)
    by_seed = [values[seeds == s] for s in labels]
    clustered = [
        np.concatenate([by_seed[i] for i in rng.integers(0, len(labels), len(labels))]).mean() for _ in range(draws)
    ]
    return float(independent), float(np.std(clustered))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders, or folders holding runs")
    parser.add_argument("--metric", default="ia", help="a column of scores/session_XX.csv (default ia)")
    parser.add_argument("--kind", default="concept", help="the record kind (default concept)")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ratios = []
    print(f"{'run':40s} {'images':>8s} {'seeds':>8s} {'ratio':>6s}  (bootstrap sd of the last session's mean)")
    for run in find_runs(args.runs):
        scores = RunFolder(run.path).scores()
        last = scores[(scores.session == scores.session.max()) & (scores.kind == args.kind)]
        if last.empty:
            continue
        independent, clustered = spreads(last[args.metric].to_numpy(float), last.seed.to_numpy(), args.draws, rng)
        if independent == 0:  # every image scored alike (a rate of 0): no spread to compare
            print(f"{run.path.name:40s} {independent:8.4f} {clustered:8.4f}      -")
            continue
        ratios.append(clustered / independent)
        print(f"{run.path.name:40s} {independent:8.4f} {clustered:8.4f} {clustered / independent:6.2f}")
    if ratios:
        print(f"median ratio over {len(ratios)} runs: {np.median(ratios):.2f}")


if __name__ == "__main__":
    main()
