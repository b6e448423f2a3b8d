"""Guidance as a score wrapper: classifier-free guidance, its interval, and autoguidance.

Both guide a score s(x|c) away from a weaker reference score s_ref by a weight γ:

    s̃(x, σ | c) = s_ref(x, σ) + γ·(s(x, σ | c) − s_ref(x, σ)),

- classifier-free guidance (Ho & Salimans 2022): the reference is the same network given the null class,
  s_ref = s(x|∅), which a network trained with label dropout has learned; γ = 1 is the plain conditional
  score and γ = 0 the unconditional one. Both halves are one evaluation of the network on a doubled batch.
- autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"): the reference
  is a weaker model of the same data, s_ref = s_bad(x|c) (smaller, or trained for fewer steps).

The guidance interval (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval improves sample
and distribution quality") guides only where σ lies in (lo, hi] and uses s(x|c) elsewhere (γ = 1).

Because D = x + σ²·s is affine in s with weights that sum to one, the same combination of the denoisers is
the denoiser of s̃: samplers that step with the denoiser (:func:`~scorelab.core.processes.call_denoiser`)
see the same guided model as those that step with the score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError
from scorelab.core.processes import call_denoiser
from scorelab.core.score import Score, call_score
from scorelab.core.shapes import append_dims

# The label a class-conditional model reads as "no class": its unconditional score s(x|∅).
NULL_LABEL = -1

View = Callable[[Score, Tensor, Tensor, Any], Tensor]


def _score_view(score: Score, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
    return call_score(score, x, sigma, cond)


def _denoiser_view(score: Score, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
    return call_denoiser(score, x, sigma, cond)[0]


def null_labels(cond: Tensor) -> Tensor:
    """The null class for every row of the labels ``cond`` [B]."""
    return torch.full_like(cond, NULL_LABEL)


class GuidedScore:
    """The guided score s̃ of the module's docstring, a score (and a denoiser) that every sampler takes.

    Args:
        score: the conditional model s(x, σ, cond), with ``cond`` class labels [B] (``NULL_LABEL`` for none).
        weight: γ.
        guide: the weaker model for autoguidance, called with the same condition; None for classifier-free
            guidance, whose reference is ``score`` given the null class.
        interval: (lo, hi): guide only where lo < σ <= hi; None guides at every level.
    """

    def __init__(self, score: Score, weight: float, *, guide: Score | None = None,
                 interval: tuple[float, float] | None = None) -> None:
        if interval is not None and not 0 <= interval[0] < interval[1]:
            raise ConfigError(f"the guidance interval must be 0 <= LO < HI, got {interval[0]} {interval[1]}")
        self.score, self.weight, self.guide, self.interval = score, float(weight), guide, interval

    def weights(self, sigma: Tensor) -> Tensor:
        """γ where σ is inside the interval, 1 outside it, per sample [B]."""
        if self.interval is None:
            return torch.full_like(sigma, self.weight)
        low, high = self.interval
        return torch.where((sigma > low) & (sigma <= high), self.weight, 1.0).to(sigma)

    def _guided(self, view: View, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
        weights = self.weights(sigma)
        if bool((weights == 1).all()) or (self.guide is None and cond is None):
            # γ = 1 is the conditional model itself, and without a class the reference is the model too.
            return view(self.score, x, sigma, cond)
        if self.guide is not None:
            positive, reference = view(self.score, x, sigma, cond), view(self.guide, x, sigma, cond)
        else:
            both = view(self.score, torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond, null_labels(cond)]))
            positive, reference = both.chunk(2)
        return reference + append_dims(weights, x.ndim) * (positive - reference)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        return self._guided(_score_view, x, sigma, cond)

    def denoise(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        """The guided denoiser, the same combination of the two denoisers."""
        return self._guided(_denoiser_view, x, sigma, cond)


def guided(score: Score, weight: float, *, guide: Score | None = None,
           interval: tuple[float, float] | None = None) -> Score:
    """``score`` guided by γ = ``weight`` (:class:`GuidedScore`); ``score`` itself where nothing would change
    (γ = 1 and no guide)."""
    if weight == 1 and guide is None:
        return score
    return GuidedScore(score, weight, guide=guide, interval=interval)
