"""The method adapters on the tiny build: the lfs == naive ablation, DFKD's teacher, ICGen's contexts and control,
replay's memory, DreamBooth's base-model class images, and every method's state round trip."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from lfsbench.concepts import Concept, session_view
from lfsbench.images import to_float
from lfsbench.method import (
    METHODS,
    GeneratesFromContexts,
    Method,
    MethodConfig,
    RendersToyWorld,
    _import_methods,
    all_methods,
    create_method,
    method_class,
)
from lfsbench.toy import load_toy_backbone, world

_import_methods()
REGISTERED = METHODS.names()  # the contract tests below run over every registered method: a new one is tested too
SMALL = {"class_images": 1, "class_image_steps": 1, "dfkd_steps": 2, "dfkd_batch_size": 1, "fisher_samples": 2}


def knobs(name: str, settings: dict) -> dict:
    """Of `settings`, those the method has (the ceilings have no training knobs at all)."""
    fields = method_class(name).Config.model_fields
    return {k: v for k, v in settings.items() if k in fields}


def small(name: str, **settings) -> dict:
    """`settings` and SMALL (the fewest prior images and distillation steps), kept to the knobs the method has."""
    return knobs(name, {**settings, **SMALL})


TINY = {"steps": 3, "batch_size": 2}
PROMPTS = ["a <new1> square", "a <new2> ring", "a square", "a <new1> square on a gray background"]
SEEDS = [0, 1, 2, 3]


def concepts():
    """A square and a ring of the toy world (world 1, the tiny build's), 3 shots each, and 2 noise class images."""
    catalogue = world.concept_catalogue()
    out = []
    for name, cls, token in (("a", "square", "<new1>"), ("b", "ring", "<new2>")):
        concept = next(c for c in catalogue if c.cls == cls)
        shots = to_float(world.concept_renders(concept, 3, world.SHOT_SEED, 1))
        out.append(Concept(name, cls, token, shots, torch.rand(2, 3, 32, 32)))
    return out


def prepared(method: Method, weights, dtype=torch.float32) -> Method:
    """`method` set up on the tiny build, with the toy world where it asks for it."""
    method.setup(load_toy_backbone(weights=weights, dtype=dtype), seed=0)
    if isinstance(method, RendersToyWorld):
        method.use_toy_world(1)
    return method


def learned(name, weights, settings=None, sessions=2):
    method = prepared(create_method(name, knobs(name, {**TINY, **(settings or {})})), weights)
    cs = concepts()
    for t in range(sessions):
        method.learn(session_view(t, [cs[t]], "a {}", cs[:t]))
    return method


def test_all_five_methods_are_registered():
    assert {"naive", "custom-diffusion", "dreambooth", "replay", "lfs"} <= {name for name, _, _ in all_methods()}


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_method_keeps_the_contract(name):
    """What the runner, `lfsbench ls` and the docs rely on: a description, knobs in a MethodConfig with a default each
    (the toy preset), presets that name only its knobs, the three hooks a method must define, and what it keeps
    between sessions said in words."""
    cls = method_class(name)
    assert issubclass(cls, Method) and cls.description
    assert issubclass(cls.Config, MethodConfig) and all(not f.is_required() for f in cls.Config.model_fields.values())
    for preset, values in cls.presets.items():
        assert set(values) <= set(cls.Config.model_fields), (preset, set(values) - set(cls.Config.model_fields))
        create_method(name, preset=preset)  # every preset validates
    assert all(getattr(cls, hook) is not getattr(Method, hook) for hook in ("learn", "state_dict", "load_state_dict"))
    assert isinstance(create_method(name).keeps(), str)


@pytest.mark.parametrize("name", ["naive", "custom-diffusion", "replay", "lfs"])
def test_every_kv_method_trains_at_the_reference_rates_on_stable_diffusion(name):
    """On Stable Diffusion every K/V method takes the Custom Diffusion reference's steps, batch and (scaled) rates,
    whatever its toy defaults (naive once had no preset and trained at the toy's lr 1e-3 there)."""
    from lfsbench.kv_method import SD_KV_PRESET

    config = create_method(name, preset="stable-diffusion").config
    assert {key: getattr(config, key) for key in SD_KV_PRESET} == SD_KV_PRESET


def test_dreambooth_on_stable_diffusion_is_the_diffusers_reference():
    """The preset is diffusers' examples/dreambooth prior-preservation run, whatever the toy sweep chose."""
    config = create_method("dreambooth", preset="stable-diffusion").config
    assert (config.lr, config.batch_size, config.steps, config.prior_weight, config.class_images) == (
        5e-6,
        1,
        800,
        1.0,
        200,
    )
    assert create_method("dreambooth").config.prior_weight == 0.5  # the toy default (toy-tune sweep)


def test_custom_diffusion_initialises_its_tokens_from_the_reference_rare_words_on_stable_diffusion(tiny_weights):
    """The Stable Diffusion preset starts each modifier token from diffusers' rare words in turn (--initializer_token
    ktn+pll+ucd); the toy preset from the class noun, which the toy text encoder was trained on."""
    from lfsbench.kv_method import RARE_TOKENS

    assert create_method("custom-diffusion", preset="stable-diffusion").config.token_init == "rare"
    assert create_method("custom-diffusion").config.token_init == "class"
    method = prepared(create_method("custom-diffusion", {"token_init": "rare"}), tiny_weights)
    embeddings = method.backbone.text_encoder.get_input_embeddings().weight
    cs = concepts()
    for t, word in enumerate(RARE_TOKENS[:2]):
        (token_id,) = method.add_tokens(session_view(t, [cs[t]], "a {}", cs[:t]))
        # the vocabulary's entry, as the reference's tokenizer.encode([word]) reads it ("ktn" is two tokens as text)
        word_id = method.backbone.tokenizer.get_vocab()[word]
        assert torch.equal(embeddings[token_id], embeddings[word_id])


def test_lfs_without_dfkd_and_icgen_is_naive(tiny_weights):
    """The first ablation pair: identical weights and identical images for the same seed."""
    lfs = learned("lfs", tiny_weights, {"dfkd": False, "icgen": False})
    naive = learned("naive", tiny_weights)
    a, b = lfs.state_dict(), naive.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(lfs.generate(PROMPTS, SEEDS, 3, 5.0), naive.generate(PROMPTS, SEEDS, 3, 5.0))
    assert lfs.declared_contexts(PROMPTS, SEEDS) is None  # no context, so no control
    # and with DFKD on, training differs from the second session on
    dfkd = learned("lfs", tiny_weights, {"dfkd_steps": 3, "icgen": False})
    assert any(not torch.equal(dfkd.state_dict()[k], b[k]) for k in b if k.startswith("kv."))


def test_dfkd_teacher_is_the_model_before_the_session(tiny_weights):
    """At the session's first step student == teacher (loss exactly 0); after training they differ; the teacher
    copies K/V only."""
    from lfsbench.training import KVTrainingConfig, frozen_kv_copy, kv_parameters, train_kv_session

    method = learned("lfs", tiny_weights, {"dfkd_steps": 3, "icgen": False}, sessions=1)
    cs = concepts()
    view = session_view(1, [cs[1]], "a {}", cs[:1])
    loss = method.distillation(view)
    assert float(loss(0)) == 0.0
    token_ids = method.add_tokens(view)
    train_kv_session(method.backbone, [method.instance_data(view)], token_ids, KVTrainingConfig(2, 2, 1e-2, 1e-2))
    assert float(loss(1)) > 0
    teacher = frozen_kv_copy(method.backbone)
    copied = sum(p.numel() for proc in teacher.values() for p in getattr(proc, "parameters", lambda: [])())
    assert (
        copied
        == sum(p.numel() for p in kv_parameters(method.backbone))
        < sum(p.numel() for p in method.backbone.unet.parameters())
    )
    assert method.keep_prompts(view) == ["a <new1> square", "a square"]


def test_dfkd_from_teacher_trajectories(tiny_weights):
    method = learned(
        "lfs",
        tiny_weights,
        {
            "dfkd_steps": 3,
            "dfkd_input": "teacher",
            "dfkd_trajectories": 4,
            "dfkd_sampler_steps": 5,
            "dfkd_t_max": 500,
            "icgen": False,
        },
    )
    timesteps, latents, prompt_of = method.teacher_trajectories(["a square"], 1)
    assert len(timesteps) == latents.shape[0] and latents.shape[1] == 4 and (timesteps <= 500).all()


def test_icgen_contexts_selection_and_control(tiny_weights):
    lfs = learned("lfs", tiny_weights, {"dfkd": False, "context_strength": 0.5})
    contexts = lfs.select_contexts(PROMPTS, SEEDS)
    assert torch.equal(contexts[0], lfs.contexts["<new1>"][0]) and torch.equal(contexts[1], lfs.contexts["<new2>"][1])
    assert contexts[2] is None  # a class prompt is generated without context
    assert lfs.stored_bytes() == sum(t.numel() * 4 for t in lfs.contexts.values())
    # with context the concept's images differ from plain text-to-image; at strength 1 they are the same
    naive = learned("naive", tiny_weights)
    with_context = lfs.generate(PROMPTS, SEEDS, 4, 5.0)
    plain = naive.generate(PROMPTS, SEEDS, 4, 5.0)
    assert torch.allclose(with_context[2], plain[2], atol=1e-5) and not torch.allclose(
        with_context[0], plain[0], atol=1e-3
    )
    lfs.config.context_strength = 1.0
    assert torch.allclose(lfs.generate(PROMPTS, SEEDS, 4, 5.0), plain, atol=1e-5)
    # lfs declares what it generates from (the runner builds the control from it: tests/test_runner.py)
    lfs.config.context_strength = 0.5
    declared = lfs.declared_contexts(PROMPTS, SEEDS)
    assert declared.strength == 0.5 and len(declared.latents) == len(PROMPTS)
    assert all(a is b is None or torch.equal(a, b) for a, b in zip(declared.latents, contexts, strict=True))
    assert torch.equal(  # lfs generates from what it declares (which the runner cannot check for itself)
        lfs.generate(PROMPTS, SEEDS, 4, 5.0),
        lfs.backbone.generate_in_context(PROMPTS, SEEDS, declared.latents, 0.5, 4, 5.0),
    )
    # random selection picks stored contexts; none picks nothing
    other = learned("lfs", tiny_weights, {"dfkd": False, "context_selection": "random"})
    picked = other.select_contexts(PROMPTS, SEEDS)
    stored = torch.cat(list(other.contexts.values()))
    assert picked[2] is None and all(any(torch.equal(p, s) for s in stored) for p in picked if p is not None)
    lfs.config.context_selection = "none"
    assert lfs.select_contexts(PROMPTS, SEEDS) == [None] * 4


def test_replay_keeps_and_replays_earlier_shots(tiny_weights):
    replay = learned("replay", tiny_weights, {"replay_shots": 2})
    assert list(replay.memory) == ["<new1>", "<new2>"] and replay.memory["<new1>"][1] == "a <new1> square"
    assert replay.stored_bytes() == 2 * 2 * 3 * 32 * 32
    naive = learned("naive", tiny_weights)
    first_kv = [k for k in naive.state_dict() if k.startswith("kv.")][0]
    assert not torch.equal(replay.state_dict()[first_kv], naive.state_dict()[first_kv])  # session 1 saw the memory


def test_dreambooth_class_images_come_from_the_base_model(tiny_weights):
    from lfsbench.training import generate_class_images

    db = learned("dreambooth", tiny_weights, {"class_images": 2, "class_image_steps": 2}, sessions=1)
    base = load_toy_backbone(weights=tiny_weights)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(db.backbone.unet.state_dict().values(), base.unet.state_dict().values(), strict=True)
    )
    made = db.base_class_images("a ring")  # after a session of training: still the base model's images
    expected = generate_class_images(base, "a ring", 2, 2, 5.0)
    assert torch.allclose(made, (expected * 255).round() / 255, atol=1e-6)
    assert db.trainable_parameters() >= sum(p.numel() for p in base.unet.parameters())


