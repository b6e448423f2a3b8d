"""Few-step solvers of the probability-flow ODE through the denoiser: EDM's Heun, DPM-Solver++(2M), flow Euler.

In the VE coordinates of :mod:`scorelab.core.processes` the probability-flow ODE reads

    dy/dσ = (y − D(y, σ))/σ,   D(y, σ) = y + σ²·s(y, σ)

(Karras et al. 2022, eq. 4 with σ(t) = t). Both solvers walk a grid σ_1 > … > σ_K and then
σ = 0, usually :func:`scorelab.core.noise.karras_sigmas`, from the process's prior, and call the
model only through its denoiser, so that they serve the VE and the VP families alike (a VP
model in VE coordinates is the same ODE). Each step from σ to σ' is one of:

- **Heun** (Karras et al. 2022, Algorithm 1): an Euler step, corrected by the slope at its end
  (the trapezoidal rule); 2 evaluations per step, 1 on the last step to σ' = 0, where the
  slope is undefined: K steps cost 2K − 1 evaluations. Global error O(h²).
  The stochastic variant (Algorithm 2) first raises σ to σ̂ = (1 + γ)σ by adding fresh noise
  of variance σ̂² − σ², γ = min(S_churn/K, √2 − 1) inside [S_tmin, S_tmax], and then steps
  from σ̂: Langevin-like churn that corrects errors made earlier.
- **DPM-Solver++(2M)** (Lu et al. 2022, "DPM-Solver++", Algorithm 2): with λ = −log σ and
  h = λ' − λ, the exact solution of the linear part gives

      y' = (σ'/σ)·y − (e^(−h) − 1)·D̂,   D̂ = (1 + 1/(2r))·D_i − 1/(2r)·D_(i−1),   r = h_(i−1)/h,

  a second-order multistep method that reuses the previous step's denoiser, so each step
  costs one evaluation. Its first step (no previous D) and its last step (σ' = 0, where
  h is infinite and the step is y' = D) are first order.
- **Euler in t** (flow matching; Lipman et al. 2022, Liu et al. 2022): in the flow coordinates
  x_t = y/(1 + σ), t = σ/(1 + σ), the velocity v = (x_t − D)/t gives x_(t') = x_t + (t' − t)·v;
  1 evaluation per step. In y this is exactly Euler in σ, y' = y + (σ' − σ)(y − D)/σ (DDIM with
  η = 0): the same solver of the same ODE, written in t.

Conventions of every sampler are in :mod:`scorelab.sampling.steps`; the callback gets ``x`` =
y after the step, ``sigma`` = σ (σ̂ with churn), ``step_size`` = σ − σ' and ``score`` = s(y, σ).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError
from scorelab.core.processes import call_denoiser, velocity_from_denoised
from scorelab.core.rng import randn_like
from scorelab.core.score import Score
from scorelab.core.shapes import per_sample
from scorelab.sampling.steps import Callback, StepInfo, steps_to_zero


def churn_gamma(sigma: float, n_steps: int, churn: float, churn_min: float, churn_max: float) -> float:
    """γ of Karras et al. 2022, Algorithm 2: min(S_churn/N, √2 − 1) for σ in [S_tmin, S_tmax], else 0.

    The cap √2 − 1 keeps the added noise's variance σ̂² − σ² at most σ².
    """
    if churn <= 0 or not churn_min <= sigma <= churn_max:
        return 0.0
    return min(churn / n_steps, math.sqrt(2) - 1)


@torch.no_grad()
def heun(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    churn: float = 0.0,
    churn_min: float = 0.0,
    churn_max: float = math.inf,
    noise_scale: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """EDM's Heun sampler (Karras et al. 2022, Algorithms 1 and 2), in VE coordinates.

        d = (y − D(y, σ̂))/σ̂,   y' = y + (σ' − σ̂)·d,   then, unless σ' = 0,
        y' = y + (σ' − σ̂)·(d + d')/2,   d' = (y' − D(y', σ'))/σ'.

    With ``churn = 0`` (the default) it is deterministic and σ̂ = σ: Algorithm 1.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B]; a model with a ``denoise`` view is called through it.
        x: y at σ_1, usually ``process.prior(...)``, [B, *shape].
        sigmas: the noise levels, largest first, e.g. ``karras_sigmas(σ_max, σ_min, K)``; one more step goes to 0.
        churn: S_churn, the amount of noise added back over the whole path (0: deterministic).
        churn_min, churn_max: S_tmin and S_tmax, the range of σ where noise is added.
        noise_scale: S_noise, the added noise's standard deviation relative to the exact σ̂² − σ²,
            slightly above 1 in EDM to offset the denoiser's loss of detail.
    """
    if churn < 0 or noise_scale <= 0:
        raise ConfigError(f"churn must be >= 0 and noise_scale > 0, got {churn} and {noise_scale}")
    steps = steps_to_zero(sigmas)
    for step, (sigma, sigma_next) in enumerate(steps):
        gamma = churn_gamma(sigma, len(steps), churn, churn_min, churn_max)
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            x = x + noise_scale * math.sqrt(sigma_hat**2 - sigma**2) * randn_like(x, generator)
        denoised, grad = call_denoiser(score, x, per_sample(sigma_hat, x), cond)
        slope = (x - denoised) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * slope
        if sigma_next > 0:
            denoised_next, _ = call_denoiser(score, x_next, per_sample(sigma_next, x), cond)
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (slope + (x_next - denoised_next) / sigma_next)
        x = x_next
        if callback is not None:
            callback(StepInfo(x, step, sigma_hat, sigma_hat - sigma_next, grad))
    return x


@torch.no_grad()
def dpm_solver_2m(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), in VE coordinates: one evaluation per step.

    See the module docstring for the step. Deterministic: ``generator`` is accepted for the
    common signature and not used.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B]; a model with a ``denoise`` view is called through it.
        x: y at σ_1, usually ``process.prior(...)``, [B, *shape].
        sigmas: the noise levels, largest first, e.g. ``karras_sigmas(σ_max, σ_min, K)``; one more step goes to 0.
    """
    previous: Tensor | None = None
    previous_h = 0.0
    for step, (sigma, sigma_next) in enumerate(steps_to_zero(sigmas)):
        denoised, grad = call_denoiser(score, x, per_sample(sigma, x), cond)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            estimate = denoised
            if previous is not None:
                half_inverse_r = h / (2 * previous_h)
                estimate = (1 + half_inverse_r) * denoised - half_inverse_r * previous
            x = (sigma_next / sigma) * x - math.expm1(-h) * estimate
            previous, previous_h = denoised, h
        if callback is not None:
            callback(StepInfo(x, step, sigma, sigma - sigma_next, grad))
    return x


@torch.no_grad()
def flow_euler(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """Euler's method in t on the flow-matching ODE dx_t/dt = v(x_t, t) (Lipman et al. 2022, Sec. 4).

        x_t = y/(1 + σ),  t = σ/(1 + σ),  v = (x_t − D(y, σ))/t,  x_(t') = x_t + (t' − t)·v,  y' = (1 + σ')·x_(t'),

    down the grid and a last step to t' = 0, where x_0 = x_t − t·v = D. The velocity is the model's
    (:func:`scorelab.core.processes.velocity_from_denoised`), so any score serves, whatever process
    trained it. Deterministic: ``generator`` is accepted for the common signature and not used.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B]; a model with a ``denoise`` view is called through it.
        x: y at σ_1, usually ``process.prior(...)``, [B, *shape].
        sigmas: the noise levels, largest first, e.g. ``Flow(...).grid()`` (uniform in t); one more step goes to 0.
    """
    for step, (sigma, sigma_next) in enumerate(steps_to_zero(sigmas)):
        denoised, grad = call_denoiser(score, x, per_sample(sigma, x), cond)
        velocity = velocity_from_denoised(x, denoised, per_sample(sigma, x))
        t, t_next = sigma / (1 + sigma), sigma_next / (1 + sigma_next)
        x = (1 + sigma_next) * (x / (1 + sigma) + (t_next - t) * velocity)
        if callback is not None:
            callback(StepInfo(x, step, sigma, sigma - sigma_next, grad))
    return x
