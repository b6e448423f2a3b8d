"""What every sampler shares: the state handed to callbacks, and Tweedie's final denoising step.

Every sampler has the same shape, ``sampler(score, x, <noise levels>, *, ..., generator,
callback, cond) -> Tensor``. Samplers are pure: they never change ``x`` in place, keep no
state, run under ``torch.no_grad()`` and stay on ``x``'s device; ``x`` may have any shape
[B, *shape]. ``callback`` (if given) receives a :class:`StepInfo` after every step, which is
how trajectories and animations are recorded; ``cond`` is passed to the score untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from scorelab.core.noise import check_noise_levels
from scorelab.core.processes import denoised_from_score
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import per_sample


@dataclass(frozen=True)
class StepInfo:
    """The state a sampler hands to its callback after each step.

    Attributes:
        x: the samples after the step, [B, *shape].
        step: the global step index, from 0.
        sigma: the noise level the score was evaluated at (0 for unconditional scores).
        step_size: the step size ε (or α_i, or the drop in σ) used for this step.
        score: the score evaluated before the step, [B, *shape].
    """

    x: Tensor
    step: int
    sigma: float
    step_size: float
    score: Tensor


Callback = Callable[[StepInfo], None]


def steps_to_zero(sigmas: Tensor) -> list[tuple[float, float]]:
    """(σ, σ') for each step down a strictly decreasing grid, the last one down to σ' = 0.

    The grid becomes Python numbers once, so that the steps cost no device synchronisation.
    """
    levels = check_noise_levels(sigmas, strictly=True).tolist()
    return list(zip(levels, [*levels[1:], 0.0]))


def tweedie_denoise(score: Score, x: Tensor, sigma: float, *, step: int = 0, callback: Callback | None = None,
                    cond: Any = None) -> Tensor:
    """E[x_0 | x] = x + σ²·s(x, σ) for x = x_0 + σz (Tweedie's formula; Efron 2011).

    The last step of the samplers: it removes the remaining N(0, σ²I) noise.
    """
    sigmas = per_sample(sigma, x)
    grad = call_score(score, x, sigmas, cond)
    x = denoised_from_score(x, grad, sigmas)
    if callback is not None:
        callback(StepInfo(x, step, sigma, sigma**2, grad))
    return x
