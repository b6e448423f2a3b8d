"""Exact log-likelihoods through the probability-flow ODE, against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.core.processes import VE, VP
from scorelab.models import ConditionalMLP, Preconditioned
from scorelab.sampling.likelihood import log_prob

COSINE = VP("cosine", 1000)
LINEAR = VP("linear", 1000)
MIXTURE = sl.data.GaussianMixture([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]], [0.3, 0.2, 0.4], [0.5, 0.3, 0.2])


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_log_likelihood_matches_the_closed_form():
    """N(μ, Σ) with the exact score: within 0.01 nats for every sample.

    The cosine schedule's σ_max ≈ 2·10⁴ makes the N(0, 1 + σ_max²) prior exact to ~10⁻⁴ nats;
    with the linear schedule's σ_max ≈ 157 the prior's missing mean μ costs up to ~μ·|y|/σ_max ≈ 0.01.
    """
    mean = torch.tensor([0.5, -0.3], dtype=torch.float64)
    cov = torch.tensor([[0.8, 0.3], [0.3, 0.5]], dtype=torch.float64)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)

    def score(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        rotated = (y - mean) @ eigenvectors
        return -(rotated / (eigenvalues + sigma.reshape(-1, 1) ** 2)) @ eigenvectors.T

    gaussian = torch.distributions.MultivariateNormal(mean, cov)
    x = gaussian.sample((400,))
    estimate = log_prob(score, x, COSINE)
    assert (estimate - gaussian.log_prob(x)).abs().max() < 0.01


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mixture_log_likelihood_matches_the_mixture_density(dtype):
    x = MIXTURE.sample(300, seeded(0)).to(dtype)
    estimate = log_prob(MIXTURE, x, LINEAR)
    assert estimate.dtype == dtype
    assert (estimate.double() - MIXTURE.log_prob(x.double())).abs().max() < 0.05


def test_hutchinson_divergence_is_unbiased_within_monte_carlo_error():
    x = MIXTURE.sample(400, seeded(1)).double()
    exact = log_prob(MIXTURE, x, LINEAR, divergence="exact")
    estimate = log_prob(MIXTURE, x, LINEAR, divergence="hutchinson", generator=seeded(2))
    error = estimate - exact
    standard_error = error.std().item() / math.sqrt(len(error))
    assert error.std() > 0.01  # it is an estimate, not the exact value again
    assert abs(error.mean().item()) < 3 * standard_error
    again = log_prob(MIXTURE, x, LINEAR, divergence="hutchinson", generator=seeded(2))
    torch.testing.assert_close(again, estimate)


def test_log_prob_runs_through_a_frozen_preconditioned_network():
    with torch.random.fork_rng():  # seeded weights, the global generator left as it was
        torch.manual_seed(5)
        score = Preconditioned(ConditionalMLP(3, 16, 2, noise_input="sinusoidal"), "edm").requires_grad_(False)
    x = torch.randn(5, 3, generator=seeded(3))
    result = log_prob(score, x, VE(80.0, 0.01), divergence="hutchinson", generator=seeded(4))
    assert result.shape == (5,) and torch.isfinite(result).all()
    # With its output layer zeroed, EDM's D = c_skip·x = σ_d²/(σ² + σ_d²)·x is the exact denoiser of N(0, σ_d²I),
    # so the frozen network's score is that of N(0, (σ_d² + σ²)I) and log p_σmin(x) is a closed form.
    backbone = ConditionalMLP(3, 16, 2, noise_input="sinusoidal")
    output_layer = [layer for layer in backbone.modules() if isinstance(layer, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(output_layer.weight)
    torch.nn.init.zeros_(output_layer.bias)
    sigma_data, process = 0.7, VE(80.0, 0.01)
    score = Preconditioned(backbone, "edm", sigma_data=sigma_data).requires_grad_(False)
    result = log_prob(score, x, process, divergence="hutchinson", generator=seeded(4))
    exact = torch.distributions.Normal(0.0, math.sqrt(sigma_data**2 + process.sigma_min**2)).log_prob(x).sum(1)
    # No Monte Carlo error: the Rademacher probe's vᵀ(cI)v = c·D exactly for this isotropic score. What is left
    # is dopri5's (tolerances 10⁻⁵) and the N(0, σ_max²I) prior's, which misses the variance σ_d² (≲ 10⁻⁴ nats);
    # measured 2·10⁻⁴. A σ_d of 0.71 instead of 0.7 is 0.05 nats off, a score 2% too large fails too.
    assert (result - exact).abs().max() < 0.01
    # A fixed-step solver walks the process's 20 levels (one rk4 step from σ_min to σ_max was 7 nats off);
    # rk4's error on these geometric steps, measured 2.5·10⁻³, is within the same bound.
    fixed_step = log_prob(score, x, process, method="rk4", divergence="hutchinson", generator=seeded(4))
    assert (fixed_step - exact).abs().max() < 0.01


def test_log_prob_rejects_bad_arguments():
    x = torch.zeros(2, 2)
    with pytest.raises(ConfigError, match="sigma_min"):
        log_prob(MIXTURE, x, VE(0.5, 0.5))
    with pytest.raises(ConfigError, match="divergence"):
        log_prob(MIXTURE, x, LINEAR, divergence="skilling")
    with pytest.raises(ConfigError, match="ODE method"):
        log_prob(MIXTURE, x, LINEAR, method="leapfrog")
