"""User data files: good files load, every malformed file is a DataError, never a crash or a hang."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scorelab as sl
from scorelab.core.errors import DataError
from scorelab.data import load_file


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def save_npy(directory: Path, name: str, array: np.ndarray) -> Path:
    path = directory / name
    with path.open("wb") as handle:  # np.save would append .npy to other suffixes
        np.save(handle, array)
    return path


@pytest.mark.parametrize("content", ["x,y,z\n1,2,3\n4,5,6.5\n", "1,2,3\n4,5,6.5\n",
                                     "\ufeffx,y,z\r\n1,2,3\r\n\r\n4,5,6.5\r\n"])
def test_csv_with_or_without_header(tmp_path, content):
    x = load_file(write(tmp_path, "data.csv", content))
    assert torch.equal(x, torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]))


def test_npy_two_and_one_dimensional(tmp_path):
    array = np.arange(12, dtype=np.int64).reshape(4, 3)
    assert torch.equal(load_file(save_npy(tmp_path, "a.npy", array)), torch.from_numpy(array).float())
    assert load_file(save_npy(tmp_path, "b.npy", np.arange(5.0))).shape == (5, 1)


def test_load_takes_a_seeded_subset_of_a_file(tmp_path):
    path = save_npy(tmp_path, "a.npy", np.arange(200.0).reshape(100, 2))
    first = sl.data.load(path, 10, generator=torch.Generator().manual_seed(0))
    assert first.shape == (10, 2)
    assert torch.equal(first, sl.data.load(path, 10, generator=torch.Generator().manual_seed(0)))
    assert sl.data.load(path).shape == (100, 2)
    with pytest.raises(DataError, match="asked for 101"):
        sl.data.load(path, 101)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "1,2\n3,abc\n", "non-numeric cell 'abc' at line 2, column 2"),
        ("a.csv", "1,2\n3,\n", "empty cell at line 2"),
        ("a.csv", "1,2\n3,4,5\n", "ragged rows: line 2 has 3 columns"),
        ("a.csv", "1,2\nnan,4\n", "NaN or infinite"),
        ("a.csv", "1,2\ninf,4\n", "NaN or infinite"),
        ("a.csv", "1,2\n1e300,4\n", "float32 range"),
        ("a.csv", "x,y\n1,2\n", "at least 2 rows"),
        ("a.csv", "x,y\n", "header but no data rows"),
        ("a.csv", "", "empty"),
        ("a.csv", "\n\n \n", "empty"),
        ("a.csv", b"\xff\xfe\x00bad", "not a UTF-8"),
        ("a.npy", b"", "empty"),
        ("a.npy", b"not an array at all", "not an .npy file"),
        ("a.npy", "1,2\n3,4\n", "not an .npy file"),  # text, which numpy would call a pickle
        ("a.npy", b"\x93NUMPY\x01\x00\xff\xff{broken", "not a readable .npy"),
        ("a.txt", "1,2\n", "unsupported file type"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, name, content, message):
    with pytest.raises(DataError, match=message):
        load_file(write(tmp_path, name, content))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 2, 2)), "expected a 2-D array"),
        (np.zeros((1, 3)), "at least 2 rows"),
        (np.zeros((3, 0)), "at least 2 rows and 1 column"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN or infinite"),
        (np.array(["a", "b"]), "real numeric"),
        (np.array([1 + 2j, 3j]), "real numeric"),
        (np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "i4"), ("b", "f8")]), "real numeric"),
        (np.array(3.0), "expected a 2-D array"),
    ],
)
def test_bad_arrays_give_clear_errors(tmp_path, array, message):
    with pytest.raises(DataError, match=message):
        load_file(save_npy(tmp_path, "a.npy", array))


def test_pickles_and_archives_are_refused(tmp_path):
    with pytest.raises(DataError, match="not a readable"):
        load_file(save_npy(tmp_path, "a.npy", np.array([{"a": 1}, None], dtype=object)))
    archive = tmp_path / "a.npy"
    with archive.open("wb") as handle:
        np.savez(handle, x=np.zeros((3, 2)))
    with pytest.raises(DataError, match="archive"):
        load_file(archive)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_file(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="unknown dataset"):
        sl.data.load(tmp_path / "missing.parquet")


FAST = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
CSV_PIECES = st.sampled_from(["1", "-2.5", "3e2", "nan", "inf", "x", "", " ", ",", ",,", "\n", "\r\n", '"', '"1,2"',
                              "\x00", "é", "1_0", "0x1", "1e400", "\ufeff"])


def _accepts_or_refuses_cleanly(name: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory), name, content)
        try:
            x = load_file(path)
        except DataError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            return
        assert x.ndim == 2 and x.shape[0] >= 2 and x.shape[1] >= 1 and torch.isfinite(x).all()


@FAST
@given(st.lists(CSV_PIECES, max_size=60).map("".join))
def test_generated_csv_text_never_crashes(text):
    _accepts_or_refuses_cleanly("data.csv", text.encode())


@FAST
@given(st.binary(max_size=300))
def test_generated_csv_bytes_never_crash(content):
    _accepts_or_refuses_cleanly("data.csv", content)


def _npy_bytes(array: np.ndarray) -> bytes:
    with tempfile.TemporaryFile() as handle:
        np.save(handle, array)
        handle.seek(0)
        return handle.read()


VALID_NPY = _npy_bytes(np.arange(12.0).reshape(6, 2))


@FAST
@given(st.integers(0, len(VALID_NPY)), st.binary(max_size=40), st.integers(0, len(VALID_NPY)))
def test_corrupted_npy_never_crashes(start, replacement, cut):
    # Overwrite part of a valid file (header included) and truncate it somewhere.
    content = (VALID_NPY[:start] + replacement + VALID_NPY[start + len(replacement):])[: max(cut, start)]
    _accepts_or_refuses_cleanly("data.npy", content)


@FAST
@given(st.binary(max_size=200))
def test_generated_npy_bytes_never_crash(content):
    _accepts_or_refuses_cleanly("data.npy", b"\x93NUMPY" + content)
