"""Seeded noise that follows the device and dtype of the tensor it perturbs."""

from __future__ import annotations

import torch
from torch import Tensor


def randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator``.

    The noise is drawn on the generator's device and moved to ``x``'s, so a CPU
    generator gives the same numbers whether the model runs on CPU or CUDA.
    """
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def randint(high: int, size: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniform integers in [0, high) of shape [size], on ``like``'s device."""
    device = generator.device if generator is not None else like.device
    return torch.randint(0, high, (size,), generator=generator, device=device).to(like.device)
