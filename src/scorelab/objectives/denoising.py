"""Denoising score matching: at one noise level, over many (the NCSN loss), DDPM's ε-loss and flow matching.

Pure functions ``(score, x, ...) -> scalar loss``. Data of any shape [B, *shape]; every
loss sums over the non-batch dimensions and averages over the batch, and ``x`` is never
changed. A condition ``cond`` is passed to the score untouched.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError, require_positive
from scorelab.core.guidance import NULL_LABEL
from scorelab.core.noise import check_noise_levels
from scorelab.core.rng import randint, randn_like
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import append_dims, batch_sum, per_sample, require_batch
from scorelab.objectives.settings import EPS_NORMS


def same_class(labels: Tensor, reference_labels: Tensor) -> Tensor:
    """[B, R]: the reference points whose class is the sample's, or all of them for a sample of the null class.

    A class-conditional score's stable target is that of its class's own distribution, so it may average only
    over references of that class (and a dropped label's, the whole data's, over all of them)."""
    return (labels[:, None] == reference_labels[None]) | (labels == NULL_LABEL)[:, None]


def stable_target(x_noisy: Tensor, x: Tensor, sigma: Tensor, reference: Tensor,
                  allowed: Tensor | None = None) -> Tensor:
    """σ·∇log p̂_σ(x̃) for each sample: the scaled score of a small empirical mixture (Xu et al. 2023).

        p̂_σ(x̃_i) ∝ N(x̃_i; x_i, σ_i²I) + Σ_j N(x̃_i; r_j, σ_i²I),
        σ_i ∇log p̂_σ(x̃_i) = Σ_k w_ik (y_k − x̃_i)/σ_i,  w_i = softmax_k(−‖x̃_i − y_k‖²/(2σ_i²)),

    over y = (x_i, r_1, …, r_R): the sample that was perturbed and R reference data
    points [R, *shape]. For small σ the sample's own term dominates and this is Vincent's
    target −z; for large σ it averages over the references, which cuts the target's
    variance ("Stable Target Field for Reduced Variance Score Estimation in Diffusion
    Models", ICLR 2023). The bias vanishes as R grows. ``allowed`` [B, R], when given, keeps sample i's
    mixture to the references it marks (:func:`same_class`).
    """
    flat_noisy, flat_x, flat_reference = x_noisy.flatten(1), x.flatten(1), reference.flatten(1)
    scale = 2 * sigma[:, None] ** 2
    own = -(flat_noisy - flat_x).pow(2).sum(dim=1, keepdim=True) / scale
    # ‖a‖² + ‖b‖² − 2a·b: one matrix product rather than cdist's square roots, which the softmax undoes.
    squared = (flat_noisy.pow(2).sum(dim=1, keepdim=True) + flat_reference.pow(2).sum(dim=1)
               - 2 * flat_noisy @ flat_reference.T)
    others = -squared.clamp_min(0) / scale
    if allowed is not None:
        others = others.masked_fill(~allowed, -math.inf)
    weights = torch.softmax(torch.cat([own, others], dim=1), dim=1)
    mean = weights[:, :1] * flat_x + weights[:, 1:] @ flat_reference
    return ((mean - flat_noisy) / sigma[:, None]).reshape(x.shape)


def scaled_denoising_residual(
    score: Score, x: Tensor, sigma: Tensor, *, conditional: bool, generator: torch.Generator | None,
    reference: Tensor | None = None, cond: Any = None, reference_labels: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """σ·s(x̃) + z for x̃ = x + σz, z ~ N(0, I) (or the given ``noise``), σ [B] per sample; shaped like x.

    This is σ times the DSM residual s(x̃) − ∇ log q_σ(x̃|x) = s(x̃) + z/σ (Vincent 2011),
    so its squared norm is O(D) at every σ. It equals z − ε̂ for the ε-prediction ε̂ = −σs.
    With ``reference`` points the target −z becomes :func:`stable_target`, over the references of each
    sample's class where ``reference_labels`` are given (``cond`` then holds the samples' labels). ``conditional``
    says whether the score takes σ (``score(x̃, sigma)``) or not (``score(x̃)``).
    """
    z = randn_like(x, generator) if noise is None else noise
    x_noisy = x + append_dims(sigma, x.ndim) * z
    predicted = call_score(score, x_noisy, sigma if conditional else None, cond)
    allowed = None if reference_labels is None else same_class(cond, reference_labels)
    target = -z if reference is None else stable_target(x_noisy, x, sigma, reference, allowed)
    return append_dims(sigma, x.ndim) * predicted - target


def denoising_score_matching(
    score: Score, x: Tensor, sigma: float, *, generator: torch.Generator | None = None, cond: Any = None
) -> Tensor:
    """Denoising score matching at one noise level σ (Vincent 2011), reported σ²-weighted.

    Vincent's objective is J(θ) = ½ E‖s(x̃) + (x̃ − x)/σ²‖² with x̃ = x + σz. It is
    the Fisher divergence ½ E‖s − ∇ log p_σ‖² on p_σ = p * N(0, σ²I) plus the constant
    D/(2σ²) − ½ E‖∇ log p_σ‖², which is the variance of the target −z/σ minus what any
    score can explain. For small σ that constant dwarfs the part that changes, so the
    raw value hides progress. We return σ²·J = ½ E‖σ s(x̃) + z‖²: the same minimiser,
    O(D/2) at every σ, and σ² times the Fisher divergence above its floor
    D/2 − (σ²/2) E‖∇ log p_σ‖². Divide by σ² to get J.

    ``score`` is called as ``score(x̃)``.
    """
    require_batch(x)
    require_positive("sigma", sigma)
    residual = scaled_denoising_residual(score, x, per_sample(sigma, x), conditional=False, generator=generator,
                                         cond=cond)
    return 0.5 * batch_sum(residual.pow(2)).mean()


def denoising_loss_at(
    score: Score, x: Tensor, sigma: Tensor, *, weight_power: float = 2.0, reference: Tensor | None = None,
    generator: torch.Generator | None = None, cond: Any = None, residual_weight: Tensor | None = None,
    reference_labels: Tensor | None = None, noise: Tensor | None = None,
) -> Tensor:
    """(1/B) Σ_b λ(σ_b)·½‖s(x̃_b, σ_b) + (x̃_b − x_b)/σ_b²‖², λ(σ) = σ^weight_power, at given levels σ [B].

    The annealed loss with the levels already drawn (by a noise process, or uniformly
    from a list in :func:`annealed_denoising_score_matching`). ``residual_weight`` [B], when
    given, replaces λ(σ)/σ², the weight of the scaled residual ‖σs + z‖² (so λ(σ) = σ²·residual_weight):
    any weighting of the denoising loss, as :func:`flow_matching_loss_at` uses. ``noise``, when given, is the z
    of x̃ = x + σz (a coupling's), else it is drawn.
    """
    residual = scaled_denoising_residual(score, x, sigma, conditional=True, generator=generator,
                                         reference=reference, cond=cond, reference_labels=reference_labels,
                                         noise=noise)
    weight = sigma ** (weight_power - 2.0) if residual_weight is None else residual_weight
    return 0.5 * (weight * batch_sum(residual.pow(2))).mean()


def flow_matching_loss_at(score: Score, x: Tensor, sigma: Tensor, *, generator: torch.Generator | None = None,
                          cond: Any = None, noise: Tensor | None = None) -> Tensor:
    """Conditional flow matching, E‖v_θ(x_t, t) − (z − x)‖² (Lipman et al. 2022, eq. 23), at levels σ [B].

    x_t = (1 − t)x + tz with t = σ/(1 + σ), and v_θ is the model's velocity view
    (:func:`scorelab.core.processes.velocity_from_denoised`), v_θ = (x_t − D_θ)/t. Since
    x_t − x = t(z − x), the target is z − x = (x_t − x)/t, so

        v_θ − (z − x) = (x − D_θ)/t,   ‖v_θ − (z − x)‖² = ‖D_θ − x‖²/t² = ((1 + σ)/σ)²·‖D_θ − x‖²:

    the denoising loss with λ_D(σ) = ((1 + σ)/σ)² on ‖D_θ − x‖², 1/t², the flow weighting of Esser et al.
    2024 (Sec. 3.1). With D_θ − x = σ(σs + z) it is (1 + σ)²·‖σs + z‖², and in this module's
    λ(σ)·½‖s + (x̃ − x)/σ²‖² it is λ(σ) = 2σ²(1 + σ)²: twice :func:`denoising_loss_at` with
    ``residual_weight = (1 + σ)²``, which is what is computed. Summed over dimensions, averaged over the batch;
    ``score`` is called as ``score(y, sigma)`` in VE coordinates y = x_t/(1 − t). ``noise`` is z where a coupling
    chose it (:mod:`scorelab.objectives.coupling`), else z ~ N(0, I) is drawn independently of x.
    """
    residual_weight = (1 + sigma) ** 2
    return 2.0 * denoising_loss_at(score, x, sigma, generator=generator, cond=cond, residual_weight=residual_weight,
                                   noise=noise)


def edm_loss_at(score: Score, x: Tensor, sigma: Tensor, *, sigma_data: float, generator: torch.Generator | None = None,
                cond: Any = None) -> Tensor:
    """EDM's loss, E λ(σ)·‖D_θ(x + σz, σ) − x‖² with λ(σ) = (σ² + σ_d²)/(σ·σ_d)² (Karras et al. 2022, eq. 8 and
    Table 1), at levels σ [B].

    Under EDM's preconditioning D_θ = c_skip·y + c_out·F_θ, λ(σ)·c_out(σ)² = 1, so this is ‖F_θ − F_target‖²
    with a target of unit variance at every σ: each level weighs the same at the network's output. With
    D_θ − x = σ(σs + z), λ·‖D_θ − x‖² = ((σ² + σ_d²)/σ_d²)·‖σs + z‖², which is twice :func:`denoising_loss_at`
    with that ``residual_weight``. Summed over dimensions, averaged over the batch; ``score`` is called as
    ``score(y, sigma)``.
    """
    residual_weight = (sigma**2 + sigma_data**2) / sigma_data**2
    return 2.0 * denoising_loss_at(score, x, sigma, generator=generator, cond=cond, residual_weight=residual_weight)


def uniform_levels(x: Tensor, sigmas: Tensor, generator: torch.Generator | None) -> Tensor:
    """One level of ``sigmas`` per sample of ``x``, drawn uniformly: shape [B], ``x``'s dtype and device."""
    require_batch(x)
    sigmas = check_noise_levels(torch.as_tensor(sigmas, dtype=x.dtype, device=x.device), ordered=False)
    return sigmas[randint(len(sigmas), x.shape[0], x, generator)]


