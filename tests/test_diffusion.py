"""DDPM/DDIM: schedules, forward process, posterior, losses and samplers against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import scorelab as sl
from scorelab import diffusion, noise
from scorelab.errors import ConfigError
from scorelab.models.diffusion import EpsMLP
from scorelab.objectives import diffusion_simple_loss, diffusion_variational_bound
from scorelab.sampling import CountingScore, ddim, ddpm, probability_flow

MEAN = torch.tensor([0.5, -0.3], dtype=torch.float64)
COV = torch.tensor([[0.8, 0.3], [0.3, 0.5]], dtype=torch.float64)
LINEAR = noise.alphas_cumprod(noise.beta_schedule("linear", 1000))


def gaussian_score(mean: torch.Tensor, cov: torch.Tensor):
    """The exact score of N(mean, cov) perturbed by N(0, σ²I): −(cov + σ²I)⁻¹(y − mean)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)

    def score(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=y.dtype).reshape(-1, 1)
        rotated = (y - mean.to(y)) @ eigenvectors.to(y)
        return -(rotated / (eigenvalues.to(y) + sigma**2)) @ eigenvectors.T.to(y)

    return score


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- schedules ---


@pytest.mark.parametrize("name", noise.BETA_SCHEDULES)
def test_beta_schedules_are_valid_and_end_near_pure_noise(name):
    betas = noise.beta_schedule(name, 1000)
    alpha_bars = noise.alphas_cumprod(betas)
    assert betas.shape == (1000,) and betas.dtype == torch.float64
    assert ((betas > 0) & (betas <= 0.999)).all()
    assert (alpha_bars.diff() < 0).all() and alpha_bars[-1] < 1e-3
    sigmas = noise.vp_sigmas(alpha_bars)
    torch.testing.assert_close(diffusion.alpha_bar_of_sigma(sigmas), alpha_bars)


def test_linear_and_cosine_schedules_match_their_papers():
    linear = noise.beta_schedule("linear", 1000)
    assert linear[0].item() == pytest.approx(1e-4) and linear[-1].item() == pytest.approx(0.02)
    timesteps, s = 1000, 0.008
    f = lambda t: math.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    alpha_bars = noise.alphas_cumprod(noise.beta_schedule("cosine", timesteps))
    for t in (1, 10, 500, 900):
        assert alpha_bars[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-9)
    assert noise.beta_schedule("cosine", timesteps)[-1].item() == pytest.approx(0.999)


def test_bad_schedule_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown beta schedule"):
        noise.beta_schedule("cubic", 10)
    with pytest.raises(ConfigError):
        noise.beta_schedule("linear", 0)
    with pytest.raises(ConfigError):
        noise.beta_schedule("linear", 10, beta_start=0.1, beta_end=0.01)
    with pytest.raises(ConfigError):
        diffusion.spaced_timesteps(10, 11)


def test_spaced_timesteps_keep_both_ends():
    steps = diffusion.spaced_timesteps(1000, 50)
    assert steps[0] == 0 and steps[-1] == 999 and len(steps.unique()) == 50


# --- forward process and posterior ---


def test_q_sample_has_the_closed_form_marginal():
    x0 = torch.tensor([[1.5, -2.0]], dtype=torch.float64).expand(200_000, 2)
    alpha_bar = 0.3
    x_t, noise_drawn = diffusion.q_sample(x0, alpha_bar, generator=seeded(0))
    standard_error = math.sqrt((1 - alpha_bar) / len(x0))
    torch.testing.assert_close(x_t.mean(0), math.sqrt(alpha_bar) * x0[0], atol=4 * standard_error, rtol=0)
    torch.testing.assert_close(x_t.var(0), torch.full((2,), 1 - alpha_bar, dtype=torch.float64),
                               atol=0.01, rtol=0)
    torch.testing.assert_close(x_t, math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * noise_drawn)


def test_q_posterior_is_bayes_rule_on_gaussians():
    """q(x_{t−1}|x_t,x_0) ∝ N(x_t; √α_t x_{t−1}, β_t) · N(x_{t−1}; √ᾱ_{t−1} x_0, 1 − ᾱ_{t−1})."""
    alpha_bar_prev, alpha_bar = LINEAR[499].item(), LINEAR[500].item()
    alpha, beta = alpha_bar / alpha_bar_prev, 1 - alpha_bar / alpha_bar_prev
    x0 = torch.randn(5, 3, generator=seeded(1), dtype=torch.float64)
    x_t = torch.randn(5, 3, generator=seeded(2), dtype=torch.float64)
    precision = 1 / (1 - alpha_bar_prev) + alpha / beta
    bayes_mean = (math.sqrt(alpha_bar_prev) * x0 / (1 - alpha_bar_prev) + math.sqrt(alpha) * x_t / beta) / precision
    mean, variance = diffusion.q_posterior(x0, x_t, alpha_bar, alpha_bar_prev)
    torch.testing.assert_close(mean, bayes_mean)
    assert variance.item() == pytest.approx(1 / precision, rel=1e-12)
    last_mean, last_variance = diffusion.q_posterior(x0, x_t, LINEAR[0].item(), 1.0)
    torch.testing.assert_close(last_mean, x0)
    assert last_variance.item() == 0.0


