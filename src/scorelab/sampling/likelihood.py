"""Likelihoods: exact log p through the probability-flow ODE, and the variational bound of the ancestral chain.

**The ODE** (Song et al. 2021, Sec. 4.3 and App. D.2). Along dy/dσ = −σ s(y, σ) (see
:mod:`scorelab.sampling.ode`), the instantaneous change of variables (Chen et al. 2018,
"Neural ODEs", Thm. 1) gives d log p_σ(y(σ))/dσ = −∇·(−σ s) = σ ∇·s(y, σ). From σ_min to σ_max:

    log p_σmin(x) = log π(y(σ_max)) − ∫_{σ_min}^{σ_max} σ ∇·s(y(σ), σ) dσ,   y(σ_min) = x,

with π the process's prior. This is the log-density, in nats, of the model that maps π
through the ODE; with the exact score and a wide σ_max it is the data's log p_σmin, and
p_σmin → p as σ_min → 0. The divergence is exact (D reverse passes) for small D, and
otherwise the Hutchinson estimate vᵀ(∂s/∂y)v with one Rademacher v per sample held fixed
along the path (Grathwohl et al. 2019, FFJORD): unbiased, since the path does not depend on v.

**The bound** (Ho et al. 2020, eq. 5): −log p_θ(x_0) ≤ L_T + Σ_{t≥2} L_{t−1} + L_0 for the
ancestral chain that :func:`scorelab.sampling.ddpm` samples, on the process's grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scorelab.core.divergence import hutchinson_trace, trace_by_reverse_passes
from scorelab.core.errors import ConfigError
from scorelab.core.processes import NoiseProcess, denoised_from_score
from scorelab.core.rng import rademacher, randn_like
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import batch_sum, per_sample, require_batch
from scorelab.sampling.ancestral import DDPM_VARIANCES, posterior_mean, step_variance
from scorelab.sampling.ode import ADAPTIVE_METHODS, check_ode_options

DIVERGENCES = ("auto", "exact", "hutchinson")
EXACT_DIVERGENCE_MAX_DIM = 8


def _score_and_divergence(score: Score, y: Tensor, sigma: Tensor, probe: Tensor | None,
                          cond: Any) -> tuple[Tensor, Tensor]:
    """s(y, σ) and ∇·s per sample: exact when ``probe`` is None, else Hutchinson vᵀ(∂s/∂y)v."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        value = call_score(score, y, sigma, cond)
        if probe is None:
            divergence = trace_by_reverse_passes(value, y, create_graph=False)
        else:
            divergence = hutchinson_trace(value, y, probe, create_graph=False)
    return value.detach(), divergence


