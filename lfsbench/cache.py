"""Base-model work done once: a content-addressed cache of what depends only on the base model, the evaluator and the
protocol's evaluation settings and seeds, never on the method, so that every run of a study (every method and
training seed) reuses it instead of computing it again.

An entry is a safetensors file named by the SHA-256 of everything its content depends on (`key`: the weights'
fingerprints, the prompts and seeds, the sampler, steps, eta, guidance and precision, the device and dtype, torch's
version, and the source of the code that computes it, `code_fingerprint`). It is written through a temporary file
and a rename, so two workers filling one cache at once each write a whole entry and the last rename wins (both are
the same content); and it is verified on read against the digest of its tensors stored in its header, so a damaged
entry is recomputed, never trusted. Where a model's weights have no
fingerprint (a checkpoint named by name, lfsbench/models.py), nothing is cached: the work is done per run as before.

Where: $LFSBENCH_CACHE, else ~/.cache/lfsbench. `lfsbench run --no-cache` and `lfsbench study --no-cache` do
everything per run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

FORMAT = 1  # of an entry; a change of what an entry holds changes every key


def code_fingerprint(*modules) -> str:
    """SHA-256 of the source files of the modules that compute an entry: an entry made by other code is never read."""
    import inspect

    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(inspect.getfile(module)).read_bytes())
    return digest.hexdigest()


def cache_root() -> Path:
    return Path(os.environ.get("LFSBENCH_CACHE") or Path.home() / ".cache" / "lfsbench")


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


class Cache:
    """Entries under `root`/base (None: no caching; `get` finds nothing and `put` keeps nothing)."""

    def __init__(self, root: Path | None):
        self.folder = Path(root) / "base" if root is not None else None
        self.hits = self.misses = 0

    @classmethod
    def default(cls, enabled: bool = True) -> Cache:
        return cls(cache_root() if enabled else None)

    @staticmethod
    def key(parts: dict) -> str | None:
        """The key of an entry from everything its content depends on; None where a part is unknown (a model without
        a fingerprint), and then nothing is cached."""
        if any(value is None for value in parts.values()):
            return None
        return hashlib.sha256(json.dumps({"format": FORMAT, **parts}, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, key: str | None) -> dict[str, torch.Tensor] | None:
        """The entry's tensors, or None: no cache, no entry, or one that is damaged (then it is recomputed)."""
        if self.folder is None or key is None:
            return None
        from safetensors import safe_open

        path = self._path(key)
        try:
            with safe_open(path, framework="pt") as f:
                stored = (f.metadata() or {}).get("sha256")
                tensors = {name: f.get_tensor(name) for name in f.keys()}
        except Exception:  # missing, truncated, not safetensors: all mean "compute it"
            self.misses += 1
            return None
        if stored != _digest(tensors):
            self.misses += 1
            return None
        self.hits += 1
        return tensors

    def put(self, key: str | None, tensors: dict[str, torch.Tensor]) -> None:
        """Keep an entry (atomically); a cache that cannot be written is skipped, never an error of the run."""
        if self.folder is None or key is None:
            return
        from lfsbench.results import atomic_save_tensors

        tensors = {name: t.contiguous().cpu() for name, t in tensors.items()}
        try:
            atomic_save_tensors(tensors, self._path(key), metadata={"sha256": _digest(tensors)})
        except OSError:
            pass