@pytest.mark.parametrize("name", REGISTERED)
def test_state_round_trips_through_safetensors(name, tiny_weights, tmp_path):
    """What the runner saves after a session restores a method that generates the same images (resume)."""
    settings = small(name)
    method = learned(name, tiny_weights, settings)
    save_file({k: v.contiguous() for k, v in method.state_dict().items()}, tmp_path / "state.safetensors")
    restored = prepared(create_method(name, knobs(name, {**TINY, **settings})), tiny_weights)
    restored.load_state_dict(load_file(tmp_path / "state.safetensors"))
    assert set(restored.state_dict()) == set(method.state_dict())
    assert restored.stored_bytes() == method.stored_bytes()
    assert torch.allclose(restored.generate(PROMPTS, SEEDS, 3, 5.0), method.generate(PROMPTS, SEEDS, 3, 5.0), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", REGISTERED)
def test_every_method_runs_with_half_precision_weights(name, dtype, tiny_weights):
    """The GPU default is half-precision frozen weights; the CPU reproduces its dtype bugs (DreamBooth trained a float32
    UNet whose float32 latents met the half VAE). Two sessions (DFKD and the control run from the second), then
    images, all finite."""
    # float16 is about 10x slower than float32 on the CPU: the fewest images and steps that run every code path
    method = prepared(create_method(name, small(name, steps=2, batch_size=1)), tiny_weights, dtype)
    cs = concepts()
    for t in range(2):
        method.learn(session_view(t, [cs[t]], "a {}", cs[:t]))
    prompts, seeds = [PROMPTS[0], PROMPTS[2]], SEEDS[:2]  # a learned concept (lfs: from its context) and a class
    images = method.generate(prompts, seeds, 2, 5.0)  # 2: image-to-image at strength 0.85 needs a step
    assert images.dtype == torch.float32 and images.shape[0] == len(prompts) and torch.isfinite(images).all()
    if isinstance(method, GeneratesFromContexts):  # its declared contexts, image to image at this precision
        declared = method.declared_contexts(prompts, seeds)
        control = method.backbone.generate_in_context(prompts, seeds, declared.latents, declared.strength, 2, 5.0)
        assert declared.latents[0] is not None and torch.isfinite(control).all()


def test_custom_diffusion_prior_from_a_folder_of_real_images(tiny_weights, tmp_path):
    """class_images_from=folder trains on real class images read from <dir>/<class noun>/ (the reference's
    --real_prior); a missing folder and a missing class_images_dir are clear errors."""
    from PIL import Image

    from lfsbench.errors import LfsbenchError

    for noun in ("square", "ring"):
        (tmp_path / noun).mkdir()
        for i in range(3):
            Image.new("RGB", (48, 40), (40 * i, 200, 90)).save(tmp_path / noun / f"{i}.png")
    settings = {"class_images_from": "folder", "class_images_dir": str(tmp_path), "class_images": 2}
    method = learned("custom-diffusion", tiny_weights, settings)
    kept = method.class_images("a square", "square")
    assert kept.shape == (2, 3, 32, 32)
    assert torch.allclose(kept[0, :, 0, 0], torch.tensor([0, 200, 90]) / 255, atol=0.01)
    assert method.keeps() == "real class images" and method.stored_bytes() == 2 * kept.numel()  # square and ring
    with pytest.raises(LfsbenchError, match="No class images in .*circle"):
        method.class_images("a circle", "circle")
    with pytest.raises(LfsbenchError, match="needs class_images_dir"):
        create_method("custom-diffusion", {"class_images_from": "folder"})


def test_token_rows_train_as_the_whole_matrix_with_other_rows_masked_would(tiny_weights):
    """train_session trains only the modifier tokens' rows (a small parameter put in by a forward hook): the trained
    rows, the K/V and the loss curve equal diffusers' way (AdamW over the whole matrix, other rows' gradients zeroed),
    no other row moves, and after training the embedding is a plain lookup again."""
    from lfsbench import training

    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def setup():
        bb = load_toy_backbone(weights=tiny_weights)
        token = training.add_modifier_token(bb, "<new1>", "circle")
        source = training.TrainingData(images, ["a <new1> circle"] * 4)
        return bb, token, source, training.install_trainable_kv(bb)

    bb, token, source, kv = setup()
    before = training.token_embeddings(bb)[0].detach().clone()
    losses = training.train_session(bb, [source], [{"params": kv, "lr": 1e-3}], [token], 5e-3, 6, 2, 0)
    after = training.token_embeddings(bb)[0]
    moved = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert moved == [token]
    assert not bb.text_encoder.get_input_embeddings()._forward_hooks

    ref, ref_token, ref_source, ref_kv = setup()  # the dense loop, written out as diffusers' example does it
    matrix = training.token_embeddings(ref)[0].requires_grad_(True)
    optimizer = torch.optim.AdamW([{"params": ref_kv, "lr": 1e-3}, {"params": [matrix], "lr": 5e-3}], weight_decay=0)
    generator = torch.Generator().manual_seed(0)
    mean, std = ref.posterior(ref_source.images)
    ref_losses = []
    for _ in range(6):
        idx = torch.randint(0, 4, (2,), generator=generator)
        eps = torch.randn(mean[idx].shape, generator=generator)
        latents = (mean[idx] + std[idx] * eps) * ref.vae.config.scaling_factor
        context = ref.encode_prompts([ref_source.prompts[i] for i in idx.tolist()])
        loss = training.noise_prediction_loss(ref, latents, context, generator)
        optimizer.zero_grad()
        loss.backward()
        keep = torch.zeros(matrix.shape[0], 1, dtype=torch.bool)
        keep[ref_token] = True
        matrix.grad.mul_(keep)
        optimizer.step()
        ref_losses.append(loss.item())
    assert losses == pytest.approx(ref_losses, abs=1e-6)
    torch.testing.assert_close(after[token], matrix[ref_token].detach(), atol=1e-6, rtol=0)
    for ours, theirs in zip(kv, ref_kv, strict=True):  # 6 steps of lr 1e-3 move them ~6e-3; float rounding 2e-6
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_the_independent_anchor_learns_each_concept_from_the_base_model_and_forgets_nothing(tiny_weights):
    from lfsbench.training import kv_state

    method = prepared(create_method("independent", knobs("independent", TINY)), tiny_weights)
    cs = concepts()
    method.learn(session_view(0, [cs[0]], "a {}", []))
    first = method.generate(PROMPTS, SEEDS, 4, 5.0)
    method.learn(session_view(1, [cs[1]], "a {}", cs[:1]))
    second = method.generate(PROMPTS, SEEDS, 4, 5.0)
    base = load_toy_backbone(weights=tiny_weights).generate(PROMPTS[2:3], SEEDS[2:3], 4, 5.0)
    assert torch.equal(first[0], second[0]) and torch.equal(first[3], second[3])  # concept a, untouched by session 1
    assert torch.allclose(second[2], base[0], atol=1e-5)  # a class prompt is the base model's image
    kv = kv_state(method.backbone)
    assert all(torch.equal(kv[k], method.base_kv[k]) for k in kv)  # between sessions the base K/V is installed
    a, b = (method.concept_kv[t] for t in ("<new1>", "<new2>"))
    assert not torch.equal(a[next(iter(a))], method.base_kv[next(iter(a))])  # each trained
    assert not torch.equal(a[next(iter(a))], b[next(iter(b))])  # and apart
    kept = [k for k in method.state_dict() if k.startswith("concept_kv.")]
    assert method.stored_bytes() == 0 and len(kept) == 2 * len(a)  # both concepts' K/V, in the state


def test_the_joint_anchor_retrains_from_the_base_model_on_every_shot_so_far(tiny_weights, monkeypatch):
    from lfsbench.training import kv_state, token_embeddings

    method = prepared(create_method("joint", knobs("joint", TINY)), tiny_weights)
    seen = []
    train = method.train

    def recording(session, sources, token_ids, extra_loss=None):  # what each session starts from and trains on
        rows = token_embeddings(method.backbone)[0]
        seen.append((kv_state(method.backbone), {t: rows[i].clone() for t, i in method.tokens.items()}, sources))
        return train(session, sources, token_ids, extra_loss)

    monkeypatch.setattr(method, "train", recording)
    cs = concepts()
    for t in range(2):
        method.learn(session_view(t, [cs[t]], "a {}", cs[:t]))
    kv, rows, sources = seen[1]
    assert all(torch.equal(kv[k], method.base_kv[k]) for k in kv)  # session 1 starts from the base K/V
    assert torch.equal(rows["<new1>"], method.initial_rows["<new1>"][0])  # and concept a's token reset
    (data,) = sources
    assert len(data.images) == 6 and data.prompts.count("a <new1> square") == 3  # both concepts' 3 shots
    assert not torch.equal(token_embeddings(method.backbone)[0][method.tokens["<new1>"]], rows["<new1>"])  # trained
    assert method.stored_bytes() == 2 * 3 * 3 * 32 * 32


def test_ewc_penalises_moving_the_weights_its_fisher_says_matter(tiny_weights):
    """EWC with weight 0 trains exactly as naive (its Fisher draws use their own random stream); with a large weight
    the second session's K/V stays nearer the first session's than without it. The Fisher is a mean of squares."""
    from lfsbench.training import kv_state

    settings = {"steps": 6, "fisher_samples": 2}
    free = learned("ewc", tiny_weights, {**settings, "ewc_weight": 0.0})
    naive = learned("naive", tiny_weights, {"steps": 6})
    free_kv, naive_kv = kv_state(free.backbone), kv_state(naive.backbone)
    assert all(torch.allclose(free_kv[k], naive_kv[k], atol=1e-6) for k in naive_kv)
    held = learned("ewc", tiny_weights, {**settings, "ewc_weight": 1e9})
    fisher, anchor = held.consolidated[0]
    assert all((f >= 0).all() for f in fisher.values()) and any((f > 0).any() for f in fisher.values())
    assert held.penalty(0).item() > 0  # the second session moved the K/V off the first one's

    def moved(method):
        kv, first = kv_state(method.backbone), method.consolidated[0][1]
        return sum(float((kv[k] - first[k]).norm()) for k in first)

    assert moved(held) < 0.5 * moved(free)
    assert len(held.consolidated) == 2 and held.stored_bytes() == 0
