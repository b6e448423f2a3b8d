"""User data from ``.csv`` and ``.npy`` files, validated before use.

Nothing here unpickles: ``.npy`` files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scorelab.errors import DataError

SUFFIXES = (".csv", ".npy")


def _parse_csv(path: Path) -> np.ndarray:
    try:
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    if not rows:
        raise DataError(f"{path}: the file is empty")

    def is_number(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    if not all(is_number(cell) for cell in rows[0]):
        rows = rows[1:]  # a header row
    if not rows:
        raise DataError(f"{path}: the file has a header but no data rows")
    width = len(rows[0])
    for line, row in enumerate(rows, start=1):
        if len(row) != width:
            raise DataError(f"{path}: ragged rows: data row {line} has {len(row)} columns, expected {width}")
        for cell in row:
            if not is_number(cell):
                raise DataError(f"{path}: non-numeric cell {cell.strip()[:40]!r} in data row {line}")
    return np.array(rows, dtype=np.float64)


def _parse_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DataError(f"{path}: expected a real numeric array, got dtype {array.dtype}")
    return array.astype(np.float64)


def validate_array(array: np.ndarray, source: str) -> np.ndarray:
    """Check that ``array`` is [n, d] with n >= 2, d >= 1 and finite values."""
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataError(f"{source}: expected a 2-D array [n, d], got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 1:
        raise DataError(f"{source}: need at least 2 rows and 1 column, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(f"{source}: contains NaN or infinite values")
    return array


def load_file(path: str | Path) -> Tensor:
    """Read a ``.csv`` (header optional) or ``.npy`` file into a float32 tensor [n, d]."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    array = _parse_csv(path) if path.suffix == ".csv" else _parse_npy(path)
    return torch.from_numpy(validate_array(array, str(path))).float()
