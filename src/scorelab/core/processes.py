"""Noise processes: how data is perturbed for training, where sampling starts, which levels it walks.

Every process perturbs data x as

    x_t = a(σ)·(x + σ·z),   z ~ N(0, I)

(Karras et al. 2022, "Elucidating the design space of diffusion-based generative models",
Sec. 2 and Table 1, with their s(t) as a(σ)). The variance-exploding process has a = 1 (Song & Ermon 2019; the
VE SDE of Song et al. 2021); the variance-preserving one a = 1/√(1 + σ²) = √ᾱ, so that
x_t = √ᾱ x + √(1 − ᾱ) z (Ho et al. 2020; the VP SDE). Divided by a, the two are the same:
y = x_t/a = x + σz is the data perturbed by N(0, σ²I), and its score s(y, σ) = ∇_y log p_σ(y)
is what every scorelab model learns. Objectives and samplers therefore work in these VE
coordinates y, and a process differs only in

- the noise level drawn for training (:meth:`NoiseProcess.training_sigma`);
- its prior, where sampling starts: N(0, prior_std²·I) in y (:meth:`NoiseProcess.prior`);
- its grid, the σ's a sampler walks from σ_max to σ_min (:meth:`NoiseProcess.grid`);
- its own coordinates x_t = a·y (:meth:`NoiseProcess.perturb`, :meth:`NoiseProcess.to_ve`).

The three views of a score are conversions in y (Song et al. 2021, App. B; Karras et al. 2022, eq. 3):
the denoiser D(y, σ) = y + σ²·s(y, σ) (Tweedie's formula, E[x | y]), the noise
ε̂(y, σ) = −σ·s(y, σ) (E[z | y], DDPM's ε-prediction, the same number in x_t), and the
score in the process's own coordinates, ∇_{x_t} log p_t = s(y, σ)/a(σ).

The flow process is the linear interpolant x_t = (1 − t)·x + t·z of flow matching (Lipman et al.
2022; Liu et al. 2022, rectified flow): a = 1 − t and σ = t/(1 − t), so t = σ/(1 + σ) (Karras et al.
2022's s(t) and σ(t)). Its fourth view is the velocity v = z − x, E[z − x | x_t] = dx_t/dt along the
probability-flow ODE (:func:`velocity_from_score`). VE, VP and flow are one ODE in y, dy/dσ = −σ·s(y, σ);
nothing outside this module branches on the family.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from scorelab.core.noise import (
    alphas_cumprod,
    beta_schedule,
    geometric_sigmas,
    n_levels_from_gamma,
    sigma_max_from_data,
    spaced_timesteps,
    vp_sigmas,
)
from scorelab.core.process_settings import SETTINGS, FlowSettings, VESettings
from scorelab.core.registry import Part, Registry, make_settings
from scorelab.core.rng import AnyGenerator, rand, randint, randn
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import append_dims, batch_sum

# --- the views of a score, in VE coordinates ---------------------------------------------------


def denoised_from_score(y: Tensor, score: Tensor, sigma: Tensor) -> Tensor:
    """D(y, σ) = y + σ²·s(y, σ): Tweedie's formula for E[x | y = x + σz] (Efron 2011)."""
    return y + append_dims(sigma, y.ndim) ** 2 * score


def score_from_denoised(y: Tensor, denoised: Tensor, sigma: Tensor) -> Tensor:
    """s(y, σ) = (D(y, σ) − y)/σ², the inverse of :func:`denoised_from_score`."""
    return (denoised - y) / append_dims(sigma, y.ndim) ** 2


