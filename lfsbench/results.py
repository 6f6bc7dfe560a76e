"""The run folder: what a run writes, and how it is read back (by resume, `report`, `study` and `check`).

`RunFolder` is the only code that knows a path inside a run folder; what a run is, and how runs are named, is the run's
identity (lfsbench/identity.py), which config.json holds.

    run/
      config.json            the run's identity: resolved protocol, method settings, source, data and weights
                             fingerprints, seed, version
      meta.json              library versions, git revision, device, torch threads, start time
      base/                  the base model's class-image embeddings (for drift) and the drift scale;
        NOUN.png, shots/NAME.png   the base model's class images, each concept's shots (for reports)
      state/session_XX.safetensors   the method's state after session XX (resume, and delta bytes)
      scores/session_XX.csv  one row per generated image (prompt, seed, TA cosine, IA, drift)
      sessions/session_XX.csv  one row per concept or class and metric, with its 95% interval
      images/session_XX/NAME.png, class_NOUN.png, control_NAME.png  a few generated images per concept and class
      cost.csv, ta_matrix.csv, ia_matrix.csv, summary.json, summary.csv
      exported.json          only in a copy made by `lfsbench export`: it has no state/, so it reports but never resumes
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import pandas as pd

from lfsbench.errors import LfsbenchError, RunFolderBusy, path_part_problem
from lfsbench.identity import RunIdentity, legacy_refusal

_COUNTER = itertools.count()


def _temporary(path: Path) -> Path:
    """A temporary name beside `path`, unique to this process and call (two writers never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{next(_COUNTER)}.tmp")


def atomic_write_text(path: Path, text: str):
    """Write (UTF-8, the bytes `write_session_table` hashes) via a temporary file and rename, so a kill never leaves
    a half-written file; a failed write (a full disk) removes its temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_save_tensors(tensors: dict, path: Path, metadata: dict[str, str] | None = None):
    """safetensors' save_file via a temporary file and rename (a kill while saving leaves the old file or none);
    `metadata` goes into the file's header."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict:
    """safetensors' load_file; a damaged file is an LfsbenchError that names it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise LfsbenchError(f"{path} cannot be read ({err}); it is damaged (a disk full, a copy cut short).") from None


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


def _part(name: str) -> str:
    """A concept name or class noun as a file name; one that would leave the run folder is refused."""
    problem = path_part_problem(name)
    if problem:
        raise LfsbenchError(f"{name!r} cannot name a file in a run folder ({problem}); rename the concept or class.")
    return name


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

    @property
    def exported_file(self) -> Path:
        return self.path / "exported.json"

    def matrix_csv(self, metric: str) -> Path:
        """ta_matrix.csv, ia_matrix.csv."""
        return self.path / f"{metric.lower()}_matrix.csv"

    def base_embeddings_file(self) -> Path:
        return self.path / "base" / "class_embeddings.safetensors"

    def drift_scale_file(self) -> Path:
        return self.path / "base" / "drift_scale.json"

    def base_class_grid(self, noun: str) -> Path:
        return self.path / "base" / f"{_part(noun)}.png"

    def shots_grid(self, concept: str) -> Path:
        return self.path / "base" / "shots" / f"{_part(concept)}.png"

    def references_grid(self, concept: str) -> Path:
        return self.path / "base" / "references" / f"{_part(concept)}.png"

    def session_csv(self, t: int) -> Path:
        return self.path / "sessions" / f"session_{t:02d}.csv"

    def scores_csv(self, t: int) -> Path:
        return self.path / "scores" / f"session_{t:02d}.csv"

    def state_file(self, t: int) -> Path:
        return self.path / "state" / f"session_{t:02d}.safetensors"

    def images_dir(self, t: int) -> Path:
        return self.path / "images" / f"session_{t:02d}"

    def concept_grid(self, t: int, concept: str) -> Path:
        return self.images_dir(t) / f"{_part(concept)}.png"

    def multi_grid(self, t: int, first: str, second: str) -> Path:
        return self.images_dir(t) / f"multi_{_part(first)}+{_part(second)}.png"

    def class_grid(self, t: int, noun: str) -> Path:
        return self.images_dir(t) / f"class_{_part(noun)}.png"

    def control_grid(self, t: int, concept: str) -> Path:
        return self.images_dir(t) / f"control_{_part(concept)}.png"

    def copies_grid(self, t: int, concept: str) -> Path:
        """Generated images (top row), each one's nearest training shot (middle) and nearest held-out reference."""
        return self.images_dir(t) / f"copies_{_part(concept)}.png"

    # ------------------------------------------------------------ identity

    def is_run(self) -> bool:
        return self.config_file.is_file()

    def has_summary(self) -> bool:
        return self.summary_file.is_file()

    def is_exported(self) -> bool:
        """A copy made by `lfsbench export`: every result but the method's states (it reports, it never resumes)."""
        return self.exported_file.is_file()

    def _read_json(self, f: Path, what: str) -> dict:
        try:
            data = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise LfsbenchError(f"{f} is not valid JSON ({err}): {what}") from None
        if not isinstance(data, dict):
            raise LfsbenchError(f"{f} does not hold a JSON object: {what}")
        return data

    def config(self) -> dict | None:
        """config.json as stored (None where there is none); `identity` reads it."""
        f = self.config_file
        if not f.is_file():
            return None
        return self._read_json(
            f,
            f"the run's identity is damaged, so it can be neither resumed nor reported. Delete "
            f"{self.path} and run again, or choose another folder with --output.",
        )

    def identity(self) -> RunIdentity | None:
        """The run's identity (lfsbench/identity.py), None where the folder holds no run. A run of an earlier version
        reads as it is: protocol fields added since take their defaults (which reproduce the behaviour it ran with);
        one made before identities were recorded reads as a legacy identity (unknown fingerprints)."""
        config = self.config()
        if config is None:
            return None
        if "references" not in config.get("protocol", {}):
            raise self._older_run()
        return RunIdentity.from_config(config, self.config_file)

    def claim(self, identity: RunIdentity, device: str):
        """Start a new run here, or confirm that the folder holds this same run (then it resumes)."""
        if self.is_exported():
            raise LfsbenchError(
                f"{self.path} is a run exported without its method states (`lfsbench export`, see its "
                f"{self.exported_file.name}): it can be reported and checked, never resumed or run again. Nothing was "
                "changed. Run into another folder with --output, or resume the original run it was exported from."
            )
        existing = self.identity()
        if existing is not None and existing.legacy:
            raise legacy_refusal(self.path)
        if existing is not None and not existing.same_run(identity):
            raise LfsbenchError(
                f"The output folder {self.path} holds a different run (it differs in: "
                f"{'; '.join(existing.differences(identity))}). Nothing was changed. Choose another folder with "
                "--output, or use --resume to continue that run as it was."
            )
        if existing is None:
            if self.path.exists() and any(self.path.iterdir()):
                raise LfsbenchError(
                    f"The output folder {self.path} is not empty and holds no lfsbench run (no config.json). "
                    "Nothing was changed. Choose another folder with --output."
                )
            try:
                atomic_write_text(self.config_file, json.dumps(identity.to_config(), indent=2, sort_keys=True))
            except OSError as err:
                raise LfsbenchError(
                    f"Cannot write the run folder {self.path} ({err.strerror}). Nothing was trained. Choose a folder "
                    "you can write with --output, or fix its permissions."
                ) from None
            import torch

            meta = {
                "versions": library_versions(),
                "git_revision": git_revision(),
                "python": platform.python_version(),
                "device": device,
                "torch_threads": torch.get_num_threads(),  # each session's are in cost.csv (a resume may differ)
                "cpu_count": os.cpu_count(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            atomic_write_text(self.path / "meta.json", json.dumps(meta, indent=2))

    # ------------------------------------------------------------ sessions

    def state_readable(self, t: int) -> bool:
        """Whether session t's state file is there and its safetensors header reads (a truncated file does not)."""
        from safetensors import safe_open

        try:
            with safe_open(self.state_file(t), framework="pt") as f:
                f.keys()
            return True
        except Exception:  # missing, truncated, not safetensors: all mean "redo the session"
            return False

    def finished_sessions(self) -> list[int]:
        """The sessions 0..k whose results are complete: its session CSV (the last thing a session writes), its
        scores and a readable state (an exported run has none: there, its CSVs), for each of them. Resume continues
        after k; anything after the first gap was left by another history (a deleted or damaged file) and is redone,
        never mixed in."""
        done = []
        t = 0
        exported = self.is_exported()
        while self.session_csv(t).is_file() and self.scores_csv(t).is_file() and (exported or self.state_readable(t)):
            if self.damaged_tables(t):
                break
            done.append(t)
            t += 1
        return done

    def discard_after(self, t: int) -> list[int]:
        """Remove every result of the sessions after t (files and cost rows); returns the sessions that had some."""
        import shutil

        stale = set()
        for folder in ("sessions", "scores", "state", "images"):
            for f in (self.path / folder).glob("session_*"):
                k = int(f.name.split("_")[1].split(".")[0])
                if k > t:
                    stale.add(k)
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
        cost = self.cost()
        if len(cost) and (cost.session > t).any():
            stale |= set(int(k) for k in cost.session[cost.session > t])
            atomic_write_csv(self.path / "cost.csv", cost[cost.session <= t])
        return sorted(stale)

    def session_rows(self) -> pd.DataFrame:
        frames = [self._read_csv(self.session_csv(t)) for t in self.finished_sessions()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # ------------------------------------------------------------ digests: a session's tables as written

    @property
    def digests_file(self) -> Path:
        return self.path / "digests.json"

    def _digests(self) -> dict[str, str] | None:
        """digests.json as written ({} where there is none; None where it cannot be read)."""
        f = self.digests_file
        if not f.is_file():
            return {}
        try:
            data = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def write_session_table(self, path: Path, frame: pd.DataFrame):
        """Write a session's scores or session CSV and record its SHA-256 first (digests.json), so a table truncated
        or edited afterwards is found (`damaged_tables`) instead of silently changing a report's curves."""
        text = frame.to_csv(index=False)
        digests = self._digests()
        if digests is None:
            raise LfsbenchError(
                f"{self.digests_file}, the record of this run's session tables as written, cannot be read, so a "
                "session written now could not be checked beside the others. Delete it to go on without the "
                "earlier sessions' record, or rerun the run into a new folder."
            )
        digests[path.relative_to(self.path).as_posix()] = hashlib.sha256(text.encode()).hexdigest()
        atomic_write_text(self.digests_file, json.dumps(digests, indent=1, sort_keys=True))
        atomic_write_text(path, text)

    def damaged_tables(self, t: int | None = None) -> list[Path]:
        """Session tables (of session t, or of every session) that differ from what the run wrote. Tables with no
        digest (written before digests existed) are not checked, nor is anything when digests.json is unreadable
        (`check_intact` names that)."""
        wanted = [self.scores_csv(t), self.session_csv(t)] if t is not None else None
        damaged = []
        for name, digest in sorted((self._digests() or {}).items()):
            path = self.path / name
            if (wanted is None or path in wanted) and path.is_file():
                if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                    damaged.append(path)
        return damaged

    def check_intact(self):
        """Refuse to be read (report, check, export, track) when a session table changed after the run wrote it or
        the summary counts sessions the tables no longer hold, naming the files and the fix."""
        fix = (
            "Export it again from the run it was exported from."
            if self.is_exported()
            else f"`lfsbench run --resume {self.path}` redoes the sessions they belong to."
        )
        damaged = self.damaged_tables()
        problem = None
        if self._digests() is None:
            problem = "digests.json, the record of its session tables as written, cannot be read"
            fix = "Rerun the run into a new folder, or delete digests.json to read its tables unverified."
        elif damaged:
            names = ", ".join(p.relative_to(self.path).as_posix() for p in damaged)
            problem = f"{names} differ from what the run wrote (truncated or edited; digests.json has the originals)"
        elif self.has_summary():
            counted, held = self.summary().get("sessions_finished", 0), 0
            while self.session_csv(held).is_file() and self.scores_csv(held).is_file():  # tables, not states
                held += 1
            if isinstance(counted, int) and counted > held:
                problem = f"summary.json counts {counted} finished sessions but the session tables hold {held}"
        if problem:
            raise LfsbenchError(
                f"The run in {self.path} is damaged: {problem}, so its figures cannot be trusted. {fix}"
            )

    def _repair(self) -> str:
        """How to mend a damaged file of this run folder: resume the run, or export an exported copy again."""
        if self.is_exported():
            return "It is an exported copy: export it again from the run it was exported from."
        return f"`lfsbench run --resume {self.path}` writes it again."

    def _read_csv(self, path: Path) -> pd.DataFrame:
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise LfsbenchError(
                f"{path} is not a readable table ({type(err).__name__}: {str(err).strip()}). {self._repair()}"
            ) from None

    def scores(self) -> pd.DataFrame:
        from lfsbench.evaluation.records import COLUMNS, with_optional_columns

        frames = [self._read_csv(self.scores_csv(t)) for t in self.finished_sessions()]
        if any(set(COLUMNS) - set(frame.columns) for frame in frames):
            raise self._older_run()
        frames = [with_optional_columns(frame) for frame in frames]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _older_run(self) -> LfsbenchError:
        return LfsbenchError(
            f"The run in {self.path} was made by an older lfsbench, which measured IA against the training shots and "
            "had no held-out references, copy rate or class accuracy; its numbers cannot be resumed, reported or "
            "checked beside this version's. Run it again into a new folder (or delete this one): the same `lfsbench "
            "run` or `lfsbench study` command does it."
        )

    def cost(self) -> pd.DataFrame:
        """Each session's cost row (cost.csv); none yet: an empty table that still has the session column."""
        f = self.path / "cost.csv"
        if not f.is_file():
            return pd.DataFrame({"session": pd.Series(dtype=int)})
        cost = self._read_csv(f)
        if "session" not in cost.columns:
            mend = (
                self._repair()
                if self.is_exported()
                else "Move it away: the quality figures do not depend on it, but the cost figures (times, memory, "
                "stored bytes) of the sessions already run are lost with it; a resumed run writes rows only for the "
                "sessions it runs."
            )
            raise LfsbenchError(f"{f} has no session column: it was edited or damaged. {mend}")
        return cost

    def write_cost_row(self, row: dict):
        cost = self.cost()
        kept = [cost[cost["session"] != row["session"]]] if len(cost) else []
        atomic_write_csv(self.path / "cost.csv", pd.concat([*kept, pd.DataFrame([row])], ignore_index=True))

    def sessions_with_images(self, concepts: list[str], sessions: int) -> list[int]:
        """Sessions after which images of at least one of the concepts were kept."""
        return [t for t in range(sessions) if any(self.concept_grid(t, name).is_file() for name in concepts)]

    # ------------------------------------------------------------ base model and matrices

    def base_state(self) -> tuple[dict, float] | None:
        """The base model's class-image embeddings and the drift scale, if this run computed them (and they read)."""
        try:
            scale = json.loads(self.drift_scale_file().read_text())["drift_seed_scale"]
            return load_tensors(self.base_embeddings_file()), float(scale)
        except (OSError, LfsbenchError, ValueError, KeyError, TypeError):  # missing or damaged: computed again
            return None

    def write_base_state(self, embeddings: dict, scale: float):
        atomic_save_tensors(embeddings, self.base_embeddings_file())
        atomic_write_text(self.drift_scale_file(), json.dumps({"drift_seed_scale": scale}))

    def write_matrix(self, metric: str, matrix: pd.DataFrame):
        atomic_write_csv(self.matrix_csv(metric), matrix.reset_index())

    def matrix(self, metric: str) -> pd.DataFrame:
        """metric[t][c] as written after the last finished session (index: session)."""
        matrix = self._read_csv(self.matrix_csv(metric))
        if "session" not in matrix.columns:
            raise LfsbenchError(
                f"{self.matrix_csv(metric)} has no session column: it was edited or damaged. {self._repair()}"
            )
        return matrix.set_index("session")

    # ------------------------------------------------------------ export

    def export(self, dest: Path, images: bool = True) -> Path:
        """Copy this finished run to `dest` without its method states (state/, the bulk of a run: 17 MB a session
        for dreambooth on toy) or its lock, and mark the copy with exported.json. The copy holds every score, table,
        image grid and cost figure, so `lfsbench report`, `check` and `track` read it as they read the run; it
        cannot be resumed. A study split over machines or sessions that do not share a disk gathers its runs
        this way. `images=False` also leaves out the image grids (images/ and base/'s PNGs, most of what remains:
        1.7 of 2.4 MB for a full toy run); reports of such a copy have every number and no image figures."""
        import shutil

        identity = self.identity()
        sessions = len(identity.protocol.sessions) if identity else 0
        if not self.is_finished(sessions):
            raise LfsbenchError(
                f"{self.path} has not finished its {sessions} sessions, so it is not exported (an exported run "
                "cannot resume). Finish it first: run the same command again, which resumes it."
            )
        target = RunFolder(dest)
        refuse_overlap(self.path, target.path)
        if target.path.exists() and any(target.path.iterdir()):
            if not target.is_exported() or target.identity() != identity:
                raise LfsbenchError(
                    f"{target.path} exists and is not an export of this run ({self.path}). Nothing was changed. "
                    "Export into another folder, or delete that one."
                )
            shutil.rmtree(target.path)  # an earlier export of the same run: replaced by this one
        tmp = _temporary(target.path)
        left_out = [
            "state/: the method's state after each session (needed only to resume)",
            "tracking.json: what was sent to trackers from the run (a copy is sent anew: lfsbench track)",
        ]
        top, patterns = {"state", "tracking.json"}, [".lock", ".*.tmp"]
        if not images:
            left_out.append("images/ and every other .png: the image grids")
            top.add("images")
            patterns.append("*.png")
        skip = shutil.ignore_patterns(*patterns)

        links: list[str] = []

        def ignored(folder: str, names: list[str]) -> set[str]:
            # a run writes no links: one found here is never followed (it could point out of the run, or loop)
            linked = {n for n in names if os.path.islink(os.path.join(folder, n))}
            links.extend(str(Path(folder, n).relative_to(self.path)) for n in sorted(linked))
            return {*skip(folder, names), *linked, *(top & set(names) if Path(folder) == self.path else ())}

        try:
            shutil.copytree(self.path, tmp, ignore=ignored)
        except (OSError, shutil.Error) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LfsbenchError(
                f"Cannot export {self.path} to {target.path}: {err}. Nothing was written there (the partial copy "
                "was removed). Export to a folder you can write, with room for the run."
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if links:
            left_out.append(f"links, never followed: {', '.join(links)}")
        marker = {
            "source": str(self.path.resolve()),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "sessions": sessions,
            "left_out": left_out,
        }
        if self.is_exported():  # a copy of a copy: the run was made where the first export says, and lacks its parts
            earlier = self._read_json(self.exported_file, "it marks an exported run; export the original run instead")
            kept = earlier.get("left_out", [])
            marker |= {
                "source": earlier.get("source", marker["source"]),
                "exported": earlier.get("exported", marker["exported"]),
                "left_out": kept + [x for x in left_out if x not in kept],
            }
        atomic_write_text(RunFolder(tmp).exported_file, json.dumps(marker, indent=2))
        os.replace(tmp, target.path)
        return target.path

    # ------------------------------------------------------------ lock

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's lock while a run writes it; a second run into the same folder is refused."""
        import fcntl

        lock = self.path / ".lock"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(lock, "a+")  # closed by the `with` below, after the run
        except OSError as err:
            raise LfsbenchError(
                f"Cannot write the run folder {self.path} ({err.strerror}). Nothing was run. Make it writable, or "
                "copy the run to a folder you can write and resume it there."
            ) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunFolderBusy(
                    f"The run folder {self.path} is being written by {holder}. Two runs into one folder would mix "
                    "their results, so this one stops without changing anything. Wait for that run to finish (it "
                    "resumes from where it is if stopped), or choose another folder with --output."
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} on {platform.node()}")
            handle.flush()
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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
        from lfsbench.evaluation.metrics import METRICS

        fix = (
            "export it again from the run it was exported from."
            if self.is_exported()
            else f"rebuild it from the session files with `lfsbench run --resume {self.path}`."
        )
        summary = self._read_json(f, fix)
        for key, entry in summary.items():  # a figure is a number, or {value: number, ci_low, ci_high, ...}
            value = entry.get("value") if isinstance(entry, dict) else entry
            if key in METRICS and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise LfsbenchError(f"{f}: {key} is {json.dumps(value)}, not a number; it was edited or damaged: {fix}")
        if not isinstance(summary.get("sessions_finished", 0), int):
            raise LfsbenchError(f"{f}: sessions_finished is not a whole number; it was edited or damaged: {fix}")
        return summary

    def is_finished(self, sessions: int) -> bool:
        """Whether the run finished all `sessions` sessions of its protocol (and its summary is there)."""
        if not self.has_summary() or self.finished_sessions() != list(range(sessions)):
            return False
        return self.summary().get("sessions_finished") == sessions


def refuse_overlap(source: Path, target: Path) -> None:
    """Refuse to write a copy of `source` at `target` where one holds the other (or they are one folder): an export
    onto its own run, or into it, would delete or nest what it copies."""
    src, dst = Path(source).resolve(), Path(target).resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        where = "is" if dst == src else "is inside" if src in dst.parents else "contains"
        raise LfsbenchError(
            f"The export target {target} {where} {source}, which is being exported: writing there would delete or "
            "nest what is being copied. Nothing was changed. Export to a folder outside the runs (-O exports/NAME)."
        )