@torch.no_grad()
def log_prob(
    score: Score,
    x: Tensor,
    process: NoiseProcess,
    *,
    divergence: str = "auto",
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
    cond: Any = None,
) -> Tensor:
    """log p_σmin(x) in nats for each sample of ``x`` [B, *shape], by the probability-flow ODE.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B]; gradients must flow to ``y``.
        x: points at which to evaluate the density.
        process: the ODE runs over its [σ_min, σ_max] and ends in its prior (for a DDPM chain,
            σ_1 and σ_T, and x_T ~ N(0, I) seen in y = x_T/√ᾱ_T).
        divergence: ``exact``, ``hutchinson`` or ``auto`` (exact for D ≤ 8).
        method, rtol, atol: the torchdiffeq solver and its tolerances; a fixed-step solver (``rk4``, ...)
            takes one step per interval of the process's grid.
        generator: draws the Rademacher probes.
        cond: passed to the score.

    Returns:
        A tensor [B] of log-densities in nats (divide by D·ln 2 for bits per dimension).
    """
    from torchdiffeq import odeint

    require_batch(x)
    if divergence not in DIVERGENCES:
        raise ConfigError(f"unknown divergence {divergence!r}; use one of: {', '.join(DIVERGENCES)}")
    check_ode_options(method, rtol, atol)
    if not process.sigma_min < process.sigma_max:
        raise ConfigError(f"the process's sigma_min ({process.sigma_min}) must be below its sigma_max "
                          f"({process.sigma_max})")
    batch, dim = x.shape[0], x[0].numel()
    use_exact = divergence == "exact" or (divergence == "auto" and dim <= EXACT_DIVERGENCE_MAX_DIM)
    probe = None if use_exact else rademacher(tuple(x.shape), x, generator)

    def augmented_drift(sigma: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        value, div = _score_and_divergence(score, state[0], sigma.expand(batch), probe, cond)
        return -sigma * value, sigma * div

    # An adaptive solver chooses its own steps between the ends; a fixed-step one takes one step per interval
    # of the grid it is given, so it walks the process's own levels, smallest first.
    sigmas = (torch.tensor([process.sigma_min, process.sigma_max]) if method in ADAPTIVE_METHODS
              else process.grid().flip(0)).to(dtype=x.dtype, device=x.device)
    start = (x, torch.zeros(batch, dtype=x.dtype, device=x.device))
    path, integral = odeint(augmented_drift, start, sigmas, method=method, rtol=rtol, atol=atol)
    return process.prior_log_prob(path[-1]) - integral[-1]


@dataclass(frozen=True)
class VariationalBound:
    """The bound −log p_θ(x_0) ≤ L_T + Σ_{t≥2} L_{t−1} + L_0, per sample, in nats.

    Attributes (each a tensor [B]):
        prior: L_T = KL(q(x_T | x_0) ‖ prior).
        diffusion: Σ_{t=2..T} KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)).
        decoder: L_0 = −log p_θ(x_0 | x_1), a continuous Gaussian decoder.
    """

    prior: Tensor
    diffusion: Tensor
    decoder: Tensor

    @property
    def total(self) -> Tensor:
        return self.prior + self.diffusion + self.decoder


def _gaussian_kl(mean_q: Tensor, var_q: float, mean_p: Tensor, var_p: float) -> Tensor:
    """KL(N(μ_q, v_q I) ‖ N(μ_p, v_p I)) = ½ Σ_d [ln(v_p/v_q) + (v_q + (μ_q − μ_p)²)/v_p − 1], per sample."""
    return 0.5 * batch_sum(math.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1)


@torch.no_grad()
def variational_bound(
    score: Score,
    x: Tensor,
    process: NoiseProcess,
    *,
    n_steps: int | None = None,
    variance: str = "beta",
    generator: torch.Generator | None = None,
    cond: Any = None,
) -> VariationalBound:
    """The variational bound on −log p_θ(x_0) in nats (Ho et al. 2020, eq. 5), per sample of x [B, *shape].

    p_θ(x_{t−1} | x_t) is the step :func:`scorelab.sampling.ddpm` takes on ``process.grid(n_steps)``
    (the posterior mean at x̂_0 = D(y, σ_t), with variance σ_t² = β_t for ``"beta"`` or β̃_t for
    ``"posterior"``). Each L_{t−1} is a KL between Gaussians, estimated at one draw
    x_t ~ q(x_t | x_0) per step (Ho et al.'s evaluation loop); KLs are the same in the VE
    coordinates the chain runs in. The decoder is continuous, p_θ(x_0 | x_1) = N(x̂_0(x_1), β_1 I),
    since our data are continuous (Ho et al. discretise to 8 bits instead), and its variance is
    β_1 for both choices; so the bound is for a chain whose last step adds N(0, β_1 I), while the
    samplers return the decoder mean. Costs one score evaluation per step.
    """
    require_batch(x)
    if variance not in DDPM_VARIANCES:
        raise ConfigError(f"unknown DDPM variance {variance!r}; use one of: {', '.join(DDPM_VARIANCES)}")
    levels = process.grid(n_steps).tolist()  # largest first
    scale = process.scale_at

    def denoised(y: Tensor, sigma: float) -> Tensor:
        sigmas = per_sample(sigma, x)
        return denoised_from_score(y, call_score(score, y, sigmas, cond), sigmas)

    prior = _gaussian_kl(x, levels[0] ** 2, torch.zeros_like(x), process.prior_std**2)
    diffusion = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    ascending = levels[::-1]
    for sigma_next, sigma in zip(ascending[:-1], ascending[1:]):
        y = x + sigma * randn_like(x, generator)
        true_variance = step_variance(sigma, sigma_next, "posterior")
        model_variance = step_variance(sigma, sigma_next, variance, scale)
        diffusion += _gaussian_kl(posterior_mean(y, x, sigma, sigma_next), true_variance,
                                  posterior_mean(y, denoised(y, sigma), sigma, sigma_next), model_variance)
    first = levels[-1]
    y_1 = x + first * randn_like(x, generator)
    decoder_variance = step_variance(first, 0.0, "beta", scale)
    decoder = 0.5 * batch_sum((x - denoised(y_1, first)) ** 2 / decoder_variance
                              + math.log(2 * math.pi * decoder_variance))
    return VariationalBound(prior, diffusion, decoder)
