"""Finding stored runs, reading them, and grouping them into settings (runs that differ only by seed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lfsbench.errors import LfsbenchError
from lfsbench.identity import RunIdentity, describe_field, field_order, flat_content, settings_text, short
from lfsbench.results import RunFolder


@dataclass
class Run:
    path: Path
    identity: RunIdentity
    summary: dict
    note: str = ""  # what sets this run's setting apart from others of the same label ("dpmsolver++, 10 steps")

    @property
    def method(self) -> str:
        """The method as reports name it (a method from a file, `path/file.py:Class`, by its class)."""
        return self.identity.method_name

    @property
    def seed(self) -> int:
        return self.identity.seed

    @property
    def protocol(self) -> dict:
        """The run's protocol as this version reads it (fields added since the run take their defaults)."""
        return self.identity.protocol.model_dump(mode="json")

    @property
    def order_seed(self) -> int | None:
        """The protocol's order_seed (concept order drawn by it), None for the order as written."""
        return self.identity.protocol.order_seed

    @property
    def fold(self) -> int:
        """The real-data fold it holds out (protocol split.fold; 0 on the toy world, which takes no split)."""
        return self.identity.protocol.split.fold

    @property
    def setting(self) -> str:
        """The method and the settings it was given, and what else sets it apart, without the concept order."""
        label = self.identity.method_name
        if self.identity.method.overrides:
            label += f" ({settings_text(self.identity.method.overrides, ', ')})"
        return f"{label} [{self.note}]" if self.note else label

    @property
    def label(self) -> str:
        """What distinguishes a report's settings: the setting, and the concept order where one was drawn."""
        base = self.identity.label
        return f"{base} [{self.note}]" if self.note else base

    @property
    def sampling(self) -> str:
        """How the run's evaluation images were sampled: `ddim, 25 steps` (`, eta 1.0` with DDIM's eta, and `, bfloat16`
        under autocast)."""
        plan = self.identity.protocol.evaluation
        eta = f", eta {plan.eta}" if plan.eta else ""
        precision = "" if plan.precision == "model" else f", {plan.precision}"
        return f"{plan.sampler}, {plan.steps} steps{eta}{precision}"

    @property
    def sessions(self) -> tuple[int, int]:
        """(sessions finished, sessions of its protocol): a run stopped early has fewer of the first."""
        return int(self.summary.get("sessions_finished", 0)), len(self.identity.protocol.sessions)

    @property
    def finished(self) -> bool:
        done, total = self.sessions
        return done == total

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    def scores(self) -> pd.DataFrame:
        return self.folder.scores()

    def session_rows(self) -> pd.DataFrame:
        return self.folder.session_rows()

    def learned_in(self) -> dict[str, int]:
        return self.identity.protocol.learned_in()


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
                folder.check_intact()
                found.append(Run(folder.path, folder.identity(), folder.summary()))
    if not found:
        raise LfsbenchError(
            f"No finished lfsbench runs under {', '.join(map(str, paths))} (a run folder holds config.json and "
            "summary.json). Run `lfsbench run ...` first, or point at the folder it printed."
        )
    return found


SAMPLING_FIELDS = ("sampler", "steps", "eta", "precision")  # of the evaluation plan: how images are drawn, not which


def _comparable(protocol: dict) -> dict:
    """A protocol without its concept order, its real-data fold, its evaluation sampling and its wording: runs of one
    protocol in different orders (order_seed) or folds (split.fold: other shots and references of the same images),
    or sampled with different samplers, steps, eta or precision, are reported together, each such setting under its
    own label (`naive [split.fold=1]`). Same prompts and seeds: they compare image by image, except across folds,
    whose IA has other references (aggregate.pairs_table pairs only settings of one fold)."""
    rest = {k: v for k, v in protocol.items() if k not in ("order_seed", "sessions", "evaluation", "description")}
    plan = {k: v for k, v in protocol["evaluation"].items() if k not in SAMPLING_FIELDS}
    source = {k: v for k, v in protocol["source"].items() if k != "path"}
    if "split" in rest:
        rest["split"] = {k: v for k, v in rest["split"].items() if k != "fold"}
    return {**rest, "source": source, "evaluation": plan, "sessions": sorted(protocol["sessions"])}


def same_protocol(runs: list[Run]) -> dict:
    """The protocol all runs share (up to the concept order, the real-data fold and the sampling: `_comparable`);
    runs of different protocols are not comparable, so mixing them is refused."""
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
    return runs[0].protocol


def _notes(members: list[RunIdentity]) -> list[str]:
    """What sets each of several settings with one label apart: the fields of their identities that differ (the seed
    aside), as `dpmsolver++, 10 steps` for the sampling, `data 1a2b3c4d`, `method source 5e6f7a8b`, `steps=400` for a
    method setting, `lfsbench 0.2.0`; a fingerprint a run did not record reads `unrecorded`."""
    flats = [{k: v for k, v in flat_content(m).items() if k != "seed"} for m in members]
    keys = sorted({k for f in flats for k in f}, key=field_order)
    differing = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    notes = []
    for identity, flat in zip(members, flats, strict=True):
        parts = []
        if any(k.removeprefix("protocol.evaluation.") in SAMPLING_FIELDS for k in differing):
            parts.append(Run(Path(), identity, {}).sampling)
        for key in differing:
            if key.removeprefix("protocol.evaluation.") in SAMPLING_FIELDS:
                continue
            value = flat.get(key)
            if key.startswith(("method.settings.", "protocol.")):
                parts.append(f"{key.split('.', 2)[-1] if key.startswith('method.') else key[9:]}={short(value)}")
            else:
                parts.append(f"{describe_field(key)} {short(value)}")
        notes.append(", ".join(parts))
    return notes


def group_by_setting(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs whose identities are equal up to the seed, keyed by label, in first-seen order. Runs that differ in any
    identity field are different settings, never one mean: where two settings would share a label (the same method
    and settings given, but another sampler, data, method source, default or version), each label is given what
    sets it apart (`naive [dpmsolver++, 10 steps]`, `naive [data 1a2b3c4d]`)."""
    by_key: dict[str, list[Run]] = {}
    for run in runs:
        by_key.setdefault(run.identity.setting_key(), []).append(run)
    by_label: dict[str, list[str]] = {}
    for key, members in by_key.items():
        by_label.setdefault(members[0].label, []).append(key)
    for keys in by_label.values():
        if len(keys) > 1:
            for key, note in zip(keys, _notes([by_key[k][0].identity for k in keys]), strict=True):
                for run in by_key[key]:
                    run.note = note
    for members in by_key.values():  # a run stopped early is shown as such wherever its label appears
        for run in members:
            if not run.finished:
                unfinished = "after {} of {} sessions".format(*run.sessions)
                run.note = f"{run.note}, {unfinished}" if run.note else unfinished
    groups = {members[0].label: members for members in by_key.values()}
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
