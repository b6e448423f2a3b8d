"""EDM's training recipe as registered parts (issue 33 item 1), each against a closed form.

Karras et al. 2022, Sec. 5 and Table 1: ln σ ~ N(P_mean, P_std²), the loss weight
λ(σ) = (σ² + σ_d²)/(σ·σ_d)² on ‖D_θ − x‖², and the preconditioning that makes the network's target
unit-variance at every σ; ``--model edm`` names the family.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.core.processes import VE
from scorelab.models.preconditioning import Preconditioned
from scorelab.objectives.registry import OBJECTIVES, edm_loss_at
from scorelab.runs.trained import load_run


def test_lognormal_sigma_has_the_stated_log_mean_and_spread():
    process = VE(80.0, 0.002, continuous=True, sigma_density="lognormal", p_mean=-1.2, p_std=1.2)
    like = torch.zeros(1)
    log_sigma = process.training_sigma(200_000, like, torch.Generator().manual_seed(0)).log()
    # Standard errors at n = 2e5: 1.2/√n = 0.0027 for the mean, 1.2/√(2n) = 0.0019 for the spread.
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.012)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.01)
    # Its median is exp(P_mean); the log-uniform density's is √(σ_min σ_max) = 0.4: the draw follows the setting.
    assert log_sigma.median().exp().item() == pytest.approx(math.exp(-1.2), rel=0.02)


def test_lognormal_sigma_asks_for_a_continuous_process():
    with pytest.raises(ConfigError, match="--continuous"):
        sl.Config(model="noise_conditional", sigma_density="lognormal")


@pytest.mark.parametrize("sigma", [0.01, 0.3, 5.0])
def test_the_edm_loss_at_the_exact_denoiser_is_lambda_times_the_posterior_variance(sigma):
    """Data N(0, s²I) in d dimensions: E[x | y] = s²y/(s² + σ²) with posterior variance σ²s²/(s² + σ²) per
    entry, so the loss at the exact score is λ(σ)·d·σ²s²/(s² + σ²), with λ = (σ² + σ_d²)/(σσ_d)²."""
    s, d, sigma_data, n = 0.7, 3, 0.5, 400_000
    generator = torch.Generator().manual_seed(1)
    x = s * torch.randn(n, d, generator=generator, dtype=torch.float64)

    def exact(y, level, cond=None):
        return -y / (s**2 + level[:, None] ** 2)

    loss = edm_loss_at(exact, x, torch.full((n,), sigma, dtype=torch.float64), sigma_data=sigma_data,
                       generator=generator).item()
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    assert loss == pytest.approx(weight * d * sigma**2 * s**2 / (s**2 + sigma**2), rel=0.01)


class _Zero(torch.nn.Module):
    def forward(self, x, c_noise, cond=None):
        return torch.zeros_like(x)


@pytest.mark.parametrize("sigma", [0.002, 0.5, 80.0])
def test_under_edm_preconditioning_the_target_has_unit_variance_at_every_level(sigma):
    """λ(σ)·c_out(σ)² = 1, so the loss of F = 0 is E‖F_target‖², which is d for data of std σ_d at any σ."""
    s, d, n = 0.5, 4, 400_000
    generator = torch.Generator().manual_seed(2)
    x = s * torch.randn(n, d, generator=generator, dtype=torch.float64)
    model = Preconditioned(_Zero(), "edm", sigma_data=s).double()
    loss = edm_loss_at(model, x, torch.full((n,), sigma, dtype=torch.float64), sigma_data=s, generator=generator)
    assert loss.item() == pytest.approx(d, rel=0.01)


def test_model_edm_implies_the_recipe_and_keeps_what_is_stated():
    config = sl.Config(dataset="moons", model="edm")
    assert (config.process.name, config.objective.name, config.sampler.name) == ("ve", "edm", "dpmpp_2m")
    assert config.process.continuous and config.process.sigma_density == "lognormal"
    assert (config.process.sigma_min, config.process.sigma_max, config.model.parameterisation) == (0.002, 80.0, "edm")
    assert config.sampler.sample_steps == 20  # at most 20 network evaluations
    stated = sl.Config(dataset="moons", model="edm", p_mean=-0.5, sampler="heun")
    assert (stated.process.p_mean, stated.sampler.name) == (-0.5, "heun")
    # On images the family's network is the U-Net, trained by the same recipe.
    images = sl.Config(dataset="digits", model="edm")
    assert (images.model.name, images.objective.name, images.model.parameterisation) == ("unet", "edm", "edm")


def test_sigma_data_is_measured_once_and_shared_by_the_loss_and_the_preconditioning(tmp_path):
    run_dir = tmp_path / "edm"
    sl.train(tiny_config(dataset="moons", model="edm", steps=3), run_dir, progress=False)
    run = load_run(run_dir, "cpu")
    assert run.config.objective.sigma_data > 0
    assert run.config.objective.sigma_data == pytest.approx(run.model.sigma_data.item(), rel=1e-6)
    assert OBJECTIVES["edm"].resolve(run.config.objective.settings, torch.zeros(2, 2)) == run.config.objective.settings
