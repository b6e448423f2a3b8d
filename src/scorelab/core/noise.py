"""Noise levels: σ schedules, the NCSNv2 rules, β schedules, and the one check of a σ list."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError, require_positive, require_positive_int
from scorelab.core.process_settings import BETA_SCHEDULES


def check_noise_levels(sigmas: Tensor, *, ordered: bool = True, strictly: bool = False,
                       at_least: int = 1) -> Tensor:
    """``sigmas`` as a 1-D tensor after checking it; a :class:`ConfigError` that says what is wrong otherwise.

    Every level must be positive and finite, there must be ``at_least`` of them, and
    with ``ordered`` they must be sorted from largest to smallest (``strictly``: no
    two equal), the order in which samplers walk them.
    """
    sigmas = torch.as_tensor(sigmas)
    order = " strictly" if strictly else ""
    wanted = (f"at least {at_least} positive noise level{'s' if at_least > 1 else ''}"
              + (f", sorted{order} from largest to smallest" if ordered else ""))
    if sigmas.ndim != 1 or len(sigmas) < at_least or not (torch.isfinite(sigmas) & (sigmas > 0)).all():
        raise ConfigError(f"sigmas must hold {wanted}, e.g. geometric_sigmas(...)")
    steps = sigmas.diff()
    if ordered and ((steps >= 0).any() if strictly else (steps > 0).any()):
        raise ConfigError(f"sigmas must hold {wanted}, e.g. geometric_sigmas(...)")
    return sigmas


def _check_range(sigma_max: float, sigma_min: float, n_levels: int) -> None:
    """A :class:`ConfigError` unless 0 < σ_min <= σ_max and the number of levels is a positive integer."""
    require_positive("sigma_max", sigma_max)
    require_positive("sigma_min", sigma_min)
    require_positive_int("n_levels", n_levels)
    if sigma_min > sigma_max:
        raise ConfigError(f"sigma_min ({sigma_min}) must not exceed sigma_max ({sigma_max})")


def geometric_sigmas(sigma_max: float, sigma_min: float, n_levels: int) -> Tensor:
    """σ_1 > … > σ_L, a geometric sequence from ``sigma_max`` to ``sigma_min``.

    σ_i = σ_1 · (σ_L/σ_1)^((i−1)/(L−1))  (Song & Ermon 2019, Sec. 4.2).
    Returns a float32 tensor [L], sorted from largest to smallest.
    """
    _check_range(sigma_max, sigma_min, n_levels)
    if n_levels == 1:
        return torch.tensor([float(sigma_max)])
    ratio = torch.linspace(0.0, 1.0, n_levels, dtype=torch.float64)
    return (sigma_max * (sigma_min / sigma_max) ** ratio).float()


def karras_sigmas(sigma_max: float, sigma_min: float, n_levels: int, rho: float = 7.0) -> Tensor:
    """σ_1 > … > σ_K spaced as Karras et al. 2022 (eq. 5): uniform in σ^(1/ρ).

    σ_i = (σ_max^(1/ρ) + (i−1)/(K−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ. ρ = 1 is uniform in σ and
    ρ → ∞ geometric; ρ = 7, the paper's choice, puts more steps at small σ, where the
    probability-flow ODE curves most. Returns a float64 tensor [K], largest first.
    """
    _check_range(sigma_max, sigma_min, n_levels)
    require_positive("rho", rho)
    if n_levels == 1:
        return torch.tensor([float(sigma_max)], dtype=torch.float64)
    ramp = torch.linspace(0.0, 1.0, n_levels, dtype=torch.float64)
    top, bottom = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (top + ramp * (bottom - top)) ** rho


# --- NCSNv2 rules for σ_1, the number of levels and the step size (Song & Ermon 2020) ---

# Φ(3) − Φ(−3): the overlap of the γ criterion as γ → 1; no smaller ratio can give more.
_MAX_OVERLAP = math.erf(3 / math.sqrt(2))


def sigma_max_from_data(data: Tensor, chunk_size: int = 2048) -> float:
    """σ_1 = max_{i,j} ‖x_i − x_j‖, the largest pairwise distance in the data.

    Song & Ermon 2020 ("Improved techniques", technique 1): with σ_1 this large,
    p_σ1 lets Langevin travel between any two data points. Exact: in 2-D and 3-D
    the farthest pair lies on the convex hull (scipy's Qhull), which holds few of
    the points, so only hull vertices are compared; in 1-D it is max − min; in
    higher dimensions every pair is compared, ``chunk_size`` rows at a time. Samples of
    any shape [n, *shape] are compared as flat vectors.
    """
    from scipy.spatial import ConvexHull, QhullError  # imported where it is used, like every heavy dependency

    data = torch.as_tensor(data)
    if data.ndim < 2 or len(data) < 2:
        raise ConfigError(f"data must have shape [n >= 2, *shape] to measure distances, got {tuple(data.shape)}")
    require_positive_int("chunk_size", chunk_size)
    data = data.flatten(1).double()
    if data.shape[1] == 1:
        return (data.max() - data.min()).item()
    if data.shape[1] <= 3 and len(data) > data.shape[1] + 1:
        try:
            data = data[torch.as_tensor(ConvexHull(data.numpy()).vertices)]
        except QhullError:  # flat or degenerate data: compare every pair
            pass
    return max(torch.cdist(rows, data).max().item() for rows in data.split(chunk_size))


def level_overlap(gamma: float, dim: int) -> float:
    """Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ) (Song & Ermon 2020, technique 2).

    For x ~ N(0, σ_i²I) in D dimensions, ‖x‖ ≈ N(√D·σ_i, σ_i²/2). This is the probability
    that a sample at level σ_i has a norm within three standard deviations of the norms
    at the level above, σ_{i−1} = γ·σ_i.
    """
    spread = math.sqrt(2 * dim) * (gamma - 1)
    return 0.5 * (math.erf((spread + 3 * gamma) / math.sqrt(2)) - math.erf((spread - 3 * gamma) / math.sqrt(2)))


def gamma_from_overlap(dim: int, overlap: float = 0.5) -> float:
    """The ratio γ = σ_{i−1}/σ_i that makes :func:`level_overlap` equal ``overlap`` (technique 2).

    Solved by bisection. Past γ = 1 the overlap first rises a little, then falls to 0,
    so it crosses any target below Φ(3) − Φ(−3) once. For D ≤ 4 (√(2D) ≤ 3) it never
    falls: the norm argument assumes high dimension, and there the criterion sets no limit.
    """
    require_positive_int("dim", dim)
    if not 0 < overlap < _MAX_OVERLAP:
        raise ConfigError(f"overlap must be in (0, {_MAX_OVERLAP:.4f}), got {overlap!r}; the paper uses 0.5")
    if 2 * dim <= 9:
        raise ConfigError(f"the γ criterion needs dim >= 5 (every γ passes it in dim {dim}); "
                          "choose n_levels yourself, e.g. 10 to 20 for 2-D data")
    low, high = 1.0, 2.0
    while level_overlap(high, dim) > overlap:
        low, high = high, 2 * high
    for _ in range(60):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if level_overlap(middle, dim) > overlap else (low, middle)
    return 0.5 * (low + high)


def n_levels_from_gamma(sigma_max: float, sigma_min: float, dim: int, overlap: float = 0.5) -> int:
    """L = 1 + ⌈ln(σ_1/σ_L) / ln γ⌉ with γ from :func:`gamma_from_overlap` (technique 2).

    Rounding up keeps the geometric ratio of ``geometric_sigmas(σ_1, σ_L, L)`` at or
    below γ, so adjacent levels overlap at least as much as asked.
    """
    require_positive("sigma_max", sigma_max)
    require_positive("sigma_min", sigma_min)
    if sigma_min > sigma_max:
        raise ConfigError(f"sigma_min ({sigma_min}) must not exceed sigma_max ({sigma_max})")
    gamma = gamma_from_overlap(dim, overlap)
    return 1 + math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma))


def langevin_variance_ratio(step_size: float, gamma: float, n_steps_each: int, sigma_min: float) -> float:
    """s_T²/σ_i² after T annealed Langevin steps at level σ_i (Song & Ermon 2020, Prop. 3, eq. 3).

    With the data a single point, the samples at level i start as N(0, σ_{i−1}²I) and
    after T steps of size α_i = ε·σ_i²/σ_L² are N(0, s_T²I), where, in the paper's
    convention x ← x + ε_p·s + √(2ε_p)·z and with r = 1 − ε_p/σ_L²,

        s_T²/σ_i² = r^{2T}·(γ² − 2ε_p/(σ_L² − σ_L²r²)) + 2ε_p/(σ_L² − σ_L²r²).

    ``step_size`` is ε in the house convention x ← x + (ε/2)·s + √ε·z, so ε_p = ε/2.
    """
    paper_step = step_size / 2
    if not 0 < paper_step < sigma_min**2:
        raise ConfigError(f"step_size must be in (0, 2·sigma_min²) = (0, {2 * sigma_min**2:g}), got {step_size!r}")
    contraction = 1 - paper_step / sigma_min**2
    stationary = 2 * paper_step / (sigma_min**2 - sigma_min**2 * contraction**2)
    return contraction ** (2 * n_steps_each) * (gamma**2 - stationary) + stationary


def ncsnv2_step_size(sigma_min: float, gamma: float, n_steps_each: int) -> float:
    """ε that brings :func:`langevin_variance_ratio` closest to 1 (Song & Ermon 2020, technique 4).

    The paper's rule: pick T = ``n_steps_each`` as large as the budget allows, then the
    ε that makes s_T²/σ_i² ≈ 1. The ratio exceeds 1 for every ε (the discretised chain
    is over-dispersed), so this is its minimum, found on a fine logarithmic grid of
    ε/(2σ_L²) in (1e-12, 1). Returned in the house convention; halve it to compare with
    the paper (CIFAR-10: σ_L = 0.01, L = 232, T = 5 gives ε_p ≈ 6.2e-6).
    """
    require_positive("sigma_min", sigma_min)
    require_positive_int("n_steps_each", n_steps_each)
    if not gamma >= 1:
        raise ConfigError(f"gamma = σ_(i-1)/σ_i must be >= 1, got {gamma!r}")
    # In u = ε_p/σ_L² the ratio no longer depends on σ_L: r = 1 − u, 2ε_p/(σ_L²(1 − r²)) = 2/(2 − u).
    u = torch.logspace(-12, 0, 24_001, dtype=torch.float64)[:-1]
    stationary = 2 / (2 - u)
    ratio = (1 - u) ** (2 * n_steps_each) * (gamma**2 - stationary) + stationary
    return 2 * sigma_min**2 * u[ratio.argmin()].item()


def ncsnv2_schedule(
    data: Tensor, *, sigma_min: float, n_steps_each: int, n_levels: int | None = None, overlap: float = 0.5
) -> tuple[Tensor, float]:
    """Noise levels and step size for annealed Langevin from the NCSNv2 rules (Song & Ermon 2020).

    σ_1 from the largest pairwise distance (technique 1); L from the γ criterion unless
    ``n_levels`` is given (technique 2; it needs dim >= 5); a geometric schedule from σ_1
    to ``sigma_min``; and ε for ``n_steps_each`` from the variance ratio (technique 4).

    Returns:
        ``(sigmas, step_size)`` ready for :func:`scorelab.sampling.annealed_langevin`.
    """
    sigma_max = sigma_max_from_data(data)
    if n_levels is None:
        n_levels = n_levels_from_gamma(sigma_max, sigma_min, data[0].numel(), overlap)
    sigmas = geometric_sigmas(sigma_max, sigma_min, n_levels)
    return sigmas, ncsnv2_step_size_for(sigmas, n_steps_each)


def ncsnv2_step_size_for(sigmas: Tensor, n_steps_each: int) -> float:
    """:func:`ncsnv2_step_size` for a geometric schedule σ_1 > … > σ_L: its σ_L and γ = σ_1/σ_2."""
    gamma = (sigmas[0] / sigmas[1]).item() if len(sigmas) > 1 else 1.0
    return ncsnv2_step_size(sigmas[-1].item(), gamma, n_steps_each)

# --- β schedules for diffusion models (DDPM/DDIM) and their variance-exploding view ---


def beta_schedule(name: str, timesteps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """β_1, …, β_T of a DDPM forward process q(x_t | x_{t−1}) = N(√(1−β_t) x_{t−1}, β_t I).

    - ``linear``: β_t evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020: 1e-4 → 0.02, T = 1000).
    - ``quadratic``: √β_t evenly spaced, then squared (the DDPM/DDIM repositories' ``quad``).
    - ``sigmoid``: β_start + (β_end − β_start)·sigmoid(u), u evenly spaced on [−6, 6]
      (the DDIM repository and the tutorial series).
    - ``cosine``: ᾱ(t) = f(t)/f(0), f(t) = cos²(π/2 · (t/T + s)/(1 + s)), s = 0.008, and
      β_t = min(1 − ᾱ(t)/ᾱ(t−1), 0.999) (Nichol & Dhariwal 2021, eq. 17); ignores the β bounds.
    - ``wavegrad``: linear from 1e-6 to 0.01, WaveGrad's training chain (Chen et al. 2020, Sec. 4),
      whose smallest level σ_1 ≈ 0.001 is below the hiss a waveform's ear hears; ignores the β bounds.

    Returns a float64 tensor [T]: ᾱ_t near 0 and 1 needs the precision; cast where used.
    """
    require_positive_int("timesteps", timesteps)
    if name not in BETA_SCHEDULES:
        raise ConfigError(f"unknown beta schedule {name!r}; use one of: {', '.join(BETA_SCHEDULES)}")
    if name == "cosine":
        s = 0.008
        t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((t + s) / (1 + s) * torch.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)
    if name == "wavegrad":
        return torch.linspace(1e-6, 0.01, timesteps, dtype=torch.float64)
    require_positive("beta_start", beta_start)
    if not beta_start <= beta_end < 1:
        raise ConfigError(f"need beta_start <= beta_end < 1, got {beta_start} and {beta_end}")
    if name == "linear":
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    if name == "quadratic":
        return torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
    u = torch.linspace(-6.0, 6.0, timesteps, dtype=torch.float64)
    return beta_start + (beta_end - beta_start) * torch.sigmoid(u)


def alphas_cumprod(betas: Tensor) -> Tensor:
    """ᾱ_t = Π_{s≤t} (1 − β_s), so that q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) (Ho et al. 2020, eq. 4)."""
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or len(betas) == 0 or not ((betas > 0) & (betas < 1)).all():
        raise ConfigError("betas must be a non-empty 1-D tensor with every β_t in (0, 1)")
    return torch.cumprod(1 - betas, dim=0)


def sigmas_of_betas(betas: Tensor | list[float]) -> Tensor:
    """The VE levels σ_n = √((1 − ᾱ_n)/ᾱ_n) of a chain β_1, …, β_N, largest first (a sampler's grid)."""
    return vp_sigmas(alphas_cumprod(torch.as_tensor(betas, dtype=torch.float64))).flip(0)


def spaced_timesteps(timesteps: int, n_steps: int) -> Tensor:
    """``n_steps`` indices into a chain of ``timesteps``, evenly spaced from 0 to T − 1.

    The "uniform" subsequence τ of DDIM (Song, Meng & Ermon 2020, Sec. 4.2 and App. D.2);
    it keeps both ends, so the chain still starts at the prior and ends at the data.
    """
    require_positive_int("timesteps", timesteps)
    require_positive_int("n_steps", n_steps)
    if n_steps > timesteps:
        raise ConfigError(f"n_steps ({n_steps}) cannot exceed the {timesteps} timesteps of the chain")
    return torch.linspace(0, timesteps - 1, n_steps, dtype=torch.float64).round().long()


def vp_sigmas(alphas_cumprod: Tensor) -> Tensor:
    """σ_t = √((1 − ᾱ_t)/ᾱ_t): the noise level of the variance-exploding view of x_t.

    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε means x_t/√ᾱ_t = x_0 + σ_t ε, so x_t/√ᾱ_t is the data
    perturbed by N(0, σ_t² I), the quantity every score model ``s(x, σ)`` is trained on
    (Song et al. 2021, "Score-based generative modeling through SDEs", App. B; Karras et al. 2022, eq. 6).
    """
    alphas_cumprod = torch.as_tensor(alphas_cumprod)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def alpha_bar_of_sigma(sigma: Tensor) -> Tensor:
    """ᾱ = 1/(1 + σ²), the inverse of :func:`vp_sigmas`."""
    return 1 / (1 + sigma**2)
