"""The objectives' registry, over the pure functions ``(score, data, ...) -> scalar loss``.

- :mod:`~scorelab.objectives.score_matching`: exact (Hyvärinen) and sliced score matching, which
  train an unconditional score s(x) on clean data;
- :mod:`~scorelab.objectives.denoising`: denoising score matching at one level, annealed over
  many (NCSN), DDPM's ε-loss and conditional flow matching, which train a noise-conditional score s(x, σ);
- :mod:`~scorelab.objectives.consistency`: consistency training and distillation, which train a consistency
  model f(y, σ) (a score under the ``consistency`` parameterisation).

:data:`OBJECTIVES` registers each by name with its settings (the dataclass :mod:`scorelab.objectives.settings`
catalogues under that name), for ``scorelab train --objective``. The training loop calls a registered loss
with a :class:`LossContext`: the step (iCT's curriculum) and a teacher's score (distillation).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError
from scorelab.core.processes import NoiseProcess
from scorelab.core.registry import Part, Registry
from scorelab.core.rng import randn_like
from scorelab.core.score import Score
from scorelab.objectives.consistency import (
    consistency_distillation_loss,
    consistency_training_loss,
    ct_levels,
    ct_sigma_pairs,
    ct_sigmas,
)
from scorelab.objectives.coupling import optimal_pairing
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

__all__ = ["EPS_NORMS", "OBJECTIVES", "PROJECTIONS", "TRACES", "LossContext", "ObjectivePart",
           "annealed_denoising_score_matching", "consistency_distillation_loss", "consistency_training_loss",
           "denoising_loss_at", "denoising_score_matching", "edm_loss_at", "eps_loss", "eps_loss_at",
           "exact_score_matching", "flow_matching_loss_at", "random_projections", "sliced_score_matching",
           "stable_target"]


@dataclass(frozen=True)
class LossContext:
    """What a loss may need beyond its batch, from the training loop.

    Attributes:
        step: the training step k this loss is for, 1 … ``steps`` (as ``train_log.csv`` counts them).
        steps: K, the run's number of steps (iCT's curriculum N(k) spreads over them).
        teacher: the score a distillation distils (a trained run's EMA model), or None.
    """

    step: int
    steps: int
    teacher: Score | None = None


# loss(score, batch, cond, process, settings, generator, context): the rows of ``batch`` past the
# batch size are the extra rows the objective asked for (the stable target's references). ``context``
# is None outside a training loop; the losses that need it say so.
Loss = Callable[[Score, Tensor, Any, NoiseProcess, Any, "torch.Generator | None", "LossContext | None"], Tensor]


@dataclass(frozen=True)
class ObjectivePart(Part):
    """A registered objective. ``noise_conditional``: it trains s(x, σ) on the process's levels
    (otherwise an unconditional s(x)); ``extra_rows(settings)``: data rows it needs beyond the batch;
    ``teacher(settings)``: the run directory of the trained model whose score it distils ("" for none), which the
    training loop loads into :attr:`LossContext.teacher`; ``starts_from_teacher(settings)``: whether the model
    starts from that teacher's EMA weights where their shapes match."""

    section = "objective"

    loss: Loss = None  # type: ignore[assignment]
    noise_conditional: bool = True
    extra_rows: Callable[[Any], int] = lambda settings: 0
    teacher: Callable[[Any], str] = lambda settings: ""
    starts_from_teacher: Callable[[Any], bool] = lambda settings: False


def _annealed_dsm(score, batch, cond, process, settings, generator, context=None):
    size = len(batch) - settings.reference_size
    x, reference = batch[:size], (batch[size:] if settings.reference_size else None)
    # The condition of the reference rows is not the model's: class labels say which references a sample may use.
    labelled = reference is not None and isinstance(cond, Tensor) and cond.ndim == 1 and not cond.is_floating_point()
    reference_labels = cond[size:] if labelled else None
    cond = cond[:size] if isinstance(cond, Tensor) and len(cond) == len(batch) else cond
    sigma = process.training_sigma(size, x, generator)
    return denoising_loss_at(score, x, sigma, weight_power=settings.weight_power, reference=reference,
                             generator=generator, cond=cond, reference_labels=reference_labels)


def _eps(score, batch, cond, process, settings, generator, context=None):
    return eps_loss_at(score, batch, process.training_sigma(len(batch), batch, generator), norm=settings.eps_norm,
                       generator=generator, cond=cond)


def _sliced(variance_reduction: bool) -> Loss:
    def loss(score, batch, cond, process, settings, generator, context=None):
        return sliced_score_matching(score, batch, n_projections=settings.n_projections,
                                     projection=settings.projection, variance_reduction=variance_reduction,
                                     generator=generator, cond=cond)

    return loss


# A single-level objective trains an unconditional score; it samples with plain Langevin.
_UNCONDITIONAL = {"model": "mlp", "process": "ve", "sampler": "langevin"}

OBJECTIVES: Registry[ObjectivePart] = Registry("objective")
OBJECTIVES.register(ObjectivePart(
    "annealed_dsm", SETTINGS["annealed_dsm"], "annealed denoising score matching over the process's levels (NCSN)",
    implies={"model": "noise_conditional", "process": "ve", "sampler": "stochastic_heun"},
    loss=_annealed_dsm, extra_rows=lambda settings: settings.reference_size))
OBJECTIVES.register(ObjectivePart(
    "eps", SETTINGS["eps"], "DDPM's L_simple, ‖ε − ε̂‖² at the process's levels (or WaveGrad's ‖ε − ε̂‖₁)",
    loss=_eps))
OBJECTIVES.register(ObjectivePart(
    "exact", SETTINGS["exact"], "Hyvärinen's exact score matching", implies=_UNCONDITIONAL, noise_conditional=False,
    loss=lambda score, batch, cond, process, settings, generator, context=None: exact_score_matching(
        score, batch, cond=cond)))
OBJECTIVES.register(ObjectivePart(
    "sliced", SETTINGS["sliced"], "sliced score matching (SSM)", implies=_UNCONDITIONAL, noise_conditional=False,
    loss=_sliced(variance_reduction=False)))
OBJECTIVES.register(ObjectivePart(
    "sliced_vr", SETTINGS["sliced_vr"], "sliced score matching with variance reduction (SSM-VR)", implies=_UNCONDITIONAL,
    noise_conditional=False, loss=_sliced(variance_reduction=True)))
OBJECTIVES.register(ObjectivePart(
    "dsm", SETTINGS["dsm"], "denoising score matching at the process's smallest level σ_min", implies=_UNCONDITIONAL,
    noise_conditional=False,
    loss=lambda score, batch, cond, process, settings, generator, context=None: denoising_score_matching(
        score, batch, process.sigma_min, generator=generator, cond=cond)))
OBJECTIVES.register(ObjectivePart(
    "flow_matching", SETTINGS["flow_matching"], "conditional flow matching ‖v_θ − (z − x)‖² at the process's levels: "
    "the denoising loss weighted ((1 + σ)/σ)² on ‖D_θ − x‖²",
    loss=lambda score, batch, cond, process, settings, generator, context=None: _flow_matching(
        score, batch, cond, process, settings, generator)))


def _flow_matching(score, batch, cond, process, settings, generator):
    """The flow-matching loss at the process's levels, with data and noise paired as ``settings.coupling`` says."""
    sigma = process.training_sigma(len(batch), batch, generator)
    if settings.coupling == "independent":
        return flow_matching_loss_at(score, batch, sigma, generator=generator, cond=cond)
    noise = randn_like(batch, generator)
    pairing = optimal_pairing(batch, noise, block=settings.coupling_block, labels=cond)
    return flow_matching_loss_at(score, batch[pairing], sigma, generator=generator,
                                 cond=None if cond is None else cond[pairing], noise=noise)


def _data_sigma(settings, data: Tensor):
    """σ_d measured as the preconditioning measures it (the training data's standard deviation), when 0."""
    return settings if settings.sigma_data else replace(settings, sigma_data=float(data.std()))


OBJECTIVES.register(ObjectivePart(
    "edm", SETTINGS["edm"], "EDM's denoising loss λ(σ)‖D_θ − x‖², λ = (σ² + σ_d²)/(σσ_d)², on log-normal σ",
    # EDM's recipe (Karras et al. 2022, Table 1): its σ density, preconditioning and σ range, 80 to 0.002. Its σ_max
    # is far above the data's scale on purpose: the prior N(0, σ_max²) ignores the data's mean and spread, which
    # from the NCSNv2 rule's σ_1 misplaced gmm's mode weights. Sampled with DPM-Solver++(2M) in 20 steps, which
    # did better than Heun's 10 from there (docs/results.md and BENCHMARKS.md, "families").
    implies={"process": "ve", "sampler": "dpmpp_2m"},
    presets={"continuous": True, "sigma_density": "lognormal", "sigma_min": 0.002, "sigma_max": 80.0,
             "parameterisation": "edm"},
    resolve=_data_sigma,
    loss=lambda score, batch, cond, process, settings, generator, context=None: edm_loss_at(
        score, batch, process.training_sigma(len(batch), batch, generator), sigma_data=settings.sigma_data,
        generator=generator, cond=cond)))


# --- consistency models (Song et al. 2023; Song & Dhariwal 2023) ---------------------------------


def _context(context: LossContext | None, needs: str) -> LossContext:
    if context is None:
        raise ConfigError(f"this objective needs {needs}: call its loss with a LossContext, as the training loop does")
    return context


def _lognormal(process: NoiseProcess) -> tuple[float, float]:
    """The process's (P_mean, P_std), with which the consistency losses draw their levels."""
    if not hasattr(process, "p_mean"):
        raise ConfigError(f"the consistency objectives draw their levels with the log-normal P_mean and P_std of the "
                          f"ve process, which {process!r} lacks; use --process ve")
    return process.p_mean, process.p_std


def _consistency_training(score, batch, cond, process, settings, generator, context=None):
    """iCT: N(k) levels of the Karras grid over the process's [σ_min, σ_max] at step k, a pair of adjacent
    levels drawn log-normally per sample, the pseudo-Huber (or L2) distance."""
    context = _context(context, "the training step (iCT's curriculum)")
    n_levels = ct_levels(context.step - 1, context.steps, settings.curriculum_start, settings.curriculum_end)
    mean, std = _lognormal(process)
    low, high = ct_sigma_pairs(batch, ct_sigmas(n_levels, process.sigma_min, process.sigma_max), mean=mean, std=std,
                               generator=generator)
    return consistency_training_loss(score, batch, low, high, generator=generator, cond=cond,
                                     distance=settings.distance, huber_c=settings.huber_c or None)


_NO_TEACHER = ("consistency_distillation needs a teacher: give --teacher RUN_DIR (or use "
               "`scorelab distill RUN --out RUN2`)")


def _consistency_distillation(score, batch, cond, process, settings, generator, context=None):
    """CD: a pair of adjacent levels of the N-level Karras grid over the process's [σ_min, σ_max], drawn
    log-normally per sample, the lower one reached by one step of the teacher's ODE solver."""
    teacher = _context(context, "the teacher's score").teacher
    if teacher is None:
        raise ConfigError(_NO_TEACHER)
    mean, std = _lognormal(process)
    low, high = ct_sigma_pairs(batch, ct_sigmas(settings.distill_levels, process.sigma_min, process.sigma_max),
                               mean=mean, std=std, generator=generator)
    return consistency_distillation_loss(score, teacher, batch, low, high, generator=generator, cond=cond,
                                         distance=settings.distance, huber_c=settings.huber_c or None,
                                         solver=settings.teacher_solver)


def _teacher_run(settings) -> str:
    if not settings.teacher:
        raise ConfigError(_NO_TEACHER)
    return settings.teacher


def _absolute_teacher(settings, data: Tensor):
    """The teacher's run directory as an absolute path, so that a resume from another directory finds it."""
    return replace(settings, teacher=os.path.abspath(settings.teacher)) if settings.teacher else settings


# The consistency family: iCT's recipe on the VE process (Song & Dhariwal 2023): the consistency parameterisation
# with its boundary at σ_min = 0.002, levels drawn log-normally with P_mean = −1.1, P_std = 2.0 (the process's
# p_mean and p_std, which its lognormal density shares), sampled in one or two steps by the consistency sampler.
# σ_max = 20, about ten times the standard deviation of the 2-D suite's data (0.7 to 2.3), as iCT's 80 is for
# images of σ_d = 0.5. At 2 steps of consistency training it beat σ_max from the data (where the Karras grid puts
# the second level too low) on moons, pinwheel, checkerboard and 2spirals, and 80 on three of them (docs/cli.md,
# "Consistency models").
_CONSISTENCY_IMPLIES = {"process": "ve", "sampler": "consistency"}
_CONSISTENCY_PRESETS = {"parameterisation": "consistency", "sigma_min": 0.002, "sigma_max": 20.0, "continuous": True,
                        "sigma_density": "lognormal", "p_mean": -1.1, "p_std": 2.0}

OBJECTIVES.register(ObjectivePart(
    "consistency_training", SETTINGS["consistency_training"], "consistency training (iCT): f at adjacent levels "
    "of a grid that doubles over the run, the same noise at both, the lower under a stop-gradient",
    implies=_CONSISTENCY_IMPLIES, presets=_CONSISTENCY_PRESETS, loss=_consistency_training))
OBJECTIVES.register(ObjectivePart(
    "consistency_distillation", SETTINGS["consistency_distillation"], "consistency distillation: f at adjacent "
    "levels, the lower reached by one ODE step of a trained run's score (`scorelab distill`)",
    implies=_CONSISTENCY_IMPLIES, presets=_CONSISTENCY_PRESETS, resolve=_absolute_teacher,
    loss=_consistency_distillation, teacher=_teacher_run,
    starts_from_teacher=lambda settings: settings.teacher_init))
