"""Flow matching as a noise process (issue 33 item 2), each part against a closed form.

The linear interpolant x_t = (1 − t)x + tz is the core's x_t = a(σ)(x + σz) with a = 1 − t, σ = t/(1 − t):
its probability-flow ODE is VE's and VP's in y = x_t/a, its velocity is a view of the score, its loss a
weighting of the denoising loss, and Euler in t is Euler in σ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli, tiny_config

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.core.processes import (
    PROCESSES,
    VE,
    VP,
    Flow,
    denoised_from_score,
    flow_sigma,
    flow_time,
    score_from_velocity,
    velocity_from_denoised,
    velocity_from_score,
)
from scorelab.core.registry import make_settings
from scorelab.core.rng import randn_like
from scorelab.data.mixture import GaussianMixture
from scorelab.objectives.registry import OBJECTIVES, denoising_loss_at, flow_matching_loss_at
from scorelab.sampling.ode import probability_flow
from scorelab.runs.trained import load_run
from scorelab.sampling.registry import SAMPLERS
from scorelab.sampling.solvers import flow_euler

MIXTURE = GaussianMixture([[-1.5, 0.5], [1.0, -0.5], [0.5, 1.5]], [0.3, 0.5, 0.25], [0.5, 0.3, 0.2])


def _score(y, sigma, cond=None):
    return MIXTURE.score(y, sigma)


def test_flow_sigma_and_time_are_inverse_and_the_scale_is_one_minus_t():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    sigma = flow_sigma(t)
    torch.testing.assert_close(flow_time(sigma), t, rtol=1e-14, atol=1e-14)
    flow = Flow()
    torch.testing.assert_close(flow.scale(sigma), 1 - t, rtol=1e-14, atol=1e-14)
    generator = torch.Generator().manual_seed(0)
    x, z = (torch.randn(50, 2, generator=generator, dtype=torch.float64) for _ in range(2))
    torch.testing.assert_close(flow.perturb(x, sigma, z), (1 - t[:, None]) * x + t[:, None] * z)
    grid = flow.grid(5)
    assert (flow.t_min, flow.t_max) == (0.002, 0.98)
    torch.testing.assert_close(flow_time(grid), torch.linspace(0.98, 0.002, 5, dtype=torch.float64))
    assert flow.sigma_max == pytest.approx(0.98 / 0.02) and flow.sigma_min == pytest.approx(0.002 / 0.998)


def test_training_t_is_uniform_or_logit_normal():
    like = torch.zeros(1, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    t = flow_time(Flow(t_min=0.1, t_max=0.9).training_sigma(200_000, like, generator))
    # U(0.1, 0.9): mean 0.5, variance 0.8²/12; standard errors 5e-4 and 1.5e-4.
    assert t.min() >= 0.1 and t.max() <= 0.9
    assert t.mean().item() == pytest.approx(0.5, abs=3e-3) and t.var().item() == pytest.approx(0.64 / 12, abs=1e-3)
    flow = Flow(t_min=1e-6, t_max=1 - 1e-6, t_density="logit_normal", logit_mean=-0.5, logit_std=0.8)
    log_sigma = flow.training_sigma(200_000, like, generator).log()  # = logit t ~ N(m, s²)
    assert log_sigma.mean().item() == pytest.approx(-0.5, abs=1e-2)
    assert log_sigma.std().item() == pytest.approx(0.8, abs=1e-2)
    clamped = Flow(t_density="logit_normal", logit_std=4.0).training_sigma(10_000, like, generator)
    assert clamped.min() >= Flow().sigma_min and clamped.max() <= Flow().sigma_max * (1 + 1e-12)


def test_the_probability_flow_ode_is_one_ode_in_ve_vp_and_flow_coordinates():
    """With the exact score, each process's ODE solved in its own coordinates lands on the same y = x_t/a."""
    from torchdiffeq import odeint

    sigmas = VE(20.0, 0.05).grid(8)  # the same σ grid for all three, 20 → 0.05
    y0 = torch.randn(400, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 20.0
    tol = dict(method="dopri5", rtol=1e-10, atol=1e-10)

    def ve_drift(sigma, y):  # dy/dσ = −σ s(y, σ)
        return -sigma * _score(y, sigma.expand(len(y)))

    def vp_drift(sigma, x):  # x = a y, a = (1 + σ²)^(−1/2): dx/dσ = (a'/a) x + a dy/dσ
        a = torch.rsqrt(1 + sigma**2)
        return -sigma / (1 + sigma**2) * x - a * sigma * _score(x / a, sigma.expand(len(x)))

    def flow_drift(t, x):  # dx_t/dt = v(x_t, t), with y = x_t/(1 − t) and σ = t/(1 − t)
        sigma = flow_sigma(t).expand(len(x))
        y = x / (1 - t)
        return velocity_from_score(y, _score(y, sigma), sigma)

    ve = odeint(ve_drift, y0, sigmas, **tol)[-1]
    a = VP().scale(sigmas)
    vp = odeint(vp_drift, a[0] * y0, sigmas, **tol)[-1] / a[-1]
    t = flow_time(sigmas)
    flow = odeint(flow_drift, (1 - t[0]) * y0, t, **tol)[-1] / (1 - t[-1])
    # Samples of size ~1 after a flow map that stretches by up to σ_max/σ_min = 400 between the modes: the
    # three agree to 1e-5 (measured: VP 1e-7, flow 2.6e-6 at the worst of 400 points, the median ~1e-9).
    torch.testing.assert_close(vp, ve, rtol=0, atol=1e-5)
    torch.testing.assert_close(flow, ve, rtol=0, atol=1e-5)
    assert (flow - ve).abs().median() < 1e-7
    assert (ve - y0).abs().mean() > 1.0  # the samples moved: a real test, not a fixed point


def test_euler_in_t_is_euler_in_sigma():
    """x_t' = x_t + (t' − t)v in flow coordinates is y' = y + (σ' − σ)(y − D)/σ in VE ones, then Tweedie."""
    sigmas = Flow().grid(12)
    y = Flow().prior((300, 2), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    in_t = flow_euler(_score, y, sigmas)
    in_sigma = probability_flow(_score, y, sigmas, method="euler", denoise=True)
    torch.testing.assert_close(in_t, in_sigma, rtol=1e-10, atol=1e-10)


def test_the_velocity_of_the_exact_score_is_the_closed_form_for_a_gaussian():
    """For x ~ N(μ, s²I), y = x + σz: E[x | y] = μ + s²(y − μ)/(s² + σ²), E[z | y] = σ(y − μ)/(s² + σ²)."""
    mu, s = torch.tensor([0.7, -1.2], dtype=torch.float64), 0.6
    gaussian = GaussianMixture(mu[None], s)
    generator = torch.Generator().manual_seed(3)
    sigma = flow_sigma(torch.rand(500, generator=generator, dtype=torch.float64) * 0.98 + 0.01)
    y = mu + torch.randn(500, 2, generator=generator, dtype=torch.float64) * (s**2 + sigma[:, None] ** 2).sqrt()
    spread = s**2 + sigma[:, None] ** 2
    expected = sigma[:, None] * (y - mu) / spread - (mu + s**2 * (y - mu) / spread)  # E[z − x | x_t]
    score = gaussian.score(y, sigma)
    torch.testing.assert_close(velocity_from_score(y, score, sigma), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(velocity_from_denoised(y, denoised_from_score(y, score, sigma), sigma), expected,
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(score_from_velocity(y, expected, sigma), score, rtol=1e-10, atol=1e-10)


def test_the_cfm_loss_is_the_denoising_loss_weighted_one_over_t_squared():
    """‖v_θ − (z − x)‖² = ‖D_θ − x‖²/t² = ((1 + σ)/σ)²‖D_θ − x‖², for the same draws, for any score."""
    x = MIXTURE.sample(256, torch.Generator().manual_seed(4)).double()
    sigma = Flow().training_sigma(256, x, torch.Generator().manual_seed(5))

    def score(y, sigma, cond=None):  # an imperfect score: the mixture's at the wrong level, plus a tilt
        return MIXTURE.score(y, 1.3 * sigma) + 0.2 * y.flip(1)

    loss = flow_matching_loss_at(score, x, sigma, generator=torch.Generator().manual_seed(6))
    # By hand, from the same noise: x_t = (1 − t)x + tz, v_θ from the velocity view, target z − x.
    z = randn_like(x, torch.Generator().manual_seed(6))
    t = flow_time(sigma)[:, None]
    y = ((1 - t) * x + t * z) / (1 - t)
    velocity = velocity_from_score(y, score(y, sigma), sigma)
    by_hand = (velocity - (z - x)).pow(2).sum(1).mean()
    torch.testing.assert_close(loss, by_hand, rtol=1e-12, atol=0)
    denoised = denoised_from_score(y, score(y, sigma), sigma)
    weighted = (((1 + sigma) / sigma) ** 2 * (denoised - x).pow(2).sum(1)).mean()
    torch.testing.assert_close(loss, weighted, rtol=1e-12, atol=0)
    # ... which is the annealed DSM loss's λ(σ)·½‖s + (x̃ − x)/σ²‖² with λ(σ) = 2σ²(1 + σ)².
    dsm = denoising_loss_at(score, x, sigma, generator=torch.Generator().manual_seed(6),
                            residual_weight=(1 + sigma) ** 2)
    torch.testing.assert_close(loss, 2 * dsm, rtol=1e-12, atol=0)
    # The registered loss draws the levels, then the noise: the same numbers as above.
    settings = make_settings(OBJECTIVES["flow_matching"].settings, {}, "objective 'flow_matching'")
    registered = OBJECTIVES["flow_matching"].loss(score, x, None, Flow(), settings, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    drawn = Flow().training_sigma(256, x, generator)
    torch.testing.assert_close(registered, flow_matching_loss_at(score, x, drawn, generator=generator), rtol=0, atol=0)


def test_euler_with_the_exact_score_reaches_the_mixture():
    process = Flow()
    settings = make_settings(SAMPLERS["euler"].settings, {"sample_steps": 100}, "sampler 'euler'")
    start = process.prior((3000, 2), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    samples = SAMPLERS["euler"].sample(_score, process, settings, start, None, None, None)
    data = MIXTURE.sample(3000, torch.Generator().manual_seed(8)).double()
    floor = sl.metrics.wasserstein2(MIXTURE.sample(3000, torch.Generator().manual_seed(9)).double(), data)
    w2 = sl.metrics.wasserstein2(samples, data)
    # 100 Euler steps uniform in t: the discretisation adds little to the real-vs-real W2 at this N.
    assert w2 < 1.3 * floor, (w2, floor)
    torch.testing.assert_close(samples.mean(0), data.mean(0), rtol=0, atol=0.06)


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m"])
def test_heun_and_dpm_solver_walk_the_flow_process(sampler):
    process = Flow()
    settings = make_settings(SAMPLERS[sampler].settings, {}, f"sampler {sampler!r}")
    start = process.prior((3000, 2), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    samples = SAMPLERS[sampler].sample(_score, process, settings, start, None, None, None)
    data = MIXTURE.sample(3000, torch.Generator().manual_seed(8)).double()
    floor = sl.metrics.wasserstein2(MIXTURE.sample(3000, torch.Generator().manual_seed(9)).double(), data)
    assert sl.metrics.wasserstein2(samples, data) < 1.3 * floor


@pytest.mark.parametrize("values, message", [
    ({"t_max": 1.0}, "t_max must be in (0, 1)"),
    ({"t_min": 0.0}, "t_min must be in (0, 1)"),
    ({"t_min": 0.5, "t_max": 0.4}, "t_min (0.5) must be below t_max (0.4)"),
    ({"t_density": "beta"}, "unknown t_density 'beta'"),
    ({"logit_std": 0.0}, "logit_std"),
])
def test_bad_flow_settings_are_one_line_config_errors(values, message):
    with pytest.raises(ConfigError) as error:
        make_settings(PROCESSES["flow"].settings, values, "process 'flow'")
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError):
        Flow(**values)


@pytest.mark.slow
def test_a_trained_flow_model_has_the_exact_velocity_of_gaussian_data(tmp_path):
    mu, std = np.array([1.0, -2.0]), np.array([0.5, 1.5])
    points = mu + std * np.random.default_rng(10).standard_normal((4000, 2))
    np.save(tmp_path / "gaussian.npy", points.astype(np.float32))
    config = tiny_config(dataset=str(tmp_path / "gaussian.npy"), process="flow", objective="flow_matching",
                         steps=1500, batch_size=256, hidden=64, depth=2, lr=3e-3)
    sl.train(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run", device="cpu")
    # In the model's units the data are N(m, diag(s²)), m = (μ − shift)/scale, s = std/scale.
    shift, scale = run.normalisation.shift.double(), run.normalisation.scale.double()
    m, s = (torch.as_tensor(mu) - shift) / scale, torch.as_tensor(std) / scale
    generator = torch.Generator().manual_seed(11)
    t = torch.rand(4000, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    sigma = flow_sigma(t)
    x = m + s * torch.randn(4000, 2, generator=generator, dtype=torch.float64)
    y = x + sigma[:, None] * torch.randn(4000, 2, generator=generator, dtype=torch.float64)
    spread = s**2 + sigma[:, None] ** 2
    exact = sigma[:, None] * (y - m) / spread - (m + s**2 * (y - m) / spread)
    with torch.no_grad():
        model = run.model.double()
        learned = velocity_from_score(y, model(y, sigma), sigma)
    relative = ((learned - exact).pow(2).sum(1).mean() / exact.pow(2).sum(1).mean()).sqrt().item()
    # The CFM target z − x has variance Var[z − x | x_t] around the exact velocity; 4000 points and 1500
    # steps of batch 256 fit it to a few per cent (measured 0.046); a model that ignored y or σ would be
    # off by far more than 0.1 (the best constant velocity has relative error ~1).
    assert run.config.model.parameterisation == "edm"  # the flow process's preset (the VE one gave 0.41)
    assert relative < 0.1, relative


def test_the_cli_trains_and_samples_the_flow_process(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--dataset", "moons", "--out", run_dir, "--process", "flow",
                             "--n-data", 256, "--steps", 20, "--batch-size", 64, "--hidden", 16, "--depth", 1,
                             "--n-levels", 6, "--device", "cpu")
    assert code == 0, err
    assert 'name = "flow_matching"' in (run_dir / "config.toml").read_text()
    for sampler in ("euler", "heun", "dpmpp_2m"):
        code, out, err = run_cli(capsys, "sample", run_dir, "--n", 50, "--out", tmp_path / f"{sampler}.npy",
                                 "--sampler", sampler, "--sample-steps", 4)
        assert code == 0, err
        samples = np.load(tmp_path / f"{sampler}.npy")
        assert samples.shape == (50, 2) and np.isfinite(samples).all()


@pytest.mark.parametrize("flag, value, message", [
    ("--t-max", "1.5", "t_max must be in (0, 1)"),
    ("--t-density", "beta", "unknown t_density 'beta'"),
])
def test_a_bad_flow_flag_is_one_line_and_exit_2(tmp_path, capsys, flag, value, message):
    code, out, err = run_cli(capsys, "train", "--dataset", "moons", "--out", tmp_path / "run", "--process", "flow",
                             flag, value)
    assert_clean_error(code, err, message)
