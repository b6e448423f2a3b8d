"""The one callable everything is built around: a *score* ``s(x, sigma, cond=None) -> Tensor``.

- ``x`` is a batch ``[B, *shape]``; the score has the same shape.
- ``sigma`` is a tensor [B] of per-sample noise levels. Unconditional scores accept it
  and ignore it; the single-level objectives call them as ``score(x)``.
- ``cond`` is an optional condition (class labels, a spectrogram), one row per sample.
  Objectives and samplers pass it through untouched, as the keyword ``cond=``, and only
  when one is given, so a plain ``lambda x, sigma: ...`` is a score too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Score = Callable[..., Tensor]


def call_score(score: Score, x: Tensor, sigma: Tensor | None = None, cond: Any = None) -> Tensor:
    """``score(x)``, ``score(x, sigma)``, or either with ``cond=cond`` when a condition is given."""
    if sigma is None:
        return score(x) if cond is None else score(x, cond=cond)
    return score(x, sigma) if cond is None else score(x, sigma, cond=cond)


def batch_invariant(score: Score, rows: int = 16) -> Score:
    """``score`` evaluated on its batch padded to a multiple of ``rows`` rows (copies of the first), the
    padding dropped from the result.

    Why: on the CPU, how a row is computed can depend on the batch around it. MKL's matrix product
    computes the rows of a ragged last block with other kernels than those of full blocks, and PyTorch
    runs a 1×1 convolution of fewer than 16 images on one thread as a matrix product, but through
    oneDNN otherwise. Either would change one sample's score in its last bits with the batch it is
    computed in. Padded to whole blocks of 16, each row is computed the same way in any batch, and a
    sample drawn with a :class:`~scorelab.core.rng.PerSampleGenerator` is the same bit for bit
    (``tests/test_sample_batches.py`` checks it for the MLP and the U-Net).
    """

    def padded(x: Tensor, sigma: Tensor | None = None, cond: Any = None) -> Tensor:
        batch, extra = x.shape[0], -x.shape[0] % rows
        if extra == 0:
            return call_score(score, x, sigma, cond)

        def pad(value: Any) -> Any:
            if not isinstance(value, Tensor) or value.ndim == 0 or value.shape[0] != batch:
                return value
            return torch.cat([value, value[:1].expand(extra, *value.shape[1:])])

        return call_score(score, pad(x), pad(sigma), pad(cond))[:batch]

    return padded
