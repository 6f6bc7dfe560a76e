"""The CLI's front door: dry runs, `show`, one spelling of the output folder, JSON for machines."""

from __future__ import annotations

import errno
import os

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
