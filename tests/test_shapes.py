"""Every objective, sampler, likelihood and model on points [B, D], images [B, C, H, W] and waveforms [B, C, L].

The closed forms are those of Gaussian data in D = 16 coordinates, laid out in each shape:
a linear score's objectives, the DSM optimum, and the mean and covariance the samplers must reach.
"""

from __future__ import annotations

import math

import pytest
import torch

import scorelab as sl
from scorelab.core import divergence
from scorelab.core.processes import VE, VP
from scorelab.models import MLP, ConditionalMLP, EnergyScore, Preconditioned, mlp_stack
from scorelab.objectives import (
    annealed_denoising_score_matching,
    denoising_score_matching,
    eps_loss,
    exact_score_matching,
    sliced_score_matching,
    stable_target,
)
from scorelab.sampling import (
    annealed_langevin,
    ddim,
    ddpm,
    gradient_ascent,
    langevin,
    predictor_corrector,
    probability_flow,
)
from scorelab.sampling.likelihood import log_prob, variational_bound

SHAPES = {"points": (16,), "image": (1, 4, 4), "waveform": (1, 16)}
DIM = 16
STDS = torch.linspace(0.5, 1.5, DIM, dtype=torch.float64)
MEANS = torch.linspace(-1.0, 1.0, DIM, dtype=torch.float64)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian(shape: tuple[int, ...]) -> sl.data.GaussianMixture:
    """N(μ, diag s²) in the layout ``shape``: a one-component mixture, with its exact score at every σ."""
    return sl.data.GaussianMixture(MEANS.reshape(1, *shape), STDS.reshape(1, *shape))


def shaped_linear_score(shape: tuple[int, ...], A: torch.Tensor, b: torch.Tensor):
    """s(x) = −A(x − b) on the flattened coordinates, returned in the shape of x."""
    return lambda x: (-(x.flatten(1) - b) @ A.T).reshape(x.shape)


