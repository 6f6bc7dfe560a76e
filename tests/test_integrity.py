"""Runs that cannot lie or escape (docs/guarantees.md): resume takes only an unbroken run of finished sessions,
damaged files are named or redone, a run folder is locked while a run writes it, and a kill inside state saving or
summary writing resumes to the uninterrupted summary."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

import pandas as pd
import pytest
from conftest import TINY_PROTOCOL, invoke, tiny_runner

from lfsbench.errors import LfsbenchError
from lfsbench.protocol import load_protocol
from lfsbench.results import RunFolder

FAST = TINY_PROTOCOL
QUALITY = ("TA", "IA", "IAD", "class_TA", "drift", "forgetting_max", "IA_right_after_learning")


def make_runner(weights, output):
    return tiny_runner(weights, output)


def quality(summary: dict) -> dict:
    return {k: summary[k]["value"] if isinstance(summary[k], dict) else summary[k] for k in QUALITY}


@pytest.fixture
def straight(tiny_runs):
    """An uninterrupted run (the shared tiny naive run): what every interrupted or damaged one must come back to."""
    out = tiny_runs / "naive-0"
    return out, RunFolder(out).summary()


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


def test_resume_redoes_from_the_first_gap_and_never_mixes(tiny_weights, straight, tmp_path):
    """Found: with session_01.csv deleted, a rerun loaded state 2 and retrained session 1 on top of it (IAD moved)."""
    src, summary = straight
    run = _copy(src, tmp_path / "run")
    (run / "sessions" / "session_01.csv").unlink()
    assert RunFolder(run).finished_sessions() == [0]  # session 2's files are not part of an unbroken run
    resumed = make_runner(tiny_weights, run).run()
    assert quality(resumed) == pytest.approx(quality(summary), abs=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(run / "ia_matrix.csv"), pd.read_csv(src / "ia_matrix.csv"))
    assert len(pd.read_csv(run / "cost.csv")) == 3


def test_a_run_of_an_earlier_version_resumes_when_a_protocol_field_was_added_since(tiny_weights, straight, tmp_path):
    """A protocol field added after a run started (here order_seed) takes its default, which reproduces what the run
    did: the run still resumes (and a study still recognises it) instead of being refused as a different run."""
    src, summary = straight
    run = _copy(src, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    del config["protocol"]["order_seed"]  # as a run of the version before the field wrote it
    (run / "config.json").write_text(json.dumps(config))
    (run / "sessions" / "session_02.csv").unlink()
    runner = make_runner(tiny_weights, run)
    resumed = runner.run()
    assert quality(resumed) == pytest.approx(quality(summary), abs=1e-6)
    assert RunFolder(run).identity().same_run(runner.identity)
    config["protocol"]["shots"] += 1  # a real difference is still one
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(LfsbenchError, match=r"holds a different run \(it differs in: protocol field shots 7 -> 6\)"):
        make_runner(tiny_weights, run).run()


def test_unreadable_state_is_redone(tiny_weights, straight, tmp_path):
    src, summary = straight
    run = _copy(src, tmp_path / "run")
    state = run / "state" / "session_01.safetensors"
    state.write_bytes(state.read_bytes()[:50])  # truncated
    assert RunFolder(run).finished_sessions() == [0]
    assert quality(make_runner(tiny_weights, run).run()) == pytest.approx(quality(summary), abs=1e-6)


def test_lost_or_stale_summary_is_rebuilt(tiny_weights, straight, tmp_path):
    src, summary = straight
    run = _copy(src, tmp_path / "run")
    (run / "summary.json").unlink()
    assert quality(make_runner(tiny_weights, run).run()) == pytest.approx(quality(summary), abs=1e-6)
    stale = json.loads((run / "summary.json").read_text())
    stale["IA"]["value"] = 0.0
    (run / "summary.json").write_text(json.dumps(stale))
    assert quality(make_runner(tiny_weights, run).run()) == pytest.approx(quality(summary), abs=1e-6)


def test_damaged_config_and_summary_are_named(tiny_weights, straight, tmp_path):
    src, _ = straight
    run = _copy(src, tmp_path / "run")
    (run / "summary.json").write_text("{not json")
    code, out = invoke("report", str(run), "-O", str(tmp_path / "rep"))
    assert code == 2 and "summary.json is not valid JSON" in out and "--resume" in out and "Traceback" not in out
    (run / "config.json").write_text("garbage")
    code, out = invoke("run", "-m", "naive", "--output", str(run))
    assert code == 2 and "config.json is not valid JSON" in out and "Traceback" not in out
    code, out = invoke("run", "--resume", str(run))
    assert code == 2 and "config.json is not valid JSON" in out


def test_a_truncated_or_edited_session_table_is_named_then_redone(tiny_weights, straight, tmp_path):
    """Found (D7): a truncated scores CSV silently changed the report's curves while the summary kept the old
    numbers, and a rerun on the damaged folder gave a traceback."""
    src, summary = straight
    run = _copy(src, tmp_path / "run")
    scores = run / "scores" / "session_01.csv"
    text = scores.read_text()
    scores.write_text(text[: len(text) // 2])  # cut mid-row
    assert RunFolder(run).finished_sessions() == [0]
    for command in (("report", str(run), "-O", str(tmp_path / "rep")), ("export", str(run), "-O", str(tmp_path / "x"))):
        code, out = invoke(*command)
        assert code == 2 and "scores/session_01.csv differ from what the run wrote" in out and "--resume" in out
        assert "Traceback" not in out and not (tmp_path / "rep").exists() and not (tmp_path / "x").exists()
    assert quality(make_runner(tiny_weights, run).run()) == pytest.approx(quality(summary), abs=1e-6)
    assert scores.read_text() == text  # redone, to what it was
    RunFolder(run).check_intact()
    edited = run / "sessions" / "session_02.csv"
    edited.write_text(edited.read_text().replace("0.", "0.9", 1))  # a number changed by hand
    with pytest.raises(LfsbenchError, match="sessions/session_02.csv differ"):
        RunFolder(run).check_intact()


def test_a_session_table_that_is_not_a_table_is_named(tmp_path):
    """Runs written before digests existed are not verified, but an unreadable table is named, not a traceback."""
    folder = RunFolder(tmp_path / "old")
    folder.session_csv(0).parent.mkdir(parents=True)
    folder.session_csv(0).write_bytes(b'a,b\n"1,2\n')
    with pytest.raises(LfsbenchError, match="session_00.csv is not a readable table"):
        folder._read_csv(folder.session_csv(0))


def test_a_locked_run_folder_is_refused(tiny_weights, tmp_path):
    out = tmp_path / "run"
    runner = make_runner(tiny_weights, out)
    runner.folder.claim(runner.identity, "cpu")
    with RunFolder(out).locked():  # another run holds the folder
        with pytest.raises(LfsbenchError, match=f"being written by process {os.getpid()}"):
            runner.run()
    assert not (out / "sessions").exists()  # it did nothing


def test_temporary_files_are_unique(tmp_path):
    from lfsbench.results import _temporary

    target = tmp_path / "summary.json"
    assert _temporary(target) != _temporary(target) and str(os.getpid()) in _temporary(target).name


def _die_inside(weights, out, where: str, session: int):
    """Child process: run, and die (as a kill would) in the middle of writing `where` after `session`."""
    import lfsbench.results as results

    if where == "state":
        from safetensors.torch import save_file

        def dying_save(tensors, path, metadata=None):
            save_file(tensors, path, metadata=metadata)  # the temporary file is written; the kill comes before rename
            if f"session_{session:02d}" in os.path.basename(path):
                os._exit(9)

        import safetensors.torch

        safetensors.torch.save_file = dying_save
    else:
        original = results.atomic_write_text

        def dying_write(path, text):
            if path.name == "summary.json" and json.loads(text)["sessions_finished"] == session + 1:
                path.with_name(".summary.json.partial.tmp").write_text(text[: len(text) // 2])  # half written
                os._exit(9)
            original(path, text)

        results.atomic_write_text = dying_write
    make_runner(weights, out).run()


@pytest.mark.parametrize("where", ["state", "summary"])
def test_kill_inside_state_saving_or_summary_writing_resumes_to_the_same_summary(
    tiny_weights, straight, tmp_path, where
):
    _, summary = straight
    out = tmp_path / "run"
    proc = mp.get_context("spawn").Process(target=_die_inside, args=(tiny_weights, out, where, 1))
    proc.start()
    proc.join()
    assert proc.exitcode == 9
    assert RunFolder(out).finished_sessions() == ([0] if where == "state" else [0, 1])
    assert quality(make_runner(tiny_weights, out).run()) == pytest.approx(quality(summary), abs=1e-6)


def test_output_folder_that_cannot_be_written_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, out = invoke("run", "-m", "naive", "--output", str(blocker / "run"))
    assert code == 2 and "Cannot write the run folder" in out and "Nothing was trained" in out


def test_runs_of_an_older_scoring_are_refused_not_mixed(tmp_path, monkeypatch):
    """A run made before held-out references (IA against the shots) is neither resumed nor reported beside new ones."""
    folder = RunFolder(tmp_path / "old")
    folder.path.mkdir()
    protocol = load_protocol("toy", FAST).model_dump(mode="json")
    del protocol["references"]
    folder.config_file.write_text(json.dumps({"protocol": protocol, "method": "naive"}))
    with pytest.raises(LfsbenchError, match="older lfsbench.*against the training shots"):
        folder.claim({"protocol": load_protocol("toy", FAST).model_dump(mode="json")}, "cpu")
    old_scores = pd.DataFrame([{"session": 0, "kind": "concept", "name": "a", "ta": 0.3, "ia": 0.5, "drift": 0.0}])
    folder.scores_csv(0).parent.mkdir(parents=True)
    old_scores.to_csv(folder.scores_csv(0), index=False)
    monkeypatch.setattr(RunFolder, "finished_sessions", lambda self: [0])
    with pytest.raises(LfsbenchError, match="Run it again into a new folder"):
        folder.scores()
