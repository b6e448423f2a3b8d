"""EDM's Heun sampler, DPM-Solver++(2M) and the Karras grid, against closed forms.

The order of a solver is measured as the slope of log error against log steps: with the exact
score of a Gaussian the pushforward of the prior is Gaussian and known in closed form, with a
Gaussian mixture the exact flow is solved to 1e-10 by dopri5.
"""

from __future__ import annotations

import math

import pytest
import torch

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.core.noise import karras_sigmas
from scorelab.core.processes import VE, VP
from scorelab.sampling import SAMPLERS, CountingScore, dpm_solver_2m, heun, probability_flow
from scorelab.sampling.solvers import churn_gamma

SIGMA_MAX, SIGMA_MIN = 80.0, 0.002
SOLVERS = {"heun": heun, "dpmpp_2m": dpm_solver_2m}

# A Gaussian on samples of shape [2, 3], each entry its own mean and standard deviation.
MEAN = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]], dtype=torch.float64)
STD = torch.tensor([[0.3, 1.0, 0.5], [2.0, 0.1, 0.8]], dtype=torch.float64)


def gaussian_score(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """∇ log N(y; μ, s² + σ²), the exact score of the Gaussian perturbed by N(0, σ²I)."""
    return (MEAN - y) / (STD**2 + sigma.reshape(-1, 1, 1) ** 2)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def slopes(errors: list[float]) -> list[float]:
    """log2 of the error's fall per doubling of the steps: the order of the method."""
    return [math.log2(a / b) for a, b in zip(errors, errors[1:])]


def test_karras_grid_is_uniform_in_sigma_to_the_one_over_rho():
    sigmas = karras_sigmas(SIGMA_MAX, SIGMA_MIN, 10)
    assert sigmas.dtype == torch.float64 and sigmas[0] == pytest.approx(SIGMA_MAX) and sigmas[-1] == pytest.approx(SIGMA_MIN)
    assert (sigmas.diff() < 0).all()
    steps = (sigmas ** (1 / 7)).diff()
    torch.testing.assert_close(steps, steps[:1].expand(9))
    torch.testing.assert_close(karras_sigmas(3.0, 1.0, 5, rho=1.0), torch.linspace(3.0, 1.0, 5, dtype=torch.float64))
    with pytest.raises(ConfigError):
        karras_sigmas(1.0, 2.0, 5)
    with pytest.raises(ConfigError):
        karras_sigmas(1.0, 0.1, 0)


def _affine_map(solver, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A and b of the solver's map y_T ↦ A·y_T + b (affine for a Gaussian's score), entry by entry."""
    sigmas = karras_sigmas(SIGMA_MAX, SIGMA_MIN, n_steps)
    out = solver(gaussian_score, torch.stack([torch.zeros_like(MEAN), torch.ones_like(MEAN)]), sigmas)
    return out[1] - out[0], out[0]


def _exact_affine_map() -> tuple[torch.Tensor, torch.Tensor]:
    """The exact flow σ_max → σ_min, y ↦ μ + (y − μ)·√((s² + σ_min²)/(s² + σ_max²)), then the last
    step y ↦ D(y, σ_min) = μ + s²/(s² + σ_min²)·(y − μ) that every solver here ends with."""
    variance = STD**2
    slope = torch.sqrt((variance + SIGMA_MIN**2) / (variance + SIGMA_MAX**2)) * variance / (variance + SIGMA_MIN**2)
    return slope, MEAN * (1 - slope)


def _gaussian_w2(mean_a, std_a, mean_b, std_b) -> float:
    """W2 between two Gaussians with diagonal covariances: √(‖μ_a − μ_b‖² + ‖s_a − s_b‖²)."""
    return math.sqrt(((mean_a - mean_b) ** 2).sum() + ((std_a - std_b) ** 2).sum())


@pytest.mark.parametrize("name", SOLVERS)
def test_gaussian_error_falls_at_second_order(name):
    """The pushforward of the prior N(0, σ_max²I) is N(b, (Aσ_max)²): its W2 to the exact flow's
    pushforward falls as K⁻², and at 64 steps the samples are N(μ, s²) up to the prior's mismatch."""
    exact_slope, exact_shift = _exact_affine_map()
    errors = []
    for n_steps in (8, 16, 32, 64):
        slope, shift = _affine_map(SOLVERS[name], n_steps)
        errors.append(_gaussian_w2(shift, slope.abs() * SIGMA_MAX, exact_shift, exact_slope * SIGMA_MAX))
    assert all(1.7 < order < 2.8 for order in slopes(errors)[1:]), (errors, slopes(errors))
    # Against the data itself: the prior N(0, σ_max²) is not p_σmax = N(μ, s² + σ_max²); that costs ~μs/σ_max.
    assert _gaussian_w2(shift, slope.abs() * SIGMA_MAX, MEAN, STD) < 0.05


MIXTURE = sl.data.GaussianMixture([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]], stds=[0.2, 0.3, 0.25], weights=[0.5, 0.3, 0.2])


