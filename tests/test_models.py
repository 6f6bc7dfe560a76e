"""Tokenizer, modifier tokens, save/load round trips, and the resumable build."""

import json
import re

import numpy as np
import torch
from conftest import tiny_recipe

from lfsbench.toy import load_toy_backbone, load_toy_evaluator, models
from lfsbench.toy.build import build


def test_clip_tokenizer_matches_open_clip(tmp_path):
    import open_clip

    tok = models.write_clip_tokenizer(tmp_path / "tok", 24)
    reference = open_clip.tokenizer.SimpleTokenizer()
    for text in ["a red circle", "a two-tone ring on a navy background", "photo of a dog"]:
        ours = tok(text).input_ids
        assert ours == [reference.sot_token_id] + reference.encode(text) + [reference.eot_token_id]
    assert len(tok) == 49408


def test_modifier_token_added_like_custom_diffusion(tiny_weights):
    from lfsbench.training import add_modifier_token

    backbone = load_toy_backbone(weights=tiny_weights)
    n = len(backbone.tokenizer)
    class_id = backbone.tokenizer.encode("circle", add_special_tokens=False)
    token_id = add_modifier_token(backbone, "<new1>", "circle")
    assert token_id == n and len(backbone.tokenizer) == n + 1
    assert backbone.tokenizer("a <new1> circle").input_ids[2] == token_id  # one token, not split
    emb = backbone.text_encoder.get_input_embeddings().weight
    assert emb.shape[0] == n + 1
    assert torch.allclose(emb[token_id], emb[class_id].mean(0))
    assert add_modifier_token(backbone, "<new1>", "circle") == token_id  # idempotent


def test_kv_training_changes_only_kv_and_token(tiny_weights):
    from lfsbench.training import KVTrainingConfig, TrainingData, add_modifier_token, kv_state, train_kv_session

    backbone = load_toy_backbone(weights=tiny_weights)
    base_unet = {k: v.clone() for k, v in backbone.unet.state_dict().items()}
    token_id = add_modifier_token(backbone, "<new1>", "circle")
    emb_before = backbone.text_encoder.get_input_embeddings().weight.detach().clone()
    images = torch.rand(4, 3, 32, 32)
    train_kv_session(
        backbone, [TrainingData(images, ["a <new1> circle"] * 4)], [token_id], KVTrainingConfig(steps=3, batch_size=2)
    )
    emb_after = backbone.text_encoder.get_input_embeddings().weight.detach()
    changed = (emb_after != emb_before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [token_id]
    kv = kv_state(backbone)
    assert kv and all(k.endswith((".to_k", ".to_v")) for k in kv)
    assert any(
        not torch.equal(
            v, base_unet[k.replace(".processor", "").replace(".to_k", ".to_k.weight").replace(".to_v", ".to_v.weight")]
        )
        for k, v in kv.items()
    )
    for k, v in backbone.unet.state_dict().items():  # the base weights themselves are untouched
        if k in base_unet:
            assert torch.equal(v, base_unet[k]), k


def test_method_state_round_trips_through_safetensors(tiny_weights, tmp_path):
    """What the runner saves after a session restores a method that generates the same images (resume)."""
    from safetensors.torch import load_file, save_file

    from lfsbench.concepts import Concept, session_view
    from lfsbench.method import create_method

    concepts = [
        Concept("a", "square", "<new1>", torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)),
        Concept("b", "ring", "<new2>", torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)),
    ]
    method = create_method("naive", {"steps": 2, "batch_size": 2})
    method.setup(load_toy_backbone(weights=tiny_weights), seed=0)
    for t, concept in enumerate(concepts):
        method.learn(session_view(t, [concept], "a {}"))
    save_file({k: v.contiguous() for k, v in method.state_dict().items()}, tmp_path / "state.safetensors")
    prompts = ["a <new1> square", "a <new2> ring"]
    images = method.generate(prompts, [0, 1], steps=3, guidance=5.0)
    restored = create_method("naive", {"steps": 2, "batch_size": 2})
    restored.setup(load_toy_backbone(weights=tiny_weights), seed=0)
    restored.load_state_dict(load_file(tmp_path / "state.safetensors"))
    assert restored.tokens == method.tokens
    assert torch.allclose(restored.generate(prompts, [0, 1], steps=3, guidance=5.0), images, atol=1e-5)


def test_generation_depends_only_on_prompt_and_seed(tiny_weights):
    backbone = load_toy_backbone(weights=tiny_weights)
    together = backbone.generate(["a red circle", "a blue square"], [3, 4], steps=3)
    alone = backbone.generate(["a blue square"], [4], steps=3)
    assert torch.allclose(together[1:], alone, atol=1e-5)
    assert together.shape == (2, 3, 32, 32) and 0 <= together.min() and together.max() <= 1


