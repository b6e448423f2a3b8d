"""EnergyScore: s(x) = −∇ₓE(x), trainable by score matching, with −E a log-density up to a constant."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.metrics import fisher_divergence
from scorelab.models import EnergyScore
from scorelab.objectives import exact_score_matching, sliced_score_matching

MEAN = torch.tensor([0.5, -1.0])
CHOLESKY = torch.tensor([[1.0, 0.0], [0.6, 0.5]])
COV = CHOLESKY @ CHOLESKY.T
PRECISION = torch.linalg.inv(COV)
GAUSSIAN = torch.distributions.MultivariateNormal(MEAN, COV)


class QuadraticEnergy(nn.Module):
    """E(x) = ½(x − μ)ᵀP(x − μ), the energy of N(μ, P⁻¹) up to a constant."""

    def forward(self, x: Tensor) -> Tensor:
        centred = x - MEAN.to(x)
        return 0.5 * ((centred @ PRECISION.to(x)) * centred).sum(dim=1)


def true_score(x: Tensor) -> Tensor:
    return -(x - MEAN) @ PRECISION


def test_score_is_minus_energy_gradient_and_works_under_no_grad():
    model = EnergyScore(QuadraticEnergy())
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    with torch.no_grad():
        score = model(x)
    torch.testing.assert_close(score, true_score(x))
    assert not score.requires_grad  # no graph kept for samplers
    assert torch.equal(x, before) and not x.requires_grad
    torch.testing.assert_close(model.log_density(x), -QuadraticEnergy()(x))


def test_langevin_samples_an_energy_score():
    model = EnergyScore(QuadraticEnergy())
    generator = torch.Generator().manual_seed(1)
    samples = sl.sampling.langevin(model, torch.zeros(4000, 2), n_steps=300, step_size=0.05, generator=generator)
    torch.testing.assert_close(samples.mean(0), MEAN, atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), COV, atol=0.15, rtol=0)


def test_exact_objective_differentiates_through_the_energy_gradient():
    # ∇ₓs = −P, so the objective is −tr P + ½‖P(x − μ)‖² for every sample.
    model = EnergyScore(QuadraticEnergy()).double()
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = -PRECISION.double().trace() + 0.5 * true_score(x.float()).double().pow(2).sum(dim=1).mean()
    assert exact_score_matching(model, x).item() == pytest.approx(expected.item(), rel=1e-5)


def test_energy_network_must_return_one_number_per_row():
    with pytest.raises(ConfigError, match=r"\[B\] or \[B, 1\]"):
        EnergyScore(nn.Linear(2, 2))(torch.randn(3, 2))


OBJECTIVES = {
    "exact": lambda model, x, generator: exact_score_matching(model, x),
    "sliced": lambda model, x, generator: sliced_score_matching(model, x, generator=generator),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", OBJECTIVES)
def test_energy_trains_to_minus_log_density_up_to_a_constant(name):
    """On N(μ, Σ), a trained E must differ from −log p by a constant.

    Tolerances: log p varies with std 1 over the data (D/2 = 1 is its variance),
    and 300 steps leave E + log p with std ≈ 0.05; we allow 0.1, a tenth of
    log p's own spread. The Fisher divergence reaches ≈ 0.01 against ½ tr Σ⁻¹ ≈ 3.5
    for the zero score; we allow 0.05.
    """
    torch.manual_seed(0)
    model = EnergyScore(nn.Sequential(nn.Linear(2, 64), nn.Softplus(), nn.Linear(64, 64), nn.Softplus(),
                                      nn.Linear(64, 1)))
    steps = 300
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = MEAN + torch.randn(256, 2, generator=generator) @ CHOLESKY.T
        loss = OBJECTIVES[name](model, x, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    test_points = MEAN + torch.randn(20_000, 2, generator=torch.Generator().manual_seed(5)) @ CHOLESKY.T
    with torch.no_grad():
        offset = model.energy(test_points) + GAUSSIAN.log_prob(test_points)
    assert offset.std() < 0.1
    assert fisher_divergence(model, true_score, test_points) < 0.05 < fisher_divergence(torch.zeros_like, true_score,
                                                                                       test_points)
