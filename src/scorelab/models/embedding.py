"""Embeddings of a noise level for backbones."""

from __future__ import annotations

import torch
from torch import Tensor


def sinusoidal_embedding(value: Tensor, n_frequencies: int) -> Tensor:
    """[sin(ω_k v), cos(ω_k v)] for k < ``n_frequencies``, ω_k geometric from 1/16 to 8: [B] → [B, 2·n].

    The transformer position embedding that DDPM uses for t (Ho et al. 2020, App. B;
    Vaswani et al. 2017), applied here to v = log σ, which spans about [−5, 10].
    """
    frequencies = torch.logspace(-4, 3, n_frequencies, base=2.0, dtype=value.dtype, device=value.device)
    angles = value[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)
