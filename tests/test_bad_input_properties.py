"""Property-based bad input: random concept names, protocol fields and overrides never give a traceback, never write
outside the output folder, and are refused with one paragraph and exit code 2 (or accepted, exit 0)."""

from __future__ import annotations

import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=12)
values = st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), names, st.lists(names, max_size=2), st.none())
fields = st.sampled_from(
    [
        "shots",
        "sessions",
        "training_prompt",
        "evaluation.images_per_prompt",
        "evaluation.prompts",
        "evaluation.checkpoints",
        "source.kind",
        "backbone",
        "name",
        "steps",
        "kv_lr",
        "nonsense",
    ]
)


def _files(root) -> set:
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


def _one_paragraph(out: str) -> bool:
    return "\n\n" not in out.strip()


def _check(code: int, out: str):
    assert code in (0, 2), out
    assert "Traceback" not in out
    if code == 2:
        assert "error:" in out and _one_paragraph(out.split("error:", 1)[1]), out


@SETTINGS
@given(name=names)
def test_random_concept_names(tmp_path_factory, name):
    folder = tmp_path_factory.mktemp("p")
    path = folder / "p.yaml"
    path.write_text(yaml.safe_dump({"include": "toy", "name": "p", "sessions": [["circle-1"], [name]]}))
    before = _files(folder.parent)
    _check(*_raw_invoke("validate", str(path)))
    assert _files(folder.parent) == before  # validate writes nothing, anywhere


@SETTINGS
@given(field=fields, value=values)
def test_random_protocol_fields(tmp_path_factory, field, value):
    folder = tmp_path_factory.mktemp("p")
    data = {"include": "toy", "name": "p"}
    target = data
    *parents, last = field.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    path = folder / "p.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    before = _files(folder.parent)
    _check(*_raw_invoke("validate", str(path)))
    assert _files(folder.parent) == before


@SETTINGS
@given(key=fields, raw=names)
def test_random_overrides(tmp_path_factory, monkeypatch_module, key, raw):
    folder = tmp_path_factory.mktemp("o")
    before = _files(folder.parent)
    code, out = _raw_invoke("run", "-m", "naive", "-o", f"{key}={raw}", "--output", str(folder / "run"))
    _check(code, out)
    assert _files(folder.parent) == before  # the run itself is stubbed: nothing may be written before it


@pytest.fixture(scope="module")
def monkeypatch_module():
    """`lfsbench run` checks its input, then stops where training would start (no model is loaded)."""
    from lfsbench.runner import Runner

    mp = pytest.MonkeyPatch()
    mp.setattr(Runner, "__init__", lambda self, spec, output, **options: None)
    mp.setattr(Runner, "run", lambda self: {"sessions_finished": 1})
    yield mp
    mp.undo()


def _raw_invoke(*args):
    """The CLI's exit code and raw output (paragraphs kept)."""
    from typer.testing import CliRunner

    from lfsbench.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        import traceback

        return 1, "Traceback\n" + "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.output


COMMITTED_RUN = os.path.join(
    os.path.dirname(__file__), "..", "reports", "orders", "runs", "toy", "c-lora-order_seed=1-seed0"
)
SETTING = "c-lora [order 1]"  # the committed run's setting label
refs = st.one_of(st.sampled_from([f"{SETTING}.TA", f"{SETTING}.copy_rate", "nope.TA", f"{SETTING}.nope"]), names)
bounds = st.one_of(st.floats(-2, 2), st.floats(allow_nan=True), names, st.booleans(), st.none())
check_entries = st.one_of(
    st.fixed_dictionaries(  # anything
        {"name": names, "value": refs},
        optional={"min": bounds, "max": bounds, "less_than": refs, "greater_than": refs, "margin": bounds, "x": names},
    ),
    st.fixed_dictionaries(  # a check that can gate, so that passing and failing files are drawn too
        {"name": st.uuids().map(str), "value": st.sampled_from([f"{SETTING}.TA", f"{SETTING}.IA"])},
        optional={"min": st.floats(0, 0.6)},
    ),
)


@SETTINGS
@given(protocol=st.sampled_from(["toy", "toy", "toy-quick", ""]), checks=st.lists(check_entries, max_size=3))
def test_random_thresholds_files(tmp_path_factory, protocol, checks):
    """A thresholds file gates (exit 0 or 1) or is refused in one paragraph (exit 2); never a traceback."""
    folder = tmp_path_factory.mktemp("t")
    path = folder / "t.yaml"
    path.write_text(yaml.safe_dump({"protocol": protocol, "checks": checks}, allow_unicode=True))
    code, out = _raw_invoke("check", COMMITTED_RUN, "--thresholds", str(path))
    _check(code if code != 1 else 0, out)
    if code == 1:
        assert "FAIL" in out


cells = st.one_of(
    st.sampled_from([{"method": "naive"}, {"method": "replay", "grid": {"steps": [2, 3]}}]),  # plannable
    st.fixed_dictionaries(
        {"method": st.one_of(st.sampled_from(["naive", "lfs", "replay"]), names)},
        optional={
            "settings": st.dictionaries(
                st.sampled_from(["steps", "kv_lr", "evaluation.steps", "stepz"]), values, max_size=2
            ),
            "grid": st.dictionaries(
                st.sampled_from(["steps", "batch_size", "shots"]), st.lists(values, max_size=3), max_size=2
            ),
        },
    ),
)


@SETTINGS
@given(seeds=st.lists(st.integers(-1, 3), max_size=3), cell_list=st.lists(cells, max_size=3))
def test_random_study_specs(tmp_path_factory, seeds, cell_list):
    """A study spec is planned (its dry run lists the runs) or refused in one paragraph before anything runs; it
    never writes."""
    folder = tmp_path_factory.mktemp("s")
    spec = folder / "s.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"name": "s", "protocol": "toy-quick", "output": str(folder / "o"), "seeds": seeds, "cells": cell_list},
            allow_unicode=True,
        )
    )
    before = _files(folder.parent)
    _check(*_raw_invoke("study", str(spec), "--dry-run"))
    assert _files(folder.parent) == before
