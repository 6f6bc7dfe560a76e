"""SDXL behind the Backbone interface, on a tiny random SDXL-shaped pipeline (tests/conftest.py: tiny_sdxl): both
text encoders hold the modifier tokens, the UNet gets the added-time conditioning, and K/V, LoRA and DreamBooth
methods run a session through the runner and resume from their saved state."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_methods import PROMPTS, SEEDS, concepts

from lfsbench.concepts import session_view
from lfsbench.method import create_method
from lfsbench.models import load_backbone


def test_an_sdxl_folder_loads_as_the_sdxl_backbone(tiny_sdxl):
    from lfsbench.sdxl import SDXLBackbone, SDXLContext

    bb = load_backbone(str(tiny_sdxl))
    assert isinstance(bb, SDXLBackbone) and bb.resolution == 32 and len(bb.text_encoders) == 2
    context = bb.encode_prompts(["a square", "a ring", "a photo of a square"])
    assert isinstance(context, SDXLContext) and context.embeds.shape == (3, 16, 64)  # 32 + 32 hidden, side by side
    assert (
        context.pooled.shape == (3, 32)
        and context[torch.tensor([2, 0])].time_ids.tolist() == [[32, 32, 0, 0, 32, 32]] * 2
    )
    noisy = torch.randn(3, 4, 16, 16)
    assert bb.predict_noise(noisy, torch.tensor([10, 500, 900]), context).shape == noisy.shape
    images = bb.generate(["a square"], [0], steps=2)
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()
    again = bb.generate_from_latents(["a square"], [0], bb.encode_images(images), strength=0.5, steps=2)
    assert again.shape == images.shape


def test_a_modifier_token_lives_in_both_text_encoders(tiny_sdxl):
    bb = load_backbone(str(tiny_sdxl))
    method = create_method("naive", {"steps": 2, "batch_size": 1})
    method.setup(bb, seed=0)
    method.learn(session_view(0, [concepts()[0]], "a {}", []))
    state = method.state_dict()
    assert {"token.0000.<new1>", "token_2.0000.<new1>"} <= set(state)
    (first, second) = [e.get_input_embeddings().weight for e in bb.text_encoders]
    tid = method.tokens["<new1>"]
    assert torch.equal(state["token.0000.<new1>"], first[tid]) and torch.equal(
        state["token_2.0000.<new1>"], second[tid]
    )
    # both rows were trained away from their class-noun initialisation
    square = bb.tokenizers[0].encode("square", add_special_tokens=False)
    assert not torch.allclose(first[tid], first[square].mean(0)) and not torch.allclose(
        second[tid], second[square].mean(0)
    )


SETTINGS = {
    "lora": {},
    "custom-diffusion": {"class_images": 1, "class_image_steps": 1},
    "dreambooth": {"class_images": 1, "class_image_steps": 1, "train_text_encoder": True},
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_one_session_runs_and_resumes_on_sdxl(name, tiny_sdxl, tiny_weights, tmp_path):
    """A one-session run through the runner (toy evaluator, the Stable Diffusion preset with tiny overrides), then
    the saved state restores a method that generates the same images."""
    from lfsbench.identity import identity_of
    from lfsbench.protocol import load_protocol
    from lfsbench.runner import Runner
    from lfsbench.toy import load_toy_evaluator

    protocol = load_protocol(
        "toy-quick",
        {
            "sessions": [["circle-1"]],
            "backbone": str(tiny_sdxl),
            "evaluation": {"images_per_prompt": 1, "max_prompts": 2, "steps": 2, "bootstrap": 100},
        },
    )
    settings = {"steps": 2, "batch_size": 1, **SETTINGS[name]}
    spec = identity_of(protocol, name, settings, 0, None)
    backbone = load_backbone(str(tiny_sdxl))
    summary = Runner(spec, tmp_path / "run", backbone, load_toy_evaluator(weights=tiny_weights)).run()
    assert summary["sessions_finished"] == 1 and 0 <= summary["IA"]["value"] <= 1

    method = create_method(name, settings, preset="stable-diffusion")
    method.setup(backbone, seed=0)
    trained = method  # the runner's method is gone; train one again and round-trip its state
    trained.learn(session_view(0, [concepts()[0]], "a {}", []))
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, tmp_path / "state.safetensors")
    restored = create_method(name, settings, preset="stable-diffusion")
    restored.setup(load_backbone(str(tiny_sdxl)), seed=0)
    restored.load_state_dict(load_file(tmp_path / "state.safetensors"))
    prompts, seeds = PROMPTS[:2], SEEDS[:2]
    assert torch.allclose(
        restored.generate(prompts, seeds, 2, 5.0), trained.generate(prompts, seeds, 2, 5.0), atol=1e-5
    )
