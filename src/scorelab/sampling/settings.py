"""The samplers' settings, without torch: one dataclass per sampler, and the catalogue of samplers by name.

Samplers that share a setting in meaning share the dataclass that declares it, and only those settings
carry over when a run is sampled with another sampler (:func:`scorelab.core.registry.shared_settings`):

- :class:`ProcessGridSteps`: ``sample_steps`` levels of the process's own grid (ald, ddpm, ddim);
- :class:`LangevinSteps`: ``n_steps_each`` Langevin steps per level (ald, langevin);
- :class:`Denoised`: ``denoise``, a last Tweedie step (ald, pc, ode);
- :class:`KarrasGrid`: ``sample_steps`` and ``rho`` of the Karras σ grid (heun, stochastic_heun, dpmpp_2m);
- :class:`Guided`: guidance (its weight γ, its interval and the guide of autoguidance), which every sampler
  takes because it wraps the score the sampler walks (:mod:`scorelab.core.guidance`).

The kernels and their registry are :mod:`scorelab.sampling.registry`; this module is what the command
line reads to build its flags.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from scorelab.core.errors import ConfigError
from scorelab.core.registry import (
    Check,
    at_least_zero,
    one_of,
    positive,
    positive_int,
    redefault,
    setting,
    within,
)

# The reverse step's variance in DDPM: β_t (Ho et al.'s σ_t² = β_t) or the posterior's β̃_t.
DDPM_VARIANCES = ("beta", "posterior")
# Where WaveGrad's chain starts: from noise, or from a first estimate of the waveform noised to its first level.
WAVEGRAD_STARTS = ("noise", "griffin_lim")


def _comma_separated(name: str, text: str) -> list[float]:
    """The numbers of ``text``, comma-separated, or a :class:`ConfigError` naming the setting ``name``."""
    try:
        return [float(item) for item in text.split(",")]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {text!r}") from None


def _when_given(parse: Callable[[str], object]) -> Check:
    """The check of an optional text setting: ``parse`` it unless it is empty."""

    def check(name: str, value: str) -> None:
        if value:
            parse(value)

    return check


def parse_interval(text: str) -> tuple[float, float]:
    """(lo, hi) from ``LO,HI`` with 0 <= LO < HI, or a :class:`ConfigError`."""
    numbers = _comma_separated("guidance_interval", text)
    if len(numbers) != 2 or not 0 <= numbers[0] < numbers[1]:
        raise ConfigError(f"guidance_interval must be two noise levels LO,HI with 0 <= LO < HI, got {text!r}")
    return numbers[0], numbers[1]


@dataclass(frozen=True)
class Guided:
    guidance: float = setting(1.0, "guidance weight γ: s_ref + γ·(s(x|c) − s_ref), with s_ref the null class's "
                                   "score (classifier-free) or the --guide's (autoguidance); 1: no guidance, 0: the "
                                   "reference alone", at_least_zero("the reference score alone"))
    guidance_interval: str = setting("", "guide only where LO < σ <= HI, γ = 1 elsewhere (Kynkäänniemi et al. 2024): "
                                         "two numbers on the command line, \"LO,HI\" in a config file; empty: at "
                                         "every σ", _when_given(parse_interval))
    guide: str = setting("", "autoguidance's weaker model of the same data: a run directory or its "
                             "model.safetensors (Karras et al. 2024); empty: none")


@dataclass(frozen=True)
class ProcessGridSteps(Guided):
    sample_steps: int = setting(0, "levels of the process's grid, same ends (0: every level)",
                                at_least_zero("every level"))


@dataclass(frozen=True)
class LangevinSteps(Guided):
    n_steps_each: int = setting(100, "Langevin steps per level of the process's grid", positive_int)


@dataclass(frozen=True)
class Denoised(Guided):
    denoise: bool = setting(True, "finish with a Tweedie denoising step")


@dataclass(frozen=True)
class KarrasGrid(Guided):
    sample_steps: int = setting(18, "steps K on the Karras σ grid over the process's range, the last to σ = 0",
                                positive_int)
    rho: float = setting(7.0, "ρ of the Karras grid: σ^(1/ρ) uniform (7 in EDM)", positive)


@dataclass(frozen=True)
class AnnealedLangevinSettings(Denoised, LangevinSteps, ProcessGridSteps):
    step_size: float = setting(2e-5, "Langevin step size ε at the smallest level (0: the NCSNv2 variance rule)",
                               at_least_zero("the NCSNv2 rule"))


def _plain_step_size(name: str, value: float) -> None:
    if value == 0:
        raise ConfigError("step_size = 0 (the NCSNv2 rule) is for annealed Langevin; give plain Langevin a step size")
    positive(name, value)


@dataclass(frozen=True)
class LangevinSettings(LangevinSteps):
    step_size: float = setting(3e-3, "Langevin step size ε", _plain_step_size)


@dataclass(frozen=True)
class PredictorCorrectorSettings(Denoised):
    sample_steps: int = setting(0, "levels to walk, one predictor and one corrector step each (0: n_steps_each "
                                   "per level of the process's grid)", at_least_zero("n_steps_each per level"))
    n_steps_each: int = setting(100, "levels per level of the process's grid, when sample_steps is 0",
                                positive_int)
    snr: float = setting(0.16, "the corrector's signal-to-noise ratio", positive)


@dataclass(frozen=True)
class DDPMSettings(ProcessGridSteps):
    variance: str = setting("beta", "the reverse step's variance: " + " | ".join(DDPM_VARIANCES),
                            one_of(*DDPM_VARIANCES))


@dataclass(frozen=True)
class DDIMSettings(ProcessGridSteps):
    eta: float = setting(0.0, "DDIM η in [0, 1] (0 is deterministic)", within(0.0, 1.0))


@dataclass(frozen=True)
class ODESettings(Denoised):
    sample_steps: int = setting(0, "levels of the process's grid for Heun's method (0: the adaptive dopri5 solver)",
                                at_least_zero("the adaptive dopri5 solver"))
    tolerance: float = setting(1e-5, "the adaptive solver's relative and absolute tolerance", positive)


@dataclass(frozen=True)
class HeunSettings(KarrasGrid):
    pass


@dataclass(frozen=True)
class StochasticHeunSettings(KarrasGrid):
    sample_steps: int = redefault(KarrasGrid, "sample_steps", 50)
    churn: float = setting(40.0, "S_churn: noise added back along the path, γ = min(S_churn/K, √2 − 1) per step "
                                 "(0: deterministic Heun)", at_least_zero("deterministic Heun"))
    churn_min: float = setting(0.0, "S_tmin: the smallest σ that gets churn", at_least_zero("every σ"))
    churn_max: float = setting(0.0, "S_tmax: the largest σ that gets churn", at_least_zero("no upper limit"))
    noise_scale: float = setting(1.0, "S_noise: the churn noise's scale", positive)


@dataclass(frozen=True)
class DPMSolverSettings(KarrasGrid):
    sample_steps: int = redefault(KarrasGrid, "sample_steps", 20)


@dataclass(frozen=True)
class FlowEulerSettings(Guided):
    sample_steps: int = setting(0, "levels of the process's grid (flow: uniform in t), then one step to t = 0; "
                                   "K levels cost K evaluations (0: every level)", at_least_zero("every level"))


def parse_sigmas(text: str) -> list[float]:
    """σ's from comma-separated numbers, each positive and finite, strictly decreasing, or a :class:`ConfigError`."""
    sigmas = _comma_separated("consistency_sigmas", text)
    if not all(0 < sigma < float("inf") for sigma in sigmas) or any(a <= b for a, b in itertools.pairwise(sigmas)):
        raise ConfigError(f"consistency_sigmas must be positive levels, sorted from largest to smallest, got {text!r}")
    return sigmas


