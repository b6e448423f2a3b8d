"""Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1).

A consistency model f(y, σ) maps a point of the probability-flow ODE at level σ straight to the
trajectory's end at σ_min (:mod:`scorelab.objectives.consistency`). One evaluation turns the prior
into a sample; a few more alternate between adding noise back and mapping down again:

    y = f(x, σ_1),   then for σ = σ_2, …, σ_K:   x = y + √(σ² − σ_min²)·z,  y = f(x, σ),

where x at σ_1 is the prior's draw. The sample y is a draw at σ_min, so re-noising it to σ adds
variance σ² − σ_min², not σ². Conventions as in :mod:`scorelab.sampling.steps`; the callback gets
``x`` = y after each step, ``sigma`` = σ, ``step_size`` = σ − σ_min and ``score`` = s(x, σ).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError
from scorelab.core.noise import check_noise_levels
from scorelab.core.rng import AnyGenerator, randn_like
from scorelab.core.processes import call_denoiser
from scorelab.core.score import Score
from scorelab.core.shapes import per_sample
from scorelab.sampling.steps import Callback, StepInfo


@torch.no_grad()
def consistency_sampling(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    sigma_min: float,
    generator: AnyGenerator | None = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): one network evaluation per level.

    Args:
        score: the consistency model, whose denoiser view is f (a ``Preconditioned`` model under the
            ``consistency`` parameterisation); a plain score is used through D = y + σ²·s.
        x: the prior's draw at σ_1 = ``sigmas[0]``, N(0, σ_1²·I) in VE coordinates, [B, *shape].
        sigmas: the levels σ_1 > σ_2 > … > σ_K at which f is evaluated; ``[σ_max]`` is one-step sampling.
        sigma_min: σ_min, the level f maps to (the model's boundary); every σ must be at least σ_min.
        generator: the noise added back before each level after the first.
    """
    sigmas = check_noise_levels(sigmas, strictly=True)
    # σ_min as the grid's dtype rounds it, so that a float32 grid may end at a float32 σ_min.
    sigma_min = torch.tensor(sigma_min, dtype=sigmas.dtype).item()
    levels = sigmas.tolist()
    if levels[-1] < sigma_min:
        raise ConfigError(
            f"every consistency sampling level must be at least sigma_min = {sigma_min:g}, got {levels[-1]:g}"
        )
    for step, sigma in enumerate(levels):
        if step > 0:
            # x holds a draw at σ_min: noise of variance σ² − σ_min² brings it to level σ.
            x = x + math.sqrt(sigma**2 - sigma_min**2) * randn_like(x, generator)
        x, grad = call_denoiser(score, x, per_sample(sigma, x), cond)
        if callback is not None:
            callback(StepInfo(x, step, sigma, sigma - sigma_min, grad))
    return x
