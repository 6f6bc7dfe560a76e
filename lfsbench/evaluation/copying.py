"""Copy detection: is a generated image a near-copy of one of the concept's training shots?

The evaluator's concept embedding is built to ignore layout and background (the toy evaluator is trained to be
blind to them), so copying is measured in a space that sees them: pixels, at most COPY_SIZE px on a side (area
downsampling), compared by root-mean-square difference. For each concept the threshold is calibrated on real images:
the COPY_QUANTILE quantile of its held-out references' distances to their nearest training shot. Unseen real views of
the concept are therefore "copies" COPY_QUANTILE of the time by construction (5%); a model that reproduces its shots
lands far above that. docs/metrics.md has the definition in full.

Two more detectors need no oracle, so they are the real-data counterparts of the toy world's nuisance copy rate
(docs/metrics.md), each calibrated the same way to FALSE_POSITIVE_RATE on the concept's held-out references:

- the relative pixel distance of Carlini et al. 2023 ("Extracting training data from diffusion models"): the distance
  to the nearest shot over the mean distance to the RELATIVE_K nearest shots. It is small only where one shot is much
  nearer than the others, so a sharp image is not a copy merely for being near all of them, and a blurry one not
  innocent merely for being far from all of them;
- DINO similarity (the protocol's DINO model, lfsbench/dino.py): the cosine of the image's DINO embedding to its
  nearest shot's, above the references' (1 - FALSE_POSITIVE_RATE) quantile, as copy detection in the manner of
  Somepalli et al. 2023 reads a feature space that sees layout as well as identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

COPY_SIZE = 64  # pixels on a side of the copy space (toy images are 32 px and stay as they are)
COPY_QUANTILE = 0.05  # the share of held-out references that count as copies of a shot, by construction
FALSE_POSITIVE_RATE = COPY_QUANTILE  # every detector flags this share of the held-out references, by construction
RELATIVE_K = 3  # shots in the relative distance's denominator (all of them where a concept has fewer)


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


def relative_distance(a: torch.Tensor, shots: torch.Tensor) -> np.ndarray:
    """For each row of `a`: the distance to its nearest shot over the mean distance to its RELATIVE_K nearest shots
    (Carlini et al. 2023); NaN where there is a single shot (the ratio is then always 1)."""
    if len(shots) < 2:
        return np.full(len(a), np.nan)
    d = torch.cdist(a.double(), shots.double())
    near = d.topk(min(RELATIVE_K, d.shape[1]), dim=1, largest=False).values
    return (near[:, 0] / near.mean(dim=1).clamp_min(1e-12)).numpy()


@dataclass
class CopySpace:
    """A concept's shots and held-out references in the copy space, and its copy thresholds."""

    shots: torch.Tensor
    references: torch.Tensor
    threshold: float  # a distance to the nearest shot below this is a copy
    relative_threshold: float = float("nan")  # a relative distance below this is a copy (NaN: a single shot)

    @classmethod
    def of(cls, shots: torch.Tensor, references: torch.Tensor) -> CopySpace:
        s, r = pixels(shots), pixels(references)
        reference_to_shot, _ = nearest(r, s)
        relative = relative_distance(r, s)
        return cls(
            s,
            r,
            float(np.quantile(reference_to_shot, COPY_QUANTILE)),
            float(np.quantile(relative, FALSE_POSITIVE_RATE)),  # NaN with a single shot (relative_distance)
        )

    def measure(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """Per image: distance to the nearest shot and to the nearest held-out reference (and which ones), copied."""
        x = pixels(images)
        to_shot, shot = nearest(x, self.shots)
        to_reference, reference = nearest(x, self.references)
        relative = relative_distance(x, self.shots)
        return {
            "shot_distance": to_shot,
            "reference_distance": to_reference,
            "nearest_shot": shot,
            "nearest_reference": reference,
            "copied": (to_shot < self.threshold).astype(float),
            "relative_copy": np.where(np.isnan(relative), np.nan, relative < self.relative_threshold),
        }


@dataclass
class FeatureCopy:
    """Copy detection in a feature space (DINO): an image copies a shot when its cosine to the nearest shot exceeds
    the concept's threshold, the (1 - FALSE_POSITIVE_RATE) quantile of its held-out references' own."""

    shots: torch.Tensor  # unit embeddings
    threshold: float

    @classmethod
    def of(cls, shots: torch.Tensor, references: torch.Tensor) -> FeatureCopy:
        nearest_shot = (references @ shots.T).max(dim=1).values.numpy()
        return cls(shots, float(np.quantile(nearest_shot, 1 - FALSE_POSITIVE_RATE)))

    def measure(self, embeddings: torch.Tensor) -> np.ndarray:
        return ((embeddings @ self.shots.T).max(dim=1).values.numpy() > self.threshold).astype(float)
