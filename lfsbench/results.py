"""The run folder: what a run writes, and how it is read back (by resume, `report`, `study` and `check`).

`RunFolder` is the only code that knows a path inside a run folder; `run_label` and `run_dirname` are the only
code that names runs (a report's settings, the default folders of `lfsbench run` and of studies).

    run/
      config.json            resolved protocol, method and settings, seed (identifies the run)
      meta.json              library versions, git revision, device, start time
      base/                  the base model's class-image embeddings (for drift) and the drift scale;
        NOUN.png, shots/NAME.png   the base model's class images, each concept's shots (for reports)
      state/session_XX.safetensors   the method's state after session XX (resume, and delta bytes)
      scores/session_XX.csv  one row per generated image (prompt, seed, TA cosine, IA, drift)
      sessions/session_XX.csv  one row per concept or class and metric, with its 95% interval
      images/session_XX/NAME.png, class_NOUN.png, control_NAME.png  a few generated images per concept and class
      cost.csv, ta_matrix.csv, ia_matrix.csv, summary.json, summary.csv
"""

from __future__ import annotations

import json
import os
import platform
import re
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
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _settings_text(settings: dict, separator: str) -> str:
    return separator.join(f"{k}={v}" for k, v in sorted(settings.items()))


def run_label(method: str, settings: dict | None = None) -> str:
    """A setting as reports and thresholds name it: the method and the settings it was given, `lfs (icgen=False)`."""
    return f"{method} ({_settings_text(settings, ', ')})" if settings else method


MAX_DIRNAME = 120  # longer names (many settings) end in a hash of the settings instead


def run_dirname(method: str, settings: dict | None, seed: int) -> str:
    """A run's default folder name: `naive-seed0`, `lfs-context_strength=0.6,dfkd=False-seed1`."""
    middle = f"-{_settings_text(settings, ',')}" if settings else ""
    name = f"{method}{middle}-seed{seed}"
    if len(name) > MAX_DIRNAME:
        import hashlib

        digest = hashlib.sha1(_settings_text(settings, "\n").encode()).hexdigest()[:10]
        name = f"{method}-{digest}-seed{seed}"
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", name)


def default_run_folder(root: Path, protocol: str, method: str, settings: dict | None, seed: int) -> Path:
    """Where a run goes unless told: ROOT/PROTOCOL/METHOD[-SETTINGS]-seedN (`lfsbench run` and studies alike)."""
    return Path(root) / Path(protocol).stem / run_dirname(method, settings, seed)


class RunFolder:
    """Reads and writes one run's folder; every write is atomic."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # ------------------------------------------------------------ paths (the only place that knows them)

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    def matrix_csv(self, metric: str) -> Path:
        """ta_matrix.csv, ia_matrix.csv."""
        return self.path / f"{metric.lower()}_matrix.csv"

    def base_embeddings_file(self) -> Path:
        return self.path / "base" / "class_embeddings.safetensors"

    def drift_scale_file(self) -> Path:
        return self.path / "base" / "drift_scale.json"

    def base_class_grid(self, noun: str) -> Path:
        return self.path / "base" / f"{noun}.png"

    def shots_grid(self, concept: str) -> Path:
        return self.path / "base" / "shots" / f"{concept}.png"

    def session_csv(self, t: int) -> Path:
        return self.path / "sessions" / f"session_{t:02d}.csv"

    def scores_csv(self, t: int) -> Path:
        return self.path / "scores" / f"session_{t:02d}.csv"

    def state_file(self, t: int) -> Path:
        return self.path / "state" / f"session_{t:02d}.safetensors"

    def images_dir(self, t: int) -> Path:
        return self.path / "images" / f"session_{t:02d}"

    def concept_grid(self, t: int, concept: str) -> Path:
        return self.images_dir(t) / f"{concept}.png"

    def class_grid(self, t: int, noun: str) -> Path:
        return self.images_dir(t) / f"class_{noun}.png"

    def control_grid(self, t: int, concept: str) -> Path:
        return self.images_dir(t) / f"control_{concept}.png"

    # ------------------------------------------------------------ identity

    def is_run(self) -> bool:
        return self.config_file.is_file()

    def has_summary(self) -> bool:
        return self.summary_file.is_file()

    def config(self) -> dict | None:
        f = self.config_file
        return json.loads(f.read_text()) if f.is_file() else None

    def claim(self, config: dict, device: str):
        """Start a new run here, or confirm that the folder holds this same run (then it resumes)."""
        existing = self.config()
        if existing is not None and existing != config:
            differ = sorted(k for k in set(existing) | set(config) if existing.get(k) != config.get(k))
            raise LfsbenchError(
                f"The output folder {self.path} holds a different run (its config.json differs in: "
                f"{', '.join(differ)}). "
                "Nothing was changed. Choose another folder with --output, or use --resume to continue that "
                "run as it was."
            )
        if existing is None:
            if self.path.exists() and any(self.path.iterdir()):
                raise LfsbenchError(
                    f"The output folder {self.path} is not empty and holds no lfsbench run (no config.json). "
                    "Nothing was changed. Choose another folder with --output."
                )
            atomic_write_text(self.config_file, json.dumps(config, indent=2, sort_keys=True))
            meta = {
                "versions": library_versions(),
                "git_revision": git_revision(),
                "python": platform.python_version(),
                "device": device,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            atomic_write_text(self.path / "meta.json", json.dumps(meta, indent=2))

    # ------------------------------------------------------------ sessions

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

    def sessions_with_images(self, concepts: list[str], sessions: int) -> list[int]:
        """Sessions after which images of at least one of the concepts were kept."""
        return [t for t in range(sessions) if any(self.concept_grid(t, name).is_file() for name in concepts)]

    # ------------------------------------------------------------ base model and matrices

    def base_state(self) -> tuple[dict, float] | None:
        """The base model's class-image embeddings and the drift scale, if this run computed them already."""
        from safetensors.torch import load_file

        if self.base_embeddings_file().is_file() and self.drift_scale_file().is_file():
            scale = json.loads(self.drift_scale_file().read_text())["drift_seed_scale"]
            return load_file(self.base_embeddings_file()), scale
        return None

    def write_base_state(self, embeddings: dict, scale: float):
        from safetensors.torch import save_file

        self.base_embeddings_file().parent.mkdir(parents=True, exist_ok=True)
        save_file(embeddings, self.base_embeddings_file())
        atomic_write_text(self.drift_scale_file(), json.dumps({"drift_seed_scale": scale}))

    def write_matrix(self, metric: str, matrix: pd.DataFrame):
        atomic_write_csv(self.matrix_csv(metric), matrix.reset_index())

    def matrix(self, metric: str) -> pd.DataFrame:
        """metric[t][c] as written after the last finished session (index: session)."""
        return pd.read_csv(self.matrix_csv(metric)).set_index("session")

    # ------------------------------------------------------------ summary

    def write_summary(self, summary: dict, flat: dict):
        atomic_write_text(self.summary_file, json.dumps(summary, indent=2))
        atomic_write_csv(self.path / "summary.csv", pd.DataFrame([flat]))

    def summary(self) -> dict:
        f = self.summary_file
        if not f.is_file():
            raise LfsbenchError(
                f"{self.path} has no summary.json: the run has not finished a session yet. Run it again to resume."
            )
        return json.loads(f.read_text())

    def is_finished(self, sessions: int) -> bool:
        """Whether the run finished all `sessions` sessions of its protocol (its summary says so)."""
        return self.has_summary() and json.loads(self.summary_file.read_text()).get("sessions_finished") == sessions
