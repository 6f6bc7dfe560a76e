"""Finding stored runs, reading them, and grouping them into settings (runs that differ only by seed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lfsbench.errors import LfsbenchError
from lfsbench.results import RunFolder, method_display_name, run_label


@dataclass
class Run:
    path: Path
    config: dict
    summary: dict
    sampling_note: str = ""  # "dpmsolver++, 10 steps" where a report holds runs sampled differently (same_protocol)

    @property
    def method(self) -> str:
        """The method as reports name it (a method from a file, `path/file.py:Class`, by its class)."""
        return method_display_name(self.config["method"])

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def protocol(self) -> dict:
        """The run's protocol as this version reads it (fields added since the run take their defaults)."""
        from lfsbench.protocol import Protocol

        return Protocol.model_validate(self.config["protocol"]).model_dump(mode="json")

    @property
    def order_seed(self) -> int | None:
        """The protocol's order_seed (concept order drawn by it), None for the order as written."""
        return self.config["protocol"].get("order_seed")

    @property
    def setting(self) -> str:
        """The method and the settings it was given, without the seed and the concept order."""
        return run_label(self.method, self.config.get("method_overrides"))

    @property
    def label(self) -> str:
        """What distinguishes a study's cells: the setting, and the concept order where one was drawn."""
        label = self.setting if self.order_seed is None else f"{self.setting} [order {self.order_seed}]"
        return f"{label} [{self.sampling_note}]" if self.sampling_note else label

    @property
    def sampling(self) -> str:
        """How the run's evaluation images were sampled: `ddim, 25 steps` (and `, bfloat16` under autocast)."""
        plan = self.protocol["evaluation"]
        precision = "" if plan["precision"] == "model" else f", {plan['precision']}"
        return f"{plan['sampler']}, {plan['steps']} steps{precision}"

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    def scores(self) -> pd.DataFrame:
        return self.folder.scores()

    def session_rows(self) -> pd.DataFrame:
        return self.folder.session_rows()

    def learned_in(self) -> dict[str, int]:
        from lfsbench.protocol import Protocol

        return Protocol.model_validate(self.config["protocol"]).learned_in()


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run folder (config.json + summary.json) at or below the given paths, in path order."""
    found = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise LfsbenchError(
                f"{root} does not exist. Pass run folders or folders that contain them (e.g. runs/toy)."
            )
        config_name = RunFolder(root).config_file.name
        candidates = [root] if RunFolder(root).is_run() else sorted(p.parent for p in root.rglob(config_name))
        for folder in map(RunFolder, candidates):
            if folder.has_summary():
                found.append(Run(folder.path, folder.config(), folder.summary()))
    if not found:
        raise LfsbenchError(
            f"No finished lfsbench runs under {', '.join(map(str, paths))} (a run folder holds config.json and "
            "summary.json). Run `lfsbench run ...` first, or point at the folder it printed."
        )
    return found


SAMPLING_FIELDS = ("sampler", "steps", "precision")  # of the evaluation plan: how images are drawn, not which


def _comparable(protocol: dict) -> dict:
    """A protocol without its concept order and its evaluation sampling: runs of one protocol in different orders
    (order_seed), or sampled with different samplers, steps or precision, compare image by image (same prompts and
    seeds, same training)."""
    rest = {k: v for k, v in protocol.items() if k not in ("order_seed", "sessions", "evaluation")}
    plan = {k: v for k, v in protocol["evaluation"].items() if k not in SAMPLING_FIELDS}
    return {**rest, "evaluation": plan, "sessions": sorted(protocol["sessions"])}


def same_protocol(runs: list[Run]) -> dict:
    """The protocol all runs share (up to the concept order and the sampling); runs of different protocols are not
    comparable, so mixing them is refused. Where the runs were sampled differently, every run's label says how
    (`naive [dpmsolver++, 10 steps]`), so that no mean mixes them."""
    by_name: dict[str, list[Run]] = {}
    for run in runs:
        by_name.setdefault(json.dumps(_comparable(run.protocol), sort_keys=True), []).append(run)
    if len(by_name) > 1:
        described = "; ".join(
            f"{json.loads(k)['name']!r} ({len(v)} runs, e.g. {v[0].path})" for k, v in by_name.items()
        )
        raise LfsbenchError(
            f"These runs use {len(by_name)} different protocols (or differently overridden ones): {described}. "
            "Their numbers are not comparable. Report each protocol separately (pass only its runs' folders)."
        )
    if len({run.sampling for run in runs}) > 1:
        for run in runs:
            run.sampling_note = run.sampling
    return runs[0].protocol


def group_by_setting(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs that differ only by seed, keyed by label, in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    for label, members in groups.items():
        seeds = [r.seed for r in members]
        if len(set(seeds)) != len(seeds):
            paths = ", ".join(str(r.path) for r in members)
            raise LfsbenchError(
                f"Two runs of {label!r} have the same seed ({paths}); keep one of them in the report's input."
            )
        reached = {r.path: r.summary.get("sessions_finished") for r in members}
        if len(set(reached.values())) > 1:
            described = ", ".join(f"{path} ({n} sessions)" for path, n in reached.items())
            raise LfsbenchError(
                f"The runs of {label!r} stopped after different numbers of sessions: {described}. A mean over "
                "seeds would mix figures of different sessions. Finish the shorter runs (`lfsbench run --resume "
                "FOLDER`) or leave them out of the report's input."
            )
    return groups