@dataclass(frozen=True)
class ConsistencySamplerSettings(Guided):
    # 2 by default: CT and CD runs of the 2-D suite did better at 2 evaluations than at 1 on 19 of 20, the second
    # level from the Karras grid close to the best stated one on moons, pinwheel, checkerboard and 2spirals
    # (docs/cli.md, "Consistency models").
    sample_steps: int = setting(2, "consistency sampling: evaluations K, at σ_max and then K − 1 levels below it, "
                                   "each after noise added back", positive_int)
    consistency_sigmas: str = setting("", "the K − 1 levels after σ_max, comma-separated, largest first (empty: the "
                                          "Karras grid of K + 1 levels over the process's range, less σ_min)",
                                      _when_given(parse_sigmas))


def parse_betas(text: str) -> list[float]:
    """β_1, …, β_N from comma-separated numbers, each in (0, 1), or a :class:`ConfigError`."""
    betas = _comma_separated("betas", text)
    if not all(0 < beta < 1 for beta in betas):
        raise ConfigError(f"every β of betas must be in (0, 1), got {text!r}")
    return betas


def format_betas(betas: list[float]) -> str:
    """The text of ``betas`` that :func:`parse_betas` reads back exactly (``repr`` round-trips a float)."""
    return ",".join(map(repr, betas))


