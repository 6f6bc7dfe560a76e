"""Bad input gets one clear paragraph naming the file or field and the fix, exit code 2, no traceback."""

import os

import numpy as np
import pytest
from conftest import invoke
from PIL import Image


@pytest.fixture
def concept_folder(tmp_path):
    root = tmp_path / "mydata"
    for name, colour in (("my_cat", (200, 100, 50)), ("my_mug", (20, 30, 200))):
        (root / name).mkdir(parents=True)
        for i in range(5):  # 3 shots, 2 held-out references (the folder protocol's split)
            Image.fromarray(np.full((40, 48, 3), colour, np.uint8)).save(root / name / f"{i}.png")
    (root / "concepts.yaml").write_text("my_cat: {class: cat}\nmy_mug: {class: mug, prompts: ['a {} on a table']}\n")
    return root


def test_folder_protocol_reads_a_users_folder(concept_folder):
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 0, out
    assert "my_cat" in out and "cat" in out and "<new2>" in out and "valid" in out
    assert "references (held out)" in out


def test_a_concept_left_without_held_out_references_is_named(concept_folder):
    for i in (3, 4):
        (concept_folder / "my_mug" / f"{i}.png").unlink()
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "Traceback" not in out
    assert "'my_mug'" in out and "has 3 images" in out and "no held-out reference" in out and "-o shots=2" in out
    code, out = invoke("validate", "folder", "--data", str(concept_folder), "-o", "shots=2")
    assert code == 0, out


def test_folder_concepts_yaml_is_applied(concept_folder):
    from lfsbench.concepts import load_concepts
    from lfsbench.evaluation.plan import concept_job
    from lfsbench.protocol import load_protocol

    protocol = load_protocol("folder", data=concept_folder)
    concepts = load_concepts(protocol, concept_folder, resolution=32)
    assert [c.class_noun for c in concepts] == ["cat", "mug"]
    job = concept_job(protocol, concepts[1])  # the evaluation plan asks for the concept's own prompts
    assert set(job.prompts) == {"a <new2> mug on a table"} and set(job.text_prompts) == {"a mug on a table"}
    assert concepts[0].images.shape == (3, 3, 32, 32)  # 3 of the 5 files train
    assert concepts[0].references.shape == (2, 3, 32, 32)  # the other 2 are held out


