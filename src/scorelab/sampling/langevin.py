"""Gradient ascent and the Langevin family of samplers, predictor-corrector included.

The conventions of every sampler are in :mod:`scorelab.sampling.steps`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError, require_positive, require_positive_int
from scorelab.core.noise import check_noise_levels
from scorelab.core.rng import randn_like
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import per_sample
from scorelab.sampling.steps import Callback, StepInfo, tweedie_denoise


def _langevin_step(x: Tensor, grad: Tensor, step_size: float | Tensor, noise: Tensor) -> Tensor:
    """One Langevin update in the house convention: x + (ε/2)·s(x) + √ε·z."""
    return x + 0.5 * step_size * grad + step_size**0.5 * noise


@torch.no_grad()
def gradient_ascent(
    score: Score, x: Tensor, *, n_steps: int, step_size: float, callback: Callback | None = None, cond: Any = None
) -> Tensor:
    """Noise-free ascent of log p: x ← x + ε·s(x) (the seed's ``sample_simple``).

    This finds modes, not samples: every point climbs to a local maximum of p.
    """
    require_positive_int("n_steps", n_steps)
    require_positive("step_size", step_size)
    for step in range(n_steps):
        grad = call_score(score, x, cond=cond)
        x = x + step_size * grad
        if callback is not None:
            callback(StepInfo(x, step, 0.0, step_size, grad))
    return x


@torch.no_grad()
def langevin(
    score: Score,
    x: Tensor,
    *,
    n_steps: int,
    step_size: float,
    decay: float = 1.0,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """Unadjusted Langevin dynamics (Welling & Teh 2011; Song & Ermon 2019, eq. 4).

        x_{t+1} = x_t + (ε_t/2)·s(x_t) + √ε_t · T · z_t,   z_t ~ N(0, I),   ε_{t+1} = decay·ε_t.

    With a fixed small ε and many steps it samples p(x) (for T = 1). The seed's
    version drew z uniformly on [0, 1), which adds a drift of 0.5·√ε per axis.
    """
    require_positive_int("n_steps", n_steps)
    require_positive("step_size", step_size)
    require_positive("decay", decay)
    if not temperature >= 0:
        raise ConfigError(f"temperature must be >= 0 (1 samples p exactly), got {temperature}")
    epsilon = step_size
    for step in range(n_steps):
        grad = call_score(score, x, cond=cond)
        x = _langevin_step(x, grad, epsilon, temperature * randn_like(x, generator))
        if callback is not None:
            callback(StepInfo(x, step, 0.0, epsilon, grad))
        epsilon *= decay
    return x


@torch.no_grad()
def annealed_langevin(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    n_steps_each: int,
    step_size: float,
    denoise: bool = True,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

    For each level σ_1 > … > σ_L, run ``n_steps_each`` Langevin steps with

        α_i = ε · σ_i² / σ_L²,   x ← x + (α_i/2)·s(x, σ_i) + √α_i · z,   z ~ N(0, I).

    With ``denoise`` a last Tweedie step x ← x + σ_L²·s(x, σ_L) removes the
    remaining N(0, σ_L²) noise (Jolicoeur-Martineau et al. 2021; Song & Ermon 2020).

    Args:
        score: ``score(x, sigma)`` with ``sigma`` of shape [B].
        x: starting points [B, *shape], e.g. uniform noise or N(0, σ_1²I).
        sigmas: noise levels sorted from largest to smallest.
        n_steps_each: Langevin steps per level (T).
        step_size: ε, the step size at the smallest level; ``sl.noise.ncsnv2_step_size``
            chooses it for a given ``n_steps_each`` (Song & Ermon 2020, technique 4).
        denoise: end with the Tweedie step.
        generator: the source of the Langevin noise.
        callback: receives a :class:`StepInfo` after every step, the denoising step included.
        cond: passed to the score.
    """
    require_positive_int("n_steps_each", n_steps_each)
    require_positive("step_size", step_size)
    sigmas = check_noise_levels(sigmas).tolist()
    sigma_min = sigmas[-1]
    step = 0
    for sigma in sigmas:
        alpha = step_size * (sigma / sigma_min) ** 2
        sigma_vec = per_sample(sigma, x)
        for _ in range(n_steps_each):
            grad = call_score(score, x, sigma_vec, cond)
            x = _langevin_step(x, grad, alpha, randn_like(x, generator))
            if callback is not None:
                callback(StepInfo(x, step, sigma, alpha, grad))
            step += 1
    return tweedie_denoise(score, x, sigma_min, step=step, callback=callback, cond=cond) if denoise else x


@torch.no_grad()
def predictor_corrector(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    n_steps_each: int = 1,
    snr: float = 0.16,
    denoise: bool = True,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """Predictor-corrector sampling of the VE SDE (Song et al. 2021, Algorithm 4 / ``score_sde``).

    For each level σ_i (σ_{L+1} = 0), first ``n_steps_each`` Langevin corrector steps

        ε = 2·(r·‖z‖/‖s‖)²,   x ← x + ε·s(x, σ_i) + √(2ε)·z,

    where r is the signal-to-noise ratio ``snr`` and ‖·‖ are the batch means of the
    per-sample norms, as in ``score_sde``'s ``LangevinCorrector``. In the house form
    x + (α/2)·s + √α·z this is α = 2ε, which :class:`StepInfo` reports. Per-sample
    norms would blow the step up wherever s ≈ 0, a real risk in low dimension.
    Then one reverse-diffusion predictor step

        x ← x + (σ_i² − σ_{i+1}²)·s(x, σ_i) + √(σ_i² − σ_{i+1}²)·z.

    The last predictor step (σ_{L+1} = 0) adds σ_L²·s(x, σ_L): with ``denoise`` its
    noise is left out, which makes it the Tweedie denoising step.

    Args:
        score: ``score(x, sigma)`` with ``sigma`` of shape [B].
        x: starting points [B, *shape], normally N(0, σ_1²I), the prior of the VE SDE.
        sigmas: noise levels sorted from largest to smallest (``score_sde`` uses 1000).
        n_steps_each: corrector steps per level (M; 1 in ``score_sde``).
        snr: the corrector's signal-to-noise ratio r (0.16 for CIFAR-10 in ``score_sde``).
        denoise: return the noise-free mean of the last predictor step.
        generator: the source of the noise.
        callback: receives a :class:`StepInfo` after every corrector and predictor step.
        cond: passed to the score.
    """
    require_positive_int("n_steps_each", n_steps_each)
    require_positive("snr", snr)
    sigmas = check_noise_levels(sigmas).tolist()
    step = 0
    for sigma, next_sigma in zip(sigmas, [*sigmas[1:], 0.0]):
        sigma_vec = per_sample(sigma, x)
        for _ in range(n_steps_each):
            grad = call_score(score, x, sigma_vec, cond)
            noise = randn_like(x, generator)
            ratio = noise.flatten(1).norm(dim=1).mean() / grad.flatten(1).norm(dim=1).mean()
            alpha = 4 * (snr * ratio) ** 2  # a tensor on x's device: no synchronisation per step
            x = _langevin_step(x, grad, alpha, noise)
            if callback is not None:
                callback(StepInfo(x, step, sigma, alpha.item(), grad))
            step += 1
        variance_drop = sigma**2 - next_sigma**2
        grad = call_score(score, x, sigma_vec, cond)
        x = x + variance_drop * grad
        if not (denoise and next_sigma == 0.0):
            x = x + variance_drop**0.5 * randn_like(x, generator)
        if callback is not None:
            callback(StepInfo(x, step, sigma, variance_drop, grad))
        step += 1
    return x
