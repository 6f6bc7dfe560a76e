"""The CLI's front door: dry runs, `show`, one spelling of the output folder, JSON for machines."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import invoke


def test_run_dry_run_prints_the_identity_and_folder_and_runs_nothing(tmp_path, monkeypatch):
    from lfsbench.runner import Runner

    monkeypatch.setattr(Runner, "__init__", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a runner was made")))
    code, out = invoke("run", "-m", "naive", "-p", "toy-quick", "-o", "steps=3", "-O", tmp_path / "r", "--dry-run")
    assert code == 0, out
    assert "method.settings.steps" in out and "protocol.evaluation.sampler" in out and "empty: the run starts" in out
    assert not (tmp_path / "r").exists()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    code, out = invoke("run", "-m", "naive", "-p", "toy-quick", "-O", tmp_path / "r", "--dry-run")
    assert code == 0 and "holds files but no run" in out


def test_study_dry_run_lists_every_run_with_its_folder_and_state(tmp_path):
    spec = tmp_path / "s.yaml"
    cells = [{"method": "naive", "grid": {"steps": [3, 4]}}]
    spec.write_text(yaml.safe_dump({"name": "s", "output": str(tmp_path / "o"), "protocol": "toy-quick",
                                    "seeds": [0, 1], "cells": cells}))  # fmt: skip
    code, out = invoke("study", spec, "--dry-run", "--shard", "1/2")
    assert code == 0, out
    assert out.count("to run") == 4 and out.count("(another shard)") == 2 and "steps=3" in out and "steps=4" in out
    assert not (tmp_path / "o").exists()


def test_show_prints_the_resolved_protocol_with_overrides(tmp_path):
    from typer.testing import CliRunner

    from lfsbench.cli import app

    result = CliRunner().invoke(app, ["show", "toy-quick", "-o", "evaluation.steps=10"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.output)
    assert resolved["evaluation"]["steps"] == 10 and resolved["name"] == "toy-quick" and resolved["shots"] == 6
    code, out = invoke("show", "toy-quick", "-o", "stepz=3")
    assert code == 2 and "stepz" in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("code", "says"), [(errno.ENOSPC, "Free space on that disk"), (errno.EROFS, "Choose a folder you can write")]
)
def test_a_full_disk_or_an_unwritable_folder_is_one_paragraph(code, says, capsys):
    """D10: a full disk or an unwritable target gave a traceback."""
    import typer

    from lfsbench.cli import friendly_errors

    @friendly_errors
    def command():
        raise OSError(code, os.strerror(code), "/data/run/summary.json")

    with pytest.raises(typer.Exit) as exit_info:
        command()
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal's width
    assert exit_info.value.exit_code == 2 and says in out and "/data/run/summary.json" in out

    @friendly_errors
    def bug():
        raise FileNotFoundError(errno.ENOENT, "gone", "x")  # not a storage problem: seen whole

    with pytest.raises(FileNotFoundError):
        bug()


COMMITTED_RUN = Path(__file__).parent.parent / "reports" / "orders" / "runs" / "toy" / "c-lora-order_seed=1-seed0"


@pytest.mark.parametrize(("value", "shown"), [(None, "IA is null"), ("high", 'IA is "high"'), (True, "IA is true")])
def test_a_summary_with_a_figure_that_is_not_a_number_is_named(tmp_path, value, shown):
    """D10: a summary.json with a null or string figure gave a traceback in report and check."""
    run = tmp_path / "run"
    shutil.copytree(COMMITTED_RUN, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["IA"]["value"] = value
    (run / "summary.json").write_text(json.dumps(summary))
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text("protocol: toy\nchecks:\n  - {name: a, value: c-lora.TA, min: 0.1}\n")
    for command in (("report", run, "-O", tmp_path / "rep"), ("check", run, "--thresholds", thresholds)):
        code, out = invoke(*command)
        assert code == 2 and shown in out and "not a number" in out and "export it again" in out, out  # an export
    assert not (tmp_path / "rep").exists()


def test_garbage_cost_or_matrix_files_are_named(tmp_path):
    from lfsbench.errors import LfsbenchError
    from lfsbench.results import RunFolder

    run = tmp_path / "run"
    shutil.copytree(COMMITTED_RUN, run)
    (run / "cost.csv").write_bytes(b'session,train_s\n"0,1\n')
    with pytest.raises(LfsbenchError, match="cost.csv is not a readable table"):
        RunFolder(run).cost()
    (run / "cost.csv").write_text("{{{\n")  # parses as a table, but not as a cost table
    with pytest.raises(LfsbenchError, match="cost.csv has no session column"):
        RunFolder(run).cost()
    code, output = invoke("report", str(run), "-O", str(tmp_path / "report"))
    assert code == 2 and "cost.csv has no session column" in output and "Traceback" not in output
    (run / "cost.csv").unlink()  # what the error says to do: the report then has no cost figures, and no traceback
    code, output = invoke("report", str(run), "-O", str(tmp_path / "report"))
    assert code == 0, output[-3000:]
    (run / "ia_matrix.csv").write_text("nothing,here\n1,2\n")
    with pytest.raises(LfsbenchError, match="ia_matrix.csv has no session column"):
        RunFolder(run).matrix("IA")


def test_toy_check_names_an_unknown_sampler_before_measuring_anything():
    code, out = invoke("toy", "check", "--protocol", "toy-v2-quick", "--sampler", "euler")
    assert code == 2 and "Unknown sampler 'euler'" in out and "dpmsolver++" in out, out


def test_toy_check_records_fitness_only_at_the_protocols_sampling(tmp_path):
    """A fitness.json says the weights pass at the setting the protocol's runs sample with, in a full check; --record
    at another sampler or step count, or with --quick, is refused before anything is measured or written."""
    weights = tmp_path / "weights"
    weights.mkdir()
    code, out = invoke("toy", "check", "--protocol", "toy-v2", "--steps", "4", "--record", "--weights", weights)
    assert code == 2 and "--record" in out and "dpmsolver++, 10 steps" in out, out
    code, out = invoke("toy", "check", "--protocol", "toy-v2", "--quick", "--record", "--weights", weights)
    assert code == 2 and "only a full check" in out, out
    assert not (weights / "fitness.json").exists()
