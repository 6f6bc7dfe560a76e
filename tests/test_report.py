"""Reports, studies and the regression gate, over tiny runs."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from xml.etree import ElementTree

import pandas as pd
import pytest
import yaml
from conftest import TINY_PROTOCOL, TINY_SETTINGS, invoke, tiny_run, use_tiny_weights

from lfsbench.errors import LfsbenchError
from lfsbench.gate import Thresholds, load_thresholds, run_checks
from lfsbench.identity import resolve_identity
from lfsbench.report import make_report
from lfsbench.runner import Runner

FAST = TINY_PROTOCOL
TINY = TINY_SETTINGS
NAIVE = "naive (batch_size=2, steps=2)"  # a setting is labelled by its method and the settings it was given


@pytest.fixture
def runs(tiny_runs):
    return tiny_runs


def test_lfs_run_reports_its_in_context_control(runs):
    summary = json.loads((runs / "lfs-0" / "summary.json").read_text())
    scores = pd.read_csv(runs / "lfs-0" / "scores" / "session_02.csv")
    control, concept = scores[scores.kind == "control"], scores[scores.kind == "concept"]
    assert len(control) == len(concept) > 0
    assert summary["IA_control"]["value"] == pytest.approx(control.ia.mean())
    assert summary["IA_gain_over_control"]["value"] == pytest.approx(concept.ia.mean() - control.ia.mean())
    assert (runs / "lfs-0" / "images" / "session_02" / "control_circle-1.png").is_file()
    config = json.loads((runs / "lfs-0" / "config.json").read_text())
    method = config["method"]
    assert method["overrides"]["context_strength"] == 0.5 and method["settings"]["context_strength"] == 0.5
    assert method["preset"] == "toy"
    naive = json.loads((runs / "naive-0" / "summary.json").read_text())
    assert "IA_control" not in naive  # only methods that generate from context have a control


def test_report_files_and_tables_match_the_runs(runs, tmp_path):
    page = make_report([runs], tmp_path / "report")
    for name in ("summary.csv", "summary.md", "curves.csv", "curves.png", "stability.png", "index.html"):
        assert (tmp_path / "report" / name).is_file(), name
    assert len(list((tmp_path / "report").glob("ia_matrix_*.png"))) == 2
    assert len(list((tmp_path / "report").glob("images_*.png"))) == 2
    table = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("setting")
    naive = NAIVE
    seeds = [json.loads((runs / f"naive-{s}" / "summary.json").read_text()) for s in (0, 1)]
    for metric in ("TA", "IA", "IAD", "drift"):
        assert table.loc[naive, metric] == pytest.approx(sum(s[metric]["value"] for s in seeds) / 2)
    assert table.loc[naive, "seeds"] == "0 1"
    lfs = json.loads((runs / "lfs-0" / "summary.json").read_text())
    label = "lfs (batch_size=2, context_strength=0.5, steps=2)"
    assert table.loc[label, "IA_low"] == pytest.approx(lfs["IA"]["ci_low"])  # one seed: the run's own interval
    curves = pd.read_csv(tmp_path / "report" / "curves.csv")
    last = curves[(curves.setting == label) & (curves.session == 2) & (curves.metric == "IA")]
    assert last.value.item() == pytest.approx(lfs["IA"]["value"])
    iad = curves[(curves.setting == label) & (curves.session == 2) & (curves.metric == "IAD")]
    assert iad.value.item() == pytest.approx(lfs["IAD"]["value"])
    html = page.read_text()
    # curves, stability-plasticity, cost, 2 heatmaps, 2 confusion matrices, 2 image grids, 2 copy pictures
    assert html.count("data:image/png;base64,") == 11 and "IA_control" in html
    assert "Learning beside forgetting" in html
    assert "copy rate" in html and "memorization gap" in html and "shots as VAE latents" in html
    assert "<td>2 (0, 1)</td>" in html  # a count of seeds, then which
    assert "Evaluation: sampler ddim, steps" in html and "differ in evaluation settings" not in html
    assert {"train_s", "generate_s", "stored_bytes", "peak_memory_mb"} <= set(curves.metric)
    cost = pd.read_csv(runs / "lfs-0" / "cost.csv")
    train = curves[(curves.setting == label) & (curves.metric == "train_s")].sort_values("session")
    assert train.value.tolist() == pytest.approx(cost.train_s.tolist())
    assert not (tmp_path / "report" / "sweeps.csv").exists()  # no knob takes three values here


def test_exported_runs_report_as_the_runs_do_and_never_resume(runs, tiny_weights, tmp_path):
    """`lfsbench export` copies finished runs without state/: the report of the copies equals the report of the
    runs, an unfinished run is not exported, and the copy refuses to be resumed."""
    import shutil

    partial = tmp_path / "study" / "naive-2"
    shutil.copytree(runs / "naive-1", partial)
    shutil.rmtree(partial / "state")  # a run stopped before its first state was kept: not finished
    for name in ("naive-0", "lfs-0"):
        shutil.copytree(runs / name, tmp_path / "study" / name)
    code, out = invoke("export", tmp_path / "study", runs / "naive-1", "-O", tmp_path / "export")
    assert code == 0, out
    assert "3 runs exported" in out and "not exported" in out and "naive-2" in out
    exported = tmp_path / "export"
    assert sorted(p.name for p in exported.iterdir()) == ["lfs-0", "naive-0", "naive-1"]
    for name in ("lfs-0", "naive-0", "naive-1"):
        assert not (exported / name / "state").exists() and (exported / name / "exported.json").is_file()
        assert (exported / name / "scores").is_dir() and (exported / name / "images").is_dir()
    size = sum(f.stat().st_size for f in exported.rglob("*") if f.is_file())
    assert size < sum(f.stat().st_size for n in ("naive-0", "naive-1", "lfs-0") for f in (runs / n).rglob("*"))

    make_report([runs], tmp_path / "a")
    make_report([exported], tmp_path / "b")
    for name in ("summary.csv", "curves.csv", "pairs.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / name), pd.read_csv(tmp_path / "b" / name))

    code, out = invoke("export", runs, "--no-images", "-O", tmp_path / "numbers")
    assert code == 0 and "no images" in out, out
    assert not list((tmp_path / "numbers").rglob("*.png")) and not list((tmp_path / "numbers").rglob("images"))
    page = make_report([tmp_path / "numbers"], tmp_path / "c")
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "a" / "summary.csv"), pd.read_csv(tmp_path / "c" / "summary.csv")
    )
    assert not list((tmp_path / "c").glob("images_*.png")) and "No images kept for" in page.read_text()
    first = json.loads((tmp_path / "numbers" / "naive-0" / "exported.json").read_text())
    code, out = invoke("export", tmp_path / "numbers" / "naive-0", "-O", tmp_path / "again")  # a copy of a copy
    assert code == 0, out
    second = json.loads((tmp_path / "again" / "naive-0" / "exported.json").read_text())
    assert second == first and second["source"] == str((runs / "naive-0").resolve())  # where the run was made

    again, out = invoke("export", runs / "naive-0", "-O", exported)  # replacing its own earlier export: allowed
    assert again == 0 and "1 runs exported" in out, out
    assert sorted(p.name for p in exported.iterdir()) == ["lfs-0", "naive-0", "naive-1"]
    shutil.copytree(runs / "lfs-0", tmp_path / "other" / "naive-0")  # another run under an exported run's name
    clash, out = invoke("export", tmp_path / "other", "-O", exported)
    assert clash == 2 and "is not an export of this run" in out
    assert json.loads((exported / "naive-0" / "config.json").read_text())["method"]["name"] == "naive"
    with pytest.raises(LfsbenchError, match="exported without its method states"):
        tiny_run(tiny_weights, exported / "naive-0", "naive", 0)
    assert not (exported / "naive-0" / "state").exists()


def test_knob_sweep_table_and_figure(runs, tiny_weights, tmp_path):
    """Settings that differ in one knob only (three values) make a sweep, with the summary's numbers, in value order."""
    for strength in (1.0, 0.8):
        tiny_run(tiny_weights, tmp_path / f"lfs-{strength}", "lfs", 0, {"context_strength": strength})
    page = make_report([runs, tmp_path], tmp_path / "report")
    sweeps = pd.read_csv(tmp_path / "report" / "sweeps.csv")
    assert set(sweeps.sweep) == {"lfs: context_strength (batch_size=2, steps=2)"}
    assert sweeps.x.tolist() == [0.5, 0.8, 1.0]
    table = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("setting")
    for row in sweeps.itertuples():
        for metric in ("IA", "IAD", "drift", "TA"):
            assert getattr(row, metric) == pytest.approx(table.loc[row.setting, metric]), (row.setting, metric)
    assert (tmp_path / "report" / "sweeps.png").is_file() and "| lfs: context_strength" in (
        tmp_path / "report" / "sweeps.md"
    ).read_text()
    assert "Knob sweeps" in page.read_text()


