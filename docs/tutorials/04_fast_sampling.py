# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
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
# The same ODE serves every family. **Flow matching** (Lipman et al. 2022; Liu et al. 2022) learns the
# velocity of the straight path x_t = (1 − t)·x + t·z, and is one more set of coordinates for it;
# **EDM's recipe** (Karras et al. 2022) trains the network for the solvers' few large steps; and a
# **consistency model** (Song et al. 2023) learns the ODE's whole map at once, for one or two steps.
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
# ratio of part 1: the exact 2-Wasserstein distance to fresh data divided by that between two
# i.i.d. data sets (1.0 is as good as a perfect sampler at this n). The moons generator spaces its
# points evenly along each moon, so two of its draws lie closer together than two i.i.d. samples
# can; `sl.metrics.w2_ratio` therefore takes the second data set of its floor at random from a draw
# twenty times larger. The floor depends on the data alone: `floor_key` keeps it in scorelab's
# cache, so it is computed once here. Heun costs 2K − 1 evaluations for K steps; the others cost K.

# %%
steps_trained = 400 if QUICK else 3000
n = 1000 if QUICK else 2000
config = sl.Config(dataset="moons", model="ddpm", steps=steps_trained, device="cpu", seed=0)
sl.train(config, RUNS / "ddpm", overwrite=True, progress=False)
run = sl.load_run(RUNS / "ddpm", "cpu")


def w2_ratio(samples):
    return sl.metrics.w2_ratio(samples, lambda size, gen: sl.data.load("moons", size, generator=gen), n=n,
                               repeats=1, floor_repeats=5, floor_key={"dataset": "moons"}).ratio


budgets = [5, 10, 20] if QUICK else [5, 10, 20, 50, 100]
cost = {"ddpm": lambda k: k, "ddim": lambda k: k, "heun": lambda k: 2 * k - 1, "dpmpp_2m": lambda k: k}
quality = {name: [] for name in cost}
for name in cost:
    for k in budgets:
        samples = run.sample(n, sampler=name, sample_steps=k, generator=torch.Generator().manual_seed(3))
        quality[name].append((cost[name](k), w2_ratio(samples)))
figure, axes = plt.subplots(figsize=(5.5, 4))
for name, points in quality.items():
    axes.loglog(*zip(*points), marker="o", label=name)
axes.axhline(1.0, color="grey", linewidth=0.8)
axes.set_xlabel("network evaluations per sample")
axes.set_ylabel("W2 ratio (1 = the data's own spread)")
axes.legend()
axes.set_title(f"DDPM on moons, {steps_trained} training steps")
show(figure, "quality_against_evaluations.png")
for name, points in quality.items():
    print(name, "  ".join(f"{nfe} NFE: {ratio:.2f}" for nfe, ratio in points))


# %% [markdown]
# ## One ODE in three coordinates
#
# Every scorelab process perturbs data as x_t = a(σ)·(x + σz): the VE process has a = 1, DDPM's VP
# process a = 1/√(1 + σ²), and flow matching's interpolant a = 1 − t with σ = t/(1 − t). Divided by
# a, all three are y = x + σz, so their probability-flow ODEs are one ODE, dy/dσ = −σ·s(y, σ),
# written in three coordinates. Below, the exact score of a Gaussian mixture drives the ODE in each
# process's own coordinates (VE's y, VP's x_t, and flow's x_t against t with the velocity
# v = E[z − x | x_t]), solved to a tight tolerance from the same start on the same σ range; mapped
# back to y, the three end points agree to the solver's tolerance.

# %%
from torchdiffeq import odeint  # noqa: E402

from scorelab.core.processes import VP, flow_sigma, flow_time, velocity_from_score  # noqa: E402

mixture = sl.data.GaussianMixture(means=[[-1.5, 0.5], [1.0, -0.5], [0.5, 1.5]], stds=[0.3, 0.5, 0.25],
                                  weights=[0.5, 0.3, 0.2])
