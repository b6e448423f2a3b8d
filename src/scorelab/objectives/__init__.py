"""Score-matching objectives: pure functions ``(score, data, ...) -> scalar loss``, and their registry.

- :mod:`~scorelab.objectives.score_matching`: exact (Hyvärinen) and sliced score matching, which
  train an unconditional score s(x) on clean data;
- :mod:`~scorelab.objectives.denoising`: denoising score matching at one level, annealed over
  many (NCSN), DDPM's ε-loss and conditional flow matching, which train a noise-conditional score s(x, σ);
- :mod:`~scorelab.objectives.consistency`: consistency training (iCT) and distillation, which train a
  consistency model f(y, σ), with iCT's pseudo-Huber distance and curriculum.

:data:`OBJECTIVES` (:mod:`scorelab.objectives.registry`) registers each by name with its settings
(:mod:`scorelab.objectives.settings`, without torch), for ``scorelab train --objective``. The names
below load on first use (:mod:`scorelab.core.lazy`).
"""

from __future__ import annotations

from scorelab.core.lazy import lazy_package

_CONSISTENCY = "scorelab.objectives.consistency"
_DENOISING = "scorelab.objectives.denoising"
_SCORE_MATCHING = "scorelab.objectives.score_matching"
_OBJECTS = {
    "DISTANCES": "scorelab.objectives.settings",
    "EPS_NORMS": "scorelab.objectives.settings",
    "OBJECTIVES": "scorelab.objectives.registry",
    "PROJECTIONS": "scorelab.objectives.settings",
    "TEACHER_SOLVERS": "scorelab.objectives.settings",
    "TRACES": _SCORE_MATCHING,
    "LossContext": "scorelab.objectives.registry",
    "ObjectivePart": "scorelab.objectives.registry",
    "annealed_denoising_score_matching": _DENOISING,
    "consistency_distillation_loss": _CONSISTENCY,
    "consistency_function": _CONSISTENCY,
    "consistency_training_loss": _CONSISTENCY,
    "ct_level_probabilities": _CONSISTENCY,
    "ct_levels": _CONSISTENCY,
    "ct_sigma_pairs": _CONSISTENCY,
    "ct_sigmas": _CONSISTENCY,
    "denoising_loss_at": _DENOISING,
    "denoising_score_matching": _DENOISING,
    "eps_loss": _DENOISING,
    "eps_loss_at": _DENOISING,
    "exact_score_matching": _SCORE_MATCHING,
    "flow_matching_loss_at": _DENOISING,
    "pseudo_huber": _CONSISTENCY,
    "random_projections": _SCORE_MATCHING,
    "sliced_score_matching": _SCORE_MATCHING,
    "stable_target": _DENOISING,
    "teacher_step": _CONSISTENCY,
}
__all__ = sorted([*_OBJECTS])
__getattr__, __dir__ = lazy_package(__name__, _OBJECTS)
