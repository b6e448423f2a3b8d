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
    assert model(x, sigma).shape == (7, 3) and model.state_dict()["backbone.frequencies"].shape == (3, 5)
    copy = sl.models.NoiseConditionalMLP(3, hidden=16, depth=2, fourier_features=5)
    assert not torch.equal(copy(x, sigma), model(x, sigma))
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy(x, sigma), model(x, sigma))
    plain = sl.models.NoiseConditionalMLP(3, hidden=16, depth=2, fourier_features=0)
    assert plain.backbone.net[0].in_features == 4 and plain(x, sigma).shape == (7, 3)


# --- The stable target field (Xu et al. 2023) ------------------------------------------------


def test_stable_target_is_the_scaled_score_of_the_sample_and_reference_mixture():
    generator = torch.Generator().manual_seed(4)
    x, reference = torch.randn(5, 2, generator=generator), torch.randn(7, 2, generator=generator)
    sigma = torch.tensor([0.05, 0.3, 1.0, 3.0, 10.0])
    x_noisy = x + sigma[:, None] * torch.randn(5, 2, generator=generator)
    target = sl.objectives.stable_target(x_noisy, x, sigma, reference)
    for i in range(5):
        # Point masses at x_i and every r_j, equally weighted, convolved with N(0, σ_i²I).
        mixture = sl.data.GaussianMixture(torch.cat([x[i : i + 1], reference]), stds=sigma[i].item())
        expected = sigma[i] * mixture.score(x_noisy[i : i + 1].double())
        torch.testing.assert_close(target[i : i + 1].double(), expected, rtol=1e-4, atol=1e-5)


def test_stable_target_is_vincents_at_small_sigma_and_the_exact_score_with_many_references():
    generator = torch.Generator().manual_seed(5)
    mixture = sl.data.GaussianMixture([[2.0, 0.0], [-2.0, 0.0]], stds=0.3)
    x = mixture.sample(2000, generator=generator)
    z = torch.randn(2000, 2, generator=generator)
    # Rows with a reference within a few σ of x̃ share the weight, as they should (under 1% of
    # rows here). Float32 rounding of x̃ − x, divided by σ, leaves errors of about 1e-3.
    small, reference = torch.full((2000,), 1e-4), mixture.sample(500, generator=generator)
    x_noisy = x + small[:, None] * z
    alone = torch.cdist(x_noisy, reference).min(dim=1).values > 20 * small  # weight below e^-200
    assert alone.float().mean() > 0.98
    torch.testing.assert_close(sl.objectives.stable_target(x_noisy, x, small, reference)[alone], -z[alone],
                               atol=1e-2, rtol=0)
    # At σ = 2 Vincent's target −z is mostly noise around σ∇log p_σ; 4000 references all but remove it.
    sigma = torch.full((2000,), 2.0)
    x_noisy = x + sigma[:, None] * z
    exact = sigma[:, None] * mixture.score(x_noisy, 2.0)
    stable = sl.objectives.stable_target(x_noisy, x, sigma, mixture.sample(4000, generator=generator))
    vincent_error = (-z - exact).pow(2).sum(1).mean()
    assert (stable - exact).pow(2).sum(1).mean() < 0.01 * vincent_error


def test_reference_points_change_only_the_target():
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(300, 2, generator=generator)
    sigmas = torch.tensor([1.0, 0.1])
    exact = gaussian_perturbed_score(torch.zeros(2), 1.0)
    plain = sl.objectives.annealed_denoising_score_matching(exact, x, sigmas, generator=torch.Generator().manual_seed(7))
    stable = sl.objectives.annealed_denoising_score_matching(
        exact, x, sigmas, reference=torch.randn(3000, 2, generator=generator), generator=torch.Generator().manual_seed(7))
    # At the exact score the plain loss keeps the target's variance; the stable one is near 0.
    assert stable.item() < 0.1 * plain.item()
