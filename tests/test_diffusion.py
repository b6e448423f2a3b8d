"""DDPM/DDIM: schedules, the VP process, posterior, losses and samplers against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import scorelab as sl
from scorelab.core import noise
from scorelab.core.errors import ConfigError
from scorelab.core.processes import VP, denoised_from_score, eps_from_score
from scorelab.models import ConditionalMLP, Preconditioned
from scorelab.objectives import eps_loss
from scorelab.sampling import CountingScore, ddim, ddpm, probability_flow
from scorelab.sampling.ancestral import posterior_mean, step_variance
from scorelab.sampling.likelihood import variational_bound

MEAN = torch.tensor([0.5, -0.3], dtype=torch.float64)
COV = torch.tensor([[0.8, 0.3], [0.3, 0.5]], dtype=torch.float64)
PROCESS = VP("linear", 1000)
LINEAR = PROCESS.alphas_cumprod


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
    # WaveGrad's chain (Σβ ≈ 5) stops at ᾱ_T = e^(−5.0) ≈ 0.0067: its √ᾱ_T ≈ 0.08 of signal is left.
    end = math.exp(-sum(betas.tolist())) * 1.01 if name == "wavegrad" else 1e-3
    assert (alpha_bars.diff() < 0).all() and alpha_bars[-1] < end
    sigmas = noise.vp_sigmas(alpha_bars)
    torch.testing.assert_close(noise.alpha_bar_of_sigma(sigmas), alpha_bars)


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
        noise.spaced_timesteps(10, 11)


def test_spaced_timesteps_keep_both_ends():
    steps = noise.spaced_timesteps(1000, 50)
    assert steps[0] == 0 and steps[-1] == 999 and len(steps.unique()) == 50
    grid = PROCESS.grid(50)
    assert grid[0].item() == PROCESS.sigma_max and grid[-1].item() == PROCESS.sigma_min and len(grid) == 50


# --- the VP process and the posterior ---


def test_vp_perturbation_has_the_closed_form_marginal_in_its_own_coordinates():
    x0 = torch.tensor([[1.5, -2.0]], dtype=torch.float64).expand(200_000, 2)
    alpha_bar = 0.3
    sigma = noise.vp_sigmas(torch.tensor(alpha_bar, dtype=torch.float64)).expand(len(x0))
    z = torch.randn(x0.shape, generator=seeded(0), dtype=torch.float64)
    x_t = PROCESS.perturb(x0, sigma, z)
    standard_error = math.sqrt((1 - alpha_bar) / len(x0))
    torch.testing.assert_close(x_t.mean(0), math.sqrt(alpha_bar) * x0[0], atol=4 * standard_error, rtol=0)
    torch.testing.assert_close(x_t.var(0), torch.full((2,), 1 - alpha_bar, dtype=torch.float64),
                               atol=0.01, rtol=0)
    torch.testing.assert_close(x_t, math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * z)
    torch.testing.assert_close(PROCESS.to_ve(x_t, sigma), x0 + sigma[:, None] * z)


def test_posterior_is_bayes_rule_and_hos_formula_in_ve_coordinates():
    """q(y'|y, x_0) ∝ N(y; y', σ² − σ'²)·N(y'; x_0, σ'²), and it is Ho et al.'s eqs. 6–7 divided by √ᾱ_{t−1}."""
    alpha_bar_prev, alpha_bar = LINEAR[499].item(), LINEAR[500].item()
    sigma_prev, sigma = (noise.vp_sigmas(torch.tensor(a, dtype=torch.float64)).item() for a in (alpha_bar_prev,
                                                                                               alpha_bar))
    x0 = torch.randn(5, 3, generator=seeded(1), dtype=torch.float64)
    y = torch.randn(5, 3, generator=seeded(2), dtype=torch.float64)
    precision = 1 / sigma_prev**2 + 1 / (sigma**2 - sigma_prev**2)
    bayes_mean = (x0 / sigma_prev**2 + y / (sigma**2 - sigma_prev**2)) / precision
    torch.testing.assert_close(posterior_mean(y, x0, sigma, sigma_prev), bayes_mean)
    assert step_variance(sigma, sigma_prev, "posterior") == pytest.approx(1 / precision, rel=1e-12)
    # Ho et al.: μ̃ = √ᾱ_{t−1}β_t/(1 − ᾱ_t)·x_0 + √α_t(1 − ᾱ_{t−1})/(1 − ᾱ_t)·x_t, β̃ = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t.
    alpha, beta = alpha_bar / alpha_bar_prev, 1 - alpha_bar / alpha_bar_prev
    x_t = math.sqrt(alpha_bar) * y
    ho_mean = (math.sqrt(alpha_bar_prev) * beta * x0 + math.sqrt(alpha) * (1 - alpha_bar_prev) * x_t) / (1 - alpha_bar)
    torch.testing.assert_close(posterior_mean(y, x0, sigma, sigma_prev), ho_mean / math.sqrt(alpha_bar_prev))
    ho_variance = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta
    assert step_variance(sigma, sigma_prev, "posterior") == pytest.approx(ho_variance / alpha_bar_prev, rel=1e-9)
    assert step_variance(sigma, sigma_prev, "beta") == pytest.approx(beta / alpha_bar_prev, rel=1e-9)
    assert posterior_mean(y, x0, LINEAR[0].item(), 0.0).equal(x0) and step_variance(1.0, 0.0, "posterior") == 0.0


# --- the score, ε and denoiser views ---


def test_exact_score_gives_the_bayes_optimal_eps():
    """For x_0 ~ N(0, v): E[ε | x_t] = √(1 − ᾱ) x_t / (ᾱ v + 1 − ᾱ)."""
    variance = 0.6
    gm = sl.data.GaussianMixture([[0.0]], math.sqrt(variance))
    alpha_bar = LINEAR[300].item()
    sigma = torch.full((7,), noise.vp_sigmas(torch.tensor(alpha_bar)).item(), dtype=torch.float64)
    x_t = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    y = PROCESS.to_ve(x_t, sigma)
    expected = math.sqrt(1 - alpha_bar) * x_t / (alpha_bar * variance + 1 - alpha_bar)
    torch.testing.assert_close(eps_from_score(gm(y, sigma), sigma), expected)
    # The denoiser view is Tweedie's E[x_0 | y] = v·y/(v + σ²).
    tweedie = variance * y / (variance + sigma[:, None] ** 2)
    torch.testing.assert_close(denoised_from_score(y, gm(y, sigma), sigma), tweedie)


@pytest.mark.parametrize("parameterisation", sl.models.PARAMETERISATIONS)
def test_every_parameterisation_is_its_table_1_denoiser(parameterisation):
    """D = c_skip·x + c_out·F(c_in·x, ln σ) (Karras et al. 2022, Table 1), and the views agree."""
    torch.manual_seed(0)
    backbone = ConditionalMLP(2, 16, 2, noise_input="sinusoidal").double()
    model = Preconditioned(backbone, parameterisation, sigma_data=0.7).double()
    x = torch.randn(8, 2, generator=seeded(3), dtype=torch.float64) * 3
    sigma = torch.logspace(-2, 2, 8, dtype=torch.float64)
    s, d = sigma[:, None], 0.7
    c_skip, c_out, c_in = {
        "score": (1, s**2, 1),
        "ve": (1, s, 1 / (s**2 + d**2).sqrt()),
        "eps": (1, -s, 1 / (s**2 + 1).sqrt()),
        "edm": (d**2 / (s**2 + d**2), s * d / (s**2 + d**2).sqrt(), 1 / (s**2 + d**2).sqrt()),
        # σ_min = 0 by default: EDM's scalings (tests/test_consistency.py checks σ_min > 0).
        "consistency": (d**2 / (s**2 + d**2), s * d / (s**2 + d**2).sqrt(), 1 / (s**2 + d**2).sqrt()),
    }[parameterisation]
    expected = c_skip * x + c_out * backbone(c_in * x, sigma.log())
    torch.testing.assert_close(model.denoise(x, sigma), expected)
    torch.testing.assert_close(model.eps(x, sigma), (x - expected) / s)
    torch.testing.assert_close(model(x, sigma), (expected - x) / s**2)


# --- losses ---


def test_simple_loss_of_the_exact_eps_is_its_conditional_variance():
    """min L_simple = E_t Σ_d Var(ε | x_t) = E_t Σ_d ᾱ_t v_d/(ᾱ_t v_d + 1 − ᾱ_t) for N(0, diag v) data."""
    variances = torch.tensor([0.5, 1.5], dtype=torch.float64)
    gm = sl.data.GaussianMixture([[0.0, 0.0]], variances.sqrt()[None])
    x0 = gm.sample(100_000, seeded(4)).double()
    loss = eps_loss(gm, x0, PROCESS.grid(), generator=seeded(5))
    expected = (LINEAR[:, None] * variances / (LINEAR[:, None] * variances + 1 - LINEAR[:, None])).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=0.02)


def test_variational_bound_upper_bounds_the_nll_with_the_exact_score():
    gm = sl.data.GaussianMixture([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]], [0.3, 0.2, 0.4], [0.5, 0.3, 0.2])
    x0 = gm.sample(300, seeded(6)).double()
    bound = variational_bound(gm, x0, PROCESS, n_steps=250, generator=seeded(7))
    gap = bound.total - (-gm.log_prob(x0))
    standard_error = gap.std().item() / math.sqrt(len(gap))
    assert -3 * standard_error < gap.mean().item() < 0.05 + 3 * standard_error
    assert (bound.diffusion > 0).all() and (bound.prior >= 0).all()
    last = noise.alpha_bar_of_sigma(PROCESS.grid(250)[0])
    prior = 0.5 * (last * x0**2 + 1 - last - 1 - torch.log(1 - last)).sum(1)
    torch.testing.assert_close(bound.prior, prior)


# --- samplers ---


def _ddpm_start(n: int, seed: int) -> torch.Tensor:
    """The DDPM prior x_T ~ N(0, I) in VE coordinates, y_T = x_T·√(1 + σ_T²)."""
    return PROCESS.prior((n, 2), generator=seeded(seed), dtype=torch.float64)


def _ode_from(score, start: torch.Tensor, **options) -> torch.Tensor:
    """The ODE from the DDPM prior down to the chain's σ_1."""
    return probability_flow(score, start, PROCESS.grid()[[0, -1]], **options)


GAUSSIAN_SAMPLERS = {
    "ddpm-beta": lambda score, x: ddpm(score, x, PROCESS.grid(), generator=seeded(10)),
    "ddpm-posterior": lambda score, x: ddpm(score, x, PROCESS.grid(), variance="posterior", generator=seeded(10)),
    "ddim-250-eta0": lambda score, x: ddim(score, x, PROCESS.grid(250)),
    "ddim-250-eta0.5": lambda score, x: ddim(score, x, PROCESS.grid(250), eta=0.5, generator=seeded(10)),
    "ode-dopri5": lambda score, x: _ode_from(score, x),
}


@pytest.mark.parametrize("name", GAUSSIAN_SAMPLERS)
@pytest.mark.slow
def test_samplers_reproduce_gaussian_mean_and_covariance(name):
    samples = GAUSSIAN_SAMPLERS[name](gaussian_score(MEAN, COV), _ddpm_start(20_000, 11))
    # About 4 standard errors (0.025 for the mean, 0.03 for the variances) at N = 20 000; the
    # discretisation bias of coarser chains is larger (DDIM with 100 steps: −0.03 to −0.06 in variance).
    torch.testing.assert_close(samples.mean(0), MEAN, atol=0.025, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), COV, atol=0.03, rtol=0)


