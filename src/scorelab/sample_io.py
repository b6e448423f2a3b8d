"""Writing samples to disk: ``.npy`` for any shape, ``.csv`` for rows of numbers, atomically."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from torch import Tensor

from scorelab.atomic import write_atomic
from scorelab.errors import ConfigError

SAMPLE_SUFFIXES = (".npy", ".csv")


def check_sample_path(path: Path) -> None:
    """A :class:`ConfigError` unless ``path`` ends in a suffix :func:`save_samples` writes."""
    if path.suffix not in SAMPLE_SUFFIXES:
        raise ConfigError(f"--out must end in {' or '.join(SAMPLE_SUFFIXES)}, got {path.name!r}")


def save_samples(samples: Tensor, path: str | Path) -> None:
    """Write ``samples`` [n, *shape] to ``path``: ``.npy`` as they are, ``.csv`` as rows x0, x1, … of [n, d]."""
    path = Path(path)
    check_sample_path(path)
    array = samples.numpy()
    if path.suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, array)
        payload = buffer.getvalue()
    else:
        if array.ndim != 2:
            raise ConfigError(f"a CSV holds rows of numbers, [n, d]; samples of shape {tuple(array.shape[1:])} "
                              "need --out FILE.npy")
        header = ",".join(f"x{i}" for i in range(array.shape[1]))
        rows = "\n".join(",".join(f"{v:.9g}" for v in row) for row in array)
        payload = f"{header}\n{rows}\n".encode()
    write_atomic(path, payload)
