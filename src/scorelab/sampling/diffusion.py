"""DDPM ancestral sampling and DDIM, driven by a score.

Both samplers run a chain given by ``alphas_cumprod`` = ᾱ_1 > … > ᾱ_n (index 0
least noisy; see :mod:`scorelab.diffusion`): the full chain, or a subsequence
``alphas_cumprod[spaced_timesteps(T, K)]`` to take K steps. They start from
x_T ~ N(0, I) in the DDPM variable x_t = √ᾱ_t (x_0 + σ_t ε) and return x_0.
The score is evaluated on y = x_t/√ᾱ_t at σ_t and turned into ε̂ by
:func:`scorelab.diffusion.score_to_eps`.

Same conventions as :mod:`scorelab.sampling.langevin`: pure, ``torch.no_grad``,
on ``x``'s device, and ``callback`` gets a :class:`StepInfo` after each step with
``x`` = x_{t−1}, ``sigma`` = σ_t, ``step_size`` = σ_t − σ_{t−1} and ``score`` = s(y, σ_t).
"""

from __future__ import annotations

import torch
from torch import Tensor

from scorelab.diffusion import predict_x0, q_posterior, score_to_eps
from scorelab.errors import ConfigError
from scorelab.noise import per_sample, vp_sigmas
from scorelab.rng import randn_like
from scorelab.sampling.langevin import Callback, Score, StepInfo

DDPM_VARIANCES = ("beta", "posterior")


def _chain(alphas_cumprod: Tensor) -> tuple[list[float], list[float]]:
    """ᾱ and σ of each step as Python floats, validated: 1 > ᾱ_1 > … > ᾱ_n > 0."""
    alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    if alphas_cumprod.ndim != 1 or len(alphas_cumprod) == 0:
        raise ConfigError("alphas_cumprod must be a non-empty 1-D tensor; use sl.noise.alphas_cumprod(betas)")
    if not ((alphas_cumprod > 0) & (alphas_cumprod < 1)).all() or (alphas_cumprod.diff() >= 0).any():
        raise ConfigError("alphas_cumprod must decrease strictly inside (0, 1), least noisy step first")
    return alphas_cumprod.tolist(), vp_sigmas(alphas_cumprod).tolist()


def _reverse_steps(alphas_cumprod: Tensor) -> list[tuple[float, float, float, float]]:
    """(ᾱ_t, σ_t, ᾱ_{t−1}, σ_{t−1}) from the noisiest step down; the step below the first is ᾱ = 1, σ = 0."""
    alpha_bars, sigmas = _chain(alphas_cumprod)
    previous = list(zip([1.0, *alpha_bars[:-1]], [0.0, *sigmas[:-1]]))
    return [(alpha_bars[i], sigmas[i], *previous[i]) for i in reversed(range(len(alpha_bars)))]


@torch.no_grad()
def ddpm(
    score: Score,
    x: Tensor,
    alphas_cumprod: Tensor,
    *,
    variance: str = "beta",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2).

        x_{t−1} = μ̃(x̂_0, x_t) + σ_t z,   x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t,   z ~ N(0, I),

    with μ̃ the posterior mean of q(x_{t−1} | x_t, x_0) (equal to Ho's
    (x_t − β_t ε̂/√(1 − ᾱ_t))/√α_t) and σ_t² = β_t (``variance="beta"``) or the
    posterior variance β̃_t (``"posterior"``); both are optimal for some data
    (Ho et al. 2020, Sec. 3.2). The last step adds no noise: it returns μ̃ = x̂_0.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B].
        x: x_T, usually N(0, I) draws [B, D].
        alphas_cumprod: ᾱ of the chain to run, least noisy first.
    """
    if variance not in DDPM_VARIANCES:
        raise ConfigError(f"unknown DDPM variance {variance!r}; use one of: {', '.join(DDPM_VARIANCES)}")
    eps_model = score_to_eps(score)
    for step, (alpha_bar, sigma, alpha_bar_prev, sigma_prev) in enumerate(_reverse_steps(alphas_cumprod)):
        eps = eps_model(x, per_sample(sigma, x))
        mean, posterior_variance = q_posterior(predict_x0(x, eps, alpha_bar), x, alpha_bar, alpha_bar_prev)
        if alpha_bar_prev < 1.0:
            step_variance = 1 - alpha_bar / alpha_bar_prev if variance == "beta" else posterior_variance
            x = mean + step_variance**0.5 * randn_like(x, generator)
        else:
            x = mean
        if callback is not None:
            callback(StepInfo(x, step, sigma, sigma - sigma_prev, -eps / sigma))
    return x


@torch.no_grad()
def ddim(
    score: Score,
    x: Tensor,
    alphas_cumprod: Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """DDIM sampling (Song, Meng & Ermon 2020, eq. 12), on any subsequence of steps.

        x_{t−1} = √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1} − σ_t²) ε̂ + σ_t z,
        σ_t = η √((1 − ᾱ_{t−1})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t−1})       (eq. 16).

    η = 0 is deterministic: it is Euler's method on the probability-flow ODE
    dy/dσ = −σ s(y, σ) in y = x/√ᾱ (Karras et al. 2022, Sec. 4), and the same as
    :func:`scorelab.sampling.probability_flow` with ``method="euler"`` on these σ's.
    η = 1 on the full chain is DDPM with the posterior variance β̃_t.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B].
        x: x_T, usually N(0, I) draws [B, D].
        alphas_cumprod: ᾱ of the steps to take, least noisy first, e.g.
            ``alphas_cumprod[spaced_timesteps(1000, 50)]``.
        eta: η in [0, 1], the share of fresh noise.
    """
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta must be in [0, 1], got {eta}")
    eps_model = score_to_eps(score)
    for step, (alpha_bar, sigma, alpha_bar_prev, sigma_prev) in enumerate(_reverse_steps(alphas_cumprod)):
        eps = eps_model(x, per_sample(sigma, x))
        noise_std = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)) ** 0.5
        # max(·, 0): the bracket is 0 at the last step (ᾱ_{t−1} = 1) and must not round below it.
        direction = max(1 - alpha_bar_prev - noise_std**2, 0.0) ** 0.5 * eps
        x = alpha_bar_prev**0.5 * predict_x0(x, eps, alpha_bar) + direction
        if noise_std > 0:
            x = x + noise_std * randn_like(x, generator)
        if callback is not None:
            callback(StepInfo(x, step, sigma, sigma - sigma_prev, -eps / sigma))
    return x
