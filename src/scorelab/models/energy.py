"""Energy-based scores: a scalar network E(x) defines p(x) ∝ exp(−E(x)) and s(x) = −∇ₓE(x).

A score parameterised this way is a conservative field by construction and comes
with an unnormalised log-density, −E(x), which a free-form score network lacks
(Salimans & Ho 2021, "Should EBMs model the energy or the score?"; Saremi et al. 2018
train energies by DSM).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scorelab.errors import ConfigError


class EnergyScore(nn.Module):
    """The score −∇ₓE(x) of a scalar energy network E: [B, D] → [B] or [B, 1].

    The score stays differentiable (in x and in the parameters) whenever gradients
    are enabled, so exact, sliced and denoising score matching can all train it.
    Under ``torch.no_grad()``, as in the samplers, it still differentiates E
    (inside ``torch.enable_grad()``) but keeps no graph. ``sigma`` is accepted and
    ignored: this is an unconditional score.
    """

    def __init__(self, energy_net: nn.Module) -> None:
        super().__init__()
        self.energy_net = energy_net

    def energy(self, x: Tensor) -> Tensor:
        """E(x), one number per row of ``x``: shape [B]."""
        value = self.energy_net(x)
        if value.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ConfigError(
                f"the energy network must return one number per row, [B] or [B, 1]; got {tuple(value.shape)}"
            )
        return value.reshape(x.shape[0])

    def log_density(self, x: Tensor) -> Tensor:
        """The unnormalised log-density −E(x) = log p(x) + log Z, shape [B]."""
        return -self.energy(x)

    def forward(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            # A caller that differentiates in x (exact or sliced SM) passes an x that
            # requires grad; use it as is so that ∇ₓs stays reachable.
            inputs = x if x.requires_grad else x.detach().requires_grad_(True)
            (energy_gradient,) = torch.autograd.grad(self.energy(inputs).sum(), inputs, create_graph=keep_graph)
        return -energy_gradient
