"""Real-data readers against the published layouts (shared/upstream beside the checkout), a miniature
CustomConcept101, fetching with local stand-ins, and real-backbone names that must fail clearly offline."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke
from PIL import Image

from lfsbench import datasets
from lfsbench.errors import LfsbenchError

UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "upstream"
needs_upstream = pytest.mark.skipif(
    not UPSTREAM.is_dir(),
    reason="the published CustomConcept101 and DreamBooth layouts (shared/upstream beside the checkout) are not here",
)


@needs_upstream
def test_cc101_metadata_reads_and_images_are_reported_missing():
    concepts = datasets.read_cc101(UPSTREAM / "customconcept101")
    assert len(concepts) == 101 and all(len(c.prompts) == 20 for c in concepts.values())
    cat = concepts["pet_cat1"]
    assert cat.class_noun == "cat" and cat.prompt_file.name == "cat.txt" and cat.prompts[0] == "Photo of a {}."
    assert cat.images == []  # the images are not in shared
    code, output = invoke("validate", "cc101", "--data", UPSTREAM / "customconcept101")
    assert code == 2
    assert "101 concepts" in output and "images" in output and "benchmark_dataset.zip" in output


@needs_upstream
def test_dreambooth_layout_reads():
    concepts = datasets.read_dreambooth(UPSTREAM / "dreambooth")
    assert len(concepts) == 30 and sum(len(c.images) for c in concepts.values()) == 158
    assert len({c.class_noun for c in concepts.values()}) == 15
    assert concepts["bear_plushie"].class_noun == "stuffed animal"
    live, obj = concepts["dog"].prompts, concepts["can"].prompts
    assert (
        len(live) == len(obj) == 25 and live != obj and "a {} wearing a red hat" in live and "a {} in the jungle" in obj
    )
    assert (
        datasets.read_dreambooth(UPSTREAM / "dreambooth" / "dataset").keys() == concepts.keys()
    )  # the dataset/ folder itself
    code, output = invoke("validate", "dreambooth", "--data", UPSTREAM / "dreambooth")
    assert code == 0, output
    assert "30 concepts, 15 classes" in output and "158 images" in output and "2 distinct prompt lists" in output
    # every subject has 4-6 images: at most 3 references in a fold, so validate says to read them over folds; the
    # 5-image subjects cycle through 5 folds, the 6-image ones through 2: all together through 10
    text = " ".join(output.split())
    assert "split: random order, fold 0; 10 of 10 concepts keep fewer than 4 held-out references" in text
    assert "read their IA over folds 0..9 (-o split.fold=F)" in text


def _split(order: str, fold: int, files: list, name: str = "dog", shots: int = 3):
    from lfsbench.protocol import load_protocol

    protocol = load_protocol("dreambooth", {"split": {"order": order, "fold": fold}, "shots": shots})
    return datasets.split_shots(protocol, name, files, "here")


def test_the_real_data_split_is_a_fixed_random_order_rotated_by_fold():
    files = [f"{i:02d}.jpg" for i in range(5)]
    shots, references = _split("file-name", 0, files)
    assert (shots, references) == (files[:3], files[3:])  # as runs before `split` existed
    shots, references = _split("random", 0, files)
    assert sorted(shots + references) == files and shots != files[:3]  # every image once; not the file-name split
    assert _split("random", 0, files) == (shots, references)  # fixed: the same for every run and machine
    assert _split("random", 0, files, name="cat") != (shots, references)  # seeded by the concept's name
    # over the folds each image trains shots x folds / n times and is held out the rest: leave-out rotation
    n_folds = datasets.folds(len(files), 3)
    assert n_folds == 5 and _split("random", n_folds, files) == (shots, references)
    held_out = [f for fold in range(n_folds) for f in _split("random", fold, files)[1]]
    assert sorted(held_out) == sorted(files * 2)
    assert datasets.folds(6, 3) == 2 and datasets.folds(4, 2) == 2


def test_a_split_is_real_data_only_and_old_real_data_runs_read_as_file_name_splits():
    from lfsbench.identity import RunIdentity, resolve_identity
    from lfsbench.protocol import load_protocol

    with pytest.raises(LfsbenchError, match="split"):
        load_protocol("toy-quick", {"split": {"fold": 1}})
    with pytest.raises(LfsbenchError, match="split"):
        load_protocol("dreambooth", {"split": {"order": "by-date"}})
    assert load_protocol("dreambooth").split.order == "random"
    config = resolve_identity("naive", "toy-quick").to_config()
    real = json.loads(json.dumps(config))
    real["protocol"]["source"] = {"kind": "dreambooth", "path": None}
    for c in (config, real):
        c["protocol"].pop("split")
    assert RunIdentity.from_config(config).protocol.split.order == "random"  # the toy source takes none
    assert RunIdentity.from_config(real).protocol.split.order == "file-name"  # how real data was split then


@needs_upstream
def test_dreambooth_through_the_hub_cache_and_the_datasets_library(tmp_path, monkeypatch):
    """hf:NAME reads a hub dataset offline: a snapshot in the original layout as a folder, a parquet table of
    (image, subject) rows through `datasets`, with classes and prompts from its prompts_and_classes.txt."""
    import datasets as hf_datasets
    import huggingface_hub

    from lfsbench.images import load_image_file

    original = datasets.read_dreambooth(UPSTREAM / "dreambooth")
    snapshot = datasets.read_dreambooth(Path(f"hf:{UPSTREAM / 'dreambooth'}"))
    assert snapshot.keys() == original.keys() and sum(len(c.images) for c in snapshot.values()) == 158

    table = tmp_path / "dreambooth-table"
    (table / "data").mkdir(parents=True)
    rows = {"image": [], "subject": []}
    for name in ("dog", "backpack"):
        rows["image"] += [str(p) for p in original[name].images]
        rows["subject"] += [name] * len(original[name].images)
    hf_datasets.Dataset.from_dict(rows).cast_column("image", hf_datasets.Image()).to_parquet(
        table / "data" / "train.parquet"
    )
    with pytest.raises(LfsbenchError, match="no prompts_and_classes.txt"):
        datasets.read_dreambooth(Path(f"hf:{table}"))
    shutil.copy(UPSTREAM / "dreambooth" / "dataset" / "prompts_and_classes.txt", table)
    concepts = datasets.read_dreambooth(Path(f"hf:{table}"))
    assert len(concepts) == 30 and concepts["cat"].images == []
    assert (
        len(concepts["dog"].images) == len(original["dog"].images)
        and concepts["dog"].prompts == original["dog"].prompts
    )
    assert (
        concepts["backpack"].class_noun == "backpack" and concepts["backpack"].prompts == original["backpack"].prompts
    )
    assert np.array_equal(
        load_image_file(concepts["dog"].images[0]).numpy(), load_image_file(original["dog"].images[0]).numpy()
    )
    shown = datasets.status("dreambooth", Path(f"hf:{table}"))
    assert (shown["concepts"], shown["with_images"], shown["images"]) == (30, 2, len(rows["image"]))
    code, output = invoke("data", "dreambooth", "--data", f"hf:{table}")
    assert code == 0, output

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(LfsbenchError, match="hf download google/dreambooth --repo-type dataset"):
        datasets.read_dreambooth(Path("hf:google/dreambooth"))


def test_malformed_dreambooth_prompts_are_a_clear_error(tmp_path):
    (tmp_path / "prompts_and_classes.txt").write_text("subject_name,class\ndog,dog\n")
    with pytest.raises(LfsbenchError, match="does not read as DreamBooth"):
        datasets.read_dreambooth(tmp_path)
    with pytest.raises(LfsbenchError, match="not a CustomConcept101 folder"):
        datasets.read_cc101(tmp_path)


def mini_cc101(root: Path, names=("pet_cat1", "pet_dog1"), nouns=("cat", "dog")) -> Path:
    """A CustomConcept101 folder in the real layout, with toy renders as its images."""
    from lfsbench.toy import world

    (root / "prompts").mkdir(parents=True)
    entries = []
    shapes = ["circle-1", "square-1"]
    for name, noun, shape in zip(names, nouns, shapes, strict=True):
        (root / "prompts" / f"{noun}.txt").write_text("Photo of a {}.\n{} in the snow.\n{} on the beach.\n")
        entries.append(
            {
                "instance_prompt": f"photo of a <new1> {noun}",
                "class_prompt": noun,
                "instance_data_dir": f"./benchmark_dataset/{name}",
                "class_data_dir": f"./regularization/{noun}",
                "prompt_filename": f"prompts/{noun}.txt",
            }
        )
        folder = root / "benchmark_dataset" / name
        folder.mkdir(parents=True)
        for i, img in enumerate(
            world.concept_renders(world.concept_by_name(shape, world.concept_catalogue()), 4, seed=0)
        ):
            Image.fromarray(np.asarray(img)).resize((64, 48)).save(folder / f"{i:02d}.jpg")
    (root / "dataset.json").write_text(json.dumps(entries, indent=4))
    # the published pair list's layout: [first entry, second entry, {prompt_filename_compose}], plus a pair with a
    # concept the protocols below do not have (left out)
    (root / "prompts" / "pet_pet.txt").write_text("photo of the {0} and {1}.\nA {0} and a {1} in the snow.\n")
    compose = {"prompt_filename_compose": "prompts/pet_pet.txt"}
    absent = {**entries[0], "instance_data_dir": "./benchmark_dataset/pet_cat9"}
    (root / "dataset_multiconcept.json").write_text(json.dumps([[*entries, compose], [entries[0], absent, compose]]))
    return root


def test_two_sessions_on_a_miniature_cc101(tiny_weights, tiny_dino, tmp_path):
    from lfsbench.identity import identity_of
    from lfsbench.protocol import load_protocol
    from lfsbench.runner import Runner
    from lfsbench.toy import load_toy_backbone, load_toy_evaluator

    root = mini_cc101(tmp_path / "cc101")
    protocol = load_protocol(
        "cc101",
        {
            "sessions": [["pet_cat1"], ["pet_dog1"]],
            "backbone": "toy",
            "evaluator": "toy",
            "dino": str(tiny_dino),  # cc101 names facebook/dino-vits16: a stand-in of its layout
            "evaluation": {"images_per_prompt": 1, "max_prompts": 2, "steps": 2, "bootstrap": 100},
        },
    )
    spec = identity_of(protocol, "naive", {"steps": 2, "batch_size": 2}, 0, str(root))
    runner = Runner(
        spec, tmp_path / "run", load_toy_backbone(weights=tiny_weights), load_toy_evaluator(weights=tiny_weights)
    )
    assert [c.prompts for c in runner.concepts] == [["Photo of a {}.", "{} in the snow."]] * 2
    # 3 of a concept's 4 images train, the 4th is held out; centre-cropped and resized to the backbone
    assert runner.concepts[0].images.shape == (3, 3, 32, 32)
    assert runner.concepts[0].references.shape == (1, 3, 32, 32)
    summary = runner.run()
    assert summary["sessions_finished"] == 2
    for metric in ("IA_dino", "IA_dino_shots", "IAD_dino"):  # the published tables' DINO column, with its IAD
        assert -1 <= summary[metric]["value"] <= 1
    scores = json.loads((tmp_path / "run" / "config.json").read_text())
    assert scores["data"]["path"] == str(root) and scores["data"]["kind"] == "cc101"
    prompts = set(__import__("pandas").read_csv(tmp_path / "run" / "scores" / "session_01.csv").prompt)
    assert "Photo of a <new1> cat." in prompts and "<new2> dog in the snow." in prompts
    # the class is asked for in its concepts' own prompts (token removed), not in the protocol's fallback prompt
    assert "Photo of a cat." in prompts and "dog in the snow." in prompts and "photo of a cat" not in prompts
    # the published pair (pet_cat1, pet_dog1) once both are learned, with its compose prompts cut to max_prompts
    import pandas as pd

    multi = pd.read_csv(tmp_path / "run" / "scores" / "session_01.csv").query("kind == 'multi'")
    asked = {"photo of the <new1> cat and <new2> dog.", "A <new1> cat and a <new2> dog in the snow."}
    assert set(multi.prompt) == asked
    assert set(multi.name) == {"pet_cat1", "pet_dog1"} and len(multi) == 2 * 2  # 2 prompts x 1 image x 2 concepts
    assert not (pd.read_csv(tmp_path / "run" / "scores" / "session_00.csv").kind == "multi").any()  # dog not learned
    for metric in ("multi_TA", "multi_IA", "multi_IA_dino"):
        assert metric in summary
    assert (tmp_path / "run" / "images" / "session_01" / "multi_pet_cat1+pet_dog1.png").is_file()


def test_folds_of_a_real_data_protocol_are_reported_together_as_settings(tiny_weights, tmp_path):
    """Runs at two folds (other shots and references of the same images) are one protocol to the report, each fold
    its own labelled setting; the folds hold out different images."""
    from lfsbench.identity import identity_of
    from lfsbench.protocol import load_protocol
    from lfsbench.report import make_report
    from lfsbench.runner import Runner
    from lfsbench.toy import load_toy_backbone, load_toy_evaluator

    root = mini_cc101(tmp_path / "cc101")
    folders, held_out = [], []
    for fold in (0, 1):
        protocol = load_protocol(
            "cc101",
            {
                "sessions": [["pet_cat1"]],
                "backbone": "toy",
                "evaluator": "toy",
                "dino": "none",
                "multi_concept": "none",
                "split": {"fold": fold},
                "evaluation": {"images_per_prompt": 1, "max_prompts": 1, "steps": 2, "bootstrap": 100},
            },
        )
        spec = identity_of(protocol, "naive", {"steps": 2, "batch_size": 2}, 0, str(root))
        folder = tmp_path / f"fold{fold}"
        runner = Runner(spec, folder, load_toy_backbone(weights=tiny_weights), load_toy_evaluator(weights=tiny_weights))
        held_out.append(runner.concepts[0].references)
        runner.run()
        folders.append(folder)
    assert not torch.equal(held_out[0], held_out[1])
    make_report(folders, tmp_path / "report")
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "split.fold=0" in summary and "split.fold=1" in summary
    pairs = tmp_path / "report" / "pairs.csv"  # no image of one fold is paired with one of another
    assert not pairs.is_file() or "split.fold" not in pairs.read_text()


def test_data_location_precedence(tmp_path, monkeypatch):
    from lfsbench.datasets import data_root
    from lfsbench.protocol import load_protocol

    protocol = load_protocol("cc101")
    assert data_root(protocol) == Path("~/.cache/lfsbench/customconcept101").expanduser()
    monkeypatch.setenv("LFSBENCH_CC101", str(tmp_path / "env"))
    assert data_root(protocol) == tmp_path / "env"
    assert data_root(protocol, tmp_path / "cli") == tmp_path / "cli"


def test_fetch_with_local_stand_ins_and_offline(tmp_path, monkeypatch):
    source = mini_cc101(tmp_path / "published")
    archive = tmp_path / "benchmark_dataset.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (source / "benchmark_dataset").rglob("*.jpg"):
            z.write(f, f.relative_to(source))
    fetched_urls = []

    def url(address, path):
        fetched_urls.append(address)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / address[len(datasets.CC101_METADATA_URL) :], path)

    def hub(repo_id, target, filename=None):
        assert (repo_id, filename) == ("nupurkmr9/custom-diffusion", "benchmark_dataset.zip")
        return archive

    status = datasets.fetch("cc101", tmp_path / "here", hub=hub, url=url)
    assert status["metadata"] and status["concepts"] == 2 and status["with_images"] == 2 and status["images"] == 8
    assert fetched_urls[0].endswith("dataset.json")
    # offline (this machine, or HF_HUB_OFFLINE): one clear message, nothing half-done claimed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LfsbenchError, match="Could not fetch dreambooth"):
        datasets.fetch("dreambooth", tmp_path / "db")


def test_real_backbone_names_fail_clearly_when_not_cached(tmp_path, monkeypatch):
    from lfsbench.models import load_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(LfsbenchError, match="hf download stable-diffusion-v1-5/stable-diffusion-v1-5"):
        load_backbone("sd-v1-5")
    with pytest.raises(LfsbenchError, match="not known"):
        load_backbone("no-such-backbone")


def test_open_clip_evaluator_never_downloads_and_says_what_to_fetch(tmp_path, monkeypatch):
    import huggingface_hub

    from lfsbench.models import load_evaluator

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.cache/clip, open_clip's own folder for URL-only weights
    with pytest.raises(
        LfsbenchError, match="hf download timm/vit_base_patch32_clip_224.openai open_clip_model.safetensors"
    ):
        load_evaluator("ViT-B-32:openai")
    with pytest.raises(LfsbenchError, match="its tags are"):
        load_evaluator("ViT-B-32:no-such-tag")
    with pytest.raises(LfsbenchError, match="does not exist"):
        load_evaluator(f"ViT-B-32:{tmp_path / 'missing.safetensors'}")


@pytest.mark.slow
def test_open_clip_evaluator_loads_openai_weights_from_the_hub_cache(tmp_path, monkeypatch):
    """ViT-B-32:openai from a Hugging Face cache laid out as `hf download` leaves it (random weights of the right
    shapes), with what open_clip applies for that tag: QuickGELU and OpenAI's normalisation."""
    import huggingface_hub
    import open_clip
    import torch
    from safetensors.torch import save_file

    from lfsbench.models import load_evaluator

    reference = open_clip.create_model("ViT-B-32", force_quick_gelu=True)
    repo = tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in reference.state_dict().items()},
        repo / "snapshots" / ("0" * 40) / "open_clip_model.safetensors",
    )
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    evaluator = load_evaluator("ViT-B-32:openai")
    assert type(evaluator.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    loaded = evaluator.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())
    assert torch.allclose(evaluator.mean.flatten(), torch.tensor(open_clip.OPENAI_DATASET_MEAN))
    emb = evaluator.encode_images(torch.rand(2, 3, 64, 64))
    assert emb.shape == (2, 512) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-4)


