"""The samplers a trained run can use, by name, each with its settings: ``scorelab sample --sampler``.

Each sampler's settings dataclass is the one :mod:`scorelab.sampling.settings` catalogues under its name.

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
from scorelab.core.registry import Part, Registry
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import per_sample
from scorelab.sampling.ancestral import ddim, ddpm
from scorelab.sampling.consistency import consistency_sampling
from scorelab.sampling.langevin import annealed_langevin, langevin, predictor_corrector
from scorelab.sampling.ode import probability_flow
from scorelab.sampling.settings import (
    SETTINGS,
    parse_betas,
    parse_schedules,
    parse_sigmas,
)
from scorelab.sampling.solvers import dpm_solver_2m, flow_euler, heun
from scorelab.sampling.steps import Callback

# sample(score, process, settings, start, generator, callback, cond) -> samples; ``start`` is
# the prior draw, made by the caller so that it decides where and how the noise is drawn. A sampler that
# ``starts_from_guess`` also takes ``guess=``, a first estimate of the samples in model units.
Draw = Callable[[Score, NoiseProcess, Any, Tensor, "torch.Generator | None", "Callback | None", Any], Tensor]


@dataclass(frozen=True)
class SamplerPart(Part):
    """A registered sampler; ``respaces_process`` when its ``sample_steps`` picks levels of the
    process's own grid (and so can be no more than a discrete process has)."""

    section = "sampler"

    sample: Draw = None  # type: ignore[assignment]
    respaces_process: bool = False
    starts_from_guess: bool = False


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


def _flow_euler(score, process, settings, start, generator, callback, cond):
    """Euler in t (flow matching) down the process's grid (every level, or ``sample_steps`` of them), then to t = 0."""
    return flow_euler(score, start, _grid(process, settings, start.device), generator=generator, callback=callback,
                      cond=cond)


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


def _wavegrad(score, process, settings, start, generator, callback, cond, guess=None):
    """WaveGrad's sampling (Chen et al. 2020, Algorithm 2): the ancestral chain of ``betas`` with the posterior
    variance, from x_N ~ N(0, I); else the searched chain of ``sample_steps`` steps in ``schedules``; else the
    training chain respaced to ``sample_steps`` levels.

    Trained on a continuum of noise levels, the network serves any chain, so a few-step one only needs its
    own start: the caller's prior draw is rescaled from the training chain's σ_T to this chain's σ_N. With a
    ``guess`` (``start = "griffin_lim"``) the chain starts from it noised to σ_N instead, y_N = guess + σ_N z:
    SDEdit's start (Meng et al. 2022), which DiffSinger calls shallow diffusion (Liu et al. 2022), so that the
    network refines a waveform that has the mel's harmonics rather than drawing one from noise.
    """
    if not isinstance(process, VP):
        raise ConfigError("sampler 'wavegrad' walks a chain of the variance-preserving process; use --process vp")
    if (settings.start == "noise") != (guess is None):
        raise ConfigError(f"the wavegrad sampler's start {settings.start!r} "
                          + ("takes no first estimate" if guess is not None else
                             "needs a first estimate of the waveform: vocode a mel spectrogram (scorelab vocode)"))
    searched = parse_schedules(settings.schedules).get(settings.sample_steps)
    betas = settings.betas or searched
    sigmas = sigmas_of_betas(parse_betas(betas)) if betas else process.grid(settings.sample_steps)
    # A searched chain fits the start it was searched for. One that starts where the signal outweighs the noise
    # (σ_N < 1) only refines a first estimate: walked from noise it would return noise.
    if guess is None and not settings.betas and searched and sigmas[0].item() < 1:
        raise ConfigError(f"the run's searched {settings.sample_steps}-step chain starts at σ_N = {sigmas[0].item():.3g}, "
                          "too little noise to start from noise (it refines Griffin-Lim's waveform): use --start "
                          "griffin_lim, another --sample-steps, or the chain's --betas")
    noise = start / process.prior_std
    start = noise * math.sqrt(1 + sigmas[0].item() ** 2) if guess is None else guess + sigmas[0].item() * noise
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


