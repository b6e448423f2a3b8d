"""Gaussian mixtures with exact densities and scores at every noise level.

A mixture p(x) = Σ_k w_k N(x; μ_k, diag(s_k²)) convolved with N(0, σ²I) is again
a mixture, with component variances s_k² + σ². So the perturbed density
p_σ = p * N(0, σ²I) and its score ∇ₓ log p_σ are available in closed form:

    ∇ₓ log p_σ(x) = Σ_k r_k(x) · (μ_k − x) / (s_k² + σ²),
    r_k(x) = w_k N(x; μ_k, s_k² + σ²) / Σ_j w_j N(x; μ_j, s_j² + σ²).

That is what makes every objective and sampler in scorelab testable against an
exact answer (Song & Ermon 2019, Sec. 3 use the same device for their Fig. 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from scorelab.errors import DataError


def _as_sigma(sigma: float | Tensor, x: Tensor) -> Tensor:
    """Noise level(s), a number or one per row of x, as a tensor [B, 1, 1] (or [1, 1, 1]) on x's device."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.numel() not in (1, x.shape[0]):
        raise DataError(f"sigma must be a number or hold one level per row of x ({x.shape[0]}), "
                        f"got shape {tuple(sigma.shape)}")
    if not (sigma >= 0).all():
        raise DataError("sigma must be >= 0")
    return sigma.reshape(-1, 1, 1)


class GaussianMixture:
    """A mixture of Gaussians with diagonal (or isotropic) covariances.

    Args:
        means: component means, shape [K, D].
        stds: component standard deviations: a number (shared), shape [K]
            (isotropic per component) or [K, D] (diagonal).
        weights: mixture weights, shape [K]; normalised to sum to 1.
            Defaults to equal weights.

    The object is itself a score in the scorelab sense: ``gm(x, sigma)`` returns
    the exact score of the mixture perturbed by N(0, σ²I).
    """

    def __init__(
        self,
        means: Sequence | Tensor,
        stds: float | Sequence | Tensor = 1.0,
        weights: Sequence | Tensor | None = None,
    ) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise DataError(f"means must have shape [K, D], got {tuple(means.shape)}")
        n_components, dim = means.shape
        stds = torch.as_tensor(stds, dtype=torch.float64)
        if stds.ndim == 0:
            stds = stds.expand(n_components)
        if stds.ndim == 1:
            if stds.shape[0] != n_components:
                raise DataError(f"stds must have {n_components} entries, got {stds.shape[0]}")
            stds = stds[:, None].expand(n_components, dim)
        if stds.shape != (n_components, dim):
            raise DataError(f"stds must be a number, [K] or [K, D]; got {tuple(stds.shape)}")
        if not (stds > 0).all():
            raise DataError("stds must be positive")
        if weights is None:
            weights = torch.full((n_components,), 1.0 / n_components, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (n_components,) or not (weights > 0).all():
            raise DataError(f"weights must be {n_components} positive numbers")
        self.means = means
        self.stds = stds.contiguous()
        self.weights = weights / weights.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples (float32, CPU): a component by weight, then its Gaussian."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[component] + self.stds[component] * noise).float()

    def _component_terms(self, x: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component log w_k + log N(x; μ_k, s_k² + σ²), the variances and x − μ_k."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DataError(f"x must have shape [B, {self.dim}], got {tuple(x.shape)}")
        means = self.means.to(x)
        variances = self.stds.to(x)[None] ** 2 + _as_sigma(sigma, x) ** 2  # [B|1, K, D]
        diff = x[:, None, :] - means[None]  # [B, K, D]
        log_normal = -0.5 * ((diff**2) / variances + torch.log(2 * math.pi * variances)).sum(-1)
        return torch.log(self.weights.to(x))[None] + log_normal, variances, diff

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """log p_σ(x) for each row of ``x`` [B, D]; returns shape [B]."""
        log_joint, _, _ = self._component_terms(x, sigma)
        return torch.logsumexp(log_joint, dim=1)

    def score(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """∇ₓ log p_σ(x), exact; shape like ``x``."""
        log_joint, variances, diff = self._component_terms(x, sigma)
        responsibilities = torch.softmax(log_joint, dim=1)[..., None]
        return -(responsibilities * diff / variances).sum(1)

    def __call__(self, x: Tensor, sigma: float | Tensor | None = None) -> Tensor:
        return self.score(x, 0.0 if sigma is None else sigma)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.means.shape[0]}, D={self.dim})"
