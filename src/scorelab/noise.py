"""Noise-level (σ) schedules for noise-conditional score models."""

from __future__ import annotations

import torch
from torch import Tensor

from scorelab.errors import ConfigError, require_positive, require_positive_int


def geometric_sigmas(sigma_max: float, sigma_min: float, n_levels: int) -> Tensor:
    """σ_1 > … > σ_L, a geometric sequence from ``sigma_max`` to ``sigma_min``.

    σ_i = σ_1 · (σ_L/σ_1)^((i−1)/(L−1))  (Song & Ermon 2019, Sec. 4.2).
    Returns a float32 tensor [L], sorted from largest to smallest.
    """
    require_positive("sigma_max", sigma_max)
    require_positive("sigma_min", sigma_min)
    require_positive_int("n_levels", n_levels)
    if sigma_min > sigma_max:
        raise ConfigError(f"sigma_min ({sigma_min}) must not exceed sigma_max ({sigma_max})")
    if n_levels == 1:
        return torch.tensor([float(sigma_max)])
    ratio = torch.linspace(0.0, 1.0, n_levels, dtype=torch.float64)
    return (sigma_max * (sigma_min / sigma_max) ** ratio).float()
