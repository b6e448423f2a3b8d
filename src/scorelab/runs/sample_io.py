"""Writing samples to disk as they come, atomically: ``.npy`` for any shape, ``.csv`` for rows of
numbers, and ``.png`` for a grid of images.

:class:`SampleWriter` takes samples in batches, so ``scorelab sample --n`` of any size runs in the
memory of one batch: ``.npy`` and ``.csv`` rows are appended to a temporary file that replaces the
target when the last row is in (:func:`scorelab.core.atomic.atomic_file`). Every check that can fail (the
suffix, the shape, the space on the disk) is made before the first sample is drawn.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import torch
from torch import Tensor

from scorelab.core.atomic import atomic_file
from scorelab.core.errors import ConfigError

SAMPLE_SUFFIXES = (".npy", ".csv", ".png")
PNG_LIMIT = 10_000  # images in one grid, which is built in memory: a larger one is unreadable anyway
CSV_BYTES_PER_NUMBER = 16  # at most: "%.9g" of a float32 ("-1.23456789e-05") and its separator


def check_sample_path(path: Path) -> None:
    """A :class:`ConfigError` unless ``path`` ends in a suffix :class:`SampleWriter` writes and can be
    written: missing parent directories are created when the samples are saved, so the nearest existing
    one must be a writable directory. Checked before sampling, which can take minutes."""
    if path.suffix not in SAMPLE_SUFFIXES:
        raise ConfigError(f"--out must end in {' or '.join(SAMPLE_SUFFIXES)}, got {path.name!r}")
    existing = _nearest_existing(path)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: {existing} is not a writable directory")


def _nearest_existing(path: Path) -> Path:
    return next(parent for parent in Path(os.path.abspath(path)).parents if parent.exists())


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:,.1f} GB"


def byte_size(size: float) -> str:
    """``size`` bytes in decimal units: 812 B, 4.1 kB, 8.0 GB, 1.2 TB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _grid_bytes(n: int, shape: tuple[int, ...], columns: int | None = None, padding: int = 1) -> int:
    """The raw pixels of :func:`image_grid` of ``n`` images of ``shape`` [C, H, W] (0 for other shapes)."""
    if len(shape) != 3:
        return 0
    channels, height, width = shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    return (rows * (height + padding) + padding) * (columns * (width + padding) + padding) * channels


def duration(seconds: float) -> str:
    """A length of time as a person says it: 40 s, 12 min, 5.3 h, 2.5 days."""
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.1f} days"


def estimate(first: int, seconds: float, n: int, batch_size: int, workers: int = 1) -> str:
    """One line after the first batch (``first`` samples in ``seconds``) of a job of ``n`` samples in
    batches of ``batch_size`` shared by ``workers`` processes at once: how long the whole job takes."""
    rounds = math.ceil(math.ceil(n / batch_size) / workers)  # batches each process makes, one after another
    return (f"the first batch of {first:,} samples took {duration(seconds)}: all {n:,} take about "
            f"{duration(seconds * rounds)}")