def test_checkpoint_evaluation_and_prefix_runs(tiny_weights, tmp_path):
    """Between checkpoints only the concept just learned is evaluated; curves and the scalability table use only
    full evaluations; and a protocol's prefix run gives exactly the long run's figures at that session."""
    four = {
        **FAST,
        "sessions": [["circle-1"], ["square-1"], ["circle-2"], ["square-2"]],
        "evaluation": {**FAST["evaluation"], "checkpoints": [2]},
    }
    long = tiny_run(tiny_weights, tmp_path / "runs" / "long", "naive", 0, protocol=four)
    partial = pd.read_csv(long / "scores" / "session_02.csv")
    assert set(partial[partial.kind == "concept"].name) == {"circle-2"} and set(
        partial[partial.kind == "class"].name
    ) == {"circle"}
    full = pd.read_csv(long / "scores" / "session_03.csv")
    assert set(full[full.kind == "concept"].name) == {"circle-1", "square-1", "circle-2", "square-2"}
    summary = json.loads((long / "summary.json").read_text())
    first = pd.read_csv(long / "ia_matrix.csv").set_index("session")
    iad = [first.loc[s, c] - first.loc[3, c] for s, c in enumerate(["circle-1", "square-1", "circle-2"])]
    assert summary["IAD"]["value"] == pytest.approx(sum(iad) / 3)  # IA right after learning exists for every concept
    assert pd.isna(first.loc[2, "circle-1"])  # not evaluated after session 2

    make_report([tmp_path / "runs"], tmp_path / "report")
    curves = pd.read_csv(tmp_path / "report" / "curves.csv")
    assert sorted(curves[curves.metric == "TA"].session) == [0, 1, 3]
    assert sorted(curves[curves.metric == "generate_s"].session) == [0, 1, 3]
    assert sorted(curves[curves.metric == "train_s"].session) == [0, 1, 2, 3]
    scale = pd.read_csv(tmp_path / "report" / "scalability.csv")
    assert scale.sessions.tolist() == [2, 4]  # the protocol's checkpoints and its last session
    cost = pd.read_csv(long / "cost.csv")
    assert scale.train_s_total.tolist() == pytest.approx([cost.train_s[:2].sum(), cost.train_s.sum()])

    short = tiny_run(tiny_weights, tmp_path / "short", "naive", 0, protocol={**FAST, "sessions": four["sessions"][:2]})
    prefix = json.loads((short / "summary.json").read_text())
    at_two = scale[scale.sessions == 2].iloc[0]
    for metric in ("TA", "IA", "IAD", "drift"):
        assert at_two[metric] == pytest.approx(prefix[metric]["value"]), metric