def test_missing_data_folder(tmp_path):
    code, out = invoke("validate", "folder", "--data", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere does not exist" in out and "Traceback" not in out


def test_empty_concept_folder(concept_folder):
    for f in (concept_folder / "my_mug").iterdir():
        f.unlink()
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "my_mug holds no images" in out


def test_corrupt_image_is_named(concept_folder):
    (concept_folder / "my_cat" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "1.png" in out and "Cannot read image" in out and "Traceback" not in out


def test_protocol_naming_a_missing_concept_folder(concept_folder, tmp_path):
    proto = tmp_path / "p.yaml"
    proto.write_text(
        f"include: toy\nname: p\nshots: 3\nsource: {{kind: folder, path: {concept_folder}}}\n"
        "sessions: [[my_cat], [my_dog]]\n"
    )
    code, out = invoke("validate", str(proto))
    assert code == 2 and "my_dog does not exist" in out


def test_malformed_protocol_via_cli(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("include: toy\nname: bad\nshots: zero\n")
    code, out = invoke("validate", str(bad))
    assert code == 2 and "field 'shots'" in out and str(bad) in out


def test_unknown_toy_concept(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("include: toy\nname: bad\nsessions: [[circle-1], [hexagon-1]]\n")
    code, out = invoke("validate", str(bad))
    assert code == 2 and "hexagon-1" in out


def test_unknown_method_and_setting(tmp_path):
    code, out = invoke("run", "--method", "custom-difusion", "--output", str(tmp_path / "r"))
    assert code == 2 and "Did you mean 'custom-diffusion'" in out
    assert not (tmp_path / "r").exists()  # nothing written
    code, out = invoke("run", "--method", "naive", "-o", "not_a_pair")
    assert code == 2 and "KEY=VALUE" in out


def test_unknown_ls_target():
    code, out = invoke("ls", "widgets")
    assert code == 2 and "methods" in out


def test_ls_lists_methods_with_settings():
    code, out = invoke("ls", "methods")
    assert code == 0 and "naive" in out and "custom-diffusion" in out and "prior_weight" in out


def test_unknown_method_setting_fails_before_loading_models(tmp_path):
    code, out = invoke("run", "--method", "naive", "-o", "stepz=3", "--output", str(tmp_path / "r"))
    assert code == 2 and "stepz" in out and "steps" in out
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- names and paths (docs/guarantees.md)


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/b", ".hidden", "~user"])
def test_concept_names_that_would_leave_their_folders_are_refused(tmp_path, name):
    proto = tmp_path / "p.yaml"
    proto.write_text(f"include: toy\nname: p\nsessions: [[circle-1], ['{name}']]\n")
    code, out = invoke("validate", str(proto))
    assert code == 2 and "cannot name a folder or file" in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("name", "says"),
    [("x" * 101, "101 bytes long"), ("class_circle", "'class_'"), ("control_a", "'control_'"), ("multi_x", "'multi_'")],
)
def test_concept_names_a_run_could_not_write_are_refused(tmp_path, name, says):
    """A name too long for multi_A+B.png, or one whose grid would be taken for a class's or a pair's (D10, D12)."""
    proto = tmp_path / "p.yaml"
    proto.write_text(f"include: toy\nname: p\nsessions: [[circle-1], ['{name}']]\n")
    code, out = invoke("validate", str(proto))
    assert code == 2 and "cannot name a folder or file" in out and says in out and "Traceback" not in out


def test_validate_prints_names_as_written_not_as_markup(concept_folder):
    (concept_folder / "my_cat").rename(concept_folder / "[red]cat")
    (concept_folder / "concepts.yaml").write_text("'[red]cat': {class: '[bold]pet'}\n")
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 0, out
    assert "[red]cat" in out and "[bold]pet" in out


def test_a_data_folder_never_follows_a_link_out_of_itself(concept_folder, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outside / "secret.png")
    (concept_folder / "my_cat" / "9.png").symlink_to(outside / "secret.png")
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "9.png" in out and "outside the data folder" in out and "Traceback" not in out
    (concept_folder / "my_cat" / "9.png").unlink()
    (concept_folder / "linked").symlink_to(outside, target_is_directory=True)
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "linked" in out and "outside the data folder" in out
    (concept_folder / "inner").symlink_to(concept_folder / "my_mug", target_is_directory=True)
    (concept_folder / "linked").unlink()
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 0, out  # a link that stays inside the folder is read


def test_class_noun_from_concepts_yaml_that_is_a_path_is_refused(concept_folder):
    (concept_folder / "concepts.yaml").write_text("my_cat: {class: ../../outside}\n")
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "cannot name a file" in out and "concepts.yaml" in out


def test_concepts_yaml_is_validated(concept_folder):
    (concept_folder / "concepts.yaml").write_text("my_mug: {class: mug, prompts: 'a {} on a table'}\n")
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "prompts" in out and "valid list" in out  # a string is not one prompt per character
    (concept_folder / "concepts.yaml").write_text("my_mug: {class: mug, prompts: ['a mug on a table']}\n")
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "has no '{}'" in out
    (concept_folder / "concepts.yaml").write_text("my_mug: {clas: mug}\n")
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "clas" in out


def test_cc101_entries_outside_the_dataset_folder_are_refused(tmp_path):
    import json

    root = tmp_path / "cc101"
    (root / "prompts").mkdir(parents=True)
    (root / "prompts" / "cat.txt").write_text("a {} on the beach\n")
    entry = {
        "instance_data_dir": "../../elsewhere/pet_cat1",
        "prompt_filename": "prompts/cat.txt",
        "class_prompt": "cat",
    }
    (root / "dataset.json").write_text(json.dumps([entry]))
    from lfsbench.datasets import read_cc101
    from lfsbench.errors import LfsbenchError

    with pytest.raises(LfsbenchError, match="outside the dataset folder"):
        read_cc101(root)


# ---------------------------------------------------------------- inputs that produced a number instead of an error


def test_open_clip_evaluator_without_weights_is_refused(tmp_path):
    code, out = invoke("run", "-m", "naive", "--evaluator", "ViT-B-32", "--output", str(tmp_path / "r"))
    assert code == 2 and "randomly initialised" in out and "ViT-B-32:TAG" in out


@pytest.mark.parametrize("setting", ["steps=-1", "kv_lr=-0.001", "batch_size=0", "token_init=''"])
def test_method_knobs_have_bounds(tmp_path, setting):
    code, out = invoke("run", "-m", "naive", "-o", setting, "--output", str(tmp_path / "r"))
    assert code == 2 and setting.split("=")[0] in out and "Traceback" not in out
    assert not (tmp_path / "r").exists()


def test_an_initialiser_that_tokenizes_to_nothing_is_an_error(tiny_weights):
    from lfsbench.errors import LfsbenchError
    from lfsbench.toy import load_toy_backbone
    from lfsbench.training import add_modifier_token

    with pytest.raises(LfsbenchError, match="no token at all"):
        add_modifier_token(load_toy_backbone(weights=tiny_weights), "<new1>", " ")


def test_nan_scores_are_an_error_naming_their_cause():
    import pandas as pd

    from lfsbench.evaluation.tables import non_finite

    rows = [
        {
            "session": 0,
            "kind": "concept",
            "name": "a",
            "prompt": "p",
            "seed": 0,
            "ta": 0.3,
            "ia": 0.5,
            "ia_shots": 0.5,
            "shot_distance": 0.2,
            "drift": float("nan"),
        },
        {
            "session": 0,
            "kind": "class",
            "name": "cat",
            "prompt": "p",
            "seed": 0,
            "ta": 0.3,
            "ia": float("nan"),
            "ia_shots": float("nan"),
            "shot_distance": float("nan"),
            "drift": 0.1,
        },
    ]
    assert non_finite(pd.DataFrame(rows)) is None  # NaN where a kind has no such score is fine
    rows[0]["ia"] = float("nan")
    assert "concept images (a) have a ia" in non_finite(pd.DataFrame(rows))


def test_sixteen_bit_images_keep_their_range(tmp_path):
    from lfsbench.images import load_image_file

    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    image = load_image_file(tmp_path / "grey16.png")
    assert image.shape == (3, 32, 32) and image.min() == 0 and image.max() == 1
    assert abs(float(image.mean()) - 0.5) < 0.01  # PIL's convert("RGB") made nearly all of it white


def test_overrides_that_are_not_yaml_or_conflict(tmp_path):
    code, out = invoke("run", "-m", "naive", "-o", "steps=[1", "--output", str(tmp_path / "r"))
    assert code == 2 and "not valid YAML" in out and "Traceback" not in out
    code, out = invoke("run", "-m", "naive", "-o", "evaluation=3", "-o", "evaluation.steps=2")
    assert code == 2 and "Give each field once" in out and "Traceback" not in out
    code, out = invoke("run", "-m", "naive", "-o", "steps=3", "-o", "steps=4")
    assert code == 2 and "set twice" in out


def test_a_study_with_a_bad_cell_fails_before_running_any(tmp_path, monkeypatch):
    import yaml

    from lfsbench.runner import Runner

    started = []
    monkeypatch.setattr(Runner, "run", lambda self: started.append(self))
    spec = tmp_path / "s.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "output": str(tmp_path / "o"),
                "protocol": "toy-quick",
                "cells": [{"method": "naive"}, {"method": "naive", "settings": {"stepz": 3}}],
            }
        )
    )
    code, out = invoke("study", spec)
    assert code == 2 and "run 2 of 2" in out and "stepz" in out and not started


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        ({"method": "naive", "grid": {"steps": []}}, "empty lists"),
        ({"method": "naive", "settings": {"steps": 3}, "grid": {"steps": [4, 5]}}, "both a fixed setting and a grid"),
    ],
)
def test_a_study_with_an_empty_grid_or_a_shadowed_setting_is_refused(tmp_path, cell, says):
    import yaml

    spec = tmp_path / "s.yaml"
    spec.write_text(
        yaml.safe_dump({"name": "s", "output": str(tmp_path / "o"), "protocol": "toy-quick", "cells": [cell]})
    )
    code, out = invoke("study", spec)
    assert code == 2 and says in out and "Traceback" not in out and not (tmp_path / "o").exists()


