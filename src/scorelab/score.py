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

from torch import Tensor

Score = Callable[..., Tensor]


def call_score(score: Score, x: Tensor, sigma: Tensor | None = None, cond: Any = None) -> Tensor:
    """``score(x)``, ``score(x, sigma)``, or either with ``cond=cond`` when a condition is given."""
    if sigma is None:
        return score(x) if cond is None else score(x, cond=cond)
    return score(x, sigma) if cond is None else score(x, sigma, cond=cond)