def test_posterior_in_batches_matches_one_batch(tiny_weights):
    """Training encodes its images ENCODE_BATCH at a time (flat memory as replay's memory grows), same numbers."""
    from lfsbench.backbone import ENCODE_BATCH

    backbone = load_toy_backbone(weights=tiny_weights)
    images = torch.rand(
        ENCODE_BATCH * 2 + 5, 3, backbone.resolution, backbone.resolution, generator=torch.Generator().manual_seed(0)
    )
    seen = []
    encode = backbone.vae.encode
    backbone.vae.encode = lambda x: seen.append(len(x)) or encode(x)
    mean, std = backbone.posterior(images)
    assert seen == [ENCODE_BATCH, ENCODE_BATCH, 5]
    with torch.no_grad():
        whole = encode(images * 2 - 1).latent_dist
    assert torch.allclose(mean, whole.mean, atol=1e-5) and torch.allclose(std, whole.std, atol=1e-5)


def test_shipped_layouts_load_through_the_standard_loaders(tiny_weights):
    from diffusers import StableDiffusionPipeline

    assert (
        json.loads((tiny_weights / "backbone" / "model_index.json").read_text())["_class_name"]
        == "StableDiffusionPipeline"
    )
    from safetensors.torch import load_file

    pipe = StableDiffusionPipeline.from_pretrained(tiny_weights / "backbone", safety_checker=None)
    assert pipe.unet.config.in_channels == 8
    stored = load_file(tiny_weights / "backbone" / "unet" / "diffusion_pytorch_model.safetensors")
    assert {v.dtype for v in stored.values()} == {torch.float16}  # shipped in fp16
    evaluator = load_toy_evaluator(weights=tiny_weights)
    emb = evaluator.encode_images(torch.rand(2, 3, 32, 32))
    assert emb.shape == (2, 64) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-4)


def test_build_resumes_to_the_same_weights(tmp_path):
    """Interrupt every stage after 2 steps, resume: identical to an uninterrupted build."""
    from safetensors.torch import load_file

    recipe = tiny_recipe(steps=4)
    build(recipe, tmp_path / "a", tmp_path / "work_a")
    partial = build(recipe, tmp_path / "b", tmp_path / "work_b", max_steps=2)
    assert not (tmp_path / "b" / "backbone").exists() and "vae_psnr_db" not in partial
    build(recipe, tmp_path / "b", tmp_path / "work_b")
    for sub in (
        "backbone/unet/diffusion_pytorch_model.safetensors",
        "backbone/vae/diffusion_pytorch_model.safetensors",
        "backbone/text_encoder/model.safetensors",
        "evaluator/open_clip_model.safetensors",
    ):
        a, b = load_file(tmp_path / "a" / sub), load_file(tmp_path / "b" / sub)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (sub, k)


def test_toy_build_cli_smoke(tmp_path):
    from typer.testing import CliRunner

    from lfsbench.cli import app

    recipe = tmp_path / "recipe.json"
    recipe.write_text(tiny_recipe(steps=3).model_dump_json())
    result = CliRunner().invoke(
        app,
        ["toy", "build", "--recipe", str(recipe), "--output", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "backbone" / "unet").is_dir() and (
        tmp_path / "out" / "evaluator" / "open_clip_config.json"
    ).is_file()
    figures = json.loads((tmp_path / "out" / "build.json").read_text())
    assert np.isfinite(figures["vae_psnr_db"])
    # output that is not a terminal (a log) gets a plain line per checkpoint of each stage, with the time left
    logged = " ".join(result.output.split())
    assert re.search(r"toy build: \S+: step 3/3 finished \(\d/\d\), loss [\d.]+; elapsed \S+, about \S+ left", logged)
    bad = CliRunner().invoke(app, ["toy", "build", "--stages", "vae,nope", "--output", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "nope" in bad.output
    # the work folder resumes only its own recipe: another one is refused before any training
    other = tmp_path / "other.json"
    other.write_text(tiny_recipe(steps=4).model_dump_json())
    refused = CliRunner().invoke(
        app,
        ["toy", "build", "--recipe", str(other), "--output", str(tmp_path / "out2"), "--work", str(tmp_path / "work")],
        env={"COLUMNS": "200"},
    )
    assert refused.exit_code == 2 and "another recipe" in " ".join(refused.output.split()), refused.output
    assert not (tmp_path / "out2").exists()  # refused before anything is written
    # a recipe that cannot be built is one paragraph naming the file and the field, before anything is written
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"world": {"version": 1, "pair_objects": 10, "pair_rate": 0.25}}')
    refused = CliRunner().invoke(
        app,
        ["toy", "build", "--recipe", str(invalid), "--output", str(tmp_path / "out3"), "--work", str(tmp_path / "w3")],
        env={"COLUMNS": "200"},
    )
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "invalid.json is not valid" in said and "world 2" in said, refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "w3").exists()


def test_shipped_tokenizer_files_agree(tiny_weights):
    """vocab.json + merges.txt (for the slow tokenizer of older transformers) give the shipped tokenizer's ids."""
    from transformers import CLIPTokenizer

    from lfsbench.toy import WEIGHTS_DIR

    for folder in (tiny_weights / "backbone" / "tokenizer", WEIGHTS_DIR / "backbone" / "tokenizer"):
        from_files = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
        shipped = CLIPTokenizer.from_pretrained(folder)
        for text in ("a two-tone ring on a navy background", "a striped magenta cross"):
            assert from_files(text).input_ids == shipped(text).input_ids