def test_a_study_whose_primary_comparisons_name_an_unpaired_metric_is_refused(tmp_path):
    import yaml

    spec = tmp_path / "s.yaml"
    primary = {"against": ["naive"], "metrics": ["IA", "train_s"]}
    cells = [{"method": "naive"}]
    spec.write_text(yaml.safe_dump({"name": "s", "output": str(tmp_path / "o"), "cells": cells, "primary": primary}))
    code, out = invoke("study", spec)
    assert code == 2 and "train_s has no paired comparison" in out and not (tmp_path / "o").exists()


def test_error_messages_are_not_read_as_markup(tmp_path):
    odd = tmp_path / "[bold]x:100:"
    code, out = invoke("validate", "folder", "--data", str(odd))
    assert code == 2 and "[bold]x:100:" in out


def _captured_runs(monkeypatch):
    """Make `lfsbench run` record its spec and folder instead of running (no model is loaded)."""
    from lfsbench.runner import Runner

    seen = []

    def init(self, spec, output, backbone=None, evaluator=None, **options):
        seen.append((spec, output))

    monkeypatch.setattr(Runner, "__init__", init)
    monkeypatch.setattr(Runner, "run", lambda self: {"sessions_finished": 1})
    return seen


def test_resume_refuses_settings_it_would_ignore(tmp_path, monkeypatch):
    import json

    from lfsbench.identity import identity_of
    from lfsbench.protocol import load_protocol

    run = tmp_path / "run"
    run.mkdir()
    spec = identity_of(load_protocol("toy-quick"), "naive", {"steps": 3})
    (run / "config.json").write_text(json.dumps(spec.to_config()))
    code, out = invoke("run", "--resume", str(run), "-o", "steps=4")
    assert code == 2 and "-o/--set would change it" in out
    code, out = invoke("run", "--resume", str(run), "-m", "lfs")
    assert code == 2 and "-m/--method" in out
    seen = _captured_runs(monkeypatch)
    code, out = invoke("run", "--resume", str(run), "-m", "naive")  # the run's own method may be named
    assert code == 0, out
    assert seen[0][0].method.overrides == {"steps": 3} and seen[0][0].protocol.name == "toy-quick"


