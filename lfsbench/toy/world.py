"""The procedural toy world: shapes, captions, concepts, and a vectorised renderer.

Everything is deterministic given a seed. The world is deliberately simple (five
bold silhouettes, plain backgrounds) because a tiny diffusion model trained on two
CPU cores must learn to draw it; see docs/toyworld.md.

Two versions exist (`WORLDS`). Version 1 keeps every render near the middle (2 px of
jitter, radius 10-12, 3 backgrounds), so a copied shot and a new view are nearly the
same image. Version 2 spreads the nuisance (position wherever the object fits, radius
7.5-11, rotation up to 30 degrees for the shapes that have one, 8 backgrounds) so that a
new view almost never reproduces a shot, which is what lets copying be measured
(lfsbench/toy/oracle.py reads every nuisance factor back from the pixels).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32
SUPERSAMPLE = 2  # render at 2x and box-filter down, for anti-aliased edges

CLASSES = ("circle", "square", "triangle", "cross", "ring")
# Colours that captions can name.
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 175, 60),
    "blue": (45, 90, 235),
    "yellow": (235, 215, 40),
    "white": (240, 240, 240),
    "magenta": (205, 50, 200),
}
# Colours that no caption ever names: concepts are two-tone shapes in these.
HIDDEN_COLOURS = {
    "orange": (250, 135, 15),
    "pink": (250, 165, 195),
    "teal": (0, 135, 125),
    "brown": (125, 75, 30),
    "lime": (175, 245, 85),
    "lavender": (165, 145, 250),
}
# Every background of every world version, in one order (attribute codes index it); a world uses a prefix.
BACKGROUNDS = {
    "black": (15, 15, 15),
    "gray": (115, 115, 115),
    "navy": (20, 25, 75),
    "maroon": (95, 15, 30),
    "forest": (20, 75, 35),
    "plum": (75, 30, 90),
    "slate": (55, 70, 90),
    "khaki": (150, 140, 95),
}
FILLS = ("solid", "striped")
SPLITS = ("vertical", "horizontal", "diagonal")  # how a two-tone shape is divided

# Attribute slots of a caption / image, in the order used by attribute codes.
ATTRIBUTES = ("class", "colour", "fill", "background", "twotone")
ROTATING = ("square", "triangle", "cross")  # classes with an orientation (circle and ring look the same turned)
SYMMETRY = {"square": 90.0, "cross": 90.0, "triangle": 120.0}  # degrees after which a ROTATING class looks the same
# How far a class reaches from its centre, in radii, at any rotation (a square's corner: 0.82 * sqrt 2).
EXTENT = {"circle": 1.0, "ring": 1.0, "square": 1.16, "cross": 1.06, "triangle": 1.22}


@dataclass(frozen=True)
class WorldSpec:
    """What varies between the world versions: the nuisance of a render."""

    version: int
    backgrounds: tuple[str, ...]
    radius: tuple[float, float]  # pixels
    jitter: float | None  # centre within +-jitter px of the middle; None: anywhere the object fits
    rotation: float  # largest |rotation| in degrees, for the ROTATING classes
    margin: float = 1.0  # px kept free between the object and the edge (jitter None): the border is background
    # whether runs on it get the oracle's compliance and copy figures (lfsbench/toy/copying.py): world 1's nuisance
    # is too narrow for a copy null under 1% (circle-1's fresh renders match a shot 11% of the time, 24% under a
    # prompt that names a background)
    oracle_figures: bool = False
    # scenes of two objects (composition, `sample_pair`): each object's radius range, and the free pixels kept
    # between the two objects' reaches so that the oracle can tell them apart; None: the world has no such scenes
    pair_radius: tuple[float, float] | None = None
    pair_gap: float = 3.0

    def describe(self) -> str:
        where = f"centre within {self.jitter:g} px of the middle" if self.jitter is not None else "anywhere it fits"
        turn = f", rotation up to {self.rotation:g} degrees" if self.rotation else ""
        pairs = ""
        if self.pair_radius is not None:
            pairs = f"; two-object scenes at radius {self.pair_radius[0]:g}-{self.pair_radius[1]:g} px"
        return (
            f"world {self.version}: {len(self.backgrounds)} backgrounds, radius {self.radius[0]:g}-{self.radius[1]:g} "
            f"px, {where}{turn}{pairs}"
        )


WORLDS = {
    1: WorldSpec(1, ("black", "gray", "navy"), (10.0, 12.0), 2.0, 0.0),
    2: WorldSpec(2, tuple(BACKGROUNDS), (7.5, 11.0), None, 30.0, oracle_figures=True, pair_radius=(5.0, 7.0)),
}
DEFAULT_WORLD = 1  # the world the shipped weights in lfsbench/toy/weights were built on


def get_world(version: int | WorldSpec | None = None) -> WorldSpec:
    """The spec of a world version (None: the default); a clear error names the versions that exist."""
    if isinstance(version, WorldSpec):
        return version
    version = DEFAULT_WORLD if version is None else version
    if version not in WORLDS:
        raise KeyError(f"no toy world version {version!r}; the versions are {', '.join(map(str, WORLDS))}")
    return WORLDS[version]


@dataclass(frozen=True)
class Appearance:
    """What makes an object itself: class plus either a named colour and fill or a two-tone pattern."""

    cls: str
    colour: str | None = None  # a named colour (None for two-tone)
    fill: str = "solid"
    pattern: tuple[str, str, str] | None = None  # (hidden colour A, hidden colour B, split)

    @property
    def twotone(self) -> bool:
        return self.pattern is not None


@dataclass(frozen=True)
class Placement:
    """Nuisance factors of one render."""

    background: str
    cx: float  # centre, in pixels of the final image
    cy: float
    radius: float
    rotation: float = 0.0  # degrees, counter-clockwise on screen; 0 for classes without an orientation


@dataclass(frozen=True)
class ToyConcept:
    """A personal concept of the toy world: one two-tone instance of a class."""

    name: str
    appearance: Appearance

    @property
    def cls(self) -> str:
        return self.appearance.cls


def attribute_codes(appearance: Appearance, background: str) -> np.ndarray:
    """Integer codes of an image's attributes, in ATTRIBUTES order (-1 for 'not applicable')."""
    colour = -1 if appearance.colour is None else list(COLOURS).index(appearance.colour)
    fill = -1 if appearance.twotone else FILLS.index(appearance.fill)
    return np.array(
        [CLASSES.index(appearance.cls), colour, fill, list(BACKGROUNDS).index(background), int(appearance.twotone)]
    )


