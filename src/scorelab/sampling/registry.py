"""The samplers a trained run can use, by name, each with its settings: ``scorelab sample --sampler``.

Each entry draws a batch in the model's VE coordinates from a score and the run's noise
process: it asks the process for its prior and its grid, and calls one of the pure samplers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError
from scorelab.core.noise import karras_sigmas, ncsnv2_step_size_for, sigmas_of_betas
from scorelab.core.processes import VP, NoiseProcess
from scorelab.core.registry import Part, Registry, at_least_zero, one_of, positive, positive_int, setting, within
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import per_sample
from scorelab.sampling.ancestral import DDPM_VARIANCES, ddim, ddpm
from scorelab.sampling.langevin import annealed_langevin, langevin, predictor_corrector
from scorelab.sampling.ode import probability_flow
from scorelab.sampling.solvers import dpm_solver_2m, heun
from scorelab.sampling.steps import Callback

# sample(score, process, settings, start, generator, callback, cond) -> samples; ``start`` is
# the prior draw, made by the caller so that it decides where and how the noise is drawn.
Draw = Callable[[Score, NoiseProcess, Any, Tensor, "torch.Generator | None", "Callback | None", Any], Tensor]


@dataclass(frozen=True)
class SamplerPart(Part):
    """A registered sampler; ``respaces_process`` when its ``sample_steps`` picks levels of the
    process's own grid (and so can be no more than a discrete process has)."""

    section = "sampler"

    sample: Draw = None  # type: ignore[assignment]
    respaces_process: bool = False


_N_STEPS_EACH = "Langevin steps per level of the process's grid"
_DENOISE = "finish with a Tweedie denoising step"
_LEVELS = "levels of the process's grid, same ends (0: every level)"


@dataclass(frozen=True)
class AnnealedLangevinSettings:
    sample_steps: int = setting(0, _LEVELS, at_least_zero("every level"))
    n_steps_each: int = setting(100, _N_STEPS_EACH, positive_int)
    step_size: float = setting(2e-5, "Langevin step size ε at the smallest level (0: the NCSNv2 variance rule)",
                               at_least_zero("the NCSNv2 rule"))
    denoise: bool = setting(True, _DENOISE)


def _plain_step_size(name: str, value: float) -> None:
    if value == 0:
        raise ConfigError("step_size = 0 (the NCSNv2 rule) is for annealed Langevin; give plain Langevin a step size")
    positive(name, value)


@dataclass(frozen=True)
class LangevinSettings:
    n_steps_each: int = setting(100, _N_STEPS_EACH, positive_int)
    step_size: float = setting(3e-3, "Langevin step size ε", _plain_step_size)


@dataclass(frozen=True)
class PredictorCorrectorSettings:
    sample_steps: int = setting(0, "levels to walk, one predictor and one corrector step each (0: n_steps_each "
                                   "per level of the process's grid)", at_least_zero("n_steps_each per level"))
    n_steps_each: int = setting(100, "levels per level of the process's grid, when sample_steps is 0",
                                positive_int)
    snr: float = setting(0.16, "the corrector's signal-to-noise ratio", positive)
    denoise: bool = setting(True, _DENOISE)


@dataclass(frozen=True)
class DDPMSettings:
    sample_steps: int = setting(0, _LEVELS, at_least_zero("every level"))
    variance: str = setting("beta", "the reverse step's variance: " + " | ".join(DDPM_VARIANCES),
                            one_of(*DDPM_VARIANCES))


@dataclass(frozen=True)
class DDIMSettings:
    sample_steps: int = setting(0, _LEVELS, at_least_zero("every level"))
    eta: float = setting(0.0, "DDIM η in [0, 1] (0 is deterministic)", within(0.0, 1.0))


@dataclass(frozen=True)
class ODESettings:
    sample_steps: int = setting(0, "levels of the process's grid for Heun's method (0: the adaptive dopri5 solver)",
                                at_least_zero("the adaptive dopri5 solver"))
    tolerance: float = setting(1e-5, "the adaptive solver's relative and absolute tolerance", positive)
    denoise: bool = setting(True, _DENOISE)


_KARRAS_STEPS = "steps K on the Karras σ grid over the process's range, the last to σ = 0"
_RHO = "ρ of the Karras grid: σ^(1/ρ) uniform (7 in EDM)"


@dataclass(frozen=True)
class HeunSettings:
    sample_steps: int = setting(18, _KARRAS_STEPS, positive_int)
    rho: float = setting(7.0, _RHO, positive)


