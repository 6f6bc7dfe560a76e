"""Image conversions and grids. Inside lfsbench images are float tensors in [0, 1], NCHW."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float NCHW in [0, 1] -> uint8 NHWC."""
    return images.detach().float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def save_grid(images: torch.Tensor, path: Path, columns: int = 8, upscale: int | None = None) -> Path:
    """Save images as one PNG grid (small images are upscaled with nearest-neighbour so a person can see them)."""
    from PIL import Image

    arr = to_uint8(images)
    n, h, w, _ = arr.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + 2), columns * (w + 2), 3), 255, np.uint8)
    for i, img in enumerate(arr):
        r, c = divmod(i, columns)
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = img
    upscale = upscale or max(1, 128 // h)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * upscale, grid.shape[0] * upscale), Image.NEAREST).save(path)
    return path


HIGH_DEPTH_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def _rgb(img) -> torch.Tensor:
    """A PIL image as float CHW RGB in [0, 1], keeping the range of 16-bit and float images (PIL's own convert("RGB")
    clips a 16-bit grey image to white)."""
    if img.mode in HIGH_DEPTH_MODES or img.mode in ("I", "F"):
        grey = np.asarray(img, dtype=np.float64)
        if img.mode in HIGH_DEPTH_MODES:
            top = HIGH_DEPTH_MODES[img.mode]
        elif img.mode == "F":
            top = 1.0 if grey.max(initial=0) <= 1.0 else 255.0
        else:  # 32-bit integers: 16-bit data (a 16-bit PNG in some Pillow versions) or 8-bit data
            top = 65535.0 if grey.max(initial=0) > 255 else 255.0
        grey = torch.from_numpy(np.clip(grey / top, 0, 1)).float()
        return grey[None].expand(3, -1, -1).contiguous()
    return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).float().div(255.0)


def load_image_file(path) -> torch.Tensor:
    """Read an image file (or take an already decoded PIL image) as float CHW in [0, 1]; an unreadable file is a
    clear error naming it."""
    from PIL import Image, UnidentifiedImageError

    from lfsbench.errors import LfsbenchError

    if isinstance(path, Image.Image):
        return _rgb(path)
    try:
        with Image.open(path) as img:
            return _rgb(img)
    except Image.DecompressionBombError as err:
        raise LfsbenchError(
            f"Refused image {path}: its header claims more pixels than Pillow decodes safely ({err}). A corrupt file "
            "or a decompression bomb; replace or delete it (few-shot images need only a few hundred pixels a side)."
        ) from None
    except (UnidentifiedImageError, OSError) as err:
        raise LfsbenchError(
            f"Cannot read image {path}: {err}. Replace or delete the file (it may be truncated or not an image)."
        ) from None