# ---------------------------------------------------------------- concepts


def concept_catalogue(count: int = 60, seed: int = 1234) -> list[ToyConcept]:
    """The reserved concepts, in a fixed order: protocols refer to them by name.

    They are spread round-robin over the classes, so that classes repeat across
    sessions. No pattern of the catalogue (up to the order of its two colours) ever
    appears in the backbone's or the evaluator's training data.
    """
    rng = np.random.default_rng(seed)
    hidden = list(HIDDEN_COLOURS)
    seen: set[tuple] = set()
    concepts: list[ToyConcept] = []
    per_class = {c: 0 for c in CLASSES}
    while len(concepts) < count:
        cls = CLASSES[len(concepts) % len(CLASSES)]
        a, b = rng.choice(len(hidden), size=2, replace=False)
        split = SPLITS[int(rng.integers(len(SPLITS)))]
        key = (cls, frozenset((hidden[a], hidden[b])), split)
        if key in seen:
            continue
        seen.add(key)
        per_class[cls] += 1
        name = f"{cls}-{per_class[cls]}"
        concepts.append(ToyConcept(name, Appearance(cls, pattern=(hidden[a], hidden[b], split))))
    return concepts


def reserved_patterns(catalogue: list[ToyConcept]) -> set[tuple]:
    """Keys (class, colour pair, split) that training data must never show."""
    return {(c.cls, frozenset(c.appearance.pattern[:2]), c.appearance.pattern[2]) for c in catalogue}


