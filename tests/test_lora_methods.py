"""The LoRA family (peft adapters): sequential lora keeps one adapter, c-lora and o-lora add one per session whose
merge with the earlier ones is exact, and each penalty does what its formula says."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from test_methods import PROMPTS, SEEDS, learned

from lfsbench.lora_method import NEW, PAST
from lfsbench.method import all_methods, create_method


def test_the_lora_methods_are_listed_with_their_presets():
    listed = {name: cls for name, cls, _ in all_methods()}
    assert {"lora", "c-lora", "o-lora"} <= set(listed)
    config = create_method("c-lora", preset="stable-diffusion").config
    assert (config.lr, config.batch_size, config.steps, config.rank, config.target) == (1e-4, 1, 500, 4, "cross-kv")
    assert create_method("lora").config.target == "attention"


def test_sequential_lora_trains_one_adapter_on_and_on(tiny_weights):
    one = learned("lora", tiny_weights, sessions=1)
    two = learned("lora", tiny_weights, sessions=2)
    assert one.factors == [] and set(one._adapters()) == {NEW}
    a1, a2 = one.state_dict(), two.state_dict()
    lora_keys = [k for k in a1 if k.startswith("lora.new.")]
    assert lora_keys and set(lora_keys) == {k for k in a2 if k.startswith("lora.")}
    assert any(not torch.equal(a1[k], a2[k]) for k in lora_keys)  # the second session moved the same adapter
    # trainable: rank x (in + out) per attention projection, plus the two tokens' rows
    modules = one._lora_modules()
    assert len(modules) == sum(
        1 for n, _ in one.backbone.unet.named_modules() if n.endswith(("to_q", "to_k", "to_v", "to_out.0"))
    )
    rows = one.backbone.text_encoder.get_input_embeddings().weight.shape[1]
    assert two.trainable_parameters() == sum(4 * (m.in_features + m.out_features) for m in modules.values()) + 2 * rows


def test_per_session_adapters_merge_exactly(tiny_weights):
    """After two sessions of incremental LoRA (o-lora, orth_weight 0) the model is W + B_1 A_1 + B_2 A_2 in every
    targeted layer, held by one frozen adapter of rank 2 x 4 (float32), and nothing is left trainable."""
    method = learned("o-lora", tiny_weights, {"orth_weight": 0.0})
    assert len(method.factors) == 2 and set(method._adapters()) == {PAST}
    for name, module in method._lora_modules().items():
        (a1, b1), (a2, b2) = method.factors[0][name], method.factors[1][name]
        assert module.lora_A[PAST].weight.shape == (8, module.in_features)
        assert module.lora_A[PAST].weight.dtype == torch.float32
        assert not module.lora_A[PAST].weight.requires_grad and not module.lora_B[PAST].weight.requires_grad
        x = torch.randn(3, module.in_features)
        expected = F.linear(x, module.base_layer.weight + b1 @ a1 + b2 @ a2, module.base_layer.bias)
        assert torch.allclose(module(x), expected, atol=1e-5)
    assert any((b @ a).abs().max() > 0 for a, b in method.factors[1].values())  # the second session learned


def test_c_lora_penalty_keeps_the_new_update_off_the_old_one(tiny_weights):
    """The forgetting penalty is reg_weight * sum ||past (*) new||^2 (checked against the formula); a large weight
    leaves the second session's update far less overlapped with the first's than no penalty does."""

    def overlap(method):
        (past,), (new,) = [method.factors[0]], [method.factors[1]]
        return sum(((past[n][1] @ past[n][0]) * (new[n][1] @ new[n][0])).pow(2).sum() for n in past).item()

    free = learned("c-lora", tiny_weights, {"reg_weight": 0.0, "steps": 6})
    held = learned("c-lora", tiny_weights, {"reg_weight": 1e12, "steps": 6})
    assert all(name.endswith(("attn2.to_k", "attn2.to_v")) for name in free._lora_modules())
    assert overlap(free) > 0 and overlap(held) < 0.5 * overlap(free)

    from test_methods import concepts

    from lfsbench.concepts import session_view

    probe = learned("c-lora", tiny_weights, {"reg_weight": 3.0}, sessions=1)
    probe._start_new_adapter(session_view(1, [concepts()[1]], "a {}", concepts()[:1]))
    with torch.no_grad():
        for module in probe._lora_modules().values():
            module.lora_B[NEW].weight.normal_()
    penalty = probe.penalty(None)
    past = probe.past_factors()
    expected = 3.0 * sum(
        ((past[n][1] @ past[n][0]) * (b @ a)).pow(2).sum() for n, (a, b) in probe.new_factors().items()
    )
    assert torch.allclose(penalty(0), expected)


def test_o_lora_penalty_makes_the_new_down_projection_orthogonal(tiny_weights):
    def cosine(method):
        return sum((method.factors[0][n][0] @ method.factors[1][n][0].T).abs().sum() for n in method.factors[0]).item()

    free = learned("o-lora", tiny_weights, {"orth_weight": 0.0, "steps": 6})
    held = learned("o-lora", tiny_weights, {"orth_weight": 50.0, "steps": 6})
    assert cosine(held) < 0.8 * cosine(free)


def test_a_new_adapter_leaves_the_model_unchanged_until_it_trains(tiny_weights):
    """B starts at zero (A Gaussian from the session's seed): adding the adapter changes no image."""
    method = learned("c-lora", tiny_weights, sessions=1)
    before = method.generate(PROMPTS, SEEDS, 3, 5.0)
    from test_methods import concepts

    from lfsbench.concepts import session_view

    method._start_new_adapter(session_view(1, [concepts()[1]], "a {}", concepts()[:1]))
    assert torch.allclose(method.generate(PROMPTS, SEEDS, 3, 5.0), before, atol=1e-6)


def test_the_overlap_script_reads_orthogonal_and_shared_subspaces():
    """scripts/olora_overlap.py (docs/methods.md's evidence that the penalty acts): zero for orthogonal
    down-projections, the rows' full norm products for a repeated one, and random directions near their chance
    level."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "olora_overlap.py"
    spec = importlib.util.spec_from_file_location("olora_overlap", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    eye = torch.eye(8, dtype=torch.float64)
    orthogonal = [{"layer": eye[:4]}, {"layer": eye[4:]}]
    assert script.overlaps(orthogonal, 1)["charged"] == 0 and script.overlaps(orthogonal, 1)["cosine"] == 0
    repeated = script.overlaps([{"layer": eye[:4]}, {"layer": eye[:4]}], 1)
    assert repeated["charged"] == 4 and repeated["cosine"] == 0.25  # each row meets itself once among 4
    g = torch.Generator().manual_seed(0)
    random = [{"layer": torch.randn(64, 512, generator=g, dtype=torch.float64)} for _ in range(2)]
    reading = script.overlaps(random, 1)
    assert abs(reading["cosine"] - reading["chance"]) < 0.1 * reading["chance"]
