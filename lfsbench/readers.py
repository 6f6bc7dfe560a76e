"""Readers of the published real datasets in their original layouts (registered in lfsbench/datasets.py).

CustomConcept101 (Kumari et al., 2023; github.com/adobe-research/custom-diffusion, folder
`customconcept101`):

    ROOT/dataset.json          [{instance_prompt, class_prompt, instance_data_dir, class_data_dir,
                                 prompt_filename}, ...]
    ROOT/prompts/<name>.txt    one evaluation prompt per line, '{}' -> "<new1> <class>"
    ROOT/benchmark_dataset/<concept>/*.jpg   the images (benchmark_dataset.zip on the hub, unzipped here)

DreamBooth (Ruiz et al., 2023; github.com/google/dreambooth):

    ROOT/dataset/<subject>/*.jpg
    ROOT/dataset/prompts_and_classes.txt   a `subject_name,class` table, then the object and the
                                           live-subject prompt lists ('a {0} {1} in the jungle'.format(...))

ROOT may also be the `dataset/` folder itself. Live subjects (whose prompt list is the live
one) are the cats and dogs, as in the DreamBooth paper.

DreamBooth from the Hugging Face hub, offline: `hf:NAME` (e.g. `--data hf:google/dreambooth`) reads
the dataset NAME from the local Hugging Face cache (or NAME may be a local folder of such a dataset).
A snapshot in the original layout is read as above; a table dataset (parquet files, or a folder
written by `Dataset.save_to_disk`) is decoded by the `datasets` library, with the subject of each
row in a `subject` column (or a `label` class feature), and the classes and prompt lists from the
prompts_and_classes.txt among its files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lfsbench.errors import LfsbenchError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
DREAMBOOTH_LIVE_CLASSES = {"cat", "dog"}


@dataclass
class DatasetConcept:
    """One concept as a dataset describes it; `images` are files (possibly missing), or decoded PIL images
    for datasets read through the `datasets` library."""

    name: str
    class_noun: str
    image_dir: Path
    prompts: list[str]  # templates with '{}' -> "<token> <class>"
    prompt_file: Path | None = None
    images: list = field(default_factory=list)


def _inside(path: Path, root: Path) -> bool:
    """Whether `path` (symbolic links resolved) lies within `root`."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def link_root(folder: Path) -> Path:
    """The folder whose inside a data source's links may point to: a Hugging Face cache snapshot's files are links
    into its repository's blobs/ (`datasets--O--N/snapshots/REV/x -> ../../blobs/...`), so there it is the repository
    folder; elsewhere the folder itself."""
    folder = Path(folder)
    for snapshot in (folder, *folder.parents):
        if snapshot.parent.name == "snapshots" and (snapshot.parents[1] / "blobs").is_dir():
            return snapshot.parents[1]
    return folder


def image_files(folder: Path, root: Path | None = None) -> list[Path]:
    """The image files of a folder (IMAGE_SUFFIXES), in file-name order; none if it is not a folder.

    A data source is read only under its root (default: the folder): a folder or image that is a symbolic link to
    somewhere else is an error naming it, never followed."""
    if not folder.is_dir():
        return []
    root = folder if root is None else root
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in (folder, *files):
        if not _inside(path, root):
            raise LfsbenchError(
                f"{path} is a link to {path.resolve()}, outside the data folder {Path(root).resolve()}; lfsbench "
                "reads a data source only under its folder. Copy the images into the folder instead of linking them."
            )
    return files


# ---------------------------------------------------------------- CustomConcept101


def read_cc101(root: Path) -> dict[str, DatasetConcept]:
    """Every concept of CustomConcept101 by its folder name (e.g. `pet_cat1`), in dataset.json order."""
    root = Path(root)
    index = root / "dataset.json"
    if not index.is_file():
        raise LfsbenchError(
            f"{index} does not exist: {root} is not a CustomConcept101 folder. It needs dataset.json and prompts/ from "
            "github.com/adobe-research/custom-diffusion (folder customconcept101) and the images of "
            "benchmark_dataset.zip "
            "(hub dataset nupurkmr9/custom-diffusion) unzipped beside them. `lfsbench data` shows what is where."
        )
    try:
        entries = json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise LfsbenchError(
            f"{index} is not valid JSON ({err}); fetch it again from the custom-diffusion repository."
        ) from None
    concepts = {}
    for i, entry in enumerate(entries):
        try:
            image_dir = root / entry["instance_data_dir"]
            prompt_file = root / entry["prompt_filename"]
            noun = entry["class_prompt"]
        except (KeyError, TypeError):
            raise LfsbenchError(
                f"{index}: entry {i} lacks instance_data_dir, prompt_filename or class_prompt."
            ) from None
        for path in (image_dir, prompt_file):
            if not _inside(path, root):
                raise LfsbenchError(
                    f"{index}: entry {i} names {path}, which lies outside the dataset folder {root}; lfsbench reads "
                    "a dataset only under its folder. Fix the entry (paths are relative, within the folder)."
                )
        if not prompt_file.is_file():
            raise LfsbenchError(
                f"{prompt_file} (named by entry {i} of {index}) does not exist; the prompts/ folder is incomplete."
            )
        prompts = [line.strip() for line in prompt_file.read_text().splitlines() if line.strip()]
        bad = [p for p in prompts if "{}" not in p]
        if bad:
            raise LfsbenchError(f"{prompt_file}: prompt {bad[0]!r} has no '{{}}' placeholder for the concept.")
        concepts[image_dir.name] = DatasetConcept(
            image_dir.name, noun, image_dir, prompts, prompt_file, image_files(image_dir, link_root(root))
        )
    return concepts


