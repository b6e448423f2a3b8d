"""ε-prediction networks for diffusion models (DDPM/DDIM).

An ε-network predicts the noise in x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Ho et al. 2020).
It becomes a scorelab score through :func:`scorelab.diffusion.eps_to_score`, so a
trained DDPM plugs into Langevin, DDPM, DDIM, the probability-flow ODE and the
likelihood alike.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scorelab.models.mlp import mlp_stack


def sinusoidal_embedding(value: Tensor, n_frequencies: int) -> Tensor:
    """[sin(ω_k v), cos(ω_k v)] for k < ``n_frequencies``, ω_k geometric from 1/16 to 8.

    The transformer position embedding that DDPM uses for t (Ho et al. 2020, App. B;
    Vaswani et al. 2017), applied here to v = log σ, which spans about [−5, 10].
    """
    frequencies = torch.logspace(-4, 3, n_frequencies, base=2.0, dtype=value.dtype, device=value.device)
    angles = value[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class EpsMLP(nn.Module):
    """ε̂(x_t, σ), with an MLP F on [c_in·y, embedding(log σ)] and SiLU activations.

    With y = x_t/√ᾱ = x_t·√(1 + σ²), the VE view, and σ_d the data's standard deviation:

        ε̂ = σ·y/(σ² + σ_d²) + σ_d/√(σ² + σ_d²) · F(y/√(σ² + σ_d²), σ).

    This is Karras et al.'s (2022, EDM, Table 1) preconditioning, D = c_skip·y − c_out·F,
    written for ε̂ = (y − D)/σ: the input and the target of F have unit variance at every σ.
    For σ_d = 1 it is v-prediction (Salimans & Ho 2022), ε̂ = √(1 − ᾱ) x_t + √ᾱ v̂. A plain
    ε-network must amplify its errors by √(1 + σ²) to get x̂_0 at large σ; this one does not,
    which matters for DDIM's first, large steps. Trained with L_simple all the same.

    Conditioned on the continuous σ_t = √((1 − ᾱ_t)/ᾱ_t) rather than on the index t, so
    one network serves every β schedule, every subsequence of steps and the ODE.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, n_frequencies: int = 8,
                 sigma_data: float = 1.0) -> None:
        super().__init__()
        self.n_frequencies = n_frequencies
        # A buffer, so the value measured on the training data travels with the weights.
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data)))
        self.net = mlp_stack(dim + 2 * n_frequencies, hidden, depth, dim, nn.SiLU)

    def forward(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        sigma = sigma.to(x_t).reshape(-1).expand(x_t.shape[0])
        sigma_rows = sigma[:, None]
        y = x_t * (1 + sigma_rows**2).sqrt()
        scale = (sigma_rows**2 + self.sigma_data**2).sqrt()
        features = torch.cat([y / scale, sinusoidal_embedding(sigma.log(), self.n_frequencies)], dim=1)
        return sigma_rows * y / scale**2 + self.sigma_data / scale * self.net(features)
