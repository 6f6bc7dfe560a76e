"""The toy world's attribute oracle: every attribute of an image, read back from its pixels.

The renderer knows what it drew; a generated image has no record. The oracle reads both the
same way, so that prompt compliance and copy detection (lfsbench/toy/copying.py) rest on what
an image shows:
- **background**: the median of the image's outermost pixels (world 2 keeps the object off the
  border), as the nearest colour of the world's palette;
- **coverage**: per pixel, how much of it the object covers, as the mix between the background
  and the palette colour that explains the pixel best (anti-aliased edges count in part);
- **class, centre, radius, rotation**: the silhouette template (class x rotation) that best
  overlaps the coverage once it is placed at the coverage's centroid and scaled to its area;
- **colours and split**: the palette colours of the fully covered pixels, and for two colours
  the split (vertical, horizontal, diagonal) that separates them best.

Its recovery error on renders is measured by `recovery()` and tabled in docs/toyworld.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from lfsbench.toy import world

STRIPE_SHADE = 0.35  # striped fills darken every other stripe to this share of the colour (world.render)
_GRID = 401  # resolution of the unit geometry of each template
_COARSE = 3.0  # degrees between rotation candidates; the best is then refined in 0.5-degree steps
_INTERIOR = 0.9  # coverage above which a pixel is inside the object (its colour is read)
_COLOUR_SHARE = 0.15  # a colour is read when it covers this share of the interior
_NOISE = 12.0  # RGB distance from the background below which a pixel is background (generated images are noisy)
FRAGMENT_REACH = 2.5  # px between pixel centres within which a smaller region belongs to an object
MIN_OBJECT_PIXELS = 15  # a region of fewer differing pixels is noise, not an object (the smallest object covers ~40)


def _palette() -> tuple[list[str], np.ndarray]:
    """Every object colour an image can show: named, hidden, and the dark stripe of each named colour."""
    names, rgb = [], []
    for name, value in {**world.COLOURS, **world.HIDDEN_COLOURS}.items():
        names.append(name)
        rgb.append(value)
    for name, value in world.COLOURS.items():
        names.append(f"{name}/stripe")
        rgb.append(tuple(STRIPE_SHADE * np.array(value)))
    return names, np.array(rgb, dtype=np.float32)


@cache
def _unit_geometry(cls: str, rotation: float) -> tuple[float, float, float]:
    """Area (in radius^2) and centroid offset (in radii, image axes) of a class's silhouette at a rotation."""
    axis = np.linspace(-1.4, 1.4, _GRID)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    theta = np.deg2rad(rotation)
    c, s = np.cos(theta), np.sin(theta)
    mask = world._shape_masks(c * x - s * y, s * x + c * y)[cls]
    cell = (axis[1] - axis[0]) ** 2
    area = mask.sum() * cell
    return float(area), float(x[mask].mean()), float(y[mask].mean())


def _candidates(classes=world.CLASSES, step: float = _COARSE) -> list[tuple[str, float]]:
    """(class, rotation) pairs to try: one rotation for round classes, a full symmetry period for the others."""
    out = []
    for cls in classes:
        if cls in world.ROTATING:
            half = world.SYMMETRY[cls] / 2
            out += [(cls, float(r)) for r in np.arange(-half, half, step)]
        else:
            out.append((cls, 0.0))
    return out


