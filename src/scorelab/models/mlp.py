"""MLP score models: the seed's two networks and scorelab's default.

Every model is a score in the scorelab sense: ``model(x, sigma) -> Tensor``
shaped like ``x``, with ``sigma`` a tensor [B] of per-sample noise levels
(ignored by unconditional models).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp_stack(n_in: int, hidden: int, depth: int, n_out: int, activation: type[nn.Module]) -> nn.Sequential:
    """Linear(n_in, hidden) → act → … (``depth`` hidden layers) → Linear(hidden, n_out)."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """The seed's unconditional score network: D-128-128-D with Softplus.

    Trained by exact, sliced or single-σ denoising score matching; ``sigma`` is
    accepted and ignored so that it plugs into every sampler.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 2) -> None:
        super().__init__()
        self.net = mlp_stack(dim, hidden, depth, dim, nn.Softplus)

    def forward(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        return self.net(x)


def level_index(sigma: Tensor, sigmas: Tensor) -> Tensor:
    """Index of the nearest level (in log σ) of ``sigmas`` for each entry of ``sigma``."""
    return (sigma.log()[:, None] - sigmas.log()[None]).abs().argmin(dim=1)


class ConditionalLinear(nn.Module):
    """The seed's conditional layer: ``Linear(x) * γ[level]``, γ initialised U(0, 1)."""

    def __init__(self, n_in: int, n_out: int, n_levels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.embedding = nn.Embedding(n_levels, n_out)
        nn.init.uniform_(self.embedding.weight, 0.0, 1.0)

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        return self.linear(x) * self.embedding(level)


class SeedConditionalMLP(nn.Module):
    """The seed's NCSN: CondLinear(D,128) → Softplus → CondLinear(128,128) → Softplus → Linear(128,D).

    It only knows the discrete levels it was built with; any ``sigma`` is mapped
    to the nearest of them.
    """

    def __init__(self, sigmas: Tensor, dim: int = 2, hidden: int = 128) -> None:
        super().__init__()
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32).clone())
        n_levels = len(self.sigmas)
        self.layer1 = ConditionalLinear(dim, hidden, n_levels)
        self.layer2 = ConditionalLinear(hidden, hidden, n_levels)
        self.output = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        level = level_index(sigma.to(self.sigmas), self.sigmas)
        h = nn.functional.softplus(self.layer1(x, level))
        h = nn.functional.softplus(self.layer2(h, level))
        return self.output(h)


class NoiseConditionalMLP(nn.Module):
    """scorelab's default noise-conditional score network.

    s(x, σ) = F([u, log σ, sin 2πBᵀu, cos 2πBᵀu]) / σ,  u = c_in(σ)·x,  c_in(σ) = 1/√(σ² + σ_data²).

    - Dividing by σ builds in the known scale of the score, ‖∇ log p_σ‖ ≈ √D/σ
      (Song & Ermon 2020, "Improved techniques", technique 3), so the network
      output stays O(1) at every level.
    - Scaling the input by c_in keeps it at unit variance for every σ (Karras
      et al. 2022, EDM, Table 1), which matters when σ_1 is many times the data's
      spread.
    - Taking log σ as an input, rather than a level index, makes the model
      continuous in σ, so any schedule can be used at sampling time.
    - Random Fourier features of u (Tancik et al. 2020, "Fourier features let
      networks learn high frequency functions"), B ~ N(0, I) of shape
      [D, fourier_features], let a small MLP fit the sharp scores of thin
      structures (rings, spiral arms) at small σ within a few thousand steps;
      in exploratory single runs on rings (2026-11-27, README "Status") they
      took the W2 ratio from about 2.2 to about 1.7, and with a batch of 2048
      and cosine lr decay to 1.3. ``fourier_features = 0`` turns them off.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, sigma_data: float = 1.0,
                 fourier_features: int = 0) -> None:
        super().__init__()
        # Buffers, so the data's scale and the drawn frequencies travel with the weights.
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data)))
        self.register_buffer("frequencies", torch.randn(dim, fourier_features))
        self.net = mlp_stack(dim + 1 + 2 * fourier_features, hidden, depth, dim, nn.SiLU)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        sigma = sigma.to(x).reshape(-1, 1).expand(x.shape[0], 1)
        u = torch.rsqrt(sigma**2 + self.sigma_data**2) * x
        phase = 2 * torch.pi * u @ self.frequencies
        return self.net(torch.cat([u, sigma.log(), phase.sin(), phase.cos()], dim=1)) / sigma
