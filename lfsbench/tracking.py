"""Optional experiment tracking: each session's figures and cost, then the summary, the run's tables and its image
grids, sent to MLflow, TensorBoard or Weights & Biases (`--track`). Everything is read back from the run folder,
which stays the source of truth: a tracker can be added to a finished run afterwards (`lfsbench track`), and a
resumed run goes on logging into the same tracked run (its id is kept in the run folder's `tracking.json`).

Where it goes: MLflow to `$MLFLOW_TRACKING_URI` (else MLflow's default store in the working directory), experiment
`lfsbench-PROTOCOL`; TensorBoard event files in `RUN/tensorboard/` (`tensorboard --logdir runs`); W&B to project
`$WANDB_PROJECT` (default `lfsbench`), offline unless `$WANDB_MODE` says otherwise (`wandb sync` uploads later).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from lfsbench.errors import LfsbenchError
from lfsbench.registry import Registry
from lfsbench.results import RunFolder

TRACKERS: Registry[type] = Registry("tracker")  # name -> backend class (its `package` and `description`)
TABLES = ("config.json", "summary.json", "summary.csv", "cost.csv", "ia_matrix.csv", "ta_matrix.csv")
N_BOOT = 200  # intervals are not logged, only values: a small bootstrap keeps per-session logging cheap


def check_tracker(kind: str | None) -> None:
    """Fail before any run starts if the tracker is unknown or its package is missing."""
    if kind is None:
        return
    if kind not in TRACKERS:
        raise LfsbenchError(f"--track {kind!r} is not known: use one of {', '.join(TRACKERS.names())}.")
    import importlib.util

    package = TRACKERS.get(kind).package
    if importlib.util.find_spec(package) is None:
        raise LfsbenchError(
            f"--track {kind} needs the {package} package, which the core install leaves out. Install it with: "
            f"pip install 'lfsbench[track]' (or pip install {package})."
        )


class Tracker:
    """Send a run folder's figures to one tracker. `session(t)` after each finished session, `finish()` at the end;
    both only read the run folder."""

    def __init__(self, kind: str, folder: Path):
        check_tracker(kind)
        self.kind = kind
        self.folder = RunFolder(folder)
        identity = self.folder.identity()
        if identity is None:
            raise LfsbenchError(f"{folder} holds no lfsbench run (no config.json): nothing to track.")
        self.identity = identity
        self.name = self.folder.path.name
        self._ids_file = self.folder.path / "tracking.json"
        stored = self._stored()
        if stored.get(kind) and f"{kind}.sessions" not in stored:
            # tracked before lfsbench recorded what it sent: every finished session was sent as it finished
            done = self.folder.finished_sessions()
            self._record(f"{kind}.sessions", done)
            total = len(self.identity.protocol.sessions)
            self._record(f"{kind}.final", self.folder.has_summary() and len(done) == total)
        self._closed = False
        self._backend = TRACKERS.get(kind)(self)

    def params(self) -> dict:
        """The run's identity as flat parameters (lfsbench/identity.py): method, seed, protocol, its key and setting
        key, every resolved method setting (`method.steps`), every protocol field (`protocol.evaluation.sampler`,
        `protocol.order_seed`), the method source's, data's and weights' fingerprints and lfsbench's version; so
        runs that differ in any of them differ in the tracker too."""
        from lfsbench.identity import flat_content

        i = self.identity
        params = {"method": i.method_name, "seed": i.seed, "protocol": i.protocol.name}
        params |= {"sessions": len(i.protocol.sessions), "identity": i.key(), "setting": i.setting_key()}
        params |= {"label": i.label, "data.path": i.data.path}
        for key, value in flat_content(i).items():
            if key.startswith("method.settings."):
                params[f"method.{key.removeprefix('method.settings.')}"] = value
            elif key not in ("seed", "protocol.sessions", "protocol.name"):
                params[key] = value
        return params

    def _stored(self) -> dict:
        """tracking.json: per tracker, its run id (`kind`) and what was sent to it (`kind.sessions`, `kind.final`)."""
        if self._ids_file.is_file():
            try:
                data = json.loads(self._ids_file.read_text())
                return data if isinstance(data, dict) else {}
            except json.JSONDecodeError:
                return {}
        return {}

    def _record(self, key: str, value) -> None:
        from lfsbench.results import atomic_write_text

        atomic_write_text(self._ids_file, json.dumps({**self._stored(), key: value}, indent=1))

    def stored_id(self) -> str | None:
        return self._stored().get(self.kind)

    def keep_id(self, run_id: str) -> None:
        self._record(self.kind, run_id)

    def sent(self) -> list[int]:
        """The sessions already sent to this tracker (so sending again never logs a point twice)."""
        return list(self._stored().get(f"{self.kind}.sessions", []))

    def session(self, t: int, again: bool = False) -> None:
        """Log session t's curve figures (quality once every learned concept was evaluated, and cost) unless they were
        sent before; `again`: a session the run has just (re)done is always sent."""
        from lfsbench.evaluation import tables

        if t in self.sent() and not again:
            return
        learned_in = self.identity.protocol.learned_in()
        rows = tables.session_curve(self.folder.scores(), self.folder.cost(), learned_in, t, N_BOOT)
        metrics = {}
        for r in rows:  # each figure, and its 95% interval where it has one (`IA_low`, `IA_high`)
            for key, suffix in (("value", ""), ("ci_low", "_low"), ("ci_high", "_high")):
                value = float(r.get(key, float("nan")))
                if math.isfinite(value) and (key == "value" or value != float(r["value"])):
                    metrics[r["metric"] + suffix] = value
        images = sorted((self.folder.path / "images" / f"session_{t:02d}").glob("*.png"))
        self._backend.session(metrics, images, t)
        self._record(f"{self.kind}.sessions", sorted({*self.sent(), t}))

    def finish(self, again: bool = False) -> None:
        """Log the final summary (as `final/...` figures) and the run's tables unless they were sent before (`again`:
        a run that has just finished always sends them)."""
        if self._stored().get(f"{self.kind}.final") and not again:
            self.close()
            return
        summary = self.folder.summary() or {}
        final = {}
        for key, entry in summary.items():  # each figure, and its interval's bounds (`final/IA_low`, `final/IA_high`)
            parts = entry if isinstance(entry, dict) else {"value": entry}
            for part, suffix in (("value", ""), ("ci_low", "_low"), ("ci_high", "_high")):
                value = parts.get(part)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    final[f"final/{key}{suffix}"] = float(value)
        self._backend.final(final, [self.folder.path / name for name in TABLES if (self.folder.path / name).is_file()])
        self._record(f"{self.kind}.final", True)
        self.close()

    def close(self, failed: bool = False) -> None:
        if not self._closed:
            self._closed = True
            self._backend.close(failed)

    def catch_up(self, done: list[int]) -> None:
        """A tracked run that starts on a resumed run folder: log the sessions finished before it not yet sent."""
        for t in done:
            self.session(t)

    def replay(self) -> int:
        """Log every finished session not yet sent, then the end (a run tracked after it ran); returns the sessions
        logged by this call."""
        todo = [t for t in self.folder.finished_sessions() if t not in self.sent()]
        for t in todo:
            self.session(t)
        self.finish()
        return len(todo)


@TRACKERS.register("mlflow")
class _MLflow:
    package = "mlflow"
    description = "MLflow: $MLFLOW_TRACKING_URI (else MLflow's default store here), experiment lfsbench-PROTOCOL"

    def __init__(self, tracker: Tracker):
        import mlflow

        self.mlflow, self.tracker = mlflow, tracker
        run_id = tracker.stored_id()
        try:
            if run_id is None:
                mlflow.set_experiment(f"lfsbench-{tracker.identity.protocol.name}")
                run = mlflow.start_run(run_name=tracker.name, tags={"lfsbench.run_folder": str(tracker.folder.path)})
                mlflow.log_params({k: str(v)[:500] for k, v in tracker.params().items()})
                tracker.keep_id(run.info.run_id)
            else:
                mlflow.start_run(run_id=run_id)
        except Exception as err:  # noqa: BLE001 - the store's own exception types differ between MLflow versions
            raise LfsbenchError(
                f"MLflow could not open its tracking store {mlflow.get_tracking_uri()!r} for {tracker.folder.path} "
                f"({' '.join(str(err).split())[:300]}). Nothing was run. Point $MLFLOW_TRACKING_URI at a tracking "
                "server (http://HOST:5000) or a store your MLflow package supports (sqlite:///mlflow.db needs the "
                "full mlflow package; a file:PATH store needs MLFLOW_ALLOW_FILE_STORE=true on MLflow 3), or drop "
                "--track (the run folder holds every figure; `lfsbench track` sends them later)."
            ) from None

    def session(self, metrics: dict, images: list[Path], step: int) -> None:
        self.mlflow.log_metrics({_key(k): v for k, v in metrics.items()}, step=step)
        for path in images:
            self.mlflow.log_artifact(str(path), artifact_path=f"images/session_{step:02d}")

    def final(self, figures: dict, files: list[Path]) -> None:
        self.mlflow.log_metrics({_key(k): v for k, v in figures.items()})
        for path in files:
            self.mlflow.log_artifact(str(path), artifact_path="tables")

    def close(self, failed: bool) -> None:
        self.mlflow.end_run(status="FAILED" if failed else "FINISHED")


@TRACKERS.register("tensorboard")
class _TensorBoard:
    package = "tensorboard"
    description = "TensorBoard event files in RUN/tensorboard/ (tensorboard --logdir runs)"

    def __init__(self, tracker: Tracker):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(tracker.folder.path / "tensorboard"))
        if tracker.stored_id() is None:
            self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in tracker.params().items()))
            tracker.keep_id(str(tracker.folder.path / "tensorboard"))
        self.last_step = len(tracker.identity.protocol.sessions) - 1

    def session(self, metrics: dict, images: list[Path], step: int) -> None:
        import numpy as np
        from PIL import Image

        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        for path in images:  # one tag per grid, one step per session: TensorBoard's slider walks the sessions
            with Image.open(path) as image:
                self.writer.add_image(path.stem, np.asarray(image.convert("RGB")), step, dataformats="HWC")
        self.writer.flush()

    def final(self, figures: dict, files: list[Path]) -> None:
        for key, value in figures.items():
            self.writer.add_scalar(key, value, self.last_step)
        summary = next((path for path in files if path.name == "summary.csv"), None)
        if summary is not None:
            self.writer.add_text("summary", summary.read_text())

    def close(self, failed: bool) -> None:
        self.writer.close()


@TRACKERS.register("wandb")
class _Wandb:
    package = "wandb"
    description = (
        "Weights & Biases: project $WANDB_PROJECT (default lfsbench), offline unless $WANDB_MODE says, files in "
        "$WANDB_DIR (default: the run folder)"
    )

    def __init__(self, tracker: Tracker):
        import wandb

        self.wandb = wandb
        run_id = tracker.stored_id()
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "lfsbench"),
            name=tracker.name,
            id=run_id,
            resume="allow" if run_id else None,
            config=tracker.params(),
            dir=os.environ.get("WANDB_DIR") or str(tracker.folder.path),
            mode=os.environ.get("WANDB_MODE", "offline"),
        )
        if run_id is None:
            tracker.keep_id(self.run.id)

    def session(self, metrics: dict, images: list[Path], step: int) -> None:
        pictures = {f"images/{p.stem}": self.wandb.Image(str(p)) for p in images}
        self.run.log({**metrics, **pictures, "session": step})

    def final(self, figures: dict, files: list[Path]) -> None:
        self.run.summary.update(figures)
        for path in files:
            self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def _key(name: str) -> str:
    """A metric name every tracker accepts (MLflow allows letters, digits, _ - . / and spaces)."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)
