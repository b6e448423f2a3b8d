"""Noise processes against their definitions: training draws, perturbation moments, priors, grids and views."""

from __future__ import annotations

import math

import pytest
import torch

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.core.processes import (
    PROCESSES,
    VE,
    VP,
    clipped_denoiser,
    denoised_from_score,
    eps_from_score,
    score_from_denoised,
)

DRAWS = 200_000


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def like(dtype=torch.float64) -> torch.Tensor:
    return torch.zeros(1, dtype=dtype)


def test_discrete_processes_draw_their_own_levels_uniformly():
    for process, levels in ((VE(10.0, 0.01, 8), sl.noise.geometric_sigmas(10.0, 0.01, 8).double()),
                            (VP("cosine", 50), sl.noise.vp_sigmas(sl.noise.alphas_cumprod(
                                sl.noise.beta_schedule("cosine", 50))))):
        sigma = process.training_sigma(DRAWS, like(), seeded(0))
        index = (sigma[:, None] - levels[None]).abs().argmin(dim=1)
        torch.testing.assert_close(sigma, levels[index])
        counts = torch.bincount(index, minlength=len(levels)).double()
        expected = DRAWS / len(levels)
        chi2 = ((counts - expected) ** 2 / expected).sum().item()
        assert chi2 < len(levels) + 5 * math.sqrt(2 * len(levels))  # χ² with L − 1 degrees of freedom


def test_continuous_ve_draws_log_sigma_uniformly_between_its_ends():
    process = VE(50.0, 0.02, continuous=True)
    sigma = process.training_sigma(DRAWS, like(), seeded(1))
    assert sigma.min() >= 0.02 and sigma.max() <= 50.0
    u = (sigma.log() - math.log(0.02)) / math.log(50.0 / 0.02)  # U(0, 1) if log σ is uniform
    quantiles = torch.quantile(u, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64))
    torch.testing.assert_close(quantiles, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64),
                               atol=0.005, rtol=0)


def test_continuous_vp_draws_between_adjacent_levels_and_covers_each_segment_uniformly():
    """WaveGrad's draw: a segment t uniformly, then √ᾱ uniform between √ᾱ_t and √ᾱ_{t−1} (√ᾱ_0 = 1)."""
    process = VP("linear", 20, continuous=True)
    sigma = process.training_sigma(DRAWS, like(), seeded(2))
    root = torch.rsqrt(1 + sigma**2)  # √ᾱ of each draw
    edges = torch.cat([torch.ones(1, dtype=torch.float64), process.alphas_cumprod.sqrt()])  # 1 > l_1 > … > l_T
    segment = torch.searchsorted(-edges, -root, right=False) - 1  # l_{t} <= √ᾱ < l_{t−1}
    assert ((segment >= 0) & (segment < 20)).all()
    assert (root <= edges[segment] + 1e-12).all() and (root >= edges[segment + 1] - 1e-12).all()
    counts = torch.bincount(segment, minlength=20).double()
    assert ((counts - DRAWS / 20).abs() < 5 * math.sqrt(DRAWS / 20)).all()  # each segment 1/T of the draws
    within = (edges[segment] - root) / (edges[segment] - edges[segment + 1])  # U(0, 1) within its segment
    assert abs(within.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / DRAWS)
    assert abs(within.var().item() - 1 / 12) < 0.002
    assert sigma.min() > 0 and sigma.max() <= process.sigma_max


@pytest.mark.parametrize("process", [VE(5.0, 0.1), VP("linear", 1000)], ids=["ve", "vp"])
def test_perturbation_has_the_closed_form_moments_at_any_shape(process):
    """x_t = a(σ)(x + σz): mean a·x and variance a²σ² per entry, and to_ve undoes a."""
    x = torch.full((DRAWS, 1, 2, 3), 0.7, dtype=torch.float64)
    sigma = torch.full((DRAWS,), 1.3, dtype=torch.float64)
    z = torch.randn(x.shape, generator=seeded(3), dtype=torch.float64)
    x_t = process.perturb(x, sigma, z)
    a = process.scale(torch.tensor(1.3, dtype=torch.float64)).item()
    assert x_t.shape == x.shape
    assert (x_t.mean(0) - a * 0.7).abs().max() < 5 * a * 1.3 / math.sqrt(DRAWS)
    assert (x_t.var(0) / (a * 1.3) ** 2 - 1).abs().max() < 5 * math.sqrt(2 / DRAWS)
    torch.testing.assert_close(process.to_ve(x_t, sigma), x + 1.3 * z)