# --- the ε ↔ score adapters ---


def test_exact_score_gives_the_bayes_optimal_eps():
    """For x_0 ~ N(0, v): E[ε | x_t] = √(1 − ᾱ) x_t / (ᾱ v + 1 − ᾱ)."""
    variance = 0.6
    gm = sl.data.GaussianMixture([[0.0]], math.sqrt(variance))
    alpha_bar = LINEAR[300].item()
    sigma = noise.vp_sigmas(torch.tensor(alpha_bar)).item()
    x_t = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    eps = diffusion.score_to_eps(gm)(x_t, torch.full((7,), sigma, dtype=torch.float64))
    expected = math.sqrt(1 - alpha_bar) * x_t / (alpha_bar * variance + 1 - alpha_bar)
    torch.testing.assert_close(eps, expected)


def test_eps_to_score_and_back_is_the_identity():
    network = EpsMLP(dim=2, hidden=16, depth=2)
    x_t = torch.randn(8, 2, generator=seeded(3))
    sigma = torch.logspace(-2, 2, 8)
    round_trip = diffusion.score_to_eps(diffusion.eps_to_score(network))(x_t, sigma)
    torch.testing.assert_close(round_trip, network(x_t, sigma), atol=1e-5, rtol=1e-4)


# --- losses ---


def test_simple_loss_of_the_exact_eps_is_its_conditional_variance():
    """min L_simple = E_t Σ_d Var(ε | x_t) = E_t Σ_d ᾱ_t v_d/(ᾱ_t v_d + 1 − ᾱ_t) for N(0, diag v) data."""
    variances = torch.tensor([0.5, 1.5], dtype=torch.float64)
    gm = sl.data.GaussianMixture([[0.0, 0.0]], variances.sqrt()[None])
    x0 = gm.sample(100_000, seeded(4)).double()
    loss = diffusion_simple_loss(gm, x0, LINEAR, generator=seeded(5))
    expected = (LINEAR[:, None] * variances / (LINEAR[:, None] * variances + 1 - LINEAR[:, None])).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=0.02)


def test_variational_bound_upper_bounds_the_nll_with_the_exact_score():
    gm = sl.data.GaussianMixture([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]], [0.3, 0.2, 0.4], [0.5, 0.3, 0.2])
    x0 = gm.sample(300, seeded(6)).double()
    chain = LINEAR[diffusion.spaced_timesteps(1000, 250)]
    bound = diffusion_variational_bound(gm, x0, chain, generator=seeded(7))
    gap = bound.total - (-gm.log_prob(x0))
    standard_error = gap.std().item() / math.sqrt(len(gap))
    assert -3 * standard_error < gap.mean().item() < 0.05 + 3 * standard_error
    assert (bound.diffusion > 0).all() and (bound.prior >= 0).all()
    prior = 0.5 * (chain[-1] * x0**2 + 1 - chain[-1] - 1 - torch.log(1 - chain[-1])).sum(1)
    torch.testing.assert_close(bound.prior, prior)


# --- samplers ---


def _ddpm_start(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, generator=seeded(seed), dtype=torch.float64)


def _ode_from(score, x_t: torch.Tensor, chain: torch.Tensor, **options) -> torch.Tensor:
    """The ODE started from the DDPM prior seen in y = x_T/√ᾱ_T, down to the chain's σ_1."""
    return probability_flow(score, x_t / chain[-1].sqrt(), noise.vp_sigmas(chain[[-1, 0]]), **options)


GAUSSIAN_SAMPLERS = {
    "ddpm-beta": lambda score, x: ddpm(score, x, LINEAR, generator=seeded(10)),
    "ddpm-posterior": lambda score, x: ddpm(score, x, LINEAR, variance="posterior", generator=seeded(10)),
    "ddim-250-eta0": lambda score, x: ddim(score, x, LINEAR[diffusion.spaced_timesteps(1000, 250)]),
    "ddim-250-eta0.5": lambda score, x: ddim(score, x, LINEAR[diffusion.spaced_timesteps(1000, 250)], eta=0.5,
                                             generator=seeded(10)),
    "ode-dopri5": lambda score, x: _ode_from(score, x, LINEAR),
}


@pytest.mark.parametrize("name", GAUSSIAN_SAMPLERS)
def test_samplers_reproduce_gaussian_mean_and_covariance(name):
    samples = GAUSSIAN_SAMPLERS[name](gaussian_score(MEAN, COV), _ddpm_start(20_000, 11))
    # About 4 standard errors (0.025 for the mean, 0.03 for the variances) at N = 20 000; the
    # discretisation bias of coarser chains is larger (DDIM with 100 steps: −0.03 to −0.06 in variance).
    torch.testing.assert_close(samples.mean(0), MEAN, atol=0.025, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), COV, atol=0.03, rtol=0)