def concept_by_name(name: str, catalogue: list[ToyConcept] | None = None) -> ToyConcept:
    """Look a concept up by name; a clear error lists the valid names."""
    catalogue = catalogue if catalogue is not None else concept_catalogue()
    for concept in catalogue:
        if concept.name == name:
            return concept
    names = ", ".join(c.name for c in catalogue[:10])
    raise KeyError(f"no toy concept named {name!r}; toy concepts are named like {names}, ...")


# ---------------------------------------------------------------- sampling


def sample_placement(
    rng: np.random.Generator, spec: WorldSpec | int | None = None, cls: str | None = None, background: str | None = None
) -> Placement:
    """A random placement in a world (default: DEFAULT_WORLD); `background` fixes it (a prompt that names one).

    World 1 draws background, centre jitter and radius in that order (its random stream is what the shipped
    weights and every earlier run used). World 2 draws radius first, then a centre wherever the object's bounding
    circle fits, then a rotation for the classes with an orientation.
    """
    spec = get_world(spec)
    drawn = spec.backgrounds[int(rng.integers(len(spec.backgrounds)))]
    background = background or drawn
    centre = IMAGE_SIZE / 2
    if spec.jitter is not None:
        cx, cy = centre + rng.uniform(-spec.jitter, spec.jitter), centre + rng.uniform(-spec.jitter, spec.jitter)
        radius = rng.uniform(*spec.radius)
    else:
        radius = rng.uniform(*spec.radius)
        reach = radius * EXTENT.get(cls, max(EXTENT.values())) + spec.margin
        low, high = reach, IMAGE_SIZE - reach
        cx, cy = rng.uniform(low, high), rng.uniform(low, high)
    turn = rng.uniform(-spec.rotation, spec.rotation) if spec.rotation else 0.0
    rotation = turn if cls in ROTATING else 0.0
    return Placement(background=background, cx=cx, cy=cy, radius=radius, rotation=rotation)


def sample_pair(
    rng: np.random.Generator, spec: WorldSpec | int | None, classes: tuple[str, str], background: str | None = None
) -> tuple[Placement, Placement]:
    """Placements of a two-object scene (composition): one background, each object at the world's `pair_radius`,
    anywhere it fits, the two reaches at least `pair_gap` px apart. Radii and centres are redrawn together until
    they are, so small radii are drawn more often than in a uniform draw (two triangles: mean radius 5.5 px)."""
    spec = get_world(spec)
    if spec.pair_radius is None:
        raise ValueError(f"world {spec.version} has no two-object scenes (WorldSpec.pair_radius)")
    drawn = spec.backgrounds[int(rng.integers(len(spec.backgrounds)))]
    background = background or drawn
    while True:
        placed = []
        for cls in classes:
            radius = rng.uniform(*spec.pair_radius)
            reach = radius * EXTENT[cls]
            low, high = reach + spec.margin, IMAGE_SIZE - reach - spec.margin
            turn = rng.uniform(-spec.rotation, spec.rotation) if (spec.rotation and cls in ROTATING) else 0.0
            placed.append((rng.uniform(low, high), rng.uniform(low, high), radius, reach, turn))
        (ax, ay, ar, areach, aturn), (bx, by, br, breach, bturn) = placed
        if np.hypot(ax - bx, ay - by) >= areach + breach + spec.pair_gap:
            return (Placement(background, ax, ay, ar, aturn), Placement(background, bx, by, br, bturn))


def sample_appearance(rng: np.random.Generator, reserved: set[tuple], twotone_rate: float = 0.3) -> Appearance:
    """A random training appearance; two-tone patterns of the reserved concepts are never drawn."""
    cls = CLASSES[int(rng.integers(len(CLASSES)))]
    if rng.random() >= twotone_rate:
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        return Appearance(cls, colour=colour, fill=FILLS[int(rng.integers(len(FILLS)))])
    hidden = list(HIDDEN_COLOURS)
    while True:
        a, b = rng.choice(len(hidden), size=2, replace=False)
        split = SPLITS[int(rng.integers(len(SPLITS)))]
        if (cls, frozenset((hidden[a], hidden[b])), split) not in reserved:
            return Appearance(cls, pattern=(hidden[a], hidden[b], split))


