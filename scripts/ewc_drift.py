"""Whether EWC's penalty acts: how far the K/V moved off the first session's, on the weights its Fisher says matter.

    python scripts/ewc_drift.py RUN_WITH_PENALTY RUN_WITHOUT

Both are run folders of `ewc` (with their `state/`, so not exports) on the same protocol and seed, the second at
`-o ewc_weight=0` (which trains exactly as naive: the Fisher draws have their own random stream). Their first
session is the same, so both start the later sessions from the same K/V (theta_0, the first session's anchor) and
the penalised run's first-session Fisher F_0 ranks the same weights in both. For the weights in the top 1% and top
10% of F_0 and the remaining 90%, the script prints the root-mean-square drift |theta_T - theta_0| after the last
session T of each run and their ratio, and the Fisher-weighted drift sum F_0 (theta_T - theta_0)^2 that the
penalty charges. A penalty that acts holds the high-Fisher weights nearer theta_0 than the low-Fisher ones, and
nearer than the unpenalised run does. Prints a Markdown table (docs/methods.md carries it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

GROUPS = (("top 1% of F_0", 0.99, 1.0), ("top 10% of F_0", 0.90, 1.0), ("other 90%", 0.0, 0.90))


def last_state(run: Path) -> dict[str, torch.Tensor]:
    states = sorted((run / "state").glob("session_*.safetensors"))
    if not states:
        sys.exit(f"{run} has no state/session_XX.safetensors: give a run folder of ewc, not an export.")
    return load_file(states[-1])


def first_session(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """The first session's Fisher or anchor (`kind`), by K/V name."""
    prefix = f"{kind}.0000."
    found = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if not found:
        sys.exit(f"the state has no {prefix}* tensors: is it a run of ewc with at least two sessions?")
    return found


def flat(tensors: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([tensors[n].float().flatten() for n in names])


def drift_table(penalised: dict[str, torch.Tensor], free: dict[str, torch.Tensor]) -> list[dict]:
    fisher = first_session(penalised, "fisher")
    names = sorted(fisher)
    f0 = flat(fisher, names)
    anchor = flat(first_session(penalised, "anchor"), names)
    if not torch.allclose(anchor, flat(first_session(free, "anchor"), names), atol=1e-6):
        sys.exit("the two runs' first sessions differ: give runs of one protocol, seed and settings but ewc_weight.")
    moved = {
        label: flat({n: s[f"kv.{n}"] for n in names}, names) - anchor
        for label, s in (("with", penalised), ("without", free))
    }
    order = torch.argsort(f0)
    rows = []
    for group, low, high in GROUPS:
        picked = order[int(low * len(order)) : int(high * len(order))]
        rms = {label: float(d[picked].pow(2).mean().sqrt()) for label, d in moved.items()}
        rows.append(
            {
                "weights": group,
                "count": len(picked),
                "mean F_0": float(f0[picked].mean()),
                "RMS drift with": rms["with"],
                "RMS drift without": rms["without"],
                "with / without": rms["with"] / rms["without"],
                "F_0-weighted drift with": float((f0[picked] * moved["with"][picked].pow(2)).sum()),
                "F_0-weighted drift without": float((f0[picked] * moved["without"][picked].pow(2)).sum()),
            }
        )
    return rows


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = drift_table(last_state(Path(sys.argv[1])), last_state(Path(sys.argv[2])))
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
