"""What the penalty scripts (ewc_drift.py, olora_overlap.py) share: a run's last saved method state, and the check
that two runs differ only in a penalty's weight, the first with the penalty and the second at weight 0."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def last_state(run: Path, method: str) -> tuple[int, dict[str, torch.Tensor]]:
    """The run's last saved session (sessions sorted as numbers) and its method state."""
    states = sorted((run / "state").glob("session_*.safetensors"), key=lambda f: int(f.stem.removeprefix("session_")))
    if not states:
        sys.exit(f"{run} has no state/session_XX.safetensors: give a run folder of {method}, not an export.")
    return int(states[-1].stem.removeprefix("session_")), load_file(states[-1])


def comparable(penalised: Path, free: Path, method: str, weight: str) -> float:
    """Exit with the reason unless both are runs of `method` on one protocol, seed, data and settings but `weight`,
    the first with the penalty and the second at `weight` 0; returns the first's weight."""
    configs = [json.loads((run / "config.json").read_text()) for run in (penalised, free)]
    methods = [c["method"] for c in configs]
    if not all(isinstance(m, dict) for m in methods):
        sys.exit("a run was made before lfsbench recorded identities (config.json's method is a name): rerun it.")
    if any(m["name"] != method for m in methods):
        sys.exit(f"both runs must be of {method} (config.json's method).")
    weights = [m["settings"][weight] for m in methods]
    if not (weights[0] > 0 and weights[1] == 0):
        sys.exit(f"give the run with the penalty first and the one at {weight}=0 second (their weights: {weights}).")
    others = [{k: v for k, v in m["settings"].items() if k != weight} for m in methods]
    same = [configs[0][k] == configs[1][k] for k in ("protocol", "seed", "data")] + [others[0] == others[1]]
    if not all(same):
        sys.exit(f"the runs differ in more than {weight} (protocol, seed, data or another setting).")
    return weights[0]