def caption(appearance: Appearance, background: str | None = None, fill: bool = True, colour: bool = True) -> str:
    """The caption naming what the vocabulary can say about an object."""
    words = ["a"]
    if appearance.twotone:
        words.append("two-tone")
    else:
        if fill and appearance.fill != "solid":
            words.append(appearance.fill)
        if colour:
            words.append(appearance.colour)
    words.append(appearance.cls)
    text = " ".join(words)
    if background is not None:
        text += f" on a {background} background"
    return text


def pair_caption(
    first: Appearance, second: Appearance, background: str | None = None, say: tuple[dict, dict] | None = None
) -> str:
    """The caption of a two-object scene: "a red circle and a two-tone square[ on a navy background]"; `say` drops
    each object's colour and fill words as `caption` does."""
    say = say or ({}, {})
    text = f"{caption(first, **say[0])} and {caption(second, **say[1])}"
    return text if background is None else f"{text} on a {background} background"


def sample_pair_caption(
    rng: np.random.Generator, objects: tuple[Appearance, Appearance], background: str, background_said: float | None
) -> str:
    """A random caption of a two-object scene: both classes always, each object's colour and fill half the time,
    the background with the chance `background_said` (None: 30%, world 1's mix)."""
    say = tuple({"colour": bool(rng.random() < 0.5), "fill": bool(rng.random() < 0.5)} for _ in objects)
    said = 0.3 if background_said is None else background_said
    return pair_caption(*objects, background if rng.random() < said else None, say)


def sample_caption(
    rng: np.random.Generator, appearance: Appearance, background: str, background_said: float | None = None
) -> tuple[str, np.ndarray]:
    """A caption with attributes randomly dropped, and its attribute codes (-1 = not said).

    Half of the captions are class-focused ("a circle", "a red circle"): the
    calibration probe found that this is what teaches shape rather than colour.
    `background_said` is the chance that any caption names the background; None keeps
    world 1's mix (30%: only the descriptive half names it, 60% of the time).
    """
    u = rng.random()
    if u < 0.25:
        say = dict(colour=False, fill=False, background=False)
    elif u < 0.5:
        say = dict(colour=True, fill=False, background=False)
    else:
        say = dict(colour=rng.random() < 0.8, fill=rng.random() < 0.7, background=rng.random() < 0.6)
    if background_said is not None:
        say["background"] = bool(rng.random() < background_said)
    bg = background if say["background"] else None
    text = caption(appearance, bg, fill=say["fill"], colour=say["colour"])
    codes = attribute_codes(appearance, background)
    said = codes.copy()
    if appearance.twotone:
        said[1] = -1
        said[2] = -1
    else:
        said[1] = codes[1] if say["colour"] else -1
        said[2] = codes[2] if (say["fill"] and appearance.fill != "solid") else -1
        # "a red circle" does not say "solid", so a solid image only constrains fill when said
        if say["fill"] and appearance.fill == "solid":
            said[2] = -1
    said[3] = codes[3] if bg is not None else -1
    # a two-tone caption says so; a named-colour caption implies "not two-tone"
    said[4] = 1 if appearance.twotone else (0 if say["colour"] else -1)
    return text, said


def caption_matches(caption_codes: np.ndarray, image_codes: np.ndarray) -> np.ndarray:
    """M[i, j] = caption j is true of image i (every attribute it states matches)."""
    stated = caption_codes[None, :, :] >= 0
    equal = caption_codes[None, :, :] == image_codes[:, None, :]
    # "a striped red circle" is false of a solid red circle: fill is compared only when stated.
    return np.all(~stated | equal, axis=-1)


# ---------------------------------------------------------------- rendering


