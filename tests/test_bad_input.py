"""Bad input gets one clear paragraph naming the file or field and the fix, exit code 2, no traceback."""

import numpy as np
import pytest
from conftest import invoke
from PIL import Image


@pytest.fixture
def concept_folder(tmp_path):
    root = tmp_path / "mydata"
    for name, colour in (("my_cat", (200, 100, 50)), ("my_mug", (20, 30, 200))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((40, 48, 3), colour, np.uint8)).save(root / name / f"{i}.png")
    (root / "concepts.yaml").write_text("my_cat: {class: cat}\nmy_mug: {class: mug, prompts: ['a {} on a table']}\n")
    return root


def test_folder_protocol_reads_a_users_folder(concept_folder):
    code, out = invoke("validate", "folder", "--data", str(concept_folder))
    assert code == 0, out
    assert "my_cat" in out and "cat" in out and "<new2>" in out and "valid" in out


def test_folder_concepts_yaml_is_applied(concept_folder):
    from lfsbench.concepts import load_concepts
    from lfsbench.protocol import load_protocol

    from lfsbench.evaluation.plan import concept_job

    protocol = load_protocol("folder", data=concept_folder)
    concepts = load_concepts(protocol, concept_folder, resolution=32)
    assert [c.class_noun for c in concepts] == ["cat", "mug"]
    job = concept_job(protocol, concepts[1])  # the evaluation plan asks for the concept's own prompts
    assert set(job.prompts) == {"a <new2> mug on a table"} and set(job.text_prompts) == {"a mug on a table"}
    assert concepts[0].images.shape == (3, 3, 32, 32)


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
        f"include: toy\nname: p\nsource: {{kind: folder, path: {concept_folder}}}\nsessions: [[my_cat], [my_dog]]\n"
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
