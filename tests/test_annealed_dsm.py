"""The NCSN loss against its closed form on Gaussian data."""

import pytest
import torch

import scorelab as sl


def gaussian_perturbed_score(mean: torch.Tensor, std: float):
    """Exact score of N(mean, std²I) convolved with N(0, σ²I)."""
    return lambda x, sigma: -(x - mean) / (std**2 + sigma[:, None] ** 2)


@pytest.mark.parametrize("dim", [1, 3])
def test_loss_at_exact_score_matches_closed_form(dim):
    # With x ~ N(μ, s²I) and the exact perturbed score, σ s(x̃, σ) + z = (s² z − σ e)/(s² + σ²),
    # e = x − μ, so E ½‖σ s + z‖² = ½ D s²/(s² + σ²); λ(σ) = σ² averages that over the levels.
    generator = torch.Generator().manual_seed(0)
    mean, std = torch.linspace(-1, 1, dim, dtype=torch.float64), 0.7
    x = mean + std * torch.randn(400_000, dim, generator=generator, dtype=torch.float64)
    sigmas = torch.tensor([2.0, 0.5, 0.1], dtype=torch.float64)
    loss = sl.objectives.annealed_denoising_score_matching(
        gaussian_perturbed_score(mean, std), x, sigmas, generator=generator)
    expected = (0.5 * dim * std**2 / (std**2 + sigmas**2)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=0.01)


def test_exact_score_is_the_minimiser():
    generator = torch.Generator().manual_seed(1)
    mean, std = torch.zeros(2, dtype=torch.float64), 0.5
    x = std * torch.randn(200_000, 2, generator=generator, dtype=torch.float64)
    sigmas = torch.tensor([1.0, 0.1], dtype=torch.float64)
    exact = gaussian_perturbed_score(mean, std)

    def loss(score):
        return sl.objectives.annealed_denoising_score_matching(
            score, x, sigmas, generator=torch.Generator().manual_seed(2)).item()

    best = loss(exact)
    for scale in (0.8, 1.2):
        assert loss(lambda y, s, k=scale: k * exact(y, s)) > best + 1e-3
    assert loss(lambda y, s: exact(y, s) + 0.3) > best + 1e-3


def test_weight_power_changes_the_weighting():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100_000, 2, generator=generator, dtype=torch.float64)
    zero = lambda y, s: torch.zeros_like(y)  # noqa: E731
    sigmas = torch.tensor([0.5], dtype=torch.float64)
    # For s = 0 the residual is ‖z/σ‖², so λ = σ^p gives ½ D σ^(p−2).
    for power in (0.0, 2.0):
        loss = sl.objectives.annealed_denoising_score_matching(zero, x, sigmas, weight_power=power,
                                                                generator=generator)
        assert loss.item() == pytest.approx(0.5 * 2 * 0.5 ** (power - 2), rel=0.02)


def test_rejects_bad_sigmas():
    with pytest.raises(sl.errors.ConfigError):
        sl.objectives.annealed_denoising_score_matching(lambda y, s: y, torch.zeros(4, 2), torch.tensor([1.0, -0.1]))


def test_fourier_features_travel_with_the_weights_and_can_be_turned_off():
    torch.manual_seed(0)
    x, sigma = torch.randn(7, 3), torch.full((7,), 0.3)
    model = sl.models.NoiseConditionalMLP(3, hidden=16, depth=2, fourier_features=5)
    assert model(x, sigma).shape == (7, 3) and model.state_dict()["frequencies"].shape == (3, 5)
    copy = sl.models.NoiseConditionalMLP(3, hidden=16, depth=2, fourier_features=5)
    assert not torch.equal(copy(x, sigma), model(x, sigma))
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy(x, sigma), model(x, sigma))
    plain = sl.models.NoiseConditionalMLP(3, hidden=16, depth=2, fourier_features=0)
    assert plain.net[0].in_features == 4 and plain(x, sigma).shape == (7, 3)
