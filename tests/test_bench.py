"""`lfsbench bench`: lfsbench's training, generation and scoring rates against diffusers' example-script loop.

Ratios only: no timing threshold (the machine decides those); what is checked is that every stage is timed, that the
reference loop really trains, and that the command writes its CSV.
"""

import math

import pandas as pd
import pytest
import torch
from conftest import invoke

from lfsbench import training
from lfsbench.bench import bench, reference_training
from lfsbench.concepts import load_concepts
from lfsbench.method import create_method
from lfsbench.protocol import load_protocol
from lfsbench.toy import load_toy_backbone, load_toy_evaluator

SMALL = {"evaluation": {"images_per_prompt": 2, "steps": 2, "max_prompts": 2}}


def test_bench_times_every_stage_against_the_reference(tiny_weights):
    protocol = load_protocol("toy", SMALL)
    backbone = load_toy_backbone(weights=tiny_weights)
    concept = load_concepts(protocol, resolution=backbone.resolution)[0]
    table = bench(
        ["naive", "lfs", "lora"],
        protocol,
        lambda: load_toy_backbone(weights=tiny_weights),
        load_toy_evaluator(weights=tiny_weights),
        concept,
        steps=2,
    )
    assert list(zip(table.method, table.stage, strict=True)) == [
        ("naive", "train"),
        ("lfs", "train"),
        ("lora", "train"),
        ("all", "generate"),
        ("all", "evaluate"),
    ]
    for column in (
        "lfsbench_per_s",
        "reference_per_s",
        "ratio",
        "lfsbench_gflop_per_unit",
        "reference_gflop_per_unit",
        "lfsbench_fraction_of_peak",
        "reference_fraction_of_peak",
        "peak_gflops",
    ):
        assert all(math.isfinite(v) and v > 0 for v in table[column]), column
    # Batching changes how fast images come, not the arithmetic one image costs: both sides' generation counts
    # the same UNet work per image (the text encoder runs once per call, hence not exactly equal).
    generate = table[table.stage == "generate"].iloc[0]
    assert generate.lfsbench_gflop_per_unit == pytest.approx(generate.reference_gflop_per_unit, rel=0.1)
    # A training step runs the UNet forward and backward on each image of its batch. With the UNet's weights frozen
    # (naive trains K/V and a token) the backward computes input gradients only, about one more forward: `lfsbench
    # bench` on the toy backbone counted 2.5 forwards per image for this loop (2.0 for naive's, which skips the VAE).
    # A count that missed the backward would stay near 1.
    train = table[(table.stage == "train") & (table.method == "naive")].iloc[0]
    unet_forward = generate.reference_gflop_per_unit / (2 * SMALL["evaluation"]["steps"])  # guidance: 2 passes
    batch = create_method("naive").config.batch_size
    assert train.reference_gflop_per_unit > 1.5 * batch * unet_forward


def test_reference_loop_trains_naives_parameters(tiny_weights):
    """The reference is a real training loop on K/V and the modifier token (not an empty one to beat)."""
    protocol = load_protocol("toy", SMALL)
    trained, untouched = load_toy_backbone(weights=tiny_weights), load_toy_backbone(weights=tiny_weights)
    concept = load_concepts(protocol, resolution=trained.resolution)[0]
    reference_training(trained, concept, f"a {concept.token} {concept.class_noun}", 2, 2, create_method("naive").config)
    token = training.add_modifier_token(untouched, concept.token, concept.class_noun)
    training.install_trainable_kv(untouched)
    start, end = training.kv_state(untouched), training.kv_state(trained)
    assert start.keys() == end.keys() and any(not torch.equal(start[k], end[k]) for k in start)
    rows = [training.token_embeddings(b)[0][token] for b in (untouched, trained)]
    assert not torch.equal(*rows)


def test_bench_command_writes_its_csv(tmp_path):
    out = tmp_path / "bench.csv"
    code, text = invoke(
        "bench",
        "-m",
        "naive",
        "--steps",
        "2",
        "-o",
        "evaluation.images_per_prompt=1",
        "-o",
        "evaluation.steps=2",
        "-o",
        "evaluation.max_prompts=1",
        "-o",
        "kv_lr=0.002",  # a method setting: given to each timed method that has it, and recorded
        "-O",
        out,
    )
    assert code == 0, text
    assert "written:" in text and out.is_file()
    table = pd.read_csv(out)
    assert set(table.stage) == {"train", "generate", "evaluate"} and (table.ratio > 0).all()
    assert table[table.stage == "train"].settings.tolist() == ["kv_lr=0.002, steps=2"]
    assert (table.peak_memory_mb > 0).all()
    code, text = invoke("bench", "-m", "naive", "-o", "no_such_knob=1", "-O", out)
    assert code == 2 and "neither a protocol field nor a setting of the methods timed" in text


def test_random_sd_backbone_names_its_dtype():
    """`sd-random:RES:DTYPE` picks the frozen weights' dtype (the GPU profile benches fp16 and bf16); a dtype it does
    not know is a clear error before anything is built."""
    from lfsbench.errors import LfsbenchError
    from lfsbench.models import load_backbone

    for bad in ("sd-random:64:fp8", "sd-random:big"):
        with pytest.raises(LfsbenchError, match=r"sd-random:RESOLUTION:DTYPE with DTYPE one of fp32, fp16, bf16"):
            load_backbone(bad)


def test_bench_times_the_methods_and_anchors_not_the_ceilings_and_controls():
    """Every built-in method has one of the four roles; `lfsbench bench` with no -m times the ones that train as
    themselves."""
    from lfsbench.bench import timed_by_default
    from lfsbench.method import METHODS, _import_methods

    _import_methods()
    roles = {name: cls.role for name, cls in METHODS.items()}
    assert set(roles.values()) == {"method", "anchor", "ceiling", "control"}, roles
    assert roles["lfs"] == "method" and roles["joint"] == "anchor" and roles["oracle"] == "ceiling"
    assert roles["swapped-tokens"] == "control"
    assert timed_by_default() == [name for name, role in roles.items() if role in ("method", "anchor")]
