"""Seeded noise that follows the device and dtype of the tensor it perturbs.

Every draw is made on the generator's device and then moved to the data's, so a CPU
generator gives the same numbers whether the model runs on CPU or CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _device(generator: torch.Generator | None, like: Tensor) -> torch.device:
    return generator.device if generator is not None else like.device


def randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator``."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def randint(high: int, size: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniform integers in [0, high) of shape [size], on ``like``'s device."""
    return torch.randint(0, high, (size,), generator=generator, device=_device(generator, like)).to(like.device)


def rand(size: int, like: Tensor, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Uniform numbers in [0, 1) of shape [size], on ``like``'s device (``dtype`` defaults to ``like``'s)."""
    dtype = dtype or like.dtype
    return torch.rand(size, generator=generator, device=_device(generator, like), dtype=dtype).to(like.device)


def rademacher(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Independent ±1 entries of ``shape``, with ``like``'s dtype and device: E[vvᵀ] = I (Hutchinson 1989)."""
    bits = torch.randint(0, 2, shape, generator=generator, device=_device(generator, like))
    return (2 * bits - 1).to(dtype=like.dtype, device=like.device)
