"""Prompt compliance and copy detection in the toy world, read by the attribute oracle (lfsbench/toy/oracle.py).

A copied shot shows the concept, so image alignment cannot punish it; what a copy cannot do is draw a view that
no shot shows, or follow a prompt the shot does not. Per generated image of a concept's prompt:

    complies        1 when the oracle reads what the prompt states: an object of the concept's class (a clean
                    silhouette: template fit at least FIT_MIN) and, where the prompt names one, the background
                    ("... on a navy background")
    nuisance_copy   1 when its nuisance tuple (background, centre, radius, rotation) matches one training shot's
                    within TOLERANCE (both read by the oracle)
    layout_copy     1 when background and centre alone match one shot's
    copy_null       the probability that a fresh render of the concept under the same prompt matches a shot:
                    what a perfect generator of new views scores (the copy rate's null)
    layout_null     the same for layout copies

The null is computed on the renderer's own parameters of NULL_DRAWS fresh placements per prompt (the oracle's
recovery error on renders, docs/toyworld.md, is far below the tolerances; a test checks that reading renders
gives the same rate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from lfsbench.toy import oracle, world

NULL_DRAWS = 20000  # fresh placements per prompt behind the null (its binomial SD at 1%: 0.0007)
FIT_MIN = 0.5  # soft IoU of the oracle's best template below which an image shows no clean object (renders: > 0.9)


@dataclass(frozen=True)
class Tolerance:
    """How close a nuisance tuple must be to a shot's to count as its copy (the background must be equal)."""

    centre: float = 1.0  # px, distance between centres
    radius: float = 0.5  # px
    rotation: float = 5.0  # degrees, within the class's symmetry period (round classes: not compared)


TOLERANCE = Tolerance()
_BACKGROUND = re.compile(r"\bon an? (\w+) background\b")


def stated_background(prompt: str) -> str | None:
    """The background a prompt asks for ("... on a navy background"), if it names one of the world's."""
    match = _BACKGROUND.search(prompt)
    return match.group(1) if match and match.group(1) in world.BACKGROUNDS else None


def _matches(
    bg: np.ndarray, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, rotation: np.ndarray, shots, cls: str, tol
):
    """(nuisance match, layout match) of each tuple against any shot; `shots` is a Reading or a dict of arrays."""
    same_bg = bg[:, None] == np.asarray(shots["background"])[None]
    near = np.hypot(cx[:, None] - shots["cx"][None], cy[:, None] - shots["cy"][None]) <= tol.centre
    layout = same_bg & near
    full = layout & (np.abs(radius[:, None] - shots["radius"][None]) <= tol.radius)
    if cls in world.ROTATING:
        period = world.SYMMETRY[cls]
        turn = np.abs((rotation[:, None] - shots["rotation"][None] + period / 2) % period - period / 2)
        full &= turn <= tol.rotation
    return full.any(1), layout.any(1)


def _as_dict(reading: oracle.Reading) -> dict[str, np.ndarray]:
    return {
        "background": reading.background,
        "cx": reading.cx,
        "cy": reading.cy,
        "radius": reading.radius,
        "rotation": reading.rotation,
    }


@dataclass
class ConceptCopying:
    """A toy concept's shots as the oracle reads them, and the copy nulls of its prompts."""

    cls: str
    world: world.WorldSpec
    shots: dict[str, np.ndarray]
    tolerance: Tolerance
    _nulls: dict
    appearance: world.Appearance | None = None  # what its shots agree on (oracle.appearance): composition reads it

    @classmethod
    def of(cls_, class_noun: str, shot_images, world_version=None, tolerance: Tolerance = TOLERANCE):
        spec = world.get_world(world_version)
        reading = oracle.read(shot_images, spec)
        return cls_(class_noun, spec, _as_dict(reading), tolerance, {}, oracle.appearance(reading))

    def null(self, prompt: str) -> tuple[float, float]:
        """(copy null, layout null) for fresh renders of the concept under `prompt` (background fixed if stated)."""
        background = stated_background(prompt)
        if background not in self._nulls:
            rng = np.random.default_rng([world.NULL_SEED, sum(map(ord, self.cls)), len(self.shots["cx"])])
            draws = [world.sample_placement(rng, self.world, self.cls, background) for _ in range(NULL_DRAWS)]
            full, layout = _matches(
                np.array([p.background for p in draws], dtype=object),
                *(np.array([getattr(p, k) for p in draws]) for k in ("cx", "cy", "radius", "rotation")),
                self.shots,
                self.cls,
                self.tolerance,
            )
            self._nulls[background] = (float(full.mean()), float(layout.mean()))
        return self._nulls[background]

    def measure(self, images, prompts: list[str]) -> dict[str, np.ndarray]:
        """Per image (with the prompt it answers, without modifier tokens): the columns of the module docstring."""
        reading = oracle.read(images, self.world)
        full, layout = _matches(
            reading.background, reading.cx, reading.cy, reading.radius, reading.rotation, self.shots, self.cls,
            self.tolerance,
        )  # fmt: skip
        wanted = [stated_background(p) for p in prompts]
        drawn = (reading.cls == self.cls) & (reading.fit >= FIT_MIN)
        pairs = zip(wanted, reading.background, drawn, strict=True)
        complies = np.array([float(d and (w is None or w == b)) for w, b, d in pairs])
        nulls = np.array([self.null(p) for p in prompts]).reshape(len(prompts), 2)
        return {
            "complies": complies,
            "nuisance_copy": full.astype(float),
            "layout_copy": layout.astype(float),
            "copy_null": nulls[:, 0],
            "layout_null": nulls[:, 1],
        }
