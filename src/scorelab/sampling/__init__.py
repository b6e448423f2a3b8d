"""Samplers: pure functions ``(score, x, schedule, *, generator, callback) -> samples``."""

from scorelab.sampling.langevin import Callback, StepInfo, annealed_langevin, gradient_ascent, langevin

__all__ = ["Callback", "StepInfo", "annealed_langevin", "gradient_ascent", "langevin"]