@pytest.mark.parametrize("name", SOLVERS)
def test_mixture_error_falls_at_second_order(name):
    """Against the exact flow of a Gaussian mixture (dopri5 at 1e-10, then the same last step), per sample:
    an upper bound on the W2 between the two pushforwards."""
    start = torch.randn(256, 2, generator=seeded(0), dtype=torch.float64) * SIGMA_MAX
    exact = probability_flow(MIXTURE, start, torch.tensor([SIGMA_MAX, SIGMA_MIN], dtype=torch.float64),
                             rtol=1e-10, atol=1e-10)
    errors = []
    for n_steps in (16, 32, 64, 128):
        out = SOLVERS[name](MIXTURE, start, karras_sigmas(SIGMA_MAX, SIGMA_MIN, n_steps))
        errors.append((out - exact).pow(2).sum(1).mean().sqrt().item())
    assert all(1.6 < order < 2.8 for order in slopes(errors)), (errors, slopes(errors))
    assert errors[-1] < 2e-3


def _registered(name: str, process, n: int, seed: int, score=None, **settings) -> torch.Tensor:
    part = SAMPLERS[name]
    start = process.prior((n, 2, 3), generator=seeded(seed), dtype=torch.float64)
    return part.sample(score or gaussian_score, process, part.make(settings), start, seeded(seed + 1), None, None)


@pytest.mark.parametrize("process", [VE(80.0, 0.002), VP("linear", 1000)], ids=["ve", "vp"])
@pytest.mark.parametrize("name", SOLVERS)
def test_registered_solvers_sample_the_gaussian_from_either_process(name, process):
    samples = _registered(name, process, 20_000, 3, sample_steps=128)
    # Four standard errors of the mean and of the standard deviation at n = 20 000; the solvers' own
    # error in the standard deviation is 0.15% at 128 steps (2.5% at 32).
    torch.testing.assert_close(samples.mean(0), MEAN, atol=4 * STD.max().item() / 20_000**0.5, rtol=0)
    torch.testing.assert_close(samples.std(0), STD, atol=0, rtol=4 / (2 * 20_000) ** 0.5)


@pytest.mark.slow
def test_churn_samples_the_gaussian_and_follows_its_generator():
    process = VE(80.0, 0.002)
    samples = _registered("stochastic_heun", process, 20_000, 5, sample_steps=128)
    torch.testing.assert_close(samples.mean(0), MEAN, atol=4 * STD.max().item() / 20_000**0.5, rtol=0)
    torch.testing.assert_close(samples.std(0), STD, atol=0, rtol=4 / (2 * 20_000) ** 0.5)
    again = _registered("stochastic_heun", process, 20_000, 5, sample_steps=128)
    assert torch.equal(samples, again)
    deterministic = _registered("heun", process, 20_000, 5, sample_steps=128)
    assert not torch.allclose(samples, deterministic)


def test_churn_gamma_is_algorithm_2():
    assert churn_gamma(1.0, 10, 0.0, 0.0, math.inf) == 0.0
    assert churn_gamma(1.0, 10, 2.0, 0.0, math.inf) == pytest.approx(0.2)
    assert churn_gamma(1.0, 10, 40.0, 0.0, math.inf) == pytest.approx(math.sqrt(2) - 1)
    assert churn_gamma(1.0, 10, 2.0, 0.0, 0.5) == 0.0 and churn_gamma(1.0, 10, 2.0, 2.0, 5.0) == 0.0


def test_evaluations_and_callbacks():
    sigmas = karras_sigmas(SIGMA_MAX, SIGMA_MIN, 5)
    start = torch.zeros(4, 2, 3, dtype=torch.float64)
    for solver, evaluations in ((heun, 2 * 5 - 1), (dpm_solver_2m, 5)):
        counted, seen = CountingScore(gaussian_score), []
        out = solver(counted, start, sigmas, callback=seen.append)
        assert counted.count == evaluations and [info.step for info in seen] == list(range(5))
        assert seen[0].sigma == pytest.approx(SIGMA_MAX) and seen[-1].sigma == pytest.approx(SIGMA_MIN)
        assert torch.equal(seen[-1].x, out) and out.shape == start.shape


class DenoiserOnly:
    """A model with a denoiser view and a score that must not be called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, y, sigma, cond=None):
        raise AssertionError("the solvers call the denoiser view")

    def denoise(self, y, sigma, cond=None):
        self.calls += 1
        return y + sigma.reshape(-1, 1, 1) ** 2 * gaussian_score(y, sigma)


@pytest.mark.parametrize("name", SOLVERS)
def test_solvers_call_a_models_denoiser_view(name):
    model = DenoiserOnly()
    start = torch.randn(8, 2, 3, generator=seeded(7), dtype=torch.float64) * SIGMA_MAX
    sigmas = karras_sigmas(SIGMA_MAX, SIGMA_MIN, 6)
    torch.testing.assert_close(SOLVERS[name](model, start, sigmas), SOLVERS[name](gaussian_score, start, sigmas))
    assert model.calls > 0
