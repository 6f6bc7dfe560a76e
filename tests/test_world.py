"""The toy renderer: deterministic, captions say what is drawn, reserved concepts stay out of training."""

import numpy as np

from lfsbench.toy import world


def test_render_is_deterministic():
    cat = world.concept_catalogue()
    reserved = world.reserved_patterns(cat)
    a = world.sample_batch(np.random.default_rng(5), 32, reserved, views=2)
    b = world.sample_batch(np.random.default_rng(5), 32, reserved, views=2)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    c = world.sample_batch(np.random.default_rng(6), 32, reserved, views=2)
    assert not np.array_equal(a.images, c.images)


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
    rng = np.random.default_rng(0)
    reserved = world.reserved_patterns(world.concept_catalogue())
    batch = world.sample_batch(rng, 200, reserved)
    match = world.caption_matches(batch.caption_codes, batch.image_codes)
    assert match.diagonal().all()
    for text, app_codes in zip(batch.captions, batch.image_codes):
        cls = world.CLASSES[app_codes[0]]
        assert text.split(" on a ")[0].endswith(cls)
        if app_codes[1] >= 0 and "two-tone" not in text:
            named = [c for c in world.COLOURS if f" {c} " in f" {text} "]
            assert named in ([], [list(world.COLOURS)[app_codes[1]]])
        if " on a " in text:
            assert text.endswith(f"on a {list(world.BACKGROUNDS)[app_codes[3]]} background")
    # a caption naming another colour is false of the image
    red = world.attribute_codes(world.Appearance("circle", colour="red"), "gray")
    _, blue_caption = world.sample_caption(np.random.default_rng(1), world.Appearance("circle", colour="blue"), "gray")
    if blue_caption[1] >= 0:
        assert not world.caption_matches(blue_caption[None], red[None])[0, 0]


def test_no_caption_names_a_hidden_colour():
    rng = np.random.default_rng(3)
    batch = world.sample_batch(rng, 300, world.reserved_patterns(world.concept_catalogue()))
    for text in batch.captions:
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
