"""The CLI's front door: dry runs, `show`, one spelling of the output folder, JSON for machines."""

from __future__ import annotations

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
