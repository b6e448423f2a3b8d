"""Samplers: pure functions ``(score, x, noise levels, *, generator, callback, cond) -> samples``.

The conventions are in :mod:`scorelab.sampling.steps`; :data:`SAMPLERS` registers the ones a
trained run can use by name, each with its settings (:mod:`scorelab.sampling.settings`, without torch).
The names below load on first use (:mod:`scorelab.core.lazy`).
"""

from __future__ import annotations

from scorelab.core.lazy import lazy_package

_OBJECTS = {
    "SAMPLERS": "scorelab.sampling.registry",
    "SamplerPart": "scorelab.sampling.registry",
    "consistency_levels": "scorelab.sampling.registry",
    "consistency_sampling": "scorelab.sampling.consistency",
    "ddim": "scorelab.sampling.ancestral",
    "ddpm": "scorelab.sampling.ancestral",
    "annealed_langevin": "scorelab.sampling.langevin",
    "gradient_ascent": "scorelab.sampling.langevin",
    "langevin": "scorelab.sampling.langevin",
    "predictor_corrector": "scorelab.sampling.langevin",
    "CountingScore": "scorelab.sampling.ode",
    "probability_flow": "scorelab.sampling.ode",
    "dpm_solver_2m": "scorelab.sampling.solvers",
    "flow_euler": "scorelab.sampling.solvers",
    "heun": "scorelab.sampling.solvers",
    "Callback": "scorelab.sampling.steps",
    "StepInfo": "scorelab.sampling.steps",
    "tweedie_denoise": "scorelab.sampling.steps",
}
__all__ = sorted([*_OBJECTS])
__getattr__, __dir__ = lazy_package(__name__, _OBJECTS)
