"""The run folder: what a run writes, and how it is read back (by resume, `report` and `check`).

    run/
      config.json            resolved protocol, method and settings, seed (identifies the run)
      meta.json              library versions, git revision, device, start time
      base/                  the base model's class-image embeddings (for drift) and the drift scale
      state/session_XX.safetensors   the method's state after session XX (resume, and delta bytes)
      scores/session_XX.csv  one row per generated image (prompt, seed, TA cosine, IA, drift)
      sessions/session_XX.csv  one row per concept or class and metric, with its 95% interval
      images/session_XX/*.png  a few generated images per concept and class
      cost.csv, ta_matrix.csv, ia_matrix.csv, summary.json, summary.csv
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import pandas as pd

from lfsbench.errors import LfsbenchError


def atomic_write_text(path: Path, text: str):
    """Write via a temporary file and rename, so a kill never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_csv(path: Path, frame: pd.DataFrame):
    atomic_write_text(path, frame.to_csv(index=False))


def library_versions() -> dict:
    import importlib.metadata as md

    names = ["lfsbench", "torch", "diffusers", "transformers", "open_clip_torch", "numpy", "pandas"]
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class RunFolder:
    """Reads and writes one run's folder; every write is atomic."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # ------------------------------------------------------------ identity

    def config(self) -> dict | None:
        f = self.path / "config.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def claim(self, config: dict, device: str):
        """Start a new run here, or confirm that the folder holds this same run (then it resumes)."""
        existing = self.config()
        if existing is not None and existing != config:
            differ = sorted(k for k in set(existing) | set(config) if existing.get(k) != config.get(k))
            raise LfsbenchError(
                f"The output folder {self.path} holds a different run (its config.json differs in: {', '.join(differ)}). "
                "Nothing was changed. Choose another folder with --output, or use --resume to continue that run as it was."
            )
        if existing is None:
            if self.path.exists() and any(self.path.iterdir()):
                raise LfsbenchError(
                    f"The output folder {self.path} is not empty and holds no lfsbench run (no config.json). "
                    "Nothing was changed. Choose another folder with --output."
                )
            atomic_write_text(self.path / "config.json", json.dumps(config, indent=2, sort_keys=True))
            meta = {"versions": library_versions(), "git_revision": git_revision(), "python": platform.python_version(),
                    "device": device, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
            atomic_write_text(self.path / "meta.json", json.dumps(meta, indent=2))

    # ------------------------------------------------------------ sessions

    def session_csv(self, t: int) -> Path:
        return self.path / "sessions" / f"session_{t:02d}.csv"

    def scores_csv(self, t: int) -> Path:
        return self.path / "scores" / f"session_{t:02d}.csv"

    def state_file(self, t: int) -> Path:
        return self.path / "state" / f"session_{t:02d}.safetensors"

    def images_dir(self, t: int) -> Path:
        return self.path / "images" / f"session_{t:02d}"

    def finished_sessions(self) -> list[int]:
        """Sessions whose results are complete (their session CSV is the last thing written)."""
        folder = self.path / "sessions"
        if not folder.is_dir():
            return []
        done = sorted(int(p.stem.split("_")[1]) for p in folder.glob("session_*.csv"))
        return [t for t in done if self.state_file(t).is_file() and self.scores_csv(t).is_file()]

    def session_rows(self) -> pd.DataFrame:
        frames = [pd.read_csv(self.session_csv(t)) for t in self.finished_sessions()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def scores(self) -> pd.DataFrame:
        frames = [pd.read_csv(self.scores_csv(t)) for t in self.finished_sessions()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def cost(self) -> pd.DataFrame:
        f = self.path / "cost.csv"
        return pd.read_csv(f) if f.is_file() else pd.DataFrame()

    def write_cost_row(self, row: dict):
        cost = self.cost()
        if len(cost):
            cost = cost[cost["session"] != row["session"]]
        atomic_write_csv(self.path / "cost.csv", pd.concat([cost, pd.DataFrame([row])], ignore_index=True))

    def summary(self) -> dict:
        f = self.path / "summary.json"
        if not f.is_file():
            raise LfsbenchError(f"{self.path} has no summary.json: the run has not finished a session yet. Run it again to resume.")
        return json.loads(f.read_text())