def test_ddpm_in_ve_coordinates_is_hos_algorithm_2():
    """One run of Ho et al.'s Algorithm 2 in x_t, written out here, against :func:`ddpm` in y = x_t/√ᾱ_t."""
    gm = sl.data.GaussianMixture([[1.0, 0.0], [-1.0, 0.5]], 0.3)
    alpha_bars = LINEAR[noise.spaced_timesteps(1000, 50)].tolist()
    x = torch.randn(64, 2, generator=seeded(20), dtype=torch.float64)
    start = x * math.sqrt(1 / alpha_bars[-1])
    generator = seeded(21)
    for t in reversed(range(len(alpha_bars))):
        alpha_bar, alpha_bar_prev = alpha_bars[t], (alpha_bars[t - 1] if t else 1.0)
        alpha, sigma = alpha_bar / alpha_bar_prev, math.sqrt((1 - alpha_bar) / alpha_bar)
        eps = -sigma * gm(x / math.sqrt(alpha_bar), torch.full((64,), sigma, dtype=torch.float64))
        x = (x - (1 - alpha) / math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha)
        if t:
            x = x + math.sqrt(1 - alpha) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    torch.testing.assert_close(ddpm(gm, start, PROCESS.grid(50), generator=seeded(21)), x)


def test_ddim_with_eta_one_is_ddpm_with_the_posterior_variance():
    gm = sl.data.GaussianMixture([[1.0, 0.0], [-1.0, 0.5]], 0.3)
    start = _ddpm_start(64, 12)
    sigmas = PROCESS.grid(100)
    a = ddim(gm, start, sigmas, eta=1.0, generator=seeded(13))
    b = ddpm(gm, start, sigmas, variance="posterior", generator=seeded(13))
    torch.testing.assert_close(a, b)


