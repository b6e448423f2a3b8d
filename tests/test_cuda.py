"""CUDA: the objectives, the training loop and every sampler run on the GPU and agree with the CPU.

Skipped without CUDA. Randomness comes from CPU generators (``sl.rng`` draws on
the generator's device and moves the noise to the tensor's), so a CPU run and a
CUDA run see the same noise and differ only by floating-point rounding.
"""

from __future__ import annotations

import copy
import csv

import pytest
import torch
from conftest import tiny_config

import scorelab as sl
from scorelab.core.processes import VP
from scorelab.models import MLP, ConditionalMLP, EnergyScore, NoiseConditionalMLP, Preconditioned
from scorelab.models.mlp import mlp_stack
from scorelab.objectives import (
    annealed_denoising_score_matching,
    denoising_score_matching,
    eps_loss,
    exact_score_matching,
    sliced_score_matching,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SIGMAS = torch.tensor([1.0, 0.3, 0.1])
CHAIN = VP("linear", 100).grid()

# name: (model builder, loss(model, x, generator))
CASES = {
    "exact, closed-form trace": (lambda: MLP(2, 32), lambda m, x, g: exact_score_matching(m, x)),
    "exact, reverse passes": (lambda: MLP(2, 32), lambda m, x, g: exact_score_matching(lambda y: m(y), x)),
    "exact, Hutchinson": (lambda: MLP(2, 32),
                          lambda m, x, g: exact_score_matching(m, x, trace="hutchinson", generator=g)),
    "sliced": (lambda: MLP(2, 32),
               lambda m, x, g: sliced_score_matching(m, x, n_projections=2, projection="gaussian", generator=g)),
    "sliced_vr": (lambda: MLP(2, 32),
                  lambda m, x, g: sliced_score_matching(m, x, variance_reduction=True, generator=g)),
    "dsm": (lambda: MLP(2, 32), lambda m, x, g: denoising_score_matching(m, x, 0.1, generator=g)),
    "annealed_dsm": (lambda: NoiseConditionalMLP(2, 32, 2, 1.0, fourier_features=8),
                     lambda m, x, g: annealed_denoising_score_matching(m, x, SIGMAS, generator=g)),
    "eps": (lambda: Preconditioned(ConditionalMLP(2, 32, 2, noise_input="sinusoidal"), "edm"),
            lambda m, x, g: eps_loss(m, x, CHAIN, generator=g)),
    "energy, sliced": (lambda: EnergyScore(mlp_stack(2, 32, 2, 1, torch.nn.Softplus)),
                       lambda m, x, g: sliced_score_matching(m, x, generator=g)),
}


@pytest.mark.parametrize("name", CASES)
def test_objective_and_its_gradient_agree_on_cpu_and_cuda(name):
    build, loss_fn = CASES[name]
    torch.manual_seed(0)
    model = build()
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(1))
    losses, gradients = {}, {}
    for device in ("cpu", "cuda"):
        moved = copy.deepcopy(model).to(device)
        loss = loss_fn(moved, x.to(device), torch.Generator().manual_seed(2))
        loss.backward()
        assert loss.device.type == device
        losses[device] = loss.item()
        # (An energy's output bias gets no gradient: it shifts E and leaves −∇E alone.)
        gradients[device] = [p.grad.cpu() for p in moved.parameters() if p.grad is not None]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-4, abs=1e-5)
    for on_cuda, on_cpu in zip(gradients["cuda"], gradients["cpu"]):
        torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-3, atol=1e-4)


def final_logged_loss(run_dir) -> float:
    with open(run_dir / "train_log.csv") as handle:
        return float(list(csv.DictReader(handle))[-1]["loss"])


RUNS = {
    "ncsn": {},
    "energy": {"model": "energy"},
    "ddpm": {"model": "ddpm", "timesteps": 100},
}
SAMPLERS_OF = {"ncsn": ("ald", "pc", "langevin"), "energy": ("langevin",), "ddpm": ("ddpm", "ddim", "ode")}


@pytest.mark.parametrize("kind", RUNS)
def test_training_and_sampling_on_cuda_follow_the_cpu(tmp_path, kind):
    run_dirs = {"cpu": tmp_path / "trained_on_cpu", "cuda": tmp_path / "trained_on_cuda"}
    for device, run_dir in run_dirs.items():
        sl.train(tiny_config(device=device, **RUNS[kind]), run_dir, progress=False)
    # Same init, batches and noise: the two loss curves differ by rounding only.
    assert final_logged_loss(run_dirs["cuda"]) == pytest.approx(final_logged_loss(run_dirs["cpu"]), rel=0.02)
    # One checkpoint, sampled on either device with one seed, gives the same points.
    on_cpu, on_cuda = (sl.load_run(run_dirs["cuda"], device=device) for device in ("cpu", "cuda"))
    assert on_cuda.device.type == "cuda"
    for sampler in SAMPLERS_OF[kind]:
        a, b = (run.sample(200, sampler=sampler, generator=torch.Generator().manual_seed(3))
                for run in (on_cpu, on_cuda))
        assert torch.isfinite(b).all() and b.device.type == "cpu"
        assert (a - b).abs().max() < 1e-2, sampler
    if kind != "energy":
        x = sl.data.load("swiss_roll", 32, generator=torch.Generator().manual_seed(4))
        torch.testing.assert_close(on_cuda.log_prob(x), on_cpu.log_prob(x), atol=1e-3, rtol=0)


def test_per_sample_seeds_give_the_same_samples_on_cpu_and_cuda(tiny_run):
    """The per-sample streams are drawn on the CPU and moved, so the GPU sees the CPU's noise."""
    on = {device: torch.cat(list(sl.load_run(tiny_run, device).sample_batches(20, seed=0, batch_size=7)))
          for device in ("cpu", "cuda")}
    torch.testing.assert_close(on["cuda"], on["cpu"], rtol=1e-4, atol=1e-4)