def test_vp_scale_is_the_square_root_of_alpha_bar():
    process = VP("linear", 1000)
    sigma = process.grid()
    torch.testing.assert_close(process.scale(sigma) ** 2, sl.noise.alpha_bar_of_sigma(sigma))
    assert process.prior_std == pytest.approx(math.sqrt(1 + process.sigma_max**2))


@pytest.mark.parametrize("process", [VE(5.0, 0.1), VP("cosine", 100)], ids=["ve", "vp"])
def test_prior_draws_and_log_density_at_any_shape(process):
    draws = process.prior((DRAWS, 3, 2), generator=seeded(4), dtype=torch.float64)
    assert draws.shape == (DRAWS, 3, 2)
    assert abs(draws.std().item() / process.prior_std - 1) < 0.005
    again = process.prior((DRAWS, 3, 2), generator=seeded(4), dtype=torch.float64)
    assert torch.equal(draws, again)
    y = draws[:7]
    normal = torch.distributions.Normal(0.0, process.prior_std)
    torch.testing.assert_close(process.prior_log_prob(y), normal.log_prob(y).sum(dim=(1, 2)))


def test_grids_walk_from_the_largest_level_to_the_smallest():
    ve = VE(10.0, 0.01, 7)
    torch.testing.assert_close(ve.grid(), sl.noise.geometric_sigmas(10.0, 0.01, 7))
    torch.testing.assert_close(ve.grid(40), sl.noise.geometric_sigmas(10.0, 0.01, 40))
    vp = VP("linear", 1000)
    torch.testing.assert_close(vp.grid(), vp.levels.flip(0))
    assert vp.grid(10)[0].item() == vp.sigma_max and vp.grid(10)[-1].item() == vp.sigma_min
    with pytest.raises(ConfigError, match="cannot exceed"):
        vp.grid(1001)


def test_the_views_of_a_score_are_tweedie_and_its_inverse():
    gm = sl.data.GaussianMixture([[0.0, 1.0]], 0.5)
    y = torch.randn(9, 2, generator=seeded(5), dtype=torch.float64)
    sigma = torch.logspace(-1, 1, 9, dtype=torch.float64)
    score = gm(y, sigma)
    denoised = denoised_from_score(y, score, sigma)
    # E[x | y] for x ~ N(m, s²): m + s²/(s² + σ²)(y − m).
    expected = torch.tensor([0.0, 1.0], dtype=torch.float64) + 0.25 / (0.25 + sigma[:, None] ** 2) * (
        y - torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(denoised, expected)
    torch.testing.assert_close(score_from_denoised(y, denoised, sigma), score)
    torch.testing.assert_close(eps_from_score(score, sigma), (y - denoised) / sigma[:, None])


def test_a_clipped_denoiser_is_the_exact_one_clamped_to_its_box():
    gm = sl.data.GaussianMixture([[0.0, 1.0]], 0.5)
    y = 3 * torch.randn(64, 2, generator=seeded(6), dtype=torch.float64)
    sigma = torch.logspace(-2, 1, 64, dtype=torch.float64)
    clipped = clipped_denoiser(gm, -0.8, 0.8)
    exact = denoised_from_score(y, gm(y, sigma), sigma)
    torch.testing.assert_close(denoised_from_score(y, clipped(y, sigma), sigma), exact.clamp(-0.8, 0.8))
    inside = (exact.abs() < 0.8).all(dim=1)
    assert 0 < inside.sum() < len(y)  # both cases are seen
    torch.testing.assert_close(clipped(y, sigma)[inside], gm(y, sigma)[inside])


def test_the_ve_part_resolves_its_settings_from_the_data():
    data = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    part = PROCESSES["ve"]
    resolved = part.resolve(part.make({"sigma_max": 0.0}), data)
    assert resolved.sigma_max == 5.0 and resolved.n_levels == 20
    six_d = torch.randn(200, 6, generator=seeded(6))
    resolved = part.resolve(part.make({"n_levels": 0, "sigma_min": 0.1}), six_d)
    assert resolved.n_levels == sl.noise.n_levels_from_gamma(resolved.sigma_max, 0.1, 6)
    with pytest.raises(ConfigError, match="sigma_min"):
        part.make({"sigma_max": 0.1, "sigma_min": 0.2})
