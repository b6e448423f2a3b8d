"""Samplers: pure functions ``(score, x, schedule, *, generator, callback) -> samples``."""

from scorelab.sampling.diffusion import ddim, ddpm
from scorelab.sampling.langevin import (
    Callback,
    StepInfo,
    annealed_langevin,
    gradient_ascent,
    langevin,
    predictor_corrector,
)
from scorelab.sampling.ode import CountingScore, probability_flow

__all__ = [
    "Callback",
    "CountingScore",
    "StepInfo",
    "annealed_langevin",
    "ddim",
    "ddpm",
    "gradient_ascent",
    "langevin",
    "predictor_corrector",
    "probability_flow",
]