@dataclass(frozen=True)
class StochasticHeunSettings(HeunSettings):
    sample_steps: int = setting(50, _KARRAS_STEPS, positive_int)
    churn: float = setting(40.0, "S_churn: noise added back along the path, γ = min(S_churn/K, √2 − 1) per step "
                                 "(0: deterministic Heun)", at_least_zero("deterministic Heun"))
    churn_min: float = setting(0.0, "S_tmin: the smallest σ that gets churn", at_least_zero("every σ"))
    churn_max: float = setting(0.0, "S_tmax: the largest σ that gets churn", at_least_zero("no upper limit"))
    noise_scale: float = setting(1.0, "S_noise: the churn noise's scale", positive)


@dataclass(frozen=True)
class DPMSolverSettings:
    sample_steps: int = setting(20, _KARRAS_STEPS, positive_int)
    rho: float = setting(7.0, _RHO, positive)


def parse_betas(text: str) -> list[float]:
    """β_1, …, β_N from comma-separated numbers, each in (0, 1), or a :class:`ConfigError`."""
    try:
        betas = [float(item) for item in text.split(",")]
    except ValueError:
        raise ConfigError(f"betas must be comma-separated numbers, got {text!r}") from None
    if not all(0 < beta < 1 for beta in betas):
        raise ConfigError(f"every β of betas must be in (0, 1), got {text!r}")
    return betas


def _check_betas(name: str, value: str) -> None:
    if value:
        parse_betas(value)


def parse_schedules(text: str) -> dict[int, str]:
    """Chains by their number of steps from ``N:β_1,…,β_N;M:…`` (empty: none), or a :class:`ConfigError`."""
    schedules = {}
    for item in filter(None, text.split(";")):
        steps, _, betas = item.partition(":")
        if not steps.strip().isdigit() or len(parse_betas(betas)) != int(steps):
            raise ConfigError(f"schedules must read N:β_1,…,β_N;… with N β's each, got {item!r}")
        schedules[int(steps)] = betas
    return schedules


def _check_schedules(name: str, value: str) -> None:
    parse_schedules(value)


@dataclass(frozen=True)
class WaveGradSamplerSettings:
    sample_steps: int = setting(6, "refinement iterations N: a schedule the run searched (6, 25, 50), else the "
                                   "training chain's levels respaced (1000: every one)", positive_int)
    betas: str = setting("", "the chain β_1,…,β_N to walk, comma-separated (empty: the searched schedule for "
                             "sample_steps)", _check_betas)
    schedules: str = setting("", "searched chains by their number of steps, N:β_1,…,β_N;M:… (the schedule search "
                                 "writes them into the run after training)", _check_schedules)


def _grid(process: NoiseProcess, settings: Any, device: torch.device) -> Tensor:
    return process.grid(settings.sample_steps or None).to(device)


def _karras_grid(process: NoiseProcess, settings: Any, device: torch.device) -> Tensor:
    return karras_sigmas(process.sigma_max, process.sigma_min, settings.sample_steps, settings.rho).to(device)


def _heun(score, process, settings, start, generator, callback, cond):
    """EDM's deterministic Heun sampler (Algorithm 1) on the Karras grid over the process's σ range."""
    return heun(score, start, _karras_grid(process, settings, start.device), generator=generator,
                callback=callback, cond=cond)


def _stochastic_heun(score, process, settings, start, generator, callback, cond):
    """EDM's stochastic sampler (Algorithm 2): Heun with churn, on the Karras grid."""
    return heun(score, start, _karras_grid(process, settings, start.device), churn=settings.churn,
                churn_min=settings.churn_min, churn_max=settings.churn_max or math.inf,
                noise_scale=settings.noise_scale, generator=generator, callback=callback, cond=cond)


def _dpm_solver_2m(score, process, settings, start, generator, callback, cond):
    """DPM-Solver++(2M) on the Karras grid over the process's σ range."""
    return dpm_solver_2m(score, start, _karras_grid(process, settings, start.device), generator=generator,
                         callback=callback, cond=cond)


def _annealed_langevin(score, process, settings, start, generator, callback, cond):
    """Annealed Langevin over the process's levels, from its prior N(0, σ_1²I).

    ``step_size = 0`` takes ε from the NCSNv2 variance rule for this schedule.
    """
    sigmas = _grid(process, settings, start.device)
    step_size = settings.step_size or ncsnv2_step_size_for(sigmas, settings.n_steps_each)
    return annealed_langevin(score, start, sigmas, n_steps_each=settings.n_steps_each, step_size=step_size,
                             denoise=settings.denoise, generator=generator, callback=callback, cond=cond)


def _langevin(score, process, settings, start, generator, callback, cond):
    """Plain Langevin: n_steps_each steps per level of the process's grid, at the smallest level.

    Unconditional scores ignore σ; a noise-conditional model is held at σ_min, the closest
    it has to the data's own score.
    """
    def held(x: Tensor, cond: Any = None) -> Tensor:
        return call_score(score, x, per_sample(process.sigma_min, x), cond)

    return langevin(held, start, n_steps=len(process.grid()) * settings.n_steps_each, step_size=settings.step_size,
                    generator=generator, callback=callback, cond=cond)


