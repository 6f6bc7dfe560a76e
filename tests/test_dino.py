"""IA_dino (lfsbench/dino.py): DINO ViT-S/16 loaded from a local folder or cache entry (a tiny random ViT of the same
layout stands in), CustomConcept101's preprocessing, the figures a run reports with and without a DINO model, and the
errors of a missing one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import invoke
from PIL import Image

from lfsbench.dino import DinoEncoder, load_dino
from lfsbench.errors import LfsbenchError
from lfsbench.results import RunFolder

TINY = [
    "steps=2",
    "batch_size=2",
    'sessions=[["circle-1"], ["square-1"]]',
    "evaluation.images_per_prompt=2",
    "evaluation.steps=2",
    "evaluation.bootstrap=100",
    "evaluation.untouched_classes=[]",  # (tests/test_untouched.py covers them)
]


def test_preprocessing_is_customconcept101s(tmp_path):
    """Our tensor transform matches evaluate.py's DINOImageDataset (PIL: Resize(256, bicubic), CenterCrop(224),
    ToTensor) on the same image, up to PIL's and torch's bicubic kernels."""
    from torchvision.transforms import CenterCrop, Compose, Resize, ToTensor

    rng = np.random.default_rng(0)
    pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    pixels = np.kron(pixels, np.ones((8, 8, 1), dtype=np.uint8))  # 384 x 512, smooth enough for both kernels
    image = Image.fromarray(pixels)
    theirs = Compose([Resize(256, interpolation=Image.BICUBIC), CenterCrop(224), ToTensor()])(image)
    ours = DinoEncoder.prepare(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255)[0]
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert float((ours - theirs).abs().mean()) < 0.01


def test_dino_loads_from_a_folder_and_embeds(tiny_dino):
    dino = load_dino(str(tiny_dino))
    images = torch.rand(5, 3, 32, 32)
    emb = dino.encode_images(images)
    assert emb.shape == (5, 32)
    assert torch.allclose(emb.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(dino.encode_images(images[:2], batch_size=1), emb[:2], atol=1e-5)  # batching changes nothing


def test_missing_dino_model_says_what_to_fetch(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LfsbenchError, match="hf download facebook/dino-vits16 config.json model.safetensors"):
        load_dino("facebook/dino-vits16")
    with pytest.raises(LfsbenchError, match="neither a folder nor a Hugging Face repository"):
        load_dino(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LfsbenchError, match="has no config.json"):
        load_dino(str(tmp_path / "empty"))


def test_toy_run_reports_ia_dino_only_with_a_dino_model(tmp_path, tiny_dino):
    sets = [arg for pair in TINY for arg in ("-o", pair)]
    code, out = invoke("run", "-m", "naive", *sets, "-o", f"dino={tiny_dino}", "--output", str(tmp_path / "with"))
    assert code == 0, out
    folder = RunFolder(tmp_path / "with")
    summary, scores, rows = folder.summary(), folder.scores(), folder.session_rows()
    concept_images = scores[scores.kind == "concept"]
    assert concept_images.ia_dino.notna().all() and concept_images.ia_dino_shots.notna().all()
    assert scores[scores.kind == "class"].ia_dino.isna().all()  # class images have no concept to align with
    final = concept_images[concept_images.session == 1]
    assert summary["IA_dino"]["value"] == pytest.approx(final.ia_dino.mean())
    assert summary["IA_dino_shots"]["value"] == pytest.approx(final.ia_dino_shots.mean())
    assert {"IA_dino", "IA_dino_shots", "IAD_dino"} <= set(rows.metric)
    assert "IA_dino" in out
    code, out = invoke("run", "-m", "naive", *sets, "--output", str(tmp_path / "without"))
    assert code == 0, out
    summary = RunFolder(tmp_path / "without").summary()
    assert "IA_dino" not in summary and "IAD_dino" not in summary
    assert "IA_dino is not computed" in out  # the closing table says why, not a silent gap
    # every other figure is the same with and without DINO (it only adds columns)
    same = RunFolder(tmp_path / "with").summary()
    for metric in ("TA", "IA", "IA_shots", "IAD", "copy_rate", "class_TA"):
        assert same[metric]["value"] == pytest.approx(summary[metric]["value"], abs=1e-6)
