"""User data from ``.csv`` and ``.npy`` files, validated before use.

Every problem with a file (unreadable, not numeric, ragged, NaN/inf, too few
rows, wrong shape, empty) is a :class:`DataError` whose message names the file
and what to fix. Nothing here unpickles: ``.npy`` files are read with
``allow_pickle=False``, and memory-mapped first so a header that claims a
huge array cannot make us allocate it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scorelab.core.errors import DataError

SUFFIXES = (".csv", ".npy")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The non-blank rows of a CSV file, each with its line number."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            return [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV file") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None


def _parse_csv(path: Path) -> np.ndarray:
    """Numbers from a CSV file; a first row with no numeric cell is a header and is skipped."""
    rows = _read_csv_rows(path)
    if not rows:
        raise DataError(f"{path}: the file is empty")
    if not any(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: the file has a header but no data rows")
    width = len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise DataError(f"{path}: ragged rows: line {line} has {len(row)} columns, expected {width}")
        for column, cell in enumerate(row, start=1):
            if not _is_number(cell):
                what = f"non-numeric cell {cell.strip()[:40]!r}" if cell.strip() else "empty cell"
                raise DataError(f"{path}: {what} at line {line}, column {column}; every data cell must be a number")
    return np.array([row for _, row in rows], dtype=np.float64)


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"  # np.savez


def read_npy(path: Path) -> np.ndarray:
    """The real numeric array of an ``.npy`` file as float64, without unpickling (see the module docstring)."""
    with path.open("rb") as handle:
        magic = handle.read(len(NPY_MAGIC))
    if magic.startswith(ZIP_MAGIC):
        raise DataError(f"{path}: holds an archive, not a single array; save one array with np.save")
    if magic != NPY_MAGIC:
        # np.load takes any other bytes for a pickle and says so, which misleads about a text file.
        raise DataError(f"{path}: not an .npy file (it does not start with NumPy's header); save it with np.save")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy's header parser lets ValueError, SyntaxError,
        # tokenize.TokenError, OverflowError, ... escape on corrupt bytes; each one means the same thing here.
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        raise DataError(f"{path}: not a readable .npy array ({reason})") from None
    if array.dtype.fields is not None or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DataError(f"{path}: expected a real numeric array, got dtype {array.dtype}")
    return np.array(array, dtype=np.float64)


def validate_array(array: np.ndarray, source: str) -> np.ndarray:
    """Check that ``array`` is [n, d] with n >= 2, d >= 1 and finite values; a 1-D array is one column."""
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataError(f"{source}: expected a 2-D array [n, d] (or images: [N, H, W] or [N, C, H, W] in an .npy), "
                        f"got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 1:
        raise DataError(f"{source}: need at least 2 rows and 1 column, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(f"{source}: contains NaN or infinite values; remove or impute them")
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
    try:
        array = _parse_csv(path) if path.suffix == ".csv" else read_npy(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror})") from None
    array = validate_array(array, str(path))
    if np.abs(array).max() > np.finfo(np.float32).max:
        raise DataError(f"{path}: values beyond the float32 range (about ±3.4e38); rescale the data")
    return torch.from_numpy(array).float()