def annealed_denoising_score_matching(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    weight_power: float = 2.0,
    reference: Tensor | None = None,
    generator: torch.Generator | None = None,
    cond: Any = None,
) -> Tensor:
    """The NCSN loss (Song & Ermon 2019, eq. 6), one random level per sample.

        L(θ) = (1/L) Σ_i λ(σ_i) · ½ E‖s(x̃, σ_i) + (x̃ − x)/σ_i²‖²,  λ(σ) = σ^weight_power.

    Each sample draws its level i uniformly, which is an unbiased estimate of
    the average over levels. With the paper's λ(σ) = σ² every term is
    ½ E‖σ s + z‖², so all levels contribute on the same scale.

    ``reference``: data points [R, *shape], drawn independently of ``x``, that replace
    the target −(x̃ − x)/σ² by the stable target field (:func:`stable_target`). At
    large σ the plain target is mostly noise, and the relative masses of separated
    modes are learned there (BENCHMARKS.md, "Design measurements", for its effect).

    ``score`` is called as ``score(x̃, sigma)`` with ``sigma`` of shape [B].
    """
    return denoising_loss_at(score, x, uniform_levels(x, sigmas, generator), weight_power=weight_power,
                             reference=reference, generator=generator, cond=cond)



def eps_loss_at(score: Score, x: Tensor, sigma: Tensor, *, norm: str = "l2", generator: torch.Generator | None = None,
                cond: Any = None) -> Tensor:
    """:func:`eps_loss` with the levels σ [B] already drawn (by a noise process).

    ``norm = "l1"`` is WaveGrad's loss, E‖ε − ε̂‖₁ (Chen et al. 2020, Sec. 3, where
    it trained more stably than L2 on waveforms); ``"l2"`` is DDPM's L_simple.
    """
    if norm not in EPS_NORMS:
        raise ConfigError(f"unknown eps norm {norm!r}; use one of: {', '.join(EPS_NORMS)}")
    if norm == "l2":
        return 2.0 * denoising_loss_at(score, x, sigma, generator=generator, cond=cond)
    residual = scaled_denoising_residual(score, x, sigma, conditional=True, generator=generator, cond=cond)
    return batch_sum(residual.abs()).mean()


def eps_loss(score: Score, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
             cond: Any = None) -> Tensor:
    """L_simple = E_{t,ε} ‖ε − ε̂(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² (Ho et al. 2020, eq. 14), t uniform.

    ``sigmas`` are the chain's levels σ_t = √((1 − ᾱ_t)/ᾱ_t) (``sl.processes.VP(...).grid()``).
    With ε̂ = −σ_t s(y, σ_t) in VE coordinates y = x_t/√ᾱ_t, ε − ε̂ is the scaled denoising
    residual, so L_simple is exactly twice the annealed DSM loss with λ(σ) = σ² over the
    σ_t: DDPM training is NCSN training on the DDPM noise levels (Song et al. 2021, App. B).
    Summed over dimensions, averaged over the batch. ``score`` is called as ``score(y, sigma)``.
    """
    return eps_loss_at(score, x, uniform_levels(x, sigmas, generator), generator=generator, cond=cond)
