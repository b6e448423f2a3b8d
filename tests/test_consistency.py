"""Consistency models (issue 33, item 3): the boundary condition, the iCT curriculum, the losses, the sampler.

The closed form behind most of these tests: for Gaussian data N(μ, s²) (per entry), the probability-flow
ODE dy/dσ = −σ·s(y, σ) = σ(y − μ)/(s² + σ²) has the solution y(σ) − μ ∝ √(s² + σ²), so the exact
consistency function, which follows it down to σ_min, is

    f(y, σ) = μ + (y − μ)·k(σ),   k(σ) = √(s² + σ_min²)/√(s² + σ²),

with f(y, σ_min) = y. The trained test distils the exact score of a Gaussian mixture into an MLP.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.core.noise import karras_sigmas
from scorelab.data.mixture import GaussianMixture
from scorelab.models.mlp import ConditionalMLP
from scorelab.models.preconditioning import Preconditioned
from scorelab.objectives.consistency import (
    consistency_distillation_loss,
    consistency_training_loss,
    ct_level_index,
    ct_level_probabilities,
    ct_levels,
    ct_sigma_pairs,
    ct_sigmas,
    pseudo_huber,
    teacher_step,
)
from scorelab.sampling.consistency import consistency_sampling
from scorelab.sampling.ode import CountingScore

SIGMA_MAX, SIGMA_MIN = 80.0, 0.002

# A Gaussian on samples of shape [2, 3], each entry its own mean and standard deviation.
MEAN = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]], dtype=torch.float64)
STD = torch.tensor([[0.3, 1.0, 0.5], [2.0, 0.1, 0.8]], dtype=torch.float64)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def column(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, 1, 1)


def gaussian_score(y: torch.Tensor, sigma: torch.Tensor, cond=None) -> torch.Tensor:
    """∇ log N(y; μ, s² + σ²), the exact score of the Gaussian perturbed by N(0, σ²I)."""
    return (MEAN - y) / (STD**2 + column(sigma) ** 2)


def gaussian_data(n: int, seed: int) -> torch.Tensor:
    return MEAN + STD * torch.randn(n, *MEAN.shape, generator=seeded(seed), dtype=torch.float64)


def shrink(sigma: torch.Tensor, std: torch.Tensor = STD) -> torch.Tensor:
    """k(σ) = √(s² + σ_min²)/√(s² + σ²), per sample and entry."""
    return ((std**2 + SIGMA_MIN**2) / (std**2 + column(sigma) ** 2)).sqrt()


class ExactConsistency(torch.nn.Module):
    """The exact consistency function of N(μ, (scale·s)²): its ``denoise`` view is f, its score (f − y)/σ².

    ``scale`` is a parameter, so that the losses' gradients can be read off at, above and below the truth.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale, dtype=torch.float64))
        self.calls = 0

    def denoise(self, y, sigma, cond=None):
        self.calls += 1
        return MEAN + (y - MEAN) * shrink(sigma, self.scale * STD)

    def forward(self, y, sigma, cond=None):
        return (self.denoise(y, sigma) - y) / column(sigma) ** 2


def tweedie(y, sigma, cond=None):
    """The Gaussian's denoiser E[x | y] = μ + (y − μ)·s²/(s² + σ²): not a consistency function."""
    return gaussian_score(y, sigma)


def consistency_model(shape: tuple[int, ...], sigma_min: float = 0.01, sigma_data: float = 0.7) -> Preconditioned:
    torch.manual_seed(0)
    backbone = ConditionalMLP(math.prod(shape), 16, 2, fourier_features=3)
    return Preconditioned(backbone, "consistency", sigma_data, sigma_min=sigma_min)


# --- the boundary condition in the preconditioning --------------------------------------------


