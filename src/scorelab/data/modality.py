"""Modalities: what differs between points, images and waveforms, in one record each.

Each data set declares its modality (:attr:`scorelab.data.sources.DataPart.modality`), and everything below
the evaluation layer that depends on it reads the record: how the data is mapped to the model's units, how
samples (and, for waveforms, every step's estimate) are kept in the data's range, how many samples are drawn
at once and the units a PNG grid spans. The layers above key their own per-modality parts by
:attr:`Modality.name` (the measures in :data:`scorelab.evaluation.evaluate.EVALUATIONS`, the figures in
:data:`scorelab.plots.FIGURES`), since a record down here cannot name them without importing upwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from scorelab.core.processes import clipped_denoiser
from scorelab.core.score import Score
from scorelab.data.noise_prior import NoisePrior, clipped_through
from scorelab.data.normalisation import Normalisation


@dataclass(frozen=True)
class Modality:
    """One modality's record.

    ``normalisation(part, name, settings, raw)`` maps the training set ``raw`` to the model's units;
    ``keep_in_range(score, normalisation, prior)`` is the score a sampler walks (waveforms: each step's
    denoised estimate clipped to the data's range, in data units where a noise prior has the sampler draw
    u = L_c⁻¹x, :mod:`scorelab.data.noise_prior`); ``finish(samples, normalisation, any_shape)`` takes the sampler's
    output in model units to the data's; ``value_range(normalisation)`` is the data units a PNG grid spans
    (None where samples are not images); ``sample_batch_size`` the samples drawn at once by default.
    """

    name: str
    sample_batch_size: int
    normalisation: Callable[[Any, str, Any, Tensor], Normalisation]
    keep_in_range: Callable[[Score, Normalisation, NoisePrior | None], Score] = (
        lambda score, normalisation, prior=None: score)
    finish: Callable[[Tensor, Normalisation, bool], Tensor] = (
        lambda samples, normalisation, any_shape: normalisation.to_data(samples, any_shape=any_shape))
    value_range: Callable[[Normalisation], tuple[float, float] | None] = lambda normalisation: None


def _image_range(normalisation: Normalisation) -> tuple[float, float]:
    shift, scale = normalisation.shift.flatten()[0].item(), normalisation.scale.flatten()[0].item()
    return shift - scale, shift + scale


def _image_normalisation(part: Any, name: str, settings: Any, raw: Tensor) -> Normalisation:
    """The image set's units [low, high] onto [-1, 1]."""
    images = part.images(name, settings)
    return Normalisation.of_range(images.low, images.high, tuple(raw.shape[1:]))


def _waveform_bound(normalisation: Normalisation) -> float:
    """A waveform's range [-1, 1] in model units (waveforms are only scaled)."""
    return 1.0 / normalisation.scale.flatten()[0].item()


POINTS = Modality(
    "points", sample_batch_size=10_000,
    # Identity, or each coordinate standardised.
    normalisation=lambda part, name, settings, raw: Normalisation.fit(raw, settings.standardize))

IMAGES = Modality(
    "images",
    # A U-Net's activations at batch 256 fit in a few GB at 28×28.
    sample_batch_size=256,
    normalisation=_image_normalisation,
    # Pixels live in [-1, 1] in model units, as DDPM clips its x_0.
    finish=lambda samples, normalisation, any_shape: normalisation.to_data(samples.clamp(-1.0, 1.0),
                                                                           any_shape=any_shape),
    value_range=_image_range)

WAVEFORMS = Modality(
    "waveforms", sample_batch_size=10_000,
    # Divided by their standard deviation rather than left in [-1, 1]: speech has a standard deviation near 0.1,
    # so in its own units nearly every level of WaveGrad's chain (σ from 0.001 to 12) would bury it far below the
    # noise, and a network trained for minutes would learn little of the levels near σ_data where a waveform's
    # detail is decided (Karras et al. 2022, Sec. 5, on scaling to unit variance; Chen 2023, "On the importance of
    # noise scheduling", on a chain's signal-to-noise ratio against the data's scale).
    normalisation=lambda part, name, settings, raw: Normalisation.of_scale(float(raw.std()), tuple(raw.shape[1:])),
    # A waveform's samples lie in [-1, 1], and so does every step's estimate.
    keep_in_range=lambda score, normalisation, prior=None: (
        clipped_denoiser(score, -_waveform_bound(normalisation), _waveform_bound(normalisation)) if prior is None
        else clipped_through(score, -_waveform_bound(normalisation), _waveform_bound(normalisation), prior)),
    finish=lambda samples, normalisation, any_shape: normalisation.to_data(samples, any_shape=any_shape).clamp(
        -1.0, 1.0))

MODALITIES = {modality.name: modality for modality in (POINTS, IMAGES, WAVEFORMS)}
