"""A condition passes through every objective and sampler untouched.

The conditional model is exact: a two-component mixture whose condition c picks a component,
so p(x | c) = N(μ_c, diag s_c²) and its perturbed score is known at every σ. One batch holds
both conditions, and each half must come out with its own mean and covariance.
"""

from __future__ import annotations

import math

import pytest
import torch

import scorelab as sl
from scorelab.core.processes import VE, VP
from scorelab.objectives import (
    annealed_denoising_score_matching,
    denoising_score_matching,
    eps_loss,
    exact_score_matching,
    sliced_score_matching,
)
from scorelab.sampling import (
    CountingScore,
    annealed_langevin,
    ddim,
    ddpm,
    gradient_ascent,
    langevin,
    predictor_corrector,
    probability_flow,
)

SHAPES = {"points": (2,), "waveform": (1, 4)}
N = 8000  # samples per condition


def conditional_gaussian(shape: tuple[int, ...]) -> sl.data.GaussianMixture:
    dim = math.prod(shape)
    means = torch.stack([torch.linspace(1.0, 2.0, dim), torch.linspace(-1.5, 0.5, dim)]).double()
    stds = torch.stack([torch.linspace(0.4, 0.8, dim), torch.linspace(1.1, 0.6, dim)]).double()
    return sl.data.GaussianMixture(means.reshape(2, *shape), stds.reshape(2, *shape))


def both_conditions() -> torch.Tensor:
    """0, 1, 0, 1, …: the two conditions interleaved in one batch."""
    return torch.arange(2 * N) % 2


VE_PROCESS, VP_PROCESS = VE(15.0, 0.01, 20), VP("linear", 1000)

SAMPLERS = {
    "annealed_langevin": lambda score, shape, g, c: annealed_langevin(
        score, VE_PROCESS.prior((2 * N, *shape), generator=g, dtype=torch.float64), VE_PROCESS.grid(),
        n_steps_each=50, step_size=2e-4, generator=g, cond=c),
    "predictor_corrector": lambda score, shape, g, c: predictor_corrector(
        score, VE_PROCESS.prior((2 * N, *shape), generator=g, dtype=torch.float64), VE_PROCESS.grid(300),
        generator=g, cond=c),
    "langevin": lambda score, shape, g, c: langevin(
        score, torch.zeros(2 * N, *shape, dtype=torch.float64), n_steps=2000, step_size=0.01, generator=g, cond=c),
    "ddpm": lambda score, shape, g, c: ddpm(
        score, VP_PROCESS.prior((2 * N, *shape), generator=g, dtype=torch.float64), VP_PROCESS.grid(), generator=g,
        cond=c),
    "ddim": lambda score, shape, g, c: ddim(
        score, VP_PROCESS.prior((2 * N, *shape), generator=g, dtype=torch.float64), VP_PROCESS.grid(200), cond=c),
    "ode": lambda score, shape, g, c: probability_flow(
        score, VP_PROCESS.prior((2 * N, *shape), generator=g, dtype=torch.float64), VP_PROCESS.grid()[[0, -1]],
        rtol=1e-4, atol=1e-4, cond=c),
}


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.slow
def test_each_sampler_recovers_both_conditional_gaussians_from_one_batch(shape_name, sampler):
    shape = SHAPES[shape_name]
    model = conditional_gaussian(shape)
    cond = both_conditions()
    samples = SAMPLERS[sampler](model, shape, torch.Generator().manual_seed(0), cond).flatten(1)
    for c in (0, 1):
        half = samples[cond == c]
        mean, stds = model.means[c], model.stds[c]
        assert ((half.mean(0) - mean).abs() < 5 * stds / math.sqrt(N)).all(), (sampler, c)
        cov = torch.cov(half.T)
        expected = torch.diag(stds**2)
        spread = (stds[:, None] ** 2 * stds[None] ** 2 + expected**2).sqrt() / math.sqrt(N)
        assert ((cov - expected).abs() <= 5 * spread + 0.02 * expected).all(), (sampler, c)


def test_gradient_ascent_climbs_to_each_conditions_mode():
    model = conditional_gaussian((1, 4))
    cond = both_conditions()[:64]
    end = gradient_ascent(model, torch.zeros(64, 1, 4, dtype=torch.float64), n_steps=400, step_size=0.1, cond=cond)
    torch.testing.assert_close(end.flatten(1), model.means[cond], atol=1e-6, rtol=0)


def test_the_condition_reaches_the_score_at_every_evaluation():
    model = conditional_gaussian((2,))
    cond = both_conditions()[:10]
    seen = []

    def spy(x, sigma=None, cond=None):
        seen.append(cond)
        return model(x, sigma, cond=cond)

    x = torch.zeros(10, 2, dtype=torch.float64)
    gradient_ascent(spy, x, n_steps=3, step_size=0.1, cond=cond)
    ddim(spy, x + 5.0, VP_PROCESS.grid(4), cond=cond)
    assert len(seen) == 7 and all(c is cond for c in seen)
    counted = CountingScore(spy)
    probability_flow(counted, x + 5.0, VP_PROCESS.grid(3), method="euler", cond=cond)
    assert counted.count == 3 and all(c is cond for c in seen)


def test_objectives_pass_the_condition_and_reach_each_conditional_closed_form():
    # Exact SM at the exact score of N(μ_c, diag s_c²) is −½ Σ 1/s_c² per sample (E[tr ∇s] + ½E‖s‖²).
    model = conditional_gaussian((2,))
    cond = both_conditions()
    x = model.sample(2 * N, torch.Generator().manual_seed(1), cond=cond).double()
    precision = (1 / model.stds**2).sum(1)  # Σ_d 1/s_d² of each component
    expected = -0.5 * precision.mean().item()
    generator = torch.Generator().manual_seed(2)
    assert exact_score_matching(model, x, cond=cond).item() == pytest.approx(expected, rel=0.02)
    assert sliced_score_matching(model, x, cond=cond, generator=generator).item() == pytest.approx(expected, rel=0.05)
    # Annealed DSM at the exact conditional score: ½ Σ_d s_d²/(s_d² + σ²), averaged over levels and conditions.
    sigmas = torch.tensor([1.0, 0.3], dtype=torch.float64)
    ratio = model.stds[None] ** 2 / (model.stds[None] ** 2 + sigmas[:, None, None] ** 2)
    annealed = 0.5 * ratio.sum(2).mean()
    assert annealed_denoising_score_matching(model, x, sigmas, generator=generator, cond=cond).item() == \
        pytest.approx(annealed.item(), rel=0.02)
    assert eps_loss(model, x, sigmas, generator=generator, cond=cond).item() == pytest.approx(2 * annealed.item(),
                                                                                              rel=0.02)
    # DSM at one level σ with the unconditional call score(x̃, cond=c): the score of N(μ_c, s_c² + σ²).
    sigma = 0.3
    perturbed = lambda y, cond=None: model(y, torch.full((len(y),), sigma, dtype=y.dtype), cond=cond)  # noqa: E731
    single = 0.5 * (model.stds**2 / (model.stds**2 + sigma**2)).sum(1).mean()
    assert denoising_score_matching(perturbed, x, sigma, generator=generator, cond=cond).item() == \
        pytest.approx(single.item(), rel=0.02)
