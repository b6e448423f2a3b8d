"""Samplers of the Langevin family and the NCSNv2 rules, checked against exact answers (issue 4)."""

from __future__ import annotations

import math

import pytest
import torch

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.data.toy import EIGHT_GAUSSIANS

# ---------------------------------------------------------------------------------------------
# Mode weights: 0.8·N((5,5), I) + 0.2·N((−5,−5), I), the NCSN paper's Fig. 3 made quantitative.

TWO_MODES = sl.data.GaussianMixture(means=[[5.0, 5.0], [-5.0, -5.0]], stds=1.0, weights=[0.8, 0.2])
N_POINTS = 1280  # as in the NCSN paper


def minor_share(samples: torch.Tensor) -> float:
    """Fraction of samples on the minor mode's side of the line x + y = 0."""
    return (samples.sum(dim=1) < 0).float().mean().item()


def uniform_start(generator: torch.Generator) -> torch.Tensor:
    return torch.rand(N_POINTS, 2, generator=generator) * 16 - 8


def test_plain_langevin_gets_mode_weights_wrong():
    # Without annealing, points stay in the basin they start in: uniform starts give about 0.5/0.5.
    generator = torch.Generator().manual_seed(0)
    samples = sl.sampling.langevin(TWO_MODES, uniform_start(generator), n_steps=1000, step_size=0.1,
                                   generator=generator)
    assert minor_share(samples) > 0.4


def test_annealed_langevin_gets_mode_weights_right():
    # With these coarse levels (γ ≈ 1.39) the minor share is biased to about 0.22 (measured on 20 000
    # points), inside the tolerance but not by much; the seed is fixed, so the test is deterministic.
    generator = torch.Generator().manual_seed(0)
    sigmas = sl.noise.geometric_sigmas(20.0, 1.0, 10)
    # step_size = ε at σ_L = 1, so α_i = 0.1·σ_i²/σ_L².
    samples = sl.sampling.annealed_langevin(TWO_MODES, uniform_start(generator), sigmas, n_steps_each=100,
                                            step_size=0.1, generator=generator)
    assert minor_share(samples) == pytest.approx(0.2, abs=0.03)


def test_predictor_corrector_gets_mode_weights_right():
    generator = torch.Generator().manual_seed(0)
    sigmas = sl.noise.geometric_sigmas(20.0, 1.0, 100)
    # The VE SDE's prior N(0, σ_1²I); 4 × 1280 points because the binomial error at 1280 (±0.011)
    # is a third of the tolerance, and this sampler is unbiased here (0.201 on 20 000 points).
    start = torch.randn(4 * N_POINTS, 2, generator=generator) * sigmas[0]
    samples = sl.sampling.predictor_corrector(TWO_MODES, start, sigmas, n_steps_each=1, snr=0.16,
                                              generator=generator)
    assert minor_share(samples) == pytest.approx(0.2, abs=0.03)


# ---------------------------------------------------------------------------------------------
# Sample quality: the exact 8-gaussians score, NCSNv2 settings, the project's W2 ratio.


@pytest.mark.slow
def test_annealed_langevin_with_ncsnv2_settings_reaches_w2_ratio_on_8gaussians():
    data = EIGHT_GAUSSIANS.sample(5000, torch.Generator().manual_seed(1))
    # σ_1 and ε from the NCSNv2 rules; L is given because the γ criterion sets no limit in 2-D.
    sigmas, step_size = sl.noise.ncsnv2_schedule(data, sigma_min=0.05, n_steps_each=50, n_levels=20)

    def sample_model(n: int, generator: torch.Generator) -> torch.Tensor:
        start = torch.randn(n, 2, generator=generator) * sigmas[0]
        return sl.sampling.annealed_langevin(EIGHT_GAUSSIANS, start, sigmas, n_steps_each=50,
                                             step_size=step_size, generator=generator)

    report = sl.metrics.w2_ratio(sample_model, EIGHT_GAUSSIANS.sample, n=3000, repeats=2)
    print(f"W2 model {report.model_mean:.4f} ± {report.model_std:.4f}, "
          f"floor {report.floor_mean:.4f} ± {report.floor_std:.4f}, ratio {report.ratio:.3f}")
    assert report.ratio <= 1.1


# ---------------------------------------------------------------------------------------------
# Stationarity: Langevin started at N(μ, Σ) with its exact score stays at N(μ, Σ).

MEAN = torch.tensor([1.0, -2.0], dtype=torch.float64)
COVARIANCE = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
PRECISION = torch.linalg.inv(COVARIANCE)