def _predictor_corrector(score, process, settings, start, generator, callback, cond):
    """Predictor-corrector (Song et al. 2021) on levels × n_steps_each levels of the process's grid.

    The reverse-diffusion predictor needs many small levels (``score_sde`` uses 1000), so the
    levels × steps budget of annealed Langevin becomes levels here, each with one corrector
    step at the default snr.
    """
    sigmas = process.grid(settings.sample_steps or len(process.grid()) * settings.n_steps_each).to(start.device)
    return predictor_corrector(score, start, sigmas, snr=settings.snr, denoise=settings.denoise,
                               generator=generator, callback=callback, cond=cond)


def _ddpm(score, process, settings, start, generator, callback, cond):
    """DDPM ancestral sampling down the process's grid (every level, or ``sample_steps`` of them)."""
    return ddpm(score, start, _grid(process, settings, start.device), variance=settings.variance,
                scale=process.scale_at, generator=generator, callback=callback, cond=cond)


def _wavegrad(score, process, settings, start, generator, callback, cond):
    """WaveGrad's sampling (Chen et al. 2020, Algorithm 2): the ancestral chain of ``betas`` with the posterior
    variance, from x_N ~ N(0, I); else the searched chain of ``sample_steps`` steps in ``schedules``; else the
    training chain respaced to ``sample_steps`` levels.

    Trained on a continuum of noise levels, the network serves any chain, so a few-step one only needs its
    own start: the caller's prior draw is rescaled from the training chain's σ_T to this chain's σ_N.
    """
    if not isinstance(process, VP):
        raise ConfigError("sampler 'wavegrad' walks a chain of the variance-preserving process; use --process vp")
    betas = settings.betas or parse_schedules(settings.schedules).get(settings.sample_steps)
    sigmas = sigmas_of_betas(parse_betas(betas)) if betas else process.grid(settings.sample_steps)
    start = start * math.sqrt(1 + sigmas[0].item() ** 2) / process.prior_std
    return ddpm(score, start, sigmas.to(start.device), variance="posterior", generator=generator, callback=callback,
                cond=cond)


def _ddim(score, process, settings, start, generator, callback, cond):
    """DDIM with the run's η down the process's grid."""
    return ddim(score, start, _grid(process, settings, start.device), eta=settings.eta, generator=generator,
                callback=callback, cond=cond)


def _ode(score, process, settings, start, generator, callback, cond):
    """The probability-flow ODE from the prior: dopri5 from σ_max to σ_min, or Heun on ``sample_steps`` levels."""
    sigmas = _grid(process, settings, start.device)
    if not settings.sample_steps:
        sigmas = sigmas[[0, -1]]
    return probability_flow(score, start, sigmas, method="heun2" if settings.sample_steps else "dopri5",
                            rtol=settings.tolerance, atol=settings.tolerance, denoise=settings.denoise,
                            callback=callback, cond=cond)


SAMPLERS: Registry[SamplerPart] = Registry("sampler")
SAMPLERS.register(SamplerPart("ald", AnnealedLangevinSettings, "annealed Langevin dynamics (NCSN)",
                              sample=_annealed_langevin, respaces_process=True))
SAMPLERS.register(SamplerPart("langevin", LangevinSettings,
                              "plain Langevin dynamics at σ_min, levels × n_steps_each steps", sample=_langevin))
SAMPLERS.register(SamplerPart("pc", PredictorCorrectorSettings, "predictor-corrector (score SDE)",
                              sample=_predictor_corrector, respaces_process=True))
SAMPLERS.register(SamplerPart("ddpm", DDPMSettings, "DDPM ancestral sampling", sample=_ddpm, respaces_process=True))
SAMPLERS.register(SamplerPart("ddim", DDIMSettings, "DDIM (η = 0: deterministic)", sample=_ddim,
                              respaces_process=True))
SAMPLERS.register(SamplerPart("ode", ODESettings, "the probability-flow ODE", sample=_ode, respaces_process=True))
SAMPLERS.register(SamplerPart("heun", HeunSettings, "EDM's deterministic Heun sampler on the Karras grid, "
                              "2K − 1 evaluations", sample=_heun))
SAMPLERS.register(SamplerPart("stochastic_heun", StochasticHeunSettings, "EDM's stochastic sampler: Heun with "
                              "churn on the Karras grid, 2K − 1 evaluations", sample=_stochastic_heun))
SAMPLERS.register(SamplerPart("dpmpp_2m", DPMSolverSettings, "DPM-Solver++(2M) on the Karras grid, K evaluations",
                              sample=_dpm_solver_2m))
SAMPLERS.register(SamplerPart(
    "wavegrad", WaveGradSamplerSettings, "WaveGrad's ancestral chain on a searched few-step schedule", sample=_wavegrad,
    respaces_process=True))
