"""Metrics: distances between sample sets beside their real-vs-real floors.

- :mod:`scorelab.metrics.samples`: W2 and friends on samples of any shape (each flattened), the
  W2 ratio and :func:`quality`.
"""

from scorelab.metrics.samples import (
    Metric,
    RatioReport,
    Sampler,
    default_metrics,
    energy_distance,
    fisher_divergence,
    floor_mean,
    mmd,
    mmd_bandwidths,
    quality,
    require_floor_repeats,
    sliced_wasserstein,
    w2_ratio,
    wasserstein2,
)

__all__ = ["Metric", "RatioReport", "Sampler", "default_metrics", "energy_distance", "fisher_divergence",
           "floor_mean", "mmd", "mmd_bandwidths", "quality", "require_floor_repeats", "sliced_wasserstein",
           "w2_ratio", "wasserstein2"]
