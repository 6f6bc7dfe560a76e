"""Content fingerprints of model folders: what a run's identity and the base-model cache key on."""

from __future__ import annotations

import hashlib
from pathlib import Path

_FINGERPRINTS: dict[tuple, str] = {}


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 over a folder's weight and configuration files (*.safetensors, *.json, *.txt; file names and bytes, in
    name order), computed once per process for files of unchanged size and time."""
    files = sorted(f for f in Path(folder).rglob("*") if f.is_file() and f.suffix in (".safetensors", ".json", ".txt"))
    files = [f for f in files if f.name != "fitness.json"]  # the record of a check, not part of the weights
    stamp = (str(folder), *((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if stamp not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for f in files:
            digest.update(str(f.relative_to(folder)).encode())
            digest.update(f.read_bytes())
        _FINGERPRINTS[stamp] = digest.hexdigest()
    return _FINGERPRINTS[stamp]
