"""Seeded noise that follows the device and dtype of the tensor it perturbs.

Every draw is made on the generator's device and then moved to the data's, so a CPU
generator gives the same numbers whether the model runs on CPU or CUDA. A sampler's
normal draws may also come from a :class:`PerSampleGenerator`, whose rows are each
sample's own stream.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def derived_seed(seed: int, *keys: object) -> int:
    """A seed for the stream named by ``keys`` under ``seed`` (a sample's index, a rank): 64 bits of
    BLAKE2b of them all, so no two names share a stream, as seed + index and seed + 1 would."""
    text = ":".join(str(part) for part in (seed, *keys))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class PerSampleGenerator:
    """The noise of a batch whose row r is sample ``indices[r]`` of the set seeded by ``seed``.

    Row r of every normal draw comes from that sample's own ``torch.Generator``, seeded by
    :func:`derived_seed` (seed, index), so sample i depends on (seed, i) alone: not on the batch it is drawn in, nor on
    the process that draws it. (EDM's generate.py gives each image its own seed the same way; Karras
    et al. 2022.) A sampler takes it wherever it takes a generator; its normal draws go through
    :func:`randn` and :func:`randn_like`.

    Each sample's stream is read in blocks of about 256 numbers, one ``torch.randn`` call per sample
    and block rather than per sample and step; the block length depends only on the shape of a draw,
    so the numbers a sample gets do not depend on the batch either.
    """

    BLOCK = 256  # numbers per sample and refill

    def __init__(self, seed: int, indices: range | list[int]) -> None:
        self.seed = seed
        self.indices = list(indices)
        self._generators = [torch.Generator().manual_seed(derived_seed(seed, i)) for i in self.indices]
        self._block: Tensor | None = None  # [rows, draws, numel], the current block of every row's stream
        self._next = 0

    def randn(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
        """Standard normal draws [rows, *sample shape] on the CPU, row r from sample ``indices[r]``'s stream."""
        rows, sample_shape = shape[0], tuple(shape[1:])
        if rows != len(self.indices):
            raise ValueError(f"a draw of {rows} rows from a generator of {len(self.indices)} samples")
        numel = int(torch.Size(sample_shape).numel())
        block = self._block
        if block is None or self._next == block.shape[1] or block.shape[2] != numel or block.dtype != dtype:
            draws = max(1, self.BLOCK // max(numel, 1))
            block = torch.stack([torch.randn(draws, numel, generator=g, dtype=dtype) for g in self._generators])
            self._block, self._next = block, 0
        self._next += 1
        return block[:, self._next - 1].reshape(rows, *sample_shape)


AnyGenerator = torch.Generator | PerSampleGenerator


def _device(generator: torch.Generator | None, like: Tensor) -> torch.device:
    return generator.device if generator is not None else like.device


def randn(shape: tuple[int, ...], generator: AnyGenerator | None = None, *, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal draws of ``shape`` on ``device``, made on the generator's device (a per-sample
    generator's: the CPU)."""
    if isinstance(generator, PerSampleGenerator):
        return generator.randn(shape, dtype).to(device)
    draw_on = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_on, dtype=dtype).to(device)


def randn_like(x: Tensor, generator: AnyGenerator | None = None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator``."""
    if generator is None:
        return torch.randn_like(x)
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


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