def gaussian_score(x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
    """∇ log N(x; μ, Σ) = −Σ⁻¹(x − μ)."""
    return -(x - MEAN) @ PRECISION


def seed_langevin(score, x, *, n_steps, step_size, generator):
    """The seed's sampler: the same update, but z ~ U[0, 1) instead of N(0, I)."""
    for _ in range(n_steps):
        x = x + 0.5 * step_size * score(x) + step_size**0.5 * torch.rand(x.shape, generator=generator,
                                                                         dtype=x.dtype)
    return x


def keeps_gaussian_stationary(sampler) -> bool:
    """Run ``sampler`` from exact samples and compare moments in whitened coordinates.

    With ε = 0.005 the discretisation inflates the variance by at most ε/(4·λ_min(Σ)) ≈ 1.3 %,
    and with 20 000 chains the sampling error of mean and covariance is about 1 %.
    """
    generator = torch.Generator().manual_seed(0)
    whiten = torch.linalg.cholesky(PRECISION)  # L Lᵀ = Σ⁻¹, so (x − μ) L is white
    start = MEAN + torch.randn(20_000, 2, generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(
        COVARIANCE).T
    end = sampler(gaussian_score, start, n_steps=400, step_size=0.005, generator=generator)
    white = (end - MEAN) @ whiten
    mean_error = white.mean(0).abs().max().item()
    covariance_error = (torch.cov(white.T) - torch.eye(2, dtype=torch.float64)).abs().max().item()
    return mean_error < 0.05 and covariance_error < 0.06


def test_langevin_keeps_a_gaussian_stationary():
    assert keeps_gaussian_stationary(sl.sampling.langevin)


def test_stationarity_check_catches_the_seeds_uniform_noise():
    assert not keeps_gaussian_stationary(seed_langevin)


# ---------------------------------------------------------------------------------------------
# NCSNv2 rules (Song & Ermon 2020) against the paper's CIFAR-10 configuration.

CIFAR_SIGMA_MAX, CIFAR_SIGMA_MIN, CIFAR_LEVELS, CIFAR_STEPS, CIFAR_DIM = 50.0, 0.01, 232, 5, 3 * 32 * 32


def test_step_size_rule_reproduces_cifar10():
    gamma = (CIFAR_SIGMA_MAX / CIFAR_SIGMA_MIN) ** (1 / (CIFAR_LEVELS - 1))
    step_size = sl.noise.ncsnv2_step_size(CIFAR_SIGMA_MIN, gamma, CIFAR_STEPS)
    # The paper writes x + ε·s + √(2ε)·z; the house form x + (ε/2)·s + √ε·z has twice its ε.
    assert step_size / 2 == pytest.approx(6.2e-6, rel=0.05)
    # It is the minimum of the variance ratio, which stays above 1 (about 1.055 here).
    ratio = sl.noise.langevin_variance_ratio(step_size, gamma, CIFAR_STEPS, CIFAR_SIGMA_MIN)
    for nearby in (0.8 * step_size, 1.25 * step_size):
        assert sl.noise.langevin_variance_ratio(nearby, gamma, CIFAR_STEPS, CIFAR_SIGMA_MIN) > ratio > 1


def test_gamma_criterion_gives_cifar10_levels_of_the_same_order():
    n_levels = sl.noise.n_levels_from_gamma(CIFAR_SIGMA_MAX, CIFAR_SIGMA_MIN, CIFAR_DIM)
    # Overlap 0.5 exactly gives γ ≈ 1.0398 and L = 220, 5 % fewer than the paper's 232 …
    assert n_levels == 220
    # … whose ratio γ ≈ 1.0376 has an overlap of about 0.57: the paper rounded towards more overlap.
    paper_gamma = (CIFAR_SIGMA_MAX / CIFAR_SIGMA_MIN) ** (1 / (CIFAR_LEVELS - 1))
    assert sl.noise.level_overlap(paper_gamma, CIFAR_DIM) == pytest.approx(0.567, abs=0.005)
    assert sl.noise.n_levels_from_gamma(CIFAR_SIGMA_MAX, CIFAR_SIGMA_MIN, CIFAR_DIM, overlap=0.565) == 232


def test_gamma_criterion_refuses_low_dimensions():
    with pytest.raises(ConfigError, match="n_levels"):
        sl.noise.gamma_from_overlap(2)


def test_sigma_max_is_the_largest_pairwise_distance():
    square = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0], [1.0, 1.0]])
    assert sl.noise.sigma_max_from_data(square, chunk_size=2) == pytest.approx(5.0)


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_sigma_max_shortcuts_agree_with_every_pair(dim):
    # 1-D uses max − min, 2-D and 3-D the convex hull, higher dimensions every pair.
    x = torch.randn(700, dim, generator=torch.Generator().manual_seed(dim), dtype=torch.float64)
    brute_force = torch.cdist(x, x).max().item()
    assert sl.noise.sigma_max_from_data(x) == pytest.approx(brute_force, rel=1e-12)
    line = torch.linspace(-2, 3, 50, dtype=torch.float64)[:, None] * torch.ones(dim, dtype=torch.float64)
    assert sl.noise.sigma_max_from_data(line) == pytest.approx(5 * dim**0.5, rel=1e-12)  # degenerate hull