def parse_schedules(text: str) -> dict[int, str]:
    """Chains by their number of steps from ``N:β_1,…,β_N;M:…`` (empty: none), or a :class:`ConfigError`."""
    schedules = {}
    for item in filter(None, text.split(";")):
        steps, _, betas = item.partition(":")
        if not steps.strip().isdigit() or len(parse_betas(betas)) != int(steps):
            raise ConfigError(f"schedules must read N:β_1,…,β_N;… with N β's each, got {item!r}")
        schedules[int(steps)] = betas
    return schedules


def format_schedules(searched: dict) -> str:
    """The ``schedules`` setting from searched chains by their number of steps, {N: {"betas": [...]}, ...}
    (the schedule search's record), as :func:`parse_schedules` reads it."""
    return ";".join(f"{steps}:{format_betas(found['betas'])}" for steps, found in searched.items())


def _check_schedules(name: str, value: str) -> None:
    parse_schedules(value)


@dataclass(frozen=True)
class WaveGradSamplerSettings(Guided):
    sample_steps: int = setting(6, "refinement iterations N: a schedule the run searched (6, 25, 50), else the "
                                   "training chain's levels respaced (1000: every one)", positive_int)
    betas: str = setting("", "the chain β_1,…,β_N to walk, comma-separated (empty: the searched schedule for "
                             "sample_steps)", _when_given(parse_betas))
    schedules: str = setting("", "searched chains by their number of steps, N:β_1,…,β_N;M:… (the schedule search "
                                 "writes them into the run after training)", _check_schedules)
    start: str = setting("noise", "where the chain starts: 'noise' (y_N ~ N(0, (1 + σ_N²)I), WaveGrad's) or "
                                  "'griffin_lim' (Griffin-Lim's waveform from the same mel, noised to the chain's first "
                                  "level: shallow diffusion)", one_of(*WAVEGRAD_STARTS))
    start_iterations: int = setting(32, "Griffin-Lim iterations of a 'griffin_lim' start", positive_int)


# Every sampler by name, in registration order (scorelab.sampling.registry registers these, no other).
SETTINGS: dict[str, type] = {
    "ald": AnnealedLangevinSettings,
    "langevin": LangevinSettings,
    "pc": PredictorCorrectorSettings,
    "ddpm": DDPMSettings,
    "ddim": DDIMSettings,
    "ode": ODESettings,
    "heun": HeunSettings,
    "stochastic_heun": StochasticHeunSettings,
    "dpmpp_2m": DPMSolverSettings,
    "wavegrad": WaveGradSamplerSettings,
    "euler": FlowEulerSettings,
    "consistency": ConsistencySamplerSettings,
}
