"""Preconditioning: one wrapper that turns a plain backbone F(x_in, c_noise, cond) into a score.

Karras et al. 2022 ("Elucidating the design space", Sec. 5 and Table 1) write every
denoiser as D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ)), in the VE
coordinates of :mod:`scorelab.core.processes`. The parameterisations here, by what F predicts:

| name    | F predicts      | c_skip               | c_out                   | c_in                 |
|---------|-----------------|----------------------|-------------------------|----------------------|
| score   | s(x, σ)         | 1                    | σ²                      | 1                    |
| ve      | σ·s(x, σ)       | 1                    | σ                       | 1/√(σ² + σ_d²)       |
| eps     | ε = −σ·s (VP)   | 1                    | −σ                      | 1/√(σ² + 1)          |
| edm     | (D − c_skip x)/c_out | σ_d²/(σ² + σ_d²) | σ·σ_d/√(σ² + σ_d²)    | 1/√(σ² + σ_d²)       |
| consistency | (f − c_skip x)/c_out | σ_d²/((σ − σ_min)² + σ_d²) | (σ − σ_min)·σ_d/√(σ² + σ_d²) | 1/√(σ² + σ_d²) |

``ve`` is NCSNv2's s = F/σ (Song & Ermon 2020, technique 3) with EDM's c_in, so input and
output stay at unit scale at every σ; ``eps`` is Table 1's VP column (DDPM's ε-network);
``edm`` is EDM's own. ``consistency`` is a consistency model f(y, σ) (Song et al. 2023,
"Consistency Models", App. C; Song & Dhariwal 2023, "Improved techniques for training
consistency models"): EDM's scalings shifted by σ_min, so that c_skip(σ_min) = 1 and
c_out(σ_min) = 0 and the boundary condition f(y, σ_min) = y holds exactly, whatever the
weights. Its denoiser view is f and its score the one whose denoiser f is, (f − y)/σ².
c_noise = ln σ for all of them: each backbone embeds it as it likes.
σ_d, the data's standard deviation, is a buffer, so the value measured on the training
data travels with the weights (and so does σ_min, for ``consistency`` only: the other
parameterisations' state dicts are unchanged). The score, ε and denoiser views follow from
:mod:`scorelab.core.processes`; the score is computed as a·x + F/d, without subtracting x from D.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.errors import ConfigError
from scorelab.core.processes import denoised_from_score, eps_from_score, score_from_denoised
from scorelab.core.shapes import append_dims, per_sample
from scorelab.models.settings import PARAMETERISATIONS


class Preconditioned(nn.Module):
    """The score s(x, σ, cond) of a backbone under one of :data:`PARAMETERISATIONS`.

    ``forward`` is the score (what objectives and samplers call); :meth:`denoise` and
    :meth:`eps` are the denoiser and noise views. The backbone's weights live under ``backbone.``.
    ``sigma_min`` is the consistency model's boundary σ_min, kept as a buffer under ``consistency``
    and ignored by the other parameterisations (as ``score`` ignores σ_d).
    """

    def __init__(
        self, backbone: nn.Module, parameterisation: str = "edm", sigma_data: float = 1.0, sigma_min: float = 0.0
    ) -> None:
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise ConfigError(
                f"unknown parameterisation {parameterisation!r}; use one of: {', '.join(PARAMETERISATIONS)}"
            )
        self.backbone = backbone
        self.parameterisation = parameterisation
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data)))
        if parameterisation == "consistency":
            if not 0 <= sigma_min < float("inf"):
                raise ConfigError(f"sigma_min must be a finite number >= 0, got {sigma_min}")
            # Only here, so that the checkpoints of every other parameterisation keep their keys. In float64, so
            # that σ_min is the number given in float64 too (in float32 arithmetic it rounds as a float32 σ does):
            # the boundary condition is exact where σ equals it in the data's dtype.
            self.register_buffer("sigma_min", torch.tensor(float(sigma_min), dtype=torch.float64))

    def forward(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        sigma = per_sample(sigma, x)
        column = append_dims(sigma, x.ndim)
        kind, sigma_data = self.parameterisation, self.sigma_data
        if kind == "consistency":
            return score_from_denoised(x, self._consistency(x, sigma, cond), sigma)
        if kind == "score":
            return self.backbone(x, sigma.log(), cond)
        if kind == "eps":
            return self.backbone(torch.rsqrt(column**2 + 1) * x, sigma.log(), cond) / -column
        spread = column**2 + sigma_data**2
        output = self.backbone(torch.rsqrt(spread) * x, sigma.log(), cond)
        if kind == "ve":
            return output / column
        return -x / spread + output / (column * spread.sqrt() / sigma_data)

    def denoise(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        """D(x, σ) = x + σ²·s(x, σ), the denoiser view; under ``consistency``, f(x, σ) itself."""
        sigma = per_sample(sigma, x)
        if self.parameterisation == "consistency":
            # f directly rather than x + σ²·(f − x)/σ², which would round f(x, σ_min) = x away.
            return self._consistency(x, sigma, cond)
        return denoised_from_score(x, self(x, sigma, cond), sigma)

    def consistency_scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in) of the consistency model at levels σ (Song et al. 2023, App. C):

            c_skip = σ_d²/((σ − σ_min)² + σ_d²),  c_out = (σ − σ_min)·σ_d/√(σ² + σ_d²),  c_in = 1/√(σ² + σ_d²).

        At σ = σ_min, (σ − σ_min) is exactly 0, so c_skip is exactly 1 and c_out exactly 0.
        """
        sigma_data, offset = self.sigma_data, sigma - self.sigma_min
        spread = sigma**2 + sigma_data**2
        return sigma_data**2 / (offset**2 + sigma_data**2), offset * sigma_data * spread.rsqrt(), spread.rsqrt()

    def _consistency(self, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
        """f(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, ln σ), with σ [B]."""
        c_skip, c_out, c_in = (append_dims(c, x.ndim) for c in self.consistency_scalings(sigma))
        return c_skip * x + c_out * self.backbone(c_in * x, sigma.log(), cond)

    def eps(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        """ε̂(x, σ) = −σ·s(x, σ), the noise view (DDPM's ε-prediction)."""
        sigma = per_sample(sigma, x)
        return eps_from_score(self(x, sigma, cond), sigma)

    def extra_repr(self) -> str:
        if self.parameterisation == "consistency":
            return f"parameterisation={self.parameterisation!r}, sigma_min={self.sigma_min.item():g}"
        return f"parameterisation={self.parameterisation!r}"
