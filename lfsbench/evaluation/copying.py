"""Copy detection: is a generated image a near-copy of one of the concept's training shots?

The evaluator's concept embedding is built to ignore layout and background (the toy evaluator is trained to be
blind to them), so copying is measured in a space that sees them: pixels, at most COPY_SIZE px on a side (area
downsampling), compared by root-mean-square difference. For each concept the threshold is calibrated on real images:
the COPY_QUANTILE quantile of its held-out references' distances to their nearest training shot. Unseen real views of
the concept are therefore "copies" COPY_QUANTILE of the time by construction (5%); a model that reproduces its shots
lands far above that. docs/metrics.md has the definition in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

COPY_SIZE = 64  # pixels on a side of the copy space (toy images are 32 px and stay as they are)
COPY_QUANTILE = 0.05  # the share of held-out references that count as copies of a shot, by construction


def pixels(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] NCHW -> (N, D) flattened pixels at most COPY_SIZE px on a side (area downsampling)."""
    x = images.float().clamp(0, 1)
    if x.shape[-1] > COPY_SIZE or x.shape[-2] > COPY_SIZE:
        x = F.interpolate(x, size=(COPY_SIZE, COPY_SIZE), mode="area")
    return x.flatten(1)


def nearest(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `a`: the RMS pixel difference to its nearest row of `b`, and that row's index."""
    d = torch.cdist(a.double(), b.double()) / np.sqrt(a.shape[1])
    dist, index = d.min(dim=1)
    return dist.numpy(), index.numpy()


@dataclass
class CopySpace:
    """A concept's shots and held-out references in the copy space, and its copy threshold."""

    shots: torch.Tensor
    references: torch.Tensor
    threshold: float  # a distance to the nearest shot below this is a copy

    @classmethod
    def of(cls, shots: torch.Tensor, references: torch.Tensor) -> CopySpace:
        s, r = pixels(shots), pixels(references)
        reference_to_shot, _ = nearest(r, s)
        return cls(s, r, float(np.quantile(reference_to_shot, COPY_QUANTILE)))

    def measure(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """Per image: distance to the nearest shot and to the nearest held-out reference (and which ones), copied."""
        x = pixels(images)
        to_shot, shot = nearest(x, self.shots)
        to_reference, reference = nearest(x, self.references)
        return {
            "shot_distance": to_shot,
            "reference_distance": to_reference,
            "nearest_shot": shot,
            "nearest_reference": reference,
            "copied": (to_shot < self.threshold).astype(float),
        }
