"""Every source of concepts, one registered `DatasetSpec` each: the toy world, a user's folder, and the published
real datasets in their original layouts. Adding a dataset is one reader and one `register(DatasetSpec(...))`.

The published datasets' readers (CustomConcept101, DreamBooth from a folder or the hub cache) are in
lfsbench/readers.py; their layouts are described there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from lfsbench.errors import LfsbenchError, path_part_problem, strict_yaml, validation_problems
from lfsbench.prompts import PromptTemplates
from lfsbench.protocol import Protocol
from lfsbench.readers import (  # noqa: F401 (re-exported: the readers are part of this module's API)
    HF_PREFIX,
    DatasetConcept,
    image_files,
    parse_dreambooth_prompts,
    read_cc101,
    read_cc101_pairs,
    read_dreambooth,
    read_dreambooth_hub,
)

# ---------------------------------------------------------------- the toy world and a user's folder


class LoadedConcept(NamedTuple):
    """One concept as a source delivers it: its training shots and its held-out references (images no method sees).

    Images are a uint8/float tensor or a list of CHW tensors (real photos, fitted to the backbone's size later).
    `files`: where the shots and then the references were read from (files, or decoded images of a hub table), none
    for rendered concepts; `data_fingerprint` hashes them.
    """

    name: str
    class_noun: str
    shots: torch.Tensor | list[torch.Tensor]
    references: torch.Tensor | list[torch.Tensor]
    prompts: list[str]
    files: tuple = ()


MIN_REFERENCES = 4  # held-out images a real concept should have in every fold; fewer: read it over folds


def split_order(name: str, files: list, order: str) -> list:
    """A real concept's images in the order its split takes them: as given (file names), or a fixed shuffle seeded by
    the concept's name, the same on every machine and for every method."""
    if order == "file-name":
        return list(files)
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return [files[i] for i in torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()]


def folds(n_images: int, shots: int) -> int:
    """How many different splits `split.fold` gives a concept of `n_images` (fold n_images / gcd(n_images, shots) is
    fold 0 again); over them every image is held out equally often."""
    return n_images // math.gcd(n_images, shots)


def split_shots(protocol: Protocol, name: str, files: list, where: str) -> tuple[list, list]:
    """A real concept's images in `protocol.split`'s order, rotated by fold x shots: the first `shots` train, the next
    up to `references` are held out for IA. A concept left without a reference is an error naming it and the fix."""
    ordered = split_order(name, files, protocol.split.order)
    if ordered:
        turn = protocol.split.fold * protocol.shots % len(ordered)
        ordered = ordered[turn:] + ordered[:turn]
    shots, references = ordered[: protocol.shots], ordered[protocol.shots : protocol.shots + protocol.references]
    if not references:
        raise LfsbenchError(
            f"Concept {name!r} ({where}) has {len(files)} images and protocol {protocol.name!r} trains on "
            f"shots: {protocol.shots}, which leaves it no held-out reference image for IA. "
            + (
                f"Train on fewer shots (-o shots={len(files) - 1} or lower, or shots: in the protocol), or leave the "
                "concept out of the protocol."
                if len(files) > 1
                else "A concept needs at least two images (one to train on, one held out): add images or leave it "
                "out of the protocol."
            )
            + " `lfsbench validate` shows the split of every concept."
        )
    return shots, references


def _from_files(
    protocol: Protocol, name: str, class_noun: str, files: list[Path], where: str, prompts: list[str]
) -> LoadedConcept:
    """A real concept from its image files: read, and split into shots and held-out references."""
    from lfsbench.images import load_image_file

    shots, references = split_shots(protocol, name, files, where)
    return LoadedConcept(
        name,
        class_noun,
        [load_image_file(f) for f in shots],
        [load_image_file(f) for f in references],
        prompts,
        (*shots, *references),
    )


def _toy_concepts(protocol: Protocol, root: Path | None) -> list[LoadedConcept]:
    from lfsbench.images import to_float
    from lfsbench.toy import world

    catalogue = world.concept_catalogue()
    out = []
    for name in protocol.concepts:
        try:
            concept = world.concept_by_name(name, catalogue)
        except KeyError as err:
            raise LfsbenchError(f"Protocol {protocol.name!r}: {err.args[0]}. Fix the name under sessions:.") from None
        version = protocol.source.world
        shots = to_float(world.concept_renders(concept, protocol.shots, world.SHOT_SEED, version))
        references = to_float(world.concept_renders(concept, protocol.references, world.REFERENCE_SEED, version))
        out.append(LoadedConcept(name, concept.cls, shots, references, []))
    return out


class FolderConcept(BaseModel):
    """One entry of a folder source's concepts.yaml."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    class_noun: str = Field("object", alias="class", min_length=1)
    prompts: PromptTemplates = Field(default_factory=list)

    @field_validator("class_noun")
    @classmethod
    def _file_name(cls, noun: str) -> str:
        problem = path_part_problem(noun)
        if problem:
            raise ValueError(f"class {noun!r} cannot name a file ({problem})")
        return noun


def read_concepts_yaml(root: Path) -> dict[str, FolderConcept]:
    """The optional `concepts.yaml` of a folder source: {concept: {class: noun, prompts: [...]}}, validated."""
    import yaml

    path = root / "concepts.yaml"
    if not path.is_file():
        return {}
    try:
        data = strict_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise LfsbenchError(f"{path} is not valid YAML: {err}. Fix the syntax at the line shown.") from None
    try:
        return TypeAdapter(dict[str, FolderConcept]).validate_python(data)
    except ValidationError as err:
        raise LfsbenchError(
            f"{path} is not valid: {validation_problems(err)}. It maps each concept folder to "
            "{class: <noun>, prompts: [<template with {}>, ...]} (both optional)."
        ) from None


def _folder_concepts(protocol: Protocol, root: Path) -> list[LoadedConcept]:

    if not root.is_dir():
        raise LfsbenchError(
            f"Data folder {root} does not exist. Pass --data PATH to the folder that holds one subfolder per concept."
        )
    meta = read_concepts_yaml(root)
    out = []
    for name in protocol.concepts:
        folder = root / name
        if not folder.is_dir():
            raise LfsbenchError(
                f"Concept folder {folder} does not exist. Protocol {protocol.name!r} names concept {name!r}; "
                f"put its images in {folder}/ or fix the name under sessions:."
            )
        files = image_files(folder, root)
        if not files:
            raise LfsbenchError(
                f"Concept folder {folder} holds no images (.jpg, .png, .webp). Add the concept's few-shot images there."
            )
        info = meta.get(name, FolderConcept())
        out.append(_from_files(protocol, name, info.class_noun, files, str(folder), list(info.prompts)))
    return out


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class DatasetSpec:
    """Everything lfsbench knows about one source of concepts (a protocol's `source.kind`)."""

    name: str
    load: Callable[[Protocol, Path | None], list[LoadedConcept]]
    env: str | None = None  # the environment variable that names its folder
    default_root: str | None = None  # where it is looked for without --data or the variable
    source: str = ""  # where to get it (`lfsbench data`)
    images_hint: str = ""  # what to do when its images are missing
    read: Callable[[Path], dict[str, DatasetConcept]] | None = None  # published datasets: every concept by name
    fetch: Callable[[Path, Callable, Callable], None] | None = None  # fetch(root, hub, url) on a connected machine
    read_pairs: Callable[[Path], list[tuple[str, str, list[str]]]] | None = None  # published two-concept pairs

    @property
    def needs_data(self) -> bool:
        return self.name != "toy"

    @property
    def published(self) -> bool:
        """A published dataset with its own metadata (`lfsbench data` and `validate` describe it)."""
        return self.read is not None


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is registered twice")
    DATASETS[spec.name] = spec
    return spec


def dataset_spec(name: str) -> DatasetSpec:
    """The registered source a protocol's `source.kind` names (checked here, where the source is first used)."""
    if name not in DATASETS:
        raise LfsbenchError(
            f"Unknown concept source {name!r} (a protocol's source.kind): the sources are {', '.join(DATASETS)}. "
            "Fix the protocol's source: kind:."
        )
    return DATASETS[name]


def published() -> list[str]:
    """The published datasets (`lfsbench data`)."""
    return [name for name, spec in DATASETS.items() if spec.published]


def data_root(protocol: Protocol, data: Path | None = None) -> Path:
    """Where the protocol's dataset lives: --data, else the environment variable, else the protocol's source.path."""
    spec = dataset_spec(protocol.source.kind)
    chosen = data or (spec.env and os.environ.get(spec.env)) or protocol.source.path
    if not chosen:
        raise LfsbenchError(f"Protocol {protocol.name!r} needs its data: pass --data PATH or set {spec.env}.")
    return Path(chosen).expanduser()


def data_fingerprint(protocol: Protocol, data: Path | None = None) -> str:
    """SHA-256 of everything a run of `protocol` reads from its source: each concept's name, class noun and prompts,
    the bytes of each image file it trains on or holds out (the pixels of a rendered or already decoded image), and
    the published concept pairs it scores. Two runs read the same data exactly when their fingerprints are equal,
    wherever the folder is; a file edited, added or removed in between changes it."""
    from lfsbench.images import load_image_file

    spec = dataset_spec(protocol.source.kind)
    root = data_root(protocol, data) if spec.needs_data else None
    digest = hashlib.sha256()
    for concept in spec.load(protocol, root):
        digest.update(json.dumps([concept.name, concept.class_noun, list(concept.prompts)]).encode())
        if concept.files:
            for f in concept.files:
                digest.update(Path(f).read_bytes() if isinstance(f, (str, Path)) else _pixels(load_image_file(f)))
        else:
            for images in (concept.shots, concept.references):
                for image in images:
                    digest.update(_pixels(image))
    multi = protocol.multi_concept
    if multi is not None and multi.pairs == "dataset" and spec.read_pairs is not None:
        digest.update(json.dumps(spec.read_pairs(root)).encode())
    return digest.hexdigest()


def _pixels(image) -> bytes:
    return torch.as_tensor(image).contiguous().numpy().tobytes()


def where(name: str, data: Path | None = None) -> tuple[Path, str]:
    """The folder of a published dataset and where that choice came from (--data, the variable, the default)."""
    spec = dataset_spec(name)
    if data is not None:
        return Path(data), "--data"
    if spec.env and os.environ.get(spec.env):
        return Path(os.environ[spec.env]), f"${spec.env}"
    return Path(spec.default_root).expanduser(), "default"


def _published_concepts(name: str) -> Callable[[Protocol, Path | None], list[LoadedConcept]]:
    """The loader of a published dataset: the protocol's concepts from its reader, `shots` images each to train and
    the rest (up to `references`) held out (`split_shots`)."""

    def load(protocol: Protocol, root: Path | None) -> list[LoadedConcept]:

        spec = DATASETS[name]
        available = spec.read(root)
        out = []
        for concept_name in protocol.concepts:
            if concept_name not in available:
                raise LfsbenchError(
                    f"Protocol {protocol.name!r} names {concept_name!r}, which the {name} data in {root} does not "
                    f"have. Its concepts include: {', '.join(list(available)[:8])}, ... (`lfsbench data` lists them)."
                )
            concept = available[concept_name]
            if not concept.images:
                raise LfsbenchError(
                    f"No images of {concept_name!r} in {concept.image_dir}. The {name} metadata is there but not the "
                    f"images: {spec.images_hint} `lfsbench data` shows what is missing."
                )
            out.append(
                _from_files(
                    protocol, concept_name, concept.class_noun, concept.images, str(concept.image_dir), concept.prompts
                )
            )
        return out

    return load


CC101_METADATA_URL = "https://raw.githubusercontent.com/adobe-research/custom-diffusion/main/customconcept101/"


def _fetch_cc101(root: Path, hub, url):
    import zipfile

    if not (root / "dataset.json").is_file():
        url(CC101_METADATA_URL + "dataset.json", root / "dataset.json")
    if not (root / "dataset_multiconcept.json").is_file():  # the concept pairs of multi-concept scoring
        url(CC101_METADATA_URL + "dataset_multiconcept.json", root / "dataset_multiconcept.json")
    entries = json.loads((root / "dataset.json").read_text())
    pairs = json.loads((root / "dataset_multiconcept.json").read_text())
    names = {e["prompt_filename"] for e in entries} | {p[2]["prompt_filename_compose"] for p in pairs}
    for name in sorted(names):
        if not (root / name).is_file():
            url(CC101_METADATA_URL + name, root / name)
    if not any((root / "benchmark_dataset").glob("*/*")):
        archive = hub("nupurkmr9/custom-diffusion", root, "benchmark_dataset.zip")
        with zipfile.ZipFile(archive) as z:
            z.extractall(root)


def _fetch_dreambooth(root: Path, hub, url):
    hub("google/dreambooth", root)


register(DatasetSpec("toy", _toy_concepts))
register(DatasetSpec("folder", _folder_concepts, env="LFSBENCH_DATA"))
register(
    DatasetSpec(
        "cc101",
        _published_concepts("cc101"),
        env="LFSBENCH_CC101",
        default_root="~/.cache/lfsbench/customconcept101",
        source="metadata: github.com/adobe-research/custom-diffusion (folder customconcept101: "
        "dataset.json, prompts/); "
        "images: benchmark_dataset.zip in the hub dataset nupurkmr9/custom-diffusion",
        images_hint="download benchmark_dataset.zip from the hub dataset nupurkmr9/custom-diffusion and "
        "unzip it in the "
        "CustomConcept101 folder (it creates benchmark_dataset/), or run `lfsbench data cc101 --fetch` on a "
        "connected machine.",
        read=read_cc101,
        fetch=_fetch_cc101,
        read_pairs=read_cc101_pairs,
    )
)
register(
    DatasetSpec(
        "dreambooth",
        _published_concepts("dreambooth"),
        env="LFSBENCH_DREAMBOOTH",
        default_root="~/.cache/lfsbench/dreambooth",
        source="the hub dataset google/dreambooth (or github.com/google/dreambooth); already in the local Hugging Face "
        "cache: --data hf:google/dreambooth",
        images_hint="copy dataset/<subject>/ from github.com/google/dreambooth, or run `lfsbench data "
        "dreambooth --fetch`.",
        read=read_dreambooth,
        fetch=_fetch_dreambooth,
    )
)


# ---------------------------------------------------------------- status and fetching


def status(kind: str, root: Path) -> dict:
    """What of a dataset is at `root`: metadata, concepts, concepts with images, images."""
    root = Path(root).expanduser()
    try:
        concepts = dataset_spec(kind).read(root)
    except LfsbenchError as err:
        return {"root": str(root), "metadata": False, "problem": str(err), "concepts": 0, "with_images": 0, "images": 0}
    with_images = [c for c in concepts.values() if c.images]
    return {
        "root": str(root),
        "metadata": True,
        "problem": "",
        "concepts": len(concepts),
        "with_images": len(with_images),
        "images": sum(len(c.images) for c in with_images),
    }


def _hub_download(repo_id: str, target: Path, filename: str | None = None) -> Path:
    """One file (or, without filename, a whole snapshot) of a hub dataset into `target`.

    The one place lfsbench goes online (`lfsbench data --fetch`): lfsbench/__init__.py keeps the hub offline
    everywhere else, so it is switched on for this call only.
    """
    from huggingface_hub import constants, hf_hub_download, snapshot_download

    offline, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, False
    try:
        if filename:
            return Path(hf_hub_download(repo_id, filename, repo_type="dataset", local_dir=target))
        return Path(snapshot_download(repo_id, repo_type="dataset", local_dir=target))
    finally:
        constants.HF_HUB_OFFLINE = offline


def _url_download(url: str, path: Path) -> Path:
    import urllib.request

    path.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (fixed https URL)
        path.write_bytes(response.read())
    return path


def fetch(kind: str, root: Path, hub=_hub_download, url=_url_download) -> dict:
    """Fetch a published dataset into `root` on a connected machine (hub images, GitHub metadata); returns its status.

    `hub` and `url` are the two downloaders (swapped for local stand-ins in tests). Offline, the
    error says what to fetch by hand.
    """
    if str(root).startswith(HF_PREFIX):
        raise LfsbenchError(
            f"--fetch fills a folder; {root} names a hub dataset. Fetch that with: "
            f"hf download {str(root)[len(HF_PREFIX) :]} --repo-type dataset"
        )
    spec = dataset_spec(kind)
    if spec.fetch is None:
        raise LfsbenchError(f"lfsbench fetches {', '.join(published())}, not {kind!r}.")
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    try:
        spec.fetch(root, hub, url)
    except LfsbenchError:
        raise
    except Exception as err:  # network, hub and archive errors all end the same way
        raise LfsbenchError(
            f"Could not fetch {kind} into {root} ({type(err).__name__}: {err}). This needs a connection to the Hugging "
            f"Face hub and GitHub. Fetch it by hand on a connected machine ({spec.source}) and copy it to {root}, or "
            "pass --data."
        ) from None
    return status(kind, root)
