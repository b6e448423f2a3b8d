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

``ve`` is NCSNv2's s = F/σ (Song & Ermon 2020, technique 3) with EDM's c_in, so input and
output stay at unit scale at every σ; ``eps`` is Table 1's VP column (DDPM's ε-network);
``edm`` is EDM's own. c_noise = ln σ for all of them: each backbone embeds it as it likes.
σ_d, the data's standard deviation, is a buffer, so the value measured on the training
data travels with the weights. The score, ε and denoiser views follow from
:mod:`scorelab.core.processes`; the score is computed as a·x + F/d, without subtracting x from D.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.errors import ConfigError
from scorelab.core.processes import denoised_from_score, eps_from_score
from scorelab.core.shapes import append_dims, per_sample
from scorelab.models.settings import PARAMETERISATIONS


class Preconditioned(nn.Module):
    """The score s(x, σ, cond) of a backbone under one of :data:`PARAMETERISATIONS`.

    ``forward`` is the score (what objectives and samplers call); :meth:`denoise` and
    :meth:`eps` are the denoiser and noise views. The backbone's weights live under ``backbone.``.
    """

    def __init__(self, backbone: nn.Module, parameterisation: str = "edm", sigma_data: float = 1.0) -> None:
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise ConfigError(f"unknown parameterisation {parameterisation!r}; use one of: "
                              f"{', '.join(PARAMETERISATIONS)}")
        self.backbone = backbone
        self.parameterisation = parameterisation
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data)))

    def forward(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        sigma = per_sample(sigma, x)
        column = append_dims(sigma, x.ndim)
        kind, sigma_data = self.parameterisation, self.sigma_data
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
        """D(x, σ) = x + σ²·s(x, σ), the denoiser view."""
        sigma = per_sample(sigma, x)
        return denoised_from_score(x, self(x, sigma, cond), sigma)

    def eps(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        """ε̂(x, σ) = −σ·s(x, σ), the noise view (DDPM's ε-prediction)."""
        sigma = per_sample(sigma, x)
        return eps_from_score(self(x, sigma, cond), sigma)

    def extra_repr(self) -> str:
        return f"parameterisation={self.parameterisation!r}"
