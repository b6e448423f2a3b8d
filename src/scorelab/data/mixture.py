"""Gaussian mixtures with exact densities and scores at every noise level, in any shape.

A mixture p(x) = Σ_k w_k N(x; μ_k, diag(s_k²)) convolved with N(0, σ²I) is again
a mixture, with component variances s_k² + σ². So the perturbed density
p_σ = p * N(0, σ²I) and its score ∇ₓ log p_σ are available in closed form:

    ∇ₓ log p_σ(x) = Σ_k r_k(x) · (μ_k − x) / (s_k² + σ²),
    r_k(x) = w_k N(x; μ_k, s_k² + σ²) / Σ_j w_j N(x; μ_j, s_j² + σ²).

That is what makes every objective and sampler in scorelab testable against an
exact answer (Song & Ermon 2019, Sec. 3 use the same device for their Fig. 3).
Samples may have any shape (``means`` [K, *shape]: points, images, waveforms), and the
component index is a condition with an exact conditional score, N(μ_c, s_c² + σ²).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from scorelab.core.errors import DataError
from scorelab.core.guidance import NULL_LABEL


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
    """A mixture of Gaussians with diagonal (or isotropic) covariances, over samples of any shape.

    Args:
        means: component means, shape [K, D] or [K, *shape].
        stds: component standard deviations: a number (shared), shape [K]
            (isotropic per component) or the shape of ``means`` (diagonal).
        weights: mixture weights, shape [K]; normalised to sum to 1.
            Defaults to equal weights.

    The object is itself a score in the scorelab sense: ``gm(x, sigma)`` returns the exact
    score of the mixture perturbed by N(0, σ²I), and ``gm(x, sigma, cond=c)`` with component
    indices c [B] the exact score of component c_b alone: a conditional model whose every
    condition has a known answer. A row whose index is the null class
    (:data:`~scorelab.core.guidance.NULL_LABEL`) gets the whole mixture's score, as a model trained
    with label dropout would: the exact reference of classifier-free guidance.
    """

    def __init__(
        self,
        means: Sequence | Tensor,
        stds: float | Sequence | Tensor = 1.0,
        weights: Sequence | Tensor | None = None,
    ) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim < 2:
            raise DataError(f"means must have shape [K, D] or [K, *shape], got {tuple(means.shape)}")
        self.shape = tuple(means.shape[1:])
        means = means.reshape(means.shape[0], -1)
        n_components, dim = means.shape
        stds = torch.as_tensor(stds, dtype=torch.float64)
        if stds.ndim == 0:
            stds = stds.expand(n_components)
        if stds.ndim == 1:
            if stds.shape[0] != n_components:
                raise DataError(f"stds must have {n_components} entries, got {stds.shape[0]}")
            stds = stds[:, None].expand(n_components, dim)
        elif tuple(stds.shape) == (n_components, *self.shape):
            stds = stds.reshape(n_components, dim)
        else:
            raise DataError(f"stds must be a number, [K] or the shape of means; got {tuple(stds.shape)}")
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
        """D, the number of entries of one sample."""
        return self.means.shape[1]

    def _components(self, n: int, cond: Tensor | None, generator: torch.Generator | None, *,
                    allow_null: bool = False) -> Tensor:
        if cond is None:
            return torch.multinomial(self.weights, n, replacement=True, generator=generator)
        cond = torch.as_tensor(cond).reshape(-1).long().cpu()
        valid = (cond >= 0) & (cond < len(self.weights))
        if allow_null:
            valid |= cond == NULL_LABEL
        if len(cond) != n or not valid.all():
            null = f" or {NULL_LABEL} (the whole mixture)" if allow_null else ""
            raise DataError(f"cond must hold {n} component indices in [0, {len(self.weights)}){null}")
        return cond

    def sample_labelled(self, n: int, generator: torch.Generator | None = None,
                        cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``n`` samples [n, *shape] (float32, CPU) and their components [n]: a component by weight (or
        ``cond``), then its Gaussian."""
        component = self._components(n, cond, generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[component] + self.stds[component] * noise).float().reshape(n, *self.shape), component

    def sample(self, n: int, generator: torch.Generator | None = None, cond: Tensor | None = None) -> Tensor:
        """Draw ``n`` samples [n, *shape] (float32, CPU): a component by weight (or ``cond``), then its Gaussian."""
        return self.sample_labelled(n, generator, cond)[0]

    def _component_terms(self, x: Tensor, sigma: float | Tensor,
                         cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component log w_k + log N(x; μ_k, s_k² + σ²), the variances and x − μ_k ([B, K(or 1), D])."""
        if tuple(x.shape[1:]) != self.shape:
            raise DataError(f"x must have shape [B, {', '.join(map(str, self.shape))}], got {tuple(x.shape)}")
        flat = x.reshape(x.shape[0], 1, self.dim)
        means, stds, log_weights = self.means.to(x), self.stds.to(x), torch.log(self.weights.to(x))
        means, stds, log_weights = means[None], stds[None], log_weights[None]
        if cond is not None:  # one component per sample, alone (its own density and score), or all for the null class
            component = self._components(x.shape[0], cond, None, allow_null=True).to(x.device)
            alone = torch.where(torch.arange(len(self.weights), device=x.device) == component[:, None], 0.0, -math.inf)
            log_weights = torch.where(component[:, None] == NULL_LABEL, log_weights, alone.to(x))
        variances = stds**2 + _as_sigma(sigma, x) ** 2  # [B|1, K|1, D]
        diff = flat - means  # [B, K|1, D]
        log_normal = -0.5 * ((diff**2) / variances + torch.log(2 * math.pi * variances)).sum(-1)
        return log_weights + log_normal, variances, diff

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0, cond: Tensor | None = None) -> Tensor:
        """log p_σ(x) for each sample of ``x`` [B, *shape] (of component ``cond`` alone, if given); shape [B]."""
        log_joint, _, _ = self._component_terms(x, sigma, cond)
        return torch.logsumexp(log_joint, dim=1)

    def score(self, x: Tensor, sigma: float | Tensor = 0.0, cond: Tensor | None = None) -> Tensor:
        """∇ₓ log p_σ(x) (of component ``cond``, if given), exact; shape like ``x``."""
        log_joint, variances, diff = self._component_terms(x, sigma, cond)
        responsibilities = torch.softmax(log_joint, dim=1)[..., None]
        return -(responsibilities * diff / variances).sum(1).reshape(x.shape)

    def __call__(self, x: Tensor, sigma: float | Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        return self.score(x, 0.0 if sigma is None else sigma, cond)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.means.shape[0]}, shape={self.shape})"
