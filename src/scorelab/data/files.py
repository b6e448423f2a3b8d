"""User data from ``.csv`` and ``.npy`` files, validated before use.

Every problem with a file (unreadable, not numeric, ragged, NaN/inf, too few
rows, wrong shape, empty) is a :class:`DataError` whose message names the file
and what to fix. Nothing here unpickles: ``.npy`` files are read with
``allow_pickle=False``, and memory-mapped first so a header that claims a
huge array cannot make us allocate it.

Class labels for a user's data (one integer per row or image, in the data's order) come from a
``.csv`` (one column, header optional), an ``.npy`` (a 1-D array of integers) or a ``.txt`` file (one
integer a line), checked the same way (:func:`load_labels`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scorelab.core.errors import DataError

SUFFIXES = (".csv", ".npy")
# A text file of one label a line is a one-column CSV.
LABEL_SUFFIXES = (".csv", ".npy", ".txt")


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


def _read_numbers(path: Path, suffixes: tuple[str, ...]) -> np.ndarray:
    """The numbers of an existing, non-empty file with one of ``suffixes``: an ``.npy`` array, or a text
    file's rows (:func:`_parse_csv`)."""
    if path.suffix not in suffixes:
        raise DataError(f"{path}: unsupported file type; use one of {', '.join(suffixes)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        return read_npy(path) if path.suffix == ".npy" else _parse_csv(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror})") from None


def load_file(path: str | Path) -> Tensor:
    """Read a ``.csv`` (header optional) or ``.npy`` file into a float32 tensor [n, d]."""
    path = Path(path)
    array = validate_array(_read_numbers(path, SUFFIXES), str(path))
    if np.abs(array).max() > np.finfo(np.float32).max:
        raise DataError(f"{path}: values beyond the float32 range (about ±3.4e38); rescale the data")
    return torch.from_numpy(array).float()


def _first(bad: np.ndarray) -> int:
    """The index of the first true entry of ``bad``."""
    return int(np.flatnonzero(bad)[0])


SPARSE_CLASSES = 1024  # the most classes counted from a label file that has fewer labels


def load_labels(path: str | Path, rows: int | None = None, classes: int = 0) -> Tensor:
    """Read one class label per row or image from a ``.csv``/``.npy``/``.txt`` file into an int64 tensor [n].

    Args:
        path: the label file (see the module docstring).
        rows: the number of rows or images of the data the labels belong to; None to skip that check.
        classes: the number of classes the labels must lie below; 0 for no bound.

    Every label must be an integer >= 0 (and < ``classes`` where given); anything else, as every
    problem with the file, is a :class:`DataError` naming the file and the first bad label's row.
    """
    path = Path(path)
    array = _read_numbers(path, LABEL_SUFFIXES)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DataError(f"{path}: expected one class label per row (one column), got shape {array.shape}")
    if len(array) == 0:
        raise DataError(f"{path}: holds no labels")
    integral = np.isfinite(array) & (array == np.round(array))
    if not integral.all():
        row = _first(~integral)
        raise DataError(f"{path}: label {array[row]} at row {row + 1} is not an integer; class labels are 0, 1, 2, ...")
    if (array < 0).any():
        row = _first(array < 0)
        raise DataError(f"{path}: label {array[row]:.0f} at row {row + 1} is negative; class labels are 0, 1, 2, ...")
    if classes > 0 and (array >= classes).any():
        row = _first(array >= classes)
        raise DataError(f"{path}: label {array[row]:.0f} at row {row + 1} is not below classes = {classes}; "
                        f"raise --classes or set it to 0 (from the data)")
    # Classes counted from the labels are 0 … max, and the class embedding has a row for each: a stray large id (a
    # year, a code) would size it. Gaps in the numbering are allowed, up to SPARSE_CLASSES classes.
    if classes == 0 and array.max() >= max(len(array), SPARSE_CLASSES):
        row = int(np.argmax(array))
        raise DataError(f"{path}: label {array[row]:.0f} at row {row + 1} would make {array[row] + 1:.0f} classes of "
                        f"{len(array)} labels; number the classes 0, 1, 2, ... (or give --classes)")
    if rows is not None and len(array) != rows:
        raise DataError(f"{path}: holds {len(array)} labels, but the data has {rows} rows or images; "
                        "give one label per row or image, in the data's order")
    return torch.from_numpy(array.astype(np.int64))