def test_ddim_with_eta_zero_is_euler_on_the_probability_flow_ode():
    gm = sl.data.GaussianMixture([[1.0, 0.0], [-1.0, 0.5]], 0.3)
    start = _ddpm_start(64, 14)
    sigmas = PROCESS.grid(20)
    torch.testing.assert_close(ddim(gm, start, sigmas), probability_flow(gm, start, sigmas, method="euler"))


def test_samplers_report_steps_and_count_evaluations():
    gm = sl.data.GaussianMixture([[1.0, 0.0], [-1.0, 0.5]], 0.3)
    sigmas = PROCESS.grid(10)
    steps = []
    counted = CountingScore(gm)
    ddim(counted, _ddpm_start(16, 15), sigmas, callback=steps.append)
    assert counted.count == 10 and [info.step for info in steps] == list(range(10))
    assert steps[0].sigma == pytest.approx(sigmas[0].item()) and steps[-1].x.shape == (16, 2)
    counted = CountingScore(gm)
    _ode_from(counted, _ddpm_start(16, 15), method="rk4")
    assert counted.count == 4 + 1  # one rk4 step between two σ's, then the denoising step


def test_samplers_reject_bad_arguments():
    gm = sl.data.GaussianMixture([[0.0, 0.0]], 1.0)
    start = _ddpm_start(4, 16)
    with pytest.raises(ConfigError, match="eta"):
        ddim(gm, start, PROCESS.grid(), eta=1.5)
    with pytest.raises(ConfigError, match="variance"):
        ddpm(gm, start, PROCESS.grid(), variance="learned")
    with pytest.raises(ConfigError, match="sorted strictly from largest"):
        ddpm(gm, start, PROCESS.grid().flip(0))
    with pytest.raises(ConfigError, match="ODE method"):
        probability_flow(gm, start, torch.tensor([10.0, 0.1]), method="leapfrog")
    with pytest.raises(ConfigError, match="sigmas"):
        probability_flow(gm, start, torch.tensor([0.1, 10.0]))


