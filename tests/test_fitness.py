"""The toy world's fitness gates (docs/toyworld.md), asserted on the shipped weights through the CLI. Measuring
them takes minutes, so they run with `-m slow`; the default suite checks instead that the shipped weights are
byte for byte the ones whose gates passed when `lfsbench toy check --record` last measured them."""

import json

import pytest
from typer.testing import CliRunner

from lfsbench.cli import app
from lfsbench.fingerprint import folder_fingerprint
from lfsbench.protocol import load_protocol
from lfsbench.toy import NAMED_WEIGHTS, weights_world

SHIPPED = [name for name, folder in NAMED_WEIGHTS.items() if folder.exists()]  # toy (world 1) and toy-v2 (world 2)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_weights_are_the_ones_whose_gates_passed(name):
    """A rebuilt or edited toy world cannot skip its gates: its weights' hash differs from the one recorded with the
    last passing full check until `lfsbench toy check --record` measures them again (and they pass), on the protocol
    of the same name, whose world the weights were built on."""
    weights = NAMED_WEIGHTS[name]
    record = json.loads((weights / "fitness.json").read_text())
    assert record["passed"] and not record["quick"] and record["protocol"] == name
    assert record["figures"].get("world", 1) == weights_world(weights)
    assert all(g["passed"] for g in record["gates"])
    assert record["weights_sha256"] == folder_fingerprint(weights), (
        f"the shipped {name} weights changed since their gates were measured: run "
        f"`lfsbench toy check --protocol {name} --record`"
    )


@pytest.mark.parametrize("name", SHIPPED)
def test_the_gates_were_measured_at_the_protocols_sampling(name):
    """The backbone's gates hold at the sampler and steps its runs generate with: a protocol that samples faster (or
    otherwise) than its weights' last passing check needs `lfsbench toy check --protocol NAME --record` again.
    Records from before the check took the protocol's setting were measured with DDIM at 25 steps, guidance 5, eta 0,
    at the model's precision; toy-v2's record of 2026-12-08 names sampler, steps and guidance (eta 0, the model's
    precision, as its protocol has them)."""
    plan = load_protocol(name).evaluation
    record = json.loads((NAMED_WEIGHTS[name] / "fitness.json").read_text())
    before = {"sampler": "ddim", "steps": 25, "guidance": 5.0}  # the check's setting before it took the protocol's
    measured = {"eta": 0.0, "precision": "model", **record["figures"].get("sampling", before)}
    wanted = {"sampler": plan.sampler, "steps": plan.steps, "guidance": plan.guidance, "eta": plan.eta}
    assert measured == {**wanted, "precision": plan.precision}, (
        f"{name}'s fitness was measured with {measured}; its protocol samples with {plan.sampler} at {plan.steps} "
        f"steps: run `lfsbench toy check --protocol {name} --record`"
    )


@pytest.fixture(scope="module", params=SHIPPED)
def check(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("toy-check")
    result = CliRunner().invoke(app, ["toy", "check", "--json", "--protocol", request.param, "--output", str(out)])
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    assert len(lines) == 1, result.output
    return json.loads(lines[0]), out, result.exit_code


def gate(report, prefix):
    return [g for g in report["gates"] if g["name"].startswith(prefix)]


@pytest.mark.slow
def test_evaluator_zero_shot(check):
    report, _, _ = check
    assert gate(report, "evaluator class accuracy")[0]["value"] >= 0.90
    assert gate(report, "evaluator colour accuracy")[0]["value"] >= 0.95


@pytest.mark.slow
def test_evaluator_tells_concepts_from_same_class_distractors(check):
    report, _, _ = check
    assert min(report["figures"]["concept_auc"].values()) >= 0.95


@pytest.mark.slow
def test_backbone_draws_the_asked_class_and_colour(check):
    report, _, _ = check
    figures = report["figures"]["backbone"]
    assert figures["generated_class_acc"] >= 0.60
    assert figures["generated_colour_acc"] >= 0.80


@pytest.mark.slow
def test_autoencoder_keeps_concepts(check):
    report, _, _ = check
    assert min(report["figures"]["autoencoder_ratio"].values()) >= 0.90


@pytest.mark.slow
def test_every_toy_concept_is_learnable_in_one_session(check):
    report, _, _ = check
    learn = report["figures"]["learnability"]
    assert len(learn) == 6
    for name, figures in learn.items():
        assert figures["gain"] >= 0.15, (name, figures)


@pytest.mark.slow
def test_check_passes_and_writes_grids(check):
    report, out, exit_code = check
    assert report["passed"] and exit_code == 0
    for name in ("class_prompts.png", "concept_shots.png", "concepts_learned.png"):
        assert (out / name).stat().st_size > 1000
