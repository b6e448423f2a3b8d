"""Metrics: distances between sample sets beside their real-vs-real floors.

- :mod:`scorelab.metrics.samples`: W2 and friends on samples of any shape (each flattened), the
  W2 ratio and :func:`quality`.
- :mod:`scorelab.metrics.features`: for images, distances in a classifier's features (FD, KID,
  precision and recall, memorisation, class coverage).
- :mod:`scorelab.metrics.audio`: for waveforms, the log-mel and multi-resolution STFT distances to a
  reference and the real-time factor (imported from there: they need the mel features).
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