MIXTURE = sl.data.GaussianMixture([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]], [0.3, 0.2, 0.4], [0.5, 0.3, 0.2])
MIXTURE_SAMPLERS = {
    "ddpm-1000": lambda x, generator: ddpm(MIXTURE, x, PROCESS.grid(), generator=generator),
    "ddim-50": lambda x, generator: ddim(MIXTURE, x, PROCESS.grid(50)),
    "ode-dopri5": lambda x, generator: _ode_from(MIXTURE, x),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", MIXTURE_SAMPLERS)
def test_exact_mixture_eps_reaches_w2_ratio_1_2(name):
    def sample_model(n: int, generator: torch.Generator) -> torch.Tensor:
        return MIXTURE_SAMPLERS[name](PROCESS.prior((n, 2), generator=generator), generator)

    report = sl.metrics.w2_ratio(sample_model, MIXTURE.sample, n=2000, repeats=2)
    assert report.ratio <= 1.2, report


# --- training integration ---


@pytest.mark.slow
def test_ddpm_config_trains_and_samples_with_every_diffusion_sampler(tmp_path):
    config = sl.Config(dataset="moons", n_data=256, model="ddpm", schedule="cosine",
                       timesteps=100, steps=20, batch_size=64, hidden=16, depth=2, checkpoint_every=20)
    assert (config.process.name, config.objective.name, config.sampler.name) == ("vp", "eps", "ddpm")
    sl.train(config, tmp_path, progress=False)
    run = sl.load_run(tmp_path, device="cpu")
    for sampler, options in (("ddpm", {}), ("ddim", {"sample_steps": 10, "eta": 0.5}), ("ode", {}),
                             ("ode", {"sample_steps": 5}), ("heun", {"sample_steps": 4}), ("stochastic_heun", {"sample_steps": 4, "churn": 10.0}),
                             ("dpmpp_2m", {"sample_steps": 200})):  # beyond T = 100: the Karras grid is not respaced
        samples = run.sample(8, sampler=sampler, generator=seeded(0), **options)
        assert samples.shape == (8, 2) and torch.isfinite(samples).all(), sampler


def test_diffusion_config_errors_say_how_to_fix_them():
    with pytest.raises(ConfigError, match="use --model mlp or energy"):
        sl.Config(model="ddpm", objective="exact")
    with pytest.raises(ConfigError, match="schedule"):
        sl.Config(model="ddpm", schedule="cubic")
    with pytest.raises(ConfigError, match="sample_steps"):
        sl.Config(model="ddpm", timesteps=100, sample_steps=200)
    with pytest.raises(ConfigError, match="eta"):
        sl.Config(sampler="ddim", eta=2.0)
    with pytest.raises(ConfigError, match="does not apply to process 'vp'"):
        sl.Config(model="ddpm", n_levels=4)
