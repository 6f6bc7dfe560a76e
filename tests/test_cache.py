"""The base-model cache (lfsbench/cache.py): runs that share it score exactly as runs that do not, a damaged entry is
recomputed, and two processes filling one cache at once give the same scores."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import tiny_runner

from lfsbench.cache import Cache
from lfsbench.results import RunFolder

SETTINGS = {"steps": 2, "batch_size": 2}
TWO = {  # (without untouched classes: the cache entries counted are the two classes')
    "sessions": [["circle-1"], ["square-1"]],
    "evaluation": {"images_per_prompt": 2, "steps": 3, "bootstrap": 100, "untouched_classes": []},
}


def run(weights, out, cache=True, seed=0):
    runner = tiny_runner(weights, out, "naive", seed, SETTINGS, TWO, cache=cache)
    runner.run()
    return runner.cache


def scores(folder: Path) -> pd.DataFrame:
    return RunFolder(folder).scores()


def assert_same_scores(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(scores(a), scores(b), rtol=0, atol=1e-6)
    figures = [pd.read_csv(f / "summary.csv").filter(regex=r"^(?!cost\.)") for f in (a, b)]  # all but the times
    pd.testing.assert_frame_equal(*figures, rtol=0, atol=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(a / "ia_matrix.csv"), pd.read_csv(b / "ia_matrix.csv"), rtol=0, atol=1e-6)


def entries(root: Path) -> list[Path]:
    return sorted((root / "base").rglob("*.safetensors"))


def test_cached_and_uncached_runs_score_alike_and_a_damaged_entry_is_recomputed(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("LFSBENCH_CACHE", str(tmp_path / "cache"))
    alone = run(tiny_weights, tmp_path / "alone", cache=False)
    assert (alone.hits, alone.misses) == (0, 0) and not (tmp_path / "cache").exists()  # --no-cache: nothing kept
    first = run(tiny_weights, tmp_path / "first")
    assert (first.hits, first.misses) == (0, 2) and len(entries(tmp_path / "cache")) == 2  # circle and square
    second = run(tiny_weights, tmp_path / "second", seed=1)  # another run of the same base model: it reuses them
    assert (second.hits, second.misses) == (2, 0)
    again = run(tiny_weights, tmp_path / "again")  # seed 0 again, from the cache
    assert again.hits == 2
    for folder in ("first", "again"):
        assert_same_scores(tmp_path / "alone", tmp_path / folder)
    entry = entries(tmp_path / "cache")[0]
    data = bytearray(entry.read_bytes())
    data[-4:] = b"\x00\x01\x02\x03"  # a damaged entry: its tensors no longer match the digest in its header
    entry.write_bytes(bytes(data))
    mended = run(tiny_weights, tmp_path / "mended")
    assert (mended.hits, mended.misses) == (1, 1)
    assert_same_scores(tmp_path / "alone", tmp_path / "mended")
    assert Cache.default().get(entry.stem) is not None  # written again, whole


def test_a_key_covers_what_the_work_depends_on():
    parts = {"backbone": "a" * 64, "evaluator": "b" * 64, "prompts": ["a circle"], "steps": 25}
    assert Cache.key(parts) == Cache.key(dict(reversed(parts.items())))
    assert Cache.key(parts) != Cache.key({**parts, "steps": 10})
    assert Cache.key({**parts, "backbone": None}) is None  # a model without a fingerprint: nothing is cached


def _fill(weights: str, out: str, cache: str) -> None:
    os.environ["LFSBENCH_CACHE"] = cache
    import torch

    torch.set_num_threads(1)
    run(Path(weights), Path(out))


def test_two_processes_filling_one_cache_score_alike(tiny_weights, tmp_path, monkeypatch):
    """Two runs start at once on an empty cache: both compute and write the same entries (atomic renames), and
    both score as a run without the cache."""
    cache = tmp_path / "cache"
    context = mp.get_context("spawn")  # fork after torch started its threads can hang
    workers = [
        context.Process(target=_fill, args=(str(tiny_weights), str(tmp_path / f"w{i}"), str(cache))) for i in (0, 1)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=600)
        assert w.exitcode == 0
    monkeypatch.setenv("LFSBENCH_CACHE", str(tmp_path / "unused"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: another thread count sums in another order, which can flip an image
    try:  # that sits on a threshold (its copy or confusion verdict)
        run(tiny_weights, tmp_path / "alone", cache=False)
    finally:
        torch.set_num_threads(threads)
    for i in (0, 1):
        assert_same_scores(tmp_path / "alone", tmp_path / f"w{i}")
    assert len(entries(cache)) == 2 and all(Cache(cache).get(e.stem) is not None for e in entries(cache))
    assert not list(cache.rglob("*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_an_unreadable_entry_is_a_miss(tmp_path, damage):
    import torch

    cache = Cache(tmp_path)
    key = Cache.key({"what": "x"})
    cache.put(key, {"t": torch.arange(6.0)})
    path = next((tmp_path / "base").rglob("*.safetensors"))
    path.write_bytes(path.read_bytes()[:20] if damage == "truncate" else b"not safetensors at all")
    assert cache.get(key) is None and cache.misses == 1


def test_lfs_control_is_generated_once_per_concept_and_scores_as_uncached(tiny_weights, tmp_path, monkeypatch):
    """The control (the base model from lfs's stored contexts) depends on nothing lfs trains: it is generated once
    per concept and reused in later sessions and by other runs (another training seed), with equal scores; a
    setting it depends on (the context strength) is another entry."""
    monkeypatch.setenv("LFSBENCH_CACHE", str(tmp_path / "cache"))
    three = {**TWO, "sessions": [["circle-1"], ["square-1"], ["circle-2"]]}

    def lfs(out, cache=True, seed=0, strength=0.5):
        runner = tiny_runner(
            tiny_weights, out, "lfs", seed, {**SETTINGS, "context_strength": strength}, three, cache=cache
        )
        runner.run()
        return runner.cache

    lfs(tmp_path / "alone", cache=False)
    first = lfs(tmp_path / "first")
    # base class images: circle, square (misses); controls: circle-1 x3 sessions, square-1 x2, circle-2 x1 -> 3 misses
    assert (first.hits, first.misses) == (3, 5)
    assert_same_scores(tmp_path / "alone", tmp_path / "first")
    control = scores(tmp_path / "first")
    control = control[control.kind == "control"]
    assert set(control.session) == {0, 1, 2} and len(control[control.name == "circle-1"]) == 3 * 8
    other_seed = lfs(tmp_path / "seed1", seed=1)
    assert (other_seed.hits, other_seed.misses) == (8, 0)
    stronger = lfs(tmp_path / "stronger", strength=0.7)
    assert stronger.misses == 3  # the controls again, at another strength; the base images are shared
