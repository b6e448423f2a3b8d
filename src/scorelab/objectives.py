"""Score-matching objectives: pure functions ``(score, data, ...) -> scalar loss``.

Single-level objectives call ``score(x)``; multi-level ones call ``score(x, sigma)``
with ``sigma`` a tensor [B] of per-sample noise levels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scorelab.errors import ConfigError, require_positive
from scorelab.rng import randint, randn_like

Score = Callable[..., Tensor]


def _scaled_denoising_residual(
    score: Score, x: Tensor, sigma: Tensor, *, conditional: bool, generator: torch.Generator | None
) -> Tensor:
    """σ·s(x̃) + z for x̃ = x + σz, z ~ N(0, I); one row per sample.

    This is σ times the DSM residual s(x̃) − ∇ log q_σ(x̃|x) = s(x̃) + z/σ
    (Vincent 2011), so its squared norm is O(D) at every σ.
    """
    z = randn_like(x, generator)
    sigma_column = sigma[:, None]
    x_noisy = x + sigma_column * z
    predicted = score(x_noisy, sigma) if conditional else score(x_noisy)
    return sigma_column * predicted + z


def denoising_score_matching(
    score: Score, x: Tensor, sigma: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Denoising score matching at one noise level σ (Vincent 2011), reported σ²-weighted.

    Vincent's objective is J(θ) = ½ E‖s(x̃) + (x̃ − x)/σ²‖² with x̃ = x + σz.
    Its minimum is not 0: the target −z/σ has variance D/σ², so the raw value
    sits near D/(2σ²) (≈ 10⁴ for the seed's σ = 0.01) and hides progress. We
    return σ²·J = ½ E‖σ s(x̃) + z‖², which has the same minimiser and a floor
    of order D/2 minus what the model has learned. Divide by σ² to get J.

    ``score`` is called as ``score(x̃)``.
    """
    require_positive("sigma", sigma)
    sigmas = torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
    residual = _scaled_denoising_residual(score, x, sigmas, conditional=False, generator=generator)
    return 0.5 * residual.pow(2).sum(dim=1).mean()


def annealed_denoising_score_matching(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    weight_power: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The NCSN loss (Song & Ermon 2019, eq. 6), one random level per sample.

        L(θ) = (1/L) Σ_i λ(σ_i) · ½ E‖s(x̃, σ_i) + (x̃ − x)/σ_i²‖²,  λ(σ) = σ^weight_power.

    Each sample draws its level i uniformly, which is an unbiased estimate of
    the average over levels. With the paper's λ(σ) = σ² every term is
    ½ E‖σ s + z‖², so all levels contribute on the same scale.

    ``score`` is called as ``score(x̃, sigma)`` with ``sigma`` of shape [B].
    """
    sigmas = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device)
    if sigmas.ndim != 1 or len(sigmas) == 0 or not (sigmas > 0).all():
        raise ConfigError("sigmas must be a non-empty 1-D tensor of positive noise levels")
    level = randint(len(sigmas), x.shape[0], x, generator)
    sigma = sigmas[level]
    residual = _scaled_denoising_residual(score, x, sigma, conditional=True, generator=generator)
    weight = sigma ** (weight_power - 2.0)
    return 0.5 * (weight * residual.pow(2).sum(dim=1)).mean()
