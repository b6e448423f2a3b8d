"""Writing samples to disk, atomically: ``.npy`` for any shape, ``.csv`` for rows of numbers, and
``.png`` for a grid of images."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from torch import Tensor

from scorelab.atomic import write_atomic
from scorelab.errors import ConfigError

SAMPLE_SUFFIXES = (".npy", ".csv", ".png")


def check_sample_path(path: Path) -> None:
    """A :class:`ConfigError` unless ``path`` ends in a suffix :func:`save_samples` writes and can be written:
    missing parent directories are created when the samples are saved, so the nearest existing one must be a
    writable directory. Checked before sampling, which can take minutes."""
    if path.suffix not in SAMPLE_SUFFIXES:
        raise ConfigError(f"--out must end in {' or '.join(SAMPLE_SUFFIXES)}, got {path.name!r}")
    existing = next(parent for parent in Path(os.path.abspath(path)).parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: {existing} is not a writable directory")


def image_grid(images: Tensor, low: float, high: float, columns: int | None = None, padding: int = 1) -> np.ndarray:
    """Images [n, C, H, W] in the units [low, high] tiled into one uint8 array [rows·(H+p), columns·(W+p), C]
    (C = 1 or 3), with ``padding`` pixels of black between them; ``columns`` defaults to ⌈√n⌉."""
    n, channels, height, width = images.shape
    if channels not in (1, 3):
        raise ConfigError(f"a PNG holds images of 1 or 3 channels, got {channels}; use --out FILE.npy")
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    pixels = ((images.double() - low) / (high - low)).clamp(0, 1).mul(255).round().byte()
    grid = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
                    dtype=np.uint8)
    for index, image in enumerate(pixels.permute(0, 2, 3, 1).numpy()):
        top, left = padding + (index // columns) * (height + padding), padding + (index % columns) * (width + padding)
        grid[top:top + height, left:left + width] = image
    return grid


def png_bytes(grid: np.ndarray) -> bytes:
    """A uint8 array [H, W, 1 or 3] encoded as PNG by Pillow."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).save(buffer, format="PNG")
    return buffer.getvalue()


def save_samples(samples: Tensor, path: str | Path, *, value_range: tuple[float, float] | None = None) -> None:
    """Write ``samples`` [n, *shape] to ``path``: ``.npy`` as they are, ``.csv`` as rows x0, x1, … of [n, d],
    ``.png`` as a grid of images [n, C, H, W] whose units span ``value_range``."""
    path = Path(path)
    check_sample_path(path)
    array = samples.numpy()
    if path.suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, array)
        payload = buffer.getvalue()
    elif path.suffix == ".png":
        if array.ndim != 4 or value_range is None:
            raise ConfigError(f"a PNG grid needs images [n, C, H, W]; samples of shape {tuple(array.shape[1:])} "
                              "need --out FILE.npy or FILE.csv")
        payload = png_bytes(image_grid(samples, *value_range))
    else:
        if array.ndim != 2:
            raise ConfigError(f"a CSV holds rows of numbers, [n, d]; samples of shape {tuple(array.shape[1:])} "
                              "need --out FILE.npy")
        header = ",".join(f"x{i}" for i in range(array.shape[1]))
        rows = "\n".join(",".join(f"{v:.9g}" for v in row) for row in array)
        payload = f"{header}\n{rows}\n".encode()
    write_atomic(path, payload)
