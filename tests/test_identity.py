"""A run's identity (lfsbench/identity.py): runs that differ in their method's source, their data or anything else
they were made with are never pooled into one figure, never resumed into one another, and never pass a gate as one
setting; runs made before identities were recorded still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import invoke, use_tiny_weights
from PIL import Image

from lfsbench.errors import LfsbenchError
from lfsbench.gate import Thresholds, run_checks
from lfsbench.identity import RunIdentity
from lfsbench.report import make_report
from lfsbench.report.runs import find_runs
from lfsbench.results import RunFolder

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "steps=2",
    "batch_size=2",
    "evaluation.images_per_prompt=1",
    "evaluation.steps=2",
    "evaluation.bootstrap=100",
    "evaluation.max_prompts=2",
    "evaluation.untouched_classes=[]",  # (tests/test_untouched.py covers them)
]


def settings(*extra: str) -> list[str]:
    return [arg for pair in (*TINY, *extra) for arg in ("-o", pair)]


def good_folder(root: Path, shade: int) -> Path:
    """A user's folder of two concepts (3 shots and 2 held-out images each); `shade` sets their pixels."""
    for k, name in enumerate(("my_cat", "my_mug")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            pixels = np.full((40, 48, 3), (shade + 40 * k + 5 * i) % 256, np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def gate(runs: list[Path], value: str):
    protocol = find_runs(runs)[0].identity.protocol.name
    check = {"name": "c", "value": value, "min": -0.99}  # passes on any run these tests make
    thresholds = Thresholds.model_validate({"protocol": protocol, "checks": [check]})
    return run_checks(runs, thresholds)


def test_runs_on_two_data_folders_are_two_settings_and_never_pass_a_gate_as_one(tiny_weights, tmp_path, monkeypatch):
    use_tiny_weights(monkeypatch, tiny_weights)
    monkeypatch.chdir(tmp_path)
    for name, shade in (("a", 40), ("b", 160)):
        data = good_folder(tmp_path / name / "good", shade)
        code, out = invoke(
            "run", "-m", "naive", "-p", "folder", "--data", data, *settings(), "--output", f"runs/{name}"
        )
        assert code == 0, out
    # the same folder again with the other data: a different run, refused before anything is written
    code, out = invoke("run", "-m", "naive", "-p", "folder", "--data", "a/good", *settings(), "--output", "runs/b")
    assert code == 2 and "holds a different run" in out and "data" in out, out
    table = pd.read_csv(Path(make_report([Path("runs")], tmp_path / "report")).parent / "summary.csv")
    label = "naive (batch_size=2, steps=2)"
    assert len(table) == 2 and all(s.startswith(f"{label} [data ") for s in table.setting), list(table.setting)
    with pytest.raises(LfsbenchError, match=r"2 settings whose identities differ.*never pools"):
        gate([Path("runs")], f"{label}.IA")
    (one,) = gate([Path("runs/a")], f"{label}.IA")  # one identity alone: checked as before
    assert one["passed"]


def test_an_edited_method_file_is_another_setting_and_its_runs_do_not_resume(tiny_weights, tmp_path, monkeypatch):
    """The case a new user met: two seeds of a method file, a knob's default edited between them (0.7, then 0.0),
    were averaged as one setting and passed the gate."""
    use_tiny_weights(monkeypatch, tiny_weights)
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine.py"
    mine.write_text((ROOT / "examples" / "merge_method.py").read_text())
    protocol = ["-p", "toy", *settings("sessions=[[circle-1], [square-1]]")]
    code, out = invoke("run", "-m", "mine.py:Merge", *protocol, "--seed", "0")
    assert code == 0, out
    mine.write_text(mine.read_text().replace("Field(0.7, ge=0, le=1)", "Field(0.0, ge=0, le=1)"))
    code, out = invoke("run", "-m", "mine.py:Merge", *protocol, "--seed", "1")
    assert code == 0, out
    runs = sorted(Path("runs/toy").iterdir())
    table = pd.read_csv(Path(make_report(runs, tmp_path / "report")).parent / "summary.csv")
    assert len(table) == 2, list(table.setting)
    notes = sorted(table.setting)
    assert "keep_new=0.0" in notes[0] and "keep_new=0.7" in notes[1] and all("method source" in n for n in notes)
    with pytest.raises(LfsbenchError, match="never pools"):
        gate(runs, "Merge (batch_size=2, steps=2).IA")
    seed0 = next(r for r in runs if r.name.endswith("seed0"))
    (seed0 / "sessions" / "session_01.csv").unlink()  # as if killed after session 0
    code, out = invoke("run", "--resume", seed0)
    assert code == 2 and "would not be the run its identity records" in out and "method source" in out, out
    assert not (seed0 / "sessions" / "session_01.csv").exists()


def test_a_run_resumed_from_another_folder_reads_the_data_it_started_on(tiny_weights, tmp_path, monkeypatch):
    """Found: `--data good` was stored as typed, relative; a resume from another working folder trained session 1 on
    that folder's `good/` (other images) and exited 0. Now the data is kept absolute and fingerprinted."""
    use_tiny_weights(monkeypatch, tiny_weights)
    first, other = tmp_path / "first", tmp_path / "other"
    good_folder(first / "good", 40)
    good_folder(other / "good", 160)
    monkeypatch.chdir(first)
    args = ["run", "-m", "naive", "-p", "folder", "--data", "good", *settings()]
    code, out = invoke(*args, "--output", tmp_path / "straight")
    assert code == 0, out
    code, out = invoke(*args, "--output", tmp_path / "run")
    assert code == 0, out
    for f in ("sessions/session_01.csv", "summary.json"):
        (tmp_path / "run" / f).unlink()  # as if killed after session 0
    monkeypatch.chdir(other)
    code, out = invoke(*args, "--output", tmp_path / "run")  # the same command elsewhere: other data, another run
    assert code == 2 and "holds a different run" in out and "data" in out, out
    code, out = invoke("run", "--resume", tmp_path / "run")  # the run as it started: the first folder's images
    assert code == 0, out
    for f in ("ia_matrix.csv", "sessions/session_01.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / f), pd.read_csv(tmp_path / "straight" / f))
    (first / "good" / "my_cat" / "0.png").unlink()  # the data changed since: the run is refused, naming it
    (tmp_path / "run" / "sessions" / "session_01.csv").unlink()
    code, out = invoke("run", "--resume", tmp_path / "run")
    assert code == 2 and "would not be the run its identity records: data" in out, out


def test_a_run_made_before_identities_reports_and_is_never_resumed(tmp_path):
    """config.json of lfsbench before identities (method, method_config, method_overrides, ...): read as a legacy
    identity with unknown fingerprints, labelled as it was, reported and checked; resuming it is refused."""
    legacy = tmp_path / "lfs"
    shutil.copytree(ROOT / "reports" / "orders" / "runs" / "toy" / "lfs-order_seed=1-seed0", legacy)
    identity = RunFolder(legacy).identity()
    assert identity.legacy and identity.data.fingerprint is None and identity.method.source is None
    assert identity.label == "lfs [order 1]" and identity.method.settings["context_strength"] == 0.85
    config = json.loads((legacy / "config.json").read_text())
    assert RunIdentity.from_config(config) == identity
    (result,) = gate([legacy], "lfs [order 1].IA")
    assert result["measured"] == pytest.approx(json.loads((legacy / "summary.json").read_text())["IA"]["value"])
    (legacy / "exported.json").unlink()  # as the run itself, not its export
    code, out = invoke("run", "--resume", legacy)
    assert code == 2 and "did not record a run's identity" in out and "Traceback" not in out, out
