"""Consistency training and distillation (Song et al. 2023; Song & Dhariwal 2023): losses and the iCT curriculum.

A consistency model f(y, σ) maps every point y of a probability-flow ODE trajectory (in the VE
coordinates y = x + σz of :mod:`scorelab.core.processes`, dy/dσ = −σ·s(y, σ)) to its end at σ_min,
with f(y, σ_min) = y. It is trained by asking f to agree with itself at two adjacent levels
σ_i < σ_(i+1) of a grid, the lower one under a stop-gradient:

- **consistency training** (CT) puts the same noise z at both levels, y_(i+1) = x + σ_(i+1)z and
  y_i = x + σ_i z: with the same z these lie, to first order in the step, on one trajectory;
- **consistency distillation** (CD) takes y_i from y_(i+1) by one step of a teacher's ODE solver.

Here f is a score's denoiser view, f = D(y, σ) = y + σ²·s(y, σ) (a
:class:`~scorelab.models.Preconditioned` model under the ``consistency`` parameterisation returns
f itself, with the boundary condition built in). The losses are pure functions like those of
:mod:`scorelab.objectives.denoising`: they take the levels [B] already drawn, reduce each sample
to one distance and average over the batch. The grid and the draw of the levels are the improved
CT recipe (iCT: Song & Dhariwal 2023): :func:`ct_levels`, :func:`ct_sigmas` and
:func:`ct_sigma_pairs`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError, require_positive, require_positive_int
from scorelab.core.noise import karras_sigmas
from scorelab.core.processes import call_denoiser
from scorelab.core.rng import randn_like
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import append_dims, batch_sum, require_batch
from scorelab.objectives.settings import DISTANCES, TEACHER_SOLVERS

# --- the distance -----------------------------------------------------------------------------


def default_huber_c(dim: int) -> float:
    """c = 0.00054·√d for samples of d entries (Song & Dhariwal 2023, Sec. 3.3: c scales as ‖r‖ does)."""
    return 0.00054 * math.sqrt(dim)


def pseudo_huber(residual: Tensor, c: float | None = None) -> Tensor:
    """The pseudo-Huber distance of each sample, √(‖r‖² + c²) − c: shape [B] for ``residual`` [B, *shape].

    Song & Dhariwal 2023 (Sec. 3.3): like ‖r‖²/(2c) for ‖r‖ ≪ c and ‖r‖ for ‖r‖ ≫ c, so large
    residuals weigh less than under L2, and smooth at 0, unlike ‖r‖. ``c = None`` is their
    0.00054·√d, d the entries of one sample.
    """
    if c is None:
        c = default_huber_c(residual[0].numel())
    require_positive("huber_c", c)
    return (batch_sum(residual.pow(2)) + c**2).sqrt() - c


def _distance(residual: Tensor, distance: str, huber_c: float | None) -> Tensor:
    if distance not in DISTANCES:
        raise ConfigError(f"unknown consistency distance {distance!r}; use one of: {', '.join(DISTANCES)}")
    return pseudo_huber(residual, huber_c) if distance == "pseudo_huber" else batch_sum(residual.pow(2))


# --- the iCT grid and levels --------------------------------------------------------------------


def ct_levels(step: int, total_steps: int, s0: int = 10, s1: int = 1280) -> int:
    """N(k), the number of grid levels at training step k of K (Song & Dhariwal 2023, "improved curriculum"):

        N(k) = min(s0·2^⌊k/K'⌋, s1) + 1,   K' = ⌊K/(log2⌊s1/s0⌋ + 1)⌋,

    the grid doubling from s0 + 1 levels in log2⌊s1/s0⌋ + 1 equal stages up to s1 + 1. K' is kept
    at least 1, so that a run shorter than the number of stages still doubles (at every step).
    """
    require_positive_int("total_steps", total_steps)
    require_positive_int("s0", s0)
    if step < 0 or s1 < s0:
        raise ConfigError(f"need step >= 0 and s1 >= s0, got step {step}, s0 {s0}, s1 {s1}")
    stage = max(math.floor(total_steps / (math.log2(s1 // s0) + 1)), 1)
    doublings = step // stage
    # Capped before the power: 2^⌊k/K'⌋ past the last stage can be a very large integer.
    return min(s0 * 2 ** min(doublings, 64), s1) + 1


def ct_sigmas(n_levels: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """σ_1 < … < σ_N, the Karras grid of the consistency papers, **smallest first** (float64):

        σ_i = (σ_min^(1/ρ) + (i−1)/(N−1)·(σ_max^(1/ρ) − σ_min^(1/ρ)))^ρ

    (Song et al. 2023; Karras et al. 2022, eq. 5): :func:`karras_sigmas` reversed, so that level i + 1
    is the one above level i, with its ends set to σ_min and σ_max exactly.
    """
    if n_levels < 2:
        raise ConfigError(f"a consistency grid needs at least 2 levels, got {n_levels}")
    sigmas = karras_sigmas(sigma_max, sigma_min, n_levels, rho).flip(0)
    # (σ^(1/ρ))^ρ rounds; the lowest level must be the model's σ_min itself, where f(y, σ_min) = y exactly.
    sigmas[0], sigmas[-1] = sigma_min, sigma_max
    return sigmas


def ct_level_probabilities(sigmas: Tensor, mean: float = -1.1, std: float = 2.0) -> Tensor:
    """P(i) for the pairs (σ_i, σ_(i+1)) of a grid ``sigmas`` [N], smallest first: [N − 1], float64.

        P(i) ∝ erf((ln σ_(i+1) − P_mean)/(√2·P_std)) − erf((ln σ_i − P_mean)/(√2·P_std)),

    the mass that a log-normal ln σ ~ N(P_mean, P_std²) puts between the two levels (Song & Dhariwal
    2023's "lognormal noise schedule", with EDM's P_mean = −1.1, P_std = 2.0): it puts the training where
    denoising is hard, rather than uniformly over the levels as the CM paper did.
    """
    require_positive("std", std)
    scaled = (torch.as_tensor(sigmas, dtype=torch.float64).log() - mean) / (math.sqrt(2) * std)
    mass = torch.erf(scaled).diff()
    if len(mass) < 1 or not (mass >= 0).all() or not mass.sum() > 0:
        raise ConfigError("sigmas must hold at least 2 positive levels, sorted from smallest to largest")
    return mass / mass.sum()


def ct_level_index(
    sigmas: Tensor, n: int, *, mean: float = -1.1, std: float = 2.0, generator: torch.Generator | None = None
) -> Tensor:
    """n indices i of pairs (σ_i, σ_(i+1)) of ``sigmas``, drawn with :func:`ct_level_probabilities`: [n], int64.

    Drawn on the generator's device (the CPU without one)."""
    probabilities = ct_level_probabilities(sigmas, mean, std)
    device = generator.device if generator is not None else probabilities.device
    return torch.multinomial(probabilities.to(device), n, replacement=True, generator=generator)


def ct_sigma_pairs(
    x: Tensor, sigmas: Tensor, *, mean: float = -1.1, std: float = 2.0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(σ_i, σ_(i+1)) for each sample of ``x``, i drawn by :func:`ct_level_index`: two [B], ``x``'s dtype and device."""
    require_batch(x)
    index = ct_level_index(sigmas, x.shape[0], mean=mean, std=std, generator=generator).cpu()
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    low, high = sigmas[index], sigmas[index + 1]
    return low.to(dtype=x.dtype, device=x.device), high.to(dtype=x.dtype, device=x.device)


# --- the losses -------------------------------------------------------------------------------


def consistency_function(model: Score, y: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
    """f(y, σ): a model's own ``denoise`` view when it has one (a consistency model's f, exact at σ_min),
    otherwise its score's denoiser y + σ²·s(y, σ) (:func:`~scorelab.core.processes.call_denoiser`)."""
    return call_denoiser(model, y, sigma, cond)[0]


def _check_levels(x: Tensor, sigmas_low: Tensor, sigmas_high: Tensor) -> None:
    require_batch(x)
    if sigmas_low.shape != (x.shape[0],) or sigmas_high.shape != (x.shape[0],):
        raise ConfigError(
            f"sigmas_low and sigmas_high must hold one level per sample ({x.shape[0]}), "
            f"got shapes {tuple(sigmas_low.shape)} and {tuple(sigmas_high.shape)}"
        )
    if not (sigmas_high > sigmas_low).all():
        raise ConfigError("each sigmas_high must be above its sigmas_low (the pair σ_i < σ_(i+1) of a grid)")


def _weighted_mean(
    student: Tensor, target: Tensor, sigmas_low: Tensor, sigmas_high: Tensor, distance: str, huber_c: float | None
) -> Tensor:
    # λ(σ_i) = 1/(σ_(i+1) − σ_i) (iCT's weighting): the residual shrinks with the step, so every pair weighs alike.
    return (_distance(student - target, distance, huber_c) / (sigmas_high - sigmas_low)).mean()


def consistency_training_loss(
    score: Score,
    x: Tensor,
    sigmas_low: Tensor,
    sigmas_high: Tensor,
    *,
    generator: torch.Generator | None = None,
    cond: Any = None,
    distance: str = "pseudo_huber",
    huber_c: float | None = None,
) -> Tensor:
    """Consistency training (Song et al. 2023, Algorithm 3, as improved by Song & Dhariwal 2023):

        L = (1/B) Σ_b λ(σ_i)·d(f_θ(x + σ_(i+1)z, σ_(i+1)), sg[f_θ(x + σ_i z, σ_i)]),   λ(σ_i) = 1/(σ_(i+1) − σ_i),

    with one z ~ N(0, I) for both levels of a sample, the pair (σ_i, σ_(i+1)) = (``sigmas_low``,
    ``sigmas_high``) [B] per sample (:func:`ct_sigma_pairs`), and the target computed by the same
    network under ``torch.no_grad`` (sg: iCT drops the CM paper's EMA teacher). d is
    :func:`pseudo_huber` with c = ``huber_c`` (None: 0.00054·√d), or ‖·‖² with ``distance = "l2"``.
    f is the model's denoiser view (:func:`consistency_function`).
    """
    _check_levels(x, sigmas_low, sigmas_high)
    z = randn_like(x, generator)
    with torch.no_grad():
        target = consistency_function(score, x + append_dims(sigmas_low, x.ndim) * z, sigmas_low, cond)
    student = consistency_function(score, x + append_dims(sigmas_high, x.ndim) * z, sigmas_high, cond)
    return _weighted_mean(student, target, sigmas_low, sigmas_high, distance, huber_c)


def teacher_step(
    teacher: Score, y: Tensor, sigma: Tensor, sigma_next: Tensor, *, solver: str = "heun", cond: Any = None
) -> Tensor:
    """One step of the teacher's probability-flow ODE dy/dσ = −σ·s(y, σ) from σ to σ' (each [B]):

        d = −σ·s(y, σ),  y' = y + (σ' − σ)·d  (Euler),  then  y' = y + (σ' − σ)·(d + d')/2,  d' = −σ'·s(y', σ')  (Heun),

    EDM's second-order step (Karras et al. 2022, Algorithm 1), the solver of the CM paper's distillation
    (Song et al. 2023). σ' > 0, so Heun's correction is always defined.
    """
    if solver not in TEACHER_SOLVERS:
        raise ConfigError(f"unknown teacher solver {solver!r}; use one of: {', '.join(TEACHER_SOLVERS)}")
    column, column_next = append_dims(sigma, y.ndim), append_dims(sigma_next, y.ndim)
    slope = -column * call_score(teacher, y, sigma, cond)
    y_next = y + (column_next - column) * slope
    if solver == "euler":
        return y_next
    slope_next = -column_next * call_score(teacher, y_next, sigma_next, cond)
    return y + (column_next - column) * 0.5 * (slope + slope_next)


def consistency_distillation_loss(
    score: Score,
    teacher: Score,
    x: Tensor,
    sigmas_low: Tensor,
    sigmas_high: Tensor,
    *,
    generator: torch.Generator | None = None,
    cond: Any = None,
    distance: str = "pseudo_huber",
    huber_c: float | None = None,
    solver: str = "heun",
    target_model: Score | None = None,
) -> Tensor:
    """Consistency distillation (Song et al. 2023, Algorithm 2) from a teacher's score s_φ:

        y_(i+1) = x + σ_(i+1)z,   y_i = one ODE step of s_φ from y_(i+1) at σ_(i+1) down to σ_i (:func:`teacher_step`),
        L = (1/B) Σ_b λ(σ_i)·d(f_θ(y_(i+1), σ_(i+1)), sg[f_θ⁻(y_i, σ_i)]),   λ(σ_i) = 1/(σ_(i+1) − σ_i).

    The teacher's step and the target run under ``torch.no_grad``. The target network θ⁻ is
    ``target_model`` (an EMA of the student, as in the CM paper) or, by default, the student
    itself (μ = 0, which Song & Dhariwal 2023 found better for consistency training; with one network there
    is no second copy to keep). λ is iCT's, so the two losses weigh the pairs alike; d and f as in
    :func:`consistency_training_loss`.
    """
    _check_levels(x, sigmas_low, sigmas_high)
    z = randn_like(x, generator)
    y_high = x + append_dims(sigmas_high, x.ndim) * z
    with torch.no_grad():
        y_low = teacher_step(teacher, y_high, sigmas_high, sigmas_low, solver=solver, cond=cond)
        target = consistency_function(score if target_model is None else target_model, y_low, sigmas_low, cond)
    student = consistency_function(score, y_high, sigmas_high, cond)
    return _weighted_mean(student, target, sigmas_low, sigmas_high, distance, huber_c)