def test_a_diffusers_folder_loads_as_a_backbone(tiny_weights, tmp_path):
    import torch

    from lfsbench.models import load_backbone
    from lfsbench.toy import load_toy_backbone

    toy = load_toy_backbone(weights=tiny_weights)
    toy.pipeline.save_pretrained(tmp_path / "saved")
    loaded = load_backbone(str(tmp_path / "saved"))
    assert torch.allclose(
        loaded.generate(["a circle"], [0], steps=2), toy.generate(["a circle"], [0], steps=2), atol=1e-5
    )


@pytest.mark.slow
def test_random_sd_shaped_backbone_round_trips(tmp_path):
    """SD 1.5 shapes at 64 px: trains a K/V step, generates, saves with diffusers and loads back identically."""
    import torch

    from lfsbench.models import load_backbone

    bb = load_backbone("sd-random:64")
    assert sum(p.numel() for p in bb.unet.parameters()) > 800e6 and bb.resolution == 64
    image = bb.generate(["a photo of a dog"], [0], steps=2)
    assert image.shape == (1, 3, 64, 64)
    bb.pipeline.save_pretrained(tmp_path / "sd")
    again = load_backbone(str(tmp_path / "sd"))
    assert torch.allclose(again.generate(["a photo of a dog"], [0], steps=2), image, atol=1e-4)