def call_denoiser(score: Score, x: Tensor, sigma: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
    """The denoiser D(x, σ) and the score s(x, σ), from a model's own ``denoise`` view when it has one
    (:class:`~scorelab.models.Preconditioned`, whose D is exact where its preconditioning makes it so: a consistency
    model's f(x, σ_min) = x), otherwise D = x + σ²·s."""
    if hasattr(score, "denoise"):
        denoised = score.denoise(x, sigma, cond=cond) if cond is not None else score.denoise(x, sigma)
        return denoised, score_from_denoised(x, denoised, sigma)
    grad = call_score(score, x, sigma, cond)
    return denoised_from_score(x, grad, sigma), grad


def clipped_denoiser(score: Score, low: float, high: float) -> Score:
    """The score whose denoiser is ``score``'s clamped to [low, high]: s'(y, σ) = (clamp(D(y, σ)) − y)/σ².

    Where the data lie in a box (audio samples in [-1, 1]), so does E[x | y]; Ho et al.'s code clips its
    x̂_0 to the data's range at each step, which keeps a few coarse steps of an imperfect network from
    carrying its errors beyond any sample the data could hold.
    """

    def clipped(y: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        denoised = denoised_from_score(y, call_score(score, y, sigma, cond), sigma)
        return score_from_denoised(y, denoised.clamp(low, high), sigma)

    return clipped


def eps_from_score(score: Tensor, sigma: Tensor) -> Tensor:
    """ε̂ = −σ·s(y, σ) = E[z | y]: the noise prediction of DDPM (Ho et al. 2020, eq. 11) from a score."""
    return -append_dims(sigma, score.ndim) * score


def flow_time(sigma: Tensor) -> Tensor:
    """t = σ/(1 + σ): the time of the linear interpolant x_t = (1 − t)x + tz at noise level σ."""
    return sigma / (1 + sigma)


def flow_sigma(t: Tensor) -> Tensor:
    """σ = t/(1 − t): the noise level of the linear interpolant at time t (Karras et al. 2022, Table 1's σ(t))."""
    return t / (1 - t)


def velocity_from_denoised(y: Tensor, denoised: Tensor, sigma: Tensor) -> Tensor:
    """v = (x_t − D)/t = (y − (1 + σ)·D(y, σ))/σ: the flow-matching velocity E[z − x | x_t] (Lipman et al. 2022).

    From x_t = (1 − t)x + tz, x_t − x = t(z − x), so E[z − x | x_t] = (x_t − E[x | x_t])/t; with
    x_t = y/(1 + σ) and t = σ/(1 + σ) this is (y − (1 + σ)D)/σ, in x_t's coordinates (v = dx_t/dt).
    """
    column = append_dims(sigma, y.ndim)
    return (y - (1 + column) * denoised) / column


def velocity_from_score(y: Tensor, score: Tensor, sigma: Tensor) -> Tensor:
    """v = −y − σ(1 + σ)·s(y, σ): :func:`velocity_from_denoised` with Tweedie's D = y + σ²s.

    At the conditional score s = −z/σ of one data point it is z − x exactly (y = x + σz).
    """
    column = append_dims(sigma, y.ndim)
    return -y - column * (1 + column) * score


def score_from_velocity(y: Tensor, velocity: Tensor, sigma: Tensor) -> Tensor:
    """s(y, σ) = −(v + y)/(σ(1 + σ)), the inverse of :func:`velocity_from_score`."""
    column = append_dims(sigma, y.ndim)
    return -(velocity + y) / (column * (1 + column))


# --- processes ------------------------------------------------------------------------------


class NoiseProcess(ABC):
    """A noise process x_t = a(σ)(x + σz) over σ in [``sigma_min``, ``sigma_max``] (see the module docstring)."""

    sigma_min: float
    sigma_max: float

    @abstractmethod
    def scale(self, sigma: Tensor) -> Tensor:
        """a(σ), the factor between the process's coordinates and the VE ones: x_t = a(σ)·y."""

    def scale_at(self, sigma: float) -> float:
        """a(σ) at one noise level, as a number (for the per-step arithmetic of samplers)."""
        return self.scale(torch.tensor(sigma, dtype=torch.float64)).item()

    @abstractmethod
    def training_sigma(self, n: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """σ for ``n`` training samples, shape [n], ``like``'s dtype and device."""

    @abstractmethod
    def grid(self, n_steps: int | None = None) -> Tensor:
        """The noise levels a sampler walks, largest first: the process's own levels, or ``n_steps`` of them."""

    @property
    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the prior N(0, prior_std²·I) at σ_max, in VE coordinates."""

    def perturb(self, x: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
        """x_t = a(σ)·(x + σ·z) for data ``x`` [B, *shape], levels ``sigma`` [B] and noise ``z``."""
        return append_dims(self.scale(sigma), x.ndim) * (x + append_dims(sigma, x.ndim) * noise)

    def to_ve(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        """y = x_t/a(σ): the process's coordinates to the VE ones in which scores are defined."""
        return x_t / append_dims(self.scale(sigma), x_t.ndim)

    def prior(self, shape: tuple[int, ...], *, generator: AnyGenerator | None = None,
              device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Draws of the prior N(0, prior_std²·I), shape ``shape`` = (n, *sample shape), on ``device``.

        The numbers are drawn on the generator's device and then moved, so one seed gives one start everywhere.
        """
        return randn(shape, generator, device=device, dtype=dtype) * self.prior_std

    def prior_log_prob(self, y: Tensor) -> Tensor:
        """log N(y; 0, prior_std²·I) for each sample of ``y`` [B, *shape], in nats."""
        std = self.prior_std
        dim = y[0].numel()
        return -0.5 * batch_sum((y / std) ** 2) - dim * math.log(std * math.sqrt(2 * math.pi))


class VE(NoiseProcess):
    """The variance-exploding process: y = x + σz, a(σ) = 1 (Song & Ermon 2019; the VE SDE of Song et al. 2021).

    Discrete: the geometric levels σ_1 > … > σ_L of ``geometric_sigmas``, one drawn uniformly per
    training sample (the NCSN loss). Continuous, ``sigma_density``:

    - ``log_uniform``: log σ uniform on [log σ_min, log σ_max], the VE SDE's σ(t) = σ_min(σ_max/σ_min)^t
      at t ~ U(0, 1);
    - ``lognormal``: ln σ ~ N(P_mean, P_std²), EDM's training density (Karras et al. 2022, Sec. 5 and
      Table 1), which spends the training on the middle levels, where the loss can still fall, and is not
      bounded by the sampler's range (as in EDM).

    The prior is N(0, σ_max²·I), as in both papers.
    """

    def __init__(self, sigma_max: float, sigma_min: float, n_levels: int = 20, continuous: bool = False,
                 sigma_density: str = "log_uniform", p_mean: float = -1.2, p_std: float = 1.2) -> None:
        self.levels = geometric_sigmas(sigma_max, sigma_min, n_levels)
        self.sigma_max, self.sigma_min, self.continuous = float(sigma_max), float(sigma_min), continuous
        self.sigma_density, self.p_mean, self.p_std = sigma_density, float(p_mean), float(p_std)

    def scale(self, sigma: Tensor) -> Tensor:
        return torch.ones_like(sigma)

    def training_sigma(self, n: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.continuous and self.sigma_density == "lognormal":
            normal = randn((n,), generator, device=like.device, dtype=torch.float64)
            return torch.exp(self.p_mean + self.p_std * normal).to(like.dtype)
        if self.continuous:
            u = rand(n, like, generator, dtype=torch.float64)
            return torch.exp(math.log(self.sigma_min) + u * math.log(self.sigma_max / self.sigma_min)).to(like.dtype)
        levels = self.levels.to(dtype=like.dtype, device=like.device)
        return levels[randint(len(levels), n, like, generator)]

    def grid(self, n_steps: int | None = None) -> Tensor:
        return self.levels if n_steps is None else geometric_sigmas(self.sigma_max, self.sigma_min, n_steps)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def __repr__(self) -> str:
        density = (f", sigma_density='lognormal', p_mean={self.p_mean:g}, p_std={self.p_std:g}"
                   if self.sigma_density == "lognormal" else "")
        return (f"VE(sigma_max={self.sigma_max:g}, sigma_min={self.sigma_min:g}, n_levels={len(self.levels)}, "
                f"continuous={self.continuous}{density})")


class VP(NoiseProcess):
    """The variance-preserving process of DDPM: x_t = √ᾱ_t x + √(1 − ᾱ_t) z over T steps (Ho et al. 2020).

    In VE coordinates its levels are σ_t = √((1 − ᾱ_t)/ᾱ_t) (``sl.noise.vp_sigmas``) and a(σ) =
    1/√(1 + σ²). Discrete: t uniform on {1, …, T}. Continuous: WaveGrad's draw (Chen et al. 2020,
    Sec. 3.1), t uniform and then √ᾱ uniform between √ᾱ_t and √ᾱ_{t−1} (√ᾱ_0 = 1), which covers
    every level between the steps. Its σ is kept at or above σ_1/1000, so that log σ and 1/σ stay
    finite; that moves one draw in a billion. The prior is x_T ~ N(0, I), N(0, (1 + σ_T²)·I) in y.
    """

    def __init__(self, schedule: str = "linear", timesteps: int = 1000, continuous: bool = False) -> None:
        self.alphas_cumprod = alphas_cumprod(beta_schedule(schedule, timesteps))
        self.levels = vp_sigmas(self.alphas_cumprod)  # float64, σ_1 < … < σ_T
        self.schedule, self.timesteps, self.continuous = schedule, timesteps, continuous
        self.sigma_min, self.sigma_max = self.levels[0].item(), self.levels[-1].item()
        # √ᾱ_0 = 1, √ᾱ_1, …, √ᾱ_T: the ends of the segments the continuous draw falls between.
        self._roots = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod.sqrt()])

    def scale(self, sigma: Tensor) -> Tensor:
        return torch.rsqrt(1 + sigma**2)

    def training_sigma(self, n: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        step = randint(self.timesteps, n, like, generator)
        if not self.continuous:
            return self.levels.to(dtype=like.dtype, device=like.device)[step]
        roots = self._roots.to(like.device)
        low, high = roots[step + 1], roots[step]
        root = low + rand(n, like, generator, dtype=torch.float64) * (high - low)
        sigma = ((1 - root) * (1 + root)).sqrt() / root
        return sigma.clamp_min(self.sigma_min / 1000).to(like.dtype)

    def grid(self, n_steps: int | None = None) -> Tensor:
        levels = self.levels if n_steps is None else self.levels[spaced_timesteps(self.timesteps, n_steps)]
        return levels.flip(0)

    @property
    def prior_std(self) -> float:
        return math.sqrt(1 + self.sigma_max**2)

    def __repr__(self) -> str:
        return f"VP(schedule={self.schedule!r}, timesteps={self.timesteps}, continuous={self.continuous})"


class Flow(NoiseProcess):
    """The linear interpolant of flow matching: x_t = (1 − t)·x + t·z, t in [t_min, t_max] (Lipman et al. 2022).

    It is the core's perturbation with a(σ) = 1 − t = 1/(1 + σ) and σ = t/(1 − t) (Karras et al. 2022,
    Table 1), so its scores, denoisers and samplers are the VE ones in y = x_t/(1 − t); t_max < 1
    keeps σ_max finite. Training t: uniform on [t_min, t_max] (conditional flow matching), or
    logit-normal (Esser et al. 2024, Sec. 3.1), logit t = log σ ~ N(m, s²), clamped to the range.
    Grid: ``n_levels`` times uniform in t, t_max first. Prior: x_{t_max} ~ N(0, ((1 − t)² + t²)·I),
    the marginal for data of unit variance (as VP's), N(0, (1 + σ_max²)·I) in y.
    """

    def __init__(self, t_min: float = 0.002, t_max: float = 0.98, t_density: str = "uniform",
                 logit_mean: float = 0.0, logit_std: float = 1.0, n_levels: int = 32) -> None:
        make_settings(FlowSettings, dict(t_min=t_min, t_max=t_max, t_density=t_density, logit_mean=logit_mean,
                                         logit_std=logit_std, n_levels=n_levels), "process 'flow'")
        self.t_min, self.t_max, self.t_density = float(t_min), float(t_max), t_density
        self.logit_mean, self.logit_std, self.n_levels = float(logit_mean), float(logit_std), n_levels
        self.sigma_min, self.sigma_max = self.t_min / (1 - self.t_min), self.t_max / (1 - self.t_max)

    def scale(self, sigma: Tensor) -> Tensor:
        return 1 / (1 + sigma)

    def training_sigma(self, n: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.t_density == "uniform":
            t = self.t_min + rand(n, like, generator, dtype=torch.float64) * (self.t_max - self.t_min)
            return flow_sigma(t).to(like.dtype)
        normal = randn((n,), generator, device=like.device, dtype=torch.float64)
        sigma = torch.exp(self.logit_mean + self.logit_std * normal)
        return sigma.clamp(self.sigma_min, self.sigma_max).to(like.dtype)

    def grid(self, n_steps: int | None = None) -> Tensor:
        t = torch.linspace(self.t_max, self.t_min, n_steps or self.n_levels, dtype=torch.float64)
        return flow_sigma(t)

    @property
    def prior_std(self) -> float:
        return math.sqrt(1 + self.sigma_max**2)

    def __repr__(self) -> str:
        return (f"Flow(t_min={self.t_min:g}, t_max={self.t_max:g}, t_density={self.t_density!r}, "
                f"logit_mean={self.logit_mean:g}, logit_std={self.logit_std:g}, n_levels={self.n_levels})")


# --- the registry (each process's settings: scorelab.core.process_settings) ----------------------


@dataclass(frozen=True)
class ProcessPart(Part):
    """A registered noise process: ``build(settings)``; ``max_steps(settings)``, the most levels a sampler
    may pick from its grid (a discrete chain's T)."""

    section = "process"

    build: Callable[[object], NoiseProcess] = None  # type: ignore[assignment]
    max_steps: Callable[[object], int | None] = lambda settings: None


def _resolve_ve(settings: VESettings, data: Tensor) -> VESettings:
    """σ_1 from the largest pairwise distance (NCSNv2 technique 1) and L from the γ criterion
    (technique 2), when they are 0; σ_1 is rounded to 4 decimals so that config.toml reads well."""
    if not settings.sigma_max:
        settings = replace(settings, sigma_max=round(sigma_max_from_data(data), 4))
    if not settings.n_levels:
        settings = replace(settings, n_levels=n_levels_from_gamma(settings.sigma_max, settings.sigma_min,
                                                                  data[0].numel()))
    return settings


PROCESSES: Registry[ProcessPart] = Registry("process")
PROCESSES.register(ProcessPart(
    "ve", SETTINGS["ve"], "variance exploding: y = x + σz over geometric levels (NCSN)",
    # Alone, --process ve is the NCSN, which it named while that was the default family.
    implies={"objective": "annealed_dsm", "sampler": "stochastic_heun"},
    build=lambda s: VE(s.sigma_max, s.sigma_min, s.n_levels, s.continuous, s.sigma_density, s.p_mean, s.p_std),
    resolve=_resolve_ve))
PROCESSES.register(ProcessPart(
    "vp", SETTINGS["vp"], "variance preserving: x_t = √ᾱ_t x + √(1 − ᾱ_t) z over T steps (DDPM)",
    # Alone, --process vp keeps the network it had while the NCSN was the default family.
    implies={"model": "noise_conditional", "objective": "eps", "sampler": "ddpm"},
    build=lambda s: VP(s.schedule, s.timesteps, s.continuous), max_steps=lambda s: s.timesteps))
PROCESSES.register(ProcessPart(
    "flow", SETTINGS["flow"], "linear interpolant x_t = (1 − t)x + tz of flow matching (σ = t/(1 − t))",
    # DPM-Solver++(2M) through the denoiser did better in 20 evaluations than Euler in t (BENCHMARKS.md "families").
    implies={"objective": "flow_matching", "sampler": "dpmpp_2m"},
    # The velocity is v = (y − (1 + σ)·D)/σ: under the VE parameterisation (D = y + σF) an error in F comes out
    # (1 + σ) times larger in v at high noise, while EDM's c_out keeps D's error, and so v's, bounded
    # (tests/test_flow.py, the trained Gaussian's velocity).
    presets={"parameterisation": "edm"},
    build=lambda s: Flow(s.t_min, s.t_max, s.t_density, s.logit_mean, s.logit_std, s.n_levels)))
