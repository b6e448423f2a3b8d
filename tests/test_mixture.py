"""GaussianMixture: exact sample, log_prob and score at every noise level."""

from __future__ import annotations

import math

import pytest
import torch

from scorelab.core.errors import DataError
from scorelab.data import GaussianMixture

torch.set_default_dtype(torch.float32)

MIXTURES = {
    "isotropic": GaussianMixture([[-1.0, 0.0], [1.5, 1.0]], stds=[0.4, 0.7], weights=[0.3, 0.7]),
    "diagonal": GaussianMixture([[0.0, 0.0], [2.0, -1.0], [-2.0, 1.0]], stds=[[0.3, 1.0], [0.5, 0.2], [1.0, 1.0]],
                                weights=[1.0, 2.0, 3.0]),
    "3d_shared": GaussianMixture([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], stds=0.5),
}


def points(dim: int, n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


@pytest.mark.parametrize("name", MIXTURES)
@pytest.mark.parametrize("sigma", [0.0, 0.1, 1.5])
def test_score_is_the_gradient_of_log_prob(name, sigma):
    mixture = MIXTURES[name]
    x = points(mixture.dim).requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture.log_prob(x, sigma).sum(), x)
    assert torch.allclose(mixture.score(x.detach(), sigma), grad, atol=1e-10)


@pytest.mark.parametrize("stds", [0.7, [[0.3, 1.2]]])
@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_one_component_log_prob_matches_torch_distributions(stds, sigma):
    mean = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    mixture = GaussianMixture(mean, stds=stds)
    scale = (mixture.stds[0] ** 2 + sigma**2).sqrt()
    reference = torch.distributions.Independent(torch.distributions.Normal(mean[0], scale), 1)
    x = points(2)
    assert torch.allclose(mixture.log_prob(x, sigma), reference.log_prob(x), atol=1e-10)


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_density_integrates_to_one(sigma):
    mixture = MIXTURES["diagonal"]
    axis = torch.linspace(-8, 8, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    cell = (axis[1] - axis[0]) ** 2
    assert abs(float(mixture.log_prob(grid, sigma).exp().sum() * cell) - 1.0) < 1e-3


def test_sigma_per_row_equals_one_row_at_a_time():
    mixture = MIXTURES["diagonal"]
    x = points(2, n=5)
    sigma = torch.tensor([0.0, 0.1, 0.5, 1.0, 3.0])
    batched = mixture.score(x, sigma)
    single = torch.cat([mixture.score(x[i : i + 1], float(sigma[i])) for i in range(5)])
    assert torch.allclose(batched, single, atol=1e-12)
    assert torch.allclose(mixture(x, sigma), batched)
    assert torch.allclose(mixture.log_prob(x, sigma),
                          torch.cat([mixture.log_prob(x[i : i + 1], float(sigma[i])) for i in range(5)]))


def test_large_sigma_score_tends_to_that_of_a_wide_gaussian():
    mixture, sigma = MIXTURES["isotropic"], 100.0
    x = points(2)
    mean = (mixture.weights[:, None] * mixture.means).sum(0)
    assert torch.allclose(mixture.score(x, sigma), -(x - mean) / sigma**2, rtol=1e-3, atol=1e-6)


def test_samples_have_the_mixture_moments():
    mixture = MIXTURES["diagonal"]
    x = mixture.sample(40_000, torch.Generator().manual_seed(0)).double()
    mean = (mixture.weights[:, None] * mixture.means).sum(0)
    second = (mixture.weights[:, None] * (mixture.stds**2 + mixture.means**2)).sum(0)
    assert torch.allclose(x.mean(0), mean, atol=0.03)
    assert torch.allclose(x.var(0), second - mean**2, rtol=0.03)


def test_sampling_is_seeded():
    mixture = MIXTURES["3d_shared"]
    assert torch.equal(mixture.sample(10, torch.Generator().manual_seed(1)),
                       mixture.sample(10, torch.Generator().manual_seed(1)))


def test_follows_the_input_dtype():
    mixture = MIXTURES["isotropic"]
    assert mixture.score(torch.zeros(3, 2), 0.1).dtype == torch.float32
    assert mixture.log_prob(torch.zeros(3, 2, dtype=torch.float64)).dtype == torch.float64
    assert math.isfinite(float(mixture.log_prob(torch.full((1, 2), 50.0)).item()))


@pytest.mark.parametrize(
    ("kwargs", "call"),
    [
        ({"means": [0.0, 1.0]}, None),
        ({"means": [[0.0], [1.0]], "stds": [1.0, 1.0, 1.0]}, None),
        ({"means": [[0.0], [1.0]], "stds": -1.0}, None),
        ({"means": [[0.0], [1.0]], "weights": [1.0, 0.0]}, None),
        ({"means": [[0.0], [1.0]]}, lambda m: m.score(torch.zeros(4, 2))),
        ({"means": [[0.0], [1.0]]}, lambda m: m.score(torch.zeros(4, 1), torch.ones(3))),
        ({"means": [[0.0], [1.0]]}, lambda m: m.log_prob(torch.zeros(4, 1), -0.1)),
    ],
)
def test_bad_arguments_are_data_errors(kwargs, call):
    with pytest.raises(DataError):
        mixture = GaussianMixture(**kwargs)
        call(mixture)
