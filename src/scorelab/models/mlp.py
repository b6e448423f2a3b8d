"""MLP backbones: the seed's two networks and scorelab's default.

A backbone is a plain network ``F(x_in, c_noise, cond)`` on a batch of any shape
[B, *shape] (flattened to [B, D] inside, and reshaped back); c_noise is ln σ per sample.
:class:`~scorelab.models.preconditioning.Preconditioned` turns one into a score. The
seed's unconditional :class:`MLP` needs no wrapper: its output is the score.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.divergence import chain_trace
from scorelab.core.errors import ConfigError
from scorelab.models.embedding import sinusoidal_embedding
from scorelab.models.labels import LabelEmbedding

NOISE_INPUTS = ("log", "sinusoidal")
# Width of the class embedding that ConditionalMLP appends to its input: as many features as the sinusoidal
# noise input has by default, so that the class weighs in the first layer as much as the noise level does.
LABEL_FEATURES = 16


def mlp_stack(n_in: int, hidden: int, depth: int, n_out: int, activation: type[nn.Module]) -> nn.Sequential:
    """Linear(n_in, hidden) → act → … (``depth`` hidden layers) → Linear(hidden, n_out)."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def no_condition(cond: Any, model: nn.Module) -> None:
    """A :class:`ConfigError` if a condition reaches a model that cannot use one (rather than ignoring it)."""
    if cond is not None:
        raise ConfigError(f"{type(model).__name__} takes no condition, but one was given")


class MLP(nn.Module):
    """The seed's unconditional score network: D-128-128-D with Softplus.

    Trained by exact, sliced or single-σ denoising score matching; ``sigma`` is accepted
    and ignored so that it plugs into every sampler. It knows its own Jacobian trace:
    called with ``with_trace=True`` it returns ``(s, tr ∇ₓs)`` in closed form
    (:func:`scorelab.core.divergence.chain_trace`), which exact score matching uses. A subclass
    that changes ``forward`` loses that shortcut.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 2) -> None:
        super().__init__()
        self.net = mlp_stack(dim, hidden, depth, dim, nn.Softplus)

    @property
    def computes_trace(self) -> bool:
        return type(self).forward is MLP.forward

    def forward(self, x: Tensor, sigma: Tensor | None = None, cond: Any = None, *,
                with_trace: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        no_condition(cond, self)
        if with_trace:
            value, trace = chain_trace(list(self.net), x.flatten(1))
            return value.reshape(x.shape), trace
        return self.net(x.flatten(1)).reshape(x.shape)


class ConditionalMLP(nn.Module):
    """A noise-conditional MLP backbone F([x_in, noise features, sin 2πBᵀx_in, cos 2πBᵀx_in, e(c)]) with SiLU.

    - Noise features: c_noise = ln σ itself (``"log"``), or its sinusoidal embedding
      (``"sinusoidal"``, as DDPM embeds t; :func:`~scorelab.models.embedding.sinusoidal_embedding`).
      Either way the network is continuous in σ, so any schedule serves at sampling time.
    - Random Fourier features of the input (Tancik et al. 2020, "Fourier features let
      networks learn high frequency functions"), B ~ N(0, I) of shape [D, fourier_features],
      let a small MLP fit the sharp scores of thin structures (rings, spiral arms) at small σ
      (BENCHMARKS.md, "Design measurements"); 0 turns them off. B is a buffer, so it travels
      with the weights.
    - Class labels: with ``classes`` > 0, ``cond`` holds a label per sample and the network also
      reads its learned embedding e(c) (:class:`~scorelab.models.labels.LabelEmbedding`, of width
      :data:`LABEL_FEATURES`), so that it learns s(x|c) and, for the null class, s(x|∅). With
      ``classes`` = 0 it takes no condition, and has neither the embedding nor its inputs.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, *, noise_input: str = "log",
                 fourier_features: int = 0, n_frequencies: int = 8, classes: int = 0) -> None:
        super().__init__()
        if noise_input not in NOISE_INPUTS:
            raise ConfigError(f"unknown noise_input {noise_input!r}; use one of: {', '.join(NOISE_INPUTS)}")
        self.noise_input, self.n_frequencies = noise_input, n_frequencies
        self.register_buffer("frequencies", torch.randn(dim, fourier_features))
        noise_width = 1 if noise_input == "log" else 2 * n_frequencies
        label_width = LABEL_FEATURES if classes else 0
        self.net = mlp_stack(dim + noise_width + 2 * fourier_features + label_width, hidden, depth, dim, nn.SiLU)
        # Only with labels, so that an unconditional network keeps its keys (old checkpoints load) and its weights.
        self.labels = LabelEmbedding(classes, LABEL_FEATURES) if classes else None

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        flat = x_in.flatten(1)
        c_noise = c_noise.to(flat).reshape(-1).expand(flat.shape[0])
        noise = c_noise[:, None] if self.noise_input == "log" else sinusoidal_embedding(c_noise, self.n_frequencies)
        features = [flat, noise]
        if self.frequencies.shape[1]:
            phase = 2 * torch.pi * flat @ self.frequencies
            features += [phase.sin(), phase.cos()]
        if self.labels is None:
            no_condition(cond, self)
        else:
            features.append(self.labels(cond, flat.shape[0], flat.device))
        return self.net(torch.cat(features, dim=1)).reshape(x_in.shape)


def level_index(log_sigma: Tensor, sigmas: Tensor) -> Tensor:
    """Index of the nearest level (in log σ) of ``sigmas`` for each entry of ``log_sigma``."""
    return (log_sigma[:, None] - sigmas.log()[None]).abs().argmin(dim=1)


class ConditionalLinear(nn.Module):
    """The seed's conditional layer: ``Linear(x) * γ[level]``, γ initialised U(0, 1)."""

    def __init__(self, n_in: int, n_out: int, n_levels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.embedding = nn.Embedding(n_levels, n_out)
        nn.init.uniform_(self.embedding.weight, 0.0, 1.0)

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        return self.linear(x) * self.embedding(level)


class CondLinearMLP(nn.Module):
    """The seed's NCSN backbone: CondLinear(D,128) → Softplus → CondLinear(128,128) → Softplus → Linear(128,D).

    Its output is the score itself (the ``score`` parameterisation). It only knows the
    discrete levels it was built with; any σ is mapped to the nearest of them.
    """

    def __init__(self, sigmas: Tensor, dim: int = 2, hidden: int = 128) -> None:
        super().__init__()
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32).clone())
        n_levels = len(self.sigmas)
        self.layer1 = ConditionalLinear(dim, hidden, n_levels)
        self.layer2 = ConditionalLinear(hidden, hidden, n_levels)
        self.output = nn.Linear(hidden, dim)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        no_condition(cond, self)
        level = level_index(c_noise.to(self.sigmas).reshape(-1).expand(x_in.shape[0]), self.sigmas)
        h = nn.functional.softplus(self.layer1(x_in.flatten(1), level))
        h = nn.functional.softplus(self.layer2(h, level))
        return self.output(h).reshape(x_in.shape)
