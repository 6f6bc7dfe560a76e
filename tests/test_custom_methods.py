"""Methods from outside the package (lfsbench/method.py, docs/custom-methods.md): a file named on the command line, an
installed package's entry point, and the errors a broken one gets. Runs use the shipped toy weights, shrunk to
seconds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import invoke

from lfsbench.errors import LfsbenchError
from lfsbench.method import create_method, method_class
from lfsbench.results import RunFolder

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "merge_method.py"
TINY = [
    "steps=2",
    "batch_size=2",
    'sessions=[["circle-1"], ["square-1"]]',
    "evaluation.images_per_prompt=1",
    "evaluation.steps=2",
    "evaluation.bootstrap=100",
    "evaluation.untouched_classes=[]",  # (tests/test_untouched.py covers them)
]


def tiny_run(method: str, output: Path, *extra: str) -> tuple[int, str]:
    sets = [arg for pair in TINY for arg in ("-o", pair)]
    return invoke("run", "--method", method, "--protocol", "toy", *sets, *extra, "--output", str(output))


def test_tutorial_page_shows_the_example_file_whole():
    """docs/custom-methods.md quotes examples/merge_method.py; the page must not drift from the file it runs."""
    page = (ROOT / "docs" / "custom-methods.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert EXAMPLE.read_text() in blocks
    assert len(EXAMPLE.read_text().splitlines()) < 60


def test_method_from_a_file_runs_and_records_its_source(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the file named relative to the current folder, as a user types it
    code, out = tiny_run("examples/merge_method.py:Merge", tmp_path / "run")
    assert code == 0, out
    method = RunFolder(tmp_path / "run").config()["method"]
    assert method["name"] == f"{EXAMPLE}:Merge"  # absolute: a resume or a Ray worker elsewhere finds the file
    assert method["source"]["files"] == ["examples/merge_method.py", "lfsbench/kv_method.py"]  # the file, its base
    assert len(method["source"]["sha256"]) == 64
    assert method["settings"]["keep_new"] == 0.7
    assert RunFolder(tmp_path / "run").is_finished(2)
    assert "Merge" in out and "Traceback" not in out


def test_the_token_only_example_learns_its_token_and_leaves_the_model_alone(tmp_path, monkeypatch):
    """examples/token_method.py (quoted whole in docs/custom-methods.md) runs, and changes no backbone weight."""
    example = ROOT / "examples" / "token_method.py"
    page = (ROOT / "docs" / "custom-methods.md").read_text()
    assert example.read_text() in re.findall(r"```python\n(.*?)```", page, re.S)
    monkeypatch.chdir(ROOT)
    code, out = tiny_run("examples/token_method.py:TextualInversion", tmp_path / "run")
    assert code == 0, out
    folder = RunFolder(tmp_path / "run")
    assert folder.is_finished(2) and folder.config()["method"]["settings"]["token_lr"] == 0.05
    from lfsbench.results import load_tensors

    state = load_tensors(folder.state_file(1))
    assert sorted(state) == ["token.0000.<new1>", "token.0001.<new2>"]  # the tokens, and nothing of the model


def test_edited_method_file_is_a_different_run(tmp_path):
    method_file = tmp_path / "mine.py"
    method_file.write_text(EXAMPLE.read_text())
    code, out = tiny_run(f"{method_file}:Merge", tmp_path / "run", "-o", "keep_new=0.5")
    assert code == 0, out
    method_file.write_text(EXAMPLE.read_text() + "\n# edited\n")
    code, out = tiny_run(f"{method_file}:Merge", tmp_path / "run", "-o", "keep_new=0.5")
    assert code == 2
    assert "holds a different run" in out and "method source" in out


def test_merge_keeps_the_chosen_fraction_of_the_kv_change(tiny_weights):
    """The tutorial's method does what it says: keep_new=0 leaves K/V at the base model's, 1 is naive training."""
    from lfsbench.concepts import Concept, session_view
    from lfsbench.toy import load_toy_backbone
    from lfsbench.training import kv_state

    concept = Concept("a", "circle", "<new1>", torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    session = session_view(0, [concept], "a {}", [])
    changes = {}
    for keep in (0.0, 1.0):
        method = create_method(f"{EXAMPLE}:Merge", {"steps": 3, "batch_size": 2, "keep_new": keep})
        backbone = load_toy_backbone(weights=tiny_weights)
        method.setup(backbone, seed=0)
        before = kv_state(backbone)
        method.learn(session)
        after = kv_state(backbone)
        changes[keep] = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert changes[0.0] == 0.0
    assert changes[1.0] > 0.0


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_broken_method_files_get_one_paragraph_errors(tmp_path):
    with pytest.raises(LfsbenchError, match="does not exist"):
        method_class(f"{tmp_path}/absent.py:Mine")
    bad_import = _write(tmp_path / "bad_import.py", "import torch\n\nx = 1 / 0\n")
    with pytest.raises(LfsbenchError, match=r"failed \(line 3\): ZeroDivisionError"):
        method_class(f"{bad_import}:Mine")
    other = _write(
        tmp_path / "other.py",
        """
        from lfsbench.methods.naive import Naive

        class Mine(Naive):
            pass

        class NotAMethod:
            pass

        class Baseline(Naive):
            role = "baseline"  # not a role
        """,
    )
    with pytest.raises(LfsbenchError, match="defines no 'Missing'. Its method classes: Baseline, Mine, Naive"):
        method_class(f"{other}:Missing")
    with pytest.raises(LfsbenchError, match="not a subclass of lfsbench.method.Method"):
        method_class(f"{other}:NotAMethod")
    assert method_class(f"{other}:Mine").__name__ == "Mine"
    with pytest.raises(LfsbenchError, match="has role 'baseline'; a method's role is one of method, anchor"):
        method_class(f"{other}:Baseline")
    (tmp_path / "helpers_beside.py").write_text("STEPS = 7\n")  # a module beside the method file, as for a script
    _write(
        tmp_path / "uses_helper.py",
        """
        from helpers_beside import STEPS
        from lfsbench.methods.naive import Naive, NaiveConfig

        class HelpedConfig(NaiveConfig):
            steps: int = STEPS

        class Helped(Naive):
            Config = HelpedConfig
        """,
    )
    assert create_method(f"{tmp_path / 'uses_helper.py'}:Helped").config.steps == 7
    half = _write(
        tmp_path / "half.py",
        """
        from lfsbench.method import Method

        class Half(Method):
            def learn(self, session):
                return {}
        """,
    )
    with pytest.raises(LfsbenchError, match="does not define state_dict, load_state_dict"):
        method_class(f"{half}:Half")
    with pytest.raises(LfsbenchError, match="no module 'nowhere_pkg'"):
        method_class("nowhere_pkg.mod:Mine")
    code, out = invoke("run", "--method", "mine.py:", "--output", str(tmp_path / "r"))
    assert code == 2 and "FILE.py:ClassName" in out
    with pytest.raises(LfsbenchError, match="Unknown method 'merge'.*path/to/file.py:ClassName"):
        method_class("merge")


def test_a_method_that_asks_for_the_scoring_evaluator_is_refused(tmp_path):
    """The integrity boundary: no method sees the model that scores it. A method that asks for it (UsesEvaluator) is
    refused before anything loads or is written, by `run` and by a study, and no built-in method asks."""
    from lfsbench.method import METHODS, UsesEvaluator, _import_methods

    peeker = _write(
        tmp_path / "peeker.py",
        """
        from lfsbench.method import UsesEvaluator
        from lfsbench.methods.naive import Naive

        class Peeker(Naive, UsesEvaluator):
            pass
        """,
    )
    with pytest.raises(LfsbenchError, match="asks for the benchmark's evaluator"):
        create_method(f"{peeker}:Peeker")
    code, out = tiny_run(f"{peeker}:Peeker", tmp_path / "run")
    assert code == 2 and "No method gets it" in out and "Traceback" not in out and not (tmp_path / "run").exists()
    spec = tmp_path / "study.yaml"
    spec.write_text(f"name: s\noutput: {tmp_path / 'study'}\ncells:\n  - method: {peeker}:Peeker\n")
    code, out = invoke("study", spec)
    assert code == 2 and "asks for the benchmark's evaluator" in out and not (tmp_path / "study").exists()
    _import_methods()
    assert not [name for name in METHODS.names() if issubclass(METHODS.get(name), UsesEvaluator)]


def test_installed_package_adds_a_method_through_its_entry_point(tmp_path):
    """A tiny external package, installed from a folder, adds `ext-naive` (entry point group lfsbench.methods):
    `lfsbench ls methods` lists it with its distribution, and `lfsbench run` runs it."""
    package = tmp_path / "ext"
    (package / "lfsbench_ext").mkdir(parents=True)
    _write(package / "lfsbench_ext" / "__init__.py", "")
    _write(
        package / "lfsbench_ext" / "methods.py",
        """
        from lfsbench.methods.naive import Naive, NaiveConfig


        class ExtConfig(NaiveConfig):
            pass


        class ExtNaive(Naive):
            description = "naive, installed from another package"
            Config = ExtConfig
        """,
    )
    _write(
        package / "pyproject.toml",
        """
        [build-system]
        requires = ["setuptools>=69"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "lfsbench-ext"
        version = "0.3.1"

        [project.entry-points."lfsbench.methods"]
        ext-naive = "lfsbench_ext.methods:ExtNaive"
        replay = "lfsbench_ext.methods:ExtNaive"
        """,
    )
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
    installed = subprocess.run([*pip, str(package)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "200",
    }
    cli = [sys.executable, "-m", "lfsbench.cli"]
    listed = subprocess.run([*cli, "ls", "methods"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "ext-naive" in line)
    assert "lfsbench-ext 0.3.1" in row and "naive, installed from another package" in row
    # an installed method named like a built-in one is not used, and the listing says so
    flat = " ".join(listed.stdout.replace("│", " ").split())  # the table's wrapped cells, read in order
    assert "replay lfsbench-ext 0.3.1: not used, the built-in method 'replay' has this name; rename it" in flat
    sets = [arg for pair in TINY for arg in ("-o", pair)]
    ran = subprocess.run(
        [*cli, "run", "--method", "ext-naive", *sets, "--output", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    method = json.loads((tmp_path / "run" / "config.json").read_text())["method"]
    assert method["name"] == "ext-naive"
    assert {k: method["source"][k] for k in ("entry_point", "distribution", "version")} == {
        "entry_point": "lfsbench_ext.methods:ExtNaive",
        "distribution": "lfsbench-ext",
        "version": "0.3.1",
    }
    assert RunFolder(tmp_path / "run").is_finished(2)


def test_study_spec_names_a_method_file_relative_to_itself(tmp_path, monkeypatch):
    from lfsbench.study import load_study, plan

    (tmp_path / "specs").mkdir()
    (tmp_path / "mine.py").write_text(EXAMPLE.read_text())
    spec = tmp_path / "specs" / "merge.yaml"
    cell = "  - method: ../mine.py:Merge\n    grid: {keep_new: [0.5]}\n"
    spec.write_text(f"name: merge\nprotocol: toy-quick\ncells:\n{cell}")
    monkeypatch.chdir(ROOT)  # elsewhere than the spec
    (run,) = plan(load_study(spec))
    assert run.identity.method.name == f"{tmp_path / 'mine.py'}:Merge"
    assert run.output.name == "Merge-keep_new=0.5-seed0"
