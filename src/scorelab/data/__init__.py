"""Data: toy generators by name, user files, exact Gaussian mixtures, and the registry of data sets."""

from __future__ import annotations

import math

from torch import Tensor

from scorelab.data.files import load_file
from scorelab.data.mixture import GaussianMixture
from scorelab.data.sources import DATA, DataPart, data_part, is_file_source, load
from scorelab.data.toy import DATASETS, DEFAULT_GMM, EXACT_DENSITIES

__all__ = ["DATA", "DATASETS", "DEFAULT_GMM", "ENTROPY", "EXACT_DENSITIES", "DataPart", "GaussianMixture",
           "data_part", "is_file_source", "load", "load_file", "reference_nll"]

# Differential entropies in nats of the suite's uniform densities: checkerboard is uniform on
# 8 squares of side 2, area 32.
ENTROPY = {"checkerboard": math.log(32.0)}


def reference_nll(name: str, x: Tensor) -> float | None:
    """The data's own mean NLL in nats at ``x``: exact for analytic densities, the entropy for
    uniform ones, None where unknown."""
    if name in EXACT_DENSITIES:
        return -EXACT_DENSITIES[name].log_prob(x.double()).mean().item()
    return ENTROPY.get(name)