def test_data_is_kept_only_for_protocols_that_read_data(tmp_path, concept_folder, monkeypatch):
    seen = _captured_runs(monkeypatch)
    code, out = invoke("run", "-m", "naive", "--data", str(concept_folder), "--output", str(tmp_path / "a"))
    assert code == 0, out
    assert seen[-1][0].data.path is None  # the toy protocol reads no data: a rerun without --data is the same run
    code, out = invoke("run", "-m", "naive", "--output", str(tmp_path / "a"))
    assert code == 0, out
    assert seen[-1][0] == seen[-2][0]
    monkeypatch.chdir(concept_folder.parent)  # a path relative to the working folder is kept absolute
    code, out = invoke(
        "run", "-m", "naive", "-p", "folder", "--data", concept_folder.name, "--output", str(tmp_path / "b")
    )
    assert code == 0, out
    assert seen[-1][0].data.path == str(concept_folder.resolve()) and len(seen[-1][0].data.fingerprint) == 64


def test_lfsbench_keeps_the_hub_offline(tmp_path):
    """With the offline variables unset, importing lfsbench turns them on before any hub library reads them."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    code = (
        "import lfsbench, huggingface_hub.constants as c, os;"
        "print(c.HF_HUB_OFFLINE, os.environ['HF_DATASETS_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "1", "1"]
    env["HF_HUB_OFFLINE"] = "0"  # a user's own choice is kept
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"


class _Payload:  # what a malicious checkpoint could unpickle
    pass


def test_toy_build_checkpoints_load_weights_only(tmp_path):
    import pickle

    import torch

    from lfsbench.toy.build import Checkpoint, _rng_state

    ckpt = Checkpoint(tmp_path / "stage.pt")
    ckpt.save({"step": 3, "rng": _rng_state(np.random.default_rng(0)), "model": {"w": torch.ones(2)}})
    assert ckpt.load()["step"] == 3  # what the build saves loads under weights_only
    torch.save({"step": 3, "payload": _Payload()}, tmp_path / "stage.pt")
    with pytest.raises(pickle.UnpicklingError):
        ckpt.load()


def test_a_concept_with_a_single_image_is_told_it_needs_two(concept_folder):
    for i in (1, 2, 3, 4):
        (concept_folder / "my_mug" / f"{i}.png").unlink()
    code, out = invoke("validate", "folder", "--data", str(concept_folder), "-o", "shots=1")
    assert code == 2 and "'my_mug'" in out and "at least two images" in out and "-o shots=0" not in out


def test_an_image_claiming_too_many_pixels_is_refused_with_its_name(tmp_path, monkeypatch):
    """A header claiming more pixels than Pillow decodes safely (a decompression bomb) is a clear error, not a
    traceback (Pillow's limit is lowered here so a small file stands for a 40000 x 40000 header)."""
    from PIL import Image

    from lfsbench.errors import LfsbenchError
    from lfsbench.images import load_image_file

    path = tmp_path / "bomb.png"
    Image.new("RGB", (32, 32)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(LfsbenchError, match=r"Refused image .*bomb\.png.*decompression bomb"):
        load_image_file(path)


def test_a_key_given_twice_in_a_protocol_or_concepts_yaml_is_named(concept_folder, tmp_path):
    """D3's duplicate keys, wherever lfsbench reads YAML: the second `shots:` used to replace the first silently."""
    protocol = tmp_path / "p.yaml"
    protocol.write_text("include: toy\nname: p\nshots: 2\nshots: 3\n")
    code, out = invoke("validate", protocol)
    assert code == 2 and "Traceback" not in out and "'shots' is given twice" in out and str(protocol) in out, out
    (concept_folder / "concepts.yaml").write_text("my_cat: {class: cat}\nmy_cat: {class: dog}\n")
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 2 and "'my_cat' is given twice" in out and "concepts.yaml" in out, out
