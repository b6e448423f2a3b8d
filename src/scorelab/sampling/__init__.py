"""Samplers: pure functions ``(score, x, noise levels, *, generator, callback, cond) -> samples``.

The conventions are in :mod:`scorelab.sampling.steps`; :data:`SAMPLERS` registers the ones a
trained run can use by name, each with its settings.
"""

from scorelab.sampling.ancestral import ddim, ddpm
from scorelab.sampling.langevin import annealed_langevin, gradient_ascent, langevin, predictor_corrector
from scorelab.sampling.ode import CountingScore, probability_flow
from scorelab.sampling.registry import SAMPLERS, SamplerPart
from scorelab.sampling.solvers import dpm_solver_2m, heun
from scorelab.sampling.steps import Callback, StepInfo, tweedie_denoise

__all__ = [
    "SAMPLERS",
    "Callback",
    "CountingScore",
    "SamplerPart",
    "StepInfo",
    "annealed_langevin",
    "ddim",
    "ddpm",
    "dpm_solver_2m",
    "gradient_ascent",
    "heun",
    "langevin",
    "predictor_corrector",
    "probability_flow",
    "tweedie_denoise",
]
