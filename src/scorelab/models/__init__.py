"""Score models: ``nn.Module`` s that are scores, ``model(x, sigma) -> Tensor``."""

from __future__ import annotations

import torch
from torch import nn

from scorelab.config import Config
from scorelab.diffusion import eps_to_score
from scorelab.models.diffusion import EpsMLP
from scorelab.models.energy import EnergyScore
from scorelab.models.mlp import MLP, ConditionalLinear, NoiseConditionalMLP, SeedConditionalMLP, mlp_stack
from scorelab.noise import geometric_sigmas

__all__ = ["MLP", "ConditionalLinear", "EnergyScore", "EpsMLP", "NoiseConditionalMLP", "SeedConditionalMLP",
           "build_model"]


def build_model(config: Config, dim: int, *, sigma_data: float = 1.0) -> nn.Module:
    """The model ``config.model`` names, for data of dimension ``dim``.

    Initialisation is seeded by ``config.seed`` without touching the global RNG.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.model == "mlp":
            return MLP(dim, config.hidden, config.depth)
        if config.model == "energy":
            return EnergyScore(mlp_stack(dim, config.hidden, config.depth, 1, nn.Softplus))
        if config.model == "seed_conditional":
            sigmas = geometric_sigmas(config.sigma_max, config.sigma_min, config.n_levels)
            return SeedConditionalMLP(sigmas, dim, config.hidden)
        if config.model == "ddpm":
            return eps_to_score(EpsMLP(dim, config.hidden, config.depth, sigma_data=sigma_data))
        return NoiseConditionalMLP(dim, config.hidden, config.depth, sigma_data, config.fourier_features)
