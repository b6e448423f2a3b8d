"""Data: toy generators by name, user files, and exact Gaussian mixtures."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from scorelab.data.files import SUFFIXES, load_file
from scorelab.data.mixture import GaussianMixture
from scorelab.data.toy import DATASETS, DEFAULT_GMM, EXACT_DENSITIES
from scorelab.errors import DataError, require_positive_int

__all__ = ["DATASETS", "DEFAULT_GMM", "ENTROPY", "EXACT_DENSITIES", "GaussianMixture", "is_file_source", "load",
           "load_file", "reference_nll"]

# Differential entropies in nats of the suite's uniform densities: checkerboard is uniform on
# 8 squares of side 2, area 32.
ENTROPY = {"checkerboard": math.log(32.0)}


def reference_nll(name: str, x: Tensor) -> float | None:
    """The data's own mean NLL in nats at ``x``: exact for analytic densities, the entropy for
    uniform ones, None where unknown."""
    if name in EXACT_DENSITIES:
        return -EXACT_DENSITIES[name].log_prob(x.double()).mean().item()
    return ENTROPY.get(name)


def is_file_source(name_or_path: str | Path) -> bool:
    """True when ``name_or_path`` names a data file rather than a toy data set."""
    return str(name_or_path) not in DATASETS and Path(name_or_path).suffix in SUFFIXES


def load(name_or_path: str | Path, n: int | None = None, *, generator: torch.Generator | None = None) -> Tensor:
    """Load ``n`` points from a named toy data set or a ``.csv``/``.npy`` file.

    Args:
        name_or_path: a name in :data:`DATASETS` (e.g. ``"swiss_roll"``) or a file path.
        n: number of points. Required for named data sets (default 10 000); for a
            file, ``None`` returns every row and a smaller ``n`` a random subset.
        generator: the source of randomness; the same seed gives the same data.

    Returns:
        A float32 tensor of shape [n, d].
    """
    if n is not None:
        require_positive_int("n", n)
    name = str(name_or_path)
    if name in DATASETS:
        return DATASETS[name](10_000 if n is None else n, generator)
    if not is_file_source(name):
        known = ", ".join(sorted(DATASETS))
        raise DataError(f"unknown dataset {name!r}; use one of: {known}, or a .csv/.npy file")
    data = load_file(name)
    if n is None:
        return data
    if n > len(data):
        raise DataError(f"{name}: asked for {n} points but the file has {len(data)} rows")
    return data[torch.randperm(len(data), generator=generator)[:n]]