def test_cc101_compat_runs_on_a_miniature_cc101(tiny_weights, tiny_dino, tmp_path):
    """The CustomConcept101-compatible preset end to end: 8-bit images scored, CLIPScore, IA_shots and IA_dino_shots
    (the published columns) in every session's rows."""
    import pandas as pd

    from lfsbench.identity import identity_of
    from lfsbench.protocol import load_protocol
    from lfsbench.runner import Runner
    from lfsbench.toy import load_toy_backbone, load_toy_evaluator

    root = mini_cc101(tmp_path / "cc101")
    protocol = load_protocol(
        "cc101-compat",
        {
            "sessions": [["pet_cat1"], ["pet_dog1"]],
            "backbone": "toy",
            "evaluator": "toy",
            "dino": str(tiny_dino),
            "evaluation": {"images_per_prompt": 2, "max_prompts": 2, "steps": 2, "bootstrap": 100},
        },
    )
    assert protocol.evaluation.quantize and protocol.evaluation.guidance == 6.0
    assert protocol.evaluation.eta == 1.0 and load_protocol("cc101-compat").evaluation.steps == 200  # as sample.py
    spec = identity_of(protocol, "naive", {"steps": 2, "batch_size": 2}, 0, str(root))
    backbone = load_toy_backbone(weights=tiny_weights)
    summary = Runner(spec, tmp_path / "run", backbone, load_toy_evaluator(weights=tiny_weights)).run()
    assert summary["sessions_finished"] == 2
    rows = pd.read_csv(tmp_path / "run" / "sessions" / "session_01.csv")
    right_after = rows[(rows.session == rows.learned_in) & (rows.kind == "concept")]
    assert {"CLIPScore", "IA_shots", "IA_dino_shots"} <= set(right_after.metric)
    assert 0 <= summary["CLIPScore"]["value"] <= 2.5 and -1 <= summary["IA_dino_shots"]["value"] <= 1


