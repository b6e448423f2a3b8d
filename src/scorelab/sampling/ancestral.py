"""DDPM ancestral sampling and DDIM, on any decreasing grid of noise levels.

Both walk σ_1 > … > σ_n and then σ = 0 in the VE coordinates y = x_t/√ᾱ_t of
:mod:`scorelab.core.processes`, where the DDPM chain x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε reads
y_t = x_0 + σ_t ε with σ_t = √((1 − ᾱ_t)/ᾱ_t), and start from the process's prior
(for DDPM, y_T = x_T·√(1 + σ_T²) with x_T ~ N(0, I)). In these coordinates one
step from σ to σ' is fixed by the denoiser D = y + σ²s(y, σ) alone:

    posterior q(y' | y, x_0):  mean x_0 + (σ'²/σ²)(y − x_0),  variance σ'²(σ² − σ'²)/σ²,

the VE form of Ho et al.'s eqs. 6–7 (the affine change of coordinates carries the
Gaussians, and their KLs, over unchanged). The variational bound uses the same
step (:func:`posterior_mean`, :func:`step_variance`).

Conventions of every sampler are in :mod:`scorelab.sampling.steps`; the callback gets
``x`` = y after the step, ``sigma`` = σ, ``step_size`` = σ − σ' and ``score`` = s(y, σ).

From 0.1.0 to 0.2.0 the third argument of :func:`ddpm` and :func:`ddim` changed from the
chain's ᾱ (least noisy first, starting from x_T) to its σ's (largest first, starting from
y_T), the signature of every other sampler: ``sl.processes.VP(...).grid()`` gives them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError
from scorelab.core.processes import denoised_from_score, eps_from_score
from scorelab.core.rng import randn_like
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import per_sample
from scorelab.sampling.settings import DDPM_VARIANCES
from scorelab.sampling.steps import Callback, StepInfo, steps_to_zero


def vp_scale(sigma: float) -> float:
    """a(σ) = 1/√(1 + σ²) = √ᾱ of the VP process, the default for the "beta" variance."""
    return 1 / math.sqrt(1 + sigma**2)


def step_variance(sigma: float, sigma_next: float, variance: str, scale: Callable[[float], float] = vp_scale) -> float:
    """The variance of one ancestral step from σ to σ' < σ, in VE coordinates.

    - ``"posterior"``: β̃, the variance of q(y' | y, x_0), σ'²(σ² − σ'²)/σ².
    - ``"beta"``: Ho et al.'s σ_t² = β_t, the forward step's variance a(σ)²(σ² − σ'²) in the
      process's coordinates, which is (a(σ)/a(σ'))²(σ² − σ'²) in y; for the VP process
      β_t/ᾱ_{t−1}. ``scale`` is the process's a(σ).

    Both are optimal for some data (Ho et al. 2020, Sec. 3.2); at σ' = 0 both give the
    decoder's variance, 0 and a(σ_1)²σ_1² = β_1.
    """
    if variance == "posterior":
        return sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2
    return (scale(sigma) / scale(sigma_next)) ** 2 * (sigma**2 - sigma_next**2)


def posterior_mean(y: Tensor, denoised: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """The posterior mean of y' given y and x_0 = ``denoised``: x_0 + (σ'²/σ²)(y − x_0)."""
    return denoised + (sigma_next**2 / sigma**2) * (y - denoised)


@torch.no_grad()
def ddpm(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    variance: str = "beta",
    scale: Callable[[float], float] = vp_scale,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), in VE coordinates.

        y' = D + (σ'²/σ²)(y − D) + √v·z,   D = y + σ² s(y, σ),   z ~ N(0, I),

    the posterior mean of q(y' | y, x_0 = D) (Ho's (x_t − β_t ε̂/√(1 − ᾱ_t))/√α_t divided by
    √ᾱ_{t−1}) plus noise of variance v = :func:`step_variance` (``"beta"``: σ_t² = β_t, or
    ``"posterior"``: β̃_t). The last step adds no noise: it returns D.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B].
        x: y at σ_1, usually ``process.prior(...)``, [B, *shape].
        sigmas: the chain's noise levels, largest first (``VP(...).grid(n_steps)``).
        variance: ``"beta"`` or ``"posterior"``.
        scale: the process's a(σ), for ``"beta"`` (VP by default).
    """
    if variance not in DDPM_VARIANCES:
        raise ConfigError(f"unknown DDPM variance {variance!r}; use one of: {', '.join(DDPM_VARIANCES)}")
    for step, (sigma, sigma_next) in enumerate(steps_to_zero(sigmas)):
        sigma_vec = per_sample(sigma, x)
        grad = call_score(score, x, sigma_vec, cond)
        x = posterior_mean(x, denoised_from_score(x, grad, sigma_vec), sigma, sigma_next)
        if sigma_next > 0:
            x = x + step_variance(sigma, sigma_next, variance, scale) ** 0.5 * randn_like(x, generator)
        if callback is not None:
            callback(StepInfo(x, step, sigma, sigma - sigma_next, grad))
    return x


@torch.no_grad()
def ddim(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """DDIM sampling (Song, Meng & Ermon 2020, eq. 12), in VE coordinates.

        y' = D + √(σ'² − s²)·ε̂ + s·z,   s = η·√(σ'²(σ² − σ'²)/σ²),   ε̂ = −σ s(y, σ),

    which is eq. 12 divided by √ᾱ_{t−1}, with its σ_t (eq. 16) equal to √ᾱ_{t−1}·s.
    η = 0 is deterministic: Euler's method on the probability-flow ODE dy/dσ = −σ s(y, σ)
    (Karras et al. 2022, Sec. 4), the same as :func:`scorelab.sampling.probability_flow`
    with ``method="euler"``; η = 1 is DDPM with the posterior variance. Nothing here
    depends on the process: DDIM runs on any grid.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B].
        x: y at σ_1, usually ``process.prior(...)``, [B, *shape].
        sigmas: noise levels to step through, largest first, e.g. ``VP(...).grid(50)``.
        eta: η in [0, 1], the share of fresh noise.
    """
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta must be in [0, 1], got {eta}")
    for step, (sigma, sigma_next) in enumerate(steps_to_zero(sigmas)):
        sigma_vec = per_sample(sigma, x)
        grad = call_score(score, x, sigma_vec, cond)
        noise_std = eta * step_variance(sigma, sigma_next, "posterior") ** 0.5
        # max(·, 0): the bracket is 0 at the last step (σ' = 0) and must not round below it.
        direction = max(sigma_next**2 - noise_std**2, 0.0) ** 0.5 * eps_from_score(grad, sigma_vec)
        x = denoised_from_score(x, grad, sigma_vec) + direction
        if noise_std > 0:
            x = x + noise_std * randn_like(x, generator)
        if callback is not None:
            callback(StepInfo(x, step, sigma, sigma - sigma_next, grad))
    return x
