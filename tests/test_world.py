"""The toy renderer: deterministic, captions say what is drawn, reserved concepts stay out of training."""

import numpy as np

from lfsbench.toy import world
from lfsbench.toy.build import Pool, render_pool
from lfsbench.toy.recipe import Recipe


def small_pool(seed: int, objects: int = 200) -> Pool:
    recipe = Recipe(seed=seed)
    recipe.world.pool_objects = objects
    return render_pool(recipe)


def pool_captions(pool: Pool, seed: int):
    idx = np.arange(len(pool.appearances))
    view = np.zeros(len(idx), int)
    texts, codes = pool.captions(np.random.default_rng(seed), idx, view)
    return texts, codes, pool.image_codes[idx, view]


def test_render_is_deterministic():
    a, b, c = small_pool(5, 32), small_pool(5, 32), small_pool(6, 32)
    assert np.array_equal(a.images, b.images) and pool_captions(a, 0)[0] == pool_captions(b, 0)[0]
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.images[:, 0], a.images[:, 1])  # two views of each object differ


def test_pixels_match_the_appearance():
    place = world.Placement("black", 16, 16, 11)
    img = world.render([world.Appearance("circle", colour="red")], [place])[0]
    assert tuple(img[16, 16]) == world.COLOURS["red"]
    assert tuple(img[0, 0]) == world.BACKGROUNDS["black"]
    ring = world.render([world.Appearance("ring", colour="blue")], [place])[0]
    assert tuple(ring[16, 16]) == world.BACKGROUNDS["black"]  # the hole
    two = world.render([world.Appearance("square", pattern=("orange", "teal", "vertical"))], [place])[0]
    assert tuple(two[16, 10]) == world.HIDDEN_COLOURS["orange"] and tuple(two[16, 22]) == world.HIDDEN_COLOURS["teal"]


def test_captions_are_true_of_their_images():
    texts, caption_codes, image_codes = pool_captions(small_pool(0), 0)
    match = world.caption_matches(caption_codes, image_codes)
    assert match.diagonal().all()
    for text, app_codes in zip(texts, image_codes, strict=True):
        cls = world.CLASSES[app_codes[0]]
        assert text.split(" on a ")[0].endswith(cls)
        if app_codes[1] >= 0 and "two-tone" not in text:
            named = [c for c in world.COLOURS if f" {c} " in f" {text} "]
            assert named in ([], [list(world.COLOURS)[app_codes[1]]])
        if " on a " in text:
            assert text.endswith(f"on a {list(world.BACKGROUNDS)[app_codes[3]]} background")
    # "a blue circle" is false of a red circle, "a circle" is true of it, "a two-tone circle" is not
    red = world.attribute_codes(world.Appearance("circle", colour="red"), "gray")
    blue_circle = np.array([0, list(world.COLOURS).index("blue"), -1, -1, 0])
    a_circle = np.array([0, -1, -1, -1, -1])
    two_tone_circle = np.array([0, -1, -1, -1, 1])
    assert world.caption_matches(np.stack([blue_circle, a_circle, two_tone_circle]), red[None]).tolist() == [
        [False, True, False]
    ]


def test_no_caption_names_a_hidden_colour():
    texts, _, _ = pool_captions(small_pool(3, 300), 3)
    for text in texts:
        assert not any(h in text for h in world.HIDDEN_COLOURS)


def test_reserved_concepts_never_appear_in_training_samples():
    cat = world.concept_catalogue()
    reserved = world.reserved_patterns(cat)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        app = world.sample_appearance(rng, reserved, twotone_rate=1.0)
        assert (app.cls, frozenset(app.pattern[:2]), app.pattern[2]) not in reserved


def test_catalogue_is_fixed_and_classes_repeat():
    cat = world.concept_catalogue()
    assert [c.name for c in cat] == [c.name for c in world.concept_catalogue()]
    assert len({c.name for c in cat}) == len(cat) == 60
    assert cat[0].name == "circle-1" and cat[5].name == "circle-2"
    assert world.concept_by_name("square-2", cat).cls == "square"


def test_concept_shots_and_held_out_differ_but_show_the_same_object():
    concept = world.concept_by_name("circle-1")
    shots = world.concept_renders(concept, 6, seed=0)
    held = world.concept_renders(concept, 6, seed=1)
    assert not np.array_equal(shots, held)
    assert np.array_equal(shots, world.concept_renders(concept, 6, seed=0))
    a, b, _ = concept.appearance.pattern
    for imgs in (shots, held):
        colours = {tuple(p) for p in imgs.reshape(-1, 3)}
        assert world.HIDDEN_COLOURS[a] in colours and world.HIDDEN_COLOURS[b] in colours