class SampleWriter:
    """Write ``n`` samples of ``shape`` to ``path`` in batches: ``.npy`` as float32 [n, *shape], ``.csv`` as
    rows x0, x1, … of [n, d], ``.png`` as a grid of images [n, C, H, W] whose units span ``value_range``, in
    ``columns`` columns (default ⌈√n⌉).

        with SampleWriter(path, n, shape) as out:
            for batch in batches:
                out.write(batch)

    The file appears when the block ends with all ``n`` rows written, and not otherwise.
    """

    def __init__(self, path: str | Path, n: int, shape: tuple[int, ...], *,
                 value_range: tuple[float, float] | None = None, columns: int | None = None) -> None:
        self.path, self.n, self.shape, self.value_range, self.columns = Path(path), n, tuple(shape), value_range, columns
        check_sample_path(self.path)
        suffix, sample_shape = self.path.suffix, f"samples of shape {self.shape}"
        if suffix == ".png" and (len(self.shape) != 3 or value_range is None):
            raise ConfigError(f"a PNG grid needs images [n, C, H, W]; {sample_shape} need --out FILE.npy or FILE.csv")
        if suffix == ".png" and self.shape[0] not in (1, 3):
            raise ConfigError(f"a PNG holds images of 1 or 3 channels, got {self.shape[0]}; use --out FILE.npy")
        if suffix == ".png" and n > PNG_LIMIT:
            raise ConfigError(f"a PNG grid holds at most {PNG_LIMIT:,} images, asked for {n:,}; use --out FILE.npy")
        if suffix == ".csv" and len(self.shape) != 1:
            raise ConfigError(f"a CSV holds rows of numbers, [n, d]; {sample_shape} need --out FILE.npy")
        numbers = n * math.prod(self.shape)
        size = numbers * 4 if suffix == ".npy" else numbers * CSV_BYTES_PER_NUMBER if suffix == ".csv" else 0
        free = shutil.disk_usage(_nearest_existing(self.path)).free
        if size > free:
            raise ConfigError(f"{n:,} samples need {'up to ' if suffix == '.csv' else ''}{_gigabytes(size)} in "
                              f"{self.path}, and its disk has {_gigabytes(free)} free; ask for fewer with --n")
        # The file's size: exact for .npy, at most for .csv, and at most the raw pixels of the grid for a .png.
        self.size = size + len(self._header()) if suffix != ".png" else _grid_bytes(n, self.shape, columns)
        self.written = 0
        self._images: list[Tensor] = []

    def _header(self) -> bytes:
        """What the file starts with: the ``.npy`` header, the ``.csv`` column names, nothing for a ``.png``."""
        if self.path.suffix == ".npy":
            buffer = io.BytesIO()
            np.lib.format.write_array_header_1_0(buffer, {
                "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                "shape": (self.n, *self.shape)})
            return buffer.getvalue()
        if self.path.suffix == ".csv":
            return (",".join(f"x{i}" for i in range(self.shape[0])) + "\n").encode()
        return b""

    def plan(self) -> str:
        """One line saying, before any work, what will be written: the rows, their shape and the bytes."""
        rows = f"{self.n:,} sample{'s' if self.n != 1 else ''} of shape {self.shape}"
        if self.path.suffix == ".png":
            what = f"a grid of {rows}"
        else:
            what = f"{rows} (float32)" if self.path.suffix == ".npy" else f"{rows} as text"
        bound = "" if self.path.suffix == ".npy" else "at most "
        readable = f" ({byte_size(self.size)})" if self.size >= 1000 else ""
        return f"writing {what} to {self.path}: {bound}{self.size:,} bytes{readable}"

    def __enter__(self) -> SampleWriter:
        self._block = self._writing()
        return self._block.__enter__()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> bool | None:
        return self._block.__exit__(kind, error, traceback)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[SampleWriter]:
        with atomic_file(self.path) as self._file:
            self._file.write(self._header())
            yield self
            if self.written != self.n:  # raised inside the atomic block: the target is left as it was
                raise ValueError(f"{self.path}: {self.written} of {self.n} samples written")
            if self.path.suffix == ".png":
                self._file.write(png_bytes(image_grid(torch.cat(self._images), *self.value_range, self.columns)))

    def write(self, batch: Tensor) -> None:
        """Append the rows of ``batch`` [b, *shape]."""
        if tuple(batch.shape[1:]) != self.shape or self.written + len(batch) > self.n:
            raise ValueError(f"a batch of shape {tuple(batch.shape)} after {self.written} of {self.n} rows "
                             f"of shape {self.shape}")
        self.written += len(batch)
        if self.path.suffix == ".png":
            self._images.append(batch)
            return
        array = batch.detach().cpu().to(torch.float32).numpy()
        if self.path.suffix == ".npy":
            self._file.write(np.ascontiguousarray(array).tobytes())
        else:
            np.savetxt(self._file, array, fmt="%.9g", delimiter=",")


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
    """Write ``samples`` [n, *shape] to ``path`` at once (:class:`SampleWriter`)."""
    with SampleWriter(path, len(samples), tuple(samples.shape[1:]), value_range=value_range) as out:
        out.write(samples)
