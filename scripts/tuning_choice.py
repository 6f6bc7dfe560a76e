"""Apply the pre-registered selection rule of reports/sweeps/toy-tune.yaml to its report's summary.csv.

    python scripts/tuning_choice.py reports/sweeps/toy-tune/summary.csv

Per method, the configuration with the highest final IA (held-out) replaces the default only if its IA beats the
default's by more than IA_MARGIN while its TA is at most TA_SLACK below the default's, its copy rate at most
COPY_SLACK above and its class TA drop at most CLASS_SLACK above. Prints one Markdown table per method (the rows the
rule compared, the chosen one in bold) and the verdict; docs/methods.md carries the output.
"""

from __future__ import annotations

import sys

import pandas as pd

IA_MARGIN, TA_SLACK, COPY_SLACK, CLASS_SLACK = 0.02, 0.01, 0.05, 0.02
SHOWN = ["IA", "TA", "IAD", "IA_right_after_learning", "copy_rate", "class_TA_drop", "drift"]


def admissible(row: pd.Series, default: pd.Series) -> bool:
    return (
        row.TA >= default.TA - TA_SLACK
        and row.copy_rate <= default.copy_rate + COPY_SLACK
        and row.class_TA_drop <= default.class_TA_drop + CLASS_SLACK
    )


def choose(rows: pd.DataFrame, method: str) -> tuple[str, str]:
    """(chosen setting, why) for one method's rows."""
    default = rows[rows.setting == method].iloc[0]
    best = rows.sort_values("IA", ascending=False).iloc[0]
    if best.setting == method:
        return method, "the default has the highest IA"
    if best.IA - default.IA <= IA_MARGIN:
        return method, f"best other ({best.setting}) beats it by {best.IA - default.IA:+.3f} <= {IA_MARGIN}"
    if not admissible(best, default):
        return method, f"best other ({best.setting}) fails a guard (TA, copy rate or class TA drop)"
    return best.setting, f"IA {best.IA - default.IA:+.3f} over the default, within every guard"


def cell(row: pd.Series, key: str) -> str:
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    if pd.notna(low) and pd.notna(high):
        return f"{row[key]:.3f} [{low:.3f}, {high:.3f}]"
    return f"{row[key]:.3f}"


def main(path: str) -> None:
    table = pd.read_csv(path)
    unfinished = table[table.sessions < table.sessions.max()]
    if len(unfinished):  # a run still going (or stopped) would be compared on fewer sessions than the others
        sys.exit(f"not every run has finished all {table.sessions.max()} sessions: {', '.join(unfinished.setting)}")
    for method, rows in table.groupby("method", sort=False):
        chosen, why = choose(rows, method)
        print(f"\n**{method}**: keeps `{chosen}` ({why})\n")
        print("| setting | " + " | ".join(SHOWN) + " | train s/session |")
        print("|---" * (len(SHOWN) + 2) + "|")
        for _, row in rows.iterrows():
            name = f"**{row.setting}**" if row.setting == chosen else row.setting
            cells = " | ".join(cell(row, key) for key in SHOWN)
            print(f"| {name} | {cells} | {row.train_seconds_per_session:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reports/sweeps/toy-tune/summary.csv")
