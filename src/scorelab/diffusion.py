"""The DDPM forward process and its bridge to scores (Ho et al. 2020; Song et al. 2021).

A diffusion chain is described by ``alphas_cumprod``, the tensor ᾱ_1 > … > ᾱ_n of
the steps it runs through (index 0 is the least noisy). The full chain is
``sl.noise.alphas_cumprod(betas)``; a shorter chain (DDIM's subsequence, or
Nichol & Dhariwal's respacing) is the same tensor indexed by
:func:`spaced_timesteps`. For consecutive entries, β_t = 1 − ᾱ_t/ᾱ_{t−1}, with ᾱ_0 = 1.

**One model for every sampler.** With σ_t = √((1 − ᾱ_t)/ᾱ_t) (``sl.noise.vp_sigmas``),

    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε   ⇔   y = x_t/√ᾱ_t = x_0 + σ_t ε,

so y is the data perturbed by N(0, σ_t² I) and its score is the scorelab score
s(y, σ_t). Tweedie's formula gives the ideal ε-prediction E[ε | x_t] =
−√(1 − ᾱ_t) ∇ log q_t(x_t) = −σ_t s(y, σ_t), since ∇_{x_t} = ∇_y/√ᾱ_t. Hence

    ε̂(x_t, σ) = −σ · s(x_t·√(1 + σ²), σ)      (:func:`score_to_eps`)
    s(y, σ)    = −ε̂(y/√(1 + σ²), σ) / σ         (:func:`eps_to_score`)

using ᾱ = 1/(1 + σ²). ε-networks are conditioned on σ rather than on the step
index t, so they are defined between the steps too (the ODE needs that).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from scorelab.errors import ConfigError, require_positive_int
from scorelab.noise import alphas_cumprod, beta_schedule
from scorelab.rng import randn_like

Score = Callable[..., Tensor]
EpsModel = Callable[[Tensor, Tensor], Tensor]


def _rows(value: float | Tensor, x: Tensor) -> Tensor:
    """A scalar or a per-sample [B] tensor, shaped to broadcast over the rows of ``x``."""
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return value.reshape(-1, *([1] * (x.ndim - 1)))


def alpha_bar_of_sigma(sigma: Tensor) -> Tensor:
    """ᾱ = 1/(1 + σ²), the inverse of σ = √((1 − ᾱ)/ᾱ)."""
    return 1 / (1 + sigma**2)


def spaced_timesteps(timesteps: int, n_steps: int) -> Tensor:
    """``n_steps`` indices into a chain of ``timesteps``, evenly spaced from 0 to T − 1.

    The "uniform" subsequence τ of DDIM (Song, Meng & Ermon 2020, Sec. 4.2 and App. D.2);
    it keeps both ends, so the chain still starts at the prior and ends at the data.
    Use as ``alphas_cumprod[spaced_timesteps(T, K)]``.
    """
    require_positive_int("timesteps", timesteps)
    require_positive_int("n_steps", n_steps)
    if n_steps > timesteps:
        raise ConfigError(f"n_steps ({n_steps}) cannot exceed the {timesteps} timesteps of the chain")
    return torch.linspace(0, timesteps - 1, n_steps, dtype=torch.float64).round().long()


def make_chain(schedule: str, timesteps: int, n_steps: int | None = None) -> Tensor:
    """ᾱ of a chain: every step of ``beta_schedule(schedule, timesteps)``, or ``n_steps`` evenly spaced ones."""
    alpha_bars = alphas_cumprod(beta_schedule(schedule, timesteps))
    return alpha_bars if n_steps is None else alpha_bars[spaced_timesteps(timesteps, n_steps)]


def q_sample(
    x0: Tensor, alpha_bar: float | Tensor, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Draw x_t ~ q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) (Ho et al. 2020, eq. 4).

    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with ε ~ N(0, I): Gaussian noise scaled by the
    standard deviation (the tutorial series scaled uniform noise by the variance).
    ``alpha_bar`` is a number or a per-sample tensor [B]. Returns (x_t, ε).
    """
    alpha_bar = _rows(alpha_bar, x0)
    noise = randn_like(x0, generator)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise, noise


def q_posterior(
    x0: Tensor, x_t: Tensor, alpha_bar: float | Tensor, alpha_bar_prev: float | Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t−1} | x_t, x_0) (Ho et al. 2020, eqs. 6–7).

        μ̃ = √ᾱ_{t−1} β_t/(1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) · x_t,
        β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t,   with α_t = ᾱ_t/ᾱ_{t−1}, β_t = 1 − α_t.

    ``alpha_bar_prev`` = 1 gives the last step (μ̃ = x_0, β̃ = 0). The variance is
    returned shaped to broadcast over the rows of ``x_t``.
    """
    alpha_bar, alpha_bar_prev = _rows(alpha_bar, x_t), _rows(alpha_bar_prev, x_t)
    alpha = alpha_bar / alpha_bar_prev
    beta = 1 - alpha
    mean = (alpha_bar_prev.sqrt() * beta * x0 + alpha.sqrt() * (1 - alpha_bar_prev) * x_t) / (1 - alpha_bar)
    return mean, (1 - alpha_bar_prev) / (1 - alpha_bar) * beta


def predict_x0(x_t: Tensor, eps: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t, the data estimate implied by an ε-prediction."""
    alpha_bar = _rows(alpha_bar, x_t)
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def score_to_eps(score: Score) -> EpsModel:
    """ε̂(x_t, σ) = −σ · s(x_t·√(1 + σ²), σ): the ε-prediction of a score (see the module docstring).

    ``sigma`` is a tensor [B] of the VE noise levels σ_t of the rows of ``x_t``.
    """

    def eps(x_t: Tensor, sigma: Tensor) -> Tensor:
        sigma_rows = _rows(sigma, x_t)
        return -sigma_rows * score(x_t * (1 + sigma_rows**2).sqrt(), sigma)

    return eps


class EpsScore(nn.Module):
    """A score s(y, σ) = −ε̂(y/√(1 + σ²), σ)/σ made from an ε-prediction network.

    The wrapped network sees the DDPM variable x_t = √ᾱ y, which has unit-order
    variance at every σ for unit-variance data, and predicts unit-variance ε;
    dividing by σ restores the score's 1/σ scale. Its weights live under ``eps_model.``.
    """

    def __init__(self, eps_model: nn.Module) -> None:
        super().__init__()
        self.eps_model = eps_model

    def forward(self, y: Tensor, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).expand(y.shape[0])
        sigma_rows = _rows(sigma, y)
        return -self.eps_model(y / (1 + sigma_rows**2).sqrt(), sigma) / sigma_rows


def eps_to_score(eps_model: nn.Module) -> EpsScore:
    """Wrap an ε-prediction network ``eps_model(x_t, sigma)`` as a scorelab score (:class:`EpsScore`)."""
    return EpsScore(eps_model)
