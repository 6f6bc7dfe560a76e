"""`lfsbench report`: tables, forgetting curves, IA heatmaps, image grids and one HTML page, from stored runs only.

report/
  summary.csv, summary.md     one row per setting (method + settings), mean over seeds with 95% intervals
  curves.csv                  per setting, session and metric (TA, IA, IAD, class TA, drift, control; cost)
  curves.png                  forgetting curves
  cost.png                    training and generation seconds, stored bytes and peak memory against session
  stability.png               per setting, IA right after learning (plasticity) against final IA and IAD
  retention.png               per setting, class accuracy and TA drop of its concepts' classes against those of
                              the classes no concept belongs to (evaluation.untouched_classes)
  scalability.csv, .md        per setting, after 5, 10, 20, 50... sessions (or the protocol's checkpoints):
                              TA, IA, IAD, drift and what reaching them cost
  pairs.csv, pairs.md         every pair of settings: A minus B per paired metric, image by image, with a 95%
                              interval (t over seeds within a method, Welch between two methods), how many seeds
                              agree, its p-value, the p-value
                              corrected within its family (a study's declared primary comparisons: Holm; all
                              others: Benjamini-Hochberg) and the verdict that allows
  sweeps.csv, .md, .png       where settings of a method differ in one knob only (3 values or more): final
                              metrics against the knob's value
  orders.csv, .md             settings run in several concept orders (order_seed): each headline figure's
                              mean, sd and range over the orders
  order_pairs.csv, .md        the paired comparisons of settings within each concept order: in how many orders
                              each difference's interval lies above or below 0
  ia_matrix_<setting>.png     IA[t][c] heatmaps (mean over seeds)
  confusion_<setting>.png     after the last session, per asked concept the share of its images that show each
                              learned concept or none (pooled over seeds): concept confusion
  images_<setting>.png        shots and generated images after each session, for chosen concepts
  copies_<setting>.png        generated images over their nearest training shot and nearest held-out reference
  index.html                  all of the above on one offline page (images embedded)
"""

from __future__ import annotations

import re
from pathlib import Path

from lfsbench.report import aggregate, html, plots
from lfsbench.report.runs import find_runs, group_by_setting, same_protocol
from lfsbench.results import atomic_write_csv, atomic_write_text


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_")


def make_report(
    paths: list[Path], out: Path, concepts: list[str] | None = None, primary: aggregate.PrimaryFamily | None = None
) -> Path:
    """Write the report of the runs at or below `paths` into `out`; returns the HTML page. `primary`: the
    comparisons a study declared before its runs (its spec's `primary:`), Holm-corrected together."""
    runs = find_runs(paths)
    protocol = same_protocol(runs)
    groups = group_by_setting(runs)
    missing = sorted(set(primary.against) - set(groups)) if primary else []
    if missing:
        from lfsbench.errors import LfsbenchError

        raise LfsbenchError(
            f"The study's primary comparisons are against {', '.join(missing)}, which no run here is: the settings "
            f"are {', '.join(groups)}. Fix `primary: against:` in the study spec to name settings as the report "
            "labels them."
        )
    out.mkdir(parents=True, exist_ok=True)

    table = aggregate.summary_table(groups)
    atomic_write_csv(out / "summary.csv", table)
    atomic_write_text(out / "summary.md", html.markdown_table(table))
    curves = aggregate.curves_table(groups)
    atomic_write_csv(out / "curves.csv", curves)
    drift_scale = float(table.drift_seed_scale.mean())
    figures = {
        "curves": plots.forgetting_curves(curves, out / "curves.png", drift_scale),
        "cost": plots.cost_curves(curves, out / "cost.png"),
    }
    stability = plots.stability_plasticity(table, out / "stability.png")
    if stability is not None:
        figures["stability"] = stability
    kept = plots.retention(table, out / "retention.png")
    if kept is not None:
        figures["retention"] = kept
    n = len(protocol["sessions"])
    checkpoints = protocol["evaluation"].get("checkpoints")
    scale = aggregate.scalability_table(curves, n, sorted({*checkpoints, n}) if checkpoints else None)
    atomic_write_csv(out / "scalability.csv", scale)
    atomic_write_text(out / "scalability.md", html.markdown_scalability(scale))
    pairs = aggregate.pairs_table(groups, primary=primary)
    if len(pairs):
        atomic_write_csv(out / "pairs.csv", pairs)
        atomic_write_text(out / "pairs.md", html.markdown_pairs(pairs))
    sweeps = aggregate.sweeps_table(groups, table)
    if len(sweeps):
        atomic_write_csv(out / "sweeps.csv", sweeps)
        atomic_write_text(out / "sweeps.md", html.markdown_sweeps(sweeps))
        figures["sweeps"] = plots.sweep_plots(sweeps, out / "sweeps.png", drift_scale)

    orders = aggregate.orders_table(groups, table)
    if len(orders):
        atomic_write_csv(out / "orders.csv", orders)
        atomic_write_text(out / "orders.md", html.markdown_orders(orders))
    order_pairs = aggregate.order_pairs_table(groups, pairs)
    if len(order_pairs):
        atomic_write_csv(out / "order_pairs.csv", order_pairs)
        atomic_write_text(out / "order_pairs.md", html.markdown_order_pairs(order_pairs))

    learned_in = runs[0].learned_in()
    sessions = len(protocol["sessions"])
    order = [n for names in protocol["sessions"] for n in names]
    chosen = concepts or order[: min(3, len(order))]
    unknown = [c for c in chosen if c not in learned_in]
    if unknown:
        from lfsbench.errors import LfsbenchError

        raise LfsbenchError(
            f"--concept {', '.join(unknown)}: not in protocol {protocol['name']!r}; its concepts are "
            f"{', '.join(order)}."
        )
    for label, members in groups.items():
        figures[f"ia_matrix_{label}"] = plots.ia_heatmap(
            aggregate.ia_matrix(members), f"IA matrix: {label}", out / f"ia_matrix_{slug(label)}.png"
        )
        confusion = aggregate.confusion_matrix(members)
        if confusion is not None:
            figures[f"confusion_{label}"] = plots.confusion_heatmap(
                confusion, f"Concept confusion: {label}", out / f"confusion_{slug(label)}.png"
            )
        first = min(members, key=lambda r: r.seed)
        if not first.folder.sessions_with_images(chosen, sessions):
            continue  # exported without its images (`lfsbench export --no-images`): the page says so
        figures[f"images_{label}"] = plots.image_grid(
            first.folder,
            chosen,
            first.learned_in(),  # runs in another concept order learn the chosen concepts in other sessions
            sessions,
            f"{label}, seed {first.seed}",
            out / f"images_{slug(label)}.png",
        )
        last = int(first.summary["sessions_finished"]) - 1
        figures[f"copies_{label}"] = plots.copies_figure(
            first.folder,
            chosen,
            last,
            f"{label}, seed {first.seed}, after session {last}",
            out / f"copies_{slug(label)}.png",
        )
    page = out / "index.html"
    atomic_write_text(page, html.page(protocol, runs, table, figures, scale, sweeps, pairs, orders, order_pairs))
    return page
