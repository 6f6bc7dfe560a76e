"""Whether EWC's penalty acts: how far the K/V moved off the first session's, on the weights its Fisher says matter.

    python scripts/ewc_drift.py RUN_WITH_PENALTY RUN_WITHOUT

Both are run folders of `ewc` (with their `state/`, so not exports) on the same protocol, seed and settings, the
second at `-o ewc_weight=0` (which trains exactly as naive: the Fisher draws have their own random stream), both
finished to the same session and run at the same torch threads (another count sums in another order). Their first
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from penalty_runs import comparable, last_state  # noqa: E402

GROUPS = (("top 1% of F_0", 0.99, 1.0), ("top 10% of F_0", 0.90, 1.0), ("other 90%", 0.0, 0.90))


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
    penalised, free = Path(sys.argv[1]), Path(sys.argv[2])
    comparable(penalised, free, "ewc", "ewc_weight")
    (t, with_penalty), (t_free, without) = last_state(penalised, "ewc"), last_state(free, "ewc")
    if t != t_free:
        sys.exit(f"the runs' last saved sessions differ ({t} and {t_free}): finish both (lfsbench run --resume).")
    rows = drift_table(with_penalty, without)
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