@pytest.mark.parametrize("shape", [(2,), (3, 4, 4), (1, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_boundary_condition_holds_exactly_for_any_weights_and_shape(shape, dtype):
    model = consistency_model(shape).to(dtype)
    for parameter in model.parameters():  # weights far from their initialisation
        torch.nn.init.normal_(parameter, std=3.0, generator=seeded(1))
    x = torch.randn(6, *shape, generator=seeded(2), dtype=dtype) * 5
    sigma = torch.tensor([0.01, 0.01, 0.5, 0.01, 3.0, 0.01], dtype=dtype)
    f = model.denoise(x, sigma)
    at_min = sigma == 0.01
    assert torch.equal(f[at_min], x[at_min])
    assert not torch.isclose(f[~at_min], x[~at_min]).all()
    assert torch.equal(model.denoise(x, torch.tensor(0.01, dtype=dtype)), x)
    assert torch.equal(model(x, sigma)[at_min], torch.zeros_like(x[at_min]))  # the score whose denoiser is f
    # The sampler's last evaluation at σ_min adds √(σ_min² − σ_min²)·z = 0 and returns its input unchanged.
    one_step = consistency_sampling(model, x, torch.tensor([3.0], dtype=dtype), sigma_min=0.01)
    two_step = consistency_sampling(
        model, x, torch.tensor([3.0, 0.01], dtype=dtype), sigma_min=0.01, generator=seeded(3)
    )
    assert torch.equal(two_step, one_step)


def test_the_consistency_scalings_are_the_closed_form_and_edms_at_sigma_min_zero():
    sigma_data, sigma_min = 0.75, 0.01  # σ_d exact in float32, the buffer's dtype before .double()
    model = consistency_model((2,), sigma_min, sigma_data).double()
    sigma = torch.logspace(-2, 2, 8, dtype=torch.float64)
    c_skip, c_out, c_in = model.consistency_scalings(sigma)
    torch.testing.assert_close(c_skip, sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2), rtol=1e-14, atol=0)
    torch.testing.assert_close(
        c_out, (sigma - sigma_min) * sigma_data / (sigma**2 + sigma_data**2).sqrt(), rtol=1e-14, atol=0
    )
    torch.testing.assert_close(c_in, 1 / (sigma**2 + sigma_data**2).sqrt(), rtol=1e-14, atol=0)
    assert c_skip[0] == 1 and c_out[0] == 0
    x = torch.randn(8, 2, generator=seeded(4), dtype=torch.float64) * 3
    f = c_skip[:, None] * x + c_out[:, None] * model.backbone(c_in[:, None] * x, sigma.log())
    torch.testing.assert_close(model.denoise(x, sigma), f, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(model(x, sigma), (f - x) / sigma[:, None] ** 2)
    torch.testing.assert_close(model.eps(x, sigma), (x - f) / sigma[:, None])
    # With σ_min = 0 the consistency model is EDM's preconditioning (Karras et al. 2022, Table 1).
    edm = Preconditioned(model.backbone, "edm", sigma_data).double()
    at_zero = Preconditioned(model.backbone, "consistency", sigma_data, sigma_min=0.0).double()
    torch.testing.assert_close(at_zero.denoise(x, sigma), edm.denoise(x, sigma), rtol=1e-13, atol=1e-13)


def test_sigma_min_is_a_buffer_of_the_consistency_parameterisation_only():
    backbone = ConditionalMLP(2, 8, 1)
    for parameterisation in ("score", "ve", "eps", "edm"):
        keys = set(Preconditioned(backbone, parameterisation, 0.5, sigma_min=0.3).state_dict())
        assert keys == {"sigma_data"} | {f"backbone.{key}" for key in backbone.state_dict()}
    model = Preconditioned(backbone, "consistency", 0.5, sigma_min=0.3)
    assert model.state_dict()["sigma_min"].item() == pytest.approx(0.3)
    fresh = Preconditioned(ConditionalMLP(2, 8, 1), "consistency", 1.0)
    fresh.load_state_dict(model.state_dict())  # σ_min travels with the weights, as σ_d does
    assert fresh.sigma_min.item() == pytest.approx(0.3) and "sigma_min=0.3" in repr(fresh)
    with pytest.raises(ConfigError, match="sigma_min"):
        Preconditioned(backbone, "consistency", 0.5, sigma_min=-1.0)


# --- the distance, the curriculum and the level draw --------------------------------------------


def test_pseudo_huber_is_its_formula_with_the_papers_default_c():
    residual = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(
        pseudo_huber(residual, 0.5), torch.tensor([math.sqrt(25.25) - 0.5, 0.0], dtype=torch.float64)
    )
    images = torch.full((2, 3, 4, 4), 1e-6, dtype=torch.float64)  # d = 48 entries: c = 0.00054·√48
    c = 0.00054 * math.sqrt(48)
    torch.testing.assert_close(
        pseudo_huber(images), torch.full((2,), math.sqrt(48e-12 + c**2) - c, dtype=torch.float64)
    )
    # ‖r‖²/(2c) for small residuals, ‖r‖ − c for large ones.
    assert pseudo_huber(residual[:1] * 1e-4, 1.0).item() == pytest.approx(25e-8 / 2, rel=1e-6)
    assert pseudo_huber(residual[:1] * 1e4, 1.0).item() == pytest.approx(5e4 - 1, rel=1e-8)
    with pytest.raises(ConfigError, match="huber_c"):
        pseudo_huber(residual, 0.0)


def test_ct_levels_double_in_equal_stages():
    # K = 400 000 (iCT's CIFAR-10 run), s0 = 10, s1 = 1280: log2(128) + 1 = 8 stages of K' = 50 000 steps.
    assert [ct_levels(k, 400_000) for k in (0, 49_999, 50_000, 100_000, 150_000, 349_999, 350_000, 399_999)] == [
        11,
        11,
        21,
        41,
        81,
        641,
        1281,
        1281,
    ]
    # s1/s0 = 15, not a power of 2: K' = ⌊1000/(log2 15 + 1)⌋ = ⌊203.8⌋ = 203, and the cap s1 = 150 holds.
    assert [ct_levels(k, 1000, 10, 150) for k in (0, 202, 203, 406, 609, 812, 999)] == [11, 11, 21, 41, 81, 151, 151]
    assert ct_levels(7, 5) == 1281  # a run shorter than the 8 stages still reaches s1 (K' is kept at 1)
    with pytest.raises(ConfigError):
        ct_levels(-1, 10)


def test_ct_sigmas_are_the_karras_grid_smallest_first():
    sigmas = ct_sigmas(11, SIGMA_MIN, SIGMA_MAX)
    assert sigmas.dtype == torch.float64 and (sigmas.diff() > 0).all()
    assert sigmas[0].item() == SIGMA_MIN and sigmas[-1].item() == SIGMA_MAX  # exactly: f(y, σ_min) = y there
    i = 3  # σ_i = (σ_min^(1/7) + i/(N − 1)·(σ_max^(1/7) − σ_min^(1/7)))^7, counting from 0
    expected = (SIGMA_MIN ** (1 / 7) + i / 10 * (SIGMA_MAX ** (1 / 7) - SIGMA_MIN ** (1 / 7))) ** 7
    assert sigmas[i].item() == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(sigmas.flip(0), karras_sigmas(SIGMA_MAX, SIGMA_MIN, 11))


def test_the_level_draw_is_log_normal():
    sigmas = ct_sigmas(11, SIGMA_MIN, SIGMA_MAX)
    mean, std = -1.1, 2.0
    erf = [math.erf((math.log(s) - mean) / (math.sqrt(2) * std)) for s in sigmas.tolist()]
    expected = torch.tensor([b - a for a, b in itertools.pairwise(erf)], dtype=torch.float64)
    expected /= expected.sum()
    torch.testing.assert_close(ct_level_probabilities(sigmas), expected, rtol=1e-12, atol=0)
    n = 200_000
    counts = torch.bincount(ct_level_index(sigmas, n, generator=seeded(5)), minlength=10).double()
    chi_square = ((counts - n * expected) ** 2 / (n * expected)).sum().item()
    assert chi_square < 30  # 9 degrees of freedom: P(χ² > 30) ≈ 4e-4
    # The pairs follow the indices and the data's dtype.
    x = torch.zeros(1000, 2, dtype=torch.float32)
    low, high = ct_sigma_pairs(x, sigmas, generator=seeded(6))
    index = ct_level_index(sigmas, 1000, generator=seeded(6))
    assert low.dtype == torch.float32 and torch.equal(low, sigmas[index].float())
    assert torch.equal(high, sigmas[index + 1].float())
    # A different P_mean moves the mass: the most likely pair holds e^P_mean.
    for p_mean in (-3.0, 0.0, 2.0):
        best = ct_level_probabilities(sigmas, p_mean, 0.5).argmax()
        assert sigmas[best] <= math.exp(p_mean) <= sigmas[best + 1]


# --- the losses --------------------------------------------------------------------------------


def test_the_ct_loss_puts_one_noise_at_both_levels():
    """At the exact f, r = k_h(x − μ + σ_h z) − k_l(x − μ + σ_l z), so E‖r‖² = Σ_j (k_h − k_l)²s_j² + (k_hσ_h − k_lσ_l)²."""
    n, low, high = 100_000, 0.5, 0.6
    x = gaussian_data(n, 7)
    sigmas_low, sigmas_high = torch.full((n,), low, dtype=torch.float64), torch.full((n,), high, dtype=torch.float64)
    loss = consistency_training_loss(ExactConsistency(), x, sigmas_low, sigmas_high, generator=seeded(8), distance="l2")
    k_low, k_high = shrink(sigmas_low[:1])[0], shrink(sigmas_high[:1])[0]
    expected = ((k_high - k_low) ** 2 * STD**2 + (k_high * high - k_low * low) ** 2).sum() / (high - low)
    assert loss.item() == pytest.approx(expected.item(), rel=0.02)  # the sum of 6 χ²'s: rel. sd ≈ 0.3%
    two_noises = ((k_high - k_low) ** 2 * STD**2 + (k_high * high) ** 2 + (k_low * low) ** 2).sum() / (high - low)
    assert two_noises > 3 * expected


@pytest.mark.parametrize("distance", ["pseudo_huber", "l2"])
def test_the_ct_gradient_vanishes_at_the_exact_consistency_function(distance):
    """The CT gradient (target under stop-gradient) points towards the truth, and is ≈ 0 there on iCT's final grid.

    The loss's value is no criterion: at the exact f it is the variance of the target given the student's
    input, which a flatter, wrong f makes smaller. What training follows is the gradient with the target
    held fixed; with the gradient through the target too, or independent noises at the two levels, it
    does not vanish at the truth (measured: +0.16 and +24 at scale 1, against −4.5 and +3.0 at 0.9 and 1.1).
    """
    sigmas = ct_sigmas(1281, SIGMA_MIN, SIGMA_MAX)
    gradients = []
    for scale in (0.9, 1.0, 1.1):
        model = ExactConsistency(scale)
        x = gaussian_data(50_000, 9)
        low, high = ct_sigma_pairs(x, sigmas, generator=seeded(10))
        consistency_training_loss(model, x, low, high, generator=seeded(11), distance=distance).backward()
        gradients.append(model.scale.grad.item())
    below, at, above = gradients
    assert below < 0 < above
    assert abs(at) < 0.05 * min(-below, above), gradients


def test_the_teacher_step_is_heun_or_euler_on_the_probability_flow_ode():
    y = gaussian_data(64, 12) + 2 * torch.randn(64, 2, 3, generator=seeded(13), dtype=torch.float64)
    sigma = torch.full((64,), 2.0, dtype=torch.float64)
    errors: dict[str, list[float]] = {"heun": [], "euler": []}
    for h in (0.4, 0.2, 0.1):
        exact = MEAN + (y - MEAN) * ((STD**2 + (2.0 - h) ** 2) / (STD**2 + 4.0)).sqrt()
        for solver, found in errors.items():
            stepped = teacher_step(gaussian_score, y, sigma, sigma - h, solver=solver)
            found.append((stepped - exact).abs().max().item())
    # Local errors O(h³) and O(h²): the error falls 8 and 4 times per halving of the step.
    for solver, order in (("heun", 3), ("euler", 2)):
        slopes = [math.log2(a / b) for a, b in itertools.pairwise(errors[solver])]
        assert all(abs(slope - order) < 0.3 for slope in slopes), (solver, slopes)
    with pytest.raises(ConfigError, match="teacher solver"):
        teacher_step(gaussian_score, y, sigma, sigma - 0.1, solver="rk4")


def test_the_cd_loss_at_the_exact_consistency_function_is_the_teachers_step_error():
    """With the exact score as teacher, the exact f takes the same value at both ends of an exact ODE step, so
    what is left is the step's local error, O(Δσ³) for Heun and O(Δσ²) for Euler: squared and weighted by
    1/Δσ, the L2 loss falls as Δσ⁵ and Δσ³. A wrong f (the Gaussian's denoiser) is O(Δσ) off: Δσ¹.
    Doubling the levels halves each Δσ (measured slopes 5.03, 2.99 and 1.01, from 41 to 81 levels)."""
    x = gaussian_data(20_000, 14)
    losses: dict[str, list[float]] = {"heun": [], "euler": [], "wrong": []}
    for n_levels in (41, 81):
        low, high = ct_sigma_pairs(x, ct_sigmas(n_levels, SIGMA_MIN, SIGMA_MAX), generator=seeded(15))
        for name, model, solver in (
            ("heun", ExactConsistency(), "heun"),
            ("euler", ExactConsistency(), "euler"),
            ("wrong", tweedie, "heun"),
        ):
            losses[name].append(
                consistency_distillation_loss(
                    model, gaussian_score, x, low, high, generator=seeded(16), distance="l2", solver=solver
                ).item()
            )
    for name, order in (("heun", 5), ("euler", 3), ("wrong", 1)):
        coarse, fine = losses[name]
        assert abs(math.log2(coarse / fine) - order) < 0.4, losses
    assert losses["heun"][1] < 1e-3 * losses["wrong"][1], losses

    # The target network is the student unless one is given (an EMA): here a wrong one.
    low, high = ct_sigma_pairs(x, ct_sigmas(41, SIGMA_MIN, SIGMA_MAX), generator=seeded(15))

    def loss(model, target_model=None):
        return consistency_distillation_loss(
            model, gaussian_score, x, low, high, generator=seeded(16), target_model=target_model
        )

    exact = ExactConsistency()
    assert loss(exact, exact).item() == loss(exact).item()
    assert loss(exact, tweedie).item() > 100 * loss(exact).item()
    # The gradient reaches the student only, and pulls a wrong scale back.
    for scale in (0.8, 1.25):
        model = ExactConsistency(scale)
        loss(model).backward()
        assert (model.scale.grad.item() > 0) == (scale > 1)


def test_the_losses_check_their_levels():
    x = gaussian_data(4, 17)
    levels = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    with pytest.raises(ConfigError, match="above"):
        consistency_training_loss(ExactConsistency(), x, levels, levels, generator=seeded(0))
    with pytest.raises(ConfigError, match="one level per sample"):
        consistency_training_loss(ExactConsistency(), x, levels[:2], levels[:2] + 1, generator=seeded(0))
    with pytest.raises(ConfigError, match="distance"):
        consistency_training_loss(ExactConsistency(), x, levels, levels + 1, generator=seeded(0), distance="l1")


# --- the sampler -------------------------------------------------------------------------------


def test_one_and_two_step_samples_of_the_exact_consistency_function_are_the_closed_form():
    """From y ~ N(0, σ_1²): f(y, σ_1) ~ N(μ(1 − k_1), σ_1²k_1²), which tends to N(μ, s² + σ_min²) as σ_1 grows.
    A second step adds noise of variance σ_2² − σ_min² and maps down again: N(μ(1 − k_1k_2), k_2²(σ_1²k_1² + σ_2² − σ_min²))."""
    n = 100_000
    start = torch.randn(n, *MEAN.shape, generator=seeded(18), dtype=torch.float64) * SIGMA_MAX
    k_1 = shrink(torch.tensor(SIGMA_MAX, dtype=torch.float64))[0]
    one = consistency_sampling(ExactConsistency(), start, torch.tensor([SIGMA_MAX]), sigma_min=SIGMA_MIN)
    torch.testing.assert_close(one.var(0), SIGMA_MAX**2 * k_1**2, rtol=0.02, atol=0)
    torch.testing.assert_close(one.var(0), STD**2, rtol=0.02, atol=0)
    torch.testing.assert_close(one.mean(0), MEAN * (1 - k_1), rtol=0, atol=0.02)
    sigma_2 = 0.8
    k_2 = shrink(torch.tensor(sigma_2, dtype=torch.float64))[0]
    two = consistency_sampling(
        ExactConsistency(), start, torch.tensor([SIGMA_MAX, sigma_2]), sigma_min=SIGMA_MIN, generator=seeded(19)
    )
    torch.testing.assert_close(
        two.var(0), k_2**2 * (SIGMA_MAX**2 * k_1**2 + sigma_2**2 - SIGMA_MIN**2), rtol=0.02, atol=0
    )
    torch.testing.assert_close(two.mean(0), MEAN * (1 - k_1 * k_2), rtol=0, atol=0.02)


def test_consistency_sampling_evaluates_once_per_level_and_follows_its_generator():
    start = torch.randn(8, 2, 3, generator=seeded(20), dtype=torch.float64) * SIGMA_MAX
    sigmas = torch.tensor([SIGMA_MAX, 2.0, 0.5])
    model, seen = ExactConsistency(), []
    out = consistency_sampling(model, start, sigmas, sigma_min=SIGMA_MIN, generator=seeded(21), callback=seen.append)
    assert model.calls == 3 and [info.step for info in seen] == [0, 1, 2]
    assert [info.sigma for info in seen] == pytest.approx([SIGMA_MAX, 2.0, 0.5])
    assert torch.equal(seen[-1].x, out) and out.shape == start.shape
    again = consistency_sampling(ExactConsistency(), start, sigmas, sigma_min=SIGMA_MIN, generator=seeded(21))
    other = consistency_sampling(ExactConsistency(), start, sigmas, sigma_min=SIGMA_MIN, generator=seeded(22))
    assert torch.equal(again, out) and not torch.equal(other, out)
    counted = CountingScore(gaussian_score)  # a plain score is used through its denoiser, once per level
    consistency_sampling(counted, start, sigmas, sigma_min=SIGMA_MIN, generator=seeded(21))
    assert counted.count == 3
    with pytest.raises(ConfigError, match="sigma_min"):
        consistency_sampling(model, start, torch.tensor([1.0, 0.001]), sigma_min=SIGMA_MIN)
    with pytest.raises(ConfigError, match="largest to smallest"):
        consistency_sampling(model, start, torch.tensor([0.5, 1.0]), sigma_min=SIGMA_MIN)


# --- distillation of a mixture's exact score ----------------------------------------------------

MIXTURE = GaussianMixture([[-1.5, 0.5], [1.0, -0.5], [0.5, 1.5]], [0.3, 0.5, 0.25], [0.5, 0.3, 0.2])


@pytest.mark.slow
def test_distillation_from_the_exact_score_gives_a_one_step_sampler_of_the_mixture():
    """CD with the mixture's exact score as teacher (Heun steps on a grid of 18 levels from σ_min = 0.002 to
    σ_max = 20, pairs drawn log-normal), 800 Adam steps of an MLP under the consistency preconditioning.

    The W2 ratio is W2(model, data)/W2(data', data) at n = 2000. Measured over 6 training seeds: 1 step
    1.05–1.22, 2 steps (σ = 20, then 0.4) 0.80–0.96; untrained, 10.2 and 8.2; a target one level too low
    (two teacher steps), 12.1 and 11.2. The bounds, 1.6 and 1.5 (the issue's figure for 2 steps), leave room
    for the seed, while any loss that does not train the map fails them by far.
    """
    sigma_max, n = 20.0, 2000
    torch.manual_seed(0)
    model = Preconditioned(ConditionalMLP(2, 128, 3), "consistency", 1.0, sigma_min=SIGMA_MIN)
    start = torch.randn(n, 2, generator=seeded(7)) * sigma_max
    data = MIXTURE.sample(n, seeded(8)).float()
    floor = sl.metrics.wasserstein2(MIXTURE.sample(n, seeded(9)).float(), data)

    def ratios() -> tuple[float, float]:
        one = consistency_sampling(model, start, torch.tensor([sigma_max]), sigma_min=SIGMA_MIN)
        two = consistency_sampling(
            model, start, torch.tensor([sigma_max, 0.4]), sigma_min=SIGMA_MIN, generator=seeded(10)
        )
        return sl.metrics.wasserstein2(one, data) / floor, sl.metrics.wasserstein2(two, data) / floor

    untrained = ratios()
    assert min(untrained) > 5, untrained
    sigmas = ct_sigmas(18, SIGMA_MIN, sigma_max)
    steps = 800
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    # The step size falls linearly to 0: the last steps average the noise of the pairs' draw away.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / steps)
    generator = seeded(100)
    for _ in range(steps):
        x = MIXTURE.sample(512, generator).float()
        low, high = ct_sigma_pairs(x, sigmas, generator=generator)
        loss = consistency_distillation_loss(model, MIXTURE, x, low, high, generator=generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    one_step, two_steps = ratios()
    assert one_step < 1.6 and two_steps < 1.5, (one_step, two_steps, floor)