def test_ddim_with_eta_one_is_ddpm_with_the_posterior_variance():
    gm = sl.data.GaussianMixture([[1.0, 0.0], [-1.0, 0.5]], 0.3)
    start = _ddpm_start(64, 12)
    chain = LINEAR[diffusion.spaced_timesteps(1000, 100)]
    a = ddim(gm, start, chain, eta=1.0, generator=seeded(13))
    b = ddpm(gm, start, chain, variance="posterior", generator=seeded(13))
    torch.testing.assert_close(a, b)


def test_ddim_with_eta_zero_is_euler_on_the_probability_flow_ode():
    gm = sl.data.GaussianMixture([[1.0, 0.0], [-1.0, 0.5]], 0.3)
    start = _ddpm_start(64, 14)
    chain = LINEAR[diffusion.spaced_timesteps(1000, 20)]
    euler = probability_flow(gm, start / chain[-1].sqrt(), noise.vp_sigmas(chain).flip(0), method="euler")
    torch.testing.assert_close(ddim(gm, start, chain), euler)


def test_samplers_report_steps_and_count_evaluations():
    gm = sl.data.GaussianMixture([[1.0, 0.0], [-1.0, 0.5]], 0.3)
    chain = LINEAR[diffusion.spaced_timesteps(1000, 10)]
    steps = []
    counted = CountingScore(gm)
    ddim(counted, _ddpm_start(16, 15), chain, callback=steps.append)
    assert counted.count == 10 and [info.step for info in steps] == list(range(10))
    assert steps[0].sigma == pytest.approx(noise.vp_sigmas(chain)[-1].item()) and steps[-1].x.shape == (16, 2)
    counted = CountingScore(gm)
    _ode_from(counted, _ddpm_start(16, 15), chain, method="rk4")
    assert counted.count == 4 + 1  # one rk4 step between two σ's, then the denoising step


def test_samplers_reject_bad_arguments():
    gm = sl.data.GaussianMixture([[0.0, 0.0]], 1.0)
    start = _ddpm_start(4, 16)
    with pytest.raises(ConfigError, match="eta"):
        ddim(gm, start, LINEAR, eta=1.5)
    with pytest.raises(ConfigError, match="variance"):
        ddpm(gm, start, LINEAR, variance="learned")
    with pytest.raises(ConfigError, match="alphas_cumprod"):
        ddpm(gm, start, LINEAR.flip(0))
    with pytest.raises(ConfigError, match="ODE method"):
        probability_flow(gm, start, torch.tensor([10.0, 0.1]), method="leapfrog")
    with pytest.raises(ConfigError, match="sigmas"):
        probability_flow(gm, start, torch.tensor([0.1, 10.0]))


MIXTURE = sl.data.GaussianMixture([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]], [0.3, 0.2, 0.4], [0.5, 0.3, 0.2])
MIXTURE_SAMPLERS = {
    "ddpm-1000": lambda x, generator: ddpm(MIXTURE, x, LINEAR, generator=generator),
    "ddim-50": lambda x, generator: ddim(MIXTURE, x, LINEAR[diffusion.spaced_timesteps(1000, 50)]),
    "ode-dopri5": lambda x, generator: _ode_from(MIXTURE, x, LINEAR),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", MIXTURE_SAMPLERS)
def test_exact_mixture_eps_reaches_w2_ratio_1_2(name):
    def sample_model(n: int, generator: torch.Generator) -> torch.Tensor:
        return MIXTURE_SAMPLERS[name](torch.randn(n, 2, generator=generator), generator)

    report = sl.metrics.w2_ratio(sample_model, MIXTURE.sample, n=5000, repeats=3)
    assert report.ratio <= 1.2, report


# --- training integration ---


def test_ddpm_config_trains_and_samples_with_every_diffusion_sampler(tmp_path):
    config = sl.Config(dataset="moons", n_data=256, model="ddpm", objective="eps", schedule="cosine",
                       timesteps=100, steps=20, batch_size=64, hidden=16, depth=2, checkpoint_every=20)
    sl.train(config, tmp_path, progress=False)
    run = sl.load_run(tmp_path, device="cpu")
    for sampler, options in (("ddpm", {}), ("ddim", {"sample_steps": 10, "eta": 0.5}), ("ode", {}),
                             ("ode", {"sample_steps": 5})):
        samples = run.sample(8, sampler=sampler, generator=seeded(0), **options)
        assert samples.shape == (8, 2) and torch.isfinite(samples).all(), sampler


def test_diffusion_config_errors_say_how_to_fix_them():
    with pytest.raises(ConfigError, match="--objective eps"):
        sl.Config(model="ddpm").validate()
    with pytest.raises(ConfigError, match="schedule"):
        sl.Config(model="ddpm", objective="eps", schedule="cubic").validate()
    with pytest.raises(ConfigError, match="sample_steps"):
        sl.Config(model="ddpm", objective="eps", timesteps=100, sample_steps=200).validate()
    with pytest.raises(ConfigError, match="eta"):
        sl.Config(eta=2.0).validate()