# ---------------------------------------------------------------------------------------------
# Determinism, callbacks, purity and bad arguments.

SIGMAS = torch.tensor([3.0, 1.0, 0.3])


def run_sampler(name: str, seed: int, callback=None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 2, generator=generator, dtype=torch.float64) * 3
    samplers = {
        "gradient_ascent": lambda: sl.sampling.gradient_ascent(TWO_MODES, x, n_steps=7, step_size=0.1,
                                                               callback=callback),
        "langevin": lambda: sl.sampling.langevin(TWO_MODES, x, n_steps=7, step_size=0.1, decay=0.9,
                                                 generator=generator, callback=callback),
        "annealed_langevin": lambda: sl.sampling.annealed_langevin(TWO_MODES, x, SIGMAS, n_steps_each=4,
                                                                   step_size=0.05, generator=generator,
                                                                   callback=callback),
        "predictor_corrector": lambda: sl.sampling.predictor_corrector(TWO_MODES, x, SIGMAS, n_steps_each=2,
                                                                       generator=generator, callback=callback),
    }
    start = x.clone()
    out = samplers[name]()
    assert torch.equal(x, start), "samplers must not change their input"
    assert out.dtype == x.dtype and out.shape == x.shape
    return out


# Steps each sampler reports: 7; 7; 3 levels × 4 + the denoising step; 3 levels × (2 corrector + 1 predictor).
EXPECTED_STEPS = {"gradient_ascent": 7, "langevin": 7, "annealed_langevin": 13, "predictor_corrector": 9}


@pytest.mark.parametrize("name", sorted(EXPECTED_STEPS))
def test_same_seed_same_samples_and_callback_sees_every_step(name):
    seen: list[sl.sampling.StepInfo] = []
    first = run_sampler(name, seed=3, callback=seen.append)
    assert torch.equal(first, run_sampler(name, seed=3))
    if name != "gradient_ascent":  # noise-free: every seed gives the same path from the same start
        assert not torch.equal(first, run_sampler(name, seed=4))
    assert [info.step for info in seen] == list(range(EXPECTED_STEPS[name]))
    assert torch.equal(seen[-1].x, first)
    assert all(info.score.shape == first.shape and info.step_size > 0 for info in seen)


def test_callback_reports_the_annealed_step_rule():
    seen: list[sl.sampling.StepInfo] = []
    run_sampler("annealed_langevin", seed=0, callback=seen.append)
    langevin_steps = seen[:-1]
    assert [info.sigma for info in langevin_steps] == pytest.approx([3.0] * 4 + [1.0] * 4 + [0.3] * 4)
    # α_i = ε·σ_i²/σ_L²
    assert [info.step_size for info in langevin_steps] == pytest.approx(
        [0.05 * (sigma / 0.3) ** 2 for sigma in [3.0] * 4 + [1.0] * 4 + [0.3] * 4])


def test_predictor_corrector_step_sizes_follow_the_snr():
    seen: list[sl.sampling.StepInfo] = []
    run_sampler("predictor_corrector", seed=0, callback=seen.append)
    predictor_steps = seen[2::3]
    assert [info.step_size for info in predictor_steps] == pytest.approx([9.0 - 1.0, 1.0 - 0.09, 0.09])
    # Corrector: α = 2ε = 4·(r·‖z‖/‖s‖)², and in 2-D the mean of ‖z‖ over 64 points is E χ₂ = √(π/2) ± 5 %.
    corrector = seen[0]
    expected = 4 * 0.16**2 * (math.pi / 2) / corrector.score.norm(dim=1).mean().item() ** 2
    assert corrector.step_size == pytest.approx(expected, rel=0.25)


