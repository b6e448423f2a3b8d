"""Bits per dimension of integer-valued data (images) under a continuous density, and two classical baselines.

Pixels take integer values, a density does not: uniform dequantisation (Theis et al. 2016, "A note
on the evaluation of generative models", Sec. 3.1) fills each integer's cell [x − ½, x + ½)^D with
noise u, and by Jensen's inequality the discrete model P(x) = ∫ p(x + u) du satisfies

    −log₂ P(x) ≤ E_u[−log₂ p(x + u)],   u ~ U(−½, ½)^D,

so the bits per dimension −log p(x + u)/(D ln 2), averaged, bound the discrete code length from above.
All densities here are in the data's own units, where a cell has volume 1, so models trained in
other coordinates compare once their change of variables is added (as
:meth:`scorelab.runs.trained.TrainedRun.log_prob` does). Every density is judged on the same dequantised
points. The baselines: a full-covariance Gaussian, and scikit-learn's ``GaussianMixture`` with its
number of components chosen on a validation part of the training split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from scorelab.core.errors import DataError
from scorelab.core.rng import rand

MIXTURE_COMPONENTS = (1, 2, 4, 8, 16, 32)


def dequantise(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x + u with u ~ U(−½, ½) per entry: integer data spread over their cells."""
    return x + rand(x.shape, x, generator) - 0.5


def bits_per_dim(log_density: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """−log p(x)/(D ln 2) per sample of ``x`` [n, *shape], for ``log_density`` in nats."""
    return -log_density(x).double() / (x[0].numel() * math.log(2))


def _flat(x: Tensor) -> np.ndarray:
    return x.detach().cpu().double().flatten(1).numpy()


def gaussian_bits(train: Tensor, test: Tensor) -> Tensor:
    """Bits per dimension of ``test`` under the full-covariance Gaussian fitted (by maximum likelihood)
    to ``train``; both already dequantised, so the covariance is never singular."""
    from scipy.stats import multivariate_normal

    data = _flat(train)
    if len(data) < 2:
        raise DataError(f"a Gaussian baseline needs at least 2 training images, got {len(data)}")
    gaussian = multivariate_normal(data.mean(0), np.cov(data, rowvar=False, bias=True), allow_singular=False)
    return bits_per_dim(lambda x: torch.from_numpy(np.atleast_1d(gaussian.logpdf(_flat(x)))), test)


def mixture_bits(train: Tensor, test: Tensor, *, seed: int = 0, validation_fraction: float = 0.2,
                 components: Sequence[int] = MIXTURE_COMPONENTS) -> tuple[Tensor, int]:
    """Bits per dimension of ``test`` under a full-covariance ``GaussianMixture`` fitted to ``train``
    (both dequantised), and its number of components: the one of ``components`` (those with at
    least D fitting points each) whose fit on the rest of ``train`` gives the best mean
    log-likelihood on a seeded validation part of it; the mixture is then refitted on all of ``train``."""
    from sklearn.mixture import GaussianMixture

    data = _flat(train)
    order = np.random.default_rng(seed).permutation(len(data))
    n_validation = max(1, round(len(data) * validation_fraction))
    fit_part, validation = data[order[n_validation:]], data[order[:n_validation]]
    # A full covariance in D dimensions needs about D points of its own to be more than its ridge.
    candidates = [k for k in components if k == 1 or k * data.shape[1] <= len(fit_part)]
    if not candidates:
        raise DataError(f"a mixture baseline needs more training images than {len(data)}")

    def fitted(k: int, rows: np.ndarray) -> GaussianMixture:
        return GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=seed).fit(rows)

    best = max(candidates, key=lambda k: fitted(k, fit_part).score(validation))
    mixture = fitted(best, data)
    return bits_per_dim(lambda x: torch.from_numpy(mixture.score_samples(_flat(x))), test), best
