"""Data: toy generators by name, user files, exact Gaussian mixtures, and the registry of data sets.

:data:`DATA` (:mod:`scorelab.data.sources`) registers each data set by name with its settings
(:mod:`scorelab.data.settings`, without torch). The names below load on first use (:mod:`scorelab.core.lazy`).
"""

from __future__ import annotations

from scorelab.core.lazy import lazy_package

_SOURCES = "scorelab.data.sources"
_TOY = "scorelab.data.toy"
_OBJECTS = {
    "DATA": _SOURCES,
    "DATASETS": _TOY,
    "DEFAULT_GMM": _TOY,
    "ENTROPY": _TOY,
    "EXACT_DENSITIES": _TOY,
    "DataPart": _SOURCES,
    "GaussianMixture": "scorelab.data.mixture",
    "data_part": _SOURCES,
    "is_file_source": _SOURCES,
    "load": _SOURCES,
    "load_file": "scorelab.data.files",
    "reference_nll": _TOY,
}
__all__ = sorted([*_OBJECTS])
__getattr__, __dir__ = lazy_package(__name__, _OBJECTS)
