"""Whether O-LoRA's penalty acts: how much each session's down-projection A_t overlaps the earlier sessions' A_i.

    python scripts/olora_overlap.py RUN_WITH_PENALTY RUN_WITHOUT

Both are run folders of `o-lora` (with their `state/`, so not exports) on the same protocol, seed and settings, the
second at `-o orth_weight=0` (incremental LoRA), finished to the same session. A session's adapter starts from the
same Gaussian A in both (drawn from the session's seed), so what differs is training. For every session t after
the first, the script prints, for each run:

- the overlap the penalty charges, sum over layers and i < t of sum |A_i A_t^T| (O-LoRA's L_orth without its weight);
- the mean |A_i A_t^T| entry;
- the mean |cosine| between a row of A_i and a row of A_t, beside what independent random directions of the same
  width give (sqrt(2 / (pi d)), averaged over the layers): a scale-free reading of how orthogonal the subspaces are.

A penalty that acts leaves the penalised run's overlap below the free run's. Prints a Markdown table (docs/methods.md
carries part of it).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from penalty_runs import comparable, last_state  # noqa: E402


def down_projections(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Each finished session's A by layer (lora.SSSS.<layer>.A), in session order."""
    sessions: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith("lora.") and key.endswith(".A"):
            _, which, rest = key.split(".", 2)
            if which != "new":
                sessions.setdefault(which, {})[rest.removesuffix(".A")] = value.double()
    if len(sessions) < 2:
        sys.exit("the state holds fewer than two sessions' adapters: is it a run of o-lora with two sessions or more?")
    return [sessions[k] for k in sorted(sessions)]


def overlaps(factors: list[dict[str, torch.Tensor]], t: int) -> dict[str, float]:
    """Session t's A against every earlier session's: the penalty's sum, the mean entry, the mean row |cosine|."""
    total, entries, cosines, chance = 0.0, [], [], []
    for layer, a_t in factors[t].items():
        unit_t = a_t / a_t.norm(dim=1, keepdim=True)
        chance.append(math.sqrt(2 / (math.pi * a_t.shape[1])))
        for i in range(t):
            a_i = factors[i][layer]
            products = (a_i @ a_t.T).abs()
            total += float(products.sum())
            entries.append(products.flatten())
            cosines.append((a_i / a_i.norm(dim=1, keepdim=True) @ unit_t.T).abs().flatten())
    return {
        "charged": total,
        "entry": float(torch.cat(entries).mean()),
        "cosine": float(torch.cat(cosines).mean()),
        "chance": sum(chance) / len(chance),
    }


def main(penalised: Path, free: Path) -> None:
    weight = comparable(penalised, free, "o-lora", "orth_weight")
    (last_p, state_p), (last_f, state_f) = last_state(penalised, "o-lora"), last_state(free, "o-lora")
    if last_p != last_f:
        sys.exit(f"the runs are at different sessions ({last_p} and {last_f}): finish both to the same one.")
    runs = {f"orth_weight={weight}": down_projections(state_p), "orth_weight=0": down_projections(state_f)}
    header = (
        "session",
        "run",
        "sum \\|A_i A_t^T\\| (charged)",
        "mean \\|A_i A_t^T\\| entry",
        "mean row \\|cos\\| (random)",
    )
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|")
    for t in range(1, len(runs["orth_weight=0"])):
        for label, factors in runs.items():
            o = overlaps(factors, t)
            print(f"| {t} | {label} | {o['charged']:.2f} | {o['entry']:.4f} | {o['cosine']:.4f} ({o['chance']:.4f}) |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
