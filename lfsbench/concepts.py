"""Concepts and the dataset readers that produce them (toy world, a user's folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from lfsbench.errors import LfsbenchError
from lfsbench.images import load_image_file, to_float
from lfsbench.protocol import Protocol

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass
class Concept:
    """One personal concept: its shots, class noun and modifier token, and how it is evaluated."""

    name: str
    class_noun: str
    token: str  # the modifier token, e.g. "<new1>"
    images: torch.Tensor  # the few-shot images (also the IA references), [0, 1] NCHW
    prompts: list[str] = field(default_factory=list)  # evaluation templates, '{}' -> "<token> <class>"

    def phrase(self, with_token: bool = True) -> str:
        return f"{self.token} {self.class_noun}" if with_token else self.class_noun

    def evaluation_prompts(self, with_token: bool = True) -> list[str]:
        return [p.format(self.phrase(with_token)) for p in self.prompts]


@dataclass
class SessionView:
    """What a method may see of a session: the new concepts' shots, tokens, class nouns, training prompts.

    `earlier` names the concepts of earlier sessions (token, class noun, prompts; never their
    images): what a data-free method may condition on. A method that keeps images (replay)
    must keep them itself, and report them as stored bytes.
    """

    index: int
    concepts: list["ConceptView"]
    earlier: list["EarlierConcept"] = field(default_factory=list)


@dataclass
class ConceptView:
    token: str
    class_noun: str
    images: torch.Tensor
    training_prompt: str  # e.g. "a <new1> cat"
    class_prompt: str  # the same without the token: "a cat"


@dataclass
class EarlierConcept:
    token: str
    class_noun: str
    training_prompt: str
    class_prompt: str


def session_view(index: int, concepts: list[Concept], training_template: str, earlier: list[Concept] = ()) -> SessionView:
    """The narrow view of a session that a method receives."""
    views = [
        ConceptView(c.token, c.class_noun, c.images, training_template.format(c.phrase()), training_template.format(c.class_noun))
        for c in concepts
    ]
    names = [
        EarlierConcept(c.token, c.class_noun, training_template.format(c.phrase()), training_template.format(c.class_noun))
        for c in earlier
    ]
    return SessionView(index, views, names)


# ---------------------------------------------------------------- readers


def _toy_concepts(protocol: Protocol) -> list[tuple[str, str, torch.Tensor, list[str]]]:
    from lfsbench.toy import world

    catalogue = world.concept_catalogue()
    out = []
    for name in protocol.concepts:
        try:
            concept = world.concept_by_name(name, catalogue)
        except KeyError as err:
            raise LfsbenchError(f"Protocol {protocol.name!r}: {err.args[0]}. Fix the name under sessions:.") from None
        out.append((name, concept.cls, to_float(world.concept_renders(concept, protocol.shots, seed=0)), []))
    return out


def _folder_concepts(protocol: Protocol, root: Path) -> list[tuple[str, str, torch.Tensor, list[str]]]:
    meta = read_concepts_yaml(root)
    out = []
    for name in protocol.concepts:
        folder = root / name
        if not folder.is_dir():
            raise LfsbenchError(
                f"Concept folder {folder} does not exist. Protocol {protocol.name!r} names concept {name!r}; "
                f"put its images in {folder}/ or fix the name under sessions:."
            )
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise LfsbenchError(f"Concept folder {folder} holds no images (.jpg, .png, .webp). Add the concept's few-shot images there.")
        images = [load_image_file(p) for p in files[: protocol.shots]]
        info = meta.get(name, {})
        out.append((name, info.get("class", "object"), images, list(info.get("prompts", []))))
    return out


def read_concepts_yaml(root: Path) -> dict:
    """The optional `concepts.yaml` of a folder source: {concept: {class: noun, prompts: [...]}}."""
    path = root / "concepts.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise LfsbenchError(f"{path} is not valid YAML: {err}. Fix the syntax at the line shown.") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise LfsbenchError(f"{path} must map each concept folder to {{class: <noun>, prompts: [<template with {{}}>, ...]}}.")
    return data


DATA_ENV = {"cc101": "LFSBENCH_CC101", "dreambooth": "LFSBENCH_DREAMBOOTH", "folder": "LFSBENCH_DATA"}


def data_root(protocol: Protocol, data: Path | None = None) -> Path:
    """Where the protocol's dataset lives: --data, else the environment variable, else the protocol's source.path."""
    import os

    env = DATA_ENV.get(protocol.source.kind)
    chosen = data or (env and os.environ.get(env)) or protocol.source.path
    if not chosen:
        raise LfsbenchError(f"Protocol {protocol.name!r} needs its data: pass --data PATH or set {env}.")
    return Path(chosen).expanduser()


def _dataset_concepts(protocol: Protocol, root: Path) -> list[tuple[str, str, list, list[str]]]:
    from lfsbench.datasets import READERS

    kind = protocol.source.kind
    available = READERS[kind](root)
    out = []
    for name in protocol.concepts:
        if name not in available:
            raise LfsbenchError(f"Protocol {protocol.name!r} names {name!r}, which the {kind} data in {root} does not have. "
                                f"Its concepts include: {', '.join(list(available)[:8])}, ... (`lfsbench data` lists them).")
        concept = available[name]
        if not concept.images:
            raise LfsbenchError(
                f"No images of {name!r} in {concept.image_dir}. The {kind} metadata is there but not the images: "
                f"{IMAGES_HINT[kind]} `lfsbench data` shows what is missing."
            )
        images = [load_image_file(p) for p in concept.images[: protocol.shots]]
        out.append((name, concept.class_noun, images, concept.prompts))
    return out


IMAGES_HINT = {
    "cc101": "download benchmark_dataset.zip from the hub dataset nupurkmr9/custom-diffusion and unzip it in the "
             "CustomConcept101 folder (it creates benchmark_dataset/), or run `lfsbench data cc101 --fetch` on a connected machine.",
    "dreambooth": "copy dataset/<subject>/ from github.com/google/dreambooth, or run `lfsbench data dreambooth --fetch`.",
}


def load_concepts(protocol: Protocol, data: Path | None = None, resolution: int | None = None) -> list[Concept]:
    """Read every concept the protocol names, in session order, with tokens <new1>, <new2>, ..."""
    kind = protocol.source.kind
    if kind == "toy":
        raw = _toy_concepts(protocol)
    elif kind == "folder":
        root = data_root(protocol, data)
        if not root.is_dir():
            raise LfsbenchError(f"Data folder {root} does not exist. Pass --data PATH to the folder that holds one subfolder per concept.")
        raw = _folder_concepts(protocol, root)
    else:
        raw = _dataset_concepts(protocol, data_root(protocol, data))
    concepts = []
    for i, (name, noun, images, prompts) in enumerate(raw):
        if isinstance(images, list):
            images = torch.stack([fit_image(img, resolution) for img in images])
        elif resolution is not None and images.shape[-1] != resolution:
            images = torch.stack([fit_image(img, resolution) for img in images])
        prompts = (prompts or list(protocol.evaluation.prompts))[: protocol.evaluation.max_prompts]
        concepts.append(Concept(name, noun, f"<new{i + 1}>", images, prompts))
    return concepts


def fit_image(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """Centre-crop to a square and resize to `size` (CHW, [0, 1])."""
    if size is None:
        return image
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = image[:, top : top + s, left : left + s]
    return F.interpolate(square[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)