def test_report_refuses_runs_of_different_protocols(runs, tiny_weights, tmp_path):
    other = tiny_run(
        tiny_weights, tmp_path / "other", "naive", 0, protocol={**FAST, "sessions": [["ring-1"], ["cross-1"]]}
    )
    with pytest.raises(LfsbenchError, match="different protocols"):
        make_report([runs, other], tmp_path / "report")


def test_report_over_concept_orders(runs, tiny_weights, tmp_path):
    """Runs of one setting in three concept orders (the written one and order_seed 2, 3) are one protocol to the
    report: each order is its own row, and orders.csv gives each headline figure's spread over the orders."""
    import shutil

    shutil.copytree(runs / "naive-0", tmp_path / "naive-written")
    for order in (2, 3):  # (order_seed 1 draws the written order of three sessions)
        tiny_run(tiny_weights, tmp_path / f"naive-order{order}", "naive", 0, protocol={**FAST, "order_seed": order})
    drawn = json.loads((tmp_path / "naive-order2" / "config.json").read_text())["protocol"]["sessions"]
    assert drawn != FAST["sessions"] and sorted(drawn) == sorted(FAST["sessions"])
    make_report([tmp_path], tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("setting")
    labels = [NAIVE, f"{NAIVE} [order 2]", f"{NAIVE} [order 3]"]
    assert sorted(table.index) == sorted(labels)
    orders = pd.read_csv(tmp_path / "report" / "orders.csv").set_index("metric")
    ia = table.loc[labels, "IA"]
    assert orders.at["IA", "setting"] == NAIVE and orders.at["IA", "orders"] == 3
    assert orders.at["IA", "mean"] == pytest.approx(ia.mean())
    assert orders.at["IA", "sd"] == pytest.approx(ia.std(ddof=1))
    assert orders.at["IA", "range"] == pytest.approx(ia.max() - ia.min())
    # each image of one order pairs with its twin in the other (the tokens, numbered in session order, differ), so
    # the paired IA difference is the difference of the two orders' IA
    pairs = pd.read_csv(tmp_path / "report" / "pairs.csv").set_index(["a", "b", "metric"])
    (a, b), *_ = [(a, b) for a, b in itertools.permutations(labels[:2]) if (a, b, "IA") in pairs.index]
    assert pairs.at[(a, b, "IA"), "difference"] == pytest.approx(table.at[a, "IA"] - table.at[b, "IA"])
    assert "Concept order" in (tmp_path / "report" / "index.html").read_text()


def test_report_compares_runs_sampled_differently_as_separate_settings(runs, tiny_weights, tmp_path):
    """Runs that differ only in how evaluation samples (sampler, steps, precision) are one protocol to the report,
    each sampling its own labelled setting (never one mean), with their paired differences."""
    import shutil

    shutil.copytree(runs / "naive-0", tmp_path / "naive-ddim")
    fast = {**FAST, "evaluation": {**FAST["evaluation"], "sampler": "dpmsolver++", "steps": 2}}
    tiny_run(tiny_weights, tmp_path / "naive-fast", "naive", 0, protocol=fast)
    make_report([tmp_path], tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("setting")
    standard, quick = f"{NAIVE} [ddim, 3 steps]", f"{NAIVE} [dpmsolver++, 2 steps]"
    assert sorted(table.index) == sorted([standard, quick])
    pairs = pd.read_csv(tmp_path / "report" / "pairs.csv")
    assert {standard, quick} <= set(pairs.a) | set(pairs.b)
    make_report([runs / "naive-0", runs / "naive-1"], tmp_path / "alone")  # one sampling: labels as before
    assert list(pd.read_csv(tmp_path / "alone" / "summary.csv").setting) == [NAIVE]


def test_the_learning_beside_forgetting_figure_needs_its_figures():
    """Runs made before IA right after learning was recorded get no figure (and no error)."""
    from lfsbench.report import plots

    table = pd.DataFrame({"setting": ["a"], "IA": [0.5], "IA_low": [0.4], "IA_high": [0.6]})
    assert plots.stability_plasticity(table, Path("/nonexistent/stability.png")) is None


def test_report_holm_corrects_the_comparisons_a_study_declared_primary(runs, tmp_path):
    """`lfsbench report --study SPEC` reads the spec's `primary:`: comparisons against the named setting on the named
    metrics are one Holm family, every other comparison is exploratory; naming a setting no run is fails clearly."""
    spec = tmp_path / "spec.yaml"
    base = {"name": "p", "protocol": "toy-quick", "cells": [{"method": "naive"}]}
    spec.write_text(yaml.safe_dump({**base, "primary": {"against": [NAIVE], "metrics": ["IA", "IAD"]}}))
    code, out = invoke("report", runs, "-O", tmp_path / "report", "--study", spec)
    assert code == 0, out
    pairs = pd.read_csv(tmp_path / "report" / "pairs.csv")
    declared = ((pairs.a == NAIVE) | (pairs.b == NAIVE)) & pairs.metric.isin(["IA", "IAD"])
    assert declared.any() and (~declared).any()
    assert (pairs[declared].family == "primary").all() and (pairs[declared].correction == "Holm").all()
    assert (pairs[~declared].family == "exploratory").all()
    assert "H " in (tmp_path / "report" / "pairs.md").read_text()

    spec.write_text(yaml.safe_dump({**base, "primary": {"against": ["nave"], "metrics": ["IA"]}}))
    code, out = invoke("report", runs, "-O", tmp_path / "typo", "--study", spec)
    assert code == 2 and "against nave, which no run here is" in out and "Traceback" not in out
    assert not (tmp_path / "typo").exists()  # refused before anything is written


def test_report_refuses_to_average_seeds_that_stopped_at_different_sessions(runs, tmp_path):
    """A seed killed before its last session has a summary of an earlier session: averaging it with finished seeds
    would mix sessions, so the report names the runs and the fix."""
    import shutil

    shutil.copytree(runs / "naive-0", tmp_path / "naive-0")
    partial = shutil.copytree(runs / "naive-1", tmp_path / "naive-1")
    summary = json.loads((partial / "summary.json").read_text())
    summary["sessions_finished"] -= 1  # what the runner writes after the session before the last
    (partial / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(LfsbenchError, match="stopped after different numbers of sessions.*--resume"):
        make_report([tmp_path], tmp_path / "report")


def thresholds(checks):
    return Thresholds.model_validate({"protocol": "toy", "checks": checks})


def test_gate_passes_fails_and_names_the_metric(runs):
    naive_iad = json.loads((runs / "naive-0" / "summary.json").read_text())["IAD"]["value"]
    ok = run_checks(
        [runs],
        thresholds(
            [
                {"name": "sane TA", "value": NAIVE + ".TA", "min": -0.5, "max": 0.9},
                {"name": "relation", "value": NAIVE + ".TA.ci_low", "less_than": NAIVE + ".TA.ci_high"},
            ]
        ),
    )
    assert all(r["passed"] for r in ok), ok
    bad = run_checks([runs], thresholds([{"name": "impossible", "value": NAIVE + ".IAD", "min": naive_iad + 10}]))
    assert not bad[0]["passed"] and bad[0]["value"] == NAIVE + ".IAD"
    with pytest.raises(LfsbenchError, match="no metric 'IAX'"):
        run_checks([runs], thresholds([{"name": "typo", "value": NAIVE + ".IAX", "min": 0}]))
    with pytest.raises(LfsbenchError, match="no runs of 'replay'"):
        run_checks([runs], thresholds([{"name": "missing", "value": "replay.IAD", "max": 1}]))


def test_gate_cli_exit_code_and_bad_file(runs, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        yaml.safe_dump({"protocol": "toy", "checks": [{"name": "naive forgets", "value": NAIVE + ".TA", "min": 5}]})
    )
    code, output = invoke("check", runs, "--thresholds", path)
    assert code == 1 and "naive forgets" in output and "FAIL" in output
    code, output = invoke("check", runs, "--thresholds", path, "--json", "--junit", tmp_path / "ci" / "gate.xml")
    (result,) = json.loads(output)
    assert code == 1 and result["check"] == "naive forgets" and result["passed"] is False and result["measured"] < 5
    suite = ElementTree.parse(tmp_path / "ci" / "gate.xml").getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "1"
    assert suite.find("testcase").get("name") == "naive forgets" and suite.find("testcase/failure") is not None
    path.write_text("protocol: toy\nchecks:\n  - name: no bound\n    value: naive.TA\n")
    with pytest.raises(LfsbenchError, match="needs a bound"):
        load_thresholds(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("protocol: toy\nchecks: []\n", "at least 1"),  # "all 0 checks passed" before
        ("protocol: toy\nchecks: []\nchecks:\n  - {name: a, value: naive.TA, min: 0.9}\n", "given twice"),
        ("protocol: toy\nchecks:\n  - {name: a, value: naive.TA, min: 0.9, min: 0.1}\n", "given twice"),
        ("protocol: toy\nchecks:\n  - {name: a, value: naive.TA, max: yes}\n", "must be a number"),
        ("protocol: toy\nchecks:\n  - {name: a, value: naive.TA, min: '0.5'}\n", "must be a number"),
        ("protocol: toy\nchecks:\n  - {name: a, value: naive.TA, less_than: naive.TA}\n", "with itself"),
        ("protocol: toy\nchecks:\n  - {name: a, value: naive.copy_rate, max: 1}\n", "always lies in"),
        ("protocol: toy\nchecks:\n  - {name: a, value: naive.IA, min: -5}\n", "always lies in"),  # a cosine
        ("protocol: toy\nchecks:\n  - {name: a, value: naive.IAD, max: 2}\n", "always lies in"),  # a difference
        ("protocol: toy\nchecks:\n  - {name: a, value: naive.TA, min: -.inf}\n", "infinite bound"),
        ("protocol: toy\nchecks:\n  - {name: a, value: naive.TA, min: 0.5, max: 0.1}\n", "can never pass"),
        (
            "protocol: toy\nchecks:\n  - {name: a, value: naive.TA, min: 0}\n  - {name: a, value: naive.IA, min: 0}\n",
            "more than once",
        ),
    ],
)
def test_a_thresholds_file_that_could_not_gate_is_refused(tmp_path, text, problem):
    """D3 of the reliability probe: each of these passed the gate, or dropped or replaced a check, without a word."""
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    with pytest.raises(LfsbenchError, match=problem) as err:
        load_thresholds(path)
    assert str(path) in str(err.value)


def test_study_runs_cells_once(tiny_weights, tmp_path, monkeypatch):
    from lfsbench import study as study_module

    spec = study_module.Study.model_validate(
        {
            "name": "t",
            "protocol": "toy",
            "seeds": [0],
            "output": str(tmp_path / "study"),
            "cells": [
                {
                    "method": "naive",
                    "settings": {
                        **TINY,
                        "sessions": [["circle-1"]],
                        "evaluation.images_per_prompt": 1,
                        "evaluation.steps": 2,
                        "evaluation.bootstrap": 100,
                        "evaluation.untouched_classes": [],
                    },
                    "grid": {"kv_lr": [0.001, 0.01]},
                }
            ],
        }
    )
    runs = study_module.plan(spec)
    assert len(runs) == 2 and runs[0].output != runs[1].output
    started = []
    real = Runner.run
    use_tiny_weights(monkeypatch, tiny_weights)
    monkeypatch.setattr(Runner, "run", lambda self: started.append(self.folder.path) or real(self))
    study_module.run_study(spec)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    code, output = invoke("study", path)  # everything finished: nothing runs again, and the report is written
    assert code == 0, output
    assert len(started) == 2 and all((p / "summary.json").is_file() for p in started)
    table = pd.read_csv(tmp_path / "study" / "report" / "summary.csv")
    assert len(table) == 2 and (tmp_path / "study" / "report" / "index.html").is_file()

    # a study gathered on another disk: its runs exported, brought back, count as finished and are not run again
    import shutil

    code, output = invoke("export", tmp_path / "study", "--no-images", "-O", tmp_path / "kept")
    assert code == 0 and "2 runs exported" in output, output
    shutil.rmtree(tmp_path / "study")
    shutil.copytree(tmp_path / "kept", tmp_path / "study")
    code, output = invoke("study", path)
    assert code == 0 and len(started) == 2, output
    again = pd.read_csv(tmp_path / "study" / "report" / "summary.csv")
    pd.testing.assert_frame_equal(table, again)


def test_cli_run_names_its_folder_prints_the_metric_table_and_resumes(tiny_weights, tmp_path, monkeypatch):
    """`lfsbench run` without --output: the folder is named by the run's identity (settings readable), the closing
    table lists the metric table's `cli` metrics with their definitions, and --resume reads the identity back from
    config.json."""
    from lfsbench.evaluation.metrics import METRICS
    from lfsbench.protocol import parse_settings
    from lfsbench.results import RunFolder

    monkeypatch.chdir(tmp_path)
    use_tiny_weights(monkeypatch, tiny_weights)
    pairs = [
        "steps=2",
        "batch_size=2",
        "sessions=[[circle-1], [square-1]]",
        "evaluation.images_per_prompt=1",
        "evaluation.steps=2",
        "evaluation.bootstrap=100",
        "evaluation.untouched_classes=[]",
    ]
    code, output = invoke("run", "-m", "naive", *[arg for p in pairs for arg in ("-o", p)])
    assert code == 0, output
    folder = resolve_identity("naive", "toy", parse_settings(pairs), 0).default_folder(Path("runs"))
    assert folder.parent == Path("runs/toy") and folder.name.endswith("-seed0")  # many settings: a hash of them
    assert (tmp_path / folder / "summary.json").is_file() and str(folder) in output
    for key in ("IAD", "forgetting_max", "drift_seed_scale"):
        assert key in output
    assert METRICS["IAD"].definition[:20] in output
    assert "IA_control" not in output  # naive has no in-context control
    identity = RunFolder(tmp_path / folder).identity()
    assert identity.protocol.sessions == [["circle-1"], ["square-1"]]
    assert identity.method.overrides == {"steps": 2, "batch_size": 2}
    assert identity.label == "naive (batch_size=2, steps=2)"
    code, output = invoke("run", "-m", "naive", "--resume", str(folder))
    assert code == 0 and "already finished" in output, output


def test_runs_are_named_by_their_identity():
    from lfsbench.study import Study, plan

    assert resolve_identity("naive", "toy", {}, 0).dirname() == "naive-seed0"
    lfs = resolve_identity("lfs", "toy", {"icgen": False, "context_strength": 0.6}, 2)
    assert lfs.dirname() == "lfs-context_strength=0.6,icgen=False-seed2"
    assert lfs.label == "lfs (context_strength=0.6, icgen=False)"
    assert resolve_identity("naive", "toy", {"backbone": "../x y"}, 0).dirname() == "naive-backbone=.._x_y-seed0"
    many = {"evaluation.prompts": [f"a {{}} number {i} of many" for i in range(12)]}
    long = resolve_identity("naive", "toy", many, 1).dirname()
    assert len(long) < 40 and long.startswith("naive-") and long.endswith("-seed1")
    assert resolve_identity("naive", "toy", {}, 0).label == "naive"
    study = Study.model_validate(
        {"name": "s", "output": "out", "cells": [{"method": "lfs", "grid": {"icgen": [False]}}]}
    )
    assert plan(study)[0].output == Path("out/toy/lfs-icgen=False-seed0")


@pytest.mark.parametrize(
    "cli, spec",
    [
        ("dfkd=false", {"dfkd": False}),  # a bool
        ("context_strength=1", {"context_strength": 1.0}),  # a float (given as an int on the command line)
        ("sessions=[[circle-1], [square-1]]", {"sessions": [["circle-1"], ["square-1"]]}),  # a list
        ("token_init='circle'", {"token_init": "circle"}),  # a string (quoted on the command line)
    ],
)
def test_a_run_by_hand_and_the_same_study_cell_write_one_folder(cli, spec, tmp_path, monkeypatch):
    """`lfsbench run -o KEY=VALUE` and a study cell with `KEY: VALUE` are one run: the same identity and the same
    folder, whatever the value's kind."""
    from lfsbench import study as study_module

    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(Runner, "__init__", lambda self, identity, output, **options: seen.append((identity, output)))
    monkeypatch.setattr(Runner, "run", lambda self: {"sessions_finished": 1})
    code, output = invoke("run", "-m", "lfs", "-o", cli)
    assert code == 0, output
    study = study_module.Study.model_validate(
        {"name": "s", "output": "runs", "cells": [{"method": "lfs", "settings": spec}]}
    )
    study_module.run_study(study)
    (by_hand, folder), (by_study, study_folder) = seen
    assert Path(folder) == Path(study_folder) == Path("runs/toy") / by_hand.dirname()
    assert by_hand.key() == by_study.key() and by_hand == by_study


def test_study_shards_split_the_runs_without_overlap(tmp_path, monkeypatch):
    """`--shard K/N` runs runs K, K+N, ... of the study: N processes sharing its folder run each run once."""
    from lfsbench import study as study_module

    spec = study_module.Study.model_validate(
        {
            "name": "t",
            "protocol": "toy-quick",
            "output": str(tmp_path),
            "cells": [{"method": "naive", "grid": {"kv_lr": [1e-4, 2e-4, 3e-4, 4e-4, 5e-4]}}],
        }
    )
    started = []
    monkeypatch.setattr(Runner, "__init__", lambda self, spec, output, **options: setattr(self, "out", output))
    monkeypatch.setattr(Runner, "run", lambda self: started.append(self.out))
    shards = []
    for k in (1, 2):
        study_module.run_study(spec, shard=(k, 2))
        shards.append(list(started))
        started.clear()
    everything = [run.output for run in study_module.plan(spec)]
    assert shards == [everything[0::2], everything[1::2]]
    assert study_module.unfinished_runs(spec) == everything  # nothing ran for real: every run is still missing
    for bad in ("0/2", "3/2", "1", "a/b"):
        with pytest.raises(LfsbenchError, match="--shard"):
            study_module.parse_shard(bad)
    assert study_module.parse_shard("2/3") == (2, 3)


def test_a_study_refuses_a_finished_run_made_with_other_settings(tmp_path, monkeypatch):
    """A run folder that holds a run with other settings (here: a default changed since it ran) is not skipped as
    finished and reported as if it were the spec's: the study stops before running anything and names the change."""
    from lfsbench import study as study_module

    spec = study_module.Study.model_validate(
        {"name": "t", "protocol": "toy-quick", "output": str(tmp_path), "cells": [{"method": "naive"}]}
    )
    run = study_module.plan(spec)[0]
    run.output.mkdir(parents=True)
    (run.output / "config.json").write_text(json.dumps(run.identity.to_config()))
    started = []
    monkeypatch.setattr(Runner, "__init__", lambda self, spec, output, **options: setattr(self, "out", output))
    monkeypatch.setattr(Runner, "run", lambda self: started.append(self.out))
    study_module.run_study(spec)  # the same run: it resumes
    assert started == [run.output]
    method = run.identity.method
    older = method.model_copy(update={"settings": {**method.settings, "steps": 200}})
    (run.output / "config.json").write_text(json.dumps(run.identity.model_copy(update={"method": older}).to_config()))
    with pytest.raises(
        LfsbenchError, match=r"another run than the spec asks for now \(method setting steps 200 -> 400"
    ):
        study_module.run_study(spec)
    assert len(started) == 1


def _ia_squared(rows):
    """The one function a new per-image metric needs: its value per image, from the score records."""
    return rows.ia**2


def test_a_metric_is_one_entry_and_one_function(runs, tiny_weights, tmp_path, monkeypatch):
    """A per-image metric registered in the metric table (here, in this test) is computed and shown by every view it
    names: session rows and summary.json (a rebuilt summary), the report's summary table and paired comparisons,
    and a `check` threshold; with a proportion's interval where it declares one. No other code changes."""
    import dataclasses
    import shutil

    from lfsbench.evaluation import tables
    from lfsbench.evaluation.metrics import METRICS, Metric
    from lfsbench.evaluation.records import Kind
    from lfsbench.results import RunFolder

    squared = Metric(
        name="IA_squared",
        short="IA²",
        axis="IA squared",
        title="IA squared",
        higher_is_better=True,
        definition="the square of each image's IA, averaged",
        views="session summary headline pairs cli",
        reads=Kind.CONCEPT,
        score=_ia_squared,
    )
    above = dataclasses.replace(
        squared, name="IA_above_half", score=lambda rows: rows.ia > 0.5, interval="proportion", definition="IA > 0.5"
    )
    for metric in (squared, above):
        monkeypatch.setitem(METRICS, metric.name, metric)
    for name, method, settings in (("naive-0", "naive", {}), ("lfs-0", "lfs", {"context_strength": 0.5})):
        shutil.copytree(runs / name, tmp_path / "runs" / name)
        (tmp_path / "runs" / name / "summary.json").unlink()  # rebuilt when the finished run is run again
        tiny_run(tiny_weights, tmp_path / "runs" / name, method, 0, settings)
    summary = json.loads((tmp_path / "runs" / "naive-0" / "summary.json").read_text())
    scores = pd.read_csv(tmp_path / "runs" / "naive-0" / "scores" / "session_02.csv")
    ia = scores[scores.kind == "concept"].ia
    assert summary["IA_squared"]["value"] == pytest.approx((ia**2).mean())
    share = summary["IA_above_half"]
    assert share["value"] == pytest.approx((ia > 0.5).mean()) and share["ci_low"] < share["ci_high"]  # Wilson
    history = RunFolder(tmp_path / "runs" / "naive-0").scores()  # a session's rows, as the runner computes them
    learned_in = {"circle-1": 0, "square-1": 1, "circle-2": 2}
    rows = tables.session_rows(scores, history, 2, learned_in, {"circle": 0, "square": 1}, 100)
    assert set(rows[rows.metric == "IA_squared"].name) == set(learned_in)
    make_report([tmp_path / "runs"], tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("setting")
    assert table.loc[NAIVE, "IA_squared"] == pytest.approx(summary["IA_squared"]["value"])
    assert "IA_squared" in (tmp_path / "report" / "summary.md").read_text()
    assert {"IA_squared", "IA_above_half"} <= set(pd.read_csv(tmp_path / "report" / "pairs.csv").metric)
    checks = [
        {"name": "squared", "value": f"{NAIVE}.IA_squared", "min": 0.0},
        {"name": "impossible", "value": f"{NAIVE}.IA_squared", "max": -1.0},
    ]
    assert [r["passed"] for r in run_checks([tmp_path / "runs"], thresholds(checks))] == [True, False]


def test_export_never_writes_onto_or_into_what_it_exports(tiny_runs, tmp_path):
    """D0 of the reliability probe: exporting a folder of exports onto itself deleted every export in it; exporting
    a run into itself nested the copy inside the run. Both are refused before anything is written."""
    import shutil

    gathered = tmp_path / "gathered"
    code, out = invoke("export", tiny_runs / "naive-0", "-O", gathered / "naive-0")
    assert code == 0, out
    before = sorted(str(p.relative_to(gathered)) for p in gathered.rglob("*"))
    for target in (gathered, gathered / "sub"):
        code, out = invoke("export", gathered, "-O", target)
        assert code == 2 and "Traceback" not in out and "Nothing was changed" in out, out
    run = tmp_path / "run"
    shutil.copytree(tiny_runs / "naive-0", run)
    code, out = invoke("export", run, "-O", run / "copy")
    assert code == 2 and "is inside" in out and not (run / "copy").exists(), out
    assert sorted(str(p.relative_to(gathered)) for p in gathered.rglob("*")) == before


def test_export_never_follows_links(tiny_runs, tmp_path):
    """D6: a link in a run folder (to a file outside it, or a loop) is left out of the export and named in its
    marker, never copied through; nothing temporary is left behind."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_runs / "naive-0", run)
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the run")
    (run / "notes.txt").symlink_to(secret)
    (run / "scores" / "loop").symlink_to(run / "scores")
    code, out = invoke("export", run, "-O", tmp_path / "out")
    assert code == 0, out
    copy = tmp_path / "out" / "run"
    assert not (copy / "notes.txt").exists() and not (copy / "scores" / "loop").exists()
    left_out = " ".join(json.loads((copy / "exported.json").read_text())["left_out"])
    assert "notes.txt" in left_out and "loop" in left_out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run"]


def test_a_run_stopped_early_is_refused_by_the_gate_and_marked_in_reports(tiny_runs, tmp_path):
    """D4: `check` passed a run killed after session 0 of 3 on its session-0 numbers, and `report` showed it as
    finished. A run stopped early is refused by the gate and labelled `after N of M sessions` in reports."""
    import shutil

    stopped = tmp_path / "runs" / "naive-0"
    shutil.copytree(tiny_runs / "naive-0", stopped)
    for t in (1, 2):
        (stopped / "scores" / f"session_{t:02d}.csv").unlink()
    summary = json.loads((stopped / "summary.json").read_text())
    (stopped / "summary.json").write_text(json.dumps({**summary, "sessions_finished": 1}))
    checks = thresholds([{"name": "learns", "value": NAIVE + ".IA", "min": 0.0}])
    with pytest.raises(LfsbenchError, match=r"stopped early: .*naive-0 \(1 of 3 sessions\)"):
        run_checks([tmp_path / "runs"], checks)
    make_report([tmp_path / "runs"], tmp_path / "report")
    settings = pd.read_csv(tmp_path / "report" / "summary.csv").setting.tolist()
    assert settings == [f"{NAIVE} [after 1 of 3 sessions]"]


def test_the_page_says_which_evaluation_settings_its_runs_differ_in(runs):
    from lfsbench.report.html import evaluation_settings
    from lfsbench.report.runs import find_runs

    found = find_runs([runs])
    changed = found[0].identity.protocol.model_copy(
        update={"evaluation": found[0].identity.protocol.evaluation.model_copy(update={"sampler": "dpmsolver++"})}
    )
    found[0] = dataclasses.replace(found[0], identity=found[0].identity.model_copy(update={"protocol": changed}))
    text = evaluation_settings(found)
    assert "differ in evaluation settings (sampler: ddim / dpmsolver++)" in text and "steps" in text.split("differ")[0]