@pytest.mark.parametrize("call", [
    lambda x: sl.sampling.annealed_langevin(TWO_MODES, x, torch.tensor([1.0, 2.0]), n_steps_each=1, step_size=0.1),
    lambda x: sl.sampling.predictor_corrector(TWO_MODES, x, SIGMAS, snr=0.0),
    lambda x: sl.sampling.predictor_corrector(TWO_MODES, x, torch.tensor([]), n_steps_each=1),
    lambda x: sl.sampling.langevin(TWO_MODES, x, n_steps=5, step_size=0.1, temperature=math.nan),
    lambda x: sl.noise.ncsnv2_step_size(0.01, 0.9, 5),
    lambda x: sl.noise.sigma_max_from_data(x[:1]),
])
def test_bad_arguments_raise_config_error(call):
    with pytest.raises(ConfigError):
        call(torch.zeros(4, 2))


# ---------------------------------------------------------------------------------------------
# Trained runs: the "pc" sampler and the annealed Langevin animation.


@pytest.mark.slow
def test_trained_run_samples_with_predictor_corrector(tiny_run):
    run = sl.load_run(tiny_run, device="cpu")
    seen: list[sl.sampling.StepInfo] = []
    first = run.sample(50, sampler="pc", generator=torch.Generator().manual_seed(0), callback=seen.append,
                       n_steps_each=3)
    assert torch.equal(first, run.sample(50, sampler="pc", generator=torch.Generator().manual_seed(0),
                                         n_steps_each=3))
    assert first.shape == (50, 2) and torch.isfinite(first).all()
    # n_levels·n_steps_each levels, each one corrector and one predictor step.
    assert len(seen) == 2 * run.config.process.n_levels * 3
    seen.clear()
    run.sample(50, sampler="pc", generator=torch.Generator().manual_seed(0), callback=seen.append, sample_steps=7)
    assert len(seen) == 2 * 7


@pytest.mark.slow
def test_another_sampler_keeps_only_the_run_settings_that_mean_the_same(tiny_run):
    run = sl.load_run(tiny_run, device="cpu")
    assert run.config.sampler.name == "ald" and run.config.sampler.n_steps_each != 100
    # Plain Langevin's n_steps_each means what annealed Langevin's does; the corrector's does not.
    assert run.sampler_settings("langevin")[1].n_steps_each == run.config.sampler.n_steps_each
    assert run.sampler_settings("pc")[1].n_steps_each == 100
    # ald's sample_steps = 0 (every level) is no Karras step count: heun keeps its own default.
    assert run.sampler_settings("heun")[1].sample_steps == 18
    assert run.sampler_settings("ddim")[1].sample_steps == run.config.sampler.sample_steps


@pytest.mark.slow
def test_trained_noise_conditional_run_samples_with_plain_langevin_at_its_smallest_level(tiny_run):
    run = sl.load_run(tiny_run, device="cpu")
    seen: list[sl.sampling.StepInfo] = []
    samples = run.sample(50, sampler="langevin", generator=torch.Generator().manual_seed(0), callback=seen.append)
    assert samples.shape == (50, 2) and torch.isfinite(samples).all()
    assert len(seen) == run.config.process.n_levels * run.config.sampler.n_steps_each
    sigma_min = torch.full((4,), run.config.process.sigma_min)
    # The score of step 1 is taken where step 0 left x.
    torch.testing.assert_close(seen[1].score[:4], run.model(seen[0].x[:4], sigma_min))


@pytest.mark.slow
def test_step_size_zero_takes_the_ncsnv2_rule_for_annealed_langevin_only(tiny_run):
    run = sl.load_run(tiny_run, device="cpu")
    seen: list[sl.sampling.StepInfo] = []
    run.sample(20, step_size=0.0, generator=torch.Generator().manual_seed(0), callback=seen.append)
    sigmas = run.sigmas
    rule = sl.noise.ncsnv2_step_size(sigmas[-1].item(), (sigmas[0] / sigmas[1]).item(), run.config.sampler.n_steps_each)
    assert seen[-2].step_size == pytest.approx(rule)  # α_L = ε at the last level (the last step is Tweedie's)
    with pytest.raises(ConfigError, match="for annealed Langevin"):
        run.sample(20, sampler="langevin", step_size=0.0)


@pytest.mark.slow
def test_animation_is_a_gif_with_frames_for_every_level(tiny_run, tmp_path):
    from PIL import Image

    from scorelab import plots

    run = sl.load_run(tiny_run, device="cpu")
    data = sl.data.load(run.config.data.name, 500, generator=torch.Generator().manual_seed(0))
    path = plots.animate_sampler(run, data, tmp_path / "ald.gif", n=200, frames_per_level=2,
                                 generator=torch.Generator().manual_seed(0))
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 2 * run.config.process.n_levels