def test_two_object_scenes_keep_both_objects_apart_inside_and_on_one_background():
    spec = world.get_world(2)
    rng = np.random.default_rng(3)
    for _ in range(300):
        classes = tuple(world.CLASSES[int(k)] for k in rng.integers(len(world.CLASSES), size=2))
        a, b = world.sample_pair(rng, spec, classes)
        assert a.background == b.background
        for place, cls in ((a, classes[0]), (b, classes[1])):
            assert spec.pair_radius[0] <= place.radius <= spec.pair_radius[1]
            reach = place.radius * world.EXTENT[cls] + spec.margin
            assert reach <= place.cx <= world.IMAGE_SIZE - reach and reach <= place.cy <= world.IMAGE_SIZE - reach
            assert place.rotation == 0 or cls in world.ROTATING
        gap = (
            np.hypot(a.cx - b.cx, a.cy - b.cy)
            - a.radius * world.EXTENT[classes[0]]
            - b.radius * world.EXTENT[classes[1]]
        )
        assert gap >= spec.pair_gap
    fixed = world.sample_pair(rng, spec, ("circle", "square"), background="plum")
    assert {p.background for p in fixed} == {"plum"}


def test_a_world_without_two_object_scenes_says_so():
    import pytest

    with pytest.raises(ValueError, match="no two-object scenes"):
        world.sample_pair(np.random.default_rng(0), 1, ("circle", "square"))


def test_a_scene_paints_both_objects():
    rng = np.random.default_rng(4)
    first, second = world.Appearance("circle", "red"), world.Appearance("square", "blue")
    a, b = world.sample_pair(rng, 2, ("circle", "square"), "black")
    pair = world.render_scenes([((first, a), (second, b))])[0]
    alone = world.render([first, second], [a, b])
    # each object's pixels are those of its render alone; the rest is background
    for img in alone:
        drawn = np.any(img != world.BACKGROUNDS["black"], axis=-1)
        assert np.array_equal(pair[drawn], img[drawn])


def test_two_object_captions_name_both_classes():
    rng = np.random.default_rng(0)
    objects = (
        world.Appearance("circle", "red", "striped"),
        world.Appearance("triangle", pattern=("teal", "lime", "vertical")),
    )
    texts = [world.sample_pair_caption(rng, objects, "navy", 0.5) for _ in range(200)]
    assert all(t.startswith("a ") and " circle and a " in t and "triangle" in t for t in texts)
    assert 0.35 < np.mean([t.endswith("on a navy background") for t in texts]) < 0.65
    assert world.pair_caption(*objects, "navy") == "a striped red circle and a two-tone triangle on a navy background"


def test_a_pool_with_two_object_scenes_keeps_its_single_objects():
    plain = Recipe.model_validate({"world": {"version": 2, "pool_objects": 40}})
    paired = Recipe.model_validate({"world": {"version": 2, "pool_objects": 40, "pair_objects": 12, "pair_rate": 0.25}})
    a, b = render_pool(plain), render_pool(paired)
    assert a.pair_images is None and len(a.all_images()) == 80
    assert np.array_equal(a.images, b.images) and a.appearances == b.appearances
    assert b.pair_images.shape == (12, 32, 32, 3) and len(b.all_images()) == 92
    assert np.array_equal(b.all_images()[80:], b.pair_images)
    texts = b.pair_captions(np.random.default_rng(0), np.arange(12))
    assert all(" and a " in t for t in texts)


def test_a_recipe_with_two_object_scenes_must_be_able_to_use_them():
    import pytest
    from pydantic import ValidationError

    for world_part, match in (
        ({"version": 1, "pair_objects": 10, "pair_rate": 0.25}, "world 2"),
        ({"version": 2, "pair_objects": 10}, "or neither"),
        ({"version": 2, "pair_rate": 0.25}, "or neither"),
        ({"version": 2, "pair_objects": 10, "pair_rate": 0.99}, "leave single objects"),
        ({"version": 2, "pair_objects": 10, "pair_rate": 0.01}, "at least one"),
    ):
        with pytest.raises(ValidationError, match=match):
            Recipe.model_validate({"world": world_part})
    Recipe.model_validate({"world": {"version": 2, "pair_objects": 10, "pair_rate": 0.25}})
