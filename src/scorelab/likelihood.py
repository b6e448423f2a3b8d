"""Exact log-likelihoods through the probability-flow ODE (Song et al. 2021, Sec. 4.3 and App. D.2).

Along the ODE dy/dσ = −σ s(y, σ) (see :mod:`scorelab.sampling.ode`), the
instantaneous change of variables (Chen et al. 2018, "Neural ODEs", Thm. 1) gives
d log p_σ(y(σ))/dσ = −∇·(−σ s) = σ ∇·s(y, σ). Integrating from σ_min up to σ_max:

    log p_σmin(x) = log π(y(σ_max)) − ∫_{σ_min}^{σ_max} σ ∇·s(y(σ), σ) dσ,   y(σ_min) = x,

with π = N(0, prior_std² I) the prior. This is the log-density, in nats, of the
model that maps π through the ODE; with the exact score and a wide σ_max it is the
data's log p_σmin, and p_σmin → p as σ_min → 0.

The divergence is exact (D backward passes) for small D, and otherwise the
Hutchinson estimate vᵀ(∂s/∂y)v with one Rademacher v per sample held fixed along
the path (Grathwohl et al. 2019, FFJORD): unbiased, since the path does not depend on v.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchdiffeq import odeint

from scorelab.errors import ConfigError, require_positive
from scorelab.sampling.langevin import Score
from scorelab.sampling.ode import check_ode_options

DIVERGENCES = ("auto", "exact", "hutchinson")
EXACT_DIVERGENCE_MAX_DIM = 8


def rademacher_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Independent ±1 entries shaped like ``x``, from ``generator`` (so a seed fixes them)."""
    device = generator.device if generator is not None else x.device
    bits = torch.randint(0, 2, x.shape, generator=generator, device=device)
    return (2 * bits - 1).to(dtype=x.dtype, device=x.device)


def _score_and_divergence(score: Score, y: Tensor, sigma: Tensor, probe: Tensor | None) -> tuple[Tensor, Tensor]:
    """s(y, σ) and ∇·s per row: exact when ``probe`` is None, else Hutchinson vᵀ(∂s/∂y)v."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        value = score(y, sigma)
        if probe is not None:
            (vjp,) = torch.autograd.grad(value, y, probe)
            return value.detach(), (vjp * probe).sum(dim=1)
        divergence = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        for i in range(y.shape[1]):
            (row,) = torch.autograd.grad(value[:, i].sum(), y, retain_graph=i + 1 < y.shape[1])
            divergence = divergence + row[:, i]
    return value.detach(), divergence


@torch.no_grad()
def log_prob(
    score: Score,
    x: Tensor,
    *,
    sigma_min: float,
    sigma_max: float,
    prior_std: float | None = None,
    divergence: str = "auto",
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """log p_σmin(x) in nats for each row of ``x`` [B, D], by the probability-flow ODE.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B]; gradients must flow to ``y``.
        x: points at which to evaluate the density.
        sigma_min, sigma_max: the ODE runs over [σ_min, σ_max]. For a DDPM chain these
            are σ_1 and σ_T of ``sl.noise.vp_sigmas(alphas_cumprod)``.
        prior_std: std of the Gaussian prior at σ_max; defaults to √(1 + σ_max²),
            the DDPM prior x_T ~ N(0, I) seen in y = x_T/√ᾱ_T.
        divergence: ``exact``, ``hutchinson`` or ``auto`` (exact for D ≤ 8).
        method, rtol, atol: the torchdiffeq solver and its tolerances.
        generator: draws the Rademacher probes.

    Returns:
        A tensor [B] of log-densities in nats (divide by D·ln 2 for bits per dimension).
    """
    require_positive("sigma_min", sigma_min)
    require_positive("sigma_max", sigma_max)
    if sigma_min >= sigma_max:
        raise ConfigError(f"sigma_min ({sigma_min}) must be smaller than sigma_max ({sigma_max})")
    if divergence not in DIVERGENCES:
        raise ConfigError(f"unknown divergence {divergence!r}; use one of: {', '.join(DIVERGENCES)}")
    check_ode_options(method, rtol, atol)
    prior_std = math.sqrt(1 + sigma_max**2) if prior_std is None else prior_std
    require_positive("prior_std", prior_std)
    batch, dim = x.shape
    use_exact = divergence == "exact" or (divergence == "auto" and dim <= EXACT_DIVERGENCE_MAX_DIM)
    probe = None if use_exact else rademacher_like(x, generator)

    def augmented_drift(sigma: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        value, div = _score_and_divergence(score, state[0], sigma.expand(batch), probe)
        return -sigma * value, sigma * div

    sigmas = torch.tensor([sigma_min, sigma_max], dtype=x.dtype, device=x.device)
    start = (x, torch.zeros(batch, dtype=x.dtype, device=x.device))
    path, integral = odeint(augmented_drift, start, sigmas, method=method, rtol=rtol, atol=atol)
    y_max = path[-1]
    log_prior = -0.5 * (y_max / prior_std).pow(2).sum(dim=1) - dim * math.log(prior_std * math.sqrt(2 * math.pi))
    return log_prior - integral[-1]