def test_cc101_compat_figures_are_evaluate_pys_formulas_on_the_same_embeddings(tiny_weights, tiny_dino):
    """customconcept101/evaluate.py's formulas, written out here in numpy on the models' raw features, give the same
    numbers as lfsbench's scorer and session figures: text alignment 2.5 x max(cos, 0) against the prompt without
    the modifier token, CLIP and DINO image alignment as the mean over all (generated, training image) pairs."""
    import pandas as pd

    from lfsbench.concepts import Concept
    from lfsbench.dino import DinoEncoder, load_dino
    from lfsbench.evaluation import tables
    from lfsbench.evaluation.plan import Job
    from lfsbench.evaluation.records import Kind
    from lfsbench.evaluation.scorer import Scorer
    from lfsbench.toy import load_toy_evaluator

    g = torch.Generator().manual_seed(0)
    generated = (torch.rand(6, 3, 32, 32, generator=g) * 255).round() / 255  # as read back from PNG files
    shots, references = torch.rand(3, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)
    prompts = [f"photo of a <new1> cat {w}" for w in ("in snow", "on a sofa", "at the beach")] * 2
    texts = [p.replace("<new1> ", "") for p in prompts]
    evaluator, dino = load_toy_evaluator(weights=tiny_weights), load_dino(str(tiny_dino))
    scorer = Scorer(evaluator, None, dino)
    job = Job(Kind.CONCEPT, "cat1", prompts, list(range(6)), texts, "cat")
    concept = scorer.concept(Concept("cat1", "cat", "<new1>", shots, references))
    records = scorer.score(0, job, scorer.embed(generated), concept=concept, images=generated)
    figures = tables.session_figures(pd.DataFrame(records), 0, {"cat1": 0}, 100)

    def normalise(features):  # evaluate.py: x / sqrt(sum(x ** 2, axis=1))
        features = features.detach().numpy().astype(np.float64)
        return features / np.sqrt(np.sum(features**2, axis=1, keepdims=True))

    with torch.no_grad():
        clip = evaluator.model
        image_feats = normalise(clip.encode_image(evaluator._prepare(generated)))
        shot_feats = normalise(clip.encode_image(evaluator._prepare(shots)))
        text_feats = normalise(clip.encode_text(evaluator.tokenizer(texts)))

        def dino_features(images):
            x = (DinoEncoder.prepare(images) - dino.mean) / dino.std
            return normalise(dino.model(pixel_values=x).last_hidden_state[:, 0])

        dino_image, dino_shot = dino_features(generated), dino_features(shots)
    text_alignment = np.mean(2.5 * np.clip(np.sum(image_feats * text_feats, axis=1), 0, None))  # get_clip_score
    assert figures["CLIPScore"]["value"] == pytest.approx(text_alignment, abs=1e-5)
    assert figures["IA_shots"]["value"] == pytest.approx(np.mean(image_feats @ shot_feats.T), abs=1e-5)
    assert figures["IA_dino_shots"]["value"] == pytest.approx(np.mean(dino_image @ dino_shot.T), abs=1e-5)


