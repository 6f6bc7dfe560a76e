"""Composition in the toy world: does an image of a prompt that names two concepts show both, read by the oracle.

Per image of a two-concept prompt ("a <new1> circle and a <new2> square[ on a navy background]") and per concept
of the pair (one score record each, evaluation/records.py `multi`):

    complies         1 when the oracle finds exactly two objects, clean silhouettes whose classes are the two the
                     prompt names (in either place), and, where the prompt names one, the background
    recognised       1 when one of the objects it reads is this concept: its class and its two-tone pattern
    both_recognised  1 when both concepts are recognised, in two different objects

`complies` and `both_recognised` are of the image, not of a concept: they are in the first concept's record only
(NaN in the second's), so that a share over records is a share over images and its interval counts each image once.

The oracle reads a scene's objects one by one (oracle.read_objects); its reading of fresh two-object renders is
measured by oracle.pair_recovery and `lfsbench toy check`.
"""

from __future__ import annotations

import numpy as np

from lfsbench.toy import oracle, world
from lfsbench.toy.copying import FIT_MIN, stated_background


def measure(images, prompts: list[str], concepts: list[world.Appearance], world_version=None) -> list[dict]:
    """For each of the two `concepts` (in the prompt's order), the per-image columns of the module docstring."""
    spec = world.get_world(world_version)
    objects = oracle.read_objects(images, spec, slots=3)  # a third object is read, so that it can be refused
    n = len(prompts)
    asked = sorted(c.cls for c in concepts)
    shown = np.zeros((len(concepts), 3, n), bool)  # concept, slot, image
    complies = np.zeros(n)
    for i in range(n):
        slots = range(objects.count[i])
        for k, concept in enumerate(concepts):
            for slot in slots:
                shown[k, slot, i] = oracle.shows_concept(objects.slots[slot], i, concept)
        classes = sorted(objects.slots[slot].cls[i] for slot in slots)
        clean = all(objects.slots[slot].fit[i] >= FIT_MIN for slot in slots)
        wanted = stated_background(prompts[i])
        background = objects.slots[0].background[i] if objects.count[i] else None
        complies[i] = float(classes == asked and clean and (wanted is None or wanted == background))
    # both, in different objects: the first concept in one slot and the second in another
    both = np.zeros(n, bool)
    for a in range(3):
        for b in range(3):
            if a != b:
                both |= shown[0, a] & shown[1, b]
    per_image = {"complies": complies, "both_recognised": both.astype(float)}
    nan = np.full(n, np.nan)
    return [
        {"recognised": shown[k].any(axis=0).astype(float), **{c: v if k == 0 else nan for c, v in per_image.items()}}
        for k in range(len(concepts))
    ]
