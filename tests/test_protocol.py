"""Protocols: shipped ones validate; include/override merge; bad files get a precise message."""

import pytest

from lfsbench.errors import LfsbenchError
from lfsbench.protocol import builtin_protocols, load_protocol


def test_shipped_toy_protocol():
    proto = load_protocol("toy")
    assert "toy" in builtin_protocols()
    assert len(proto.sessions) == 6
    classes = [c.split("-")[0] for c in proto.concepts]
    assert len(set(classes)) < len(classes)  # classes repeat across sessions
    assert len(proto.evaluation.prompts) * proto.evaluation.images_per_prompt >= 64


def test_include_and_override(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("include: toy\nname: child\nevaluation:\n  steps: 10\n")
    proto = load_protocol(str(child), overrides={"shots": 3})
    assert proto.name == "child" and proto.evaluation.steps == 10 and proto.shots == 3
    assert proto.evaluation.prompts == load_protocol("toy").evaluation.prompts  # merged, not replaced


@pytest.mark.parametrize(
    "text, words",
    [
        (
            "name: x\nsessions: [[a]]\nevaluation: {prompts: ['a {}'], steps: -1}\n",
            ["evaluation.steps", "greater than"],
        ),
        ("name: x\nsessions: [[a], [a]]\nevaluation: {prompts: ['a {}']}\n", ["sessions", "twice"]),
        (
            "name: x\nsessions: [[a]]\nevaluation: {prompts: ['no placeholder']}\n",
            ["evaluation.prompts", "placeholder"],
        ),
        ("name: x\nsessions: [[a]]\nsesions: 3\nevaluation: {prompts: ['a {}']}\n", ["sesions", "not permitted"]),
        ("name: [unclosed\n", ["not valid YAML"]),
        ("- just a list\n", ["mapping"]),
        (  # toy world 1 draws one object per image: a two-concept prompt has nothing to measure
            "include: toy\nname: x\nmulti_concept: {pairs: [[circle-1, square-1]]}\n",
            ["multi_concept", "no two-object scenes"],
        ),
    ],
)
def test_malformed_protocols_name_file_and_field(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LfsbenchError) as err:
        load_protocol(str(path))
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_unknown_protocol_lists_shipped_ones():
    with pytest.raises(LfsbenchError, match="Shipped protocols: .*toy"):
        load_protocol("no-such-protocol")


def test_include_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(LfsbenchError, match="includes itself"):
        load_protocol(str(tmp_path / "a.yaml"))


def test_tuning_protocol_shares_nothing_with_the_reported_ones():
    """Defaults are tuned on toy-tune: none of its concepts and none of its evaluation seeds appear in another shipped
    toy protocol, so no reported figure comes from data a default was chosen on."""
    from lfsbench.toy import world

    tune = load_protocol("toy-tune")
    catalogue = {c.name for c in world.concept_catalogue()}
    assert set(tune.concepts) <= catalogue
    plan = tune.evaluation
    tuning_seeds = set(range(plan.seed, plan.seed + len(plan.prompts) * plan.images_per_prompt))
    for name in builtin_protocols():
        other = load_protocol(name)
        if name == "toy-tune" or other.source.kind != "toy":
            continue
        assert not set(tune.concepts) & set(other.concepts), name
        e = other.evaluation
        assert not tuning_seeds & set(range(e.seed, e.seed + len(e.prompts) * e.images_per_prompt)), name


def test_order_seed_draws_a_session_order_once():
    """Concept order: order_seed permutes the sessions (each keeps its concepts) when the protocol is loaded; a run's
    stored config holds the drawn order and reads back unchanged (no second shuffle on resume)."""
    from lfsbench.identity import RunIdentity, identity_of
    from lfsbench.protocol import Protocol

    written = load_protocol("toy")
    drawn = load_protocol("toy", {"order_seed": 1})
    assert drawn.sessions != written.sessions and sorted(drawn.sessions) == sorted(written.sessions)
    assert load_protocol("toy", {"order_seed": 1}).sessions == drawn.sessions  # the same seed, the same order
    assert load_protocol("toy", {"order_seed": 2}).sessions != drawn.sessions
    config = identity_of(drawn, "naive").to_config()
    assert Protocol.model_validate(config["protocol"]).sessions == drawn.sessions
    assert RunIdentity.from_config(config).protocol.sessions == drawn.sessions
    grouped = load_protocol("toy", {"sessions": [["circle-1", "square-1"], ["circle-2"]], "order_seed": 3})
    assert sorted(grouped.sessions) == [["circle-1", "square-1"], ["circle-2"]]  # sessions move whole


def test_every_shipped_toy_protocol_loads_its_concepts():
    """Each shipped toy protocol's concepts render, and its untouched classes are classes none of them belongs to
    (the toy protocols whose concepts cover every class of the world list none)."""
    from lfsbench.concepts import load_concepts

    for name in builtin_protocols():
        protocol = load_protocol(name)
        if protocol.source.kind != "toy":
            continue
        classes = {c.class_noun for c in load_concepts(protocol)}
        assert not classes & set(protocol.evaluation.untouched_classes), name


def test_an_absurd_image_count_is_refused_before_anything_renders(tmp_path):
    """The toy world renders as many shots or references as asked: 4e15 (a float a YAML typo makes) would exhaust
    memory while `validate` rendered them, so the counts have an upper bound, named in the error."""
    path = tmp_path / "p.yaml"
    path.write_text("include: toy\nname: p\nshots: 4012608629137475.0\n")
    with pytest.raises(LfsbenchError) as err:
        load_protocol(str(path))
    assert str(path) in str(err.value) and "shots" in str(err.value) and "10000" in str(err.value)