sigma_range = torch.tensor([20.0, 0.05], dtype=torch.float64)
y_start = 20.0 * torch.randn(500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
tight = dict(method="dopri5", rtol=1e-10, atol=1e-10)


def ve_drift(sigma, y):  # dy/dσ = −σ·s(y, σ)
    return -sigma * mixture.score(y, sigma)


def vp_drift(sigma, x):  # x = a·y: dx/dσ = (da/dσ)·y + a·dy/dσ
    a = torch.rsqrt(1 + sigma**2)
    return -sigma / (1 + sigma**2) * x - a * sigma * mixture.score(x / a, sigma)


def flow_drift(t, x):  # dx_t/dt = v(x_t, t) in the flow's own time
    sigma = flow_sigma(t)
    y = x / (1 - t)
    return velocity_from_score(y, mixture.score(y, sigma.expand(len(y))), sigma.expand(len(y)))


in_ve = odeint(ve_drift, y_start, sigma_range, **tight)[-1]
a = VP().scale(sigma_range)
in_vp = odeint(vp_drift, a[0] * y_start, sigma_range, **tight)[-1] / a[-1]
t = flow_time(sigma_range)
in_flow = odeint(flow_drift, (1 - t[0]) * y_start, t, **tight)[-1] / (1 - t[-1])
print(f"largest |VP − VE| = {(in_vp - in_ve).abs().max():.1e}, |flow − VE| = {(in_flow - in_ve).abs().max():.1e}, "
      f"while the points moved by {(in_ve - y_start).abs().mean():.1f} on average")

# %% [markdown]
# ## Families trained for few steps: EDM's recipe and flow matching
#
# The ODE is shared; what differs between families is how well the network knows the score where a
# few large steps land. EDM (`--model edm`) trains at log-normally drawn noise levels with a loss
# weight that makes every level count the same at the network's output; flow matching
# (`--process flow`, scorelab's default family on points) trains the velocity with uniform t. Both
# are sampled here at 10 and 20 evaluations, beside the DDPM above.

# %%
families = {"edm": {"model": "edm"}, "flow": {"process": "flow"}}
few_step = {"edm": [("heun", 5), ("heun", 10), ("dpmpp_2m", 10), ("dpmpp_2m", 20)],
            "flow": [("euler", 10), ("euler", 20), ("heun", 10), ("dpmpp_2m", 20)]}
for family, settings in families.items():
    config = sl.Config(dataset="moons", steps=steps_trained, device="cpu", seed=0, **settings)
    sl.train(config, RUNS / family, overwrite=True, progress=False)
    trained = sl.load_run(RUNS / family, "cpu")
    for name, k in few_step[family]:
        samples = trained.sample(n, sampler=name, sample_steps=k, generator=torch.Generator().manual_seed(3))
        ratio = w2_ratio(samples)
        print(f"{family:5s} {name:9s} {k:3d} steps ({cost.get(name, lambda k: k)(k)} NFE): W2 ratio {ratio:.2f}")

# %% [markdown]
# ## One step: a consistency model
#
# The ODE's solution is a map from the noise at σ_max to the data. A **consistency model**
# f(y, σ) (Song et al. 2023) learns that map directly: every point of one ODE trajectory must be sent
# to the same end, and f(y, σ_min) = y holds by construction, because its preconditioning has
# c_skip(σ_min) = 1 and c_out(σ_min) = 0. One evaluation at σ_max is then a sample; a second, after
# noise is added back at a lower level, corrects it. **Consistency distillation** teaches f from a
# trained model's ODE: each training pair is one Heun step of the teacher between adjacent levels,
# and the student's outputs at both ends must agree. Here the EDM run above is the teacher
# (`scorelab distill RUN --out RUN2` on the command line).

# %%
from scorelab.runs.distill import distill  # noqa: E402

distill(RUNS / "edm", RUNS / "consistency", overwrite=True, progress=False, steps=steps_trained, device="cpu")
student = sl.load_run(RUNS / "consistency", "cpu")
for k in (1, 2):
    samples = student.sample(n, sampler="consistency", sample_steps=k, generator=torch.Generator().manual_seed(3))
    ratio = w2_ratio(samples)
    print(f"consistency model, {k} evaluation{'s' if k > 1 else ''}: W2 ratio {ratio:.2f}")