def read_cc101_pairs(root: Path) -> list[tuple[str, str, list[str]]]:
    """CustomConcept101's published concept pairs (dataset_multiconcept.json): (first, second, templates), the
    templates from each pair's prompt_filename_compose with '{0}' and '{1}' for the two concepts."""
    root = Path(root)
    index = root / "dataset_multiconcept.json"
    if not index.is_file():
        raise LfsbenchError(
            f"{index} does not exist: the protocol scores CustomConcept101's concept pairs (multi_concept: pairs: "
            "dataset), which it lists. Copy it from github.com/adobe-research/custom-diffusion (folder "
            "customconcept101) beside dataset.json, or run with -o multi_concept=none."
        )
    try:
        entries = json.loads(index.read_text())
        pairs = []
        for first, second, compose in entries:
            names = [Path(entry["instance_data_dir"]).name for entry in (first, second)]
            pairs.append((names, root / compose["prompt_filename_compose"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise LfsbenchError(
            f"{index} does not read as CustomConcept101's pair list (a list of [first, second, "
            f"{{prompt_filename_compose}}] entries): {type(err).__name__}: {err}. Fetch it again."
        ) from None
    out, templates = [], {}
    for (first, second), prompt_file in pairs:
        if prompt_file not in templates:
            if not _inside(prompt_file, root) or not prompt_file.is_file():
                raise LfsbenchError(
                    f"{prompt_file} (named by {index}) does not exist in the dataset folder; the prompts/ folder is "
                    "incomplete."
                )
            lines = [line.strip() for line in prompt_file.read_text().splitlines() if line.strip()]
            bad = [t for t in lines if "{0}" not in t or "{1}" not in t]
            if bad or not lines:
                raise LfsbenchError(f"{prompt_file}: prompt {(bad or [''])[0]!r} lacks '{{0}}' or '{{1}}'.")
            templates[prompt_file] = lines
        out.append((first, second, templates[prompt_file]))
    return out


# ---------------------------------------------------------------- DreamBooth


def _dreambooth_dataset_dir(root: Path) -> Path:
    root = Path(root)
    for candidate in (root / "dataset", root):
        if (candidate / "prompts_and_classes.txt").is_file():
            return candidate
    raise LfsbenchError(
        f"{root} is not a DreamBooth folder: neither {root / 'dataset' / 'prompts_and_classes.txt'} nor "
        f"{root / 'prompts_and_classes.txt'} exists. Clone github.com/google/dreambooth and pass its folder "
        "(the one holding dataset/). `lfsbench data` shows what is where."
    )


def parse_dreambooth_prompts(text: str, source: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """prompts_and_classes.txt -> ({subject: class}, object templates, live-subject templates)."""
    classes = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s*([A-Za-z0-9_]+)\s*,\s*([^,]+?)\s*", line)
        if m and m.group(1) != "subject_name":
            classes[m.group(1)] = m.group(2)
    lists = []
    for block in re.split(r"prompt_list\s*=\s*\[", text)[1:]:
        body = block.split("]", 1)[0]
        templates = re.findall(r"'([^']*)'\s*\.format\(\s*unique_token\s*,\s*class_token\s*\)", body)
        lists.append([t.replace("{0} {1}", "{}") for t in templates])
    if not classes or len(lists) != 2 or not all(lists) or any("{}" not in t for lst in lists for t in lst):
        raise LfsbenchError(
            f"{source} does not read as DreamBooth's prompts_and_classes.txt (a subject_name,class table and two "
            "prompt_list = [...] blocks of 'a {0} {1} ...'.format(unique_token, class_token)). Fetch it "
            "again from google/dreambooth."
        )
    return classes, lists[0], lists[1]


def read_dreambooth(root: Path) -> dict[str, DatasetConcept]:
    """Every DreamBooth subject by name, with the object or live-subject prompt list its class calls for."""
    if str(root).startswith(HF_PREFIX):
        return read_dreambooth_hub(str(root)[len(HF_PREFIX) :])
    folder = _dreambooth_dataset_dir(root)
    listing = folder / "prompts_and_classes.txt"
    return _dreambooth_concepts(listing, folder, lambda subject: image_files(folder / subject, link_root(folder)))


def _dreambooth_concepts(listing: Path, folder: Path, images_of) -> dict[str, DatasetConcept]:
    classes, object_prompts, live_prompts = parse_dreambooth_prompts(listing.read_text(), listing)
    concepts = {}
    for subject, noun in classes.items():
        prompts = live_prompts if noun in DREAMBOOTH_LIVE_CLASSES else object_prompts
        concepts[subject] = DatasetConcept(subject, noun, folder / subject, list(prompts), listing, images_of(subject))
    return concepts


# ---------------------------------------------------------------- DreamBooth from the hub cache (`hf:NAME`)

HF_PREFIX = "hf:"


def hub_dataset_folder(name: str) -> Path:
    """NAME itself if it is a folder, else the hub dataset's snapshot in the local Hugging Face cache (never
    downloads)."""
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, repo_type="dataset", local_files_only=True))
    except Exception as err:  # not cached, bad name, no cache folder: all mean "fetch it first"
        raise LfsbenchError(
            f"The hub dataset {name!r} is not in the local Hugging Face cache ({type(err).__name__}) and "
            f"lfsbench never "
            f"downloads. On a connected machine run: hf download {name} --repo-type dataset (older huggingface_hub: "
            "huggingface-cli download ...), then copy the cache (~/.cache/huggingface/hub, or $HF_HOME/hub) "
            "here; or pass "
            "--data with a DreamBooth folder instead of hf:NAME."
        ) from None


def _table_dataset(folder: Path):
    """The `datasets` table stored in a hub snapshot: its parquet files, or a save_to_disk folder."""
    import datasets as hf_datasets

    parquet = sorted(str(p) for p in folder.rglob("*.parquet"))
    if parquet:
        return hf_datasets.load_dataset("parquet", data_files=parquet, split="train")
    saved = sorted(p.parent for p in folder.rglob("dataset_info.json") if list(p.parent.glob("*.arrow")))
    if saved:
        return hf_datasets.load_from_disk(str(saved[0]))
    raise LfsbenchError(
        f"{folder} holds neither the original DreamBooth layout (dataset/<subject>/ and prompts_and_classes.txt) nor a "
        "table of images (parquet files, or a folder written by Dataset.save_to_disk). Pass hf:google/dreambooth or a "
        "DreamBooth folder."
    )


def read_dreambooth_hub(name: str) -> dict[str, DatasetConcept]:
    """DreamBooth from a hub dataset in the local cache (or a local copy of one); see the module docstring."""
    folder = hub_dataset_folder(name)
    try:
        concepts = read_dreambooth(folder)
        if any(c.images for c in concepts.values()):
            return concepts  # a snapshot in the original layout (google/dreambooth)
    except LfsbenchError:
        pass
    table = _table_dataset(folder)
    listing = next(iter(sorted(folder.rglob("prompts_and_classes.txt"))), None)
    if listing is None:
        raise LfsbenchError(
            f"The DreamBooth table in {folder} has no prompts_and_classes.txt beside it, so its subjects "
            f"have no class or "
            "prompts. Use hf:google/dreambooth (it has one), or copy that file from github.com/google/dreambooth "
            "(dataset/prompts_and_classes.txt) into a local copy of the dataset and pass hf:<that folder>."
        )
    if "image" not in table.column_names:
        raise LfsbenchError(
            f"The DreamBooth table in {folder} has no `image` column (columns: {', '.join(table.column_names)})."
        )
    if "subject" in table.column_names:
        subjects = table["subject"]
    elif "label" in table.column_names and hasattr(table.features["label"], "int2str"):
        subjects = [table.features["label"].int2str(i) for i in table["label"]]
    else:
        raise LfsbenchError(
            f"The DreamBooth table in {folder} names no subject per image: it needs a `subject` column or a "
            f"`label` class "
            f"feature (columns: {', '.join(table.column_names)})."
        )
    by_subject: dict[str, list] = {}
    for subject, image in zip(subjects, table["image"], strict=True):
        by_subject.setdefault(subject, []).append(image)
    return _dreambooth_concepts(listing, folder, lambda subject: by_subject.get(subject, []))
