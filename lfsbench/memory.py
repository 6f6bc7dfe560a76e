"""Peak memory of a stretch of work: CUDA's allocator counters on a GPU, the process's resident set on the CPU (the
runner's per-session figure, `lfsbench bench`'s per-stage one)."""

from __future__ import annotations

import ctypes
import gc
import resource
from pathlib import Path

import torch


def reset_peak_memory(device: torch.device, collect: bool = True) -> None:
    """Start a new peak for the session: CUDA's counters, or Linux's peak RSS (VmHWM; 5 > clear_refs resets it).

    Without the reset the CPU figure is the process's peak so far, which in a study (several runs in one
    process) is that of the largest earlier run. Even with it, the resident memory an earlier run freed
    but glibc kept counts; collecting garbage (`collect`) and trimming the heap first returns most of it.
    A collection takes about half a second in a large process: the runner asks for one before the first
    session each call runs (a resumed run collects again), since a session frees the previous one's tensors
    by reference count, which needs none; memory held in reference cycles until the next collection can
    count in a later session's peak.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    if collect:
        gc.collect()  # memory that earlier runs freed but the allocator kept would count as this session's
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: peak_memory_mb falls back to the process's peak
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak since reset_peak_memory: CUDA memory allocated, else resident memory (VmHWM, or ru_maxrss elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB (macOS bytes: not supported)