def _shape_masks(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of every class, for coordinates normalised by the radius."""
    ax, ay = np.abs(x), np.abs(y)
    r = np.sqrt(x * x + y * y)
    # upward triangle with its centroid near the centre
    tri = (y <= 0.75) & (y >= -1.0 + (1.75 / 0.95) * ax)  # apex (0, -1), base y = 0.75
    return {
        "circle": r <= 1.0,
        "square": (ax <= 0.82) & (ay <= 0.82),
        "triangle": tri,
        "cross": ((ax <= 0.32) & (ay <= 1.0)) | ((ay <= 0.32) & (ax <= 1.0)),
        "ring": (r <= 1.0) & (r >= 0.55),
    }


def render(appearances: list[Appearance], placements: list[Placement]) -> np.ndarray:
    """Render a batch of one object per image: uint8 array of shape (N, 32, 32, 3)."""
    return render_scenes([((a, p),) for a, p in zip(appearances, placements, strict=True)])


def render_scenes(scenes: list[tuple[tuple[Appearance, Placement], ...]]) -> np.ndarray:
    """Render scenes of one or more objects: uint8 (N, 32, 32, 3). A scene's background is its first object's;
    later objects are painted over earlier ones (`sample_pair` keeps them apart)."""
    n = len(scenes)
    size = IMAGE_SIZE * SUPERSAMPLE
    grid = (np.arange(size) + 0.5) / SUPERSAMPLE
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    out = np.empty((n, size, size, 3), dtype=np.float32)
    for i, scene in enumerate(scenes):
        out[i] = BACKGROUNDS[scene[0][1].background]
    stripes = ((gx + gy) // 3).astype(int) % 2 == 0
    for slot in range(max((len(s) for s in scenes), default=0)):
        which = [i for i, s in enumerate(scenes) if len(s) > slot]
        placements = [scenes[i][slot][1] for i in which]
        cx = np.array([p.cx for p in placements])[:, None, None]
        cy = np.array([p.cy for p in placements])[:, None, None]
        rad = np.array([p.radius for p in placements])[:, None, None]
        x = (gx[None] - cx) / rad
        y = (gy[None] - cy) / rad
        # the silhouette turns; the two-tone split stays in the image's frame (it is the concept's identity)
        theta = np.deg2rad(np.array([p.rotation for p in placements]))[:, None, None]
        cos, sin = np.cos(theta), np.sin(theta)
        masks = _shape_masks(cos * x - sin * y, sin * x + cos * y)
        for j, i in enumerate(which):
            app = scenes[i][slot][0]
            img = out[i]
            mask = masks[app.cls][j]
            if app.twotone:
                a, b, split = app.pattern
                side = {"vertical": x[j] < 0, "horizontal": y[j] < 0, "diagonal": x[j] + y[j] < 0}[split]
                img[mask & side] = HIDDEN_COLOURS[a]
                img[mask & ~side] = HIDDEN_COLOURS[b]
            else:
                colour = np.array(COLOURS[app.colour], dtype=np.float32)
                img[mask] = colour
                if app.fill == "striped":
                    img[mask & stripes] = colour * 0.35
    pooled = out.reshape(n, IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE, 3).mean(axis=(2, 4))
    return np.clip(np.rint(pooled), 0, 255).astype(np.uint8)


SHOT_SEED = 0  # the renders a method trains on (a protocol's shots)
CHECK_SEED = 1  # held-out renders for the evaluator's build checks (lfsbench/toy/check.py)
REFERENCE_SEED = 2  # a run's held-out IA references: no training, method or check code draws this stream
ORACLE_SEED = 3  # the `oracle` ceiling's fresh renders (lfsbench/methods/ceilings.py)
NULL_SEED = 4  # fresh renders that measure the copy rate's null (lfsbench/toy/copying.py)
PAIR_SEED = 5  # the noise seeds of the backbone's two-object images in `lfsbench toy check` (PAIR_SEED * 1000 + i)


def concept_placements(concept: ToyConcept, count: int, seed: int, world: WorldSpec | int | None = None) -> list:
    """The placements of `concept_renders(concept, count, seed, world)`: every render's recorded nuisance."""
    spec = get_world(world)
    rng = np.random.default_rng([seed, zlib.crc32(concept.name.encode())])
    return [sample_placement(rng, spec, concept.cls) for _ in range(count)]


def concept_renders(concept: ToyConcept, count: int, seed: int, world: WorldSpec | int | None = None) -> np.ndarray:
    """`count` renders of a concept at varied placements and backgrounds (seeds: SHOT_SEED, CHECK_SEED,
    REFERENCE_SEED); the first k renders of a seed do not depend on `count`."""
    placements = concept_placements(concept, count, seed, world)
    return render([concept.appearance] * count, placements)