def _templates(cands: list[tuple[str, float]], cx: np.ndarray, cy: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Soft masks (K, N, 32, 32) of each candidate placed at each image's centroid and scaled to its area."""
    size, ss = world.IMAGE_SIZE, 2
    grid = (np.arange(size * ss) + 0.5) / ss
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    out = np.empty((len(cands), len(cx), size, size), np.float32)
    for k, (cls, rot) in enumerate(cands):
        unit, ox, oy = _unit_geometry(cls, rot)
        r = np.sqrt(np.maximum(area, 1e-6) / unit)
        x = (gx[None] - (cx - r * ox)[:, None, None]) / r[:, None, None]
        y = (gy[None] - (cy - r * oy)[:, None, None]) / r[:, None, None]
        theta = np.deg2rad(rot)
        c, s = np.cos(theta), np.sin(theta)
        mask = world._shape_masks(c * x - s * y, s * x + c * y)[cls]
        out[k] = mask.reshape(len(cx), size, ss, size, ss).mean(axis=(2, 4))
    return out


def _soft_iou(templates: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """IoU (K, N) between soft masks: sum of minima over sum of maxima."""
    inter = np.minimum(templates, coverage[None]).sum(axis=(2, 3))
    union = np.maximum(templates, coverage[None]).sum(axis=(2, 3))
    return inter / np.maximum(union, 1e-6)


@dataclass
class Reading:
    """What the oracle read from N images (arrays of length N)."""

    background: np.ndarray  # palette name
    background_error: np.ndarray  # RGB distance (0-255) between the border's median and that palette colour
    cls: np.ndarray
    cx: np.ndarray  # pixels
    cy: np.ndarray
    radius: np.ndarray
    rotation: np.ndarray  # degrees within the class's symmetry period; 0 for round classes
    fit: np.ndarray  # soft IoU of the best template: low when the image shows no clean silhouette
    colours: list[tuple[str, ...]] = field(default_factory=list)  # colours of the interior, most frequent first
    split: np.ndarray | None = None  # vertical/horizontal/diagonal for two-colour objects, "" otherwise

    def __len__(self) -> int:
        return len(self.cls)

    def pattern(self, i: int) -> tuple[str, str, str] | None:
        """The two-tone pattern of image i as (colour on the split's first side, the other, split), if any."""
        if not self.split[i]:
            return None
        return (*self.colours[i][:2], self.split[i])


def appearance(reading: Reading) -> world.Appearance:
    """The one appearance that N readings of the same object agree on most (class, and pattern or colour and fill):
    what makes a concept itself, read from its shots."""
    from collections import Counter

    cls = Counter(reading.cls).most_common(1)[0][0]
    patterns = Counter(reading.pattern(i) for i in range(len(reading)))
    pattern = patterns.most_common(1)[0][0]
    if pattern is not None:
        return world.Appearance(cls, pattern=pattern)
    firsts = Counter(c[0] for c in reading.colours if c)
    colour = firsts.most_common(1)[0][0].split("/")[0] if firsts else next(iter(world.COLOURS))
    striped = sum(any(k.endswith("/stripe") for k in c) for c in reading.colours) > len(reading) / 2
    return world.Appearance(cls, colour=colour, fill="striped" if striped else "solid")


def as_uint8_nhwc(images) -> np.ndarray:
    """uint8 NHWC from uint8 NHWC arrays or float NCHW tensors/arrays in [0, 1] (lfsbench's image format)."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def read(images, world_version: int | world.WorldSpec | None = None, chunk: int = 64) -> Reading:
    """Read every attribute of `images` (see the module's docstring) in the palette of a world version."""
    spec = world.get_world(world_version)
    pix = as_uint8_nhwc(images).astype(np.float32)
    parts = [_read_chunk(pix[i : i + chunk], spec) for i in range(0, len(pix), chunk)]
    if not parts:
        empty = np.array([], dtype=object)
        return Reading(empty, np.zeros(0), empty, *(np.zeros(0) for _ in range(5)), [], empty)
    return Reading(
        background=np.concatenate([p.background for p in parts]),
        background_error=np.concatenate([p.background_error for p in parts]),
        cls=np.concatenate([p.cls for p in parts]),
        cx=np.concatenate([p.cx for p in parts]),
        cy=np.concatenate([p.cy for p in parts]),
        radius=np.concatenate([p.radius for p in parts]),
        rotation=np.concatenate([p.rotation for p in parts]),
        fit=np.concatenate([p.fit for p in parts]),
        colours=[c for p in parts for c in p.colours],
        split=np.concatenate([p.split for p in parts]),
    )


def _read_chunk(pix: np.ndarray, spec: world.WorldSpec) -> Reading:
    n, size = len(pix), pix.shape[1]
    # --- background: the border's median, snapped to the palette
    median = _background_median(pix)  # (N, 3)
    bg_names = list(spec.backgrounds)
    bg_rgb = np.array([world.BACKGROUNDS[b] for b in bg_names], np.float32)
    bg_dist = np.linalg.norm(median[:, None] - bg_rgb[None], axis=-1)
    bg_idx = bg_dist.argmin(1)
    background = np.array(bg_names, dtype=object)[bg_idx]
    # --- coverage: each pixel as background + a * (colour - background), for the colour that explains it best
    names, rgb = _palette()
    base = median[:, None, None, None, :]  # the observed background, not the palette's: generated images drift
    direction = rgb[None, None, None] - base  # (N, 1, 1, C, 3)
    offset = pix[:, :, :, None, :] - base  # (N, H, W, 1, 3)
    a = np.clip((offset * direction).sum(-1) / np.maximum((direction**2).sum(-1), 1.0), 0.0, 1.0)
    residual = np.linalg.norm(offset - a[..., None] * direction, axis=-1)
    best = residual.argmin(-1)  # (N, H, W)
    coverage = np.take_along_axis(a, best[..., None], -1)[..., 0]
    coverage[np.linalg.norm(offset[..., 0, :], axis=-1) < _NOISE] = 0.0  # noise in the background is not object
    area = coverage.sum(axis=(1, 2))
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    weight = np.maximum(area, 1e-6)
    cx = (coverage * xs).sum(axis=(1, 2)) / weight
    cy = (coverage * ys).sum(axis=(1, 2)) / weight
    # --- silhouette: the best (class, rotation) template, then the rotation refined
    cands = _candidates()
    iou = _soft_iou(_templates(cands, cx, cy, area), coverage)  # (K, N)
    top = iou.argmax(0)
    cls = np.array([cands[k][0] for k in top], dtype=object)
    rotation = np.array([cands[k][1] for k in top])
    fit = iou[top, np.arange(n)]
    for i in np.flatnonzero(np.isin(cls, world.ROTATING)):
        fine = [(cls[i], rotation[i] + d) for d in np.arange(-_COARSE, _COARSE + 0.01, 0.5)]
        scores = _soft_iou(_templates(fine, cx[i : i + 1], cy[i : i + 1], area[i : i + 1]), coverage[i : i + 1])[:, 0]
        j = int(scores.argmax())
        half = world.SYMMETRY[cls[i]] / 2
        rotation[i] = (fine[j][1] + half) % (2 * half) - half
        fit[i] = scores[j]
    unit = np.array([_unit_geometry(c, r)[0] for c, r in zip(cls, rotation, strict=True)])
    offsets = np.array([_unit_geometry(c, r)[1:] for c, r in zip(cls, rotation, strict=True)])
    radius = np.sqrt(np.maximum(area, 1e-6) / unit)
    cx, cy = cx - radius * offsets[:, 0], cy - radius * offsets[:, 1]
    # --- colours of the interior and the split between two of them
    colours, split = [], np.full(n, "", dtype=object)
    for i in range(n):
        inside = coverage[i] >= _INTERIOR
        labels = best[i][inside]
        if labels.size == 0:
            colours.append(())
            continue
        counts = np.bincount(labels, minlength=len(names))
        order = [k for k in np.argsort(-counts) if counts[k] >= _COLOUR_SHARE * labels.size]
        read_colours = tuple(names[k] for k in order)
        if len(order) >= 2 and not any("/" in names[k] for k in order[:2]):
            first, second = order[:2]
            yy, xx = (ys[inside] - cy[i]), (xs[inside] - cx[i])
            sides = {"vertical": xx < 0, "horizontal": yy < 0, "diagonal": xx + yy < 0}
            two = np.isin(labels, (first, second))
            agree = {k: np.mean((labels[two] == first) == side[two]) for k, side in sides.items()}
            name = max(agree, key=lambda k: max(agree[k], 1 - agree[k]))
            split[i] = name
            if agree[name] < 0.5:  # `first` lies on the split's second side
                read_colours = (names[second], names[first], *read_colours[2:])
        colours.append(read_colours)
    return Reading(background, bg_dist[np.arange(n), bg_idx], cls, cx, cy, radius, rotation, fit, colours, split)


def _background_median(pix: np.ndarray) -> np.ndarray:
    """(N, 3): the median of each image's outermost pixels (the objects keep off the border)."""
    border = np.concatenate([pix[:, 0], pix[:, -1], pix[:, 1:-1, 0], pix[:, 1:-1, -1]], axis=1)
    return np.median(border, axis=1)


@dataclass
class Objects:
    """What the oracle read from N images of several objects (composition): one Reading per slot, largest object
    first, and how many objects each image shows (a slot past an image's count reads a blank image)."""

    slots: list[Reading]
    count: np.ndarray  # (N,) objects found, at most len(slots)


def read_objects(images, world_version: int | world.WorldSpec | None = None, slots: int = 2) -> Objects:
    """Read each of up to `slots` objects of every image. The pixels that differ from the background (by more than
    the single-object reader's noise floor) are split into 8-connected regions; the `slots` largest of at least
    MIN_OBJECT_PIXELS are the objects (`world.sample_pair` keeps two objects three pixels apart, which leaves a
    clean pixel between even their anti-aliased edges), and every other region within FRAGMENT_REACH px of one joins
    it (a dark stripe near the background's colour, or a generated image's noise, breaks an object up). Each object
    is then read alone, everything else painted with the background."""
    from scipy import ndimage

    spec = world.get_world(world_version)
    pix = as_uint8_nhwc(images).astype(np.float32)
    median = _background_median(pix) if len(pix) else np.zeros((0, 3), np.float32)
    foreground = np.linalg.norm(pix - median[:, None, None], axis=-1) >= _NOISE
    views = np.repeat(np.broadcast_to(median[:, None, None, None], (len(pix), 1, *pix.shape[1:])), slots, 1).copy()
    count = np.zeros(len(pix), int)
    for i in range(len(pix)):
        labels, found = ndimage.label(foreground[i], structure=np.ones((3, 3)))
        sizes = ndimage.sum(foreground[i], labels, index=np.arange(1, found + 1))
        order = np.argsort(-sizes, kind="stable") + 1
        kept = [k for k in order if sizes[k - 1] >= MIN_OBJECT_PIXELS][:slots]
        count[i] = len(kept)
        if not kept:
            continue
        # each pixel's distance to each kept object; the other regions join the nearest within reach
        reach = np.stack([ndimage.distance_transform_edt(labels != k) for k in kept])
        owner = {k: slot for slot, k in enumerate(kept)}
        for k in order:
            if k in owner:
                continue
            region = labels == k
            near = reach[:, region].min(axis=1)
            if near.min() <= FRAGMENT_REACH:
                owner[k] = int(near.argmin())
        for k, slot in owner.items():
            region = labels == k
            views[i, slot][region] = pix[i][region]
    flat = np.clip(np.rint(views), 0, 255).astype(np.uint8).reshape(-1, *pix.shape[1:])
    reading = read(flat, spec)
    per_slot = [_subset(reading, np.arange(slot, len(flat), slots)) for slot in range(slots)]
    return Objects(per_slot, count)


def _subset(reading: Reading, index: np.ndarray) -> Reading:
    """The readings of the images at `index`."""
    return Reading(
        reading.background[index],
        reading.background_error[index],
        reading.cls[index],
        reading.cx[index],
        reading.cy[index],
        reading.radius[index],
        reading.rotation[index],
        reading.fit[index],
        [reading.colours[k] for k in index],
        reading.split[index],
    )


def recovery(count: int = 500, seed: int = 0, world_version: int | None = 2) -> dict:
    """The oracle's error on fresh renders of random catalogue concepts: accuracies and error quantiles."""
    spec = world.get_world(world_version)
    rng = np.random.default_rng([seed, 77])
    catalogue = world.concept_catalogue()
    concepts = [catalogue[int(k)] for k in rng.integers(len(catalogue), size=count)]
    placements = [world.sample_placement(rng, spec, c.cls) for c in concepts]
    reading = read(world.render([c.appearance for c in concepts], placements), spec)
    truth_rot = np.array([p.rotation for p in placements])
    rot_err = []
    for c, read_rot, true_rot, read_cls in zip(concepts, reading.rotation, truth_rot, reading.cls, strict=True):
        if c.cls in world.ROTATING and read_cls == c.cls:
            period = world.SYMMETRY[c.cls]
            rot_err.append(abs((read_rot - true_rot + period / 2) % period - period / 2))
    centre = np.hypot(reading.cx - [p.cx for p in placements], reading.cy - [p.cy for p in placements])
    radius = np.abs(reading.radius - [p.radius for p in placements])

    def q(values, p):
        return float(np.quantile(values, p)) if len(values) else float("nan")

    return {
        "images": count,
        "world": spec.version,
        "background accuracy": float(np.mean(reading.background == [p.background for p in placements])),
        "class accuracy": float(np.mean(reading.cls == [c.cls for c in concepts])),
        "pattern accuracy": float(
            np.mean([reading.pattern(i) == c.appearance.pattern for i, c in enumerate(concepts)])
        ),
        "centre error median px": q(centre, 0.5),
        "centre error p99 px": q(centre, 0.99),
        "radius error median px": q(radius, 0.5),
        "radius error p99 px": q(radius, 0.99),
        "rotation error median deg": q(rot_err, 0.5),
        "rotation error p99 deg": q(rot_err, 0.99),
    }


def shows_concept(reading: Reading, i: int, concept: world.Appearance) -> bool:
    """Whether image i of `reading` shows `concept`: its class and its two-tone pattern (or colour and fill)."""
    if reading.cls[i] != concept.cls:
        return False
    if concept.twotone:
        return reading.pattern(i) == concept.pattern
    colours = reading.colours[i]
    striped = any(c.endswith("/stripe") for c in colours)
    return bool(colours) and colours[0].split("/")[0] == concept.colour and striped == (concept.fill == "striped")


def pair_recovery(count: int = 500, seed: int = 0, world_version: int | None = 2, training: bool = False) -> dict:
    """The oracle's reading of fresh two-object scenes: how often it finds two objects, both classes as drawn, each
    object's identity (shows_concept), and the background. The objects are two distinct catalogue concepts
    (two-tone, what composition scores), or with `training` two random training appearances (named colours, solid
    or striped, and two-tone)."""
    spec = world.get_world(world_version)
    rng = np.random.default_rng([seed, 78])
    if training:
        pairs = [tuple(world.sample_appearance(rng, set()) for _ in range(2)) for _ in range(count)]
    else:
        catalogue = world.concept_catalogue()
        drawn = (rng.choice(len(catalogue), 2, replace=False) for _ in range(count))
        pairs = [tuple(catalogue[int(k)].appearance for k in two) for two in drawn]
    places = [world.sample_pair(rng, spec, (a.cls, b.cls)) for a, b in pairs]
    scenes = [tuple(zip(pair, at, strict=True)) for pair, at in zip(pairs, places, strict=True)]
    objects = read_objects(world.render_scenes(scenes), spec, slots=3)
    found = [sorted(objects.slots[k].cls[i] for k in range(objects.count[i])) for i in range(count)]
    recognised = [
        any(shows_concept(objects.slots[k], i, look) for k in range(objects.count[i]))
        for i, pair in enumerate(pairs)
        for look in pair
    ]
    return {
        "scenes": count,
        "world": spec.version,
        "two objects found": float(np.mean(objects.count == 2)),
        "both classes read": float(
            np.mean([f == sorted((a.cls, b.cls)) for f, (a, b) in zip(found, pairs, strict=True)])
        ),
        "each concept recognised": float(np.mean(recognised)),
        "background accuracy": float(np.mean(objects.slots[0].background == [p[0].background for p in places])),
    }