def linear_problem(seed: int = 0):
    """A linear score s(x) = −A(x − b) on N(μ, Σ) data and its exact objective (see test_objectives)."""
    generator = seeded(seed)
    rotation, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=generator, dtype=torch.float64))
    cov = rotation @ torch.diag(torch.linspace(0.5, 2.0, DIM, dtype=torch.float64)) @ rotation.T
    x = MEANS + torch.randn(40_000, DIM, generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    A = torch.linalg.inv(cov) + 0.1 * torch.randn(DIM, DIM, generator=generator, dtype=torch.float64)
    b = MEANS + 0.5 * torch.randn(DIM, generator=generator, dtype=torch.float64)
    shift = A @ (MEANS - b)
    closed_form = float(-A.trace() + 0.5 * (A @ cov @ A.T).trace() + 0.5 * shift @ shift)
    return x, A, b, cov, closed_form


def chunked(loss, x: torch.Tensor, chunks: int = 20) -> tuple[float, float]:
    values = torch.tensor([loss(chunk).item() for chunk in x.chunk(chunks)], dtype=torch.float64)
    return values.mean().item(), values.std().item() / math.sqrt(chunks)


# --- objectives ------------------------------------------------------------------------------

OBJECTIVES = {
    "exact": lambda score, x, g: exact_score_matching(score, x),
    "hutchinson": lambda score, x, g: exact_score_matching(score, x, trace="hutchinson", n_projections=2, generator=g),
    "sliced-rademacher": lambda score, x, g: sliced_score_matching(score, x, n_projections=2, generator=g),
    "sliced-sphere": lambda score, x, g: sliced_score_matching(score, x, n_projections=2, projection="sphere",
                                                               generator=g),
    "sliced_vr-gaussian": lambda score, x, g: sliced_score_matching(score, x, projection="gaussian",
                                                                    variance_reduction=True, generator=g),
}


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_score_matching_objectives_match_their_closed_form_in_every_shape(shape_name, objective):
    x, A, b, _, closed_form = linear_problem()
    shape = SHAPES[shape_name]
    generator = seeded(1)
    estimate, standard_error = chunked(
        lambda chunk: OBJECTIVES[objective](shaped_linear_score(shape, A, b), chunk.reshape(-1, *shape), generator),
        x)
    assert abs(estimate - closed_form) < 4 * standard_error + 1e-9


@pytest.mark.parametrize("shape_name", SHAPES)
def test_dsm_optimum_is_the_score_of_the_data_plus_noise_in_every_shape(shape_name):
    # For x ~ N(μ, Σ) the DSM minimiser is −(Σ + σ²I)⁻¹(x̃ − μ); fixed noise makes the loss a quadratic.
    x, _, _, cov, _ = linear_problem(2)
    x = x[:20_000].reshape(-1, *SHAPES[shape_name])
    sigma = 0.5
    A = torch.eye(DIM, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(DIM, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([A, c], max_iter=300, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        score = lambda y: (-y.flatten(1) @ A.T + c).reshape(y.shape)  # noqa: E731
        loss = denoising_score_matching(score, x, sigma, generator=seeded(3))
        loss.backward()
        return loss

    optimizer.step(closure)
    expected = torch.linalg.inv(cov + sigma**2 * torch.eye(DIM, dtype=torch.float64))
    torch.testing.assert_close(A.detach(), expected, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.linalg.solve(A.detach(), c.detach()), MEANS, atol=0.05, rtol=0)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_annealed_and_eps_losses_at_the_exact_score_are_their_closed_forms(shape_name):
    # At the exact score, σ s(x̃) + z = (s² z − σ e)/(s² + σ²) per coordinate, so ½E‖σ s + z‖² = ½ Σ_d s_d²/(s_d² + σ²).
    shape = SHAPES[shape_name]
    truth = gaussian(shape)
    x = truth.sample(200_000, seeded(4)).double()
    sigmas = torch.tensor([2.0, 0.5, 0.1], dtype=torch.float64)
    expected = (0.5 * (STDS**2 / (STDS**2 + sigmas[:, None] ** 2)).sum(1)).mean()
    loss = annealed_denoising_score_matching(truth, x, sigmas, generator=seeded(5))
    assert loss.item() == pytest.approx(expected.item(), rel=0.01)
    assert eps_loss(truth, x, sigmas, generator=seeded(5)).item() == pytest.approx(2 * loss.item(), rel=1e-12)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_stable_target_is_the_same_whatever_the_layout(shape_name):
    generator = seeded(6)
    x, reference = torch.randn(5, DIM, generator=generator), torch.randn(7, DIM, generator=generator)
    sigma = torch.tensor([0.05, 0.3, 1.0, 3.0, 10.0])
    x_noisy = x + sigma[:, None] * torch.randn(5, DIM, generator=generator)
    flat = stable_target(x_noisy, x, sigma, reference)
    shape = SHAPES[shape_name]
    laid_out = stable_target(x_noisy.reshape(5, *shape), x.reshape(5, *shape), sigma, reference.reshape(7, *shape))
    assert laid_out.shape == (5, *shape)
    torch.testing.assert_close(laid_out.reshape(5, DIM), flat)


# --- samplers ---------------------------------------------------------------------------------

N = 8000
VE_PROCESS = VE(20.0, 0.01, 20)
VP_PROCESS = VP("linear", 1000)

SAMPLERS = {
    "annealed_langevin": lambda score, shape, g: annealed_langevin(
        score, VE_PROCESS.prior((N, *shape), generator=g, dtype=torch.float64), VE_PROCESS.grid(), n_steps_each=25,
        step_size=4e-4, generator=g),
    "predictor_corrector": lambda score, shape, g: predictor_corrector(
        score, VE_PROCESS.prior((N, *shape), generator=g, dtype=torch.float64), VE_PROCESS.grid(300), generator=g),
    "langevin": lambda score, shape, g: langevin(  # from exact samples: it must keep them where they are
        score, gaussian(shape).sample(N, g).double(), n_steps=750, step_size=0.01, generator=g),
    "ddpm": lambda score, shape, g: ddpm(
        score, VP_PROCESS.prior((N, *shape), generator=g, dtype=torch.float64), VP_PROCESS.grid(250), generator=g),
    "ddim": lambda score, shape, g: ddim(
        score, VP_PROCESS.prior((N, *shape), generator=g, dtype=torch.float64), VP_PROCESS.grid(200)),
    "ode": lambda score, shape, g: probability_flow(
        score, VP_PROCESS.prior((N, *shape), generator=g, dtype=torch.float64), VP_PROCESS.grid()[[0, -1]],
        rtol=1e-4, atol=1e-4),
}


def assert_gaussian_moments(samples: torch.Tensor, mean: torch.Tensor, stds: torch.Tensor) -> None:
    """Every mean and covariance entry within 5 standard errors (plus 2% of the variance for a sampler's
    discretisation bias), and the variances on average within 5 standard errors plus 1.5%."""
    flat = samples.flatten(1)
    n, dim = flat.shape
    assert ((flat.mean(0) - mean).abs() < 5 * stds / math.sqrt(n)).all()
    cov = torch.cov(flat.T)
    expected = torch.diag(stds**2)
    spread = (stds[:, None] ** 2 * stds[None] ** 2 + expected**2).sqrt() / math.sqrt(n)  # the SE of each entry
    assert ((cov - expected).abs() <= 5 * spread + 0.02 * expected).all(), (cov - expected).abs().max()
    relative = cov.diag() / stds**2
    assert abs(relative.mean().item() - 1) < 5 * math.sqrt(2 / n / dim) + 0.015, relative.mean()


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.slow
def test_samplers_reach_the_gaussians_mean_and_covariance_in_every_shape(shape_name, sampler):
    shape = SHAPES[shape_name]
    samples = SAMPLERS[sampler](gaussian(shape), shape, seeded(7))
    assert samples.shape == (N, *shape)
    assert_gaussian_moments(samples, MEANS, STDS)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_gradient_ascent_climbs_to_the_gaussians_mode_in_every_shape(shape_name):
    shape = SHAPES[shape_name]
    start = torch.randn(64, *shape, generator=seeded(10), dtype=torch.float64) * 3
    end = gradient_ascent(gaussian(shape), start, n_steps=400, step_size=0.1)
    torch.testing.assert_close(end.flatten(1), MEANS.expand(64, DIM), atol=1e-6, rtol=0)


# --- likelihood -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.slow
def test_log_likelihood_and_bound_of_a_gaussian_in_every_shape(shape_name):
    shape = SHAPES[shape_name]
    truth = gaussian(shape)
    x = truth.sample(100, seeded(8)).double()
    exact = truth.log_prob(x)
    # The cosine schedule's σ_max ≈ 2·10⁴ makes its prior exact to ~10⁻⁴ nats per dimension.
    estimate = log_prob(truth, x, VP("cosine", 1000), divergence="exact")
    assert (estimate - exact).abs().max() < 0.01
    bound = variational_bound(truth, x, VP("linear", 1000), n_steps=200, generator=seeded(9)).total
    gap = bound - (-exact)
    assert -3 * gap.std() / math.sqrt(len(gap)) < gap.mean() < 0.2


# --- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape_name", SHAPES)
def test_models_keep_the_shape_and_the_mlp_keeps_its_closed_form_trace(shape_name):
    shape = SHAPES[shape_name]
    torch.manual_seed(0)
    x = torch.randn(6, *shape, dtype=torch.float64)
    sigma = torch.logspace(-1, 1, 6, dtype=torch.float64)
    for parameterisation in sl.models.PARAMETERISATIONS:
        model = Preconditioned(ConditionalMLP(DIM, 16, 2, fourier_features=3), parameterisation).double()
        assert model(x, sigma).shape == x.shape and model.denoise(x, sigma).shape == x.shape
    energy = EnergyScore(mlp_stack(DIM, 16, 2, 1, torch.nn.Softplus), flatten_input=True).double()
    assert energy(x).shape == x.shape and energy.energy(x).shape == (6,)
    mlp = MLP(DIM, 16, 2).double()
    assert divergence.computes_trace(mlp)
    fast = exact_score_matching(mlp, x)
    slow = exact_score_matching(lambda y: mlp(y), x)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
