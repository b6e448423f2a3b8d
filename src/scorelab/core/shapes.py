"""Batches of any shape: ``[B, *shape]`` with one helper for broadcasting and one for reducing.

Points are ``[B, D]``, images ``[B, C, H, W]``, waveforms ``[B, C, L]``. Per-sample
quantities (a noise level, a loss term) are ``[B]``; :func:`append_dims` lines them up
with the batch (k-diffusion's ``append_dims``), and :func:`batch_sum` reduces a batch
over every dimension but the first.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scorelab.core.errors import DataError


def append_dims(value: Tensor, ndim: int) -> Tensor:
    """``value`` [B] (or [B, ...]) with trailing singleton dimensions up to ``ndim``, to broadcast over a batch."""
    missing = ndim - value.ndim
    if missing < 0:
        raise ValueError(f"cannot broadcast a tensor of {value.ndim} dimensions to {ndim}")
    return value.reshape(*value.shape, *([1] * missing))


def batch_sum(x: Tensor) -> Tensor:
    """The sum of each sample's entries: [B, *shape] → [B]."""
    return x.flatten(1).sum(dim=1)


def per_sample(sigma: float | Tensor, x: Tensor) -> Tensor:
    """A noise level for each sample of ``x``: shape [B], ``x``'s dtype and device.

    ``sigma`` is a number or a tensor of one or B values.
    """
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    return sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma


def require_batch(x: Tensor) -> None:
    """A :class:`DataError` unless ``x`` has a batch dimension and at least one more."""
    if x.ndim < 2:
        raise DataError(f"x must be a batch of shape [B, D] or [B, *shape], got shape {tuple(x.shape)}")
