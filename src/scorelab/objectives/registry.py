"""The objectives' registry, over the pure functions ``(score, data, ...) -> scalar loss``.

- :mod:`~scorelab.objectives.score_matching`: exact (Hyvärinen) and sliced score matching, which
  train an unconditional score s(x) on clean data;
- :mod:`~scorelab.objectives.denoising`: denoising score matching at one level, annealed over
  many (NCSN), DDPM's ε-loss and conditional flow matching, which train a noise-conditional score s(x, σ).

:data:`OBJECTIVES` registers each by name with its settings (the dataclass :mod:`scorelab.objectives.settings`
catalogues under that name), for ``scorelab train --objective``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from scorelab.core.processes import NoiseProcess
from scorelab.core.registry import Part, Registry
from scorelab.core.score import Score
from scorelab.objectives.denoising import (
    annealed_denoising_score_matching,
    denoising_loss_at,
    denoising_score_matching,
    edm_loss_at,
    eps_loss,
    eps_loss_at,
    flow_matching_loss_at,
    stable_target,
)
from scorelab.objectives.score_matching import (
    TRACES,
    exact_score_matching,
    random_projections,
    sliced_score_matching,
)
from scorelab.objectives.settings import EPS_NORMS, PROJECTIONS, SETTINGS

__all__ = ["EPS_NORMS", "OBJECTIVES", "PROJECTIONS", "TRACES", "ObjectivePart", "annealed_denoising_score_matching",
           "denoising_loss_at", "denoising_score_matching", "edm_loss_at", "eps_loss", "eps_loss_at", "exact_score_matching",
           "flow_matching_loss_at",
           "random_projections", "sliced_score_matching", "stable_target"]

# loss(score, batch, cond, process, settings, generator): the rows of ``batch`` past the
# batch size are the extra rows the objective asked for (the stable target's references).
Loss = Callable[[Score, Tensor, Any, NoiseProcess, Any, "torch.Generator | None"], Tensor]


@dataclass(frozen=True)
class ObjectivePart(Part):
    """A registered objective. ``noise_conditional``: it trains s(x, σ) on the process's levels
    (otherwise an unconditional s(x)); ``extra_rows(settings)``: data rows it needs beyond the batch."""

    section = "objective"

    loss: Loss = None  # type: ignore[assignment]
    noise_conditional: bool = True
    extra_rows: Callable[[Any], int] = lambda settings: 0


def _annealed_dsm(score, batch, cond, process, settings, generator):
    size = len(batch) - settings.reference_size
    x, reference = batch[:size], (batch[size:] if settings.reference_size else None)
    sigma = process.training_sigma(size, x, generator)
    return denoising_loss_at(score, x, sigma, weight_power=settings.weight_power, reference=reference,
                             generator=generator, cond=cond)


def _eps(score, batch, cond, process, settings, generator):
    return eps_loss_at(score, batch, process.training_sigma(len(batch), batch, generator), norm=settings.eps_norm,
                       generator=generator, cond=cond)


def _sliced(variance_reduction: bool) -> Loss:
    def loss(score, batch, cond, process, settings, generator):
        return sliced_score_matching(score, batch, n_projections=settings.n_projections,
                                     projection=settings.projection, variance_reduction=variance_reduction,
                                     generator=generator, cond=cond)

    return loss


# A single-level objective trains an unconditional score; it samples with plain Langevin.
_UNCONDITIONAL = {"model": "mlp", "sampler": "langevin"}

OBJECTIVES: Registry[ObjectivePart] = Registry("objective")
OBJECTIVES.register(ObjectivePart(
    "annealed_dsm", SETTINGS["annealed_dsm"], "annealed denoising score matching over the process's levels (NCSN)",
    implies={"model": "noise_conditional", "sampler": "stochastic_heun"},
    loss=_annealed_dsm, extra_rows=lambda settings: settings.reference_size))
OBJECTIVES.register(ObjectivePart(
    "eps", SETTINGS["eps"], "DDPM's L_simple, ‖ε − ε̂‖² at the process's levels (or WaveGrad's ‖ε − ε̂‖₁)",
    loss=_eps))
OBJECTIVES.register(ObjectivePart(
    "exact", SETTINGS["exact"], "Hyvärinen's exact score matching", implies=_UNCONDITIONAL, noise_conditional=False,
    loss=lambda score, batch, cond, process, settings, generator: exact_score_matching(score, batch, cond=cond)))
OBJECTIVES.register(ObjectivePart(
    "sliced", SETTINGS["sliced"], "sliced score matching (SSM)", implies=_UNCONDITIONAL, noise_conditional=False,
    loss=_sliced(variance_reduction=False)))
OBJECTIVES.register(ObjectivePart(
    "sliced_vr", SETTINGS["sliced_vr"], "sliced score matching with variance reduction (SSM-VR)", implies=_UNCONDITIONAL,
    noise_conditional=False, loss=_sliced(variance_reduction=True)))
OBJECTIVES.register(ObjectivePart(
    "dsm", SETTINGS["dsm"], "denoising score matching at the process's smallest level σ_min", implies=_UNCONDITIONAL,
    noise_conditional=False,
    loss=lambda score, batch, cond, process, settings, generator: denoising_score_matching(
        score, batch, process.sigma_min, generator=generator, cond=cond)))
OBJECTIVES.register(ObjectivePart(
    "flow_matching", SETTINGS["flow_matching"], "conditional flow matching ‖v_θ − (z − x)‖² at the process's levels: "
    "the denoising loss weighted ((1 + σ)/σ)² on ‖D_θ − x‖²",
    loss=lambda score, batch, cond, process, settings, generator: flow_matching_loss_at(
        score, batch, process.training_sigma(len(batch), batch, generator), generator=generator, cond=cond)))


def _data_sigma(settings, data: Tensor):
    """σ_d measured as the preconditioning measures it (the training data's standard deviation), when 0."""
    return settings if settings.sigma_data else replace(settings, sigma_data=float(data.std()))


OBJECTIVES.register(ObjectivePart(
    "edm", SETTINGS["edm"], "EDM's denoising loss λ(σ)‖D_θ − x‖², λ = (σ² + σ_d²)/(σσ_d)², on log-normal σ",
    # EDM's recipe (Karras et al. 2022, Table 1): its σ density and preconditioning, and its deterministic
    # Heun sampler on the Karras grid from σ_min = 0.002, here in 10 steps (19 evaluations): the target's budget
    # of 20, at which this family did best (BENCHMARKS.md "families").
    implies={"process": "ve", "sampler": "heun"},
    presets={"continuous": True, "sigma_density": "lognormal", "sigma_min": 0.002, "parameterisation": "edm",
             "sample_steps": 10},
    resolve=_data_sigma,
    loss=lambda score, batch, cond, process, settings, generator: edm_loss_at(
        score, batch, process.training_sigma(len(batch), batch, generator), sigma_data=settings.sigma_data,
        generator=generator, cond=cond)))
