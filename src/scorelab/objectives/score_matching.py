"""Score matching without noise: Hyvärinen's exact objective and sliced score matching.

Pure functions ``(score, x, ...) -> scalar loss``; the score is called as ``score(x)``
(``score(x, cond=cond)`` with a condition), the loss sums over every non-batch dimension
and averages over the batch, and ``x`` is never changed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from scorelab.core.divergence import differentiable, hutchinson_trace, score_and_trace
from scorelab.core.errors import ConfigError, require_positive_int
from scorelab.core.rng import rademacher, randn_like
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import batch_sum, require_batch
from scorelab.objectives.settings import PROJECTIONS

TRACES = ("exact", "hutchinson")


def exact_score_matching(
    score: Score,
    x: Tensor,
    *,
    trace: str = "exact",
    n_projections: int = 1,
    generator: torch.Generator | None = None,
    cond: Any = None,
) -> Tensor:
    """Hyvärinen's score-matching objective (Hyvärinen 2005, Theorem 1):

        J(θ) = E_p[ tr(∇ₓ s(x)) + ½‖s(x)‖² ],

    equal to ½E‖s(x) − ∇ₓ log p(x)‖² up to a constant that does not depend on s.

    Args:
        score: called as ``score(x)``; returns the shape of x.
        x: data, [B, D] or [B, *shape], the trace running over all D = prod(shape) coordinates.
        trace: ``"exact"`` computes tr ∇ₓs exactly (in closed form for a module that knows
            it, such as ``sl.models.MLP``, even inside a DDP or ``torch.compile`` wrapper;
            otherwise with D reverse passes); ``"hutchinson"`` estimates it as E_v[vᵀ∇ₓs v]
            with ``n_projections`` Rademacher vectors (Hutchinson 1989), which is
            :func:`sliced_score_matching` with variance reduction: a few passes, whatever D.
        n_projections, generator: used by ``trace="hutchinson"`` only.
        cond: passed to the score.
    """
    require_batch(x)
    if trace not in TRACES:
        raise ConfigError(f"unknown trace {trace!r}; use one of: {', '.join(TRACES)}")
    if trace == "hutchinson":
        return sliced_score_matching(score, x, n_projections=n_projections, variance_reduction=True,
                                     generator=generator, cond=cond)
    s, jacobian_trace = score_and_trace(score, x, cond)
    return (jacobian_trace + 0.5 * batch_sum(s.pow(2))).mean()


def random_projections(
    x: Tensor, n_projections: int, projection: str = "rademacher", generator: torch.Generator | None = None
) -> Tensor:
    """``n_projections`` random directions v for each sample of ``x``, shape [M, B, *shape], with E[vvᵀ] = I.

    - ``"rademacher"``: independent ±1 entries (lowest variance for vᵀAv).
    - ``"gaussian"``: v ~ N(0, I).
    - ``"sphere"``: uniform on the sphere of radius √D, so ‖v‖² = D exactly.
      (The seed's unit vectors have E[vvᵀ] = I/D, which scales the objective down.)
    """
    require_positive_int("n_projections", n_projections)
    if projection not in PROJECTIONS:
        raise ConfigError(f"unknown projection {projection!r}; use one of: {', '.join(PROJECTIONS)}")
    shape = (n_projections, *x.shape)
    if projection == "rademacher":
        return rademacher(shape, x, generator)
    gaussian = randn_like(x.new_empty(shape), generator)
    if projection == "gaussian":
        return gaussian
    norms = gaussian.flatten(2).norm(dim=-1).reshape(n_projections, x.shape[0], *([1] * (x.ndim - 1)))
    return gaussian * (x[0].numel() ** 0.5 / norms)


def sliced_score_matching(
    score: Score,
    x: Tensor,
    *,
    n_projections: int = 1,
    projection: str = "rademacher",
    variance_reduction: bool = False,
    generator: torch.Generator | None = None,
    cond: Any = None,
) -> Tensor:
    """Sliced score matching (Song, Garg, Shi & Ermon 2019, eq. 7 and SSM-VR, eq. 8):

        SSM:     E_v E_p[ vᵀ ∇ₓs(x) v + ½ (vᵀ s(x))² ]
        SSM-VR:  E_v E_p[ vᵀ ∇ₓs(x) v ] + ½ E_p‖s(x)‖²

    With E[vvᵀ] = I both equal Hyvärinen's objective in expectation; SSM-VR
    replaces ½(vᵀs)² by its expectation over v, which lowers the variance.
    vᵀ∇ₓs v is one vector-Jacobian product per projection, so a step costs a few
    network passes whatever D (the exact trace needs the whole Jacobian diagonal).

    Args:
        score: called as ``score(x)``; returns the shape of x.
        x: data, [B, D] or [B, *shape]. It is not modified.
        n_projections: M directions per sample; the loss averages over them.
        projection: ``"rademacher"``, ``"gaussian"`` or ``"sphere"`` (see :func:`random_projections`).
        variance_reduction: use SSM-VR.
        generator: the source of the projections.
        cond: passed to the score.
    """
    require_batch(x)
    directions = random_projections(x, n_projections, projection, generator)
    with torch.enable_grad():
        x = differentiable(x)
        s = call_score(score, x, cond=cond)
        curvature = torch.stack([hutchinson_trace(s, x, v, create_graph=True) for v in directions])
    if variance_reduction:
        return curvature.mean() + 0.5 * batch_sum(s.pow(2)).mean()
    return curvature.mean() + 0.5 * (directions * s).flatten(2).sum(dim=2).pow(2).mean()