def consistency_levels(process: NoiseProcess, sample_steps: int, stated: str = "", rho: float = 7.0) -> Tensor:
    """The K levels at which consistency sampling evaluates f: σ_max, then ``stated`` (comma-separated), or else
    the Karras grid of K + 1 levels from σ_max to σ_min less σ_min (float64, largest first).

    Stated levels must be K − 1, below σ_max and at least σ_min.
    """
    if not stated:
        return karras_sigmas(process.sigma_max, process.sigma_min, sample_steps + 1, rho)[:-1]
    below = parse_sigmas(stated)
    if len(below) != sample_steps - 1:
        raise ConfigError(f"consistency_sigmas gives {len(below)} levels after σ_max, but sample_steps = "
                          f"{sample_steps} asks for {sample_steps - 1}")
    if below[0] >= process.sigma_max or below[-1] < process.sigma_min:
        raise ConfigError(f"consistency_sigmas must lie in [sigma_min, sigma_max) = [{process.sigma_min:g}, "
                          f"{process.sigma_max:g}), got {stated!r}")
    return torch.tensor([process.sigma_max, *below], dtype=torch.float64)


def _consistency(score, process, settings, start, generator, callback, cond):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): f at σ_max, then noise back and f again at
    each lower level; one evaluation per level. A model that is not a consistency model is used through its
    denoiser (then this is a "denoise and renoise" sampler)."""
    sigmas = consistency_levels(process, settings.sample_steps, settings.consistency_sigmas)
    return consistency_sampling(score, start, sigmas.to(start.device), sigma_min=process.sigma_min,
                                generator=generator, callback=callback, cond=cond)


SAMPLERS: Registry[SamplerPart] = Registry("sampler")
SAMPLERS.register(SamplerPart("ald", SETTINGS["ald"], "annealed Langevin dynamics (NCSN)",
                              sample=_annealed_langevin, respaces_process=True))
SAMPLERS.register(SamplerPart("langevin", SETTINGS["langevin"],
                              "plain Langevin dynamics at σ_min, levels × n_steps_each steps", sample=_langevin))
SAMPLERS.register(SamplerPart("pc", SETTINGS["pc"], "predictor-corrector (score SDE)",
                              sample=_predictor_corrector, respaces_process=True))
SAMPLERS.register(SamplerPart("ddpm", SETTINGS["ddpm"], "DDPM ancestral sampling", sample=_ddpm, respaces_process=True))
SAMPLERS.register(SamplerPart("ddim", SETTINGS["ddim"], "DDIM (η = 0: deterministic)", sample=_ddim,
                              respaces_process=True))
SAMPLERS.register(SamplerPart("ode", SETTINGS["ode"], "the probability-flow ODE", sample=_ode, respaces_process=True))
SAMPLERS.register(SamplerPart("heun", SETTINGS["heun"], "EDM's deterministic Heun sampler on the Karras grid, "
                              "2K − 1 evaluations", sample=_heun))
SAMPLERS.register(SamplerPart("stochastic_heun", SETTINGS["stochastic_heun"], "EDM's stochastic sampler: Heun with "
                              "churn on the Karras grid, 2K − 1 evaluations", sample=_stochastic_heun))
SAMPLERS.register(SamplerPart("dpmpp_2m", SETTINGS["dpmpp_2m"], "DPM-Solver++(2M) on the Karras grid, K evaluations",
                              sample=_dpm_solver_2m))
SAMPLERS.register(SamplerPart(
    "wavegrad", SETTINGS["wavegrad"], "WaveGrad's ancestral chain on a searched few-step schedule", sample=_wavegrad,
    respaces_process=True, starts_from_guess=True))
SAMPLERS.register(SamplerPart(
    "euler", SETTINGS["euler"], "Euler in t on the flow-matching ODE, x_t' = x_t + (t' − t)·v, down the process's grid",
    sample=_flow_euler, respaces_process=True))
SAMPLERS.register(SamplerPart(
    "consistency", SETTINGS["consistency"], "multistep consistency sampling: f(x, σ) at K levels from σ_max, noise "
    "added back between them, K evaluations", sample=_consistency))
