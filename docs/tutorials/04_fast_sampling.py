# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Part 4: fast sampling with implicit models and ODE solvers
#
# A DDPM samples in as many steps as it was trained with, a thousand network evaluations per
# sample. Part 4 of the series is about doing it in ten or twenty. DDIM (Song, Meng & Ermon
# 2020) takes big deterministic steps along the same marginals. It is Euler's method on the
# **probability-flow ODE** dy/dσ = −σ ∇ log p_σ(y) (Song et al. 2021), whose solution carries
# the prior to the data. Better ODE solvers take bigger steps: EDM's Heun method on the Karras
# σ grid (Karras et al. 2022) and DPM-Solver++(2M) (Lu et al. 2022) are second order.
#
# `SCORELAB_TUTORIAL_QUICK=1` runs the notebook with small settings (the test suite does).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from IPython.display import Image, display  # noqa: E402

import scorelab as sl  # noqa: E402

QUICK = os.environ.get("SCORELAB_TUTORIAL_QUICK") == "1"
RUNS = Path(os.environ.get("SCORELAB_TUTORIAL_DIR", "tutorial_runs")) / "04"
RUNS.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(os.cpu_count() or 1)


def show(figure, name):
    figure.savefig(RUNS / name, dpi=90, bbox_inches="tight")
    plt.close(figure)
    display(Image(filename=str(RUNS / name)))


# %% [markdown]
# ## The order of a solver, against a closed form
#
# For data N(0, s²) the noisy score is known exactly, s(y, σ) = −y/(s² + σ²), and the ODE's
# solution is a straight rescaling: y(0) = y(σ_max)·s/√(s² + σ_max²). So the error of each
# sampler, run with that exact score, is the error of its steps alone. It falls as K⁻¹ for a
# first-order method (DDIM, Euler) and as K⁻² for a second-order one.

# %%
s, sigma_max, sigma_min = 0.5, 80.0, 0.002


def gaussian_score(y, sigma):
    return -y / (s**2 + sigma.reshape(-1, *[1] * (y.ndim - 1)) ** 2)


start = torch.randn(2000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
start = start * (s**2 + sigma_max**2) ** 0.5  # y at σ_max: the data's N(0, s²) plus the noise
exact_end = start * s / (s**2 + sigma_max**2) ** 0.5
samplers = {
    "DDIM (Euler)": lambda grid: sl.sampling.ddim(gaussian_score, start, grid),
    "Heun": lambda grid: sl.sampling.heun(gaussian_score, start, grid),
    "DPM-Solver++(2M)": lambda grid: sl.sampling.dpm_solver_2m(gaussian_score, start, grid),
}
steps = [4, 8, 16, 32, 64]
errors = {name: [] for name in samplers}
for k in steps:
    grid = sl.noise.karras_sigmas(sigma_max, sigma_min, k).double()
    for name, sample in samplers.items():
        errors[name].append((sample(grid) - exact_end).abs().max().item())
figure, axes = plt.subplots(figsize=(5.5, 4))
for name, values in errors.items():
    slope = (torch.tensor(values[-1]).log() - torch.tensor(values[-3]).log()) / (
        torch.tensor(steps[-1] / steps[-3]).log())
    axes.loglog(steps, values, marker="o", label=f"{name}: slope {slope:.2f}")
axes.set_xticks(steps, [str(k) for k in steps])
axes.minorticks_off()
axes.set_xlabel("steps K")
axes.set_ylabel("max |sample − exact ODE solution|")
axes.legend()
axes.set_title("exact Gaussian score, Karras grid (ρ = 7)")
show(figure, "order.png")

# %% [markdown]
# ## Quality against network evaluations on a trained model
#
# A DDPM trained on the two moons, sampled with each method at a few budgets. Quality is the W2
# ratio: the exact 2-Wasserstein distance to fresh data divided by that between two fresh data
# sets (1.0 is as good as a perfect sampler at this n). Heun costs 2K − 1 evaluations for K
# steps; the others cost K.

# %%
steps_trained = 400 if QUICK else 4000
n = 1000 if QUICK else 5000
config = sl.Config(dataset="moons", model="ddpm", steps=steps_trained, device="cpu", seed=0)
sl.train(config, RUNS / "ddpm", overwrite=True, progress=False)
run = sl.load_run(RUNS / "ddpm", "cpu")


def fresh(size, seed):
    return sl.data.load("moons", size, generator=torch.Generator().manual_seed(seed))


floor = sl.metrics.wasserstein2(fresh(n, 1), fresh(n, 2))
budgets = [5, 10, 20] if QUICK else [5, 10, 20, 50, 100]
cost = {"ddpm": lambda k: k, "ddim": lambda k: k, "heun": lambda k: 2 * k - 1, "dpmpp_2m": lambda k: k}
quality = {name: [] for name in cost}
for name in cost:
    for k in budgets:
        samples = run.sample(n, sampler=name, sample_steps=k, generator=torch.Generator().manual_seed(3))
        quality[name].append((cost[name](k), sl.metrics.wasserstein2(samples, fresh(n, 4)) / floor))
figure, axes = plt.subplots(figsize=(5.5, 4))
for name, points in quality.items():
    axes.semilogx(*zip(*points), marker="o", label=name)
axes.axhline(1.0, color="grey", linewidth=0.8)
axes.set_xlabel("network evaluations per sample")
axes.set_ylabel("W2 ratio (1 = the data's own spread)")
axes.legend()
axes.set_title(f"DDPM on moons, {steps_trained} training steps")
show(figure, "quality_against_evaluations.png")
for name, points in quality.items():
    print(name, "  ".join(f"{nfe} NFE: {ratio:.2f}" for nfe, ratio in points))
