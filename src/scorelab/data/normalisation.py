"""The affine map between a data set's units and the model's: x_model = (x − shift)/scale."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError


@dataclass(frozen=True)
class Normalisation:
    """x_model = (x − shift) / scale, per entry of a sample; identity when not standardising."""

    shift: Tensor
    scale: Tensor

    @classmethod
    def fit(cls, x: Tensor, standardize: bool) -> Normalisation:
        if not standardize:
            return cls(torch.zeros(x.shape[1:]), torch.ones(x.shape[1:]))
        return cls(x.mean(0), x.std(0).clamp_min(1e-12))

    @classmethod
    def of_scale(cls, scale: float, shape: tuple[int, ...]) -> Normalisation:
        """x_model = x/scale for every entry."""
        return cls(torch.zeros(shape), torch.full(shape, scale))

    @classmethod
    def of_range(cls, low: float, high: float, shape: tuple[int, ...]) -> Normalisation:
        """The map of [low, high] onto [-1, 1], the model space of images."""
        return cls(torch.full(shape, (low + high) / 2), torch.full(shape, (high - low) / 2))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return tuple(self.shift.shape)

    def matches(self, other: Normalisation) -> bool:
        """Whether ``other`` maps data of the same shape to the same model units (a teacher or a guide must)."""
        return self.shape == other.shape and torch.allclose(self.shift.cpu(), other.shift.cpu()) and torch.allclose(
            self.scale.cpu(), other.scale.cpu())

    def to_model(self, x: Tensor, *, any_shape: bool = False) -> Tensor:
        """(x − shift)/scale; ``any_shape`` as for :meth:`to_data`."""
        shift, scale = self._shared() if any_shape else (self.shift.to(x), self.scale.to(x))
        return (x - shift) / scale

    def to_data(self, x: Tensor, *, any_shape: bool = False) -> Tensor:
        """x·scale + shift; with ``any_shape``, samples of another shape than the training data's, which
        needs one shift and one scale for every entry (images and waveforms have them)."""
        shift, scale = self._shared() if any_shape else (self.shift.to(x), self.scale.to(x))
        return x * scale + shift

    def _shared(self) -> tuple[float, float]:
        """The one shift and scale of every entry, or a :class:`ConfigError`."""
        shift, scale = self.shift.flatten(), self.scale.flatten()
        if not (bool((shift == shift[0]).all()) and bool((scale == scale[0]).all())):
            raise ConfigError("samples of another shape than the training data need one shift and scale for every "
                              "entry; this run standardised each coordinate")
        return shift[0].item(), scale[0].item()

    def log_det(self) -> float:
        """log |det ∂x/∂x_model| = Σ log scale, which a density in model units loses in data units."""
        return self.scale.log().sum().item()
