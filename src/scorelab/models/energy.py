"""Energy-based scores: a scalar network E(x) defines p(x) ∝ exp(−E(x)) and s(x) = −∇ₓE(x).

A score parameterised this way is a conservative field by construction and comes
with an unnormalised log-density, −E(x), which a free-form score network lacks
(Salimans & Ho 2021, "Should EBMs model the energy or the score?"; Saremi et al. 2018
train energies by DSM).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.divergence import differentiable
from scorelab.core.errors import ConfigError
from scorelab.models.mlp import no_condition


class EnergyScore(nn.Module):
    """The score −∇ₓE(x) of a scalar energy network E: [B, *shape] → [B] or [B, 1].

    The score stays differentiable (in x and in the parameters) whenever gradients
    are enabled, so exact, sliced and denoising score matching can all train it.
    Under ``torch.no_grad()``, as in the samplers, it still differentiates E
    (inside ``torch.enable_grad()``) but keeps no graph. ``sigma`` is accepted and
    ignored: this is an unconditional score. With ``flatten_input`` the network gets
    each sample as a vector [B, D], whatever its shape (for an MLP energy).
    """

    # Its score is a gradient, so sampling must keep autograd on (no_grad, not inference_mode).
    differentiates_to_score = True

    def __init__(self, energy_net: nn.Module, *, flatten_input: bool = False) -> None:
        super().__init__()
        self.energy_net = energy_net
        self.flatten_input = flatten_input

    def energy(self, x: Tensor) -> Tensor:
        """E(x), one number per sample of ``x``: shape [B]."""
        value = self.energy_net(x.flatten(1) if self.flatten_input else x)
        if value.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ConfigError(
                f"the energy network must return one number per row, [B] or [B, 1]; got {tuple(value.shape)}"
            )
        return value.reshape(x.shape[0])

    def log_density(self, x: Tensor) -> Tensor:
        """The unnormalised log-density −E(x) = log p(x) + log Z, shape [B]."""
        return -self.energy(x)

    def forward(self, x: Tensor, sigma: Tensor | None = None, cond: Any = None) -> Tensor:
        no_condition(cond, self)
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            # A caller that differentiates in x (exact or sliced SM) passes an x that
            # requires grad; it is used as is so that ∇ₓs stays reachable.
            inputs = differentiable(x)
            (energy_gradient,) = torch.autograd.grad(self.energy(inputs).sum(), inputs, create_graph=keep_graph)
        return -energy_gradient
