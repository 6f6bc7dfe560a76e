"""Figures of a report (matplotlib, Agg): forgetting curves, IA-matrix heatmaps, image grids."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from lfsbench.evaluation.metrics import METRICS, in_view  # noqa: E402
from lfsbench.results import RunFolder  # noqa: E402


def forgetting_curves(curves: pd.DataFrame, path: Path, drift_scale: float | None = None) -> Path:
    """One panel per metric against session; one line per setting with its 95% band."""
    metrics = [m for m in in_view("curve") if m in set(curves.metric)]  # quality panels, in table order
    cols = 3
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), squeeze=False)
    settings = list(dict.fromkeys(curves.setting))
    colours = plt.get_cmap("tab10")
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for i, setting in enumerate(settings):
            g = curves[(curves.setting == setting) & (curves.metric == metric)].sort_values("session")
            if not len(g):
                continue
            ax.plot(g.session, g.value, marker="o", ms=3, color=colours(i % 10), label=setting)
            ax.fill_between(g.session, g.ci_low, g.ci_high, color=colours(i % 10), alpha=0.18, lw=0)
        if metric == "drift" and drift_scale is not None:
            ax.axhline(drift_scale, color="grey", ls="--", lw=1, label="two seeds of the base model")
        ax.set_title(METRICS[metric].title, fontsize=10)
        ax.set_xlabel("after session t")
        ax.set_ylabel(METRICS[metric].axis)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * ((len(labels) - 1) // 3), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _settings_scatter(table: pd.DataFrame, panels: list[tuple[str, str, str, str]], path: Path, diagonal=False):
    """One point per setting with its 95% intervals over seeds on both axes, in one panel per (x, y, x label,
    title); settings without both figures are left out; `diagonal`: a dashed x = y line in each panel."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (x, y, xlabel, title) in zip(axes.flat, panels, strict=True):
        shown = []
        for i, r in enumerate(table.to_dict("records")):
            if not np.isfinite(r.get(x, np.nan)) or not np.isfinite(r.get(y, np.nan)):
                continue
            xerr = [[max(0.0, r[x] - r[f"{x}_low"])], [max(0.0, r[f"{x}_high"] - r[x])]]
            yerr = [[max(0.0, r[y] - r[f"{y}_low"])], [max(0.0, r[f"{y}_high"] - r[y])]]
            ax.errorbar(r[x], r[y], xerr=xerr, yerr=yerr, fmt="o", ms=5, capsize=3, color=colours(i % 10),
                        label=r["setting"])  # fmt: skip
            shown += [r[x], r[y]]
        if diagonal and shown:
            ax.plot([min(shown), max(shown)], [min(shown), max(shown)], color="grey", ls="--", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(METRICS[y].axis)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, min(3, len(labels))), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * ((len(labels) - 1) // 3), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def stability_plasticity(table: pd.DataFrame, path: Path) -> Path | None:
    """Per setting, what it learns against what it keeps: IA right after learning (plasticity: the IA a concept
    reaches in the session that teaches it) on x, against final IA and IAD on y, with 95% intervals over seeds. A low
    IAD from a low peak sits left: it is not protection. None (no figure) where no setting has the figures (runs made
    before IA right after learning was recorded)."""
    x = "IA_right_after_learning"
    if x not in table.columns or not table[x].notna().any():
        return None
    xlabel = f"{METRICS[x].title} (plasticity)"
    panels = [
        (x, "IA", xlabel, "final IA (higher is better)"),
        (x, "IAD", xlabel, "IAD (lower is better: less forgotten)"),
    ]
    return _settings_scatter(table, panels, path)


def retention(table: pd.DataFrame, path: Path) -> Path | None:
    """Per setting, what it kept of the classes its concepts belong to (x) against what it kept of the classes no
    concept belongs to (y): class accuracy and class TA drop, with 95% intervals over seeds. Off the diagonal toward
    x low: it damaged what it trained on; both low: it damaged the model as a whole. None (no figure) where no setting
    has untouched classes."""
    pairs = [("class_accuracy", "untouched_class_accuracy"), ("class_TA_drop", "untouched_TA_drop")]
    if not any(y in table.columns and table[y].notna().any() for _, y in pairs):
        return None
    panels = [(x, y, f"{METRICS[x].axis} (its concepts' classes)", METRICS[y].title) for x, y in pairs]
    return _settings_scatter(table, panels, path, diagonal=True)


def cost_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Cost against session, one line per setting (mean over seeds; band = range of seed means by bootstrap)."""
    costs = in_view("cost")
    fig, axes = plt.subplots(1, len(costs), figsize=(4.6 * len(costs), 3.9), squeeze=False)
    settings = list(dict.fromkeys(curves.setting))
    colours = plt.get_cmap("tab10")
    for ax, metric in zip(axes.flat, costs, strict=False):
        title, unit, scale = METRICS[metric].title, METRICS[metric].axis, METRICS[metric].scale
        for i, setting in enumerate(settings):
            g = curves[(curves.setting == setting) & (curves.metric == metric)].sort_values("session")
            if len(g):
                ax.plot(g.session, g.value * scale, marker="o", ms=3, color=colours(i % 10), label=setting)
                ax.fill_between(g.session, g.ci_low * scale, g.ci_high * scale, color=colours(i % 10), alpha=0.18, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("session t")
        ax.set_ylabel(unit)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if labels:  # none where no run kept its cost table (cost.csv moved away)
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * (max(len(labels) - 1, 0) // 3), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_plots(sweeps: pd.DataFrame, path: Path, drift_scale: float | None = None) -> Path:
    """One row per knob sweep: final metrics against the knob's value, with 95% intervals."""
    names = list(dict.fromkeys(sweeps.sweep))
    metrics = [m for m in in_view("sweep") if m in sweeps.columns and sweeps[m].notna().any()]
    fig, axes = plt.subplots(len(names), len(metrics), figsize=(3.7 * len(metrics), 3.1 * len(names)), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        g = sweeps[sweeps.sweep == name]
        numeric = g.x.notna().all()
        x = g.x.to_numpy() if numeric else np.arange(len(g))
        for ax, metric in zip(row, metrics, strict=True):
            ok = g[metric].notna().to_numpy() if metric in g else np.zeros(len(g), bool)
            if ok.any():
                v, lo, hi = (g[c].to_numpy(dtype=float)[ok] for c in (metric, f"{metric}_low", f"{metric}_high"))
                ax.errorbar(
                    x[ok], v, yerr=[v - lo, hi - v], marker="o", ms=4, capsize=3, lw=1.2, ls="-" if numeric else "none"
                )  # categories (strategies) are not joined by lines
            else:
                ax.text(
                    0.5,
                    0.5,
                    "not measured\n(no in-context generation)",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=8,
                    color="grey",
                )
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(name, fontsize=9)
                continue
            if metric == "drift" and drift_scale is not None:
                ax.axhline(drift_scale, color="grey", ls="--", lw=1)
            if not numeric:
                ax.set_xticks(x, g.value, fontsize=8)
            elif (x > 0).all() and x.max() >= 10 * x.min():  # learning rates and the like: a log axis
                ax.set_xscale("log")
            ax.set_xlabel(g.knob.iloc[0])
            ax.set_ylabel(METRICS[metric].axis, fontsize=8)
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


ANNOTATE_UP_TO = 12  # concepts; larger IA matrices are drawn without numbers in the cells


def _heatmap(matrix: pd.DataFrame, title: str, path: Path, cmap: str, axes: tuple[str, str], label: str) -> Path:
    """A heatmap of values in [0, 1] (blank where NaN), numbered in each cell up to ANNOTATE_UP_TO columns; `axes`:
    the x and y labels, `label`: the colour bar's."""
    rows, cols = matrix.shape
    large = cols > ANNOTATE_UP_TO
    width = 1.0 + 0.75 * cols if not large else min(16.0, 3.0 + 0.22 * cols)
    height = 1.2 + 0.5 * rows if not large else min(14.0, 2.5 + 0.2 * rows)
    fig, ax = plt.subplots(figsize=(width, height))
    data = matrix.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    if not large:
        for (r, c), v in np.ndenumerate(data):
            if not np.isnan(v):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.6 else "black")
    ax.set_xticks(
        range(cols),
        matrix.columns,
        rotation=30 if not large else 90,
        ha="right" if not large else "center",
        fontsize=None if not large else 6,
    )
    ax.set_yticks(range(rows), [str(i) for i in matrix.index], fontsize=None if not large else 6)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ia_heatmap(matrix: pd.DataFrame, title: str, path: Path) -> Path:
    """IA[t][c]: the model after session t (rows) on concept c (columns); blank where c was not evaluated."""
    return _heatmap(matrix, title, path, "viridis", ("concept", "model after session"), "IA (cosine)")


def confusion_heatmap(matrix: pd.DataFrame, title: str, path: Path) -> Path:
    """Concept confusion after the last session: per asked concept (rows), the share of its images that show each
    learned concept or none (columns). Off the diagonal is confusion."""
    axes = ("shown (as the evaluator sees it)", "asked for")
    return _heatmap(matrix, title, path, "magma", axes, "share of images")


GRID_IMAGES = 4  # images shown per cell of an image grid


def _first_images(grid: Image.Image, k: int) -> Image.Image:
    """The first k images of a one-row grid saved by the runner (square tiles)."""
    tile = grid.height
    return grid.crop((0, 0, min(grid.width, tile * k), tile))


GRID_COLUMNS = 8  # sessions shown at most; longer protocols show evenly spaced ones, always the last


def grid_sessions(run: RunFolder, concepts: list[str], sessions: int) -> list[int]:
    """Sessions with images of the chosen concepts (every one, or evenly spaced ones up to GRID_COLUMNS)."""
    have = run.sessions_with_images(concepts, sessions)
    if len(have) <= GRID_COLUMNS:
        return have
    picks = {have[round(i * (len(have) - 1) / (GRID_COLUMNS - 1))] for i in range(GRID_COLUMNS)}
    return sorted(picks)


def _titled(fig, title: str, path: Path) -> Path:
    """Title a figure of pictures, lay it out, save it and close it."""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bare(ax) -> None:
    """An axis that only shows a picture: no ticks, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def image_grid(
    run: RunFolder, concepts: list[str], learned_in: dict[str, int], sessions: int, title: str, path: Path
) -> Path:
    """For each concept: its shots, then the images generated after each session from the one it was learned in."""
    shown = grid_sessions(run, concepts, sessions)
    fig, axes = plt.subplots(
        len(concepts), len(shown) + 1, figsize=(2.3 * (len(shown) + 1), 1.0 + 0.75 * len(concepts)), squeeze=False
    )
    for r, name in enumerate(concepts):
        cells = [("shots", run.shots_grid(name))]
        cells += [(f"after session {t}", run.concept_grid(t, name)) for t in shown]
        for c, (label, file) in enumerate(cells):
            ax = axes[r][c]
            _bare(ax)
            if file.is_file():
                ax.imshow(_first_images(Image.open(file), GRID_IMAGES))
            if r == 0:
                ax.set_title(label, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{name}\n(session {learned_in[name]})", fontsize=9)
    return _titled(fig, title, path)


def copies_figure(run: RunFolder, concepts: list[str], session: int, title: str, path: Path) -> Path:
    """For each concept, after `session`: generated images (top row), each one's nearest training shot (middle) and
    nearest held-out reference (bottom), nearest in pixels: copying shows as a middle row equal to the top one."""
    fig, axes = plt.subplots(len(concepts), 1, figsize=(9.0, 0.6 + 1.6 * len(concepts)), squeeze=False)
    for ax, name in zip(axes[:, 0], concepts, strict=True):
        _bare(ax)
        file = run.copies_grid(session, name)
        if file.is_file():
            ax.imshow(Image.open(file))
        ax.set_ylabel(f"{name}\ngenerated\nnearest shot\nnearest held-out", fontsize=8)
    return _titled(fig, title, path)