def test_multi_concept_prompts_on_a_miniature_dreambooth(tiny_weights, tmp_path):
    """DreamBooth publishes no pairs: the protocol's own ([dog, backpack] among them; pairs with subjects this run
    does not learn are skipped), with lfsbench's two-concept prompts, scored once both are learned."""
    import pandas as pd

    from lfsbench.identity import identity_of
    from lfsbench.protocol import load_protocol
    from lfsbench.runner import Runner
    from lfsbench.toy import load_toy_backbone, load_toy_evaluator, world

    folder = tmp_path / "dreambooth" / "dataset"
    listing = ["Classes", "", "subject_name,class", "dog,dog", "backpack,backpack", "", "Prompts", ""]
    for title in ("Object Prompts", "Live Subject Prompts"):
        listing += [title, "", "prompt_list = [", "'a {0} {1} in the jungle'.format(unique_token, class_token),", "]"]
    folder.mkdir(parents=True)
    (folder / "prompts_and_classes.txt").write_text("\n".join(listing) + "\n")
    for subject, shape in (("dog", "circle-1"), ("backpack", "square-1")):
        (folder / subject).mkdir()
        renders = world.concept_renders(world.concept_by_name(shape, world.concept_catalogue()), 4, seed=0)
        for i, img in enumerate(renders):
            Image.fromarray(np.asarray(img)).save(folder / subject / f"{i:02d}.jpg")
    protocol = load_protocol(
        "dreambooth",
        {
            "sessions": [["dog"], ["backpack"]],
            "backbone": "toy",
            "evaluator": "toy",
            "dino": "none",
            "multi_concept": {"max_prompts": 2},
            "evaluation": {"images_per_prompt": 1, "steps": 2, "bootstrap": 100},
        },
    )
    spec = identity_of(protocol, "naive", {"steps": 2, "batch_size": 2}, 0, str(tmp_path / "dreambooth"))
    runner = Runner(
        spec, tmp_path / "run", load_toy_backbone(weights=tiny_weights), load_toy_evaluator(weights=tiny_weights)
    )
    assert [p.name for p in runner.pairs] == ["dog+backpack"]
    summary = runner.run()
    multi = pd.read_csv(tmp_path / "run" / "scores" / "session_01.csv").query("kind == 'multi'")
    assert set(multi.prompt) == {
        "photo of a <new1> dog and a <new2> backpack",
        "a <new1> dog next to a <new2> backpack on a wooden table",
    }
    assert multi.ta.notna().all() and multi.ia.notna().all() and multi.ia_dino.isna().all()
    rows = pd.read_csv(tmp_path / "run" / "sessions" / "session_01.csv")
    assert set(rows[rows.metric == "multi_IA"].name) == {"dog", "backpack"}
    assert summary["multi_IA"]["value"] == pytest.approx(multi.ia.mean())
    assert "multi_IA_dino" not in summary


def test_a_hub_cache_snapshot_whose_files_link_into_blobs_is_read(tmp_path, monkeypatch):
    """A Hugging Face cache stores a snapshot's files as links into the repository's blobs/; reading them is not
    following a link out of the data (which is refused elsewhere)."""
    repo = tmp_path / "hub" / "datasets--google--dreambooth"
    snapshot = repo / "snapshots" / ("0" * 40)
    (repo / "blobs").mkdir(parents=True)
    source = UPSTREAM / "dreambooth" / "dataset"
    for i, path in enumerate([source / "prompts_and_classes.txt", *sorted((source / "dog").iterdir())]):
        blob = repo / "blobs" / f"{i:040d}"
        shutil.copy(path, blob)
        link = snapshot / "dataset" / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (len(link.relative_to(repo).parts) - 1)) / "blobs" / blob.name)
    concepts = datasets.read_dreambooth(Path(f"hf:{snapshot}"))
    assert len(concepts["dog"].images) == len(list((source / "dog").iterdir())) > 0
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(next((source / "dog").iterdir()), outside)
    (snapshot / "dataset" / "dog" / "zz.jpg").symlink_to(outside)
    with pytest.raises(LfsbenchError, match="outside the data folder"):
        datasets.read_dreambooth(snapshot)
